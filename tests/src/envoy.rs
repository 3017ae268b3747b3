//! A real Envoy for tests: a bootstrap generated as JSON (listener, admin and every port
//! chosen at run time on 127.0.0.1), the process started in its own process group, ready
//! when admin `/ready` says `LIVE`, its log captured to a file, killed on drop.
//!
//! [`EnvoyConfig`] covers the usual shape (one listener routing everything to the test
//! upstream, optionally through stakeguard.wasm, with an `alertmanager` cluster); a test
//! that needs another shape edits the [`serde_json::Value`] that
//! [`EnvoyConfig::bootstrap`] returns and calls [`Envoy::start_bootstrap`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::TempDir;
use crate::client;
use crate::stats::{self, Sample};
use crate::wait::poll;

/// The access log format every generated listener uses: one JSON object per request, with
/// the decision stakeguard published (`-`/null when it published none).
pub fn access_log_format() -> Value {
    json!({
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(:PATH)%",
        "authority": "%REQ(:AUTHORITY)%",
        "status": "%RESPONSE_CODE%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "decision": "%FILTER_STATE(wasm.stakeguard.decision:PLAIN)%",
    })
}

/// The `stats_config` that turns stakeguard's metric names into Prometheus labels. Kept in
/// step with `envoy-examples/standalone/envoy.yaml` (a test checks they agree).
pub fn stats_config() -> Value {
    let pre = r"^(?:wasmcustom\.)?stakeguard\.";
    json!({
        "use_all_default_tags": true,
        "stats_tags": [
            { "tag_name": "api", "regex": format!(r"{pre}(?:decision|incident)(\.api\.([^.]+))") },
            { "tag_name": "version", "regex": format!(r"{pre}(?:decision|incident)\.api\.[^.]+(\.version\.([^.]+))") },
            { "tag_name": "control", "regex": format!(r"{pre}(?:decision|incident)\.api\.[^.]+\.version\.[^.]+(\.control\.([^.]+))") },
            { "tag_name": "outcome", "regex": format!(r"{pre}decision\.api\.[^.]+\.version\.[^.]+\.control\.[^.]+(\.outcome\.([^.]+))$") },
            { "tag_name": "severity", "regex": format!(r"{pre}incident\.api\.[^.]+\.version\.[^.]+\.control\.[^.]+(\.severity\.([^.]+))$") },
            { "tag_name": "revision", "regex": format!(r"{pre}policy(\.revision\.([^.]+))$") },
        ]
    })
}

/// The stakeguard filter in a listener.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// The `.wasm` file.
    pub module: PathBuf,
    /// The plugin configuration (the policy JSON).
    pub configuration: String,
}

/// The usual test bootstrap.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// The port of the test upstream (cluster `upstream`).
    pub upstream_port: u16,
    /// The filter, or `None` for a plain proxy.
    pub filter: Option<WasmFilter>,
    /// The port of the cluster `alertmanager`; without one it points at the upstream.
    pub alertmanager_port: Option<u16>,
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
}

impl EnvoyConfig {
    /// A plain proxy to the upstream, 2 workers.
    pub fn new(upstream_port: u16) -> Self {
        Self {
            upstream_port,
            filter: None,
            alertmanager_port: None,
            concurrency: 2,
            extra_args: Vec::new(),
        }
    }

    /// Puts stakeguard in front, configured with `policy`.
    pub fn with_filter(mut self, module: &Path, policy: &str) -> Self {
        self.filter = Some(WasmFilter {
            module: module.to_path_buf(),
            configuration: policy.to_owned(),
        });
        self
    }

    /// Points the `alertmanager` cluster at a port.
    pub fn with_alertmanager(mut self, port: u16) -> Self {
        self.alertmanager_port = Some(port);
        self
    }

    /// Sets the number of workers.
    pub fn with_concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// The HTTP filter entry for stakeguard.
    pub fn wasm_filter(filter: &WasmFilter) -> Value {
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "stakeguard",
                    "root_id": "stakeguard",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": filter.configuration,
                    },
                    "vm_config": {
                        "vm_id": "stakeguard",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": filter.module } },
                    },
                    "failure_policy": "FAIL_CLOSED",
                }
            }
        })
    }

    /// The bootstrap, with logs written under `paths`.
    pub fn bootstrap(&self, paths: &Paths) -> Value {
        let mut http_filters = Vec::new();
        if let Some(filter) = &self.filter {
            http_filters.push(Self::wasm_filter(filter));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));
        let alertmanager = self.alertmanager_port.unwrap_or(self.upstream_port);
        json!({
            "admin": { "address": socket(0) },
            "stats_config": stats_config(),
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": socket(0),
                    "filter_chains": [{ "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "access_log": [{
                                "name": "envoy.access_loggers.file",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                                    "path": paths.access_log,
                                    "log_format": { "json_format": access_log_format() },
                                }
                            }],
                            "route_config": {
                                "name": "local",
                                "virtual_hosts": [{
                                    "name": "all",
                                    "domains": ["*"],
                                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream", "timeout": "15s" } }],
                                }]
                            },
                            "http_filters": http_filters,
                        }
                    }]}]
                }],
                "clusters": [cluster("upstream", self.upstream_port), cluster("alertmanager", alertmanager)],
            }
        })
    }
}

/// A `SocketAddress` on 127.0.0.1.
pub fn socket(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

/// A static cluster of one endpoint on 127.0.0.1.
pub fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(port) } }] }]
        }
    })
}

/// Where one Envoy run keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The run's directory.
    pub dir: PathBuf,
    /// The bootstrap file written there.
    pub config: PathBuf,
    /// Envoy's own log (`--log-path`), where the filter's log lines land.
    pub log: PathBuf,
    /// stdout and stderr of the process.
    pub output: PathBuf,
    /// The access log.
    pub access_log: PathBuf,
    /// Where Envoy writes its admin address.
    pub admin_address: PathBuf,
}

impl Paths {
    fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            config: dir.join("envoy.json"),
            log: dir.join("envoy.log"),
            output: dir.join("envoy.out"),
            access_log: dir.join("access.log"),
            admin_address: dir.join("admin.address"),
        }
    }
}

/// Why Envoy did not come up.
#[derive(Debug)]
pub struct StartError {
    /// What went wrong.
    pub message: String,
    /// Envoy's log and output so far.
    pub log: String,
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
    port: u16,
    _dir: TempDir,
}

impl Envoy {
    /// Starts Envoy with the usual bootstrap.
    pub fn start(config: &EnvoyConfig) -> Result<Self, StartError> {
        Self::start_with(
            |paths| config.bootstrap(paths),
            config.concurrency,
            &config.extra_args,
        )
    }

    /// Starts Envoy with a bootstrap built from the run's paths.
    pub fn start_with(
        bootstrap: impl FnOnce(&Paths) -> Value,
        concurrency: u32,
        extra_args: &[String],
    ) -> Result<Self, StartError> {
        let fail = |message: String| StartError {
            message,
            log: String::new(),
        };
        let dir = TempDir::new("envoy").map_err(|e| fail(format!("temp dir: {e}")))?;
        let paths = Paths::in_dir(dir.path());
        let bootstrap = bootstrap(&paths);
        std::fs::write(&paths.config, bootstrap.to_string())
            .map_err(|e| fail(format!("write config: {e}")))?;
        let child = spawn(&paths, concurrency, extra_args)?;
        let mut envoy = Envoy {
            child,
            paths,
            admin_port: 0,
            port: 0,
            _dir: dir,
        };
        envoy.wait_ready()?;
        Ok(envoy)
    }

    /// Starts Envoy with a complete bootstrap.
    pub fn start_bootstrap(bootstrap: Value, concurrency: u32) -> Result<Self, StartError> {
        Self::start_with(|_| bootstrap, concurrency, &[])
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let timeout = Duration::from_secs(30);
        let interval = Duration::from_millis(20);
        let mut exited = None;
        let admin = poll(timeout, interval, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return Some(None);
            }
            let text = std::fs::read_to_string(&self.paths.admin_address).ok()?;
            let port = text.trim().rsplit_once(':')?.1.parse::<u16>().ok()?;
            let ready = client::get_text(port, "/ready").ok()?;
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
        let listeners = client::get_text(admin, "/listeners?format=json")
            .map_err(|e| self.error(format!("admin /listeners: {e}")))?;
        let listeners: Value = serde_json::from_str(&listeners)
            .map_err(|e| self.error(format!("admin /listeners: {e}")))?;
        self.port = listeners
            .get("listener_statuses")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|l| l.get("name").is_some_and(|n| n == "main"))
            })
            .and_then(|l| l.pointer("/local_address/socket_address/port_value"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| self.error(format!("no listener `main` in {listeners}")))?;
        Ok(())
    }

    fn error(&self, message: String) -> StartError {
        StartError {
            message,
            log: self.log(),
        }
    }

    /// The listener port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port (127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The process id (a restarted Envoy would be another process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is never restarted by these tests).
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
        client::get_text(self.admin_port, path)
    }

    /// POST on the admin endpoint (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) -> std::io::Result<client::Response> {
        client::Request::new("POST", path).send(self.admin_port)
    }

    /// The samples of `/stats/prometheus`.
    pub fn prometheus(&self) -> Vec<Sample> {
        self.admin_get("/stats/prometheus")
            .map(|t| stats::parse(&t))
            .unwrap_or_default()
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
        crate::wait::eventually(|| {
            self.access_log()
                .into_iter()
                .find(|e| e.get("request_id").is_some_and(|id| id == request_id))
        })
    }

    /// Sends a request to the listener.
    pub fn send(&self, req: &client::Request) -> client::Response {
        match req.send(self.port) {
            Ok(resp) => resp,
            Err(e) => fail_with_log(self, &format!("{} {}: {e}", req.method, req.path)),
        }
    }
}

/// Panics with a message and Envoy's log (for test failures that need context).
pub fn fail_with_log(envoy: &Envoy, message: &str) -> ! {
    let log = envoy.log();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    #[expect(clippy::panic, reason = "a test support helper that fails the test")]
    {
        panic!(
            "{message}\n--- last lines of envoy log ---\n{}",
            tail.join("\n")
        )
    }
}

fn spawn(paths: &Paths, concurrency: u32, extra_args: &[String]) -> Result<Child, StartError> {
    use std::os::unix::process::CommandExt;
    let binary = crate::envoy_binary().map_err(|message| StartError {
        message,
        log: String::new(),
    })?;
    let output = std::fs::File::create(&paths.output).map_err(|e| StartError {
        message: format!("{e}"),
        log: String::new(),
    })?;
    let stderr = output.try_clone().map_err(|e| StartError {
        message: format!("{e}"),
        log: String::new(),
    })?;
    Command::new(binary)
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
        .map_err(|e| StartError {
            message: format!("spawn envoy: {e}"),
            log: String::new(),
        })
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // this child; it touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `envoy --mode validate` on a config file from the repository root (relative
/// paths in it are taken from there); returns whether it passed and what it
/// printed.
pub fn validate(config: &Path) -> Result<(bool, String), String> {
    let out = Command::new(crate::envoy_binary()?)
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(config)
        .current_dir(crate::repo_root())
        .output()
        .map_err(|e| format!("run envoy: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}
