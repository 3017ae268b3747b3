//! A real Prometheus Alertmanager for tests (Debian's `prometheus-alertmanager`, installed
//! by `scripts/ensure-alertmanager.sh`): a temporary config and storage directory, the web
//! listener on a free loopback port, clustering off, ready when `/-/ready` answers 200,
//! killed with its process group on drop or [`Alertmanager::stop`].
//!
//! The config routes every alert to a receiver with no integrations: the tests read the
//! alerts Alertmanager holds back from `GET /api/v2/alerts`, nothing is sent anywhere.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::TempDir;
use crate::client;
use crate::wait::poll;

/// The binary: `$STAKEGUARD_ALERTMANAGER`, else `prometheus-alertmanager` (Debian's name)
/// or `alertmanager` (upstream's) from `/usr/bin` or the `PATH`.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STAKEGUARD_ALERTMANAGER") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "STAKEGUARD_ALERTMANAGER={} is not a file",
                path.display()
            ))
        };
    }
    let dirs: Vec<PathBuf> = std::iter::once(PathBuf::from("/usr/bin"))
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .collect();
    ["prometheus-alertmanager", "alertmanager"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "prometheus-alertmanager not found; run `scripts/ensure-alertmanager.sh` (or `make \
             alertmanager`) first"
                .to_owned()
        })
}

/// The configuration: one route, one receiver without integrations. `group_wait` is short
/// only to keep the notification pipeline quiet; alerts show in the API as soon as they
/// are posted.
const CONFIG: &str = "route:
  receiver: hold
  group_by: ['alertname', 'api']
  group_wait: 1s
  group_interval: 1m
  repeat_interval: 1h
receivers:
  - name: hold
";

/// A running Alertmanager.
pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager on a free loopback port and waits until it is ready.
    pub fn start() -> Result<Self, String> {
        let binary = binary()?;
        crate::process::on_a_free_port(|| Self::start_once(&binary))
    }

    fn start_once(binary: &Path) -> Result<Self, String> {
        let dir = TempDir::new("alertmanager").map_err(|e| format!("temp dir: {e}"))?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).map_err(|e| format!("write config: {e}"))?;
        let storage = dir.path().join("data");
        std::fs::create_dir_all(&storage).map_err(|e| format!("storage dir: {e}"))?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // No gossip: a lone instance, no cluster port to collide on.
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", binary.display()))?
        };
        let mut am = Self {
            child: Some(child),
            port,
            dir,
        };
        let mut exited = false;
        let ready = poll(Duration::from_secs(20), Duration::from_millis(20), || {
            if am.has_exited() {
                exited = true;
                return Some(false);
            }
            client::get_text(port, "/-/ready").ok().map(|_| true)
        });
        match ready {
            Some(true) => Ok(am),
            _ => {
                let why = if exited {
                    "exited before it was ready"
                } else {
                    "was not ready within 20s"
                };
                Err(format!(
                    "alertmanager {why}:\n{}",
                    std::fs::read_to_string(am.log_path()).unwrap_or_default()
                ))
            }
        }
    }

    /// The web port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Alertmanager's own log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("alertmanager.log")
    }

    /// Whether the process has exited (or was stopped).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The alerts it holds (`GET /api/v2/alerts`): a JSON array of gettable alerts, each
    /// with `labels`, `annotations`, `startsAt`, `status`, ...
    pub fn alerts(&self) -> Result<Vec<Value>, String> {
        let text = client::get_text(self.port, "/api/v2/alerts").map_err(|e| e.to_string())?;
        match serde_json::from_str(&text) {
            Ok(Value::Array(alerts)) => Ok(alerts),
            Ok(other) => Err(format!("/api/v2/alerts is not an array: {other}")),
            Err(e) => Err(format!("/api/v2/alerts: {e}: {text}")),
        }
    }

    /// Stops it (SIGKILL to its process group) and waits for it; idempotent.
    pub fn stop(&mut self) {
        crate::process::kill_group(&mut self.child);
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The labels of an alert as (name, value) strings.
pub fn labels(alert: &Value) -> Vec<(String, String)> {
    alert
        .get("labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one label.
pub fn label<'a>(alert: &'a Value, name: &str) -> Option<&'a str> {
    alert.get("labels")?.get(name)?.as_str()
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
