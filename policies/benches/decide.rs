//! The cost of an allow-path decision against inventories of 10, 1,000 and 10,000 APIs.
//!
//! The engine's promise is that a decision does not get slower as the inventory grows:
//! the route index is a host map and a segment trie. Criterion measures each size; a
//! final side-by-side run (sizes interleaved, same process, same requests) prints the
//! ratio of each size to the smallest, which is the number that matters.
//!
//! A second group replays the bank policy's allow path as the harness's replay bench
//! sends it (`on_request`, then `on_response`), and the run ends with how many heap
//! allocations one such request costs: in stakeguard.wasm each goes through dlmalloc.
//!
//! A third builds each inventory from its text (`Policy::from_json`), what every VM of an
//! Envoy does on an ECDS update: the promise is a cost linear in the APIs, so the
//! side-by-side run prints the time per API of each size against the smallest's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode};
use stakeguard_policies::{HeaderChange, MemoryStore, Policy, Request, Response, Verdict};

/// The system allocator, counting allocations for the bank request's report.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

#[path = "inventory.rs"]
mod inventory;

fn inventory(n: usize) -> Policy {
    Policy::from_json(&inventory::inventory_json(n)).unwrap()
}

/// The text of each inventory, for the build benches.
fn inventory_texts() -> Vec<(usize, String)> {
    SIZES
        .iter()
        .map(|&n| (n, inventory::inventory_json(n)))
        .collect()
}

struct Sample {
    authority: String,
    path: String,
}

/// Requests to APIs spread over the whole inventory.
fn requests(n: usize) -> Vec<Sample> {
    (0..64)
        .map(|k| {
            let (authority, path) = inventory::request_target(k, n);
            Sample { authority, path }
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

/// A token whose claims are `{"sub":"alice","accounts":["1000","1001","1002"],
/// "scope":"accounts:read transfers:write"}`, as in the harness's replay bench.
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJhbmstMjAyNiJ9.eyJzdWIiOiJhbGljZSIsImFjY291bnRzIjpbIjEwMDAiLCIxMDAxIiwiMTAwMiJdLCJzY29wZSI6ImFjY291bnRzOnJlYWQgdHJhbnNmZXJzOndyaXRlIn0.c2lnbmF0dXJl";

/// The bank policy's allow path as the replay bench drives it: every other request
/// reads exchange rates without credentials, the others list accounts with a token;
/// all come from the mTLS partner the policy exempts from rate limits.
struct BankSample {
    path: String,
    headers: Vec<(&'static str, String)>,
}

fn bank_samples() -> Vec<BankSample> {
    (0..64)
        .map(|k| {
            let (path, auth) = if k % 2 == 0 {
                (format!("/api/v1/rates/EUR{k:03}?at=now"), None)
            } else {
                ("/api/v2/accounts".to_owned(), Some(TOKEN))
            };
            let mut headers = vec![
                (":method", "GET".to_owned()),
                (":authority", "bank.example.com".to_owned()),
                (":path", path.clone()),
                ("user-agent", "bench/1.0".to_owned()),
                ("accept", "application/json".to_owned()),
                ("x-request-id", format!("bench-{k}")),
            ];
            if let Some(token) = auth {
                headers.push(("authorization", token.to_owned()));
            }
            BankSample { path, headers }
        })
        .collect()
}

const RESPONSE_HEADERS: [(&str, &str); 4] = [
    (":status", "200"),
    ("server", "nginx/1.25.3"),
    ("x-powered-by", "Express"),
    ("content-type", "application/json"),
];

/// One request and its response; `changes` is the list a host keeps for the changes.
fn bank_exchange(
    policy: &Policy,
    store: &MemoryStore,
    sample: &BankSample,
    changes: &mut Vec<HeaderChange>,
) {
    let request = Request {
        method: "GET",
        authority: "bank.example.com",
        path: &sample.path,
        headers: &sample.headers,
        source_address: Some("198.51.100.7:40000"),
        peer_uri_san: Some("spiffe://partners.example/aggregator"),
        reference: "bench",
    };
    let now = 1_795_910_400_000u64;
    let (mut stream, verdict) = policy.on_request(&request, &now, store);
    assert_eq!(verdict, Verdict::Continue);
    if stream.wants_response() {
        let response = Response {
            status: 200,
            headers: &RESPONSE_HEADERS,
        };
        changes.clear();
        let read = stream.needs_response_headers().then_some(&response);
        policy.on_response(&mut stream, read, &now, store, changes);
        black_box(&changes);
    }
    black_box(stream);
}

fn bank_policy() -> Policy {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bank.json"))
        .unwrap();
    Policy::from_json(&text).unwrap()
}

/// Heap allocations per bank request, averaged over the samples (both kinds alike).
fn bank_allocations() {
    let policy = bank_policy();
    let store = MemoryStore::new();
    let samples = bank_samples();
    let mut changes = Vec::new();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for sample in &samples {
        bank_exchange(&policy, &store, sample, &mut changes);
    }
    let count = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "\nbank allow path: {:.1} heap allocations per request (on_request + on_response)",
        count as f64 / samples.len() as f64
    );
}

fn criterion_benches(c: &mut Criterion) {
    let policy = bank_policy();
    let store = MemoryStore::new();
    let samples = bank_samples();
    let mut k = 0;
    let mut changes = Vec::new();
    c.bench_function("bank_allow_path", |b| {
        b.iter(|| {
            k = (k + 1) % samples.len();
            bank_exchange(&policy, &store, &samples[k], &mut changes);
        });
    });

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

    let texts = inventory_texts();
    let mut group = c.benchmark_group("build");
    // A 10,000-API build takes about a tenth of a second: ten samples of a few builds
    // each, rather than criterion's hundred, keep the group to seconds.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (n, text) in &texts {
        group.bench_with_input(BenchmarkId::from_parameter(n), text, |b, text| {
            b.iter(|| black_box(Policy::from_json(text).unwrap()));
        });
    }
    group.finish();
}

/// Builds of every size in interleaved rounds; the median per size, then its time per
/// API against the smallest inventory's.
fn build_side_by_side() {
    let texts = inventory_texts();
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); texts.len()];
    for _ in 0..5 {
        for (slot, (_, text)) in texts.iter().enumerate() {
            let start = Instant::now();
            black_box(Policy::from_json(text).unwrap());
            rounds[slot].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let per_api: Vec<(usize, f64, f64)> = texts
        .iter()
        .zip(rounds.iter_mut())
        .map(|((n, _), r)| {
            r.sort_by(f64::total_cmp);
            let median = r[r.len() / 2];
            (*n, median, median * 1e3 / *n as f64)
        })
        .collect();
    println!(
        "
policy build (Policy::from_json), side by side (median of 5 interleaved rounds):"
    );
    for (n, median, micros) in &per_api {
        println!(
            "  {n:>6} APIs: {median:>9.2} ms  ({micros:.1} µs per API, {:.2}x the 10-API inventory's)",
            micros / per_api[0].2
        );
    }
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
    build_side_by_side();
    bank_allocations();
}
