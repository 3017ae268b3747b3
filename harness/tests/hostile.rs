//! Hostile and broken modules in inline WAT: out-of-bounds pointers, a bad allocator,
//! infinite loops, traps with backtraces, missing imports and exports, ABI 0.2.0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::replay::FailurePolicy;
use stakeguard_harness::report::Outcome;
use stakeguard_harness::{Harness, HarnessConfig, LoadError};

const LOG: &str = r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;
const GET_HEADER: &str = r#"(import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))"#;

#[test]
fn out_of_bounds_pointers_get_invalid_memory_access() {
    let body = r#"
  (data (i32.const 16) ":path")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; a message past the end of memory, and a length that wraps
    (if (i32.ne (call $log (i32.const 2) (i32.const 0x1fff0) (i32.const 100)) (i32.const 6)) (then unreachable))
    (if (i32.ne (call $log (i32.const 2) (i32.const 16) (i32.const -1)) (i32.const 6)) (then unreachable))
    ;; return pointers outside memory
    (if (i32.ne (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const -8) (i32.const -4)) (i32.const 6)) (then unreachable))
    ;; a bad map type wins over memory checks
    (if (i32.ne (call $get (i32.const 99) (i32.const 16) (i32.const 5) (i32.const -8) (i32.const -4)) (i32.const 2)) (then unreachable))
    (i32.const 0))"#;
    let module = common::wat_module(&format!("{LOG}\n{GET_HEADER}"), body);
    let report = common::replay(&module, HarnessConfig::default(), &common::get("/"));
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Forwarded,
        "{:?}",
        report.entries[0].trap
    );
}

#[test]
fn a_bad_allocator_address_is_invalid_memory_access() {
    let module = format!(
        r#"(module
  {GET_HEADER}
  (memory (export "memory") 1)
  (data (i32.const 16) ":path")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0xfff00))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 36)) (i32.const 6)) (then unreachable))
    (i32.const 0)))"#
    );
    let report = common::replay(
        module.as_bytes(),
        HarnessConfig::default(),
        &common::get("/"),
    );
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Forwarded,
        "{:?}",
        report.entries[0].trap
    );
}

fn looping_module() -> Vec<u8> {
    common::wat_module(
        "",
        r#"(func $spin (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $l (br $l))
    (i32.const 0))"#,
    )
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_and_fails_closed() {
    let config = HarnessConfig {
        fuel: 1_000_000,
        workers: 1,
        ..HarnessConfig::default()
    };
    let traffic = format!("{}\n{}\n", common::get("/a"), common::get("/b"));
    let report = common::replay(&looping_module(), config, &traffic);
    let first = &report.entries[0];
    assert_eq!(first.outcome, Outcome::Trapped);
    assert_eq!(first.status, 503);
    assert_eq!(
        first.local_reply.as_ref().unwrap().details,
        "wasm_fail_stream"
    );
    assert!(
        first.trap.as_ref().unwrap().contains("ran out of fuel"),
        "{:?}",
        first.trap
    );
    // The worker got a fresh VM for the next stream (which loops again).
    assert!(
        report.entries[1]
            .notes
            .iter()
            .any(|n| n.contains("fresh VM"))
    );
    assert_eq!(report.summary.vm_restarts, 1);
}

#[test]
fn fail_open_lets_through_the_streams_that_meet_a_failed_vm() {
    let config = HarnessConfig {
        fuel: 1_000_000,
        workers: 1,
        failure_policy: FailurePolicy::FailOpen,
        ..HarnessConfig::default()
    };
    let traffic = format!("{}\n{}", common::get("/"), common::get("/"));
    let report = common::replay(&looping_module(), config, &traffic);
    // The stream whose callback trapped answers 503, as in Envoy; the next one goes on
    // without the filter, and the VM stays failed (no restart).
    let fates: Vec<(Outcome, u32)> = report
        .entries
        .iter()
        .map(|e| (e.outcome, e.status))
        .collect();
    assert_eq!(fates, [(Outcome::Trapped, 503), (Outcome::Trapped, 200)]);
    assert_eq!(report.summary.vm_restarts, 0);
}

#[test]
fn a_trap_reports_the_wasm_backtrace_with_function_names() {
    let module = common::wat_module(
        "",
        r#"(func $deep_inside_the_filter (unreachable))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $deep_inside_the_filter)
    (i32.const 0))"#,
    );
    let report = common::replay(&module, HarnessConfig::default(), &common::get("/"));
    let trap = report.entries[0].trap.clone().unwrap();
    assert!(trap.starts_with("proxy_on_response_headers"), "{trap}");
    assert!(trap.contains("deep_inside_the_filter"), "{trap}");
    // The response had already started: the client saw the upstream answer's headers go out.
    assert_eq!(report.entries[0].outcome, Outcome::Trapped);
}

#[test]
fn a_missing_import_is_a_load_error_naming_module_and_field() {
    let module = common::wat_module(r#"(import "env" "proxy_no_such_thing" (func))"#, "");
    let err = Harness::new(&module, HarnessConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::MissingImport { .. }));
    assert!(
        err.to_string().contains("`env.proxy_no_such_thing`"),
        "{err}"
    );
    let module = common::wat_module(
        r#"(import "wasi_snapshot_preview1" "path_nope" (func))"#,
        "",
    );
    let err = Harness::new(&module, HarnessConfig::default())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("`wasi_snapshot_preview1.path_nope`"),
        "{err}"
    );
}

#[test]
fn modules_without_marker_or_allocator_are_refused() {
    let err = Harness::new(
        b"(module (memory (export \"memory\") 1))",
        HarnessConfig::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, LoadError::Abi { .. }), "{err}");
    let err = Harness::new(
        b"(module (memory (export \"memory\") 1) (func (export \"proxy_abi_version_0_2_1\")))",
        HarnessConfig::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, LoadError::MissingAllocator), "{err}");
}

#[test]
fn an_abi_0_2_0_module_runs_and_may_not_import_0_2_1_functions() {
    let module = |imports: &str| {
        format!(
            r#"(module
  {imports}
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#
        )
    };
    let report = common::replay(
        module("").as_bytes(),
        HarnessConfig::default(),
        &common::get("/"),
    );
    assert_eq!(report.entries[0].outcome, Outcome::Forwarded);
    let err = Harness::new(
        module(r#"(import "env" "proxy_get_log_level" (func (param i32) (result i32)))"#)
            .as_bytes(),
        HarnessConfig::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("ABI 0.2.1"), "{err}");
}

#[test]
fn an_import_with_the_wrong_type_is_a_load_error() {
    let module = common::wat_module(r#"(import "env" "proxy_log" (func (param i64)))"#, "");
    let err = Harness::new(&module, HarnessConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::BadSignature { .. }), "{err}");
}
