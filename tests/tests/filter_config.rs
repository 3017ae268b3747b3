//! The configuration lifecycle in a real Envoy: a valid policy is taken into use (log line,
//! revision gauge, accepted counter); an invalid one is refused with every validation
//! error in Envoy's log, and Envoy does not start with it.

use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::stats::sum;
use stakeguard_tests::upstream::Upstream;
use stakeguard_tests::wait::eventually;

const MINIMAL: &str = r#"{
  "revision": "cfg-1",
  "tiers": { "default": { "rate_limit": { "requests": 100, "per": "1m" } } },
  "apis": [ { "name": "api", "version": "v1", "owner": "team-api", "tier": "default", "routes": [ { "path": "/api/**" } ] } ]
}"#;

fn module() -> std::path::PathBuf {
    stakeguard_tests::require_filter_wasm()
}

#[test]
fn a_valid_policy_is_taken_into_use_and_its_revision_is_a_gauge() {
    let upstream = Upstream::start().unwrap();
    let envoy = Envoy::start(&EnvoyConfig::new(upstream.port()).with_filter(&module(), MINIMAL))
        .unwrap_or_else(|e| panic!("{e}"));
    // Envoy flushes its log file every 50 ms: the line may land after it is ready.
    let revision = stakeguard_tests::wait::eventually(|| {
        let lines = envoy.log_lines("stakeguard: policy revision cfg-1 in use");
        (!lines.is_empty()).then_some(lines)
    });
    assert!(
        revision.is_some(),
        "revision log line missing:\n{}",
        envoy.log()
    );
    let samples = envoy.prometheus();
    assert_eq!(
        sum(&samples, "stakeguard_policy", &[("revision", "cfg-1")]),
        1.0,
        "{:?}",
        samples
            .iter()
            .filter(|s| s.name.starts_with("stakeguard"))
            .collect::<Vec<_>>()
    );
    assert!(sum(&samples, "stakeguard_config_accepted", &[]) >= 1.0);
    let resp = envoy.send(&stakeguard_tests::client::Request::get("/api/x"));
    assert_eq!(resp.status, 200);
}

#[test]
fn an_invalid_policy_is_refused_with_every_error_and_envoy_does_not_start() {
    let upstream = Upstream::start().unwrap();
    let bad = r#"{ "revision": "bad-1", "tiers": { "t": { "mode": "sometimes" } },
                   "apis": [ { "name": "a", "version": "v1", "owner": "o", "tier": "missing", "routes": [] } ] }"#;
    let err = match Envoy::start(&EnvoyConfig::new(upstream.port()).with_filter(&module(), bad)) {
        Ok(envoy) => panic!("envoy started with an invalid policy:\n{}", envoy.log()),
        Err(e) => e,
    };
    let rejected: Vec<&str> = err
        .log
        .lines()
        .filter(|l| l.contains("stakeguard: policy rejected:"))
        .collect();
    assert!(
        !rejected.is_empty(),
        "no rejection lines in the log:\n{}",
        err.log
    );
    assert!(
        rejected.iter().all(|l| l.contains("[error]")),
        "rejections are logged at error level: {rejected:#?}"
    );
    assert!(
        rejected.iter().any(|l| l.contains("apis")),
        "errors carry JSON paths: {rejected:#?}"
    );
    let _ = eventually(|| Some(()));
}
