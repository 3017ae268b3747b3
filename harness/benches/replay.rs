//! The harness against the native engine, side by side on the same requests.
//!
//! Allow-path traffic for the bank policy (`GET /api/v1/rates/..` and
//! `GET /api/v2/accounts` with a valid token, from the mTLS partner the policy exempts
//! from rate limits, so no request touches a counter) goes through stakeguard.wasm on
//! ONE worker VM, started once and reused for every pass, and through
//! `stakeguard-policies` natively (`on_request`, then `on_response` when the stream wants
//! it). Rounds alternate between the two in one process; the medians give requests/s
//! for each and the ratio, which is the number that matters: what running the policy
//! as a proxy-wasm module under this host costs over calling the engine directly. Three
//! baselines split the harness's share: a module without callbacks (the host alone),
//! one whose callbacks return at once (plus entering the VM), and one that makes
//! stakeguard.wasm's host calls and nothing else (plus the ABI boundary). Set
//! `STAKEGUARD_BENCH_MODULE` to measure another build of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use stakeguard_harness::bench::pass_period_ns;
use stakeguard_harness::report::Outcome;
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig};
use stakeguard_policies::{HeaderChange, MemoryStore, Policy, Request, Response, Verdict};

/// A token whose claims say `sub: alice`, as the bank recording carries it.
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJhbmstMjAyNiJ9.eyJzdWIiOiJhbGljZSIsImFjY291bnRzIjpbIjEwMDAiLCIxMDAxIiwiMTAwMiJdLCJzY29wZSI6ImFjY291bnRzOnJlYWQgdHJhbnNmZXJzOndyaXRlIn0.c2lnbmF0dXJl";
/// The partner the bank policy exempts from rate limits.
const PARTNER: &str = "spiffe://partners.example/aggregator";
const REQUESTS: usize = 64;
const ROUNDS: usize = 15;
/// Passes over the requests per round on each side.
const PASSES: usize = 40;
const START_MS: u64 = 1_795_910_400_000;

/// One allow-path request and its upstream response.
struct Sample {
    path: String,
    headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
}

fn samples() -> Vec<Sample> {
    (0..REQUESTS)
        .map(|k| {
            let (path, auth) = if k % 2 == 0 {
                (format!("/api/v1/rates/EUR{k:03}?at=now"), None)
            } else {
                ("/api/v2/accounts".to_string(), Some(TOKEN))
            };
            let mut headers = vec![
                ("user-agent".to_string(), "bench/1.0".to_string()),
                ("accept".to_string(), "application/json".to_string()),
                ("x-request-id".to_string(), format!("bench-{k}")),
            ];
            if let Some(token) = auth {
                headers.push(("authorization".to_string(), token.to_string()));
            }
            let response_headers = vec![
                ("server".to_string(), "nginx/1.25.3".to_string()),
                ("x-powered-by".to_string(), "Express".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            Sample {
                path,
                headers,
                response_headers,
            }
        })
        .collect()
}

/// The samples as harness records, 1 ms apart.
fn records(samples: &[Sample]) -> Vec<Record> {
    let lines: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(k, s)| {
            serde_json::json!({
                "time": START_MS + k as u64,
                "connection": "bench",
                "source": "198.51.100.7:40000",
                "peer_uri_san": PARTNER,
                "request": {"method": "GET", "authority": "bank.example.com", "path": s.path, "headers": s.headers},
                "response": {"status": 200, "headers": s.response_headers, "body": "{\"ok\":true}"}
            })
            .to_string()
        })
        .collect();
    let (records, errors) = traffic::read_str(Path::new("bench.jsonl"), &lines.join("\n")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// A proxy-wasm module without callbacks: what a replay costs the host alone.
const EMPTY_MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))"#;

/// A module whose stream callbacks all return at once: the host plus the cost of
/// entering the VM for each callback stakeguard.wasm gets.
const NOOP_MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

/// A module that makes the host calls stakeguard.wasm makes on this traffic and nothing
/// else: the clock, the request map and the two properties the bank policy reads on
/// the request; the clock, the response map read and written back (unchanged) on the
/// response; a bump allocator for what the host hands over. What is left of
/// stakeguard.wasm's time over this one is the module's own work (SDK, adapter, engine).
const HOST_CALLS_MODULE: &str = r#"(module
  (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $get_map (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_map (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "source\00address")
  (data (i32.const 32) "connection\00uri_san_peer_certificate")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 4096)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $time (i32.const 128)))
    (drop (call $get_map (i32.const 0) (i32.const 136) (i32.const 140)))
    (drop (call $property (i32.const 0) (i32.const 14) (i32.const 144) (i32.const 148)))
    (drop (call $property (i32.const 32) (i32.const 35) (i32.const 152) (i32.const 156)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $time (i32.const 128)))
    (drop (call $get_map (i32.const 2) (i32.const 136) (i32.const 140)))
    (drop (call $set_map (i32.const 2) (i32.load (i32.const 136)) (i32.load (i32.const 140))))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

/// The requests through the engine natively, keeping one list of header changes as the
/// filter does.
fn native_pass(
    policy: &Policy,
    store: &MemoryStore,
    samples: &[Sample],
    now_ms: u64,
    changes: &mut Vec<HeaderChange>,
) {
    for s in samples {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":authority", "bank.example.com"),
            (":path", &s.path),
        ];
        headers.extend(s.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let request = Request {
            method: "GET",
            authority: "bank.example.com",
            path: &s.path,
            headers: &headers,
            source_address: Some("198.51.100.7:40000"),
            peer_uri_san: Some(PARTNER),
            reference: "bench",
        };
        let (mut stream, verdict) = policy.on_request(&request, &now_ms, store);
        assert_eq!(verdict, Verdict::Continue, "{}", s.path);
        if stream.wants_response() {
            let mut response_headers: Vec<(&str, &str)> = vec![(":status", "200")];
            response_headers.extend(
                s.response_headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let response = Response {
                status: 200,
                headers: &response_headers,
            };
            changes.clear();
            let read = stream.needs_response_headers().then_some(&response);
            policy.on_response(&mut stream, read, &now_ms, store, changes);
            black_box(&changes);
        }
        black_box(stream);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The median of the rounds a side ran (NaN for a side left out).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A harness for `module` with `configuration`, on one worker.
fn one_worker(module: &[u8], configuration: &str) -> Harness {
    Harness::new(
        module,
        HarnessConfig {
            plugin_configuration: configuration.as_bytes().to_vec(),
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .unwrap()
}

fn main() {
    // Another build of the filter (another opt-level, say) can be measured in its place.
    let module_path = std::env::var_os("STAKEGUARD_BENCH_MODULE").map_or_else(
        || workspace().join("target/wasm32-wasip1/release/stakeguard_filter.wasm"),
        PathBuf::from,
    );
    let module = std::fs::read(&module_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make wasm` first", module_path.display()));
    let policy_text =
        std::fs::read_to_string(workspace().join("policies/examples/bank.json")).unwrap();
    let samples = samples();
    let records = records(&samples);
    let period = pass_period_ns(&records);

    // The filter, then the three baselines; every session is started once.
    let harnesses = [
        one_worker(&module, &policy_text),
        one_worker(EMPTY_MODULE.as_bytes(), ""),
        one_worker(NOOP_MODULE.as_bytes(), ""),
        one_worker(HOST_CALLS_MODULE.as_bytes(), ""),
    ];
    // Prepared once, as a proxy parses a request once: the harnesses all cut bodies the
    // same way (one chunk), so one prepared set serves them all.
    let prepared = harnesses[0].prepare(&records);
    let mut sessions: Vec<_> = harnesses
        .iter()
        .map(|h| h.session(START_MS * 1_000_000).unwrap())
        .collect();
    for session in &mut sessions {
        let warm = session.replay_prepared(&prepared, 0, &mut |_| {});
        for e in &warm.entries {
            assert_eq!(
                (e.outcome, e.status, e.decision.as_ref()),
                (Outcome::Forwarded, 200, None),
                "not the allow path: {e:?}"
            );
        }
    }
    let policy = Policy::from_json(&policy_text).unwrap();
    let store = MemoryStore::new();
    let mut changes = Vec::new();
    native_pass(&policy, &store, &samples, START_MS, &mut changes);

    // `STAKEGUARD_BENCH_ONLY=filter|host|callbacks|host-calls|native` times one side alone, ten
    // times as long, for a profiler (`perf record` with `STAKEGUARD_PERFMAP=1`).
    let only = std::env::var("STAKEGUARD_BENCH_ONLY").ok();
    let runs = |side: &str| only.as_deref().is_none_or(|o| o == side);
    let (rounds, passes) = if only.is_some() {
        (ROUNDS * 10, PASSES)
    } else {
        (ROUNDS, PASSES)
    };
    let per_request =
        |start: Instant| start.elapsed().as_nanos() as f64 / (passes * REQUESTS) as f64;
    let mut wasm: Vec<Vec<f64>> = vec![vec![f64::NAN]; sessions.len()];
    let mut native = vec![f64::NAN];
    for round in 1..=rounds as u64 {
        for ((session, times), side) in
            sessions
                .iter_mut()
                .zip(&mut wasm)
                .zip(["filter", "host", "callbacks", "host-calls"])
        {
            if !runs(side) {
                continue;
            }
            let start = Instant::now();
            for p in 0..passes as u64 {
                let shift = (round * passes as u64 + p) * period;
                black_box(session.replay_prepared(&prepared, shift, &mut |_| {}));
            }
            times.push(per_request(start));
        }
        if !runs("native") {
            continue;
        }
        let start = Instant::now();
        for p in 0..passes as u64 {
            let shift_ms = (round * passes as u64 + p) * period / 1_000_000;
            native_pass(&policy, &store, &samples, START_MS + shift_ms, &mut changes);
        }
        native.push(per_request(start));
    }
    let native = median(native);
    let [filter, host, entries, host_calls] = [0, 1, 2, 3].map(|i| median(wasm[i].clone()));
    let line = |what: &str, ns: f64| {
        println!(
            "  {what:<34} {:>9.0} requests/s  ({ns:>6.0} ns/request)",
            1e9 / ns
        )
    };
    println!(
        "\nallow-path requests, bank policy, one worker (median of {rounds} interleaved rounds):"
    );
    line("harness, stakeguard.wasm:", filter);
    line("native engine:", native);
    line("harness, module without callbacks:", host);
    line("harness, 7 callbacks doing nothing:", entries);
    line("harness, its host calls, no logic:", host_calls);
    println!(
        "  ratio harness/native:              {:>9.2}x",
        filter / native
    );
}
