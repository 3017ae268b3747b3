//! `envoy.md`: the tables BENCHMARKS.md quotes, made from `envoy.json` (every section it
//! holds, each with when it was measured and the machine's load then).

use std::fmt::Write;

use serde_json::Value;

use crate::median;

/// `2026-12-03 18:40 UTC` from seconds since the epoch.
pub fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (h, m) = (seconds % 86_400 / 3600, seconds % 3600 / 60);
    // Days to a civil date (the proleptic Gregorian calendar, eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{d:02} {h:02}:{m:02} UTC")
}

pub fn measured(section: &Value) -> String {
    format!(
        "measured {}, load average {}",
        utc(section["measured"]["unix_time"].as_u64().unwrap_or(0)),
        section["measured"]["load_average"].as_str().unwrap_or("?")
    )
}

pub fn field(runs: &Value, name: &str) -> Vec<f64> {
    runs.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[name].as_f64())
        .collect()
}

pub fn med(values: &[f64]) -> f64 {
    median(&mut values.to_vec())
}

fn spread(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The allow-path request a deny-path one is compared with: the same route's.
pub fn allow_counterpart(request: &str) -> &str {
    if request.starts_with("401") || request.starts_with("405") {
        "bank accounts (critical)"
    } else {
        "bank rates (standard)"
    }
}

/// The row of `configuration` for `request` in `mode`.
pub fn row<'a>(
    overhead: &'a Value,
    mode: &str,
    configuration: &str,
    request: &str,
) -> Option<&'a Value> {
    overhead["rows"].as_array()?.iter().find(|r| {
        r["mode"] == mode && r["configuration"] == configuration && r["request"] == request
    })
}

/// Per-round ratios of a row's throughput to another's (rounds alternate configurations,
/// so round `i` of both ran under the same conditions).
pub fn round_ratios(this: &Value, base: &Value) -> Vec<f64> {
    field(&this["runs"], "requests_per_second")
        .iter()
        .zip(field(&base["runs"], "requests_per_second"))
        .map(|(t, b)| t / b)
        .collect()
}

pub fn ratio_cell(ratios: &[f64]) -> String {
    if ratios.is_empty() {
        return "-".to_owned();
    }
    let (lo, hi) = spread(ratios);
    format!("{:.2} ({lo:.2}–{hi:.2})", med(ratios))
}

fn overhead(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## Throughput and latency\n\nEnvoy 1.40.0, `--concurrency 1` on core 0, `wrk -t1 -c16` on core 1; {} alternating rounds of {} s ({}; the rounds of a mode run in another run are kept). Throughput: median, with the per-round ratio's median and range (min–max). Latency: `oha -q {} --latency-correction -c 8` for {} s, open loop, medians of the rounds; added latency is over (a) on the same request (the deny path: over (a) on the route's allow request).\n",
        section["rounds"],
        section["seconds"],
        measured(section),
        section["latency_rate"],
        section["latency_seconds"],
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    for mode in ["direct_response", "proxy"] {
        let in_mode: Vec<&Value> = rows.iter().filter(|r| r["mode"] == mode).collect();
        if in_mode.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "### {mode}, {} rounds\n\n| configuration | request | req/s | CPU µs/req | ÷ (a) | ÷ (b) | p50 µs | p99 µs | p50 + | p99 + |\n|---|---|---|---|---|---|---|---|---|---|",
            in_mode[0]["rounds"]
                .as_u64()
                .unwrap_or(section["rounds"].as_u64().unwrap_or(0))
        );
        for r in in_mode {
            let configuration = r["configuration"].as_str().unwrap_or("");
            let request = r["request"].as_str().unwrap_or("");
            let base_request = if configuration.starts_with("(d)") {
                allow_counterpart(request)
            } else {
                request
            };
            let rps = field(&r["runs"], "requests_per_second");
            let cpu = field(&r["runs"], "cpu_us_per_request");
            let ratio = |base: &str| {
                row(section, mode, base, base_request)
                    .map_or("-".to_owned(), |b| ratio_cell(&round_ratios(r, b)))
            };
            let p50 = field(&r["latency"], "p50_us");
            let p99 = field(&r["latency"], "p99_us");
            let none = row(section, mode, "(a) no filter", base_request);
            let added = |this: &[f64], name: &str| match none {
                Some(n) if !this.is_empty() => {
                    let base = field(&n["latency"], name);
                    if base.is_empty() {
                        "-".to_owned()
                    } else {
                        format!("{:+.0}", med(this) - med(&base))
                    }
                }
                _ => "-".to_owned(),
            };
            let cell = |v: &[f64]| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.0}", med(v))
                }
            };
            let _ = writeln!(
                md,
                "| {configuration} | {request} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
                med(&rps),
                med(&cpu),
                ratio("(a) no filter"),
                ratio("(b) empty Wasm filter"),
                cell(&p50),
                cell(&p99),
                added(&p50, "p50_us"),
                added(&p99, "p99_us"),
            );
        }
        md.push('\n');
    }
}

fn instructions(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## Instructions per request\n\ncallgrind, `direct_response`, {} requests counted after {} of warm-up on one keep-alive connection ({}). The deny path is compared with the allow path of the same route (401 and 405 with accounts, 404 and 429 with rates).\n\n| configuration | request | instructions | over (b) | (b) ÷ this | ÷ allow path |\n|---|---|---|---|---|---|",
        section["counted"],
        section["warm_up"],
        measured(section)
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    let find = |configuration: &str, request: &str| {
        rows.iter()
            .find(|r| r["configuration"] == configuration && r["request"] == request)
            .and_then(|r| r["instructions_per_request"].as_f64())
    };
    for r in &rows {
        let configuration = r["configuration"].as_str().unwrap_or("");
        let request = r["request"].as_str().unwrap_or("");
        let n = r["instructions_per_request"].as_f64().unwrap_or(f64::NAN);
        let deny = configuration.starts_with("(d)");
        let empty = find(
            "(b) empty Wasm filter",
            if deny {
                allow_counterpart(request)
            } else {
                request
            },
        );
        let allow = deny
            .then(|| find("(c) stakeguard, allow", allow_counterpart(request)))
            .flatten();
        let _ = writeln!(
            md,
            "| {configuration} | {request} | {n:.0} | {} | {} | {} |",
            empty.map_or("-".to_owned(), |e| format!("{:+.0}", n - e)),
            empty.map_or("-".to_owned(), |e| format!("{:.2}", e / n)),
            allow.map_or("-".to_owned(), |a| format!("{:.2}", n / a)),
        );
    }
    md.push('\n');
}

fn scaling(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## Inventory size in Envoy\n\nGenerated inventories (`policies/benches/inventory.rs`), 64 requests spread over the inventory in turn, `direct_response`, one worker; instructions from callgrind, throughput from {} alternating rounds of {} s ({}).\n\n| APIs | instructions/req | ÷ 10 APIs | req/s | ÷ 10 APIs | CPU µs/req |\n|---|---|---|---|---|---|",
        section["rounds"],
        section["seconds"],
        measured(section)
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    let first_instr = rows
        .first()
        .and_then(|r| r["instructions_per_request"].as_f64());
    let first_rps = rows
        .first()
        .map(|r| med(&field(&r["runs"], "requests_per_second")));
    for r in &rows {
        let instr = r["instructions_per_request"].as_f64();
        let rps = med(&field(&r["runs"], "requests_per_second"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {rps:.0} | {} | {:.1} |",
            r["apis"],
            instr.map_or("-".to_owned(), |i| format!("{i:.0}")),
            instr
                .zip(first_instr)
                .map_or("-".to_owned(), |(i, f)| format!("{:.2}", i / f)),
            first_rps.map_or("-".to_owned(), |f| format!("{:.2}", rps / f)),
            med(&field(&r["runs"], "cpu_us_per_request")),
        );
    }
    md.push('\n');
}

fn ecds(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## ECDS swap\n\nFile-based ECDS, `--concurrency {}`, the watched file replaced by a rename (as `swap-policy.sh` does) under `oha -q {}` on a route every revision has ({}). Per swap: time from the rename to the first answer of the new revision on a fresh connection, to ten in a row, and when each VM logged the revision in use (main thread and workers; Envoy's log has millisecond stamps) and how long its build took by the module's own clock. Beside it, the engine building the same policy natively.\n\n| APIs | policy bytes | swap | first answer ms | ten in a row ms | VMs in use at ms | VMs' builds ms |\n|---|---|---|---|---|---|---|",
        section["workers"],
        section["load_rate"],
        measured(section)
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    for r in &rows {
        for s in r["swaps"].as_array().into_iter().flatten() {
            let ms = |v: &Value| {
                v.as_f64()
                    .map_or("not seen".to_owned(), |m| format!("{m:.0}"))
            };
            let per_vm = |key: &str| {
                s[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<String>>()
                    .join(", ")
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r["apis"],
                r["policy_bytes"],
                s["revision"].as_str().unwrap_or(""),
                ms(&s["first_ms"]),
                ms(&s["settled_ms"]),
                per_vm("vm_in_use_ms"),
                per_vm("vm_build_ms")
            );
        }
    }
    md.push('\n');
    for r in &rows {
        let _ = writeln!(
            md,
            "- {} APIs: {} requests answered during the swaps, {} failed, {} not 2xx; p50 {:.0} µs, p99 {:.0} µs; updates accepted {}, rejected {}; the engine builds the policy natively in {:.1} ms.",
            r["apis"],
            r["requests"],
            r["failed"],
            r["not_2xx"],
            r["p50_us_during"].as_f64().unwrap_or(f64::NAN),
            r["p99_us_during"].as_f64().unwrap_or(f64::NAN),
            r["updates_accepted"],
            r["updates_rejected"],
            r["native_build_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    md.push('\n');
}

fn memory(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## Envoy's memory\n\n`VmRSS` at `--concurrency {}`, `direct_response`: at start, after 1 s of `wrk -c16` (both workers serve), after {} s more of the allow-path requests in turn ({}).\n\n| configuration | at start kB | warm kB | after kB | requests | warm over (a) kB |\n|---|---|---|---|---|---|",
        section["workers"],
        section["seconds"],
        measured(section)
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    let base = rows.first().and_then(|r| r["warm_kb"].as_i64());
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} |",
            r["configuration"].as_str().unwrap_or(""),
            r["started_kb"],
            r["warm_kb"],
            r["after_kb"],
            r["requests"].as_f64().unwrap_or(0.0),
            base.zip(r["warm_kb"].as_i64())
                .map_or("-".to_owned(), |(b, w)| format!("{:+}", w - b)),
        );
    }
    md.push('\n');
}

fn speed(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## The harness against Envoy on the same requests\n\nThe harness: its replay loop, {} passes, one thread. Envoy: the records in turn from `wrk -c16` for {} s, proxied to the recorded upstream; requests per core-second from Envoy's CPU time per request ({}).\n\n| recording | records | workers | harness req/s | refused | Envoy req/s | Envoy CPU µs/req | Envoy req/core-s | refused | harness ÷ Envoy |\n|---|---|---|---|---|---|---|---|---|---|",
        section["iterations"],
        section["seconds"],
        measured(section)
    );
    for r in section["rows"].as_array().into_iter().flatten() {
        let pct = |v: &Value| format!("{:.0}%", v.as_f64().unwrap_or(0.0) * 100.0);
        let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {} | {:.0} | {:.1} | {:.0} | {} | {:.2} |",
            r["recording"].as_str().unwrap_or(""),
            r["requests"],
            r["workers"],
            num(&r["harness_requests_per_second"]),
            pct(&r["harness_refused_share"]),
            num(&r["envoy_requests_per_second"]),
            num(&r["envoy_cpu_us_per_request"]),
            num(&r["envoy_requests_per_core_second"]),
            pct(&r["envoy_refused_share"]),
            num(&r["ratio"]),
        );
    }
    md.push('\n');
}

/// Writes one section's tables.
type Render = fn(&mut String, &Value);

/// Every section `envoy.json` holds, as Markdown.
pub fn markdown(all: &Value) -> String {
    let mut md = String::new();
    let sections: [(&str, Render); 7] = [
        ("overhead", overhead),
        ("instructions", instructions),
        ("scaling", scaling),
        ("ecds", ecds),
        ("memory", memory),
        ("speed", speed),
        ("service", crate::service::markdown),
    ];
    for (name, render) in sections {
        if let Some(section) = all.get(name) {
            render(&mut md, section);
        }
    }
    md
}
