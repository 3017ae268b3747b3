//! A trap and the policy's `on_error`. stakeguard.wasm answers every internal error of
//! its own with the tier's `on_error` (a counter-store failure: 503 or through); what is
//! left that could trap it (the VM's memory exhausted, a bug) cannot be caught inside
//! the VM, and Envoy then applies the filter's one `failure_policy` to every request the
//! filter sees. So the policy says which failure policy it needs
//! (`stakeguard_policies::posture::TrapPosture`, printed by `stakeguard check --explain`):
//! fail closed when any API's `on_error` is `fail_closed`, open only when every API's is
//! `fail_open`; and the configurations we ship carry it.
//!
//! The trapping module is `tests/wat/probe.wat` (it traps on `/trap`), run in a real
//! Envoy with one worker and in the harness with the failure policy each policy needs:
//! after the trap, the bank's requests (its critical tier fails closed) get 503 on both
//! tiers, and with every tier `fail_open` they go through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use stakeguard_harness::envoy::TempDir;
use stakeguard_harness::envoy::bootstrap::PluginIds;
use stakeguard_harness::replay::FailurePolicy;
use stakeguard_harness::{Harness, HarnessConfig, traffic};
use stakeguard_policies::model::OnError;
use stakeguard_policies::posture::{TrapPosture, posture};
use stakeguard_tests::client::Request;
use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::repo_root;
use stakeguard_tests::upstream::Upstream;

/// An account (the bank's critical tier, `fail_closed`), the request that traps, then an
/// account again and a rates page (the standard tier, `fail_open`).
const PATHS: [&str; 4] = [
    "/api/v2/accounts/7",
    "/trap",
    "/api/v2/accounts/7",
    "/api/v1/rates/eur",
];

fn bank() -> String {
    std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap()
}

/// The bank with every tier's `on_error` fail_open.
fn bank_failing_open() -> String {
    bank().replace(r#""on_error": "fail_closed""#, r#""on_error": "fail_open""#)
}

fn on_trap(policy: &str) -> TrapPosture {
    posture(policy).unwrap().on_trap
}

/// The harness's failure policy with the Envoy name the policy asks for.
fn failure_policy(on_trap: &TrapPosture) -> FailurePolicy {
    FailurePolicy::NAMES
        .iter()
        .filter_map(|name| FailurePolicy::parse(name))
        .find(|policy| policy.envoy_name() == on_trap.envoy())
        .unwrap()
}

fn probe() -> Vec<u8> {
    wat::parse_file(repo_root().join("tests/wat/probe.wat")).unwrap()
}

/// The statuses a client sees for [`PATHS`] through a real Envoy (one worker, so every
/// request after the trap meets the failed VM).
fn through_envoy(failure: FailurePolicy) -> Vec<u16> {
    let dir = TempDir::new("on-error").unwrap();
    let module = dir.path().join("probe.wasm");
    std::fs::write(&module, probe()).unwrap();
    let upstream = Upstream::start().unwrap();
    let mut config = EnvoyConfig::new(upstream.port()).with_filter(&module, "not a policy");
    config.concurrency = 1;
    config.failure_policy = failure;
    config.plugin = PluginIds {
        root_id: "probe".to_owned(),
        vm_id: "probe".to_owned(),
        vm_configuration: String::new(),
    };
    let envoy = Envoy::start(&config).unwrap_or_else(|e| panic!("{e}"));
    PATHS
        .iter()
        .map(|path| envoy.send(&Request::get(path)).status)
        .collect()
}

/// The statuses of [`PATHS`] replayed through the harness (one worker).
fn through_the_harness(failure: FailurePolicy) -> Vec<u16> {
    let lines: Vec<String> = PATHS
        .iter()
        .enumerate()
        .map(|(i, path)| {
            format!(
                r#"{{"time":{},"request":{{"method":"GET","authority":"bank.example.com","path":"{path}"}},"response":{{"status":200}}}}"#,
                1_800_000_000_000_i64 + 100 * i as i64
            )
        })
        .collect();
    let (records, errors) =
        traffic::read_str(std::path::Path::new("on-error.jsonl"), &lines.join("\n")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let harness = Harness::new(
        &probe(),
        HarnessConfig {
            plugin_configuration: b"not a policy".to_vec(),
            workers: 1,
            failure_policy: failure,
            root_id: "probe".to_owned(),
            vm_id: "probe".to_owned(),
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let report = harness.replay(&records).unwrap();
    report
        .entries
        .iter()
        .map(|e| u16::try_from(e.status).unwrap())
        .collect()
}

#[test]
fn the_bank_fails_closed_on_a_trap_on_both_tiers_in_envoy_and_in_the_harness() {
    let on_trap = on_trap(&bank());
    assert_eq!(on_trap.on_error, OnError::FailClosed);
    assert!(on_trap.fail_closed.contains(&"accounts v2".to_owned()));
    assert_eq!(on_trap.fail_open, ["rates v1"]);
    let failure = failure_policy(&on_trap);
    assert_eq!(failure, FailurePolicy::FailClosed);
    // Envoy applies one failure policy per filter: the rates page (`fail_open`) is refused
    // too once the VM has failed.
    let expected = vec![200, 503, 503, 503];
    assert_eq!(through_envoy(failure), expected, "Envoy");
    assert_eq!(through_the_harness(failure), expected, "the harness");
}

#[test]
fn a_policy_failing_open_everywhere_lets_requests_through_after_a_trap_in_envoy_and_in_the_harness()
{
    let on_trap = on_trap(&bank_failing_open());
    assert_eq!(on_trap.on_error, OnError::FailOpen);
    assert!(on_trap.fail_closed.is_empty(), "{on_trap:?}");
    let failure = failure_policy(&on_trap);
    assert_eq!(failure, FailurePolicy::FailOpen);
    // The request whose callback trapped gets 503 under fail open too (Envoy's choice);
    // those meeting the failed VM go through without the filter.
    let expected = vec![200, 503, 200, 200];
    assert_eq!(through_envoy(failure), expected, "Envoy");
    assert_eq!(through_the_harness(failure), expected, "the harness");
}

/// The failure policy written in a YAML file, after `key: `.
fn yaml_value(path: &str, key: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let line = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}: "))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("{path}: no `{key}:`"));
    line.trim_matches('"').to_owned()
}

/// The shipped configurations carry the bank policy (other tests check that) with the
/// failure policy it needs.
#[test]
fn the_shipped_configurations_fail_as_their_policy_needs() {
    let on_trap = on_trap(&bank());
    assert_eq!(
        yaml_value("envoy-examples/standalone/envoy.yaml", "failure_policy"),
        on_trap.envoy()
    );
    for manifest in [
        "envoy-examples/istio/wasmplugin.yaml",
        "envoy-examples/istio/trafficextension.yaml",
    ] {
        assert_eq!(
            yaml_value(manifest, "failStrategy"),
            on_trap.istio(),
            "{manifest}"
        );
    }
}
