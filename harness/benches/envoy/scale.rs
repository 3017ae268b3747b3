//! Inventory size inside Envoy: the generated inventories of 10, 1,000 and 10,000 APIs
//! (`policies/benches/inventory.rs`, the ones the engine's and the harness's scaling
//! benches use), instructions per request under callgrind and throughput side by side;
//! and the ECDS swap of a 10,000-API policy under load, from the watched file's rename to
//! the new revision answering, counting every request that failed meanwhile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use stakeguard_harness::envoy::bootstrap::{EnvoyConfig, Paths, WasmFilter};
use stakeguard_harness::envoy::http::{self, Request};

use crate::{
    Counted, Load, bootstrap_with, env_number, http_filters, inventory, latency, median, module,
    pinned, stakeguard, stamp, start, start_bootstrap, wrk, wrk_script,
};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Requests a load takes turns with, spread over the whole inventory.
const REQUESTS: usize = 64;

fn inventory_request(k: usize, n: usize) -> Request {
    let (authority, path) = inventory::request_target(k, n);
    Request::get(&path)
        .host(&authority)
        .header("authorization", "Bearer abc.def.ghi")
        .header("accept", "application/json")
}

fn inventory_load(n: usize) -> Load {
    Load {
        name: format!("{n} APIs"),
        requests: (0..REQUESTS).map(|k| inventory_request(k, n)).collect(),
        denied: false,
    }
}

/// Instructions per request and throughput (`direct_response`, one worker) by inventory
/// size, sizes alternating round by round.
pub fn inventory_sizes(out_dir: &Path, out: &mut BTreeMap<String, Value>) {
    let rounds = env_number("STAKEGUARD_BENCH_ROUNDS", 3);
    let seconds = env_number("STAKEGUARD_BENCH_SECONDS", 2);
    let measured = stamp();
    let dir = out_dir.join("callgrind");
    let mut instructions = BTreeMap::new();
    for n in SIZES {
        let filters = stakeguard(inventory::inventory_json(n));
        let Some(counted) = Counted::start(
            move |_: &Paths| bootstrap_with(http_filters(&filters), None),
            &dir,
        ) else {
            continue;
        };
        if let Some(i) = counted.instructions(&inventory_load(n), &format!("inventory {n}")) {
            eprintln!("callgrind {n:>6} APIs {i:>9.0} instructions/req");
            instructions.insert(n, i);
        }
    }
    let mut runs: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    for round in 0..rounds {
        for n in SIZES {
            let envoy = start(
                &stakeguard(inventory::inventory_json(n)),
                None,
                &pinned("0"),
            );
            let load = inventory_load(n);
            let script = wrk_script(&load.name, &load.requests);
            wrk(envoy.pid(), envoy.port(), &script, 1);
            let run = wrk(envoy.pid(), envoy.port(), &script, seconds);
            let _ = std::fs::remove_file(script);
            assert_eq!(run.refused, 0.0, "{n} APIs: not the allow path");
            eprintln!(
                "round {round} {n:>6} APIs {:>7.0} req/s {:>5.1} µs CPU/req",
                run.requests_per_second, run.cpu_us
            );
            runs.entry(n).or_default().push(json!({
                "requests_per_second": run.requests_per_second,
                "cpu_us_per_request": run.cpu_us,
            }));
        }
    }
    let rows: Vec<Value> = SIZES
        .iter()
        .map(|n| {
            json!({
                "apis": n,
                "instructions_per_request": instructions.get(n),
                "runs": runs.get(n).cloned().unwrap_or_default(),
            })
        })
        .collect();
    out.insert(
        "scaling".to_owned(),
        json!({ "measured": measured, "rounds": rounds, "seconds": seconds, "rows": rows }),
    );
}

/// The path only odd revisions route (and even ones refuse as unknown, 404).
const PROBE_PATH: &str = "/swap/probe";

/// The inventory of `apis` as revision `k`: odd revisions add one API, the probe.
fn revision(apis: usize, k: usize) -> String {
    let mut policy: Value = serde_json::from_str(&inventory::inventory_json(apis)).unwrap();
    policy["revision"] = json!(format!("ecds-{k}"));
    if k % 2 == 1 {
        policy["apis"].as_array_mut().unwrap().push(json!({
            "name": "swap-probe", "version": "v1", "owner": "bench", "tier": "standard",
            "routes": [{ "path": PROBE_PATH }]
        }));
    }
    policy.to_string()
}

/// The watched file's DiscoveryResponse: the filter entry `make bench` uses elsewhere,
/// as the ECDS resource `stakeguard`.
fn resource(policy: String, k: usize) -> Value {
    let entry = EnvoyConfig::wasm_filter(&WasmFilter {
        module: module("stakeguard_filter"),
        configuration: policy,
    });
    json!({
        "version_info": format!("ecds-{k}"),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "stakeguard",
            "typed_config": entry["typed_config"],
        }]
    })
}

/// Milliseconds since the epoch, now.
fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Milliseconds since the epoch of an Envoy log line's `[YYYY-MM-DD HH:MM:SS.mmm]`
/// (Envoy logs the machine's local time; the bench machine keeps UTC).
fn log_ms(line: &str) -> Option<f64> {
    let stamp = line.strip_prefix('[')?.get(..23)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (h, min) = (number(11..13)?, number(14..16)?);
    let sec: f64 = stamp.get(17..23)?.parse().ok()?;
    // Days from the civil date (eras of 400 years, March-based years).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60) as f64 + sec) * 1e3)
}

/// The build time a VM's `policy revision … in use (…, built in N ms, …)` line gives.
fn built_ms(line: &str) -> Option<f64> {
    let (_, rest) = line.split_once("built in ")?;
    rest.split_once(" ms")?.0.parse().ok()
}

/// Writes revision `k` beside the watched file and renames it over it (what the
/// hot-reload example's `swap-policy.sh` does); returns when the rename is done, on the
/// monotonic clock and the wall clock.
fn swap(dir: &Path, apis: usize, k: usize) -> (Instant, f64) {
    let text = resource(revision(apis, k), k).to_string();
    let tmp = dir.join(".stakeguard.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("stakeguard.json")).unwrap();
    (Instant::now(), wall_ms())
}

/// The probe's status on a fresh connection (so either worker may answer it).
fn probe(port: u16) -> u16 {
    let request = Request::get(PROBE_PATH)
        .host("h0.example.com")
        .header("authorization", "Bearer abc.def.ghi");
    http::send(port, &request).map_or(0, |r| r.status)
}

/// ECDS swaps of a 10-API and a 10,000-API policy.
pub fn ecds_swap(out: &mut BTreeMap<String, Value>) {
    let measured = stamp();
    let rows: Vec<Value> = [10, 10_000].into_iter().map(ecds_swaps).collect();
    out.insert(
        "ecds".to_owned(),
        json!({ "measured": measured, "workers": 2, "load_rate": env_number("STAKEGUARD_BENCH_RATE", 2000), "rows": rows }),
    );
}

/// Swaps of an `apis`-API policy through file-based ECDS in an Envoy with two workers,
/// under a steady open-loop load on a route every revision has: per swap, the time from
/// the rename to the first probe answered by the new revision and to the tenth in a row,
/// when each VM (main thread, workers) logged the revision in use, and the load's failed
/// or non-2xx requests over the whole run; beside them, how long the engine takes to
/// build the policy natively.
fn ecds_swaps(apis: usize) -> Value {
    const SWAPS: usize = 4;
    let dir = std::env::temp_dir().join(format!(
        "stakeguard-bench-ecds-{}-{apis}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("stakeguard.json"),
        resource(revision(apis, 0), 0).to_string(),
    )
    .unwrap();
    let filter = json!({
        "name": "stakeguard",
        "config_discovery": {
            "config_source": { "path_config_source": {
                "path": dir.join("stakeguard.json"),
                "watched_directory": { "path": dir },
            } },
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"],
        }
    });
    let mut chain = http_filters(&crate::Filters::None);
    chain.insert(0, filter);
    let node: Vec<String> = [
        "--service-node",
        "stakeguard-bench",
        "--service-cluster",
        "stakeguard-bench",
    ]
    .map(str::to_owned)
    .to_vec();
    let envoy = start_bootstrap(move |_: &Paths| bootstrap_with(chain, None), 2, &node, &[]);
    let port = envoy.port();
    assert_eq!(probe(port), 404, "revision 0 has no probe route");
    let rate = env_number("STAKEGUARD_BENCH_RATE", 2000);
    let seconds = 3 + 2 * SWAPS as u64;
    let steady = inventory_request(0, apis);
    let (load, swaps) = std::thread::scope(|scope| {
        let load = scope.spawn(|| latency::run(port, &steady, rate, seconds));
        std::thread::sleep(Duration::from_secs(2));
        let mut swaps = Vec::new();
        for k in 1..=SWAPS {
            let expected = if k % 2 == 1 { 200 } else { 404 };
            let (renamed, renamed_ms) = swap(&dir, apis, k);
            let (mut first, mut all, mut in_a_row) = (None, None, 0);
            while all.is_none() && renamed.elapsed() < Duration::from_secs(20) {
                if probe(port) == expected {
                    first.get_or_insert(renamed.elapsed());
                    in_a_row += 1;
                    if in_a_row == 10 {
                        all = Some(renamed.elapsed());
                    }
                } else {
                    in_a_row = 0;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
            eprintln!(
                "ecds {apis} APIs, swap {k}: first answer of the new revision after {:?} ms, ten in a row after {:?} ms",
                ms(first),
                ms(all)
            );
            swaps.push((k, renamed_ms, ms(first), ms(all)));
            std::thread::sleep(Duration::from_millis(1500));
        }
        (load.join().unwrap(), swaps)
    });
    // Each VM logs the revision it starts using; its delay from the rename shows where
    // the time goes (the main thread's VM first, then each worker's).
    let swaps: Vec<Value> = swaps
        .into_iter()
        .map(|(k, renamed_ms, first, settled)| {
            let lines = envoy.log_lines(&format!("policy revision ecds-{k} in use"));
            let logged: Vec<f64> = lines
                .iter()
                .filter_map(|l| log_ms(l))
                .map(|t| (t - renamed_ms).round())
                .collect();
            let built: Vec<f64> = lines.iter().filter_map(|l| built_ms(l)).collect();
            json!({ "revision": format!("ecds-{k}"), "first_ms": first, "settled_ms": settled, "vm_in_use_ms": logged, "vm_build_ms": built })
        })
        .collect();
    let rejected = envoy.stat("extension_config_discovery.http_filter.stakeguard.update_rejected");
    let success = envoy.stat("extension_config_discovery.http_filter.stakeguard.update_success");
    let load = load.expect("oha is needed for the ECDS swap under load");
    eprintln!(
        "ecds {apis} APIs: {} requests at {:.0}/s during the swaps, {} failed, {} not 2xx, p99 {:.0} µs; updates accepted {success:?}, rejected {rejected:?}",
        load.total, load.requests_per_second, load.failed, load.non_2xx, load.p99_us
    );
    let _ = std::fs::remove_dir_all(&dir);
    let policy = revision(apis, 1);
    let built = Instant::now();
    let engine = stakeguard_policies::Policy::from_json(&policy);
    let native_build_ms = built.elapsed().as_secs_f64() * 1e3;
    assert!(engine.is_ok(), "the swapped policy is valid");
    let mut first: Vec<f64> = swaps
        .iter()
        .filter_map(|s| s["first_ms"].as_f64())
        .collect();
    json!({
        "apis": apis,
        "policy_bytes": policy.len(),
        "native_build_ms": native_build_ms,
        "requests": load.total,
        "failed": load.failed,
        "not_2xx": load.non_2xx,
        "p50_us_during": load.p50_us,
        "p99_us_during": load.p99_us,
        "updates_accepted": success,
        "updates_rejected": rejected,
        "swaps": swaps,
        "median_first_ms": median(&mut first),
    })
}
