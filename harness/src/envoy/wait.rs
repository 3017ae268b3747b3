//! Polling with a deadline, instead of fixed sleeps: Envoy, its log files and the test
//! peers come up when they come up, and a loop that waits for them must still end.

use std::time::{Duration, Instant};

/// Calls `probe` every `interval` until it returns `Some`, or gives up after `timeout`.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// [`poll`] with a 10 s timeout and a 20 ms interval, the default for "Envoy will get there".
pub fn eventually<T>(probe: impl FnMut() -> Option<T>) -> Option<T> {
    poll(Duration::from_secs(10), Duration::from_millis(20), probe)
}
