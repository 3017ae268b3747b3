//! Every control of the engine, in enforce and in monitor mode, through the example
//! policies and small inline ones.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{Host, bank, bank_with, example, req};
use stakeguard_policies::{
    Control, CounterStore, EventKind, HeaderChange, Mode, Outcome, Policy, Severity, StoreError,
    Verdict,
};

#[test]
fn an_ordinary_request_continues_and_reports_nothing() {
    let host = bank();
    let mut x = host.send(&req("GET", "/api/v2/accounts/42").user("alice"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert!(x.events().is_empty());
    let decision = x.stream.decision();
    assert_eq!(decision.outcome, Outcome::Allowed);
    assert_eq!(
        host.policy.api(decision.api.unwrap()).unwrap().name,
        "accounts"
    );
}

#[test]
fn unknown_routes_are_blocked_with_404_when_the_policy_says_block() {
    let host = bank();
    let mut x = host.send(&req("GET", "/internal/debug").user("alice"));
    assert_eq!(x.status(), Some(404));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::ShadowApi);
    assert_eq!(events[0].severity, Some(Severity::Ticket));
    assert_eq!(
        host.policy.unknown_routes_owner().0,
        "team-platform-security"
    );
}

#[test]
fn unknown_routes_in_monitor_mode_pass_as_would_block() {
    let host = bank_with("/unknown_routes/mode", "monitor".into());
    let mut x = host.send(&req("GET", "/internal/debug"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::ShadowApi),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn unknown_routes_set_to_alert_pass_with_an_incident() {
    let host = Host::new(&example("retailer"));
    let mut x = host.send(&req("GET", "/wp-admin").host("shop.example.com"));
    assert_eq!(x.verdict, Verdict::Continue);
    let events = x.events();
    assert_eq!(events[0].outcome, Outcome::Alerted);
    assert_eq!(events[0].severity, Some(Severity::Info));
}

#[test]
fn ambiguous_paths_are_refused_with_400_and_never_matched() {
    let host = bank();
    for path in [
        "/api/v2/accounts%2F42",
        "/api/v2/..%2f..%2fadmin",
        "/api\\v2/accounts/1",
        "/%00",
        "/api/%zz",
        "/../etc/passwd",
    ] {
        let mut x = host.send(&req("GET", path).user("alice"));
        assert_eq!(x.status(), Some(400), "{path}");
        assert_eq!(
            x.outcome_of(EventKind::AmbiguousPath),
            Some(Outcome::Blocked),
            "{path}"
        );
    }
}

#[test]
fn ambiguous_paths_in_monitor_mode_pass_unmatched() {
    let mut doc: serde_json::Value = serde_json::from_str(&example("bank")).unwrap();
    doc["ambiguous_paths"] = serde_json::json!({"mode": "monitor"});
    let host = Host::new(&doc.to_string());
    let mut x = host.send(&req("GET", "/api/v2/accounts%2F42").user("alice"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::AmbiguousPath),
        Some(Outcome::WouldBlock)
    );
    assert_eq!(x.stream.api(), None);
}

#[test]
fn normalized_paths_reach_their_api() {
    let host = bank();
    let x = host.send(&req("GET", "/api/v2/./accounts//%34%32?x=1#frag").user("alice"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        host.policy.api(x.stream.api().unwrap()).unwrap().name,
        "accounts"
    );
}

#[test]
fn deprecated_apis_get_deprecation_sunset_and_link_headers() {
    let host = bank();
    let (mut x, changes) = host.exchange(&req("GET", "/api/v1/accounts/7").user("alice"), 200, &[]);
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::DeprecatedApiCalled),
        Some(Outcome::Annotated)
    );
    assert!(changes.contains(&HeaderChange::Set(
        "deprecation".into(),
        "@1782777600".into()
    )));
    assert!(changes.contains(&HeaderChange::Set(
        "sunset".into(),
        "Wed, 31 Mar 2027 00:00:00 GMT".into()
    )));
    assert!(changes.contains(&HeaderChange::Set(
        "link".into(),
        "</api/v2/accounts>; rel=\"successor-version\"".into()
    )));
}

#[test]
fn a_deprecated_api_past_its_sunset_answers_410() {
    let host = bank();
    host.now.set(1_806_451_200_000); // the sunset itself
    let mut x = host.send(&req("GET", "/api/v1/accounts/7").user("alice"));
    assert_eq!(x.status(), Some(410));
    assert_eq!(
        x.outcome_of(EventKind::RetiredApiCalled),
        Some(Outcome::Blocked)
    );
}

#[test]
fn retired_apis_answer_410_with_the_successor_link() {
    let host = bank();
    let mut x = host.send(&req("GET", "/api/v0/statements/2026/01").user("alice"));
    assert_eq!(x.status(), Some(410));
    assert_eq!(
        x.header("link"),
        Some("</api/v2/accounts>; rel=\"successor-version\"")
    );
    let events = x.events();
    assert_eq!(events[0].severity, Some(Severity::Ticket));
    assert_eq!(events[0].control, Control::Lifecycle);
}

#[test]
fn retired_apis_in_monitor_mode_pass_as_would_block() {
    let host = bank_with("/apis/5/lifecycle/mode", "monitor".into());
    let mut x = host.send(&req("GET", "/api/v0/statements/1").user("alice"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::RetiredApiCalled),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn a_method_the_route_does_not_serve_gets_405_with_allow() {
    let host = bank();
    let mut x = host.send(&req("DELETE", "/api/v2/accounts/42").user("alice"));
    assert_eq!(x.status(), Some(405));
    assert_eq!(x.header("allow"), Some("GET"));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::MethodNotAllowed);
    assert_eq!(
        host.policy.api(events[0].api.unwrap()).unwrap().name,
        "accounts"
    );
}

#[test]
fn missing_credentials_get_401_with_a_challenge() {
    let host = bank();
    let mut x = host.send(&req("GET", "/api/v2/accounts/42"));
    assert_eq!(x.status(), Some(401));
    assert_eq!(x.header("www-authenticate"), Some("Bearer realm=\"bank\""));
    assert_eq!(
        x.outcome_of(EventKind::CredentialsMissing),
        Some(Outcome::Blocked)
    );
    let body: serde_json::Value = serde_json::from_str(&x.reply().body).unwrap();
    assert_eq!(body["reference"], "ref-test");
}

#[test]
fn missing_credentials_in_monitor_mode_pass_as_would_block() {
    let host = bank_with("/tiers/critical/auth/mode", "monitor".into());
    let mut x = host.send(&req("GET", "/api/v2/accounts"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::CredentialsMissing),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn an_idle_session_gets_401_and_an_expiring_cookie() {
    let host = bank();
    let with_session = req("GET", "/api/v2/accounts/42")
        .user("alice")
        .header("cookie", "sid=s-1");
    assert_eq!(host.send(&with_session).verdict, Verdict::Continue);
    host.advance(9 * 60_000);
    assert_eq!(
        host.send(&with_session).verdict,
        Verdict::Continue,
        "used within 10m"
    );
    host.advance(9 * 60_000);
    assert_eq!(
        host.send(&with_session).verdict,
        Verdict::Continue,
        "idle time counts from last use"
    );
    host.advance(11 * 60_000);
    let mut x = host.send(&with_session);
    assert_eq!(x.status(), Some(401));
    assert_eq!(
        x.header("set-cookie"),
        Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly")
    );
    assert_eq!(
        x.outcome_of(EventKind::SessionIdleTimeout),
        Some(Outcome::Blocked)
    );
}

#[test]
fn a_session_past_its_absolute_timeout_ends_even_when_busy() {
    let host = bank();
    let with_session = req("GET", "/api/v2/accounts/42")
        .user("alice")
        .header("cookie", "sid=s-2");
    for _ in 0..(8 * 60 / 5) {
        assert_eq!(host.send(&with_session).verdict, Verdict::Continue);
        host.advance(5 * 60_000);
    }
    host.advance(60_000);
    let mut x = host.send(&with_session);
    assert_eq!(x.status(), Some(401));
    assert_eq!(
        x.outcome_of(EventKind::SessionAbsoluteTimeout),
        Some(Outcome::Blocked)
    );
}

#[test]
fn a_session_starts_when_the_upstream_sets_the_cookie() {
    let host = bank();
    let login = req("POST", "/api/v2/login").json(r#"{"username":"alice","password":"x"}"#);
    host.exchange(&login, 200, &[("set-cookie", "sid=fresh; Path=/")]);
    host.advance(11 * 60_000);
    let x = host.send(
        &req("GET", "/api/v2/accounts/1")
            .user("alice")
            .header("cookie", "sid=fresh"),
    );
    assert_eq!(x.status(), Some(401), "idle since it was issued");
}

#[test]
fn a_session_used_from_another_client_is_refused_as_hijacked() {
    let host = bank();
    let from_a = req("GET", "/api/v2/accounts/1")
        .user("alice")
        .header("cookie", "sid=s-3");
    assert_eq!(host.send(&from_a).verdict, Verdict::Continue);
    let mut x = host.send(&from_a.clone().from("203.0.113.99:1234"));
    assert_eq!(x.status(), Some(401));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::SessionHijackSuspected);
    assert_eq!(events[0].severity, Some(Severity::Page));
}

#[test]
fn session_timeouts_in_monitor_mode_pass_as_would_block() {
    let host = bank_with("/tiers/critical/session/mode", "monitor".into());
    let with_session = req("GET", "/api/v2/accounts/42")
        .user("alice")
        .header("cookie", "sid=s-4");
    host.send(&with_session);
    host.advance(11 * 60_000);
    let mut x = host.send(&with_session);
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::SessionIdleTimeout),
        Some(Outcome::WouldBlock)
    );
}

fn failed_login(host: &Host, user: &str, from: &str) -> common::Exchange {
    let body = format!(r#"{{"username":"{user}","password":"wrong"}}"#);
    host.exchange(
        &req("POST", "/api/v2/login").json(&body).from(from),
        401,
        &[],
    )
    .0
}

#[test]
fn five_failed_logins_lock_the_username_out_with_429() {
    let host = bank();
    for i in 0..4 {
        let mut x = failed_login(&host, "alice", &format!("198.51.100.{i}:1000"));
        assert_eq!(x.verdict, Verdict::Continue);
        assert_eq!(x.outcome_of(EventKind::LoginFailure), Some(Outcome::Logged));
    }
    let mut fifth = failed_login(&host, "alice", "198.51.100.9:1000");
    let lockout = fifth
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::LoginLockout)
        .expect("lockout event");
    assert_eq!(lockout.severity, Some(Severity::Page));
    // A sixth attempt, from yet another address and with the name in another case.
    let mut x = failed_login(&host, " ALICE", "198.51.100.77:1000");
    assert_eq!(x.status(), Some(429));
    assert_eq!(
        x.header("retry-after"),
        Some("1800"),
        "the username's 30 minutes"
    );
    assert_eq!(x.outcome_of(EventKind::LoginLocked), Some(Outcome::Blocked));
    // Another user from a fresh address is not affected.
    assert_eq!(
        failed_login(&host, "bob", "198.51.100.200:1").verdict,
        Verdict::Continue
    );
}

#[test]
fn failed_logins_from_one_client_lock_that_client_out() {
    let host = bank_with("/tiers/critical/login/client_ip", serde_json::json!({}));
    for i in 0..5 {
        failed_login(&host, &format!("user{i}"), "203.0.113.5:1000");
    }
    let x = failed_login(&host, "someone-else", "203.0.113.5:2000");
    assert_eq!(
        x.status(),
        Some(429),
        "the client IP is locked, whatever the username"
    );
}

#[test]
fn a_lockout_ends_after_its_time() {
    let host = bank();
    for _ in 0..5 {
        failed_login(&host, "carol", "203.0.113.6:1");
    }
    host.advance(29 * 60_000);
    assert_eq!(
        failed_login(&host, "carol", "203.0.113.7:1").status(),
        Some(429)
    );
    host.advance(2 * 60_000);
    let ok = req("POST", "/api/v2/login")
        .json(r#"{"username":"carol","password":"right"}"#)
        .from("203.0.113.7:1");
    assert_eq!(host.send(&ok).verdict, Verdict::Continue);
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let host = bank();
    for _ in 0..4 {
        failed_login(&host, "dave", "203.0.113.8:1");
    }
    host.advance(16 * 60_000);
    for _ in 0..4 {
        failed_login(&host, "dave", "203.0.113.8:1");
    }
    assert_eq!(
        failed_login(&host, "dave", "203.0.113.8:1").verdict,
        Verdict::Continue
    );
}

#[test]
fn a_successful_login_clears_the_failures() {
    let host = bank();
    for _ in 0..4 {
        failed_login(&host, "erin", "203.0.113.9:1");
    }
    let ok = req("POST", "/api/v2/login")
        .json(r#"{"username":"erin","password":"right"}"#)
        .from("203.0.113.9:1");
    host.exchange(&ok, 200, &[]);
    for _ in 0..4 {
        assert_eq!(
            failed_login(&host, "erin", "203.0.113.9:1").verdict,
            Verdict::Continue
        );
    }
}

#[test]
fn a_lockout_in_monitor_mode_passes_as_would_block() {
    let host = bank_with("/tiers/critical/login/mode", "monitor".into());
    for _ in 0..5 {
        failed_login(&host, "frank", "203.0.113.10:1");
    }
    let mut x = failed_login(&host, "frank", "203.0.113.10:1");
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::LoginLocked),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn a_delay_lockout_slows_the_attacker_more_with_every_failure() {
    let host = Host::new(&example("retailer"));
    let guess = std::cell::Cell::new(0);
    let reset = |from: &str| {
        guess.set(guess.get() + 1);
        let body = format!(r#"{{"email":"guess{}@example.com"}}"#, guess.get());
        host.exchange(
            &req("POST", "/api/v1/password-reset")
                .host("shop.example.com")
                .header("x-forwarded-for", from)
                .json(&body),
            404,
            &[],
        )
        .0
    };
    for _ in 0..3 {
        assert_eq!(reset("203.0.113.20").verdict, Verdict::Continue);
    }
    let mut delays = vec![];
    for _ in 0..4 {
        let mut x = reset("203.0.113.20");
        let Verdict::Delay(ms) = x.verdict else {
            panic!("expected a delay, got {:?}", x.verdict)
        };
        assert_eq!(x.outcome_of(EventKind::LoginLocked), Some(Outcome::Delayed));
        delays.push(ms);
    }
    assert_eq!(delays, vec![500, 1000, 2000, 4000]);
    for _ in 0..3 {
        reset("203.0.113.20");
    }
    let Verdict::Delay(capped) = reset("203.0.113.20").verdict else {
        panic!()
    };
    assert_eq!(capped, 8000, "max_delay caps the growth");
}

#[test]
fn an_alert_lockout_lets_the_customer_through_and_raises_an_incident() {
    let host = Host::new(&example("retailer"));
    let signin = |host: &Host| {
        host.exchange(
            &req("POST", "/signin")
                .host("shop.example.com")
                .form("email=eve%40example.com&password=x")
                .header("x-forwarded-for", "203.0.113.30"),
            401,
            &[],
        )
        .0
    };
    for _ in 0..10 {
        assert_eq!(signin(&host).verdict, Verdict::Continue);
    }
    let mut x = signin(&host);
    assert_eq!(x.verdict, Verdict::Continue);
    let locked = x
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::LoginLocked)
        .unwrap();
    assert_eq!(locked.outcome, Outcome::Alerted);
    assert!(locked.severity.is_some());
}

#[test]
fn a_login_body_too_large_to_read_counts_only_the_client() {
    let host = bank();
    let big = format!(r#"{{"username":"grace","pad":"{}"}}"#, "x".repeat(70_000));
    let mut x = host.send(
        &req("POST", "/api/v2/login")
            .json(&big)
            .from("203.0.113.40:1"),
    );
    // The body limit of the critical tier refuses it first...
    assert_eq!(x.status(), Some(413));
    assert_eq!(
        x.outcome_of(EventKind::BodyTooLarge),
        Some(Outcome::Blocked)
    );
    // ...and without that limit the oversized login body is reported and let through.
    let host = bank_with("/apis/0/body", serde_json::json!({"mode": "off"}));
    let mut x = host.send(
        &req("POST", "/api/v2/login")
            .json(&big)
            .from("203.0.113.40:1"),
    );
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::LoginBodyTooLarge),
        Some(Outcome::Logged)
    );
}

#[test]
fn the_rate_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    let host = bank();
    let transfer = req("POST", "/api/v2/transfers").user("alice").json("{}");
    for _ in 0..10 {
        assert_eq!(host.send(&transfer).verdict, Verdict::Continue);
    }
    let mut x = host.send(&transfer);
    assert_eq!(x.status(), Some(429));
    assert!(x.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(x.header("ratelimit-limit"), Some("10"));
    assert_eq!(x.header("ratelimit-remaining"), Some("0"));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::RateLimited);
    assert_eq!(events[0].severity, Some(Severity::Ticket));
    // Another user has a budget of its own.
    assert_eq!(
        host.send(&req("POST", "/api/v2/transfers").user("bob").json("{}"))
            .verdict,
        Verdict::Continue
    );
}

#[test]
fn the_rate_limit_window_slides() {
    let host = bank();
    host.now.set(host.now.get() - host.now.get() % 60_000);
    let transfer = req("POST", "/api/v2/transfers").user("alice").json("{}");
    for _ in 0..10 {
        host.send(&transfer);
    }
    host.advance(60_000 + 30_000);
    // Half of the previous window still weighs: 10 * 0.5 = 5 of 10 used.
    for _ in 0..5 {
        assert_eq!(host.send(&transfer).verdict, Verdict::Continue);
    }
    assert_eq!(host.send(&transfer).status(), Some(429));
    host.advance(60_000);
    assert_eq!(host.send(&transfer).verdict, Verdict::Continue);
}

#[test]
fn the_rate_limit_in_monitor_mode_passes_as_would_block() {
    let host = Host::new(&example("retailer"));
    let browse = req("GET", "/api/v1/products/42")
        .host("eu.shop.example.com")
        .header("x-forwarded-for", "203.0.113.50");
    for _ in 0..600 {
        host.send(&browse);
    }
    let mut x = host.send(&browse);
    assert_eq!(x.verdict, Verdict::Continue);
    let event = x
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::RateLimited)
        .unwrap();
    assert_eq!(
        (event.outcome, event.mode),
        (Outcome::WouldBlock, Mode::Monitor)
    );
}

#[test]
fn an_exempt_partner_skips_the_rate_limit() {
    let host = bank();
    let partner = req("POST", "/api/v2/transfers")
        .user("agg")
        .json("{}")
        .uri_san("spiffe://partners.example/aggregator");
    for _ in 0..30 {
        assert_eq!(host.send(&partner).verdict, Verdict::Continue);
    }
    let retailer = Host::new(&example("retailer"));
    let crawler = req("GET", "/api/v1/products/1")
        .host("shop.example.com")
        .header("x-partner-key", "pc-7f3a");
    for _ in 0..700 {
        retailer.send(&crawler);
    }
    let mut x = retailer.send(&crawler);
    assert!(
        x.events().is_empty(),
        "the crawler is exempt even from monitor reports"
    );
}

#[test]
fn bodies_over_the_limit_get_413_and_other_media_types_415() {
    let host = bank();
    let big = "x".repeat(20_000);
    let mut x = host.send(&req("POST", "/api/v2/transfers").user("alice").json(&big));
    assert_eq!(x.status(), Some(413));
    assert_eq!(
        x.outcome_of(EventKind::BodyTooLarge),
        Some(Outcome::Blocked)
    );
    let xml = req("POST", "/api/v2/transfers")
        .user("alice")
        .header("content-type", "application/xml; charset=utf-8")
        .header("content-length", "5");
    let mut x = host.send(&xml);
    assert_eq!(x.status(), Some(415));
    assert_eq!(
        x.outcome_of(EventKind::ContentTypeRefused),
        Some(Outcome::Blocked)
    );
    let json = req("POST", "/api/v2/transfers")
        .user("alice")
        .header("content-type", "Application/JSON; charset=utf-8")
        .header("content-length", "2");
    assert_eq!(host.send(&json).verdict, Verdict::Continue);
}

#[test]
fn a_body_without_a_length_is_measured_as_it_comes() {
    let host = bank();
    let mut chunked = req("POST", "/api/v2/transfers")
        .user("alice")
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked");
    chunked.body = vec![b'x'; 20_000];
    let first = host.policy.on_request(
        &stakeguard_policies::Request {
            method: "POST",
            authority: "bank.example.com",
            path: "/api/v2/transfers",
            headers: &chunked.headers,
            source_address: Some("192.0.2.1:1"),
            peer_uri_san: None,
            reference: "r",
        },
        &host,
        &*host.store,
    );
    assert_eq!(first.1, Verdict::ReadBody);
    assert_eq!(
        first.0.body_limit(),
        65_536,
        "the transfer quota reads the body too"
    );
    assert_eq!(host.send(&chunked).status(), Some(413));
}

#[test]
fn body_limits_in_monitor_mode_pass_as_would_block() {
    let host = Host::new(&example("retailer"));
    let mut x = host.send(
        &req("GET", "/api/v1/products/1")
            .host("shop.example.com")
            .json(&"x".repeat(5_000)),
    );
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::BodyTooLarge),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn responses_are_hardened() {
    let host = bank();
    let (mut x, changes) = host.exchange(
        &req("GET", "/api/v2/accounts/1").user("alice"),
        200,
        &[
            ("set-cookie", "sid=abc; Path=/"),
            ("set-cookie", "pref=1; Secure; HttpOnly; SameSite=Lax"),
            ("server", "nginx/1.2"),
            ("cache-control", "private"),
        ],
    );
    assert!(changes.contains(&HeaderChange::ReplaceSetCookies(vec![
        "sid=abc; Path=/; Secure; HttpOnly; SameSite=Strict".into(),
        "pref=1; Secure; HttpOnly; SameSite=Lax".into(),
    ])));
    assert!(changes.contains(&HeaderChange::Remove("server".into())));
    assert!(changes.contains(&HeaderChange::Set(
        "strict-transport-security".into(),
        "max-age=31536000; includeSubDomains".into()
    )));
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, HeaderChange::Set(n, _) if &**n == "cache-control")),
        "the upstream's own cache-control stays"
    );
    assert_eq!(
        x.outcome_of(EventKind::ResponseHardened),
        None,
        "routine hardening raises no event"
    );
}

#[test]
fn a_tier_that_only_strips_headers_needs_no_response_read() {
    let host = bank();
    // The standard tier strips `server` and `x-powered-by` and does nothing else to
    // responses: the host may skip reading them, and both are removed blind.
    let (x, changes) = host.exchange(&req("GET", "/api/v1/rates/gbp-eur"), 200, &[]);
    assert!(x.stream.wants_response());
    assert!(!x.stream.needs_response_headers());
    assert_eq!(
        changes,
        vec![
            HeaderChange::Remove("server".into()),
            HeaderChange::Remove("x-powered-by".into())
        ]
    );
    // The critical tier adds missing security headers, so it reads them.
    let x = host.send(&req("GET", "/api/v2/accounts/1").user("alice"));
    assert!(x.stream.needs_response_headers());
}
#[test]
fn response_hardening_in_monitor_mode_changes_nothing() {
    let host = bank_with("/tiers/critical/response/mode", "monitor".into());
    let (mut x, changes) = host.exchange(
        &req("GET", "/api/v2/accounts/1").user("alice"),
        200,
        &[("server", "nginx")],
    );
    assert!(changes.is_empty());
    assert_eq!(
        x.outcome_of(EventKind::ResponseHardened),
        Some(Outcome::Logged)
    );
}

/// A store that always fails, as when shared data is unavailable.
struct Broken;

impl CounterStore for Broken {
    fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Unavailable)
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}

fn send_to_broken(policy: &Policy, path: &str) -> (stakeguard_policies::Stream, Verdict) {
    let headers = req("GET", path).user("alice").headers;
    let request = stakeguard_policies::Request {
        method: "GET",
        authority: "bank.example.com",
        path,
        headers: &headers,
        source_address: Some("192.0.2.1:1"),
        peer_uri_san: None,
        reference: "r",
    };
    policy.on_request(&request, &common::START, &Broken)
}

#[test]
fn a_failing_store_fails_closed_on_critical_tiers_and_open_on_others() {
    let policy = Policy::from_json(&example("bank")).unwrap();
    let (mut stream, verdict) = send_to_broken(&policy, "/api/v2/accounts/1");
    assert!(matches!(verdict, Verdict::Reply(ref r) if r.status == 503));
    let events = stream.take_events();
    assert_eq!(
        (events[0].kind, events[0].outcome),
        (EventKind::StoreFailure, Outcome::Blocked)
    );
    assert_eq!(events[0].severity, Some(Severity::Page));
    let (mut stream, verdict) = send_to_broken(&policy, "/api/v1/rates/eur");
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(stream.take_events()[0].outcome, Outcome::FailedOpen);
}

#[test]
fn counters_survive_a_policy_swap() {
    let host = bank();
    for _ in 0..5 {
        failed_login(&host, "mallory", "203.0.113.60:1");
    }
    // A new revision of the policy, same store: the lockout still holds.
    let mut doc: serde_json::Value = serde_json::from_str(&example("bank")).unwrap();
    doc["revision"] = "bank-2026-11-29.2".into();
    let swapped = Host {
        policy: Policy::from_json(&doc.to_string()).unwrap(),
        store: host.store,
        now: host.now,
    };
    assert_eq!(
        failed_login(&swapped, "mallory", "203.0.113.61:1").status(),
        Some(429)
    );
}

#[test]
fn per_key_memory_stays_bounded_under_a_hundred_thousand_keys() {
    let host = bank();
    let before = host.store.len();
    let tables = 5; // login by username and by IP, rate, session, quota
    assert_eq!(before, tables * 4096, "every slot exists before traffic");
    for i in 0..100_000u32 {
        let user = format!("user-{i}");
        let from = format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255);
        host.send(
            &req("GET", "/api/v2/accounts/1")
                .user(&user)
                .header("cookie", &format!("sid={i}"))
                .from(&from),
        );
    }
    assert_eq!(host.store.len(), before, "no key beyond the fixed slots");
}

#[test]
fn the_client_ip_key_has_thresholds_of_its_own() {
    // bank.json: 5 failures lock a username, 10 lock a client address (for an hour).
    let host = bank();
    for i in 0..9 {
        assert_eq!(
            failed_login(&host, &format!("spray{i}"), "203.0.113.70:1").verdict,
            Verdict::Continue
        );
    }
    let mut tenth = failed_login(&host, "spray9", "203.0.113.70:1");
    assert!(
        tenth
            .events()
            .iter()
            .any(|e| e.kind == EventKind::LoginLockout)
    );
    let mut x = failed_login(&host, "fresh-name", "203.0.113.70:2");
    assert_eq!(x.status(), Some(429));
    assert_eq!(x.header("retry-after"), Some("3600"));
    assert_eq!(x.outcome_of(EventKind::LoginLocked), Some(Outcome::Blocked));
}

#[test]
fn the_peer_address_is_asked_for_only_when_no_trusted_hop_names_the_client() {
    let forwarded: Vec<(&str, &str)> = vec![("x-forwarded-for", "198.51.100.1, 203.0.113.9")];
    let none: Vec<(&str, &str)> = vec![];
    let behind_one = bank_with("/identity/client_ip/trusted_hops", 1.into());
    assert!(!behind_one.policy.needs_source_address(&forwarded));
    assert!(behind_one.policy.needs_source_address(&none));
    let behind_three = bank_with("/identity/client_ip/trusted_hops", 3.into());
    assert!(
        behind_three.policy.needs_source_address(&forwarded),
        "fewer entries than hops: the peer is the client"
    );
    assert!(bank().policy.needs_source_address(&forwarded));
}

// Login keys with their own actions, spraying, and what a success clears -----------------

#[test]
fn a_client_ip_can_alert_while_its_usernames_block() {
    let host = bank_with(
        "/tiers/critical/login/client_ip",
        serde_json::json!({ "max_failures": 3, "action": "alert" }),
    );
    for i in 0..3 {
        failed_login(&host, &format!("user{i}"), "203.0.113.40:1");
    }
    // The address is over its threshold: let through, with an incident...
    let mut x = failed_login(&host, "user9", "203.0.113.40:1");
    assert_eq!(x.verdict, Verdict::Continue);
    let locked = x
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::LoginLocked)
        .expect("the address is reported");
    assert_eq!(locked.outcome, Outcome::Alerted);
    // ...while a username over its own threshold is still blocked.
    for _ in 0..5 {
        failed_login(&host, "mallory", "198.51.100.41:1");
    }
    assert_eq!(
        failed_login(&host, "mallory", "198.51.100.42:1").status(),
        Some(429)
    );
}

#[test]
fn a_success_clears_the_username_but_not_the_client_address() {
    // A sprayer who owns one valid account logs into it after every few tries.
    let host = bank();
    for round in 0..4 {
        for i in 0..3 {
            failed_login(&host, &format!("victim{round}{i}"), "203.0.113.50:1");
        }
        let own = req("POST", "/api/v2/login")
            .json(r#"{"username":"sprayer","password":"right"}"#)
            .from("203.0.113.50:1");
        let x = host.exchange(&own, 200, &[]).0;
        if round < 3 {
            assert_eq!(x.verdict, Verdict::Continue, "round {round}");
        } else {
            // 12 failures: the address's 10 were reached, whatever the successes.
            assert_eq!(x.status(), Some(429), "round {round}");
        }
    }
}

fn spraying_bank(action: &str) -> Host {
    bank_with(
        "/tiers/critical/login/spraying",
        serde_json::json!({ "max_usernames": 5, "window": "15m", "action": action }),
    )
}

#[test]
fn one_client_failing_with_many_usernames_is_reported_as_password_spraying() {
    let host = spraying_bank("alert");
    let mut reported = Vec::new();
    for i in 0..8 {
        let mut x = failed_login(&host, &format!("name{i}@example.com"), "203.0.113.60:1");
        assert_eq!(x.verdict, Verdict::Continue, "alert only");
        if let Some(e) = x
            .events()
            .into_iter()
            .find(|e| e.kind == EventKind::PasswordSpraying)
        {
            assert_eq!(e.outcome, Outcome::Alerted);
            assert_eq!(e.severity, Some(Severity::Ticket));
            reported.push(i + 1);
        }
    }
    // Reported once, at about the fifth distinct username (the sketch's error is one).
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!((4..=6).contains(&reported[0]), "{reported:?}");
    // The same username again and again is not spraying.
    let host = spraying_bank("alert");
    for _ in 0..4 {
        let mut x = failed_login(&host, "alice", "203.0.113.61:1");
        assert!(
            x.events()
                .iter()
                .all(|e| e.kind != EventKind::PasswordSpraying)
        );
    }
}

#[test]
fn a_blocking_spraying_rule_refuses_the_clients_next_attempts() {
    let host = spraying_bank("block");
    for i in 0..8 {
        failed_login(&host, &format!("n{i}"), "203.0.113.62:1");
    }
    let mut x = failed_login(&host, "anyone", "203.0.113.62:1");
    assert_eq!(x.status(), Some(429));
    assert_eq!(x.outcome_of(EventKind::LoginLocked), Some(Outcome::Blocked));
    // Another client is not affected; and after the window the client may try again.
    assert_eq!(
        failed_login(&host, "anyone", "203.0.113.63:1").verdict,
        Verdict::Continue
    );
    host.advance(16 * 60_000);
    assert_eq!(
        failed_login(&host, "anyone", "203.0.113.62:1").verdict,
        Verdict::Continue
    );
}

// Credentials: alternatives and cookies ---------------------------------------------------

#[test]
fn a_session_cookie_or_a_token_is_credential_enough() {
    let host = bank_with(
        "/tiers/critical/auth",
        serde_json::json!({ "any_of": ["authorization", { "cookie": "sid" }] }),
    );
    let accounts = || req("GET", "/api/v2/accounts").header("x-user-id", "alice");
    assert_eq!(
        host.send(&accounts().header("authorization", "Bearer t"))
            .verdict,
        Verdict::Continue
    );
    assert_eq!(
        host.send(&accounts().header("cookie", "theme=dark; sid=s1"))
            .verdict,
        Verdict::Continue
    );
    // Another cookie is not the session, and an empty one is none.
    for cookie in ["theme=dark", "sid="] {
        let mut x = host.send(&accounts().header("cookie", cookie));
        assert_eq!(x.status(), Some(401), "{cookie}");
        assert_eq!(
            x.outcome_of(EventKind::CredentialsMissing),
            Some(Outcome::Blocked)
        );
    }
}

#[test]
fn required_credentials_may_name_a_cookie() {
    let host = bank_with(
        "/tiers/critical/auth",
        serde_json::json!({ "required": [{ "cookie": "sid" }, "x-device"] }),
    );
    let accounts = || req("GET", "/api/v2/accounts").header("x-user-id", "alice");
    assert_eq!(
        host.send(&accounts().header("cookie", "sid=s1")).status(),
        Some(401),
        "both are needed"
    );
    assert_eq!(
        host.send(
            &accounts()
                .header("cookie", "sid=s1")
                .header("x-device", "d")
        )
        .verdict,
        Verdict::Continue
    );
}

// Defaults ---------------------------------------------------------------------------------

#[test]
fn defaults_reach_every_tier_and_a_tier_overrides_them_field_by_field() {
    let mut doc: serde_json::Value = serde_json::from_str(&example("bank")).unwrap();
    let strip = serde_json::json!({ "strip": ["server", "x-powered-by", "x-debug"] });
    doc["defaults"] = serde_json::json!({ "response": strip });
    // The standard tier writes no response block of its own: it gets the defaults'.
    doc["tiers"]["standard"]
        .as_object_mut()
        .unwrap()
        .remove("response");
    let host = Host::new(&doc.to_string());
    let rates = req("GET", "/api/v1/rates/gbp-eur");
    let (_, changes) = host.exchange(&rates, 200, &[("x-debug", "1"), ("server", "x")]);
    for name in ["server", "x-powered-by", "x-debug"] {
        assert!(
            changes.contains(&HeaderChange::Remove(name.into())),
            "{name}: {changes:?}"
        );
    }
    // The critical tier's own `strip` replaces the defaults' list (lists are replaced,
    // objects merged), and its headers stay.
    let (_, changes) = host.exchange(
        &req("GET", "/api/v2/accounts").user("alice"),
        200,
        &[("x-debug", "1")],
    );
    assert!(
        !changes.contains(&HeaderChange::Remove("x-debug".into())),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, HeaderChange::Set(name, _) if &**name == "cache-control")),
        "{changes:?}"
    );
}

#[test]
fn method_and_url_override_headers_are_refused_as_ambiguous() {
    let host = bank();
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "PUT"),
        ("x-method-override", "post"),
        ("x-original-url", "/api/v2/accounts/1000"),
        ("x-rewrite-url", "/api/v2/accounts/1000"),
    ] {
        let mut x = host.send(&req("GET", "/api/v1/rates/eur").header(name, value));
        assert_eq!(x.status(), Some(400), "{name}");
        assert_eq!(
            x.outcome_of(EventKind::AmbiguousPath),
            Some(Outcome::Blocked),
            "{name}"
        );
    }
    // An override naming the request's own method changes nothing.
    let x = host.send(&req("GET", "/api/v1/rates/eur").header("x-http-method-override", "get"));
    assert_eq!(x.verdict, Verdict::Continue);
    // `ambiguous_paths.mode` decides, as for any ambiguous target.
    let host = bank_with("/ambiguous_paths", serde_json::json!({ "mode": "monitor" }));
    let mut x = host.send(&req("GET", "/api/v1/rates/eur").header("x-original-url", "/admin"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::AmbiguousPath),
        Some(Outcome::WouldBlock)
    );
}
