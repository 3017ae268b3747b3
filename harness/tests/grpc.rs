//! gRPC callouts answered by stubs: a message to `proxy_on_grpc_receive`, a failure to
//! `proxy_on_grpc_close` with its status, an unknown cluster refused at the call.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::HarnessConfig;
use stakeguard_harness::callouts::CalloutConfig;

const IMPORTS: &str = r#"
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))"#;

const BODY: &str = r#"
  (data (i32.const 100) "grpc_backend")
  (data (i32.const 120) "pkg.Svc")
  (data (i32.const 140) "Check")
  (data (i32.const 160) "ping")
  (data (i32.const 200) "closed")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 700) (call $call
      (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 7) (i32.const 140) (i32.const 5)
      (i32.const 0) (i32.const 0) (i32.const 160) (i32.const 4) (i32.const 1000) (i32.const 300))))
    (i32.const 0))
  (func (export "proxy_on_grpc_receive") (param i32 i32 i32)
    (if (i32.ne (call $buf (i32.const 5) (i32.const 0) (local.get 2) (i32.const 800) (i32.const 804)) (i32.const 0)) (then unreachable))
    (drop (call $log (i32.const 2) (i32.load (i32.const 800)) (i32.load (i32.const 804)))))
  (func (export "proxy_on_grpc_close") (param i32 i32 i32)
    (drop (call $log (i32.const 2) (i32.const 200) (i32.add (i32.const 4) (local.get 2)))))"#;

fn config(stub: &str) -> HarnessConfig {
    HarnessConfig {
        callouts: CalloutConfig::parse(stub).unwrap(),
        ..HarnessConfig::default()
    }
}

#[test]
fn a_grpc_answer_reaches_on_grpc_receive_on_the_root_context() {
    let module = common::wat_module(IMPORTS, BODY);
    let stub = "[clusters.grpc_backend]\nbody = \"pong\"\nlatency_ms = 3\n";
    let report = common::replay(&module, config(stub), &common::get("/"));
    let callout = &report.entries[0].callouts[0];
    assert_eq!(
        (callout.kind.as_str(), callout.method.as_str()),
        ("grpc", "pkg.Svc/Check")
    );
    assert!(
        report
            .summary
            .root_logs
            .iter()
            .any(|l| l.ends_with("info: pong")),
        "{:?}",
        report.summary.root_logs
    );
}

#[test]
fn a_reset_closes_the_call_with_unavailable() {
    let module = common::wat_module(IMPORTS, BODY);
    let report = common::replay(
        &module,
        config("[clusters.grpc_backend]\nreset = true\n"),
        &common::get("/"),
    );
    // The close callback logs 4 + status bytes from "closed": status 14 (UNAVAILABLE)
    // shows the whole word; status 0 would show only "clos".
    assert!(
        report
            .summary
            .root_logs
            .iter()
            .any(|l| l.contains("info: closed\u{0}")),
        "{:?}",
        report.summary.root_logs
    );
}

#[test]
fn a_grpc_call_to_an_unknown_cluster_is_a_parse_failure() {
    let module = common::wat_module(IMPORTS, BODY);
    let report = common::replay(&module, config(""), &common::get("/"));
    assert!(report.entries[0].callouts.is_empty());
    // The status (ParseFailure, 4, as Envoy's `grpcCall` returns) was used as the length
    // of a log message at 700 (four zero bytes).
    assert_eq!(
        report.entries[0].logs,
        vec!["info: \u{0}\u{0}\u{0}\u{0}".to_string()]
    );
}

#[test]
fn a_grpc_callout_answered_with_an_error_shows_its_grpc_status() {
    let module = common::wat_module(IMPORTS, BODY);
    let stub = "[clusters.grpc_backend]\ngrpc_status = 7\n";
    let report = common::replay(&module, config(stub), &common::get("/"));
    let callout = &report.entries[0].callouts[0];
    // The HTTP status of a gRPC answer is 200 whatever the code; the code is what counts.
    assert_eq!(
        (callout.answer.as_str(), callout.grpc_status),
        ("200", Some(7))
    );
    assert!(
        report
            .to_table()
            .contains("callout grpc_backend pkg.Svc/Check  -> 200 grpc-status 7 PERMISSION_DENIED"),
        "{}",
        report.to_table()
    );
}

/// The agreement tests' module (`tests/wat/probe.wat`): `/deny` is a local reply 403
/// with body `denied: 100% ~é`.
fn probe() -> Vec<u8> {
    std::fs::read(common::workspace().join("tests/wat/probe.wat")).unwrap()
}

#[test]
fn a_local_reply_to_a_grpc_request_is_a_trailers_only_grpc_answer() {
    let grpc = r#"{"request":{"method":"POST","authority":"a","path":"/deny","headers":[["content-type","application/grpc+proto"]]}}"#;
    let plain = r#"{"request":{"method":"GET","authority":"a","path":"/deny"}}"#;
    let report = common::replay(
        &probe(),
        HarnessConfig::default(),
        &format!("{grpc}\n{plain}\n"),
    );
    let (g, p) = (&report.entries[0], &report.entries[1]);
    let reply = g.local_reply.as_ref().unwrap();
    assert_eq!(
        (g.status, reply.status, reply.grpc_status),
        (200, 403, Some(7))
    );
    // What the module's response callback saw: no body, the gRPC headers.
    let added: Vec<String> = g
        .response_header_changes
        .iter()
        .map(|c| format!("{} {}", c.name, c.value.as_deref().unwrap_or("")))
        .collect();
    assert!(added.contains(&"x-count 1".to_string()), "{added:?}");
    assert!(
        report
            .to_table()
            .contains("grpc-status 7 PERMISSION_DENIED")
    );
    let plain_reply = p.local_reply.as_ref().unwrap();
    assert_eq!((p.status, plain_reply.grpc_status), (403, None));
}
