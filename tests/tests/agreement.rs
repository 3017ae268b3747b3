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

/// A module that is not stakeguard (`tests/wat/probe.wat`): local replies to plain and
/// gRPC requests, callouts to stub clusters answered both ways, a trap, and per-VM state
/// that shows which worker a request ran on. Its configuration is not JSON, so the
/// comparison transforms nothing (time scale 1, no forwarded identity).
pub(crate) mod probe {
    use super::*;
    use stakeguard_harness::envoy::{
        CompareRun, TempDir, default_time_scale, is_stakeguard_policy,
    };
    use stakeguard_harness::replay::FailurePolicy;
    use stakeguard_harness::report::Outcome;

    const CONFIGURATION: &str = "plain text, not JSON";

    /// Records `gap_ms` apart: (method, path, whether gRPC).
    fn records(requests: &[(&str, &str, bool)], gap_ms: i64) -> Vec<traffic::Record> {
        let lines: Vec<String> = requests
            .iter()
            .enumerate()
            .map(|(i, (method, path, grpc))| {
                let headers = match grpc {
                    true => r#"[["content-type","application/grpc"],["te","trailers"]]"#,
                    false => "[]",
                };
                format!(
                    r#"{{"time":{},"request":{{"method":"{method}","authority":"probe.example","path":"{path}","headers":{headers}}},"response":{{"status":200,"headers":[["x-up","1"]],"body":"up"}}}}"#,
                    1_800_000_000_000_i64 + gap_ms * i as i64
                )
            })
            .collect();
        let (records, errors) =
            traffic::read_str(std::path::Path::new("probe.jsonl"), &lines.join("\n")).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        records
    }

    /// The stubs the other tests call: one lets the request through, one refuses it.
    const ALLOW_DENY: &str =
        "[clusters.allow]\nstatus = 200\nbody = \"ok\"\n[clusters.deny]\nstatus = 403\n";

    fn compare(
        requests: &[(&str, &str, bool)],
        workers: u32,
        failure_policy: FailurePolicy,
    ) -> CompareRun {
        compare_with(requests, 100, workers, failure_policy, ALLOW_DENY)
    }

    /// Compares the records of `requests`, `gap_ms` apart, with these stubs.
    pub(crate) fn compare_with(
        requests: &[(&str, &str, bool)],
        gap_ms: i64,
        workers: u32,
        failure_policy: FailurePolicy,
        callouts: &str,
    ) -> CompareRun {
        let dir = TempDir::new("probe").unwrap();
        let wasm = wat::parse_file(repo_root().join("tests/wat/probe.wat")).unwrap();
        let module = dir.path().join("probe.wasm");
        std::fs::write(&module, &wasm).unwrap();
        let configuration = CONFIGURATION.as_bytes();
        let options = CompareOptions {
            envoy: EnvoyOptions {
                binary: envoy_binary().unwrap_or_else(|e| panic!("{e}")),
                module,
                concurrency: workers,
            },
            time_scale: default_time_scale(configuration),
            forward_identity: is_stakeguard_policy(configuration),
        };
        assert_eq!((options.time_scale, options.forward_identity), (1.0, false));
        let base = HarnessConfig {
            workers: workers as usize,
            failure_policy,
            root_id: "probe".to_owned(),
            vm_id: "probe".to_owned(),
            callouts: CalloutConfig::parse(callouts).unwrap(),
            ..HarnessConfig::default()
        };
        let records = records(requests, gap_ms);
        let run = compare_recording(&options, &wasm, configuration, &records, base)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}", run.comparison.render());
        assert_eq!(run.comparison.compared, records.len());
        assert!(
            run.comparison.mismatches.is_empty() && run.comparison.caveats.is_empty(),
            "{}",
            run.comparison.render()
        );
        run
    }

    /// `x-count` of a forwarded response: the number of requests its VM had seen.
    fn count(run: &CompareRun, index: usize) -> String {
        let entry = &run.report.entries[index];
        let change = entry
            .response_header_changes
            .iter()
            .find(|c| &*c.name == "x-count")
            .unwrap_or_else(|| panic!("record {index}: no x-count in {entry:?}"));
        change.value.as_deref().unwrap_or("").to_owned()
    }

    #[test]
    fn envoy_and_the_harness_agree_on_a_module_that_is_not_stakeguard_with_two_workers() {
        let run = compare(
            &[
                ("GET", "/ok", false),
                ("POST", "/deny", true),
                ("GET", "/deny", false),
                ("GET", "/c/allow", false),
                ("GET", "/c/deny", false),
                ("GET", "/ok", false),
                ("POST", "/trap", true),
                ("GET", "/ok", false),
                ("GET", "/ok", false),
                ("GET", "/ok", false),
            ],
            2,
            FailurePolicy::FailReload,
        );
        let e = &run.report.entries;
        // A local reply to a gRPC request is a trailers-only 200 with the mapped status.
        let grpc = e[1].local_reply.as_ref().unwrap();
        assert_eq!(
            (e[1].status, grpc.status, grpc.grpc_status),
            (200, 403, Some(7))
        );
        let envoy_grpc = run.envoy.results[1].response.as_ref().unwrap();
        let header = |name: &str| {
            envoy_grpc
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        // The harness's encoding of the module's body is Envoy's, byte for byte.
        let body = "denied: 100% ~\u{e9}";
        assert_eq!(e[1].local_reply.as_ref().unwrap().body, body);
        let encoded = stakeguard_harness::grpc::percent_encode(body.as_bytes());
        assert_eq!(encoded, "denied: 100%25 %7E%C3%A9");
        assert_eq!(header("grpc-message"), Some(encoded.as_str()));
        assert_eq!(
            (e[2].status, e[2].local_reply.as_ref().unwrap().grpc_status),
            (403, None)
        );
        // The callouts, answered by the stubs on both sides: one lets the request through,
        // one refuses it.
        assert_eq!((e[3].outcome, e[3].status), (Outcome::Forwarded, 200));
        assert_eq!((e[4].outcome, e[4].status), (Outcome::LocalReply, 403));
        // A trap on a gRPC request: Envoy's 503 as grpc-status 14.
        assert_eq!(e[6].outcome, Outcome::Trapped);
        assert_eq!(
            (e[6].status, e[6].local_reply.as_ref().unwrap().grpc_status),
            (200, Some(14))
        );
        // Workers alternate on both sides (x-count is per VM, and the comparison checked
        // Envoy's), and worker 0's next stream after the trap got a fresh VM.
        assert_eq!(
            [0, 5, 7, 8, 9].map(|i| count(&run, i)),
            ["1", "3", "4", "1", "5"].map(String::from)
        );
    }

    #[test]
    fn a_trap_is_handled_alike_under_each_failure_policy() {
        let requests = [
            ("GET", "/ok", false),
            ("GET", "/trap", false),
            ("GET", "/ok", false),
        ];
        for (policy, outcome, status) in [
            (FailurePolicy::FailClosed, Outcome::Trapped, 503),
            (FailurePolicy::FailOpen, Outcome::Trapped, 200),
            (FailurePolicy::FailReload, Outcome::Forwarded, 200),
        ] {
            let run = compare(&requests, 1, policy);
            let after = &run.report.entries[2];
            assert_eq!(
                (after.outcome, after.status),
                (outcome, status),
                "{policy:?}"
            );
        }
    }
}

/// Callouts answered by the stubs on both sides, Envoy's over HTTP/2
/// (`stakeguard_harness::envoy::stubs`): gRPC calls answered with a message, a non-zero
/// status (trailers-only and with a body), a timeout and a reset, and HTTP calls whose
/// answer has trailers, times out or resets. `tests/wat/probe.wat` shows each answer in
/// the outcome: a gRPC message in `x-grpc` on the forwarded response, a gRPC close as
/// status 400 + its code with its message as body, an HTTP answer's status or 502 for
/// none, a trailer `x-check` on the forwarded response.
mod callouts {
    use super::probe::compare_with;
    use stakeguard_harness::replay::FailurePolicy;
    use stakeguard_harness::report::Outcome;

    const STUBS: &str = r#"
[clusters.g_ok]
grpc_status = 0
body = "pong"
latency_ms = 20
headers = { "x-meta" = "1" }
trailers = { "x-trailer" = "2" }
[clusters.g_empty]
grpc_status = 0
[clusters.g_denied]
grpc_status = 7
[clusters.g_denied_with_body]
grpc_status = 7
body = "why"
[clusters.g_slow]
grpc_status = 0
timeout = true
[clusters.g_reset]
grpc_status = 0
reset = true
latency_ms = 5
[clusters.trailers]
status = 200
body = "ok"
trailers = { "x-check" = "passed" }
[clusters.slow]
timeout = true
[clusters.reset]
reset = true
latency_ms = 5
[clusters.allow]
status = 200
"#;

    #[test]
    fn grpc_and_http_callouts_answered_by_stubs_agree() {
        let run = compare_with(
            &[
                ("GET", "/g/g_ok", false),
                ("GET", "/g/g_empty", false),
                ("GET", "/g/g_denied", false),
                ("GET", "/g/g_denied_with_body", false),
                ("GET", "/g/g_slow", false),
                ("GET", "/g/g_reset", false),
                ("GET", "/c/trailers", false),
                ("GET", "/c/allow", false),
                ("GET", "/c/slow", false),
                ("GET", "/c/reset", false),
            ],
            600,
            1,
            FailurePolicy::FailClosed,
            STUBS,
        );
        let e = &run.report.entries;
        let added = |i: usize, name: &str| {
            e[i].response_header_changes
                .iter()
                .find(|c| &*c.name == name)
                .and_then(|c| c.value.as_deref().map(str::to_owned))
        };
        // A message continues the request: the stub's body, or an empty one.
        assert_eq!(
            (e[0].outcome, added(0, "x-grpc").as_deref()),
            (Outcome::Forwarded, Some("pong"))
        );
        assert_eq!(
            (e[1].outcome, added(1, "x-grpc").as_deref()),
            (Outcome::Forwarded, Some(""))
        );
        // Closes: 400 + the gRPC status; PERMISSION_DENIED from the stub (trailers-only,
        // and with a body the unary call drops), UNAVAILABLE for a timeout and a reset.
        let statuses: Vec<u32> = e.iter().map(|x| x.status).collect();
        assert_eq!(statuses, [200, 200, 407, 407, 414, 414, 200, 200, 504, 502]);
        // The close's message (the local reply's body here) is Envoy's, word for word.
        for (i, (harness, envoy)) in e.iter().zip(&run.envoy.results).enumerate().take(6).skip(2) {
            let envoy = envoy.response.as_ref().unwrap();
            assert_eq!(
                harness.local_reply.as_ref().unwrap().body,
                String::from_utf8_lossy(&envoy.body),
                "record {i}"
            );
        }
        assert_eq!(
            e[2].local_reply.as_ref().unwrap().body,
            "stub status{via_upstream}"
        );
        // HTTP: the answer's trailer reaches the module; a timeout is Envoy's 504; a
        // reset fails the call (no answer: 502).
        assert_eq!(added(6, "x-check").as_deref(), Some("passed"));
        assert_eq!(e[7].outcome, Outcome::Forwarded);
        assert_eq!(e[8].local_reply.as_ref().unwrap().status, 504);
    }
}
