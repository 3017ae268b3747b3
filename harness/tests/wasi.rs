//! WASI preview1 as Envoy offers it: stdout/stderr to the log, the virtual clock, the
//! seeded random generator, the VM environment, refusals for files, proc_exit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::HarnessConfig;
use stakeguard_harness::report::Outcome;

const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_write" (func $fd_write_old (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;

fn module(extra: &str) -> Vec<u8> {
    let body = format!(
        r#"
  (data (i32.const 100) "hello out\n")
  (data (i32.const 120) "oops")
  ;; iovecs at 200: (100, 10) and at 208: (120, 4)
  (data (i32.const 200) "\64\00\00\00\0a\00\00\00\78\00\00\00\04\00\00\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.ne (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 300)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 300)) (i32.const 10)) (then unreachable))
    (if (i32.ne (call $fd_write_old (i32.const 2) (i32.const 208) (i32.const 1) (i32.const 300)) (i32.const 0)) (then unreachable))
    (if (i32.ne (call $fd_write (i32.const 3) (i32.const 200) (i32.const 1) (i32.const 300)) (i32.const 8)) (then unreachable))
    (if (i32.ne (call $fd_write (i32.const 1) (i32.const 0x1fff8) (i32.const 4) (i32.const 300)) (i32.const 21)) (then unreachable))
    ;; realtime is the record's time; cpu time is not supported
    (if (i32.ne (call $clock (i32.const 0) (i64.const 1) (i32.const 400)) (i32.const 0)) (then unreachable))
    (if (i64.ne (i64.load (i32.const 400)) (i64.const 1767225600000000000)) (then unreachable))
    (if (i32.ne (call $clock (i32.const 2) (i64.const 1) (i32.const 400)) (i32.const 58)) (then unreachable))
    ;; the environment has one variable, A=bc: 1 entry, 5 bytes
    (if (i32.ne (call $env_sizes (i32.const 500) (i32.const 504)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 500)) (i32.const 1)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 504)) (i32.const 5)) (then unreachable))
    (if (i32.ne (call $fd_read (i32.const 0) (i32.const 200) (i32.const 1) (i32.const 300)) (i32.const 52)) (then unreachable))
    (if (i32.ne (call $prestat (i32.const 3) (i32.const 300)) (i32.const 8)) (then unreachable))
    ;; eight random bytes, logged
    (if (i32.ne (call $random (i32.const 600) (i32.const 8)) (i32.const 0)) (then unreachable))
    (drop (call $log (i32.const 2) (i32.const 600) (i32.const 8)))
    {extra}
    (i32.const 0))"#
    );
    common::wat_module(IMPORTS, &body)
}

fn config(seed: u64) -> HarnessConfig {
    HarnessConfig {
        seed,
        env: vec![("A".to_string(), "bc".to_string())],
        ..HarnessConfig::default()
    }
}

#[test]
fn stdout_and_stderr_are_logged_and_other_calls_answer_as_envoy() {
    let report = common::replay(&module(""), config(1), &common::get("/"));
    let e = &report.entries[0];
    assert_eq!(e.outcome, Outcome::Forwarded, "{:?}", e.trap);
    assert_eq!(e.logs[0], "info: hello out");
    assert_eq!(e.logs[1], "error: oops");
}

#[test]
fn random_bytes_follow_the_seed() {
    let random = |seed| {
        common::replay(&module(""), config(seed), &common::get("/")).entries[0].logs[2].clone()
    };
    assert_eq!(random(1), random(1));
    assert_ne!(random(1), random(2));
}

#[test]
fn proc_exit_traps_with_its_code() {
    let report = common::replay(
        &module("(call $exit (i32.const 3))"),
        config(1),
        &common::get("/"),
    );
    let e = &report.entries[0];
    assert_eq!(e.outcome, Outcome::Trapped);
    assert!(
        e.trap.as_ref().unwrap().contains("proc_exit(3)"),
        "{:?}",
        e.trap
    );
}
