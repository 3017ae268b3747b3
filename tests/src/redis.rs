//! A real Redis for tests (Debian's `redis-server`, installed by `scripts/ensure-redis.sh`):
//! a private instance on a free loopback port with its working directory in a temporary
//! directory, no persistence (nothing written but its log), ready when it answers `PING`,
//! killed with its process group on drop or [`Redis::stop`]. The rate-limit-service peer
//! ([`crate::ratelimit_peer`]) keeps Limitador's counters in it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::TempDir;
use crate::wait::poll;

/// The binary: `$STAKEGUARD_REDIS_SERVER`, else `redis-server` from `/usr/bin` or the
/// `PATH`.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STAKEGUARD_REDIS_SERVER") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "STAKEGUARD_REDIS_SERVER={} is not a file",
                path.display()
            ))
        };
    }
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(
            std::env::var_os("PATH").map_or_else(Vec::new, |p| std::env::split_paths(&p).collect()),
        )
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "redis-server not found; run `scripts/ensure-redis.sh` (or `make redis`) first"
                .to_owned()
        })
}

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Redis {
    /// Starts redis-server on a free loopback port and waits until it answers.
    pub fn start() -> Result<Self, String> {
        let binary = binary()?;
        crate::process::on_a_free_port(|| Self::start_once(&binary))
    }

    fn start_once(binary: &Path) -> Result<Self, String> {
        let dir = TempDir::new("redis").map_err(|e| format!("temp dir: {e}"))?;
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(binary)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                // No RDB snapshots, no append-only file: the counters live as long as the test.
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .args(["--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", binary.display()))?
        };
        let mut redis = Self {
            child: Some(child),
            port,
            dir,
        };
        let mut exited = false;
        let ready = poll(Duration::from_secs(20), Duration::from_millis(20), || {
            if redis.has_exited() {
                exited = true;
                return Some(false);
            }
            ping(port).then_some(true)
        });
        match ready {
            Some(true) => Ok(redis),
            _ => {
                let why = if exited {
                    "exited before it was ready"
                } else {
                    "did not answer PING within 20s"
                };
                Err(format!("redis-server {why}:\n{}", redis.log()))
            }
        }
    }

    /// The port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a Redis client connects with: `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// redis-server's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Whether the process has exited (or was stopped).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Stops it (SIGKILL to its process group) and waits for it; idempotent.
    pub fn stop(&mut self) {
        crate::process::kill_group(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG` (not `-LOADING`, not refused).
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
