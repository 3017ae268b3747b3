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
//! - [`transform`]: time scaling and client identity, applied to both sides alike;
//!   [`replay`]: the paced replay client; [`compare`]: the per-record comparison;
//! - [`wait`], [`tempdir`]: polling with deadlines, scratch directories.
//!
//! [`compare_recording`] ties them together.

pub mod bootstrap;
pub mod compare;
pub mod http;
pub mod process;
pub mod replay;
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

/// The policy both sides run: durations scaled, one more trusted hop when identities are
/// forwarded. A configuration that is not JSON is passed unchanged when nothing needs
/// transforming.
pub fn transform_policy(policy: &[u8], options: &CompareOptions) -> Result<String, EnvoyError> {
    let identity = (options.time_scale - 1.0).abs() > f64::EPSILON || options.forward_identity;
    match serde_json::from_slice::<serde_json::Value>(policy) {
        Ok(value) => {
            let mut value = transform::scale_policy(&value, options.time_scale);
            if options.forward_identity {
                transform::trust_one_more_hop(&mut value);
            }
            Ok(value.to_string())
        }
        Err(_) if !identity => Ok(String::from_utf8_lossy(policy).into_owned()),
        Err(e) => Err(EnvoyError::Policy(format!(
            "the policy must be JSON to scale its durations or trust one more hop: {e}; \
             use --time-scale 1 and --no-forward-identity for another module's configuration"
        ))),
    }
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
    let mut sent: Vec<Record> = records.to_vec();
    for (i, record) in sent.iter_mut().enumerate() {
        if options.forward_identity {
            transform::forward_identity(record);
        }
        transform::mark(record, i);
    }
    let schedule = transform::Schedule::new(&sent, options.time_scale);
    let envoy = replay::run(&options.envoy, &policy, &sent, &schedule)?;

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
    let comparison = compare::compare(&sent, &envoy.results, &report.entries);
    Ok(CompareRun {
        records: sent,
        policy,
        envoy,
        report,
        comparison,
        harness_elapsed,
    })
}
