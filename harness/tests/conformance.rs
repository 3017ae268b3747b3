//! The conformance module's transcript under the harness, checked against a golden file
//! (set `UPDATE_GOLDEN=1` to rewrite it), and the host behaviors it exercises.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::report::Outcome;
use stakeguard_harness::{HarnessConfig, golden};

fn config(workers: usize) -> HarnessConfig {
    let callouts = std::fs::read_to_string(common::data("conformance-callouts.toml")).unwrap();
    HarnessConfig {
        plugin_configuration: br#"{"conformance":true}"#.to_vec(),
        workers,
        callouts: CalloutConfig::parse(&callouts).unwrap(),
        ..HarnessConfig::default()
    }
}

#[test]
fn the_transcript_matches_the_golden_file() {
    let traffic = std::fs::read_to_string(common::data("conformance.jsonl")).unwrap();
    let report = common::replay_conformance(config(1), &traffic);
    let got = report.to_jsonl();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/conformance.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("golden file; run with UPDATE_GOLDEN=1");
    let diffs = golden::compare(&expected, &got);
    assert!(diffs.is_empty(), "{}", golden::render(&diffs));
}

#[test]
fn the_same_replay_gives_the_same_output() {
    let traffic = std::fs::read_to_string(common::data("conformance.jsonl")).unwrap();
    let a = common::replay_conformance(config(2), &traffic).to_jsonl();
    let b = common::replay_conformance(config(2), &traffic).to_jsonl();
    assert_eq!(a, b);
}

#[test]
fn headers_bodies_and_local_replies_follow_envoy() {
    let traffic = std::fs::read_to_string(common::data("conformance.jsonl")).unwrap();
    let report = common::replay_conformance(config(1), &traffic);
    let forward = &report.entries[0];
    assert_eq!(forward.outcome, Outcome::Forwarded);
    assert_eq!(forward.status, 200);
    // The module prepended `<` and appended `>` to `hello`: the report says how long the
    // body became and which it is, and its text only when asked.
    let rewritten = forward
        .request_body_changed
        .as_ref()
        .expect("a rewritten body");
    assert_eq!((rewritten.length, rewritten.text.as_deref()), (7, None));
    assert_eq!(rewritten.sha256, "f2bfd53327f9");
    let shown = common::replay_conformance(
        HarnessConfig {
            show_bodies: true,
            ..config(1)
        },
        &traffic,
    );
    let text = shown.entries[0]
        .request_body_changed
        .as_ref()
        .and_then(|b| b.text.clone());
    assert_eq!(text.as_deref(), Some("<hello>"));
    let changes: Vec<String> = forward
        .request_header_changes
        .iter()
        .map(|c| format!("{} {}", c.op, c.name))
        .collect();
    assert_eq!(
        changes,
        vec!["remove x-conformance-remove-me", "add x-conformance"]
    );
    assert_eq!(
        forward
            .properties
            .get("conformance.result")
            .map(String::as_str),
        Some("seen")
    );
    let logs = forward.logs.join("\n");
    assert!(
        logs.contains("on_request_body: get_buffer_bytes(0, 0, 4294967295) -> Ok = \"<hello>\""),
        "{logs}"
    );
    assert!(
        logs.contains("on_request_body: get_header_map_value(0, \":path\") -> BadArgument"),
        "{logs}"
    );

    let local = &report.entries[1];
    assert_eq!(local.outcome, Outcome::LocalReply);
    assert_eq!(local.status, 403);
    let reply = local.local_reply.as_ref().unwrap();
    assert_eq!(
        (reply.details.as_str(), reply.body.as_str()),
        ("conformance_local", "denied by conformance")
    );
    assert!(local.logs.iter().any(|l| l.contains("get_header_map_value(2, \"x-conformance-local\") -> Ok = \"yes\"")));
}

#[test]
fn callouts_are_answered_by_the_stub_on_the_virtual_clock() {
    let traffic = std::fs::read_to_string(common::data("conformance.jsonl")).unwrap();
    let report = common::replay_conformance(config(1), &traffic);
    let callout = &report.entries[2];
    assert_eq!(callout.outcome, Outcome::Forwarded);
    assert_eq!(callout.status, 204);
    assert_eq!(callout.callouts.len(), 1);
    assert_eq!(callout.callouts[0].answer, "200");
    assert_eq!(callout.callouts[0].after_ms, 1500);
    let logs = callout.logs.join("\n");
    assert!(
        logs.contains(
            "http_call(\"conformance_upstream\", \"/check\", headers=false) -> BadArgument"
        )
    );
    assert!(
        logs.contains(
            "on_http_call_response: get_buffer_bytes(4, 0, 4294967295) -> Ok = \"allowed\""
        )
    );
    // The stub is slower than the module's 5 s timeout: Envoy answers 504.
    let mut slow = config(1);
    slow.callouts =
        CalloutConfig::parse("[clusters.conformance_upstream]\nlatency_ms = 9000\n").unwrap();
    let report = common::replay_conformance(slow, &common::get("/callout"));
    assert_eq!(report.entries[0].callouts[0].answer, "timeout");
    assert!(
        report.entries[0]
            .logs
            .iter()
            .any(|l| l.contains("get_header_map_value(6, \":status\") -> Ok = \"504\""))
    );
    // A reset reaches the module as a response without headers and status BrokenConnection.
    let mut reset = config(1);
    reset.callouts =
        CalloutConfig::parse("[clusters.conformance_upstream]\nreset = true\n").unwrap();
    let report = common::replay_conformance(reset, &common::get("/callout"));
    assert!(
        report.entries[0]
            .logs
            .iter()
            .any(|l| l.contains("get_status -> Ok = 11")),
        "{:?}",
        report.entries[0].logs
    );
}

#[test]
fn shared_data_cas_is_global_across_workers() {
    let report = common::replay_conformance(config(2), &common::get("/"));
    let root = report.summary.root_logs.join("\n");
    // Worker 0 created the key; worker 1's set with a made-up cas now mismatches.
    assert!(root.contains("worker 0: info: on_vm_start: set_shared_data(\"conformance.created\", \"v\", cas=12345) -> Ok"), "{root}");
    assert!(root.contains("worker 1: info: on_vm_start: set_shared_data(\"conformance.created\", \"v\", cas=12345) -> CasMismatch"), "{root}");
    // Metrics are per proxy: both VMs incremented the same counter.
    assert_eq!(report.summary.metrics["conformance_requests"].value, 4);
}

#[test]
fn a_paused_stream_resumes_on_a_tick_and_an_abandoned_one_stalls() {
    let traffic = format!("{}\n{}\n", common::get("/pause"), common::get("/stall"));
    let report = common::replay_conformance(config(1), &traffic);
    let paused = &report.entries[0];
    assert_eq!(paused.outcome, Outcome::Forwarded, "{paused:?}");
    assert_eq!(paused.status, 200);
    // Logged after set_effective_context, so it belongs to the stream.
    assert!(
        paused
            .logs
            .iter()
            .any(|l| l.contains("on_tick: continue_stream(request) -> Ok")),
        "{:?}",
        paused.logs
    );
    let stalled = &report.entries[1];
    assert_eq!(stalled.outcome, Outcome::Stalled);
    assert_eq!(report.summary.stalled, 1);
}
