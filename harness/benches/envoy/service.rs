//! What counting a rate limit in the rate limit service costs a request, side by side
//! with counting it locally (shared data), in one run: the bank and retailer policies
//! raised so that nothing is refused (as configuration (c)), with `defaults.counters`
//! putting `rate_limit` in the service or leaving it local and nothing else different.
//! The service is the real peer (`tests/ratelimit-peer`: Limitador on a private
//! redis-server), both on the load generator's core on loopback; every Envoy of the run
//! carries the same `ratelimit` gRPC cluster, so the policy is all that differs.
//!
//! Per configuration and request: closed-loop throughput (`wrk`), Envoy's CPU time per
//! request and the peer's and Redis's together, the calls Envoy made to the service per
//! request (1 counted in the service, 0 locally: checked, since a run that did not call
//! the service measures nothing), and open-loop p50/p99 at a fixed rate (`oha`). With
//! `STAKEGUARD_BENCH_SERVICE_INSTRUCTIONS=1`, also the instructions Envoy executes per
//! request of each (callgrind, about four minutes more).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stakeguard_harness::envoy::Envoy;
use stakeguard_harness::envoy::bootstrap::{Paths, cluster, speak_http2};

use crate::report::{field, measured, med, ratio_cell, round_ratios};
use crate::{
    Counted, Filters, Load, allow_loads, bootstrap_with, cpu_ticks, env_number, http_filters,
    latency, pinned, policy, root, stakeguard, stamp, start_bootstrap, ticks_per_second, wrk_load,
};

/// The cluster `counters.service.cluster` names.
const CLUSTER: &str = "ratelimit";
const LOCAL: &str = "stakeguard, counted locally";
const SERVICE: &str = "stakeguard, counted in the service";
const NONE: &str = "no filter";
/// Envoy's count of the streams it opened on the service's cluster: one per call.
const CALLS: &str = "cluster.ratelimit.upstream_rq_total";
/// The filter's count of calls that failed (timeout, unreachable, not an answer).
const ERRORS: &str = "stakeguard.ratelimit_service.errors";

/// A process of the bench's own, in a process group of its own, killed with it on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(mut command: Command, name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("stakeguard-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self { child, dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group made for this child; no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$VAR` if set, else the first of `candidates` that is a file.
fn binary(var: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => Some(PathBuf::from(path)),
        None => candidates.iter().find(|p| p.is_file()).cloned(),
    }
}

fn redis_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).map(|d| d.join("redis-server"));
    binary("STAKEGUARD_REDIS_SERVER", &dirs.collect::<Vec<_>>())
}

/// The optimized build `make bench` makes (`--profile harness`): a debug peer would
/// price Limitador's unoptimized code, not the call.
fn peer_binary() -> Option<PathBuf> {
    binary(
        "STAKEGUARD_RATELIMIT_PEER",
        &[root().join("target/harness/ratelimit-peer")],
    )
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// redis-server on core 1, no persistence; returns it and its URL once it answers PING.
fn start_redis(binary: &Path) -> (Daemon, String) {
    let port = free_port();
    let mut command = Command::new("taskset");
    command.args(["-c", "1"]).arg(binary);
    command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
    command.args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
    command.arg("--dir").arg(std::env::temp_dir());
    command.stdout(Stdio::null());
    let mut redis = Daemon::spawn(command, "redis");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(port) {
        let exited = !matches!(redis.child.try_wait(), Ok(None));
        assert!(
            !exited && Instant::now() < deadline,
            "redis-server did not answer PING: {}",
            redis.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, format!("redis://127.0.0.1:{port}"))
}

/// The peer on core 1 counting in `redis_url` (the limits come in the requests); returns
/// it and its port once it says where it listens.
fn start_peer(binary: &Path, redis_url: &str) -> (Daemon, u16) {
    let mut command = Command::new("taskset");
    command.args(["-c", "1"]).arg(binary);
    command.args(["--listen", "127.0.0.1:0", "--redis", redis_url]);
    command.stdout(Stdio::piped());
    let mut peer = Daemon::spawn(command, "ratelimit-peer");
    // One line, then nothing more on stdout: the pipe stays open with the child.
    let mut line = String::new();
    let stdout = peer.child.stdout.as_mut().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("ratelimit-peer said {line:?}: {}", peer.stderr()));
    (peer, port)
}

/// The raised policy with `rate_limit` counted `where` (`local` or `service`); the
/// service block is in both, so that is the one difference.
fn counted(place: &str) -> Filters {
    let mut document: Value = serde_json::from_str(&policy(true)).unwrap();
    document["defaults"]["counters"] = json!({
        "service": { "cluster": CLUSTER, "domain": "bench", "timeout": "250ms" },
        "rate_limit": place,
    });
    stakeguard(document.to_string())
}

/// The bench's listener with `filters`, and the service's cluster.
fn bootstrap(filters: &Filters, peer_port: u16) -> Value {
    let mut bootstrap = bootstrap_with(http_filters(filters), None);
    let mut service = cluster(CLUSTER, peer_port);
    speak_http2(&mut service);
    bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(service);
    bootstrap
}

fn start(filters: &Filters, peer_port: u16) -> Envoy {
    let filters = filters.clone();
    start_bootstrap(
        move |_: &Paths| bootstrap(&filters, peer_port),
        1,
        &[],
        &pinned("0"),
    )
}

/// Instructions Envoy executes per request, counted locally and in the service
/// (callgrind; minutes per configuration under valgrind, so only with
/// `STAKEGUARD_BENCH_SERVICE_INSTRUCTIONS=1`).
fn instructions(peer_port: u16, loads: &[Load], out_dir: &Path) -> Vec<Value> {
    let dir = out_dir.join("callgrind");
    let mut rows = Vec::new();
    for (name, filters) in [(LOCAL, counted("local")), (SERVICE, counted("service"))] {
        let Some(envoy) = Counted::start(move |_: &Paths| bootstrap(&filters, peer_port), &dir)
        else {
            eprintln!("no instruction counts for {name} (valgrind missing or Envoy not started)");
            continue;
        };
        for load in loads {
            let label = format!("service {name} {}", load.name);
            if let Some(n) = envoy.instructions(load, &label) {
                eprintln!(
                    "callgrind {name:<34} {:<26} {n:>9.0} instructions/req",
                    load.name
                );
                rows.push(json!({ "configuration": name, "request": load.name, "instructions_per_request": n }));
            }
        }
    }
    rows
}

/// Every round of one row.
#[derive(Default)]
struct Row {
    runs: Vec<Value>,
    latency: Vec<Value>,
}

pub fn service_vs_local(out_dir: &Path, out: &mut BTreeMap<String, Value>) {
    let (Some(redis_binary), Some(peer_binary)) = (redis_binary(), peer_binary()) else {
        eprintln!(
            "redis-server or target/harness/ratelimit-peer is missing (`make bench` installs \
             and builds them): no rate-limit-service figures"
        );
        return;
    };
    let rounds = env_number("STAKEGUARD_BENCH_ROUNDS", 3) as usize;
    let seconds = env_number("STAKEGUARD_BENCH_SECONDS", 2);
    // Well below what the peer answers on the shared core (about 2,500 calls a second
    // closed loop here), so that the latency is the call's and not the peer's queue.
    let rate = env_number("STAKEGUARD_BENCH_SERVICE_RATE", 500);
    let latency_seconds = env_number("STAKEGUARD_BENCH_LATENCY_SECONDS", 2);
    let oha = latency::available();
    let measured_at = stamp();
    let (redis, redis_url) = start_redis(&redis_binary);
    let (peer, peer_port) = start_peer(&peer_binary, &redis_url);
    let setups = [
        (NONE, Filters::None),
        (LOCAL, counted("local")),
        (SERVICE, counted("service")),
    ];
    // The bank's two requests: the standard tier's rate limit by client address, the
    // critical tier's by user (with its session and credential checks, counted locally).
    let loads: Vec<Load> = allow_loads().into_iter().take(2).collect();
    let mut rows: BTreeMap<(usize, usize), Row> = BTreeMap::new();
    for round in 0..rounds {
        for (s, (name, filters)) in setups.iter().enumerate() {
            let envoy = start(filters, peer_port);
            for (l, load) in loads.iter().enumerate() {
                wrk_load(&envoy, load, 1);
                let calls = envoy.stat(CALLS).unwrap_or(0);
                let service_ticks = cpu_ticks(peer.pid()) + cpu_ticks(redis.pid());
                let run = wrk_load(&envoy, load, seconds);
                let service_ticks = cpu_ticks(peer.pid()) + cpu_ticks(redis.pid()) - service_ticks;
                let calls = envoy.stat(CALLS).unwrap_or(0) - calls;
                let calls_per_request = calls as f64 / run.requests.max(1.0);
                let expected = if *name == SERVICE { 1.0 } else { 0.0 };
                // wrk's connections may have a request in flight at either end.
                assert!(
                    (calls_per_request - expected).abs() < 0.01,
                    "{name} {}: {calls} calls to the service for {} requests",
                    load.name,
                    run.requests
                );
                let service_cpu_us =
                    service_ticks as f64 / ticks_per_second() * 1e6 / run.requests.max(1.0);
                let latency = oha
                    .then(|| latency::run(envoy.port(), &load.requests[0], rate, latency_seconds))
                    .flatten();
                eprintln!(
                    "service round {round} {name:<34} {:<26} {:>7.0} req/s {:>5.1} µs CPU/req, peer+redis {service_cpu_us:>5.1} µs/req, {calls_per_request:.2} calls/req{}",
                    load.name,
                    run.requests_per_second,
                    run.cpu_us,
                    latency
                        .as_ref()
                        .map_or(String::new(), latency::Latency::progress)
                );
                let row = rows.entry((s, l)).or_default();
                row.runs.push(json!({
                    "requests_per_second": run.requests_per_second,
                    "cpu_us_per_request": run.cpu_us,
                    "service_cpu_us_per_request": service_cpu_us,
                    "calls_per_request": calls_per_request,
                }));
                if let Some(l) = latency {
                    assert_eq!(
                        (l.failed, l.non_2xx),
                        (0, 0),
                        "{name} {}: oha's requests were not all answered 2xx",
                        load.name
                    );
                    row.latency.push(l.to_json());
                }
            }
            assert_eq!(
                envoy.stat(ERRORS).unwrap_or(0),
                0,
                "{name}: calls to the service failed (fail-open requests passed uncounted)"
            );
        }
    }
    let instructions = (env_number("STAKEGUARD_BENCH_SERVICE_INSTRUCTIONS", 0) == 1)
        .then(|| instructions(peer_port, &loads, out_dir));
    drop(peer);
    drop(redis);
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|((s, l), row)| {
            json!({
                "configuration": setups[s].0,
                "request": loads[l].name,
                "runs": row.runs,
                "latency": row.latency,
            })
        })
        .collect();
    out.insert(
        "service".to_owned(),
        json!({
            "measured": measured_at,
            "rounds": rounds,
            "seconds": seconds,
            "latency_rate": rate,
            "latency_seconds": latency_seconds,
            "rows": rows,
            "instructions": instructions,
        }),
    );
}

/// The section's table: each configuration over counting locally, per round.
pub fn markdown(md: &mut String, section: &Value) {
    let _ = writeln!(
        md,
        "## Counting in the rate limit service\n\nThe raised bank and retailer policy with `defaults.counters.rate_limit` `local` or `service` (the peer, `tests/ratelimit-peer`: Limitador with a private redis-server, both on core 1 with the load generator), `direct_response`, Envoy 1.40.0 `--concurrency 1` on core 0, `wrk -t1 -c16`; {} alternating rounds of {} s ({}). Throughput: median, with the per-round ratio to counting locally (median, min–max). CPU: Envoy's, and the peer's and Redis's together, per request. Latency: `oha -q {} --latency-correction -c 8` for {} s, open loop, medians of the rounds, and what each adds over counting locally.\n\n| configuration | request | req/s | ÷ local | Envoy CPU µs/req | + over local | peer + Redis CPU µs/req | calls/req | p50 µs | p99 µs | p50 + | p99 + |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        section["rounds"],
        section["seconds"],
        measured(section),
        section["latency_rate"],
        section["latency_seconds"],
    );
    let rows = section["rows"].as_array().cloned().unwrap_or_default();
    let local = |request: &Value| {
        rows.iter()
            .find(|r| r["configuration"] == LOCAL && r["request"] == *request)
    };
    let cell = |v: &[f64], digits: usize| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.digits$}", med(v))
        }
    };
    for r in &rows {
        let base = local(&r["request"]);
        // What this row adds over counting locally, on a field of its runs or latency.
        let added = |list: &str, name: &str| {
            let this = field(&r[list], name);
            match base.map(|b| field(&b[list], name)) {
                Some(b) if !this.is_empty() && !b.is_empty() => {
                    format!("{:+.1}", med(&this) - med(&b))
                }
                _ => "-".to_owned(),
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r["configuration"].as_str().unwrap_or(""),
            r["request"].as_str().unwrap_or(""),
            cell(&field(&r["runs"], "requests_per_second"), 0),
            base.map_or("-".to_owned(), |b| ratio_cell(&round_ratios(r, b))),
            cell(&field(&r["runs"], "cpu_us_per_request"), 1),
            added("runs", "cpu_us_per_request"),
            cell(&field(&r["runs"], "service_cpu_us_per_request"), 1),
            cell(&field(&r["runs"], "calls_per_request"), 2),
            cell(&field(&r["latency"], "p50_us"), 0),
            cell(&field(&r["latency"], "p99_us"), 0),
            added("latency", "p50_us"),
            added("latency", "p99_us"),
        );
    }
    md.push('\n');
    let counts = section["instructions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if counts.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Instructions Envoy executes per request (callgrind, 512 requests after 320 of warm-up on one keep-alive connection; `STAKEGUARD_BENCH_SERVICE_INSTRUCTIONS=1`):\n\n| configuration | request | instructions | over local | ÷ local |\n|---|---|---|---|---|"
    );
    for r in &counts {
        let n = r["instructions_per_request"].as_f64().unwrap_or(f64::NAN);
        let base = counts
            .iter()
            .find(|b| b["configuration"] == LOCAL && b["request"] == r["request"])
            .and_then(|b| b["instructions_per_request"].as_f64());
        let _ = writeln!(
            md,
            "| {} | {} | {n:.0} | {} | {} |",
            r["configuration"].as_str().unwrap_or(""),
            r["request"].as_str().unwrap_or(""),
            base.map_or("-".to_owned(), |b| format!("{:+.0}", n - b)),
            base.map_or("-".to_owned(), |b| format!("{:.2}", n / b)),
        );
    }
    md.push('\n');
}
