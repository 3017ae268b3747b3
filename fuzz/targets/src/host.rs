//! The harness host driven by a hostile module: one fixed module (WAT, compiled once
//! per thread) whose every callback interprets a byte program taken from the input and
//! calls any `proxy_*` (and WASI) import with whatever arguments the program spells:
//! pointers into its memory or anywhere, lengths that wrap, unknown map, buffer and
//! stream types, stale tokens, in any callback and any order. Its allocator returns
//! what the program tells it to (a sane block, a fixed address, 0, a block sticking out
//! of memory, a trap) and may itself run the program, calling the host back while the
//! host waits for the allocation.
//!
//! The host must answer all of it with a status, a trap reported as a trap, or a clean
//! error; a panic (or an abort) is the crash the fuzzer looks for.
//!
//! # The program
//!
//! The input's first byte sets the replay up (bits 0-1: fail closed, fail open, fail
//! reload; bit 2: one or two workers; bit 3: bodies in 3-byte chunks; bit 4: trace
//! logging); the rest is the program, handed to the module as its VM configuration,
//! which `proxy_on_vm_start` reads with `proxy_get_buffer_bytes`. Each callback runs
//! the program on from where the previous one stopped (the cursor is the VM's) until a
//! `yield` or the end, and returns the yield's value (or a harmless default).
//!
//! An operation is one byte: below [`IMPORTS`]`.len()`, a call of that import, its
//! arguments following; `0xF0 a` yields `a`; `0xF1 p n bytes...` writes `n` program
//! bytes at `p`; `0xF2 m a` sets the allocator's mode `m` (0 bump, 1 return `a`, 2 trap,
//! 3 return 0, 4 return `a` once, 5 return `a` bytes before the end of memory, 6 run
//! the program first) ; `0xF3` traps; `0xF4 a` grows memory by `a % 16` pages; other
//! bytes do nothing. An argument is one byte `b` (and maybe more): `b >> 6` picks
//!
//! - 0: the number `b & 63`;
//! - 1: a pointer: slot `b & 63` of the scratch area (64 bytes each, the first ones
//!   holding header names, property paths, cluster names and encoded header maps), or
//!   from 48 on, one of 16 result words the host can write to;
//! - 2: a wider number: 0 is the next 4 bytes, 1 the next 2, 2 the next one, 3-34 a
//!   power of two, 35-63 `u32::MAX` and below;
//! - 3: a value the module knows: 0-15 a result word, 16-31 the end of memory and just
//!   before, 32-36 the callback's arguments (context ids, sizes, tokens), 37 the last
//!   allocation, 38 the program, 39 the heap's top.
//!
//! An i64 argument is two of them, low word first.

#![expect(
    clippy::panic,
    reason = "a panic is how a fuzz target reports what must never happen"
)]

use std::fmt::Write as _;
use std::path::Path;

use stakeguard_harness::abi::LogLevel;
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::replay::FailurePolicy;
use stakeguard_harness::traffic::{Record, read_str};
use stakeguard_harness::{Harness, HarnessConfig, HarnessError};

/// The imports the program may call, by index: module, name, parameters (`i` an i32,
/// `I` an i64) and whether it returns a status.
const IMPORTS: &[(&str, &str, &str, bool)] = &[
    ("env", "proxy_log", "iii", true),
    ("env", "proxy_get_log_level", "i", true),
    ("env", "proxy_get_current_time_nanoseconds", "i", true),
    ("env", "proxy_set_tick_period_milliseconds", "i", true),
    ("env", "proxy_get_header_map_value", "iiiii", true),
    ("env", "proxy_get_header_map_pairs", "iii", true),
    ("env", "proxy_get_header_map_size", "ii", true),
    ("env", "proxy_add_header_map_value", "iiiii", true),
    ("env", "proxy_replace_header_map_value", "iiiii", true),
    ("env", "proxy_remove_header_map_value", "iii", true),
    ("env", "proxy_set_header_map_pairs", "iii", true),
    ("env", "proxy_get_buffer_bytes", "iiiii", true),
    ("env", "proxy_get_buffer_status", "iii", true),
    ("env", "proxy_set_buffer_bytes", "iiiii", true),
    ("env", "proxy_get_property", "iiii", true),
    ("env", "proxy_set_property", "iiii", true),
    ("env", "proxy_get_shared_data", "iiiii", true),
    ("env", "proxy_set_shared_data", "iiiii", true),
    ("env", "proxy_register_shared_queue", "iii", true),
    ("env", "proxy_resolve_shared_queue", "iiiii", true),
    ("env", "proxy_enqueue_shared_queue", "iii", true),
    ("env", "proxy_dequeue_shared_queue", "iii", true),
    ("env", "proxy_http_call", "iiiiiiiiii", true),
    ("env", "proxy_grpc_call", "iiiiiiiiiiii", true),
    ("env", "proxy_grpc_stream", "iiiiiiiii", true),
    ("env", "proxy_grpc_send", "iiii", true),
    ("env", "proxy_grpc_cancel", "i", true),
    ("env", "proxy_grpc_close", "i", true),
    ("env", "proxy_define_metric", "iiii", true),
    ("env", "proxy_increment_metric", "iI", true),
    ("env", "proxy_record_metric", "iI", true),
    ("env", "proxy_get_metric", "ii", true),
    ("env", "proxy_continue_stream", "i", true),
    ("env", "proxy_close_stream", "i", true),
    ("env", "proxy_send_local_response", "iiiiiiii", true),
    ("env", "proxy_get_status", "iii", true),
    ("env", "proxy_set_effective_context", "i", true),
    ("env", "proxy_done", "", true),
    ("env", "proxy_call_foreign_function", "iiiiii", true),
    ("wasi_snapshot_preview1", "fd_write", "iiii", true),
    ("wasi_snapshot_preview1", "fd_pwrite", "iiiIi", true),
    ("wasi_snapshot_preview1", "fd_tell", "ii", true),
    ("wasi_snapshot_preview1", "fd_fdstat_get", "ii", true),
    ("wasi_snapshot_preview1", "fd_readdir", "iiiIi", true),
    ("wasi_snapshot_preview1", "environ_get", "ii", true),
    ("wasi_snapshot_preview1", "environ_sizes_get", "ii", true),
    ("wasi_snapshot_preview1", "args_sizes_get", "ii", true),
    ("wasi_snapshot_preview1", "clock_time_get", "iIi", true),
    ("wasi_snapshot_preview1", "clock_res_get", "ii", true),
    ("wasi_snapshot_preview1", "random_get", "ii", true),
    ("wasi_snapshot_preview1", "poll_oneoff", "iiii", true),
    ("wasi_snapshot_preview1", "path_readlink", "iiiiii", true),
    ("wasi_snapshot_preview1", "proc_exit", "i", false),
];

/// The callbacks the module exports: name, parameter count, and the value returned
/// when the program yields nothing (`None`: the callback returns nothing).
const CALLBACKS: &[(&str, usize, Option<u32>)] = &[
    ("proxy_on_context_create", 2, None),
    ("proxy_on_configure", 2, Some(1)),
    ("proxy_on_tick", 1, None),
    ("proxy_on_queue_ready", 2, None),
    ("proxy_on_request_headers", 3, Some(0)),
    ("proxy_on_request_body", 3, Some(0)),
    ("proxy_on_request_trailers", 2, Some(0)),
    ("proxy_on_response_headers", 3, Some(0)),
    ("proxy_on_response_body", 3, Some(0)),
    ("proxy_on_response_trailers", 2, Some(0)),
    ("proxy_on_http_call_response", 5, None),
    ("proxy_on_grpc_receive_initial_metadata", 3, None),
    ("proxy_on_grpc_receive", 3, None),
    ("proxy_on_grpc_receive_trailing_metadata", 3, None),
    ("proxy_on_grpc_close", 3, None),
    ("proxy_on_done", 1, Some(1)),
    ("proxy_on_log", 1, None),
    ("proxy_on_delete", 1, None),
];

/// What the scratch slots hold at start: names a program can hand the host without
/// spelling them (NUL separates property path segments; the last two are header maps
/// in the proxy-wasm pairs encoding).
const SLOTS: &[&str] = &[
    ":path",
    ":method",
    ":authority",
    ":status",
    "content-type",
    "x-fuzz",
    "request\\00path",
    "plugin_root_id",
    "ok",
    "slow",
    "reset",
    "q",
    "stakeguard",
    "key",
    "\\01\\00\\00\\00\\05\\00\\00\\00\\02\\00\\00\\00:path\\00/x\\00",
    "\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00\\0a\\00\\00\\00\\01\\00\\00\\00:method\\00GET\\00:path\\00/\\00:authority\\00a\\00",
    "metric.a",
    "response\\00headers\\00x-up",
    "svc",
    "method",
];

/// The module's fixed layout: where `proxy_on_vm_start` has the program's address and
/// size written, the result words, the scratch slots, the heap's start and its cap.
const LOADER: u32 = 0x80;
const RESULTS: u32 = 0xF00;
const SCRATCH: u32 = 0x1000;
const HEAP: u32 = 0x1_0000;
const HEAP_CAP: u32 = 16 << 20;

/// The traffic every input replays: a request with a body and trailers answered with
/// a body and trailers, a request on another connection, and a third one three
/// seconds later (ticks and callout answers come due in between).
const TRAFFIC: &str = r#"{"time":"2026-01-01T00:00:00Z","connection":1,"request":{"method":"POST","authority":"a.example","path":"/a?x=1","headers":[["content-type","text/plain"],["x-fuzz","1"]],"body":"hello","trailers":[["x-t","1"]]},"response":{"status":200,"headers":[["content-type","text/plain"]],"body":"world","trailers":[["grpc-status","0"]]}}
{"time":"2026-01-01T00:00:00.010Z","connection":2,"request":{"method":"GET","authority":"b.example","path":"/b"},"response":{"status":404}}
{"time":"2026-01-01T00:00:03Z","connection":1,"request":{"method":"GET","authority":"a.example","path":"/c"}}
"#;

/// How the callout clusters the scratch slots name answer.
const CLUSTERS: &str = r#"{"clusters":{
  "ok":{"status":200,"headers":{"x-up":"1"},"body":"answer","trailers":{"x-tr":"1"},"latency_ms":10,"grpc_status":3},
  "slow":{"timeout":true},
  "reset":{"reset":true,"latency_ms":5}}}"#;

/// The module, written out from the tables above.
fn module() -> String {
    let mut wat = String::from("(module\n");
    for (n, (module, name, params, status)) in IMPORTS.iter().enumerate() {
        let params: String = params
            .chars()
            .map(|c| if c == 'I' { " i64" } else { " i32" })
            .collect();
        let result = if *status { " (result i32)" } else { "" };
        let _ = writeln!(
            wat,
            r#"  (import "{module}" "{name}" (func $import{n} (param{params}){result}))"#
        );
    }
    wat.push_str(&format!(
        r#"  (memory (export "memory") 2)
  (global $prog (mut i32) (i32.const 0))
  (global $len (mut i32) (i32.const 0))
  (global $pc (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const {HEAP}))
  (global $mode (mut i32) (i32.const 0))
  (global $mval (mut i32) (i32.const 0))
  (global $last (mut i32) (i32.const 0))
  (global $depth (mut i32) (i32.const 0))
  (global $a0 (mut i32) (i32.const 0))
  (global $a1 (mut i32) (i32.const 0))
  (global $a2 (mut i32) (i32.const 0))
  (global $a3 (mut i32) (i32.const 0))
  (global $a4 (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func $byte (result i32) (local $b i32)
    (if (i32.ge_u (global.get $pc) (global.get $len)) (then (return (i32.const 0))))
    (local.set $b (i32.load8_u (i32.add (global.get $prog) (global.get $pc))))
    (global.set $pc (i32.add (global.get $pc) (i32.const 1)))
    (local.get $b))
  (func $word (result i32)
    (i32.or (i32.or (call $byte) (i32.shl (call $byte) (i32.const 8)))
      (i32.or (i32.shl (call $byte) (i32.const 16)) (i32.shl (call $byte) (i32.const 24)))))
  (func $arg (result i32) (local $b i32) (local $low i32)
    (local.set $b (call $byte))
    (local.set $low (i32.and (local.get $b) (i32.const 63)))
    (block $known (block $wide (block $pointer (block $small
      (br_table $small $pointer $wide $known (i32.shr_u (local.get $b) (i32.const 6))))
      (return (local.get $low)))
      (if (i32.lt_u (local.get $low) (i32.const 48))
        (then (return (i32.add (i32.const {SCRATCH}) (i32.shl (local.get $low) (i32.const 6))))))
      (return (i32.add (i32.const {RESULTS}) (i32.shl (i32.sub (local.get $low) (i32.const 48)) (i32.const 3)))))
    (if (i32.eqz (local.get $low)) (then (return (call $word))))
    (if (i32.eq (local.get $low) (i32.const 1))
      (then (return (i32.or (call $byte) (i32.shl (call $byte) (i32.const 8))))))
    (if (i32.eq (local.get $low) (i32.const 2)) (then (return (call $byte))))
    (if (i32.lt_u (local.get $low) (i32.const 35))
      (then (return (i32.shl (i32.const 1) (i32.sub (local.get $low) (i32.const 3))))))
    (return (i32.sub (i32.const -1) (i32.sub (local.get $low) (i32.const 35)))))
    (if (i32.lt_u (local.get $low) (i32.const 16))
      (then (return (i32.load (i32.add (i32.const {RESULTS}) (i32.shl (local.get $low) (i32.const 3)))))))
    (if (i32.lt_u (local.get $low) (i32.const 32))
      (then (return (i32.sub (i32.shl (memory.size) (i32.const 16))
        (i32.shl (i32.sub (local.get $low) (i32.const 16)) (i32.const 2))))))
    (block $none (block $heap (block $program (block $last (block $p4 (block $p3 (block $p2 (block $p1 (block $p0
      (br_table $p0 $p1 $p2 $p3 $p4 $last $program $heap $none (i32.sub (local.get $low) (i32.const 32))))
      (return (global.get $a0)))
      (return (global.get $a1)))
      (return (global.get $a2)))
      (return (global.get $a3)))
      (return (global.get $a4)))
      (return (global.get $last)))
      (return (global.get $prog)))
      (return (global.get $heap)))
    (i32.const 0))
  (func $arg64 (result i64)
    (i64.or (i64.extend_i32_u (call $arg)) (i64.shl (i64.extend_i32_u (call $arg)) (i64.const 32))))
  (func $write (local $dest i32) (local $n i32)
    (local.set $dest (call $arg))
    (local.set $n (call $byte))
    (if (i32.gt_u (local.get $n) (i32.sub (global.get $len) (global.get $pc)))
      (then (local.set $n (i32.sub (global.get $len) (global.get $pc)))))
    (memory.copy (local.get $dest) (i32.add (global.get $prog) (global.get $pc)) (local.get $n))
    (global.set $pc (i32.add (global.get $pc) (local.get $n))))
  (func $run (param $default i32) (result i32) (local $op i32)
    (loop $next
      (if (i32.ge_u (global.get $pc) (global.get $len)) (then (return (local.get $default))))
      (local.set $op (call $byte))
      (if (i32.lt_u (local.get $op) (i32.const {count}))
        (then (call $dispatch (local.get $op)) (br $next)))
      (if (i32.eq (local.get $op) (i32.const 0xF0)) (then (return (call $arg))))
      (if (i32.eq (local.get $op) (i32.const 0xF1)) (then (call $write) (br $next)))
      (if (i32.eq (local.get $op) (i32.const 0xF2))
        (then (global.set $mode (call $byte)) (global.set $mval (call $arg)) (br $next)))
      (if (i32.eq (local.get $op) (i32.const 0xF3)) (then (unreachable)))
      (if (i32.eq (local.get $op) (i32.const 0xF4))
        (then (drop (memory.grow (i32.and (call $arg) (i32.const 15)))) (br $next)))
      (br $next))
    (local.get $default))
  (func $bump (param $size i32) (result i32) (local $p i32) (local $top i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $top (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (if (i32.or (i32.lt_u (local.get $top) (local.get $p)) (i32.gt_u (local.get $top) (i32.const {HEAP_CAP})))
      (then (return (i32.const 0))))
    (local.set $end (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $top) (local.get $end))
      (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $top) (local.get $end)) (i32.const 65535)) (i32.const 16))) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $heap (local.get $top))
    (global.set $last (local.get $p))
    (local.get $p))
  (func $malloc (export "malloc") (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (block $bump (block $reenter (block $end (block $once (block $zero (block $trap (block $fixed
      (br_table $bump $fixed $trap $zero $once $end $reenter $bump (global.get $mode)))
      (return (global.get $mval)))
      (unreachable))
      (return (i32.const 0)))
      (global.set $mode (i32.const 0))
      (return (global.get $mval)))
      (return (i32.sub (i32.shl (memory.size) (i32.const 16)) (global.get $mval))))
      (if (i32.lt_u (global.get $depth) (i32.const 2))
        (then
          (global.set $depth (i32.add (global.get $depth) (i32.const 1)))
          (drop (call $run (i32.const 0)))
          (global.set $depth (i32.sub (global.get $depth) (i32.const 1))))))
    (call $bump (local.get $size)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (global.set $a0 (local.get 0))
    (global.set $a1 (local.get 1))
    (if (i32.eqz (call $import11 (i32.const 6) (i32.const 0) (local.get 1) (i32.const {LOADER}) (i32.const {loader_size})))
      (then
        (global.set $prog (i32.load (i32.const {LOADER})))
        (global.set $len (i32.load (i32.const {loader_size})))))
    (call $run (i32.const 1)))
"#,
        count = IMPORTS.len(),
        loader_size = LOADER + 4,
    ));
    for (name, arity, default) in CALLBACKS {
        let params = " i32".repeat(*arity);
        let result = if default.is_some() {
            " (result i32)"
        } else {
            ""
        };
        let _ = write!(wat, r#"  (func (export "{name}") (param{params}){result}"#);
        for n in 0..*arity {
            let _ = write!(wat, " (global.set $a{n} (local.get {n}))");
        }
        match default {
            Some(value) => {
                let _ = writeln!(wat, " (call $run (i32.const {value})))");
            }
            None => wat.push_str(" (drop (call $run (i32.const 0))))\n"),
        }
    }
    // The dispatcher: block `$c<n>` ends where import n is called.
    wat.push_str("  (func $dispatch (param $op i32)\n    (block $done\n");
    for n in (0..IMPORTS.len()).rev() {
        let _ = writeln!(wat, "    (block $c{n}");
    }
    let labels: String = (0..IMPORTS.len()).map(|n| format!(" $c{n}")).collect();
    let _ = writeln!(wat, "      (br_table{labels} $done (local.get $op)))");
    for (n, (_, _, params, status)) in IMPORTS.iter().enumerate() {
        let args: String = params
            .chars()
            .map(|c| {
                if c == 'I' {
                    " (call $arg64)"
                } else {
                    " (call $arg)"
                }
            })
            .collect();
        let call = format!("(call $import{n}{args})");
        let _ = if *status {
            writeln!(
                wat,
                "      (i32.store (i32.const {}) {call}) (br $done))",
                RESULTS + 15 * 8
            )
        } else {
            writeln!(wat, "      {call} (br $done))")
        };
    }
    wat.push_str("  )\n");
    for (n, text) in SLOTS.iter().enumerate() {
        let _ = writeln!(
            wat,
            r#"  (data (i32.const {}) "{text}")"#,
            SCRATCH + 64 * n as u32
        );
    }
    wat.push_str(")\n");
    wat
}

/// What every input shares, built once per thread.
struct Fixture {
    harness: Harness,
    records: Vec<Record>,
    callouts: CalloutConfig,
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

fn fixture() -> Fixture {
    let harness = Harness::new(module().as_bytes(), HarnessConfig::default())
        .unwrap_or_else(|e| panic!("the hostile module does not load: {e}"));
    let records = match read_str(Path::new("hostile.jsonl"), TRAFFIC) {
        Ok((records, errors)) if errors.is_empty() => records,
        other => panic!("the hostile module's traffic does not read: {other:?}"),
    };
    let callouts = CalloutConfig::parse(CLUSTERS)
        .unwrap_or_else(|e| panic!("the hostile module's clusters do not read: {e}"));
    Fixture {
        harness,
        records,
        callouts,
    }
}

/// Replays the fixed traffic through the hostile module running the input's program.
pub fn host(data: &[u8]) {
    let Some((&setup, program)) = data.split_first() else {
        return;
    };
    FIXTURE.with(|fixture| {
        let config = HarnessConfig {
            vm_configuration: program.to_vec(),
            workers: if setup & 4 == 0 { 1 } else { 2 },
            failure_policy: match setup & 3 {
                0 => FailurePolicy::FailClosed,
                1 => FailurePolicy::FailOpen,
                _ => FailurePolicy::FailReload,
            },
            chunk_size: (setup & 8 != 0).then_some(3),
            log_level: if setup & 16 == 0 {
                LogLevel::Info
            } else {
                LogLevel::Trace
            },
            callouts: fixture.callouts.clone(),
            // A program only moves forward, so a callback cannot loop; the budget (about
            // 50 ms) only bounds what the host itself could be made to spend.
            fuel: 50_000_000,
            idle_horizon_ms: 1_000,
            ..HarnessConfig::default()
        };
        let harness = fixture.harness.reconfigure(config);
        match harness.replay(&fixture.records) {
            Ok(report) => {
                assert_eq!(report.entries.len(), fixture.records.len(), "entries");
                assert_eq!(report.summary.requests, fixture.records.len(), "requests");
                for entry in &report.entries {
                    if let Some(trap) = &entry.trap {
                        assert!(!trap.is_empty(), "a trap without a message");
                    }
                }
                // What a user reads of the replay must render whatever the module did.
                let _ = report.to_jsonl();
                let _ = report.to_table();
            }
            // The VM did not start (a trap in a start function, a refused
            // configuration): a clean error, which must say why.
            Err(error @ (HarnessError::PluginStart { .. } | HarnessError::Load(_))) => {
                assert!(!error.to_string().is_empty(), "an error without a message");
            }
            Err(error) => panic!("an unexpected error: {error}"),
        }
    });
}
