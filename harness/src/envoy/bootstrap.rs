//! The Envoy bootstrap, generated as JSON: a listener `main` (and, for mTLS, `mtls`) on
//! 127.0.0.1 with every port chosen by the kernel, routing everything to an `upstream`
//! cluster, optionally through a proxy-wasm filter, with a JSON access log that carries
//! the published decision. A caller that needs another shape edits the
//! [`serde_json::Value`] that [`EnvoyConfig::bootstrap`] returns.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

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
        let alertmanager = self.alertmanager_port.unwrap_or(self.upstream_port);
        let mut listeners = vec![self.listener("main", paths, None)];
        if let Some(mtls) = &self.mtls {
            listeners.push(self.listener("mtls", paths, Some(mtls)));
        }
        json!({
            "admin": { "address": socket(0) },
            "stats_config": stats_config(),
            "static_resources": {
                "listeners": listeners,
                "clusters": [cluster("upstream", self.upstream_port), cluster("alertmanager", alertmanager)],
            }
        })
    }

    /// One listener: the HTTP connection manager with the filters, plain or requiring a
    /// client certificate.
    fn listener(&self, name: &str, paths: &Paths, mtls: Option<&MtlsListener>) -> Value {
        let mut http_filters = Vec::new();
        if let Some(filter) = &self.filter {
            http_filters.push(Self::wasm_filter(filter));
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
        json!({ "name": name, "address": socket(0), "filter_chains": [chain] })
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
