//! The `stakeguard` binary end to end: `check`, `replay` (table, JSON Lines, golden
//! files), `diff` between two policies, and `bench`, with a WAT module whose behavior
//! follows its configuration.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Denies every request when its configuration starts with `d`, rejects a
/// configuration starting with `x`, and logs the configuration it got.
const POLICY_MODULE: &str = r#"
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $setp (param i32 i32 i32 i32) (result i32)))
  (data (i32.const 1000) "stakeguard.decision")
  (data (i32.const 1100) "{\"api\":\"demo\",\"control\":\"auth\",\"outcome\":\"block\"}")
  (data (i32.const 1200) "denied")
  (data (i32.const 1300) "policy_deny")
  (global $deny (mut i32) (i32.const 0))"#;

const POLICY_BODY: &str = r#"
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $buf (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 800) (i32.const 804)))
    (drop (call $log (i32.const 4) (i32.load (i32.const 800)) (i32.load (i32.const 804))))
    (global.set $deny (i32.eq (i32.load8_u (i32.load (i32.const 800))) (i32.const 100)))
    (i32.ne (i32.load8_u (i32.load (i32.const 800))) (i32.const 120)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (global.get $deny) (then
      (drop (call $setp (i32.const 1000) (i32.const 19) (i32.const 1100) (i32.const 49)))
      (drop (call $reply (i32.const 403) (i32.const 1300) (i32.const 11) (i32.const 1200) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
      (return (i32.const 1))))
    (i32.const 0))"#;

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("stakeguard-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("m.wat"),
            common::wat_module(POLICY_MODULE, POLICY_BODY),
        )
        .unwrap();
        let traffic = format!("{}\n{}\n", common::get("/a"), common::get("/b"));
        std::fs::write(dir.join("t.jsonl"), traffic).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn stakeguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stakeguard"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_module_logs_and_fails_on_a_rejected_configuration() {
    let f = Files::new("check");
    let (code, out, _) = stakeguard(&[
        "check",
        "--config-string",
        "allow",
        "--module",
        &f.path("m.wat"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("error: allow") && out.contains("ok: "),
        "{out}"
    );
    let (code, out, _) = stakeguard(&[
        "check",
        "--config-string",
        "xbad",
        "--module",
        &f.path("m.wat"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rejected: proxy_on_configure returned false"),
        "{out}"
    );
}

#[test]
fn replay_and_diff_print_the_modules_errors_for_a_refused_configuration() {
    let f = Files::new("refused");
    let bad = f.path("bad.policy");
    std::fs::write(&bad, "xbad from a file").unwrap();
    let (code, out, err) = stakeguard(&[
        "replay",
        "--module",
        &f.path("m.wat"),
        "--policy",
        &bad,
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("error: xbad from a file\n")
            && err.contains("rejected on worker 0: proxy_on_configure returned false"),
        "{err}"
    );
    assert!(
        out.is_empty(),
        "no report for a refused configuration: {out}"
    );
    let good = f.path("good.policy");
    std::fs::write(&good, "allow").unwrap();
    let (code, _, err) = stakeguard(&[
        "diff",
        "--module",
        &f.path("m.wat"),
        "--policy",
        &good,
        "--policy",
        &bad,
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: xbad from a file"), "{err}");
}

#[test]
fn a_policy_argument_that_names_no_file_says_so() {
    let f = Files::new("nofile");
    for args in [
        vec!["check", "nope.json"],
        vec!["check", "policies/nope"],
        vec!["replay", "--policy", "nope.json", "t.jsonl"],
    ] {
        let (code, _, err) = stakeguard(&[&args[..], &["--module", &f.path("m.wat")]].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("no such file `") && err.contains("--config-string"),
            "{args:?}: {err}"
        );
    }
    // JSON text is still a policy, and stays distinguishable from a path.
    let (code, out, _) = stakeguard(&["check", "{\"x\":1}", "--module", &f.path("m.wat")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("error: {\"x\":1}"), "{out}");
}

#[test]
fn a_missing_default_module_hints_at_make_wasm() {
    let f = Files::new("missing");
    let (code, _, err) = stakeguard(&[
        "replay",
        "--module",
        &f.path("nope.wasm"),
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("failed to read module") && err.contains("make wasm"),
        "{err}"
    );
}

#[test]
fn replay_compares_with_a_golden_file_and_can_update_it() {
    let f = Files::new("golden");
    let golden = f.path("golden.jsonl");
    let base = [
        "replay",
        "--module",
        &f.path("m.wat"),
        "--format",
        "jsonl",
        "--expect",
        &golden,
    ];
    let (code, _, err) = stakeguard(
        &[
            &base[..],
            &[
                "--config-string",
                "allow",
                "--update-expect",
                &f.path("t.jsonl"),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) =
        stakeguard(&[&base[..], &["--config-string", "allow", &f.path("t.jsonl")]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, std::fs::read_to_string(&golden).unwrap());
    let (code, _, err) =
        stakeguard(&[&base[..], &["--config-string", "deny", &f.path("t.jsonl")]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("line 1 (entry 0): outcome"), "{err}");
    assert!(
        err.contains("expected: \"forwarded\"") && err.contains("got:      \"local_reply\""),
        "{err}"
    );
}

#[test]
fn replay_prints_a_table_with_decisions_and_a_summary() {
    let f = Files::new("table");
    let (code, out, err) = stakeguard(&[
        "replay",
        "--module",
        &f.path("m.wat"),
        "--config-string",
        "deny",
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("local_reply    403  decision: demo auth block"),
        "{out}"
    );
    assert!(out.contains("outcomes: local_reply=2"), "{out}");
    assert!(out.contains("2  demo auth block"), "{out}");
}

#[test]
fn diff_lists_the_requests_whose_fate_changed_by_api_and_control() {
    let f = Files::new("diff");
    let (old, policy) = (f.path("allow.policy"), f.path("deny.policy"));
    std::fs::write(&old, "allow from a file").unwrap();
    std::fs::write(&policy, "deny from a file").unwrap();
    let (code, out, err) = stakeguard(&[
        "diff",
        "--module",
        &f.path("m.wat"),
        "--policy",
        &old,
        "--policy",
        &policy,
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("demo/auth: 2 request(s) changed"), "{out}");
    assert!(
        out.contains("old: forwarded 200")
            && out.contains("new: local_reply 403 [demo auth block]"),
        "{out}"
    );
    assert!(out.contains("2 of 2 requests changed"), "{out}");
}

#[test]
fn bench_reports_requests_per_second() {
    let f = Files::new("bench");
    let (code, out, err) = stakeguard(&[
        "bench",
        "--module",
        &f.path("m.wat"),
        "--iterations",
        "3",
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 requests x 3 iterations") && out.contains("requests/s"),
        "{out}"
    );
}

/// The built stakeguard.wasm's path (`make wasm`).
fn filter_path() -> String {
    common::filter_wasm();
    common::workspace()
        .join("target/wasm32-wasip1/release/stakeguard_filter.wasm")
        .display()
        .to_string()
}

#[test]
fn check_explains_the_effective_controls_of_an_accepted_policy() {
    let bank = common::workspace().join("policies/examples/bank.json");
    let (code, out, err) = stakeguard(&[
        "check",
        &bank.display().to_string(),
        "--explain",
        "--module",
        &filter_path(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("accepted the configuration\n\npolicy bank-2026-11-29.1: 7 APIs"),
        "{out}"
    );
    assert!(
        out.contains("\n  rate limit (enforce) [tier critical + this API]: 10 requests per user"),
        "{out}"
    );
}

#[test]
fn replay_of_a_refused_stakeguard_policy_prints_its_errors_with_their_paths() {
    let f = Files::new("refused-policy");
    let policy = f.path("bad.json");
    std::fs::write(
        &policy,
        r#"{"revision": "1", "tiers": {"t": {"rate_limit": {"requests": 0, "per": "1m"}}},
            "apis": [{"name": "a", "version": "v1", "owner": "o", "tier": "nope", "routes": [{"path": "/a"}]}]}"#,
    )
    .unwrap();
    let (code, out, err) = stakeguard(&[
        "replay",
        "--module",
        &filter_path(),
        "--policy",
        &policy,
        &f.path("t.jsonl"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "error: stakeguard: policy rejected: tiers.t.rate_limit.requests: is 0",
        "error: stakeguard: policy rejected: apis[0].tier: unknown tier `nope`; expected one of `t`",
        "rejected on worker 0: proxy_on_configure returned false",
    ] {
        assert!(err.contains(expected), "no `{expected}` in\n{err}");
    }
}

#[test]
fn replay_reads_a_directory_in_recorded_time_order_as_its_help_says() {
    let (code, help, _) = stakeguard(&["replay", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("a directory is") && help.contains("recorded-time order"),
        "{help}"
    );
    let files = Files::new("dir");
    let dir = files.dir.join("taps");
    std::fs::create_dir_all(&dir).unwrap();
    // Named against their times: `a` holds the later request.
    let at = |time: &str, path: &str| {
        format!(r#"{{"time":"{time}","request":{{"authority":"h","path":"{path}"}}}}"#)
    };
    std::fs::write(dir.join("a.jsonl"), at("2026-01-01T00:00:02Z", "/second")).unwrap();
    std::fs::write(dir.join("b.jsonl"), at("2026-01-01T00:00:01Z", "/first")).unwrap();
    let (code, out, err) = stakeguard(&[
        "replay",
        "--module",
        &files.path("m.wat"),
        "--config-string",
        "allow",
        "--format",
        "jsonl",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let paths: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("\"path\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(paths, ["/first", "/second"]);
}

#[test]
fn an_unknown_failure_policy_names_the_ones_there_are() {
    let files = Files::new("failure-policy");
    let (code, _, err) = stakeguard(&[
        "replay",
        "--module",
        &files.path("m.wat"),
        "--failure-policy",
        "fail-later",
        &files.path("t.jsonl"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("expected one of fail-closed, fail-open, fail-reload"),
        "{err}"
    );
}
