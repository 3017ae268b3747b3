//! Running a proxy-wasm module in a real Envoy next to the harness, to show that both
//! treat a recording the same way (`stakeguard replay --envoy`), and the Envoy test
//! support the integration tests build on.
//!
//! By responsibility:
//! - [`bootstrap`]: the generated Envoy configuration; [`process`]: the Envoy process
//!   (launch, readiness on admin `/ready`, log capture, kill on drop);
//! - [`http`]: a tiny HTTP/1.1 client and message readers; [`upstream`]: a loopback
//!   upstream and the [`upstream::RecordedUpstream`] that answers with recorded responses;
//!   [`tls`]: real mTLS for records with a peer certificate;
//! - [`stubs`]: the harness's callout stubs served to Envoy as clusters, each by an
//!   [`h2`] server (HTTP/2, which gRPC needs and which carries trailers; [`hpack`]
//!   decodes the requests' headers);
//! - [`transform`]: time scaling and client identity, applied to both sides alike;
//!   [`replay`]: the paced replay client; [`compare`]: the per-record comparison;
//! - [`wait`], [`tempdir`]: polling with deadlines, scratch directories.
//!
//! [`compare_recording`] ties them together.

pub mod bootstrap;
pub mod compare;
pub mod h2;
pub mod hpack;
pub mod http;
pub mod process;
pub mod replay;
pub mod stubs;
pub mod tempdir;
pub mod tls;
pub mod transform;
pub mod upstream;
pub mod wait;

use std::time::Duration;

pub use bootstrap::EnvoyConfig;
pub use compare::Comparison;
pub use process::{Envoy, StartError};
pub use replay::EnvoyOptions;
pub use tempdir::TempDir;

use crate::traffic::Record;
use crate::{Harness, HarnessConfig, HarnessError, LoadError};

/// Why a comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    /// Envoy did not come up (its log is in the message).
    #[error("envoy did not start: {0}")]
    Start(StartError),
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificates or the TLS client could not be made.
    #[error("{0}")]
    Tls(String),
    /// The policy could not be transformed.
    #[error("{0}")]
    Policy(String),
    /// The harness failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

impl EnvoyError {
    fn io(context: &str, source: std::io::Error) -> Self {
        EnvoyError::Io {
            context: context.to_owned(),
            source,
        }
    }
}

impl From<LoadError> for EnvoyError {
    fn from(e: LoadError) -> Self {
        EnvoyError::Harness(HarnessError::Load(e))
    }
}

/// Whether a plugin configuration is a stakeguard policy (a JSON object with `revision`
/// and `apis`, which every policy has): the time scaling and client identity transforms
/// know stakeguard's fields, so only such a configuration can take them.
pub fn is_stakeguard_policy(configuration: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(configuration)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|m| m.contains_key("revision") && m.contains_key("apis"))
        })
        .unwrap_or(false)
}

/// The time scale a comparison takes by default: 60 for a stakeguard policy (a recording
/// of minutes runs in seconds), 1 for any other module's configuration (its durations
/// are unknown, so recorded time runs as it was recorded).
pub fn default_time_scale(configuration: &[u8]) -> f64 {
    if is_stakeguard_policy(configuration) {
        60.0
    } else {
        1.0
    }
}

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// How to run Envoy (binary, module, workers).
    pub envoy: EnvoyOptions,
    /// Recorded time runs this many times faster (policy durations and record gaps are
    /// divided by it).
    pub time_scale: f64,
    /// Carry each record's recorded peer in `x-forwarded-for` with one more trusted hop
    /// (otherwise every client is 127.0.0.1).
    pub forward_identity: bool,
}

/// Both sides of a comparison and how it went.
#[derive(Debug)]
pub struct CompareRun {
    /// The records as both sides got them (transformed; times are Envoy's send times).
    pub records: Vec<Record>,
    /// The policy as both sides got it.
    pub policy: String,
    /// Envoy's side.
    pub envoy: replay::EnvoyReplay,
    /// The harness's side.
    pub report: crate::Report,
    /// The comparison.
    pub comparison: Comparison,
    /// Wall-clock time of the harness replay.
    pub harness_elapsed: Duration,
}

/// The configuration both sides run. A stakeguard policy gets its durations scaled and,
/// when identities are forwarded, one more trusted hop; any other configuration (JSON or
/// not, or none) goes as it is, and asking to transform it is an error.
pub fn transform_policy(policy: &[u8], options: &CompareOptions) -> Result<String, EnvoyError> {
    let scaled = (options.time_scale - 1.0).abs() > f64::EPSILON;
    if is_stakeguard_policy(policy) {
        let value = serde_json::from_slice::<serde_json::Value>(policy)
            .map_err(|e| EnvoyError::Policy(format!("the policy: {e}")))?;
        let mut value = transform::scale_policy(&value, options.time_scale);
        if options.forward_identity {
            transform::trust_one_more_hop(&mut value);
        }
        return Ok(value.to_string());
    }
    if scaled || options.forward_identity {
        return Err(EnvoyError::Policy(
            "the configuration is not a stakeguard policy (a JSON object with `revision` and \
             `apis`), so its durations cannot be scaled nor its trusted hops raised; use \
             --time-scale 1 and --no-forward-identity (the defaults for another module)"
                .to_owned(),
        ));
    }
    // Envoy takes the configuration as a `google.protobuf.StringValue`.
    String::from_utf8(policy.to_vec()).map_err(|_| {
        EnvoyError::Policy(
            "the configuration is not UTF-8 text, and Envoy takes it as a string".to_owned(),
        )
    })
}

/// Replays `records` through Envoy and then through the harness (`base` with the
/// transformed policy, the records stamped with Envoy's send times), and compares.
pub fn compare_recording(
    options: &CompareOptions,
    module: &[u8],
    policy: &[u8],
    records: &[Record],
    base: HarnessConfig,
) -> Result<CompareRun, EnvoyError> {
    if !(options.time_scale.is_finite() && options.time_scale > 0.0) {
        return Err(EnvoyError::Policy(format!(
            "time scale must be a positive number, not {}",
            options.time_scale
        )));
    }
    let policy = transform_policy(policy, options)?;
    if options.envoy.concurrency > 1 && records.iter().any(|r| r.peer_uri_san.is_some()) {
        // The mTLS listener balances its connections on its own, so the two listeners'
        // round-robins would interleave unlike the harness's single one.
        return Err(EnvoyError::Policy(
            "records with a peer certificate go to a second Envoy listener, which hands out \
             workers on its own; compare them with --workers 1"
                .to_owned(),
        ));
    }
    let mut sent: Vec<Record> = records.to_vec();
    for (i, record) in sent.iter_mut().enumerate() {
        if options.forward_identity {
            transform::forward_identity(record);
        }
        transform::mark(record, i);
    }
    let schedule = transform::Schedule::new(&sent, options.time_scale);
    let envoy = replay::run(&options.envoy, &base, &policy, &sent, &schedule)?;

    // The harness gets what Envoy got: Envoy's clock at each send, the socket peer and
    // listener Envoy saw, one connection per request.
    for (i, (record, result)) in sent.iter_mut().zip(&envoy.results).enumerate() {
        record.time_ns = Some(result.sent_ns);
        record.source = Some(format!("127.0.0.1:{}", result.local_port));
        record.destination = Some(format!("127.0.0.1:{}", result.listener_port));
        record.connection = Some(format!("envoy-{i}"));
    }
    let harness = Harness::new(
        module,
        HarnessConfig {
            plugin_configuration: policy.clone().into_bytes(),
            ..base
        },
    )?;
    let started = std::time::Instant::now();
    let report = harness.replay(&sent)?;
    let harness_elapsed = started.elapsed();
    let mut comparison = compare::compare(&sent, &envoy.results, &report.entries);
    if options.envoy.concurrency > 1
        && let Some(first) = envoy.closed_by_envoy.first()
    {
        comparison.caveats.push(format!(
            "Envoy closed {} connection(s) itself, the first of record #{first}: from then on \
             its workers may not take connections round-robin as the harness's do",
            envoy.closed_by_envoy.len()
        ));
    }
    Ok(CompareRun {
        records: sent,
        policy,
        envoy,
        report,
        comparison,
        harness_elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn options(time_scale: f64, forward_identity: bool) -> CompareOptions {
        CompareOptions {
            envoy: EnvoyOptions {
                binary: PathBuf::new(),
                module: PathBuf::new(),
                concurrency: 1,
            },
            time_scale,
            forward_identity,
        }
    }

    #[test]
    fn another_modules_configuration_goes_as_it_is_and_cannot_be_transformed() {
        for config in ["plain text, not JSON", "", r#"{"timeout": "1s"}"#] {
            let bytes = config.as_bytes();
            assert!(!is_stakeguard_policy(bytes));
            assert_eq!(default_time_scale(bytes), 1.0);
            assert_eq!(
                transform_policy(bytes, &options(1.0, false)).unwrap(),
                config
            );
            let err = transform_policy(bytes, &options(60.0, false)).unwrap_err();
            assert!(err.to_string().contains("not a stakeguard policy"), "{err}");
            assert!(transform_policy(bytes, &options(1.0, true)).is_err());
        }
        assert!(transform_policy(&[0xff, 0xfe], &options(1.0, false)).is_err());
    }

    #[test]
    fn a_stakeguard_policy_is_scaled_and_trusts_one_more_hop() {
        let policy =
            br#"{"revision":"1","apis":[],"tiers":{"t":{"rate_limit":{"requests":1,"per":"1m"}}}}"#;
        assert!(is_stakeguard_policy(policy));
        assert_eq!(default_time_scale(policy), 60.0);
        let out: serde_json::Value =
            serde_json::from_str(&transform_policy(policy, &options(60.0, true)).unwrap()).unwrap();
        assert_eq!(out["tiers"]["t"]["rate_limit"]["per"], "1000ms");
        assert_eq!(out["identity"]["client_ip"]["trusted_hops"], 1);
    }
}
