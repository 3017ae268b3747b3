//! Body controls (size 413, content type 415) and response hardening (Set-Cookie
//! attributes, security headers, stripped headers) in a real Envoy.

use stakeguard_tests::client::Request;
use stakeguard_tests::upstream::Reply;
use stakeguard_tests::{start_filter, test_policy};

#[test]
fn bodies_over_the_limit_or_of_the_wrong_type_are_refused() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    let small = envoy.send(
        &Request::post_json("/api/v2/payments", r#"{"amount":1}"#)
            .header("authorization", "Bearer t")
            .header("x-request-id", "body-ok"),
    );
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(upstream.count("/api/v2/payments"), 1);

    // max_bytes is 64.
    let big = format!(r#"{{"memo":"{}"}}"#, "x".repeat(200));
    let large = envoy.send(
        &Request::post_json("/api/v2/payments", &big)
            .header("authorization", "Bearer t")
            .header("x-request-id", "body-large"),
    );
    assert_eq!(large.status, 413, "{}", large.text());
    assert_eq!(large.json().unwrap()["reference"], "body-large");

    let form = envoy.send(
        &Request::new("POST", "/api/v2/payments")
            .header("authorization", "Bearer t")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-request-id", "body-type")
            .body(b"amount=1"),
    );
    assert_eq!(form.status, 415, "{}", form.text());
    assert_eq!(
        upstream.count("/api/v2/payments"),
        1,
        "refused bodies never complete upstream"
    );
    assert!(
        envoy.access_log_entry("body-large").unwrap()["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=body outcome=blocked")
    );
    assert!(
        envoy.access_log_entry("body-type").unwrap()["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=body outcome=blocked")
    );
}

#[test]
fn upstream_responses_are_hardened() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    upstream.respond(
        "/api/v2/accounts/",
        Reply::status(200)
            .header("set-cookie", "sid=abc; Path=/")
            .header("set-cookie", "pref=dark")
            .header("server", "upstream/1.0")
            .header("x-powered-by", "php")
            .header("x-upstream", "1"),
    );
    let resp = envoy.send(&Request::get("/api/v2/accounts/9").header("authorization", "Bearer t"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cookies = resp.header_all("set-cookie");
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in &cookies {
        let lower = cookie.to_ascii_lowercase();
        assert!(
            lower.contains("secure")
                && lower.contains("httponly")
                && lower.contains("samesite=strict"),
            "{cookie}"
        );
    }
    assert!(
        cookies.iter().any(|c| c.starts_with("sid=abc"))
            && cookies.iter().any(|c| c.starts_with("pref=dark")),
        "{cookies:?}"
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("x-powered-by"), None);
    // Envoy sets its own `server` header on the way out unless told otherwise; the
    // upstream's is gone either way.
    assert_ne!(resp.header("server"), Some("upstream/1.0"));

    // A tier without response controls passes the upstream's headers untouched.
    upstream.respond(
        "/api/v1/rates/",
        Reply::status(200)
            .header("set-cookie", "pref=dark")
            .header("x-powered-by", "php"),
    );
    let plain = envoy.send(&Request::get("/api/v1/rates/eur"));
    assert_eq!(plain.header_all("set-cookie"), vec!["pref=dark"]);
    assert_eq!(plain.header("x-powered-by"), Some("php"));
}

#[test]
fn non_utf8_headers_and_huge_cookies_get_a_decision_not_a_trap() {
    let (_upstream, envoy) = start_filter(&test_policy("e2e"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"GET /api/v1/rates/eur HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-odd: caf\xe9\xff\r\nx-request-id: odd-1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let cookie = format!("sid={}", "a".repeat(50_000));
    let huge = envoy.send(&Request::get("/api/v2/profile").header("cookie", &cookie));
    assert!(
        huge.status == 200 || huge.status == 401 || huge.status == 431,
        "{}",
        huge.status
    );
    // The VM is still alive: a normal request still gets decided.
    let after = envoy.send(&Request::get("/internal/x"));
    assert_eq!(after.status, 404);
    assert!(
        envoy.log_lines("panic").is_empty() && envoy.log_lines("Function: proxy_on").is_empty(),
        "{}",
        envoy.log()
    );
}
