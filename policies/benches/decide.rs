//! The cost of an allow-path decision against inventories of 10, 1,000 and 10,000 APIs.
//!
//! The engine's promise is that a decision does not get slower as the inventory grows:
//! the route index is a host map and a segment trie. Criterion measures each size; a
//! final side-by-side run (sizes interleaved, same process, same requests) prints the
//! ratio of each size to the smallest, which is the number that matters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use stakeguard_policies::{MemoryStore, Policy, Request, Verdict};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// An inventory of `n` APIs over a few hosts, each with an exact, a template and a glob
/// route, in a tier whose allow path checks credentials, lifecycle and body limits.
fn inventory(n: usize) -> Policy {
    let apis: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("svc{i}"), "version": "v1", "owner": format!("team-{}", i % 50), "tier": "standard",
                "routes": [
                    { "host": format!("h{}.example.com", i % 7), "path": format!("/api/svc{i}/items"), "methods": ["GET", "POST"] },
                    { "host": format!("h{}.example.com", i % 7), "path": format!("/api/svc{i}/items/{{id}}"), "methods": ["GET"] },
                    { "path": format!("/public/svc{i}/**") }
                ]
            })
        })
        .collect();
    let doc = serde_json::json!({
        "revision": format!("bench-{n}"),
        "tiers": { "standard": {
            "auth": { "required": ["authorization"] },
            "body": { "max_bytes": 65536, "content_types": ["application/json"] },
            "response": { "strip": ["server"] }
        } },
        "apis": apis,
        "unknown_routes": { "action": "block" }
    });
    Policy::from_json(&doc.to_string()).unwrap()
}

struct Sample {
    authority: String,
    path: String,
}

/// Requests to APIs spread over the whole inventory, so a large one is not helped by a
/// hot corner of it.
fn requests(n: usize) -> Vec<Sample> {
    (0..64)
        .map(|k| {
            let i = (k * 7919) % n;
            Sample {
                authority: format!("h{}.example.com:443", i % 7),
                path: format!("/api/svc{i}/items/{k}?expand=owner"),
            }
        })
        .collect()
}

fn decide(policy: &Policy, store: &MemoryStore, sample: &Sample, headers: &[(&str, &str)]) {
    let request = Request {
        method: "GET",
        authority: &sample.authority,
        path: &sample.path,
        headers: &headers,
        source_address: Some("10.1.2.3:50000"),
        peer_uri_san: None,
        reference: "bench",
    };
    let (stream, verdict) = policy.on_request(&request, &1_795_910_400_000u64, store);
    assert_eq!(verdict, Verdict::Continue);
    black_box(stream);
}

const HEADERS: [(&str, &str); 6] = [
    (":method", "GET"),
    (":authority", "h1.example.com"),
    ("authorization", "Bearer abc.def.ghi"),
    ("user-agent", "bench/1.0"),
    ("accept", "application/json"),
    ("x-request-id", "0b6e7c2e-5d7a-4e0a-9f55-1f1c2f1a7c11"),
];

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("allow_path");
    for n in SIZES {
        let policy = inventory(n);
        let store = MemoryStore::new();
        let samples = requests(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % samples.len();
                decide(&policy, &store, &samples[k], &HEADERS);
            });
        });
    }
    group.finish();
}

/// Interleaved rounds over every size; the median per size, then ratios to the smallest.
fn side_by_side() {
    let setups: Vec<(usize, Policy, Vec<Sample>)> = SIZES
        .iter()
        .map(|&n| (n, inventory(n), requests(n)))
        .collect();
    let store = MemoryStore::new();
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for _ in 0..15 {
        for (slot, (_, policy, samples)) in setups.iter().enumerate() {
            let iterations = 20_000;
            let start = Instant::now();
            for k in 0..iterations {
                decide(policy, &store, &samples[k % samples.len()], &HEADERS);
            }
            rounds[slot].push(start.elapsed().as_nanos() as f64 / iterations as f64);
        }
    }
    let medians: Vec<f64> = rounds
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    println!("\nallow-path decision, side by side (median of 15 interleaved rounds):");
    for ((n, _, _), median) in setups.iter().zip(&medians) {
        println!(
            "  {n:>6} APIs: {median:>8.0} ns/request  ({:.2}x the 10-API inventory)",
            median / medians[0]
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion);
    criterion.final_summary();
    side_by_side();
}
