//! What stakeguard costs inside a real Envoy, side by side with what Envoy costs without
//! it: one Envoy binary (the pinned 1.40.0), one worker pinned to core 0, `wrk` pinned to
//! core 1, configurations alternating round by round so that the machine's drift hits all
//! of them alike.
//!
//! Configurations: (a) no Wasm filter; (b) the empty Rust proxy-wasm filter
//! (`bench/empty`, same SDK and release profile); (c) stakeguard on the bank policy with
//! its rate limits raised so that nothing is refused (the allow path); (d) stakeguard on
//! the bank policy as shipped, answered locally (the deny path: 401, 405, 404 and 429);
//! (e) Envoy's own filters doing the nearest thing (RBAC on the credential header, a local
//! rate limit, header mutation on the response). Each runs answering with
//! `direct_response` and proxying to a second Envoy on core 1 that answers directly.
//!
//! Reported per request: throughput (median of the rounds), the Envoy process's CPU time
//! per request (less sensitive to the other core's load than throughput), and their ratios
//! to (a) and (b). With valgrind on the machine, the instructions Envoy executes per
//! request are counted too (callgrind, a deterministic figure on a noisy machine).
//!
//! Knobs: `STAKEGUARD_BENCH_ROUNDS` (default 5), `STAKEGUARD_BENCH_SECONDS` (default 3),
//! `STAKEGUARD_BENCH_CALLGRIND=0` to skip instruction counts, `STAKEGUARD_BENCH_OUT` (default
//! `target/bench`) for `envoy.json` and `envoy.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stakeguard_harness::envoy::bootstrap::{EnvoyConfig, Paths, WasmFilter, cluster, socket};
use stakeguard_harness::envoy::{Envoy, http};

/// The token of the bank recording (claims `sub: bob`).
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJhbmstMjAyNiJ9.eyJzdWIiOiJib2IiLCJhY2NvdW50cyI6WyIxMDEwIiwiMTAxMSIsIjEwMTIiXSwic2NvcGUiOiJhY2NvdW50czpyZWFkIHRyYW5zZmVyczp3cml0ZSJ9.c2lnbmF0dXJl";

/// One request shape wrk sends over and over. `Host` is capitalized: wrk adds its own
/// unless a header of exactly that spelling is given.
struct Load {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    /// Whether the filter answers it locally (4xx).
    denied: bool,
}

fn bank_host() -> (&'static str, String) {
    ("Host", "bank.example.com".to_owned())
}

/// The allow path: the two bank requests and one per retailer tier.
fn allow_loads() -> Vec<Load> {
    vec![
        Load {
            name: "bank rates (standard)",
            method: "GET",
            path: "/api/v1/rates/gbp-eur",
            denied: false,
            headers: vec![bank_host()],
        },
        Load {
            name: "bank accounts (critical)",
            method: "GET",
            path: "/api/v2/accounts",
            denied: false,
            headers: vec![
                bank_host(),
                ("authorization", TOKEN.to_owned()),
                ("x-user-id", "bob".to_owned()),
                ("user-agent", "BankApp/5.2".to_owned()),
                ("accept", "application/json".to_owned()),
                ("cookie", "sid=sid-bob-9a1b7d40; theme=dark".to_owned()),
            ],
        },
        Load {
            name: "retailer cart (checkout)",
            method: "GET",
            path: "/api/v3/cart/items",
            denied: false,
            headers: vec![
                ("Host", "shop.example.com".to_owned()),
                ("x-user-id", "carol".to_owned()),
                ("cookie", "cart_session=c-42".to_owned()),
            ],
        },
        Load {
            name: "retailer products (catalogue)",
            method: "GET",
            path: "/api/v1/products/42",
            denied: false,
            headers: vec![("Host", "eu.shop.example.com".to_owned())],
        },
    ]
}

/// The deny path: local replies of four controls.
fn deny_loads() -> Vec<Load> {
    vec![
        Load {
            name: "401 credentials missing",
            method: "GET",
            path: "/api/v2/accounts",
            denied: true,
            headers: vec![bank_host()],
        },
        Load {
            name: "405 method not allowed",
            method: "DELETE",
            path: "/api/v2/accounts",
            denied: true,
            headers: vec![bank_host(), ("authorization", TOKEN.to_owned())],
        },
        Load {
            name: "404 unknown route",
            method: "GET",
            path: "/api/v9/debug",
            denied: true,
            headers: vec![bank_host()],
        },
        Load {
            name: "429 rate limited",
            method: "GET",
            path: "/api/v1/rates/gbp-eur",
            denied: true,
            headers: vec![bank_host()],
        },
    ]
}

/// What sits in the listener's filter chain.
#[derive(Clone)]
enum Filters {
    None,
    Wasm(WasmFilter),
    Native,
}

struct Setup {
    name: &'static str,
    filters: Filters,
    loads: fn() -> Vec<Load>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn module(name: &str) -> PathBuf {
    let path = root().join(format!("target/wasm32-wasip1/release/{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make bench`",
        path.display()
    );
    path
}

/// Every `rate_limit.requests` of a policy document raised so that nothing is refused.
fn raise_limits(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "rate_limit"
                    && let Some(requests) = inner.get_mut("requests")
                {
                    *requests = json!(1_000_000_000);
                } else {
                    raise_limits(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(raise_limits),
        _ => {}
    }
}

/// The bank and retailer policies as one (both inventories, the bank's tiers and the
/// retailer's, names kept apart), raised or as shipped.
fn policy(raised: bool) -> String {
    let read = |name: &str| -> Value {
        let path = root().join(format!("policies/examples/{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let mut bank = read("bank");
    let retailer = read("retailer");
    let tiers = bank["tiers"].as_object_mut().unwrap();
    for (name, tier) in retailer["tiers"].as_object().unwrap() {
        tiers.insert(name.clone(), tier.clone());
    }
    let apis = bank["apis"].as_array_mut().unwrap();
    apis.extend(retailer["apis"].as_array().unwrap().iter().cloned());
    if raised {
        raise_limits(&mut bank);
    }
    bank.to_string()
}

fn setups() -> Vec<Setup> {
    let stakeguard = module("stakeguard_filter");
    vec![
        Setup {
            name: "(a) no filter",
            filters: Filters::None,
            loads: allow_loads,
        },
        Setup {
            name: "(b) empty Wasm filter",
            filters: Filters::Wasm(WasmFilter {
                module: module("stakeguard_bench_empty"),
                configuration: String::new(),
            }),
            loads: allow_loads,
        },
        Setup {
            name: "(c) stakeguard, allow",
            filters: Filters::Wasm(WasmFilter {
                module: stakeguard.clone(),
                configuration: policy(true),
            }),
            loads: allow_loads,
        },
        Setup {
            name: "(d) stakeguard, deny",
            filters: Filters::Wasm(WasmFilter {
                module: stakeguard,
                configuration: policy(false),
            }),
            loads: deny_loads,
        },
        Setup {
            name: "(e) Envoy native filters",
            filters: Filters::Native,
            loads: allow_loads,
        },
    ]
}

/// Envoy's nearest native equivalent of the allow path: RBAC allowing requests that
/// carry a credential or go to the public prefix, a local rate limit that refuses nothing,
/// and a response header mutation that strips and adds what the bank's hardening does.
fn native_filters() -> Vec<Value> {
    let header = |name: &str| json!({ "header": { "name": name, "present_match": true } });
    vec![
        json!({ "name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "action": "ALLOW", "policies": { "callers": {
                "permissions": [{ "any": true }],
                "principals": [{ "or_ids": { "ids": [
                    header("authorization"), header("host")
                ] } }]
            } } }
        } }),
        json!({ "name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "bench",
            "token_bucket": { "max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s" },
            "filter_enabled": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
            "filter_enforced": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } }
        } }),
        json!({ "name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": { "response_mutations": [
                { "remove": "server" },
                { "remove": "x-powered-by" },
                { "append": { "header": { "key": "strict-transport-security", "value": "max-age=31536000; includeSubDomains" }, "append_action": "ADD_IF_ABSENT" } },
                { "append": { "header": { "key": "cache-control", "value": "no-store" }, "append_action": "ADD_IF_ABSENT" } },
                { "append": { "header": { "key": "x-content-type-options", "value": "nosniff" }, "append_action": "ADD_IF_ABSENT" } }
            ] }
        } }),
    ]
}

/// A listener `main` answering directly, or routing to `upstream` (another Envoy).
fn bootstrap(filters: &Filters, upstream: Option<u16>) -> Value {
    let mut chain = match filters {
        Filters::None => Vec::new(),
        Filters::Wasm(filter) => vec![EnvoyConfig::wasm_filter(filter)],
        Filters::Native => native_filters(),
    };
    chain.push(
        json!({ "name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }),
    );
    let route = match upstream {
        Some(_) => json!({ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }),
        None => json!({ "match": { "prefix": "/" }, "direct_response": {
            "status": 200, "body": { "inline_string": "{\"ok\":true}" } } }),
    };
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [route] }] },
        "http_filters": chain,
    });
    json!({
        "admin": { "address": socket(0) },
        "static_resources": {
            "listeners": [{ "name": "main", "address": socket(0), "filter_chains": [{ "filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }] }] }],
            "clusters": [cluster("upstream", upstream.unwrap_or(9)), cluster("alertmanager", 9)],
        }
    })
}

fn start(filters: &Filters, upstream: Option<u16>, wrapper: &[String]) -> Envoy {
    let binary = stakeguard_harness::envoy::process::default_binary(&root());
    let filters = filters.clone();
    Envoy::start_wrapped(
        &binary,
        move |_: &Paths| bootstrap(&filters, upstream),
        1,
        &[],
        wrapper,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Clock ticks of CPU the process (all its threads) has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64
}

/// One wrk run: requests per second, and Envoy's CPU microseconds per request. Panics when
/// the answers are not what the load expects (all 2xx on the allow path, none on the
/// deny path): a benchmark of the wrong outcome measures nothing.
fn wrk(envoy: &Envoy, load: &Load, seconds: u64) -> (f64, f64) {
    let mut command = Command::new("taskset");
    command.args(["-c", "1", "wrk", "-t1", "-c16", &format!("-d{seconds}s")]);
    command.args(["-s", &wrk_script(load).display().to_string()]);
    for (name, value) in &load.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.arg(format!("http://127.0.0.1:{}{}", envoy.port(), load.path));
    let before = cpu_ticks(envoy.pid());
    let out = command.output().expect("run wrk (apt-get install wrk)");
    let after = cpu_ticks(envoy.pid());
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                let err = String::from_utf8_lossy(&out.stderr);
                panic!("wrk printed no `{prefix}` (`make bench-tools` installs it):\n{text}{err}")
            })
    };
    let rps = number("Requests/sec:");
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse::<f64>().ok())
        .unwrap_or(rps * seconds as f64);
    let refused = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    if seconds > 1 {
        let expected = if load.denied { requests } else { 0.0 };
        // The deny path's rate limit lets its first requests through.
        assert!(
            (refused - expected).abs() <= 1_000.0_f64.min(requests / 10.0),
            "{}: {refused} of {requests} answers were not 2xx",
            load.name
        );
    }
    let cpu_us = (after - before) as f64 / ticks_per_second() * 1e6 / requests.max(1.0);
    (rps, cpu_us)
}

/// A wrk script that sets the request's method (wrk's `-H` sets the headers).
fn wrk_script(load: &Load) -> PathBuf {
    let path = std::env::temp_dir().join(format!("stakeguard-bench-{}.lua", load.method));
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "wrk.method = \"{}\"", load.method).unwrap();
    path
}

/// Instructions Envoy executes per request (callgrind, after a warm-up). With
/// `STAKEGUARD_BENCH_KEEP_PROFILES=1` the profile of the counted requests stays in `dir`
/// as `LABEL.callgrind`, for `callgrind_annotate`.
fn instructions(filters: &Filters, load: &Load, dir: &Path, label: &str) -> Option<f64> {
    let out = dir.join(format!("callgrind.{}.out", std::process::id()));
    let wrapper: Vec<String> = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--smc-check=all-non-file",
        "--dump-instr=no",
        "--compress-strings=no",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--callgrind-out-file={}.%p", out.display())])
    .collect();
    let envoy = start(filters, None, &wrapper);
    let send = |n: usize| {
        let stream = http::connect(envoy.port()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        // One keep-alive connection, as wrk's (the harness client's requests close).
        let mut head = format!("{} {} HTTP/1.1\r\n", load.method, load.path);
        for (name, value) in &load.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let bytes = head.into_bytes();
        let mut writer = stream;
        for _ in 0..n {
            writer.write_all(&bytes).unwrap();
            http::read_response(&mut reader, load.method).unwrap();
        }
    };
    send(300);
    let pid = envoy.pid().to_string();
    let control = |flag: &str| {
        Command::new("callgrind_control")
            .args([flag, &pid])
            .output()
            .ok()
    };
    control("-z")?;
    const COUNTED: usize = 500;
    send(COUNTED);
    control("-d")?;
    drop(envoy);
    // The dump made on request holds only what ran since the zeroing.
    let mut total = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        // Profiles kept from earlier runs are not this run's.
        if entry.path().extension().is_some_and(|e| e == "callgrind") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let counted =
            text.contains("Trigger: Client Request: dump") || text.contains("desc: Trigger: dump");
        if counted {
            total = text
                .lines()
                .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
                .and_then(|n| n.trim().parse::<f64>().ok());
        }
        if counted && env_number("STAKEGUARD_BENCH_KEEP_PROFILES", 0) == 1 {
            let name: String = label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let _ = std::fs::rename(entry.path(), dir.join(format!("{name}.callgrind")));
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    total.map(|t| t / COUNTED as f64)
}

/// Throughput and CPU per request of every round, by mode, configuration and request.
type Results = BTreeMap<(String, &'static str, String), Vec<(f64, f64)>>;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument names setups to run.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds = env_number("STAKEGUARD_BENCH_ROUNDS", 5) as usize;
    let seconds = env_number("STAKEGUARD_BENCH_SECONDS", 3);
    let out_dir = std::env::var("STAKEGUARD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/bench"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let setups: Vec<Setup> = setups()
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
        .collect();
    let pin: Vec<String> = ["taskset", "-c", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut results: Results = BTreeMap::new();
    for mode in ["direct_response", "proxy"] {
        // The upstream for the proxied runs: an Envoy answering directly, on the load
        // generator's core.
        let upstream = (mode == "proxy").then(|| {
            let wrap: Vec<String> = ["taskset", "-c", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            start(&Filters::None, None, &wrap)
        });
        let upstream_port = upstream.as_ref().map(Envoy::port);
        for round in 0..rounds {
            for setup in &setups {
                let envoy = start(&setup.filters, upstream_port, &pin);
                for load in (setup.loads)() {
                    wrk(&envoy, &load, 1);
                    let (rps, cpu) = wrk(&envoy, &load, seconds);
                    eprintln!(
                        "{mode} round {round} {:<28} {:<32} {rps:>9.0} req/s {cpu:>6.1} µs CPU/req",
                        setup.name, load.name
                    );
                    results
                        .entry((mode.to_owned(), setup.name, load.name.to_owned()))
                        .or_default()
                        .push((rps, cpu));
                }
            }
        }
        drop(upstream);
    }
    // The throughput tables first: the instruction counts take minutes more.
    report(&results, &BTreeMap::new(), rounds, seconds, &out_dir);
    let mut instr: BTreeMap<(&str, String), f64> = BTreeMap::new();
    let callgrind = env_number("STAKEGUARD_BENCH_CALLGRIND", 1) == 1
        && Command::new("valgrind").arg("--version").output().is_ok();
    if callgrind {
        let dir = out_dir.join("callgrind");
        std::fs::create_dir_all(&dir).unwrap();
        for setup in &setups {
            for load in (setup.loads)().into_iter().take(2) {
                let label = format!("{} {}", setup.name, load.name);
                if let Some(n) = instructions(&setup.filters, &load, &dir, &label) {
                    eprintln!(
                        "callgrind {:<28} {:<32} {n:>9.0} instructions/req",
                        setup.name, load.name
                    );
                    instr.insert((setup.name, load.name.to_owned()), n);
                }
            }
        }
    }
    if !instr.is_empty() {
        report(&results, &instr, rounds, seconds, &out_dir);
    }
    // `1` prices every kind of call; a comma-separated list only the kinds naming one
    // of its words (e.g. `info,trace`).
    let probe = std::env::var("STAKEGUARD_BENCH_PROBE").unwrap_or_default();
    if callgrind && !probe.is_empty() && probe != "0" {
        let words: Vec<&str> = probe.split(',').filter(|w| *w != "1").collect();
        price_host_calls(&out_dir, &words);
    }
}

/// The price of each kind of host call: the probe module making ten of one kind per
/// request, against the probe making none, in instructions (`STAKEGUARD_BENCH_PROBE=1`,
/// about a minute per kind).
fn price_host_calls(out_dir: &Path, words: &[&str]) {
    const TIMES: f64 = 10.0;
    let kinds = [
        "",
        "request:trace",
        "request:info",
        "request:time",
        "request:metric",
        "request:shared_get",
        "request:set_property",
        "request:request_value",
        "request:source_address",
        "request:request_map",
        "request:shared_update",
        "response:response_remove",
        "response:response_add",
        "response:response_replace",
        "response:response_map",
        "response:response_rewrite",
    ];
    let dir = out_dir.join("callgrind");
    let load = &allow_loads()[1];
    let mut base = None;
    let mut md = String::from("| call | instructions per call |\n|---|---|\n");
    let wanted =
        |kind: &str| kind.is_empty() || words.is_empty() || words.iter().any(|w| kind.contains(w));
    for kind in kinds.into_iter().filter(|k| wanted(k)) {
        let plan = if kind.is_empty() {
            String::new()
        } else {
            format!("{kind}*{TIMES}")
        };
        let filters = Filters::Wasm(WasmFilter {
            module: module("stakeguard_bench_probe"),
            configuration: plan,
        });
        let Some(n) = instructions(&filters, load, &dir, &format!("probe {kind}")) else {
            continue;
        };
        match base {
            None => base = Some(n),
            Some(b) => {
                let per_call = (n - b) / TIMES;
                eprintln!("probe {kind:<28} {per_call:>8.0} instructions per call");
                md.push_str(&format!("| {kind} | {per_call:.0} |\n"));
            }
        }
    }
    println!("{md}");
    std::fs::write(out_dir.join("host-calls.md"), md).unwrap();
}

/// Prints the tables (Markdown, as BENCHMARKS.md quotes them) and writes them with the raw
/// figures under `out_dir`.
fn report(
    results: &Results,
    instr: &BTreeMap<(&str, String), f64>,
    rounds: usize,
    seconds: u64,
    out_dir: &Path,
) {
    let med = |mode: &str, setup: &str, load: &str| -> Option<(f64, f64)> {
        let runs = results.get(&(mode.to_owned(), setup, load.to_owned()))?;
        let mut rps: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
        Some((median(&mut rps), median(&mut cpu)))
    };
    let mut md = String::new();
    md.push_str(&format!(
        "Envoy 1.40.0, `--concurrency 1` on core 0, `wrk -t1 -c16` on core 1; {rounds} alternating rounds of {seconds} s, medians.\n\n"
    ));
    for mode in ["direct_response", "proxy"] {
        md.push_str(&format!("### {mode}\n\n| configuration | request | req/s | CPU µs/req | throughput / (a) | throughput / (b) | CPU (b) / CPU |\n|---|---|---|---|---|---|---|\n"));
        for (m, setup, load) in results.keys() {
            if m != mode {
                continue;
            }
            let Some((rps, cpu)) = med(mode, setup, load) else {
                continue;
            };
            // The deny path is compared with the same baselines' allow-path figures of the
            // first bank request (both are one request through one worker).
            let baseline_load = if setup.starts_with("(d)") {
                "bank rates (standard)"
            } else {
                load.as_str()
            };
            let none = med(mode, "(a) no filter", baseline_load);
            let empty = med(mode, "(b) empty Wasm filter", baseline_load);
            let ratio = |base: Option<(f64, f64)>| {
                base.map_or("-".to_owned(), |b| format!("{:.2}", rps / b.0))
            };
            let cpu_ratio = empty.map_or("-".to_owned(), |b| format!("{:.2}", b.1 / cpu));
            md.push_str(&format!(
                "| {setup} | {load} | {rps:.0} | {cpu:.1} | {} | {} | {cpu_ratio} |\n",
                ratio(none),
                ratio(empty)
            ));
        }
        md.push('\n');
    }
    if !instr.is_empty() {
        md.push_str("### Instructions per request (callgrind, direct_response)\n\n| configuration | request | instructions | over (b) | (b) / this |\n|---|---|---|---|---|\n");
        for ((setup, load), n) in instr {
            let empty = instr.get(&("(b) empty Wasm filter", load.clone()));
            let over = empty.map_or("-".to_owned(), |e| format!("{:+.0}", n - e));
            let ratio = empty.map_or("-".to_owned(), |e| format!("{:.2}", e / n));
            md.push_str(&format!(
                "| {setup} | {load} | {n:.0} | {over} | {ratio} |\n"
            ));
        }
    }
    println!("{md}");
    std::fs::write(out_dir.join("envoy.md"), &md).unwrap();
    let raw: Vec<Value> = results
        .iter()
        .map(|((mode, setup, load), runs)| json!({ "mode": mode, "configuration": setup, "request": load, "runs": runs.iter().map(|(r, c)| json!({"requests_per_second": r, "cpu_us_per_request": c})).collect::<Vec<_>>() }))
        .collect();
    let instr_json: Vec<Value> = instr
        .iter()
        .map(|((setup, load), n)| json!({ "configuration": setup, "request": load, "instructions_per_request": n }))
        .collect();
    std::fs::write(
        out_dir.join("envoy.json"),
        serde_json::to_string_pretty(&json!({ "throughput": raw, "instructions": instr_json }))
            .unwrap(),
    )
    .unwrap();
}
