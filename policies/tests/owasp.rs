//! The OWASP API Top 10 controls a gateway can own, in enforce and in monitor mode:
//! object ownership (API1), function-level authorization (API5), business-flow quotas
//! (API6) and CORS (API8), through the bank and retailer examples.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{Host, bank, bank_with, example, req};
use stakeguard_policies::{EventKind, HeaderChange, Outcome, Severity, Verdict};

fn customer(user: &str, accounts: &str, extra: &str) -> String {
    format!(
        r#"{{"sub":"{user}","accounts":[{accounts}],"scope":"accounts:read transfers:write"{extra}}}"#
    )
}

// API1: object ownership ---------------------------------------------------------------

#[test]
fn a_customer_reads_her_own_account() {
    let host = bank();
    let x =
        host.send(&req("GET", "/api/v2/accounts/42").token(&customer("alice", r#""42","43""#, "")));
    assert_eq!(x.verdict, Verdict::Continue);
}

#[test]
fn another_customers_account_is_refused_with_403_and_pages_the_owner() {
    let host = bank();
    let mut x =
        host.send(&req("GET", "/api/v2/accounts/99").token(&customer("alice", r#""42""#, "")));
    assert_eq!(x.status(), Some(403));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::ObjectNotOwned);
    assert_eq!(events[0].severity, Some(Severity::Page));
    assert_eq!(
        host.policy.api(events[0].api.unwrap()).unwrap().owner,
        "team-accounts"
    );
}

#[test]
fn the_support_role_may_read_any_account() {
    let host = bank();
    let token = customer("sam", "", r#","roles":["agent","support"]"#);
    assert_eq!(
        host.send(&req("GET", "/api/v2/accounts/99").token(&token))
            .verdict,
        Verdict::Continue
    );
}

#[test]
fn a_user_id_in_the_path_must_be_the_caller() {
    let host = bank();
    let own = req("GET", "/api/v2/users/alice/profile").user("alice");
    assert_eq!(host.send(&own).verdict, Verdict::Continue);
    let other = req("GET", "/api/v2/users/bob/profile").user("alice");
    assert_eq!(host.send(&other).status(), Some(403));
    // Compared after percent-decoding: `%40` is the `@` of the identity.
    let encoded = req("GET", "/api/v2/users/ann%40example.com/profile").user("ann@example.com");
    assert_eq!(host.send(&encoded).verdict, Verdict::Continue);
    // A caller without any identity owns nothing.
    let anonymous = req("GET", "/api/v2/users/alice/profile").header("authorization", "Basic x");
    assert_eq!(host.send(&anonymous).status(), Some(403));
}

#[test]
fn ownership_in_monitor_mode_passes_as_would_block() {
    let host = bank_with("/apis/1/ownership/mode", "monitor".into());
    let mut x =
        host.send(&req("GET", "/api/v2/accounts/99").token(&customer("alice", r#""42""#, "")));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::ObjectNotOwned),
        Some(Outcome::WouldBlock)
    );
}

// API5: function-level authorization ---------------------------------------------------

#[test]
fn a_transfer_needs_the_transfers_write_scope() {
    let host = bank();
    let read_only = r#"{"sub":"alice","accounts":["42"],"scope":"accounts:read"}"#;
    let mut x = host.send(&req("POST", "/api/v2/transfers").token(read_only).json("{}"));
    assert_eq!(x.status(), Some(403));
    assert_eq!(
        x.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    assert_eq!(
        x.outcome_of(EventKind::ClaimsInsufficient),
        Some(Outcome::Blocked)
    );
    let allowed = host.send(&req("POST", "/api/v2/transfers").user("alice").json("{}"));
    assert_eq!(allowed.verdict, Verdict::Continue);
}

#[test]
fn a_function_without_a_bearer_token_gets_401() {
    let host = bank_with("/tiers/critical/auth/mode", "off".into());
    let mut x = host.send(
        &req("POST", "/api/v2/transfers")
            .header("authorization", "Basic abc")
            .json("{}"),
    );
    assert_eq!(x.status(), Some(401));
    assert_eq!(
        x.outcome_of(EventKind::TokenMissing),
        Some(Outcome::Blocked)
    );
}

#[test]
fn api_level_claims_add_to_route_level_ones() {
    let host = bank_with(
        "/apis/2/claims",
        serde_json::json!({ "require": [ { "claim": "role", "in": ["customer", "business"] } ] }),
    );
    let without_role = host.send(&req("POST", "/api/v2/transfers").user("alice").json("{}"));
    assert_eq!(without_role.status(), Some(403));
    let token = customer("alice", r#""42""#, r#","role":"business""#);
    assert_eq!(
        host.send(&req("POST", "/api/v2/transfers").token(&token).json("{}"))
            .verdict,
        Verdict::Continue
    );
}

#[test]
fn claims_in_monitor_mode_pass_as_would_block() {
    let host = bank_with(
        "/apis/2/claims",
        serde_json::json!({ "mode": "monitor", "require": [ { "claim": "role", "equals": "admin" } ] }),
    );
    let mut x = host.send(&req("POST", "/api/v2/transfers").user("alice").json("{}"));
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::ClaimsInsufficient),
        Some(Outcome::WouldBlock)
    );
}

// API6: business-flow quotas ------------------------------------------------------------

fn transfer(host: &Host, user: &str, to: u32, status: u16) -> common::Exchange {
    let body = format!(r#"{{"from":1,"to":{to},"amount":5}}"#);
    host.exchange(
        &req("POST", "/api/v2/transfers").user(user).json(&body),
        status,
        &[],
    )
    .0
}

#[test]
fn five_transfers_a_day_then_429_with_retry_after() {
    let host = bank();
    for to in 0..5 {
        assert_eq!(transfer(&host, "alice", to, 201).verdict, Verdict::Continue);
        host.advance(61_000); // past the per-minute rate limit's reach
    }
    let mut x = transfer(&host, "alice", 9, 201);
    assert_eq!(x.status(), Some(429));
    let wait: u64 = x.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 23 * 3600 && wait <= 24 * 3600, "{wait}");
    assert_eq!(
        x.outcome_of(EventKind::QuotaExceeded),
        Some(Outcome::Blocked)
    );
    // Another customer has her own quota; and after a day, alice has hers back.
    assert_eq!(transfer(&host, "bob", 1, 201).verdict, Verdict::Continue);
    host.advance(24 * 3_600_000);
    assert_eq!(transfer(&host, "alice", 10, 201).verdict, Verdict::Continue);
}

#[test]
fn failed_transfers_do_not_burn_the_quota() {
    let host = bank();
    for to in 0..8 {
        assert_eq!(transfer(&host, "carol", to, 400).verdict, Verdict::Continue);
        host.advance(10_000); // stay under the per-minute rate limit
    }
    for to in 0..5 {
        assert_eq!(transfer(&host, "carol", to, 201).verdict, Verdict::Continue);
        host.advance(10_000);
    }
    assert_eq!(transfer(&host, "carol", 99, 201).status(), Some(429));
}

#[test]
fn a_quota_keyed_by_a_body_field_alerts_on_the_fourth_transfer_to_one_account() {
    let host = bank();
    for user in ["u1", "u2", "u3"] {
        let mut x = transfer(&host, user, 777, 201);
        assert!(
            x.events()
                .iter()
                .all(|e| e.kind != EventKind::QuotaExceeded)
        );
    }
    let mut x = transfer(&host, "u4", 777, 201);
    assert_eq!(x.verdict, Verdict::Continue, "alert only");
    let event = x
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::QuotaExceeded)
        .unwrap();
    assert_eq!(event.outcome, Outcome::Alerted);
    assert_eq!(event.severity, Some(Severity::Ticket));
}

#[test]
fn a_quota_in_monitor_mode_passes_as_would_block() {
    let host = Host::new(
        &example("retailer").replace(r#""count": "all""#, r#""count": "all", "mode": "monitor""#),
    );
    let reset = |host: &Host| {
        host.exchange(
            &req("POST", "/api/v1/password-reset")
                .host("shop.example.com")
                .json(r#"{"email":"victim@example.com"}"#),
            202,
            &[],
        )
        .0
    };
    for _ in 0..3 {
        reset(&host);
    }
    let mut x = reset(&host);
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::QuotaExceeded),
        Some(Outcome::WouldBlock)
    );
}

#[test]
fn the_password_reset_quota_counts_per_account() {
    let host = Host::new(&example("retailer"));
    let reset = |email: &str, from: &str| {
        let body = format!(r#"{{"email":"{email}"}}"#);
        host.exchange(
            &req("POST", "/api/v1/password-reset")
                .host("shop.example.com")
                .header("x-forwarded-for", from)
                .json(&body),
            202,
            &[],
        )
        .0
    };
    for i in 0..3 {
        assert_eq!(
            reset("victim@example.com", &format!("192.0.2.{i}")).verdict,
            Verdict::Continue
        );
    }
    assert_eq!(
        reset("victim@example.com", "192.0.2.50").status(),
        Some(429),
        "a fourth reset from anywhere"
    );
    assert_eq!(
        reset("other@example.com", "192.0.2.50").verdict,
        Verdict::Continue
    );
}

/// `count: all` counts every request the upstream answered, whatever its status, and
/// none that another control refused before it got there.
#[test]
fn a_quota_counting_all_counts_what_the_upstream_answered_and_nothing_refused() {
    let host = common::bank_with("/apis/2/quotas/0/count", "all".into());
    let send = |to: u32, content_type: &str, status: u16| {
        let body = format!(r#"{{"from":1,"to":{to},"amount":5}}"#);
        let x = host
            .exchange(
                &req("POST", "/api/v2/transfers")
                    .user("alice")
                    .body(content_type, &body),
                status,
                &[],
            )
            .0;
        host.advance(61_000); // past the per-minute rate limit's reach
        x
    };
    // Refused by the body control after the quota was looked at: none of these count...
    for to in 0..6 {
        let mut x = send(to, "text/plain", 201);
        assert_eq!(x.status(), Some(415));
        assert_eq!(x.outcome_of(EventKind::QuotaExceeded), None);
    }
    // ...so all five of the day pass, and each counts whatever the upstream said...
    for (to, status) in [(10, 500), (11, 400), (12, 201), (13, 201), (14, 201)] {
        let x = send(to, "application/json", status);
        assert_eq!(x.verdict, Verdict::Continue, "transfer to {to}");
    }
    // ...the failed ones too: the sixth is over the quota.
    let mut x = send(20, "application/json", 201);
    assert_eq!(x.status(), Some(429));
    assert_eq!(
        x.outcome_of(EventKind::QuotaExceeded),
        Some(Outcome::Blocked)
    );
}

// API8: CORS ----------------------------------------------------------------------------

fn preflight(host: &Host, origin: &str, method: &str) -> common::Exchange {
    host.send(
        &req("OPTIONS", "/api/v2/accounts/42")
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization"),
    )
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered_by_the_gateway() {
    let host = bank();
    let x = preflight(&host, "https://app.bank.example", "GET");
    assert_eq!(x.status(), Some(204));
    assert_eq!(
        x.header("access-control-allow-origin"),
        Some("https://app.bank.example")
    );
    assert_eq!(x.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(x.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        x.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(x.header("access-control-max-age"), Some("600"));
    assert_eq!(x.header("vary"), Some("Origin"));
    assert_eq!(
        preflight(&host, "https://eu.bank.example", "GET").status(),
        Some(204)
    );
}

#[test]
fn a_preflight_from_another_origin_or_for_an_unserved_method_is_refused() {
    let host = bank();
    let mut x = preflight(&host, "https://evil.example", "GET");
    assert_eq!(x.status(), Some(403));
    let events = x.events();
    assert_eq!(events[0].kind, EventKind::CorsOriginRefused);
    assert_eq!(events[0].severity, Some(Severity::Info));
    assert_eq!(
        preflight(&host, "https://app.bank.example", "DELETE").status(),
        Some(403)
    );
}

#[test]
fn an_allowed_origin_gets_cors_headers_and_never_a_reflected_wildcard() {
    let host = bank();
    let request = req("GET", "/api/v2/accounts/42")
        .user("alice")
        .header("origin", "https://app.bank.example");
    let (x, changes) = host.exchange(&request, 200, &[("access-control-allow-origin", "*")]);
    assert_eq!(x.verdict, Verdict::Continue);
    assert!(changes.contains(&HeaderChange::Set(
        "access-control-allow-origin".into(),
        "https://app.bank.example".into()
    )));
    assert!(changes.contains(&HeaderChange::Set(
        "access-control-allow-credentials".into(),
        "true".into()
    )));
}

#[test]
fn a_disallowed_origin_is_refused_on_critical_tiers() {
    let host = bank();
    let request = req("GET", "/api/v2/accounts/42")
        .user("alice")
        .header("origin", "https://evil.example");
    let mut x = host.send(&request);
    assert_eq!(x.status(), Some(403));
    assert_eq!(
        x.outcome_of(EventKind::CorsOriginRefused),
        Some(Outcome::Blocked)
    );
}

#[test]
fn a_disallowed_origin_is_only_reported_on_a_monitored_tier() {
    let host = Host::new(&example("retailer"));
    let request = req("GET", "/api/v1/products/1")
        .host("shop.example.com")
        .header("origin", "https://evil.example");
    let (mut x, changes) = host.exchange(&request, 200, &[]);
    assert_eq!(x.verdict, Verdict::Continue);
    assert_eq!(
        x.outcome_of(EventKind::CorsOriginRefused),
        Some(Outcome::WouldBlock)
    );
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, HeaderChange::Set(n, _) if n.starts_with("access-control")))
    );
}

#[test]
fn any_origin_with_credentials_is_refused_by_validation() {
    let mut doc: serde_json::Value = serde_json::from_str(&example("bank")).unwrap();
    doc["tiers"]["critical"]["cors"]["allow_origins"] = serde_json::json!(["*"]);
    let errors = stakeguard_policies::Policy::from_json(&doc.to_string()).unwrap_err();
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(
        errors.errors[0].path,
        "tiers.critical.cors.allow_origins[0]"
    );
    assert!(errors.errors[0].message.contains("credentials"));
}
