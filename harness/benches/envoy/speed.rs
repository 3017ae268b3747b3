//! The same recordings through the harness and through Envoy. Allow-heavy: the bank
//! recording's requests the filter forwards, with rate limits raised; attack-heavy: the
//! whole bank recording (credential stuffing, scanning, traversal, probes) with the
//! policy as shipped. Both sides get the same records and policy: each record's peer in
//! `x-forwarded-for` with one more trusted hop (Envoy's client is 127.0.0.1), no peer
//! certificate (the load generator presents none), a marker header the recorded upstream
//! answers by. Time is not scaled.
//!
//! The harness: requests per second of its replay loop on one thread (the VMs started
//! once, as `stakeguard bench` runs it). Envoy: the records in turn from `wrk -c16`,
//! proxied to an upstream answering the recorded responses, and Envoy's CPU time per
//! request from `/proc` turned into requests per second of one core (the load generator
//! and upstream are not Envoy's cost). Goal: the harness at least 10x Envoy.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stakeguard_harness::envoy::bootstrap::Paths;
use stakeguard_harness::envoy::replay::request_for;
use stakeguard_harness::envoy::transform::{forward_identity, mark, trust_one_more_hop};
use stakeguard_harness::envoy::upstream::RecordedUpstream;
use stakeguard_harness::replay::first_time_ns;
use stakeguard_harness::report::Outcome;
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig};

use crate::{
    env_number, http_filters, module, pinned, raise_limits, read_policy, stakeguard, stamp,
    start_bootstrap, wrk, wrk_script,
};

fn harness(policy: &str, workers: usize) -> Harness {
    let wasm = std::fs::read(module("stakeguard_filter")).unwrap();
    Harness::new(
        &wasm,
        HarnessConfig {
            plugin_configuration: policy.as_bytes().to_vec(),
            workers,
            ..HarnessConfig::default()
        },
    )
    .unwrap()
}

/// The records as both sides get them.
fn prepared(mut records: Vec<Record>) -> Vec<Record> {
    for (i, record) in records.iter_mut().enumerate() {
        record.peer_uri_san = None;
        forward_identity(record);
        mark(record, i);
    }
    records
}

/// The share of a replay's requests the filter did not forward.
fn refused_share(harness: &Harness, records: &[Record]) -> f64 {
    let mut session = harness.session(first_time_ns(records)).unwrap();
    let report = session.replay(records, 0, &mut |_| {});
    let refused = report
        .entries
        .iter()
        .filter(|e| e.outcome != Outcome::Forwarded || e.status >= 400)
        .count();
    refused as f64 / records.len().max(1) as f64
}

/// Envoy with `workers` workers and the filter on `policy`, proxying to an upstream that
/// answers the recorded responses; the socket peer is the client address, as in the
/// harness.
fn envoy_run(policy: &str, records: &[Record], workers: u32, seconds: u64) -> crate::WrkRun {
    let upstream = RecordedUpstream::start(records).unwrap();
    let chain = http_filters(&stakeguard(policy.to_owned()));
    let port = upstream.port();
    let bootstrap = move |_: &Paths| {
        let mut b = crate::bootstrap_with(chain, Some(port));
        let hcm = b
            .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
            .and_then(Value::as_object_mut)
            .unwrap();
        hcm.insert("use_remote_address".to_owned(), json!(true));
        hcm.insert("skip_xff_append".to_owned(), json!(true));
        b
    };
    let wrapper = if workers == 1 {
        pinned("0")
    } else {
        Vec::new()
    };
    let envoy = start_bootstrap(bootstrap, workers, &[], &wrapper);
    let requests: Vec<_> = records.iter().map(request_for).collect();
    let script = wrk_script("speed", &requests);
    wrk(envoy.pid(), envoy.port(), &script, 1);
    let run = wrk(envoy.pid(), envoy.port(), &script, seconds);
    let _ = std::fs::remove_file(script);
    run
}

pub fn harness_and_envoy(out: &mut BTreeMap<String, Value>) {
    let seconds = env_number("STAKEGUARD_BENCH_SECONDS", 2);
    let iterations = env_number("STAKEGUARD_BENCH_ITERATIONS", 20) as usize;
    let measured = stamp();
    let recording = crate::root().join("envoy-examples/traffic/bank.jsonl");
    let all = traffic::read_file(&recording).unwrap();
    let shipped = {
        let mut p = read_policy("bank");
        trust_one_more_hop(&mut p);
        p.to_string()
    };
    let raised = {
        let mut p = read_policy("bank");
        raise_limits(&mut p);
        trust_one_more_hop(&mut p);
        p.to_string()
    };
    // The allow-heavy recording: what the filter forwards of the whole one.
    let forwarded: Vec<Record> = {
        let records = prepared(all.clone());
        let h = harness(&raised, 1);
        let mut session = h.session(first_time_ns(&records)).unwrap();
        let report = session.replay(&records, 0, &mut |_| {});
        all.iter()
            .zip(&report.entries)
            .filter(|(_, e)| e.outcome == Outcome::Forwarded && e.status < 400)
            .map(|(r, _)| r.clone())
            .collect()
    };
    let mut rows = Vec::new();
    for (name, policy, records) in [
        ("allow-heavy", &raised, prepared(forwarded)),
        ("attack-heavy", &shipped, prepared(all)),
    ] {
        for workers in [1, 2] {
            let h = harness(policy, workers);
            let refused = refused_share(&h, &records);
            let bench = stakeguard_harness::bench::bench(&h, &records, iterations).unwrap();
            let envoy = envoy_run(policy, &records, workers as u32, seconds);
            let envoy_per_core = 1e6 / envoy.cpu_us.max(f64::MIN_POSITIVE);
            let ratio = bench.requests_per_sec / envoy_per_core;
            eprintln!(
                "speed {name:<12} {workers} worker(s): harness {:>7.0} req/s ({:.0}% refused); Envoy {:>6.0} req/s, {:.1} µs CPU/req = {envoy_per_core:.0} req/s per core ({:.0}% refused); harness / Envoy {ratio:.2}",
                bench.requests_per_sec,
                refused * 100.0,
                envoy.requests_per_second,
                envoy.cpu_us,
                envoy.refused / envoy.requests.max(1.0) * 100.0,
            );
            rows.push(json!({
                "recording": name,
                "requests": records.len(),
                "workers": workers,
                "harness_requests_per_second": bench.requests_per_sec,
                "harness_refused_share": refused,
                "envoy_requests_per_second": envoy.requests_per_second,
                "envoy_cpu_us_per_request": envoy.cpu_us,
                "envoy_requests_per_core_second": envoy_per_core,
                "envoy_refused_share": envoy.refused / envoy.requests.max(1.0),
                "ratio": ratio,
            }));
        }
    }
    out.insert(
        "speed".to_owned(),
        json!({ "measured": measured, "iterations": iterations, "seconds": seconds, "rows": rows }),
    );
}
