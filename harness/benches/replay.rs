//! The harness against the native engine, side by side on the same requests.
//!
//! Allow-path traffic for the bank policy (`GET /api/v1/rates/..` and
//! `GET /api/v2/accounts` with a valid token, from the mTLS partner the policy exempts
//! from rate limits, so no request touches a counter) goes through stakeguard.wasm on
//! ONE worker VM, started once and reused for every pass, and through
//! `stakeguard-policies` natively (`on_request`, then `on_response` when the stream wants
//! it). Rounds alternate between the two in one process; the medians give requests/s
//! for each and the ratio, which is the number that matters: what running the policy
//! as a proxy-wasm module under this host costs over calling the engine directly.

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
use stakeguard_policies::{MemoryStore, Policy, Request, Response, Verdict};

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

/// A proxy-wasm module that exports no callback: what a replay costs the host alone.
const EMPTY_MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))"#;

fn native_pass(policy: &Policy, store: &MemoryStore, samples: &[Sample], now_ms: u64) {
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
            black_box(policy.on_response(&mut stream, &response, &now_ms, store));
        }
        black_box(stream);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let module_path = workspace().join("target/wasm32-wasip1/release/stakeguard_filter.wasm");
    let module = std::fs::read(&module_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make wasm` first", module_path.display()));
    let policy_text =
        std::fs::read_to_string(workspace().join("policies/examples/bank.json")).unwrap();
    let samples = samples();
    let records = records(&samples);

    let harness = Harness::new(
        &module,
        HarnessConfig {
            plugin_configuration: policy_text.clone().into_bytes(),
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let mut session = harness.session(START_MS * 1_000_000).unwrap();
    let period = pass_period_ns(&records);
    let warm = session.replay(&records, 0, &mut |_| {});
    for e in &warm.entries {
        assert_eq!(
            (e.outcome, e.status, e.decision.as_ref()),
            (Outcome::Forwarded, 200, None),
            "not the allow path: {e:?}"
        );
    }
    let policy = Policy::from_json(&policy_text).unwrap();
    let store = MemoryStore::new();
    native_pass(&policy, &store, &samples, START_MS);

    let empty = Harness::new(
        EMPTY_MODULE.as_bytes(),
        HarnessConfig {
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let mut empty_session = empty.session(START_MS * 1_000_000).unwrap();

    let mut pass = 0u64;
    let (mut wasm, mut native, mut host) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PASSES {
            pass += 1;
            black_box(session.replay(&records, pass * period, &mut |_| {}));
        }
        wasm.push(start.elapsed().as_nanos() as f64 / (PASSES * REQUESTS) as f64);
        let start = Instant::now();
        for _ in 0..PASSES {
            black_box(empty_session.replay(&records, pass * period, &mut |_| {}));
        }
        host.push(start.elapsed().as_nanos() as f64 / (PASSES * REQUESTS) as f64);
        let start = Instant::now();
        for p in 0..PASSES as u64 {
            native_pass(&policy, &store, &samples, START_MS + p * period / 1_000_000);
        }
        native.push(start.elapsed().as_nanos() as f64 / (PASSES * REQUESTS) as f64);
    }
    let (wasm, native, host) = (median(wasm), median(native), median(host));
    println!(
        "\nallow-path requests, bank policy, one worker (median of {ROUNDS} interleaved rounds):"
    );
    println!(
        "  harness (stakeguard.wasm): {:>10.0} requests/s  ({wasm:>7.0} ns/request)",
        1e9 / wasm
    );
    println!(
        "  native engine:             {:>10.0} requests/s  ({native:>7.0} ns/request)",
        1e9 / native
    );
    println!(
        "  of which the host alone:   {:>10.0} requests/s  ({host:>7.0} ns/request, a module without callbacks)",
        1e9 / host
    );
    println!("  ratio harness/native:      {:>10.2}x", wasm / native);
}
