//! The Envoy bootstrap, generated as JSON: a listener `main` (and, for mTLS, `mtls`) on
//! 127.0.0.1 with every port chosen by the kernel, routing everything to an `upstream`
//! cluster, optionally through a proxy-wasm filter, with a JSON access log that carries
//! the published decision. A caller that needs another shape edits the
//! [`serde_json::Value`] that [`EnvoyConfig::bootstrap`] returns.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::replay::FailurePolicy;

/// The access log format every generated listener uses: one JSON object per request, with
/// the decision stakeguard published (`-`/null when it published none) and the replay's
/// record index (`x-stakeguard-record`, the key that joins a log line to its record).
pub fn access_log_format() -> Value {
    json!({
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(:PATH)%",
        "authority": "%REQ(:AUTHORITY)%",
        "status": "%RESPONSE_CODE%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "decision": "%FILTER_STATE(wasm.stakeguard.decision:PLAIN)%",
        "record": "%REQ(X-STAKEGUARD-RECORD)%",
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
    /// Leave requests and responses as the client, the upstream and the filter made them:
    /// pass `server` through (Envoy overwrites it by default), add no `x-envoy-*`
    /// headers, and take the socket peer as the client address (`use_remote_address`)
    /// without appending it to `x-forwarded-for` (`skip_xff_append`). By default Envoy
    /// would make the last `x-forwarded-for` entry the module's `source.address`; the
    /// harness, like an edge Envoy, gives it the socket peer.
    pub faithful_headers: bool,
    /// A second listener, `mtls`, that requires a client certificate.
    pub mtls: Option<MtlsListener>,
    /// The filter's `failure_policy` (default `FAIL_CLOSED`, Envoy's own default).
    pub failure_policy: FailurePolicy,
    /// The plugin's `root_id` and `vm_id` and the VM configuration (default
    /// `stakeguard`, `stakeguard`, none).
    pub plugin: PluginIds,
    /// More static clusters, by name, each one endpoint on a loopback port (a cluster
    /// named `alertmanager` here replaces the default one).
    pub clusters: Vec<(String, u16)>,
    /// The `clusters` speak HTTP/2 over cleartext with prior knowledge (h2c), as the
    /// callout stub servers do (gRPC needs it); otherwise HTTP/1.1.
    pub http2_clusters: bool,
    /// Hand each new connection to the worker with the fewest open connections, the
    /// first on a tie (`exact_balance`), instead of letting the kernel choose: with
    /// connections held open that is round-robin, the harness's assignment.
    pub exact_balance: bool,
}

/// What names the plugin and its VM.
#[derive(Debug, Clone)]
pub struct PluginIds {
    /// `root_id` (also the plugin's `name`).
    pub root_id: String,
    /// `vm_config.vm_id`.
    pub vm_id: String,
    /// `vm_config.configuration` (none when empty).
    pub vm_configuration: String,
}

impl Default for PluginIds {
    fn default() -> Self {
        Self {
            root_id: "stakeguard".to_owned(),
            vm_id: "stakeguard".to_owned(),
            vm_configuration: String::new(),
        }
    }
}

/// The files of the `mtls` listener: its certificate and key, and the CA that signs the
/// client certificates it requires.
#[derive(Debug, Clone)]
pub struct MtlsListener {
    /// The server certificate chain (PEM).
    pub cert_chain: PathBuf,
    /// The server key (PEM).
    pub private_key: PathBuf,
    /// The CA client certificates must chain to (PEM).
    pub client_ca: PathBuf,
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
            faithful_headers: false,
            mtls: None,
            failure_policy: FailurePolicy::FailClosed,
            plugin: PluginIds::default(),
            clusters: Vec::new(),
            http2_clusters: false,
            exact_balance: false,
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

    /// The HTTP filter entry for stakeguard (`FAIL_CLOSED`, ids `stakeguard`).
    pub fn wasm_filter(filter: &WasmFilter) -> Value {
        Self::wasm_filter_with(filter, &PluginIds::default(), FailurePolicy::FailClosed)
    }

    /// The HTTP filter entry for a module with these ids and this failure policy.
    pub fn wasm_filter_with(filter: &WasmFilter, ids: &PluginIds, failure: FailurePolicy) -> Value {
        let mut vm_config = json!({
            "vm_id": ids.vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": filter.module } },
        });
        if !ids.vm_configuration.is_empty()
            && let Some(map) = vm_config.as_object_mut()
        {
            map.insert(
                "configuration".into(),
                json!({
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": ids.vm_configuration,
                }),
            );
        }
        let mut config = json!({
            "name": ids.root_id,
            "root_id": ids.root_id,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": filter.configuration,
            },
            "vm_config": vm_config,
            "failure_policy": failure.envoy_name(),
        });
        if failure.reloads()
            && let Some(map) = config.as_object_mut()
        {
            // The shortest reload backoff that works (1 s by default; with a base below
            // 10 ms Envoy 1.40 dies of SIGFPE at the first reload): a stream more than
            // 20 ms after a failure gets the fresh VM, as the harness's next stream does.
            map.insert(
                "reload_config".into(),
                json!({ "backoff": { "base_interval": "0.01s", "max_interval": "0.02s" } }),
            );
        }
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": config,
            }
        })
    }

    /// The bootstrap, with logs written under `paths`.
    pub fn bootstrap(&self, paths: &Paths) -> Value {
        let alertmanager = self.alertmanager_port.unwrap_or(self.upstream_port);
        let mut listeners = vec![self.listener("main", paths, None)];
        if let Some(mtls) = &self.mtls {
            listeners.push(self.listener("mtls", paths, Some(mtls)));
        }
        let mut clusters = vec![cluster("upstream", self.upstream_port)];
        if !self.clusters.iter().any(|(name, _)| name == "alertmanager") {
            clusters.push(cluster("alertmanager", alertmanager));
        }
        clusters.extend(self.clusters.iter().map(|(name, port)| {
            let mut c = cluster(name, *port);
            if self.http2_clusters {
                speak_http2(&mut c);
            }
            c
        }));
        json!({
            "admin": { "address": socket(0) },
            "stats_config": stats_config(),
            "static_resources": {
                "listeners": listeners,
                "clusters": clusters,
            }
        })
    }

    /// One listener: the HTTP connection manager with the filters, plain or requiring a
    /// client certificate.
    fn listener(&self, name: &str, paths: &Paths, mtls: Option<&MtlsListener>) -> Value {
        let mut http_filters = Vec::new();
        if let Some(filter) = &self.filter {
            http_filters.push(Self::wasm_filter_with(
                filter,
                &self.plugin,
                self.failure_policy,
            ));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": self.faithful_headers,
            }
        }));
        let mut hcm = json!({
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
        });
        if self.faithful_headers
            && let Some(map) = hcm.as_object_mut()
        {
            map.insert("server_header_transformation".into(), json!("PASS_THROUGH"));
            map.insert("use_remote_address".into(), json!(true));
            map.insert("skip_xff_append".into(), json!(true));
        }
        let mut chain = json!({ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]});
        if let (Some(mtls), Some(map)) = (mtls, chain.as_object_mut()) {
            map.insert(
                "transport_socket".into(),
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "tls_certificates": [{
                                "certificate_chain": { "filename": mtls.cert_chain },
                                "private_key": { "filename": mtls.private_key },
                            }],
                            "validation_context": { "trusted_ca": { "filename": mtls.client_ca } },
                        }
                    }
                }),
            );
        }
        let mut listener = json!({ "name": name, "address": socket(0), "filter_chains": [chain] });
        if self.exact_balance
            && let Some(map) = listener.as_object_mut()
        {
            map.insert(
                "connection_balance_config".into(),
                json!({ "exact_balance": {} }),
            );
            // One accepting socket, so the balancer (not SO_REUSEPORT hashing) decides.
            map.insert("enable_reuse_port".into(), json!(false));
        }
        listener
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

/// Makes a cluster speak HTTP/2 to its endpoints without negotiation (h2c, prior
/// knowledge): the upstream HTTP protocol options with explicit HTTP/2.
pub fn speak_http2(cluster: &mut Value) {
    if let Some(map) = cluster.as_object_mut() {
        map.insert(
            "typed_extension_protocol_options".into(),
            json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} },
                }
            }),
        );
    }
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
    /// The files of a run kept in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
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
