//! The bundled recordings (`envoy-examples/traffic/`) replayed through the built
//! stakeguard.wasm with their example policies and callout stubs, pinned by golden files
//! in `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them). Together the recordings must
//! exercise every control of the engine and both blocking and monitoring outcomes, so
//! that a golden file that silently lost a control fails here rather than in review.
//! A second pass through the same VMs must decide like the first (the bench relies on it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::RECORDINGS;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use stakeguard_harness::bench::pass_period_ns;
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::replay::first_time_ns;
use stakeguard_harness::report::{Report, decision_fields};
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig, golden};

/// The controls a published decision or an event log line must name somewhere across
/// the recordings (response hardening is silent: see its own test).
const CONTROLS: [&str; 13] = [
    "path",
    "unknown_route",
    "lifecycle",
    "method",
    "auth",
    "session",
    "login",
    "rate_limit",
    "body",
    "ownership",
    "claims",
    "quota",
    "cors",
];

/// stakeguard.wasm compiled once per test binary, reconfigured per recording.
fn filter() -> &'static Harness {
    static FILTER: OnceLock<Harness> = OnceLock::new();
    FILTER.get_or_init(|| {
        Harness::new(common::filter_wasm(), HarnessConfig::default()).expect("load stakeguard.wasm")
    })
}

fn harness(policy: &str) -> Harness {
    let root = common::workspace();
    let policy = std::fs::read(root.join("policies/examples").join(policy)).unwrap();
    let callouts = CalloutConfig::from_file(&root.join("envoy-examples/traffic/callouts.toml"))
        .expect("callout stubs");
    filter().reconfigure(HarnessConfig {
        plugin_configuration: policy,
        callouts,
        ..HarnessConfig::default()
    })
}

fn traffic(file: &str) -> Vec<Record> {
    traffic::read_file(
        &common::workspace()
            .join("envoy-examples/traffic")
            .join(file),
    )
    .expect("recording")
}

fn replay(name: &str) -> Report {
    let (_, file, policy) = RECORDINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("a known recording");
    harness(policy).replay(&traffic(file)).expect("replay")
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.jsonl"))
}

fn check_golden(name: &str) {
    let got = replay(name).to_jsonl();
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    let diffs = golden::compare(&expected, &got);
    assert!(
        diffs.is_empty(),
        "{name}: {}\nrerun with UPDATE_GOLDEN=1 if the change is intended",
        golden::render(&diffs)
    );
}

#[test]
fn the_bank_recording_matches_its_golden_file() {
    check_golden("bank");
}

#[test]
fn the_retailer_recording_matches_its_golden_file() {
    check_golden("retailer");
}

#[test]
fn the_minimal_recording_matches_its_golden_file() {
    check_golden("minimal");
}

#[test]
fn a_replay_is_deterministic() {
    assert_eq!(replay("bank").to_jsonl(), replay("bank").to_jsonl());
}

/// Every (field, value) the recordings publish: decisions' fields and the fields of
/// the JSON event lines the filter logs.
fn published(reports: &[Report]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for e in reports.iter().flat_map(|r| &r.entries) {
        if let Some(d) = &e.decision {
            out.extend(decision_fields(d));
        }
        for line in &e.logs {
            let json = line.split_once(": ").map_or("", |(_, rest)| rest);
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(json) {
                out.extend(decision_fields(&event));
            }
        }
    }
    out
}

#[test]
fn the_recordings_exercise_every_control_and_both_blocking_modes() {
    let reports: Vec<Report> = RECORDINGS.iter().map(|(n, _, _)| replay(n)).collect();
    let seen = published(&reports);
    let missing: Vec<&str> = CONTROLS
        .iter()
        .filter(|c| !seen.contains(&("control".to_string(), c.to_string())))
        .copied()
        .collect();
    assert!(missing.is_empty(), "controls never published: {missing:?}");
    for outcome in ["blocked", "would_block"] {
        assert!(
            seen.contains(&("outcome".to_string(), outcome.to_string())),
            "no `{outcome}` outcome in the recordings"
        );
    }
}

#[test]
fn response_hardening_shows_in_the_response_headers() {
    let report = replay("bank");
    let changes: BTreeSet<String> = report
        .entries
        .iter()
        .flat_map(|e| &e.response_header_changes)
        .map(|c| format!("{} {}", c.op, c.name))
        .collect();
    for expected in [
        "remove server",
        "remove x-powered-by",
        "add strict-transport-security",
        "add cache-control",
        "add x-content-type-options",
        "set set-cookie",
    ] {
        assert!(
            changes.contains(expected),
            "no `{expected}` among {changes:?}"
        );
    }
}

#[test]
fn a_second_pass_through_the_same_vms_decides_like_the_first() {
    let records = traffic("bank.jsonl");
    let h = harness("bank.json");
    let mut session = h.session(first_time_ns(&records)).unwrap();
    let fate = |r: &Report| -> Vec<(String, u32, Option<String>)> {
        r.entries
            .iter()
            .map(|e| (e.outcome.name().to_string(), e.status, e.decision_label()))
            .collect()
    };
    let first = session.replay(&records, 0, &mut |_| {});
    let second = session.replay(&records, pass_period_ns(&records), &mut |_| {});
    assert_eq!(fate(&first), fate(&second));
}

/// Envoy keeps ticking after the last request, so the alerts a module sent are counted
/// in its stats even when the last answers arrive after the last record: however the
/// recording is cut, every answered alert call shows in `stakeguard.alerts.sent`.
#[test]
fn the_summary_counts_alerts_answered_after_the_last_record() {
    let records = traffic("bank.jsonl");
    let h = harness("bank.json");
    let mut alerting_cuts = 0;
    for cut in (10..=records.len()).step_by(7) {
        let report = h.replay(&records[..cut]).unwrap();
        let answered = report
            .summary
            .root_logs
            .iter()
            .filter(|l| l.contains("callout alertmanager POST /api/v2/alerts -> 200"))
            .count() as u64;
        let sent = report
            .summary
            .metrics
            .get("stakeguard.alerts.sent")
            .map_or(0, |m| m.value);
        assert_eq!(sent, answered, "the first {cut} records");
        alerting_cuts += usize::from(answered > 0);
    }
    assert!(
        alerting_cuts > 10,
        "too few cuts send alerts: {alerting_cuts}"
    );
}
