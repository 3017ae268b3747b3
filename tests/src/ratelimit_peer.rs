//! The rate-limit-service peer for tests: `ratelimit-peer` (the `stakeguard-ratelimit-peer`
//! crate: Envoy's RLS v3 over gRPC, counting with Limitador in Redis) started on a loopback
//! port of its own choosing, ready once it prints `listening on ADDR`, stopped with
//! SIGTERM (or killed) on [`RatelimitPeer::stop`] and on drop.
//!
//! Every Envoy of a test points a gRPC cluster ([`RatelimitPeer::cluster`]) at the same
//! peer, so they share their counts; the counts themselves live in the [`Redis`], so a peer
//! stopped and started again on the same Redis carries on counting.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TempDir;
use crate::redis::Redis;

/// The binary: `$STAKEGUARD_RATELIMIT_PEER`, else `ratelimit-peer` in the debug target
/// directory (`cargo test --workspace` builds it; `cargo build -p stakeguard-ratelimit-peer`
/// does on its own).
pub fn binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("STAKEGUARD_RATELIMIT_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::repo_root().join("target"))
                .join("debug/ratelimit-peer")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "ratelimit-peer not found at {}; run `cargo build -p stakeguard-ratelimit-peer` \
             (`cargo test --workspace` builds it) before the fleet-wide counting tests",
            path.display()
        ))
    }
}

/// A running peer.
pub struct RatelimitPeer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl RatelimitPeer {
    /// Starts the peer ([`binary`]) counting in `redis`, with limitador-server's limits
    /// file `limits` (YAML text) when given.
    pub fn start(redis: &Redis, limits: Option<&str>) -> Result<Self, String> {
        Self::start_binary(&binary()?, &redis.url(), limits)
    }

    /// [`RatelimitPeer::start`] with an explicit binary and Redis URL.
    pub fn start_binary(
        binary: &Path,
        redis_url: &str,
        limits: Option<&str>,
    ) -> Result<Self, String> {
        let dir = TempDir::new("ratelimit-peer").map_err(|e| format!("temp dir: {e}"))?;
        let log = std::fs::File::create(dir.path().join("peer.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0", "--redis", redis_url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(limits) = limits {
            let path = dir.path().join("limits.yaml");
            std::fs::write(&path, limits).map_err(|e| format!("write limits file: {e}"))?;
            command.arg("--limits").arg(path);
        }
        let mut child = {
            use std::os::unix::process::CommandExt;
            command
                .process_group(0)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", binary.display()))?
        };
        let stdout = child.stdout.take();
        let mut peer = Self {
            child: Some(child),
            port: 0,
            dir,
        };
        // The first line says where it listens; the thread then keeps the pipe drained.
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        let line = rx.recv_timeout(Duration::from_secs(20));
        let port = line
            .as_deref()
            .ok()
            .and_then(|l| l.strip_prefix("listening on "))
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => {
                peer.port = port;
                Ok(peer)
            }
            None => {
                peer.kill();
                Err(format!(
                    "ratelimit-peer did not start ({line:?} on stdout); its log:\n{}",
                    peer.log()
                ))
            }
        }
    }

    /// The gRPC port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the peer wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    /// An Envoy cluster named `name` for the peer: one static loopback endpoint spoken to
    /// in HTTP/2 without negotiation (gRPC over h2c), as a `rate_limit_service`'s
    /// `envoy_grpc` or `dispatch_grpc_call` names it.
    pub fn cluster(&self, name: &str) -> Value {
        let mut cluster = crate::envoy::cluster(name, self.port);
        stakeguard_harness::envoy::bootstrap::speak_http2(&mut cluster);
        cluster
    }

    /// Asks it to stop (SIGTERM) and waits up to `within` for it to exit; `Err` if it was
    /// already stopped or did not exit in time (then it is killed).
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let Some(child) = &mut self.child else {
            return Err("ratelimit-peer was already stopped".into());
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the child's pid; it touches no memory of ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(format!(
            "ratelimit-peer did not exit within {within:?} of SIGTERM"
        ))
    }

    /// Stops it: SIGTERM, then SIGKILL to its process group if it lingers; idempotent.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(5));
        }
    }

    fn kill(&mut self) {
        crate::process::kill_group(&mut self.child);
    }
}

impl Drop for RatelimitPeer {
    fn drop(&mut self) {
        self.stop();
    }
}
