//! The process plumbing of the real peers the tests start (Alertmanager, Redis, the rate
//! limit service): each runs in a process group of its own, so a stop also ends whatever
//! it forked, and each takes a loopback port found free just before it starts.

use std::process::Child;

/// Runs `start_once` up to three times and returns its first success, or its last error.
/// A free port is found by binding port 0 and releasing it; another process could take it
/// in between, so a start that fails is retried on a new port.
pub fn on_a_free_port<T>(mut start_once: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut last_error = String::new();
    for _ in 0..3 {
        match start_once() {
            Ok(started) => return Ok(started),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Kills the process group `child` leads (SIGKILL) and reaps the child; nothing when it
/// was already taken, so stopping twice is harmless.
pub fn kill_group(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group created for
            // this child; it touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
