//! The OWASP API Top 10 controls through a real Envoy with the bank policy: object
//! ownership (API1), function-level claims (API5), a business-flow quota (API6) and CORS
//! (API8). Blocked requests must never reach the upstream.

use stakeguard_tests::client::Request;
use stakeguard_tests::{repo_root, start_filter};

fn bank() -> String {
    std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap_or_default()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let index = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// A bearer token as Envoy's `jwt_authn` would pass it on (stakeguard reads, not verifies).
fn bearer(claims: &str) -> String {
    format!(
        "Bearer {}.{}.sig",
        base64url(br#"{"alg":"none"}"#),
        base64url(claims.as_bytes())
    )
}

fn customer(user: &str, scope: &str) -> String {
    bearer(&format!(
        r#"{{"sub":"{user}","accounts":["1001","1002"],"scope":"{scope}"}}"#
    ))
}

#[test]
fn object_ownership_and_function_claims_hold_in_envoy() {
    let (upstream, envoy) = start_filter(&bank());
    let read = |path: &str, id: &str| {
        envoy.send(
            &Request::get(path)
                .header("authorization", &customer("ann", "accounts:read"))
                .header("x-request-id", id),
        )
    };
    let own = read("/api/v2/accounts/1001", "own");
    assert_eq!(own.status, 200, "{}", own.text());
    let other = read("/api/v2/accounts/2002", "other");
    assert_eq!(other.status, 403, "{}", other.text());
    assert_eq!(
        other.json().unwrap_or_default()["error"],
        "object_not_owned"
    );
    assert_eq!(
        upstream.count("/api/v2/accounts/2002"),
        0,
        "a refused read never reaches the upstream"
    );
    let support = envoy.send(&Request::get("/api/v2/accounts/2002").header(
        "authorization",
        &bearer(r#"{"sub":"sam","roles":["support"]}"#),
    ));
    assert_eq!(support.status, 200, "the support role reads any account");

    let transfer = |scope: &str, id: &str| {
        envoy.send(
            &Request::post_json("/api/v2/transfers", r#"{"from":1001,"to":7,"amount":5}"#)
                .header("authorization", &customer("ann", scope))
                .header("x-request-id", id),
        )
    };
    let read_only = transfer("accounts:read", "read-only");
    assert_eq!(read_only.status, 403, "{}", read_only.text());
    assert_eq!(
        read_only.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    let allowed = transfer("accounts:read transfers:write", "write");
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let entry = envoy.access_log_entry("other").unwrap_or_default();
    assert!(
        entry["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=ownership outcome=blocked"),
        "{entry}"
    );
}

#[test]
fn the_daily_transfer_quota_counts_successes_across_workers() {
    let (upstream, envoy) = start_filter(&bank());
    let transfer = |to: u32, status: &str| {
        envoy.send(
            &Request::post_json(
                "/api/v2/transfers",
                &format!(r#"{{"from":1001,"to":{to},"amount":5}}"#),
            )
            .header("authorization", &customer("quinn", "transfers:write"))
            .header("x-upstream-status", status),
        )
    };
    // Failed transfers (the upstream says 400) do not burn the quota.
    for to in 0..3 {
        assert_eq!(transfer(to, "400").status, 400);
    }
    for to in 10..15 {
        let ok = transfer(to, "201");
        assert_eq!(ok.status, 201, "transfer {to}: {}", ok.text());
    }
    let before = upstream.count("/api/v2/transfers");
    let over = transfer(99, "201");
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(over.json().unwrap_or_default()["error"], "quota_exceeded");
    let wait: u64 = over
        .header("retry-after")
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(wait > 23 * 3600, "retry after the day's window: {wait}");
    assert_eq!(upstream.count("/api/v2/transfers"), before);
}

#[test]
fn cors_preflights_are_answered_by_the_gateway_and_foreign_origins_refused() {
    let (upstream, envoy) = start_filter(&bank());
    let preflight = |origin: &str| {
        envoy.send(
            &Request::new("OPTIONS", "/api/v2/accounts/1001")
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization"),
        )
    };
    let ok = preflight("https://app.bank.example");
    assert_eq!(ok.status, 204, "{}", ok.text());
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.bank.example")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(preflight("https://evil.example").status, 403);
    assert_eq!(
        upstream.count("/api/v2/accounts/1001"),
        0,
        "preflights never reach the upstream"
    );

    let read = |origin: &str| {
        envoy.send(
            &Request::get("/api/v2/accounts/1001")
                .header("authorization", &customer("ann", "accounts:read"))
                .header("origin", origin)
                // An upstream that reflects any origin is overruled.
                .header("x-upstream-header", "access-control-allow-origin: *"),
        )
    };
    let allowed = read("https://eu.bank.example");
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://eu.bank.example")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let foreign = read("https://evil.example");
    assert_eq!(foreign.status, 403, "{}", foreign.text());
}
