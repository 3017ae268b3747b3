//! Exact counting across Envoy workers (`--concurrency 2`): many clients at once, each
//! request on its own connection (so both workers serve them), against counters kept in
//! shared data with compare-and-swap. A rate limit of N lets exactly N requests through
//! (the upstream saw N, the rest got 429) although each worker reserves hits in advance
//! (the default, no `exact`): reserved hits count before they are used, so the workers
//! together never pass more than N, and the 72 requests use them all. A lockout threshold
//! of K locks after exactly K concurrent failures, not before and not later: no update is
//! lost and none is counted twice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Barrier};

use stakeguard_tests::client::Request;
use stakeguard_tests::start_filter_with;
use stakeguard_tests::stats::sum;
use stakeguard_tests::upstream::GOOD_PASSWORD;
use stakeguard_tests::wait::eventually;

const RATE: u32 = 25;
const LOCKOUT_AFTER: u32 = 12;

fn policy() -> String {
    format!(
        r#"{{
  "revision": "multi-worker-1",
  "identity": {{ "user": [ {{ "header": "x-user-id" }} ] }},
  "tiers": {{
    "metered": {{ "rate_limit": {{ "requests": {RATE}, "per": "1d", "key": "user" }} }},
    "guarded": {{ "login": {{ "max_failures": {LOCKOUT_AFTER}, "window": "1h", "lockout": "1h",
                              "action": "block", "keys": ["username"] }} }}
  }},
  "apis": [
    {{ "name": "quotes", "version": "v1", "owner": "team-quotes", "tier": "metered",
      "routes": [ {{ "path": "/api/v1/quotes/**", "methods": ["GET"] }} ] }},
    {{ "name": "login", "version": "v1", "owner": "team-identity", "tier": "guarded",
      "routes": [ {{ "path": "/api/v1/login", "methods": ["POST"] }} ],
      "login": {{ "username": {{ "json_pointer": "/username" }} }} }}
  ]
}}"#
    )
}

/// Runs `clients` threads that start together and each send `each` requests (one
/// connection per request); returns every status.
fn concurrently(port: u16, clients: usize, each: usize, request: Request) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let request = request.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..each)
                    .map(|_| request.send(port).map(|r| r.status).unwrap_or(0))
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn a_rate_limit_lets_exactly_its_quota_through_under_concurrency() {
    let (upstream, envoy) = start_filter_with(&policy(), |c| c.with_concurrency(2));
    let mut passed = Vec::new();
    for user in ["ada", "bea", "cy"] {
        let request = Request::get(&format!("/api/v1/quotes/{user}")).header("x-user-id", user);
        let statuses = concurrently(envoy.port(), 24, 3, request);
        assert_eq!(statuses.len(), 72);
        assert_eq!(
            count(&statuses, 200),
            RATE as usize,
            "{user}: exactly {RATE} of 72 concurrent requests pass: {statuses:?}"
        );
        assert_eq!(
            count(&statuses, 429),
            72 - RATE as usize,
            "{user}: the rest are limited: {statuses:?}"
        );
        assert_eq!(
            upstream.count(&format!("/api/v1/quotes/{user}")),
            RATE as usize,
            "{user}: the upstream saw exactly the quota"
        );
        passed.push(count(&statuses, 200));
    }
    // The decision metrics add up too (flushed by each worker's tick, so polled).
    let blocked = 3 * (72 - RATE as usize);
    let rq = eventually(|| {
        let samples = envoy.prometheus();
        let n = sum(
            &samples,
            "stakeguard_decision",
            &[
                ("api", "quotes"),
                ("control", "rate_limit"),
                ("outcome", "blocked"),
            ],
        );
        (n >= blocked as f64).then_some(samples)
    })
    .unwrap_or_else(|| panic!("{:?}", envoy.admin_get("/stats?filter=stakeguard")));
    assert_eq!(
        sum(
            &rq,
            "stakeguard_decision",
            &[
                ("api", "quotes"),
                ("control", "rate_limit"),
                ("outcome", "blocked")
            ],
        ),
        blocked as f64
    );
    // Both workers served traffic, so the counting really was shared.
    let workers: Vec<f64> = (0..2)
        .map(|w| {
            sum(
                &rq,
                "envoy_listener_worker_downstream_cx_total",
                &[("envoy_worker_id", &w.to_string())],
            )
        })
        .collect();
    eprintln!(
        "rate limit {RATE}/day: passed {passed:?} of 72 each; connections per worker {workers:?}; \
         store conflicts {}",
        sum(&rq, "stakeguard_store_conflicts", &[])
    );
    assert!(
        workers.iter().all(|n| *n > 0.0),
        "both workers took connections: {workers:?}"
    );
}

#[test]
fn a_lockout_counts_concurrent_failures_exactly() {
    let (upstream, envoy) = start_filter_with(&policy(), |c| c.with_concurrency(2));
    let login = |user: &str, password: &str| {
        Request::post_json(
            "/api/v1/login",
            &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
        )
    };
    for user in ["dora", "emil", "finn"] {
        // One short of the threshold, all at once: none is refused, each is counted.
        let statuses = concurrently(
            envoy.port(),
            (LOCKOUT_AFTER - 1) as usize,
            1,
            login(user, "wrong"),
        );
        assert_eq!(
            count(&statuses, 401),
            (LOCKOUT_AFTER - 1) as usize,
            "{user}: every failure below the threshold reaches the upstream: {statuses:?}"
        );
        // The K-th failure is still let through (a double count would lock it)...
        let kth = envoy.send(&login(user, "wrong"));
        assert_eq!(
            kth.status,
            401,
            "{user}: failure {LOCKOUT_AFTER}: {}",
            kth.text()
        );
        // ...and locks: a lost update would leave the count short of K.
        let locked = envoy.send(&login(user, GOOD_PASSWORD));
        assert_eq!(
            locked.status,
            429,
            "{user}: locked after exactly {LOCKOUT_AFTER}: {}",
            locked.text()
        );
    }
    assert_eq!(
        upstream.count("/api/v1/login"),
        3 * LOCKOUT_AFTER as usize,
        "locked attempts never reached the upstream"
    );
}
