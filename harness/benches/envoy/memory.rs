//! Envoy's resident memory at `--concurrency 2`, without a Wasm filter, with the empty
//! one and with stakeguard (the allow-path policy): after a warm-up that reaches both
//! workers, and after a closed-loop run of the allow-path requests in turn.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stakeguard_harness::envoy::http;

use crate::{
    Filters, allow_loads, empty_filter, env_number, policy, stakeguard, stamp, start_bootstrap,
    wrk, wrk_script,
};

/// `VmRSS` of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn rss(out: &mut BTreeMap<String, Value>) {
    let seconds = env_number("STAKEGUARD_BENCH_MEMORY_SECONDS", 5);
    let measured = stamp();
    let requests: Vec<http::Request> = allow_loads().into_iter().flat_map(|l| l.requests).collect();
    let script = wrk_script("memory", &requests);
    let mut rows = Vec::new();
    for (name, filters) in [
        ("(a) no filter", Filters::None),
        ("(b) empty Wasm filter", empty_filter()),
        ("(c) stakeguard, allow", stakeguard(policy(true))),
    ] {
        let chain = crate::http_filters(&filters);
        let envoy = start_bootstrap(
            move |_: &stakeguard_harness::envoy::bootstrap::Paths| {
                crate::bootstrap_with(chain, None)
            },
            2,
            &[],
            &[],
        );
        let started = rss_kb(envoy.pid());
        // Sixteen connections for a second: both workers serve some.
        wrk(envoy.pid(), envoy.port(), &script, 1);
        let warm = rss_kb(envoy.pid());
        let run = wrk(envoy.pid(), envoy.port(), &script, seconds);
        assert_eq!(run.refused, 0.0, "{name}: not the allow path");
        let after = rss_kb(envoy.pid());
        eprintln!(
            "rss {name:<24} started {started} kB, warm {warm} kB, after {:.0} more requests {after} kB",
            run.requests
        );
        rows.push(json!({
            "configuration": name,
            "started_kb": started,
            "warm_kb": warm,
            "after_kb": after,
            "requests": run.requests,
        }));
    }
    let _ = std::fs::remove_file(script);
    out.insert(
        "memory".to_owned(),
        json!({ "measured": measured, "workers": 2, "seconds": seconds, "rows": rows }),
    );
}
