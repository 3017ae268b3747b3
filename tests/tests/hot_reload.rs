//! Hot reload through file-based ECDS (`envoy-examples/hot-reload/`): a policy swapped
//! with `swap-policy.sh` while clients keep sending requests is enforced within 2 s, no
//! request fails or passes unchecked meanwhile, and Envoy never restarts; a policy the
//! filter refuses is rejected by Envoy (`update_rejected`, validation errors with JSON
//! paths in the log) and the previous one keeps enforcing; a lockout made before a swap
//! still holds after it (counters live in shared data under keys without the revision).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use stakeguard_tests::client::Request;
use stakeguard_tests::ecds::{self, Ecds};
use stakeguard_tests::envoy::{Envoy, EnvoyConfig, fail_with_log};
use stakeguard_tests::stats::sum;
use stakeguard_tests::upstream::{GOOD_PASSWORD, Upstream};
use stakeguard_tests::wait::{eventually, poll};
use stakeguard_tests::{TempDir, require_filter_wasm};

/// The login API and its thresholds are the same in both policies (same name, version,
/// position and table), so the lockout counters are the same shared-data keys.
const LOGIN_API: &str = r#"{ "name": "login", "version": "v1", "owner": "team-identity", "tier": "critical",
      "routes": [ { "path": "/api/v1/login", "methods": ["POST"] } ],
      "login": { "username": { "json_pointer": "/username" } } }"#;
const TIERS: &str = r#"{
    "critical": { "login": { "max_failures": 3, "window": "15m", "lockout": "30m", "action": "block", "keys": ["username"] } },
    "open": { "mode": "enforce" } }"#;

/// Policy A: `orders v1` is retired, every order request answers 410.
fn policy_a() -> String {
    format!(
        r#"{{ "revision": "hot-a", "tiers": {TIERS}, "apis": [ {LOGIN_API},
    {{ "name": "orders", "version": "v1", "owner": "team-orders", "tier": "open",
      "lifecycle": {{ "status": "retired" }}, "routes": [ {{ "path": "/api/v1/orders/**" }} ] }} ],
  "unknown_routes": {{ "action": "block" }} }}"#
    )
}

/// Policy B: `orders v1` is active but needs credentials; the stream sends none, so every
/// order request answers 401. A 200 would mean a request passed with no policy enforced.
fn policy_b() -> String {
    format!(
        r#"{{ "revision": "hot-b", "tiers": {TIERS}, "apis": [ {LOGIN_API},
    {{ "name": "orders", "version": "v1", "owner": "team-orders", "tier": "open",
      "auth": {{ "required": ["authorization"] }}, "routes": [ {{ "path": "/api/v1/orders/**" }} ] }} ],
  "unknown_routes": {{ "action": "block" }} }}"#
    )
}

/// Refused by the filter: an unknown tier.
const INVALID: &str = r#"{ "revision": "hot-bad", "tiers": { "open": { "mode": "enforce" } },
  "apis": [ { "name": "orders", "version": "v1", "owner": "team-orders", "tier": "gold",
              "routes": [ { "path": "/api/v1/orders/**" } ] } ] }"#;

const OLD: u16 = 410;
const NEW: u16 = 401;

fn login(user: &str, password: &str) -> Request {
    Request::post_json(
        "/api/v1/login",
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    )
}

/// One request of the stream: when it was sent (since the stream began) and what came
/// back (a status, or the I/O error).
struct Sent {
    at: Duration,
    result: Result<u16, String>,
}

/// Clients sending order requests on new connections until told to stop, each at most
/// `MAX_PER_CLIENT` requests.
struct Stream {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<Sent>>>,
    start: Instant,
    /// The wall clock at `start`, to place file times on the stream's time line.
    wall: SystemTime,
}

const CLIENTS: usize = 3;
const MAX_PER_CLIENT: usize = 4000;
/// Each client sends at most one request per this interval: 3 clients, 15 requests per
/// 10 ms, steady, without starving the two cores Envoy shares with the test.
const PACE: Duration = Duration::from_millis(2);

impl Stream {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let wall = SystemTime::now();
        let threads = (0..CLIENTS)
            .map(|c| {
                let stop = Arc::clone(&stop);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let mut sent = Vec::new();
                    for n in 0..MAX_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let at = start.elapsed();
                        let next = at + PACE;
                        let result = Request::get(&format!("/api/v1/orders/{c}-{n}"))
                            .send(port)
                            .map(|r| r.status)
                            .map_err(|e| e.to_string());
                        sent.push(Sent { at, result });
                        done.fetch_add(1, Ordering::Relaxed);
                        if let Some(wait) = next.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    sent
                })
            })
            .collect();
        Self {
            stop,
            done,
            threads,
            start,
            wall,
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Sent> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

fn write_policy(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn swap(ecds: &Ecds, policy: &Path) {
    let run = ecds
        .swap_with_script(policy)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.ok, "swap-policy.sh failed:\n{}", run.output);
}

fn start_envoy(ecds: &Ecds, upstream: &Upstream) -> Envoy {
    let config = EnvoyConfig::new(upstream.port());
    Envoy::start_with(
        |paths| ecds.bootstrap(&config, paths),
        2,
        &ecds::node_args(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_policy_swapped_under_traffic_is_enforced_without_failures_or_restart() {
    let module = require_filter_wasm();
    let files = TempDir::new("hot-policies").unwrap();
    let a = write_policy(files.path(), "a.json", &policy_a());
    let b = write_policy(files.path(), "b.json", &policy_b());
    let invalid = write_policy(files.path(), "invalid.json", INVALID);
    let ecds = Ecds::new(&module).unwrap();
    swap(&ecds, &a);
    let upstream = Upstream::start().unwrap();
    let mut envoy = start_envoy(&ecds, &upstream);
    let first = envoy.send(&Request::get("/api/v1/orders/first"));
    assert_eq!(first.status, OLD, "policy A in use: {}", first.text());

    // A lockout under policy A: three failures (the upstream answers 401), then even the
    // right password is refused.
    for n in 0..3 {
        let bad = envoy.send(&login("mallory", "wrong"));
        assert_eq!(bad.status, 401, "failure {n}: {}", bad.text());
    }
    let locked = envoy.send(&login("mallory", GOOD_PASSWORD));
    assert_eq!(locked.status, 429, "locked out: {}", locked.text());
    let logins_before_swap = upstream.count("/api/v1/login");

    let pid = envoy.pid();
    let uptime_before = envoy.stat("server.uptime").unwrap();
    let successes_before = envoy.stat(&ecds::update_success_stat()).unwrap();

    // The swap, under a steady stream of requests.
    let stream = Stream::start(envoy.port());
    eventually(|| (stream.done() >= 200).then_some(()))
        .unwrap_or_else(|| fail_with_log(&envoy, "the request stream did not get going"));
    let swap_started = stream.start.elapsed();
    swap(&ecds, &b);
    let script_done = stream.start.elapsed();
    // The moment of the swap: the new resource's mtime (written just before the `mv`,
    // which keeps it), placed on the stream's time line.
    let written = std::fs::metadata(ecds.resource_path())
        .and_then(|m| m.modified())
        .unwrap()
        .duration_since(stream.wall)
        .unwrap();
    assert!(
        (swap_started..=script_done).contains(&written),
        "the resource was written by the script: {written:?} not in {swap_started:?}..{script_done:?}"
    );
    let bound = written + Duration::from_secs(2);
    // Keep the stream going well past the 2 s bound, then stop it.
    let settle = bound + Duration::from_millis(1000);
    poll(Duration::from_secs(30), Duration::from_millis(20), || {
        (stream.start.elapsed() >= settle || stream.done() >= CLIENTS * MAX_PER_CLIENT)
            .then_some(())
    });
    let sent = stream.finish();

    let failures: Vec<_> = sent
        .iter()
        .filter(|s| !matches!(s.result, Ok(OLD | NEW)))
        .map(|s| (s.at, s.result.clone()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests got neither the old policy's {OLD} nor the new one's {NEW}: {:?}",
        failures.len(),
        sent.len(),
        failures.iter().take(10).collect::<Vec<_>>()
    );
    assert_eq!(
        upstream.count("/api/v1/orders"),
        0,
        "no order request reached the upstream unchecked"
    );
    let last_old = sent
        .iter()
        .filter(|s| s.result == Ok(OLD))
        .map(|s| s.at)
        .max()
        .unwrap();
    let first_new = sent
        .iter()
        .find(|s| s.result == Ok(NEW))
        .map(|s| s.at)
        .unwrap_or_else(|| fail_with_log(&envoy, "the new policy was never enforced"));
    assert!(
        first_new >= written,
        "the new policy answered {:?} before its resource was written",
        written.saturating_sub(first_new)
    );
    assert!(
        last_old <= bound,
        "the old policy still answered {:?} after the swap",
        last_old.saturating_sub(written)
    );
    let after_bound = sent.iter().filter(|s| s.at > bound).count();
    assert!(
        after_bound >= 100,
        "the stream ran on past the 2 s bound ({after_bound} requests), so the bound was tested"
    );
    let around = sent
        .iter()
        .filter(|s| {
            s.at + Duration::from_millis(100) >= written
                && s.at <= written + Duration::from_millis(100)
        })
        .count();
    assert!(
        around >= 20,
        "a steady stream across the swap: {around} requests within 100 ms of it"
    );
    let total = sent.last().map_or(Duration::ZERO, |s| s.at);
    eprintln!(
        "hot reload: {} requests in {total:?} ({:.0}/s, {CLIENTS} clients, new connection each); \
         {around} within 100 ms of the swap; swap-policy.sh took {:?} (check + write); \
         first {NEW} {:?} and last {OLD} {:?} after the resource was written",
        sent.len(),
        sent.len() as f64 / total.as_secs_f64().max(0.001),
        script_done.saturating_sub(swap_started),
        first_new.saturating_sub(written),
        last_old.saturating_sub(written),
    );
    assert_eq!(
        envoy.stat(&ecds::update_success_stat()),
        Some(successes_before + 1)
    );
    // Envoy flushes its log file every 50 ms.
    assert!(
        eventually(|| {
            let lines = envoy.log_lines("stakeguard: policy revision hot-b in use");
            (!lines.is_empty()).then_some(lines)
        })
        .is_some(),
        "revision log line missing:\n{}",
        envoy.log()
    );
    let revision_b = eventually(|| {
        let v = sum(
            &envoy.prometheus(),
            "stakeguard_policy",
            &[("revision", "hot-b")],
        );
        (v >= 1.0).then_some(v)
    });
    assert!(revision_b.is_some(), "revision gauge of hot-b");
    // The new configuration's root context knows nothing of the old one; the revision in
    // use, kept in shared data, lets it drop the old revision's gauge.
    let revision_a = eventually(|| {
        let v = sum(
            &envoy.prometheus(),
            "stakeguard_policy",
            &[("revision", "hot-a")],
        );
        (v == 0.0).then_some(v)
    });
    assert!(
        revision_a.is_some(),
        "the revision gauge of hot-a is back to 0"
    );

    // The lockout made under policy A holds under B; another user logs in fine, so the
    // 429 is the lockout and not the new policy refusing logins.
    let still_locked = envoy.send(&login("mallory", GOOD_PASSWORD));
    assert_eq!(
        still_locked.status,
        429,
        "lockout survives the swap: {}",
        still_locked.text()
    );
    let other = envoy.send(&login("trent", GOOD_PASSWORD));
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(
        upstream.count("/api/v1/login"),
        logins_before_swap + 1,
        "the locked-out attempt never reached the upstream"
    );

    // The script refuses a policy the filter would refuse, and leaves the resource alone.
    let resource_before = std::fs::read(ecds.resource_path()).unwrap();
    let refused = ecds.swap_with_script(&invalid).unwrap();
    assert!(!refused.ok, "swap-policy.sh accepted an invalid policy");
    assert!(
        refused.output.contains("apis[0].tier"),
        "the refusal names the JSON path:\n{}",
        refused.output
    );
    assert_eq!(
        std::fs::read(ecds.resource_path()).unwrap(),
        resource_before
    );

    // Written past the script, Envoy refuses it and policy B keeps enforcing.
    ecds.write(INVALID).unwrap();
    let rejected = eventually(|| {
        envoy
            .stat(&ecds::update_rejected_stat())
            .filter(|n| *n >= 1)
    });
    assert_eq!(
        rejected,
        Some(1),
        "update_rejected:\n{}",
        envoy
            .admin_get("/stats?filter=extension_config_discovery")
            .unwrap_or_default()
    );
    let errors = envoy.log_lines("stakeguard: policy rejected:");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("apis[0].tier") && l.contains("[error]")),
        "validation errors with JSON paths in Envoy's log: {errors:#?}"
    );
    for n in 0..50 {
        let r = envoy.send(&Request::get(&format!("/api/v1/orders/after-{n}")));
        assert_eq!(r.status, NEW, "policy B still enforced: {}", r.text());
    }
    assert_eq!(
        envoy.stat(&ecds::update_success_stat()),
        Some(successes_before + 1)
    );

    // One Envoy process all along: same pid, still running, uptime never reset.
    assert_eq!(envoy.pid(), pid);
    assert!(!envoy.has_exited(), "envoy exited");
    let uptime_after = envoy.stat("server.uptime").unwrap();
    assert!(
        uptime_after >= uptime_before,
        "uptime {uptime_before} -> {uptime_after}"
    );
    assert_eq!(envoy.stat("server.hot_restart_epoch"), Some(0));
}
