//! What stakeguard costs inside a real Envoy, side by side with what Envoy costs without
//! it: one Envoy binary (the pinned 1.40.0), one worker pinned to core 0, the load
//! generator pinned to core 1, configurations alternating round by round so that the
//! machine's drift hits all of them alike.
//!
//! Configurations: (a) no Wasm filter; (b) the empty Rust proxy-wasm filter
//! (`bench/empty`, same SDK and release profile); (c) stakeguard on the bank and retailer
//! policies with their rate limits raised so that nothing is refused (the allow path);
//! (d) stakeguard on the policies as shipped, answered locally (the deny path: 401, 405,
//! 404 and 429); (e) Envoy's own filters doing the nearest thing (RBAC on the credential
//! header, a local rate limit, header mutation on the response). Each runs answering with
//! `direct_response` and proxying to a second Envoy on core 1 that answers directly.
//!
//! The parts (`STAKEGUARD_BENCH_PARTS`, comma-separated; all by default):
//! - `overhead`: throughput (`wrk`, closed loop) and Envoy's CPU time per request, ratios
//!   to (a) and (b); open-loop latency at a fixed rate (`oha --latency-correction`), p50
//!   and p99 over (a);
//! - `instructions`: instructions Envoy executes per request (callgrind, a deterministic
//!   figure on a noisy machine), every request of every configuration;
//! - `scaling`: 10, 1,000 and 10,000 generated APIs in Envoy (instructions and
//!   throughput), and the ECDS swap of a 10,000-API policy under load (`ecds`);
//! - `memory`: Envoy's RSS at `--concurrency 2` with and without the filter;
//! - `speed`: the same recordings through the harness and through Envoy;
//! - `service`: a rate limit counted in the rate limit service (the real peer,
//!   `tests/ratelimit-peer`, on a private redis-server) against the same counted locally:
//!   throughput, CPU and open-loop latency (`service.rs`).
//!
//! Every part writes its section of `envoy.json` (the other sections of an earlier run
//! are kept, each with its time and the machine's load), then `envoy.md` (the tables) and
//! `envoy.svg` (the chart) are made from the whole file.
//!
//! Knobs: `STAKEGUARD_BENCH_ROUNDS` (default 2; the scaling and service parts 3),
//! `STAKEGUARD_BENCH_SECONDS` (default 2), `STAKEGUARD_BENCH_MODES` (default `direct_response,proxy`), `STAKEGUARD_BENCH_RATE`
//! (open-loop requests per second, default 2000; `STAKEGUARD_BENCH_SERVICE_RATE` for the
//! service part, default 500), `STAKEGUARD_BENCH_LATENCY_SECONDS`
//! (default 2), `STAKEGUARD_BENCH_KEEP_PROFILES=1` (callgrind profiles kept for
//! `callgrind_annotate`), `STAKEGUARD_BENCH_PROBE` (prices host calls with `bench/probe`),
//! `STAKEGUARD_BENCH_OUT` (default `target/bench`), `STAKEGUARD_RATELIMIT_PEER` (default
//! `target/harness/ratelimit-peer`), `STAKEGUARD_REDIS_SERVER` (default `redis-server` on
//! the `PATH`). A name filter as argument runs only
//! the configurations whose name contains it, e.g. `-- "(c)"`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

#[path = "../../../policies/benches/inventory.rs"]
mod inventory;

mod chart;
mod latency;
mod memory;
mod report;
mod scale;
mod service;
mod speed;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stakeguard_harness::envoy::Envoy;
use stakeguard_harness::envoy::bootstrap::{EnvoyConfig, Paths, WasmFilter, cluster, socket};
use stakeguard_harness::envoy::http::{self, Request};

/// The token of the bank recording (claims `sub: bob`).
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJhbmstMjAyNiJ9.eyJzdWIiOiJib2IiLCJhY2NvdW50cyI6WyIxMDEwIiwiMTAxMSIsIjEwMTIiXSwic2NvcGUiOiJhY2NvdW50czpyZWFkIHRyYW5zZmVyczp3cml0ZSJ9.c2lnbmF0dXJl";

/// What the load generators send: one request over and over, or several in turn.
pub struct Load {
    pub name: String,
    pub requests: Vec<Request>,
    /// Whether the filter answers it locally (4xx).
    pub denied: bool,
}

impl Load {
    fn one(name: &str, request: Request, denied: bool) -> Self {
        Self {
            name: name.to_owned(),
            requests: vec![request],
            denied,
        }
    }
}

fn bank(method: &str, path: &str) -> Request {
    Request::new(method, path).host("bank.example.com")
}

/// The allow path: the two bank requests and one per retailer tier.
fn allow_loads() -> Vec<Load> {
    vec![
        Load::one(
            "bank rates (standard)",
            bank("GET", "/api/v1/rates/gbp-eur"),
            false,
        ),
        Load::one(
            "bank accounts (critical)",
            bank("GET", "/api/v2/accounts")
                .header("authorization", TOKEN)
                .header("x-user-id", "bob")
                .header("user-agent", "BankApp/5.2")
                .header("accept", "application/json")
                .header("cookie", "sid=sid-bob-9a1b7d40; theme=dark"),
            false,
        ),
        Load::one(
            "retailer cart (checkout)",
            Request::get("/api/v3/cart/items")
                .host("shop.example.com")
                .header("x-user-id", "carol")
                .header("cookie", "cart_session=c-42"),
            false,
        ),
        Load::one(
            "retailer products (catalogue)",
            Request::get("/api/v1/products/42").host("eu.shop.example.com"),
            false,
        ),
    ]
}

/// The deny path: local replies of four controls.
fn deny_loads() -> Vec<Load> {
    vec![
        Load::one(
            "401 credentials missing",
            bank("GET", "/api/v2/accounts"),
            true,
        ),
        Load::one(
            "405 method not allowed",
            bank("DELETE", "/api/v2/accounts").header("authorization", TOKEN),
            true,
        ),
        Load::one("404 unknown route", bank("GET", "/api/v9/debug"), true),
        Load::one(
            "429 rate limited",
            bank("GET", "/api/v1/rates/gbp-eur"),
            true,
        ),
    ]
}

/// What sits in the listener's filter chain.
#[derive(Clone)]
pub enum Filters {
    None,
    Wasm(WasmFilter),
    Native,
}

struct Setup {
    name: &'static str,
    filters: Filters,
    loads: fn() -> Vec<Load>,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn module(name: &str) -> PathBuf {
    let path = root().join(format!("target/wasm32-wasip1/release/{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make bench`",
        path.display()
    );
    path
}

/// Every `rate_limit.requests` of a policy document raised so that nothing is refused.
pub fn raise_limits(value: &mut Value) {
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

pub fn read_policy(name: &str) -> Value {
    let path = root().join(format!("policies/examples/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The bank and retailer policies as one (both inventories, the bank's tiers and the
/// retailer's, names kept apart), raised or as shipped.
fn policy(raised: bool) -> String {
    let mut bank = read_policy("bank");
    let retailer = read_policy("retailer");
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

fn stakeguard(configuration: String) -> Filters {
    Filters::Wasm(WasmFilter {
        module: module("stakeguard_filter"),
        configuration,
    })
}

fn empty_filter() -> Filters {
    Filters::Wasm(WasmFilter {
        module: module("stakeguard_bench_empty"),
        configuration: String::new(),
    })
}

fn setups() -> Vec<Setup> {
    vec![
        Setup {
            name: "(a) no filter",
            filters: Filters::None,
            loads: allow_loads,
        },
        Setup {
            name: "(b) empty Wasm filter",
            filters: empty_filter(),
            loads: allow_loads,
        },
        Setup {
            name: "(c) stakeguard, allow",
            filters: stakeguard(policy(true)),
            loads: allow_loads,
        },
        Setup {
            name: "(d) stakeguard, deny",
            filters: stakeguard(policy(false)),
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

/// The http filters of a chain, the router last.
pub fn http_filters(filters: &Filters) -> Vec<Value> {
    let mut chain = match filters {
        Filters::None => Vec::new(),
        Filters::Wasm(filter) => vec![EnvoyConfig::wasm_filter(filter)],
        Filters::Native => native_filters(),
    };
    chain.push(
        json!({ "name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }),
    );
    chain
}

/// A listener `main` with these http filters, answering directly or routing to
/// `upstream` (another Envoy, or the recorded upstream).
pub fn bootstrap_with(http_filters: Vec<Value>, upstream: Option<u16>) -> Value {
    let route = match upstream {
        Some(_) => json!({ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }),
        None => json!({ "match": { "prefix": "/" }, "direct_response": {
            "status": 200, "body": { "inline_string": "{\"ok\":true}" } } }),
    };
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [route] }] },
        "http_filters": http_filters,
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

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// `taskset -c CORES`.
pub fn pinned(cores: &str) -> Vec<String> {
    strings(&["taskset", "-c", cores])
}

/// Starts Envoy with `bootstrap` (built from the run's paths), `workers` worker threads,
/// `extra` arguments, under `wrapper`.
pub fn start_bootstrap(
    bootstrap: impl FnOnce(&Paths) -> Value,
    workers: u32,
    extra: &[String],
    wrapper: &[String],
) -> Envoy {
    let binary = stakeguard_harness::envoy::process::default_binary(&root());
    Envoy::start_wrapped(&binary, bootstrap, workers, extra, wrapper)
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn start(filters: &Filters, upstream: Option<u16>, wrapper: &[String]) -> Envoy {
    let filters = filters.clone();
    start_bootstrap(
        move |_: &Paths| bootstrap_with(http_filters(&filters), upstream),
        1,
        &[],
        wrapper,
    )
}

/// Clock ticks of CPU the process (all its threads) has used.
pub fn cpu_ticks(pid: u32) -> u64 {
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

/// A Lua string literal of any bytes (decimal escapes, three digits each, so a digit
/// after one is not read as part of it).
fn lua_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b" /:;.,-_=+*()[]{}<>?!@#$%&|~^'`".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
    out.push('"');
    out
}

/// A wrk script sending `requests` (HTTP/1.1, keep-alive, exactly as encoded) in turn.
pub fn wrk_script(name: &str, requests: &[Request]) -> PathBuf {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "stakeguard-bench-{}-{slug}.lua",
        std::process::id()
    ));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "local requests = {{").unwrap();
    for request in requests {
        writeln!(file, "  {},", lua_string(&http::encode_with(request, true))).unwrap();
    }
    writeln!(
        file,
        "}}\nlocal i = 0\nrequest = function()\n  i = i % #requests + 1\n  return requests[i]\nend"
    )
    .unwrap();
    path
}

/// What one wrk run measured.
pub struct WrkRun {
    pub requests_per_second: f64,
    /// Envoy's CPU time (all threads) per request.
    pub cpu_us: f64,
    pub requests: f64,
    /// Answers that were not 2xx or 3xx.
    pub refused: f64,
}

/// One wrk run of `script` against `port` on core 1 (`-c16`), with Envoy's (`pid`) CPU
/// time per request.
pub fn wrk(pid: u32, port: u16, script: &Path, seconds: u64) -> WrkRun {
    let mut command = Command::new("taskset");
    command.args(["-c", "1", "wrk", "-t1", "-c16", &format!("-d{seconds}s")]);
    command.args(["-s", &script.display().to_string()]);
    command.arg(format!("http://127.0.0.1:{port}/"));
    let before = cpu_ticks(pid);
    let out = command.output().expect("run wrk (apt-get install wrk)");
    let after = cpu_ticks(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            panic!("wrk printed no `Requests/sec:` (`make bench-tools` installs it):\n{text}{err}")
        });
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
    let cpu_us = (after - before) as f64 / ticks_per_second() * 1e6 / requests.max(1.0);
    WrkRun {
        requests_per_second: rps,
        cpu_us,
        requests,
        refused,
    }
}

/// A wrk run of `load` that panics when the answers are not what the load expects (all
/// 2xx on the allow path, none on the deny path): a benchmark of the wrong outcome
/// measures nothing.
fn wrk_load(envoy: &Envoy, load: &Load, seconds: u64) -> WrkRun {
    let script = wrk_script(&load.name, &load.requests);
    let run = wrk(envoy.pid(), envoy.port(), &script, seconds);
    let _ = std::fs::remove_file(script);
    if seconds > 1 {
        let expected = if load.denied { run.requests } else { 0.0 };
        // The deny path's rate limit lets its first requests through.
        assert!(
            (run.refused - expected).abs() <= 1_000.0_f64.min(run.requests / 10.0),
            "{}: {} of {} answers were not 2xx",
            load.name,
            run.refused,
            run.requests
        );
    }
    run
}

/// Envoy under callgrind, for counting the instructions of the requests sent to it.
pub struct Counted {
    /// Taken on drop, so that the process has exited before its files are removed.
    envoy: Option<Envoy>,
    dir: PathBuf,
    base: String,
}

/// Requests sent before the counting starts, and counted (multiples of 64, the largest
/// number of requests a load takes turns with).
const WARM_UP: usize = 320;
const COUNTED: usize = 512;

impl Counted {
    /// Envoy started under callgrind with `bootstrap`; profiles go to `dir`.
    pub fn start(bootstrap: impl FnOnce(&Paths) -> Value, dir: &Path) -> Option<Self> {
        Command::new("valgrind").arg("--version").output().ok()?;
        std::fs::create_dir_all(dir).unwrap();
        let base = format!("callgrind.{}.out", std::process::id());
        let wrapper: Vec<String> = strings(&[
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            "--smc-check=all-non-file",
            "--dump-instr=no",
            "--compress-strings=no",
        ])
        .into_iter()
        .chain([format!(
            "--callgrind-out-file={}.%p",
            dir.join(&base).display()
        )])
        .collect();
        // V8 compiling the module under valgrind takes minutes on a busy machine: a start
        // that times out is reported and the counts of this configuration left out.
        let binary = stakeguard_harness::envoy::process::default_binary(&root());
        let envoy = Envoy::start_wrapped(&binary, bootstrap, 1, &[], &wrapper)
            .map_err(|e| eprintln!("callgrind: Envoy did not start: {}", e.message))
            .ok()?;
        Some(Self {
            envoy: Some(envoy),
            dir: dir.to_path_buf(),
            base,
        })
    }

    fn envoy(&self) -> &Envoy {
        self.envoy.as_ref().unwrap()
    }

    fn control(&self, flag: &str) -> Option<()> {
        let out = Command::new("callgrind_control")
            .args([flag, &self.envoy().pid().to_string()])
            .output()
            .ok()?;
        out.status.success().then_some(())
    }

    /// Sends `n` of `load`'s requests in turn on one keep-alive connection (as wrk's);
    /// returns how many answers were not what the load expects.
    fn send(&self, load: &Load, n: usize) -> usize {
        let stream = http::connect(self.envoy().port()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let encoded: Vec<Vec<u8>> = load
            .requests
            .iter()
            .map(|r| http::encode_with(r, true))
            .collect();
        let mut unexpected = 0;
        for k in 0..n {
            let i = k % encoded.len();
            writer.write_all(&encoded[i]).unwrap();
            let response = http::read_response(&mut reader, &load.requests[i].method).unwrap();
            if (response.status >= 400) != load.denied {
                unexpected += 1;
            }
        }
        unexpected
    }

    /// Instructions Envoy executes per request of `load`, after a warm-up; `label` names
    /// the profile kept with `STAKEGUARD_BENCH_KEEP_PROFILES=1`. Counted again once if an
    /// answer was not the expected one (a rate-limit window that rolled over).
    pub fn instructions(&self, load: &Load, label: &str) -> Option<f64> {
        self.send(load, WARM_UP);
        for _ in 0..2 {
            self.control("-z")?;
            let unexpected = self.send(load, COUNTED);
            self.control("-d")?;
            let total = self.take_dump(label);
            if unexpected == 0 {
                return total.map(|t| t / COUNTED as f64);
            }
            eprintln!("callgrind {label}: {unexpected} unexpected answers, counting again");
        }
        None
    }

    /// The instruction total of the dump made on request (it holds only what ran since
    /// the zeroing), removed or kept under `label`.
    fn take_dump(&self, label: &str) -> Option<f64> {
        let mut total = None;
        for entry in std::fs::read_dir(&self.dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&self.base) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let counted = text.contains("Trigger: Client Request: dump")
                || text.contains("desc: Trigger: dump");
            if !counted {
                continue;
            }
            total = text
                .lines()
                .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
                .and_then(|n| n.trim().parse::<f64>().ok());
            if env_number("STAKEGUARD_BENCH_KEEP_PROFILES", 0) == 1 {
                let slug: String = label
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let _ = std::fs::rename(entry.path(), self.dir.join(format!("{slug}.callgrind")));
            } else {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        total
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The profile written at exit covers the whole run: not a figure.
        drop(self.envoy.take());
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&self.base) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// When and under what load a section was measured.
pub fn stamp() -> Value {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({ "unix_time": at, "load_average": load_average() })
}

/// The throughput and the latency figures of every round of one row.
type Rounds = (Vec<Value>, Vec<Value>);

/// Throughput and latency by mode, configuration and request, every round kept.
fn overhead(setups: &[Setup], out: &mut BTreeMap<String, Value>) {
    let rounds = env_number("STAKEGUARD_BENCH_ROUNDS", 2) as usize;
    let seconds = env_number("STAKEGUARD_BENCH_SECONDS", 2);
    let rate = env_number("STAKEGUARD_BENCH_RATE", 2000);
    let latency_seconds = env_number("STAKEGUARD_BENCH_LATENCY_SECONDS", 2);
    let oha = latency::available();
    if !oha {
        eprintln!("oha is missing (`make bench-tools` installs it): no latency figures");
    }
    let modes = std::env::var("STAKEGUARD_BENCH_MODES")
        .unwrap_or_else(|_| "direct_response,proxy".to_owned());
    let start_stamp = stamp();
    let mut rows: BTreeMap<(String, &str, String), Rounds> = BTreeMap::new();
    for mode in modes.split(',').filter(|m| !m.is_empty()) {
        // The upstream for the proxied runs: an Envoy answering directly, on the load
        // generator's core.
        let upstream = (mode == "proxy").then(|| start(&Filters::None, None, &pinned("1")));
        let upstream_port = upstream.as_ref().map(Envoy::port);
        for round in 0..rounds {
            for setup in setups {
                let envoy = start(&setup.filters, upstream_port, &pinned("0"));
                // Open-loop latency for the first two requests of each configuration (the
                // issue's two bank requests; 401 and 405 on the deny path).
                for (i, load) in (setup.loads)().iter().enumerate() {
                    wrk_load(&envoy, load, 1);
                    let run = wrk_load(&envoy, load, seconds);
                    let latency = (oha && i < 2)
                        .then(|| {
                            latency::run(envoy.port(), &load.requests[0], rate, latency_seconds)
                        })
                        .flatten();
                    eprintln!(
                        "{mode} round {round} {:<26} {:<30} {:>7.0} req/s {:>5.1} µs CPU/req{}",
                        setup.name,
                        load.name,
                        run.requests_per_second,
                        run.cpu_us,
                        latency
                            .as_ref()
                            .map_or(String::new(), latency::Latency::progress)
                    );
                    let row = rows
                        .entry((mode.to_owned(), setup.name, load.name.clone()))
                        .or_default();
                    row.0.push(json!({
                        "requests_per_second": run.requests_per_second,
                        "cpu_us_per_request": run.cpu_us,
                    }));
                    if let Some(l) = latency {
                        row.1.push(l.to_json());
                    }
                }
            }
        }
        drop(upstream);
    }
    let mut rows: Vec<Value> = rows
        .into_iter()
        .map(|((mode, setup, load), (runs, latency))| {
            json!({ "mode": mode, "configuration": setup, "request": load, "rounds": rounds, "runs": runs, "latency": latency })
        })
        .collect();
    // A run of one mode (`STAKEGUARD_BENCH_MODES`) keeps the other mode's rows.
    let ran: Vec<&str> = modes.split(',').collect();
    if let Some(earlier) = out.get("overhead").and_then(|o| o["rows"].as_array()) {
        rows.extend(
            earlier
                .iter()
                .filter(|r| !ran.contains(&r["mode"].as_str().unwrap_or("")))
                .cloned(),
        );
    }
    out.insert(
        "overhead".to_owned(),
        json!({
            "measured": start_stamp,
            "rounds": rounds,
            "seconds": seconds,
            "latency_rate": rate,
            "latency_seconds": latency_seconds,
            "rows": rows,
        }),
    );
}

/// Instructions per request of every configuration's requests, one Envoy under callgrind
/// per configuration.
fn instructions(setups: &[Setup], out_dir: &Path, out: &mut BTreeMap<String, Value>) {
    let dir = out_dir.join("callgrind");
    let measured = stamp();
    let mut rows = Vec::new();
    for setup in setups {
        let filters = setup.filters.clone();
        let Some(counted) = Counted::start(
            move |_: &Paths| bootstrap_with(http_filters(&filters), None),
            &dir,
        ) else {
            eprintln!(
                "no instruction counts for {} (valgrind missing or Envoy not started)",
                setup.name
            );
            continue;
        };
        for load in (setup.loads)() {
            let label = format!("{} {}", setup.name, load.name);
            if let Some(n) = counted.instructions(&load, &label) {
                eprintln!(
                    "callgrind {:<26} {:<30} {n:>9.0} instructions/req",
                    setup.name, load.name
                );
                rows.push(json!({ "configuration": setup.name, "request": load.name, "instructions_per_request": n }));
            }
        }
    }
    // Rows of configurations not counted this time (a name filter, a failed start) are
    // kept from the earlier run.
    if let Some(earlier) = out.get("instructions").and_then(|o| o["rows"].as_array()) {
        let counted = |r: &Value| {
            rows.iter().any(|n: &Value| {
                n["configuration"] == r["configuration"] && n["request"] == r["request"]
            })
        };
        let kept: Vec<Value> = earlier.iter().filter(|r| !counted(r)).cloned().collect();
        rows.extend(kept);
    }
    out.insert(
        "instructions".to_owned(),
        json!({ "measured": measured, "warm_up": WARM_UP, "counted": COUNTED, "rows": rows }),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument names setups to run.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let parts = std::env::var("STAKEGUARD_BENCH_PARTS")
        .unwrap_or_else(|_| "overhead,instructions,scaling,ecds,memory,speed,service".to_owned());
    let runs = |part: &str| parts.split(',').any(|p| p == part);
    let out_dir = std::env::var("STAKEGUARD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/bench"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let json_path = out_dir.join("envoy.json");
    // The sections of an earlier run that this one does not measure are kept.
    let mut sections: BTreeMap<String, Value> = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    // Files of the old layout (one run's throughput and instructions) are not sections.
    sections.retain(|_, v| v.get("measured").is_some());
    let setups: Vec<Setup> = setups()
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
        .collect();
    let save = |sections: &BTreeMap<String, Value>| {
        let value = Value::Object(sections.clone().into_iter().collect());
        std::fs::write(&json_path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        let md = report::markdown(&value);
        println!("{md}");
        std::fs::write(out_dir.join("envoy.md"), md).unwrap();
        std::fs::write(out_dir.join("envoy.svg"), chart::svg(&value)).unwrap();
    };
    eprintln!("load average at start: {}", load_average());
    if runs("overhead") {
        overhead(&setups, &mut sections);
        save(&sections);
    }
    if runs("instructions") {
        instructions(&setups, &out_dir, &mut sections);
        save(&sections);
    }
    if runs("scaling") {
        scale::inventory_sizes(&out_dir, &mut sections);
        save(&sections);
    }
    if runs("ecds") {
        scale::ecds_swap(&mut sections);
        save(&sections);
    }
    if runs("memory") {
        memory::rss(&mut sections);
        save(&sections);
    }
    if runs("speed") {
        speed::harness_and_envoy(&mut sections);
        save(&sections);
    }
    if runs("service") {
        service::service_vs_local(&out_dir, &mut sections);
        save(&sections);
    }
    if runs("chart") {
        save(&sections);
    }
    // `1` prices every kind of call; a comma-separated list only the kinds naming one
    // of its words (e.g. `info,trace`).
    let probe = std::env::var("STAKEGUARD_BENCH_PROBE").unwrap_or_default();
    if !probe.is_empty() && probe != "0" {
        let words: Vec<&str> = probe.split(',').filter(|w| *w != "1").collect();
        price_host_calls(&out_dir, &words);
    }
}

/// The price of each kind of host call: the probe module making ten of one kind per
/// request (a local reply: one, since it answers the request), against the probe making
/// none, in instructions (`STAKEGUARD_BENCH_PROBE=1`, about a minute per kind).
fn price_host_calls(out_dir: &Path, words: &[&str]) {
    const TEN: u32 = 10;
    let kinds = [
        ("", 0),
        ("request:trace", TEN),
        ("request:info", TEN),
        ("request:time", TEN),
        ("request:metric", TEN),
        ("request:shared_get", TEN),
        ("request:set_property", TEN),
        ("request:request_value", TEN),
        ("request:source_address", TEN),
        ("request:request_map", TEN),
        ("request:shared_update", TEN),
        ("response:response_remove", TEN),
        ("response:response_add", TEN),
        ("response:response_replace", TEN),
        ("response:response_map", TEN),
        ("response:response_rewrite", TEN),
        // Over the router's `direct_response`, which answers the other kinds' requests.
        ("request:local_reply", 1),
    ];
    let dir = out_dir.join("callgrind");
    let load = &allow_loads()[1];
    let mut base = None;
    let mut md = String::from("| call | instructions per call |\n|---|---|\n");
    let wanted =
        |kind: &str| kind.is_empty() || words.is_empty() || words.iter().any(|w| kind.contains(w));
    for (kind, times) in kinds.into_iter().filter(|(k, _)| wanted(k)) {
        let plan = if kind.is_empty() {
            String::new()
        } else {
            format!("{kind}*{times}")
        };
        let filters = Filters::Wasm(WasmFilter {
            module: module("stakeguard_bench_probe"),
            configuration: plan,
        });
        let Some(counted) = Counted::start(
            move |_: &Paths| bootstrap_with(http_filters(&filters), None),
            &dir,
        ) else {
            return;
        };
        let answered = Load {
            name: load.name.clone(),
            requests: load.requests.clone(),
            denied: kind.ends_with("local_reply"),
        };
        let Some(n) = counted.instructions(&answered, &format!("probe {kind}")) else {
            continue;
        };
        match base {
            None => base = Some(n),
            Some(b) => {
                let per_call = (n - b) / f64::from(times);
                eprintln!("probe {kind:<28} {per_call:>8.0} instructions per call");
                md.push_str(&format!("| {kind} | {per_call:.0} |\n"));
            }
        }
    }
    println!("{md}");
    std::fs::write(out_dir.join("host-calls.md"), md).unwrap();
}
