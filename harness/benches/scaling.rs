//! How stakeguard.wasm's cost and memory grow, side by side in one run (`make bench`):
//!
//! 1. **Inventory size.** A decision against generated inventories of 10, 1,000 and
//!    10,000 APIs (`policies/benches/inventory.rs`, the ones the engine's `decide` bench
//!    uses), through the harness on one worker and through the engine natively, sizes
//!    interleaved round by round; each size's median against the 10-API one (goal: 10,000
//!    costs at most 1.5× of 10).
//! 2. **VM memory.** The bank recording replayed through one worker until 100,000
//!    requests have gone through: the VM's linear memory before and after (it only
//!    grows, so a leak shows here).
//! 3. **Shared data under a key flood.** 1,000,000 requests to the bank's rate-limited
//!    standard tier, each from its own client address (an attacker inventing keys): the
//!    shared-data keys and bytes before and after, against the bound the README's
//!    `state.slots` promises (every key made at start, each holding at most two entries).
//!
//! Set `STAKEGUARD_BENCH_MODULE` to measure another build of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

#[path = "../../policies/benches/inventory.rs"]
mod inventory;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use stakeguard_harness::bench::pass_period_ns;
use stakeguard_harness::report::Outcome;
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig};
use stakeguard_policies::{MemoryStore, Policy, Request, Verdict};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const REQUESTS: usize = 64;
const ROUNDS: usize = 9;
const PASSES: usize = 20;
const START_MS: u64 = 1_795_910_400_000;
/// The most a counter slot holds: two entries of 32 bytes (`policies/src/state.rs`).
const SLOT_VALUE_BYTES: usize = 64;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_records(lines: &[String]) -> Vec<Record> {
    let (records, errors) = traffic::read_str(Path::new("bench.jsonl"), &lines.join("\n")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// The requests sent to an inventory of `n`, 1 ms apart, with credentials and a
/// response carrying the header the tier strips.
fn inventory_records(n: usize) -> Vec<Record> {
    let lines: Vec<String> = (0..REQUESTS)
        .map(|k| {
            let (authority, path) = inventory::request_target(k, n);
            serde_json::json!({
                "time": START_MS + k as u64,
                "connection": "bench",
                "source": "10.1.2.3:50000",
                "request": {"method": "GET", "authority": authority, "path": path,
                            "headers": [["authorization", "Bearer abc.def.ghi"], ["accept", "application/json"]]},
                "response": {"status": 200, "headers": [["server", "svc"], ["content-type", "application/json"]]}
            })
            .to_string()
        })
        .collect();
    read_records(&lines)
}

/// The same requests through the engine natively (request headers only: the tier's
/// response work is a strip, which needs no response map).
fn native_pass(policy: &Policy, store: &MemoryStore, records: &[Record], now_ms: u64) {
    for r in records {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":authority", &r.request.authority),
            (":path", &r.request.path),
        ];
        headers.extend(
            r.request
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let request = Request {
            method: "GET",
            authority: &r.request.authority,
            path: &r.request.path,
            headers: &headers,
            source_address: Some("10.1.2.3:50000"),
            peer_uri_san: None,
            reference: "bench",
        };
        let (stream, verdict) = policy.on_request(&request, &now_ms, store);
        assert_eq!(verdict, Verdict::Continue, "{}", r.request.path);
        black_box(stream);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn one_worker(module: &[u8], configuration: Vec<u8>) -> Harness {
    Harness::new(
        module,
        HarnessConfig {
            plugin_configuration: configuration,
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .unwrap()
}

fn inventory_size(module: &[u8]) {
    let harnesses: Vec<Harness> = SIZES
        .iter()
        .map(|&n| one_worker(module, inventory::inventory_json(n).into_bytes()))
        .collect();
    let records: Vec<Vec<Record>> = SIZES.iter().map(|&n| inventory_records(n)).collect();
    let prepared: Vec<_> = harnesses
        .iter()
        .zip(&records)
        .map(|(h, r)| h.prepare(r))
        .collect();
    let mut sessions: Vec<_> = harnesses
        .iter()
        .map(|h| h.session(START_MS * 1_000_000).unwrap())
        .collect();
    for (session, prepared) in sessions.iter_mut().zip(&prepared) {
        let warm = session.replay_prepared(prepared, 0, &mut |_| {});
        for e in &warm.entries {
            assert_eq!(
                (e.outcome, e.status),
                (Outcome::Forwarded, 200),
                "not the allow path: {e:?}"
            );
        }
    }
    let policies: Vec<Policy> = SIZES
        .iter()
        .map(|&n| Policy::from_json(&inventory::inventory_json(n)).unwrap())
        .collect();
    let store = MemoryStore::new();
    let period = pass_period_ns(&records[0]);
    let mut wasm = vec![Vec::new(); SIZES.len()];
    let mut native = vec![Vec::new(); SIZES.len()];
    let per_request =
        |start: Instant| start.elapsed().as_nanos() as f64 / (PASSES * REQUESTS) as f64;
    for round in 1..=ROUNDS as u64 {
        for i in 0..SIZES.len() {
            let start = Instant::now();
            for p in 0..PASSES as u64 {
                let shift = (round * PASSES as u64 + p) * period;
                black_box(sessions[i].replay_prepared(&prepared[i], shift, &mut |_| {}));
            }
            wasm[i].push(per_request(start));
            let start = Instant::now();
            for p in 0..PASSES as u64 {
                let shift_ms = (round * PASSES as u64 + p) * period / 1_000_000;
                native_pass(&policies[i], &store, &records[i], START_MS + shift_ms);
            }
            native[i].push(per_request(start));
        }
    }
    let wasm: Vec<f64> = wasm.into_iter().map(median).collect();
    let native: Vec<f64> = native.into_iter().map(median).collect();
    println!(
        "\ndecision cost by inventory size (median of {ROUNDS} interleaved rounds, one worker):"
    );
    println!(
        "  {:>7} {:>14} {:>10} {:>14} {:>10}",
        "APIs", "harness ns", "÷ 10 APIs", "native ns", "÷ 10 APIs"
    );
    for (i, n) in SIZES.iter().enumerate() {
        println!(
            "  {n:>7} {:>14.0} {:>10.2} {:>14.0} {:>10.2}",
            wasm[i],
            wasm[i] / wasm[0],
            native[i],
            native[i] / native[0]
        );
    }
}

fn vm_memory(module: &[u8]) {
    let policy = std::fs::read(workspace().join("policies/examples/bank.json")).unwrap();
    let harness = one_worker(module, policy);
    let records =
        traffic::read_file(&workspace().join("envoy-examples/traffic/bank.jsonl")).unwrap();
    let prepared = harness.prepare(&records);
    let period = pass_period_ns(&records);
    let mut session = harness
        .session(stakeguard_harness::replay::first_time_ns(&records))
        .unwrap();
    let before = session.memory_bytes()[0];
    let (mut sent, mut pass) = (0, 0u64);
    let mut after_first = 0;
    while sent < 100_000 {
        black_box(session.replay_prepared(&prepared, pass * period, &mut |_| {}));
        sent += records.len();
        pass += 1;
        if pass == 1 {
            after_first = session.memory_bytes()[0];
        }
    }
    let after = session.memory_bytes()[0];
    println!("\nVM linear memory, bank recording, one worker:");
    println!("  after start:                 {before:>10} bytes");
    println!(
        "  after one pass ({} requests): {after_first:>10} bytes",
        records.len()
    );
    println!("  after {sent} requests:     {after:>10} bytes");
}

fn key_flood(module: &[u8]) {
    const ATTACKERS: usize = 1_000_000;
    const CHUNK: usize = 10_000;
    let policy = std::fs::read(workspace().join("policies/examples/bank.json")).unwrap();
    let harness = one_worker(module, policy);
    let mut session = harness.session(START_MS * 1_000_000).unwrap();
    let (keys_at_start, bytes_at_start) = session.shared_data_size();
    let start = Instant::now();
    for chunk in 0..ATTACKERS / CHUNK {
        let lines: Vec<String> = (0..CHUNK)
            .map(|k| {
                let i = chunk * CHUNK + k;
                serde_json::json!({
                    "time": START_MS + i as u64,
                    "connection": format!("a{i}"),
                    "source": format!("10.{}.{}.{}:4000", i >> 16 & 255, i >> 8 & 255, i & 255),
                    "request": {"method": "GET", "authority": "bank.example.com", "path": "/api/v1/rates/gbp-eur", "headers": []},
                    "response": {"status": 200, "headers": []}
                })
                .to_string()
            })
            .collect();
        black_box(session.replay(&read_records(&lines), 0, &mut |_| {}));
    }
    let (keys, bytes) = session.shared_data_size();
    // Every slot key is made at start with an empty value; a slot then holds at most two
    // entries, whatever keys clients send.
    let bound = bytes_at_start + keys_at_start * SLOT_VALUE_BYTES;
    println!(
        "\nshared data, bank policy, {ATTACKERS} requests from distinct client addresses ({:.1} s):",
        start.elapsed().as_secs_f64()
    );
    println!("  after start: {keys_at_start:>8} keys {bytes_at_start:>10} bytes");
    println!("  after flood: {keys:>8} keys {bytes:>10} bytes");
    println!(
        "  bound:       {keys_at_start:>8} keys {bound:>10} bytes (state.slots per table, two 32-byte entries per slot); {}",
        if keys == keys_at_start && bytes <= bound {
            "held"
        } else {
            "EXCEEDED"
        }
    );
    assert!(
        keys == keys_at_start && bytes <= bound,
        "the shared-data bound did not hold"
    );
}

fn main() {
    let module_path = std::env::var_os("STAKEGUARD_BENCH_MODULE").map_or_else(
        || workspace().join("target/wasm32-wasip1/release/stakeguard_filter.wasm"),
        PathBuf::from,
    );
    let module = std::fs::read(&module_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make wasm` first", module_path.display()));
    // `cargo bench --bench scaling -- memory` runs one part.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| part.contains(o));
    if runs("inventory") {
        inventory_size(&module);
    }
    if runs("memory") {
        vm_memory(&module);
    }
    if runs("flood") {
        key_flood(&module);
    }
}
