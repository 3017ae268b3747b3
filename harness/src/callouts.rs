//! The stub upstream that answers callouts (`proxy_http_call`, gRPC calls and streams).
//!
//! A harness config file (TOML or JSON, told apart by content) names clusters and how
//! each answers: a status, headers and body after a latency on the virtual clock, or a
//! timeout (no answer until the module's own timeout fires), or a reset (a failure
//! delivered after the latency). A callout to a cluster the file does not name fails at
//! the call as Envoy's does for an unknown cluster (`BadArgument`).
//!
//! ```toml
//! [clusters.alertmanager]
//! status = 200
//! headers = { "content-type" = "application/json" }
//! body = '{"status":"success"}'
//! latency_ms = 20
//!
//! [clusters.slow]
//! timeout = true
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::ConfigError;

/// The `grpc-message` of a gRPC stub's answer with a non-zero `grpc_status`.
pub const STUB_GRPC_MESSAGE: &str = "stub status";

/// Headers written as a table or as a list of pairs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StubHeaders {
    /// `{ "name" = "value" }`
    Map(BTreeMap<String, String>),
    /// `[["name", "value"]]`
    Pairs(Vec<(String, String)>),
}

impl StubHeaders {
    /// The headers as pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            StubHeaders::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            StubHeaders::Pairs(p) => p.clone(),
        }
    }
}

/// How one cluster answers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterStub {
    /// HTTP status of the answer (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    pub headers: Option<StubHeaders>,
    /// Response body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// Response body as base64.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// Response trailers.
    #[serde(default)]
    pub trailers: Option<StubHeaders>,
    /// Virtual time before the answer, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Never answer: the module's timeout fires (or, with none, the stream stalls).
    #[serde(default)]
    pub timeout: bool,
    /// Fail the callout (connection reset) after the latency.
    #[serde(default)]
    pub reset: bool,
    /// gRPC status delivered to `proxy_on_grpc_close` (default 0, OK).
    #[serde(default)]
    pub grpc_status: Option<u32>,
    /// Answer `ShouldRateLimit` calls with the harness's in-memory rate limit service
    /// ([`crate::ratelimit`]), after the latency; the other fields are not used.
    #[serde(default)]
    pub ratelimit_service: bool,
}

/// The whole harness config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CalloutConfig {
    /// Stubs by cluster name.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterStub>,
}

/// What a stub decided for one callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubAnswer {
    /// An answer.
    Response {
        /// HTTP status.
        status: u16,
        /// Headers (`:status` first).
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
        /// Trailers.
        trailers: Vec<(String, String)>,
        /// gRPC status for gRPC callouts.
        grpc_status: u32,
    },
    /// A timeout: no answer.
    Timeout,
    /// A failure.
    Reset,
}

impl CalloutConfig {
    /// Reads a config file: JSON if it starts with `{`, TOML otherwise.
    pub fn from_file(path: &Path) -> Result<CalloutConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        CalloutConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text (JSON or TOML); the error is a message.
    pub fn parse(text: &str) -> Result<CalloutConfig, String> {
        let config: CalloutConfig = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        for (name, stub) in &config.clusters {
            if let Some(b64) = &stub.body_base64 {
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("cluster `{name}`: body_base64: {e}"))?;
            }
        }
        Ok(config)
    }

    /// Whether the cluster exists.
    pub fn knows(&self, cluster: &str) -> bool {
        self.clusters.contains_key(cluster)
    }

    /// Whether the in-memory rate limit service answers the cluster's gRPC calls, and
    /// after which latency.
    pub fn ratelimit_service(&self, cluster: &str) -> Option<u64> {
        self.clusters
            .get(cluster)
            .filter(|stub| stub.ratelimit_service)
            .map(|stub| stub.latency_ms)
    }

    /// Makes the in-memory rate limit service answer `cluster`, unless the file says
    /// how that cluster answers.
    pub fn serve_ratelimit(&mut self, cluster: &str) {
        self.clusters
            .entry(cluster.to_string())
            .or_insert_with(|| ClusterStub {
                ratelimit_service: true,
                ..ClusterStub::default()
            });
    }

    /// The stub's answer for a callout to `cluster`, and its latency.
    pub fn answer(&self, cluster: &str) -> Option<(StubAnswer, u64)> {
        let stub = self.clusters.get(cluster)?;
        if stub.timeout {
            return Some((StubAnswer::Timeout, stub.latency_ms));
        }
        if stub.reset {
            return Some((StubAnswer::Reset, stub.latency_ms));
        }
        let status = stub.status.unwrap_or(200);
        let mut headers = vec![(":status".to_string(), status.to_string())];
        headers.extend(
            stub.headers
                .as_ref()
                .map(StubHeaders::pairs)
                .unwrap_or_default(),
        );
        let body = match (&stub.body_base64, &stub.body) {
            (Some(b64), _) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            (None, Some(text)) => text.as_bytes().to_vec(),
            (None, None) => Vec::new(),
        };
        Some((
            StubAnswer::Response {
                status,
                headers,
                body,
                trailers: stub
                    .trailers
                    .as_ref()
                    .map(StubHeaders::pairs)
                    .unwrap_or_default(),
                grpc_status: stub.grpc_status.unwrap_or(0),
            },
            stub.latency_ms,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_configs_read_the_same() {
        let toml =
            "[clusters.a]\nstatus = 201\nheaders = { x = \"1\" }\nbody = \"hi\"\nlatency_ms = 5\n";
        let json =
            r#"{"clusters":{"a":{"status":201,"headers":[["x","1"]],"body":"hi","latency_ms":5}}}"#;
        let a = CalloutConfig::parse(toml).unwrap();
        let b = CalloutConfig::parse(json).unwrap();
        assert_eq!(a.answer("a"), b.answer("a"));
        let (answer, latency) = a.answer("a").unwrap();
        assert_eq!(latency, 5);
        assert!(matches!(answer, StubAnswer::Response { status: 201, .. }));
        assert!(a.answer("b").is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = CalloutConfig::parse("[clusters.a]\nstatuss = 1\n").unwrap_err();
        assert!(err.contains("statuss"), "{err}");
    }
}
