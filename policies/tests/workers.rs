//! Counting with several workers on one shared store, as in an Envoy with `--concurrency`
//! above 1: rate limits reserve hits per worker and never let more than the limit through
//! together; sessions and refusals a worker already knows cost no store call.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{Host, req};
use stakeguard_policies::Verdict;

/// A policy with one API limited to `requests` a minute per client IP; `exact` chooses
/// counting every request in the store.
fn limited(requests: u32, exact: bool) -> String {
    format!(
        r#"{{
        "revision": "1",
        "state": {{ "slots": 65536 }},
        "tiers": {{ "t": {{ "rate_limit": {{ "requests": {requests}, "per": "1m",
                                            "key": "client_ip", "exact": {exact} }} }} }},
        "apis": [ {{ "name": "a", "version": "v1", "owner": "o", "tier": "t",
                    "routes": [ {{ "path": "/a/**" }} ] }} ]
    }}"#
    )
}

fn allowed(host: &Host, from: &str) -> bool {
    host.send(&req("GET", "/a/1").from(from)).verdict == Verdict::Continue
}

/// Both workers' clocks at the start of a minute, so one test stays in one window.
fn at_window_start(host: &Host) {
    host.now
        .set(host.now.get() - host.now.get() % 60_000 + 60_000);
}

#[test]
fn two_workers_together_let_exactly_the_limit_through() {
    let policy = limited(25, false);
    let a = Host::new(&policy);
    let b = a.worker_beside(&policy);
    at_window_start(&a);
    let mut through = 0;
    for i in 0..100 {
        let worker = if i % 2 == 0 { &a } else { &b };
        through += u32::from(allowed(worker, "192.0.2.7:1"));
        a.advance(10);
    }
    assert_eq!(through, 25, "reserved hits are all used, none twice");
}

#[test]
fn a_worker_asks_the_store_once_per_reservation_not_per_request() {
    let a = Host::new(&limited(1_000_000, false));
    at_window_start(&a);
    let before = a.store.calls();
    for _ in 0..640 {
        assert!(allowed(&a, "192.0.2.7:1"));
    }
    // 64 hits per reservation, each a read and a compare-and-swap write.
    assert_eq!(a.store.calls() - before, 640 / 64 * 2);
}

#[test]
fn an_exact_limit_counts_every_request_in_the_store() {
    let policy = limited(25, true);
    let a = Host::new(&policy);
    let b = a.worker_beside(&policy);
    at_window_start(&a);
    let before = a.store.calls();
    let mut through = 0;
    for i in 0..40 {
        let worker = if i % 2 == 0 { &a } else { &b };
        through += u32::from(allowed(worker, "192.0.2.7:1"));
    }
    assert_eq!(through, 25);
    assert_eq!(a.store.calls() - before, 40 * 2);
}

#[test]
fn a_key_over_its_limit_is_refused_without_asking_the_store() {
    let a = Host::new(&limited(3, false));
    at_window_start(&a);
    for _ in 0..3 {
        assert!(allowed(&a, "192.0.2.7:1"));
    }
    assert!(!allowed(&a, "192.0.2.7:1"));
    let before = a.store.calls();
    for _ in 0..50 {
        let x = a.send(&req("GET", "/a/1").from("192.0.2.7:1"));
        assert_eq!(x.status(), Some(429), "still refused, with its answer");
    }
    assert_eq!(a.store.calls(), before);
    // A sixteenth of the window later the store is asked again.
    a.advance(60_000 / 16 + 1);
    assert!(!allowed(&a, "192.0.2.7:1"));
    assert!(a.store.calls() > before);
}

#[test]
fn hits_a_worker_reserved_are_given_back_when_other_keys_take_its_entries() {
    let policy = limited(25, false);
    let a = Host::new(&policy);
    let b = a.worker_beside(&policy);
    at_window_start(&a);
    // The victim's first request reserves 3 hits on worker a and uses one.
    assert!(allowed(&a, "192.0.2.7:1"));
    // A flood of other clients through a pushes every entry of its table out.
    for i in 0..10_000u32 {
        allowed(
            &a,
            &format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255),
        );
    }
    // The victim, now on worker b, has the rest of its budget: nothing was stranded.
    let mut through = 1;
    while allowed(&b, "192.0.2.7:1") {
        through += 1;
        assert!(through <= 25, "never more than the limit");
    }
    assert_eq!(through, 25);
}

#[test]
fn hits_left_from_the_previous_window_do_not_weigh_on_the_next() {
    let policy = limited(80, false);
    let a = Host::new(&policy);
    at_window_start(&a);
    // 10 reserved, 1 used: a stranded reservation would count 10 in the old window.
    assert!(allowed(&a, "192.0.2.7:1"));
    a.advance(60_000);
    // At the very start of the next window the previous one weighs fully: 1 used, so
    // 79 remain, exactly as with exact counting.
    let mut through = 0;
    while allowed(&a, "192.0.2.7:1") {
        through += 1;
        assert!(through <= 80);
    }
    assert_eq!(through, 79);
}

/// The bank's `sid` session (idle 10 minutes) on a route that checks it.
fn session_request() -> common::Req {
    req("GET", "/api/v2/accounts")
        .user("alice")
        .header("cookie", "sid=s-alice")
}

#[test]
fn a_session_this_worker_knows_is_checked_without_the_store() {
    let host = common::bank();
    host.send(&session_request());
    // The rate limit reserved hits on the first request; from here on neither the
    // session nor the rate limit needs the store.
    let before = host.store.calls();
    for _ in 0..5 {
        host.advance(1_000);
        assert_eq!(host.send(&session_request()).verdict, Verdict::Continue);
    }
    assert_eq!(host.store.calls(), before);
}

#[test]
fn a_session_used_on_another_worker_is_not_idle_here() {
    let a = common::bank();
    let b = a.worker_beside(&common::example("bank"));
    assert_eq!(a.send(&session_request()).verdict, Verdict::Continue);
    a.advance(9 * 60_000);
    assert_eq!(b.send(&session_request()).verdict, Verdict::Continue);
    // 15 minutes after a last saw it, but 6 after b did: still live.
    a.advance(6 * 60_000);
    assert_eq!(a.send(&session_request()).verdict, Verdict::Continue);
    // And idle everywhere 11 minutes later.
    a.advance(11 * 60_000);
    assert_eq!(a.send(&session_request()).status(), Some(401));
}
