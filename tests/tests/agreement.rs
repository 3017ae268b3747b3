//! Envoy and the harness agree: each bundled recording goes through a real Envoy running
//! stakeguard.wasm (with an upstream answering the recorded responses) and through the
//! harness, with the same transforms on both sides (`stakeguard_harness::envoy`):
//! durations and record gaps divided by [`TIME_SCALE`], each record's recorded peer
//! carried in `x-forwarded-for` with one more trusted hop (all test traffic comes from
//! 127.0.0.1), records with a peer certificate sent over real mTLS. Every record must
//! get the same outcome, status, response header changes and published decision.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use stakeguard_harness::HarnessConfig;
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::envoy::{CompareOptions, EnvoyOptions, compare_recording};
use stakeguard_harness::traffic;
use stakeguard_tests::{envoy_binary, repo_root, require_filter_wasm};

/// Recorded time runs this much faster: the bank recording's 25 minutes take about 26 s,
/// and the shortest scaled duration (the 250 ms alert timeout) is still 4 ms.
const TIME_SCALE: f64 = 60.0;

fn agree(recording: &str, policy: &str) {
    let module = require_filter_wasm();
    let records =
        traffic::read_file(&repo_root().join("envoy-examples/traffic").join(recording)).unwrap();
    let policy = std::fs::read(repo_root().join("policies/examples").join(policy)).unwrap();
    let options = CompareOptions {
        envoy: EnvoyOptions {
            binary: envoy_binary().unwrap_or_else(|e| panic!("{e}")),
            module: module.clone(),
            concurrency: 1,
        },
        time_scale: TIME_SCALE,
        forward_identity: true,
    };
    // One worker on both sides; the `alertmanager` cluster answers 200 at once on both
    // (in Envoy it is the recorded upstream, which answers unmarked requests so).
    let base = HarnessConfig {
        workers: 1,
        callouts: CalloutConfig::parse("[clusters.alertmanager]\nstatus = 200\n").unwrap(),
        ..HarnessConfig::default()
    };
    let wasm = std::fs::read(&module).unwrap();
    let run = compare_recording(&options, &wasm, &policy, &records, base)
        .unwrap_or_else(|e| panic!("{recording}: {e}"));
    eprintln!(
        "{recording}: envoy {:.1?}, harness {:.1?}, {} over mTLS\n{}",
        run.envoy.elapsed,
        run.harness_elapsed,
        run.envoy.mtls,
        run.comparison.render()
    );
    assert_eq!(run.comparison.compared, records.len());
    // Not vacuous: the filter answered some requests itself and published decisions.
    assert!(
        run.comparison
            .outcomes
            .get("local_reply")
            .is_some_and(|n| *n > 0)
    );
    assert!(run.comparison.decisions > 0);
    assert!(
        run.comparison.mismatches.is_empty(),
        "{recording}:\n{}",
        run.comparison.render()
    );
}

#[test]
fn envoy_and_the_harness_agree_on_the_bank_recording() {
    agree("bank.jsonl", "bank.json");
}

#[test]
fn envoy_and_the_harness_agree_on_the_retailer_recording() {
    agree("retailer.har", "retailer.json");
}

#[test]
fn envoy_and_the_harness_agree_on_the_minimal_recording() {
    agree("minimal.tap.jsonl", "minimal.json");
}
