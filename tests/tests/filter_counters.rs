//! Controls that count in shared data, in a real Envoy with 2 workers: login lockout
//! (across both workers: every request on a new connection), rate limit with
//! `Retry-After`, session idle timeout.

use stakeguard_tests::client::Request;
use stakeguard_tests::upstream::GOOD_PASSWORD;
use stakeguard_tests::{start_filter, test_policy};

fn login(user: &str, password: &str, id: &str) -> Request {
    Request::post_json(
        "/api/v2/login",
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    )
    .header("x-request-id", id)
}

#[test]
fn failed_logins_lock_the_user_out_across_workers() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    let ok = envoy.send(&login("ann", GOOD_PASSWORD, "ann-ok"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    // max_failures is 3: each attempt on its own connection, so both workers count.
    for n in 0..3 {
        let bad = envoy.send(&login("bob", "wrong", &format!("bob-bad-{n}")));
        assert_eq!(
            bad.status,
            401,
            "attempt {n} reaches the upstream: {}",
            bad.text()
        );
    }
    let before = upstream.count("/api/v2/login");
    for n in 0..4 {
        let locked = envoy.send(&login("bob", GOOD_PASSWORD, &format!("bob-locked-{n}")));
        assert!(
            locked.status == 429 || locked.status == 423 || locked.status == 403,
            "locked out: {} {}",
            locked.status,
            locked.text()
        );
        assert_eq!(
            locked.json().unwrap()["reference"],
            format!("bob-locked-{n}")
        );
    }
    assert_eq!(
        upstream.count("/api/v2/login"),
        before,
        "locked-out attempts never reach the upstream"
    );
    let entry = envoy.access_log_entry("bob-locked-0").unwrap();
    assert!(
        entry["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=login outcome=blocked"),
        "{entry}"
    );
    // The lockout is an incident (page) in the log.
    let events = stakeguard_tests::wait::eventually(|| {
        let e: Vec<_> = envoy
            .filter_events()
            .into_iter()
            .filter(|e| e["event"] == "login_lockout")
            .collect();
        (!e.is_empty()).then_some(e)
    })
    .unwrap_or_else(|| panic!("no login_lockout event:\n{}", envoy.log()));
    assert_eq!(events[0]["severity"], "page");
    // Another user from the same client is not locked by bob's lockout of the username...
    // unless the client IP key also reached its threshold, which 3 failures does.
    let other = envoy.send(&login("carol", GOOD_PASSWORD, "carol-ok"));
    assert!(
        other.status == 200 || other.status >= 400,
        "{}",
        other.status
    );
}

#[test]
fn a_rate_limit_answers_429_with_retry_after() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    // The `low` tier allows 2 requests per minute per client IP.
    for n in 0..2 {
        let ok = envoy
            .send(&Request::get("/api/v1/rates/eur").header("x-request-id", &format!("rate-{n}")));
        assert_eq!(ok.status, 200, "request {n}: {}", ok.text());
    }
    let limited =
        envoy.send(&Request::get("/api/v1/rates/eur").header("x-request-id", "rate-limited"));
    assert_eq!(limited.status, 429, "{}", limited.text());
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After: {:?}", limited.headers));
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(upstream.count("/api/v1/rates"), 2);
    assert!(
        envoy.access_log_entry("rate-limited").unwrap()["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=rate_limit outcome=blocked")
    );
    // Monitor mode (`watched` tier, 2 per minute): over the limit is only reported.
    for n in 0..3 {
        let r = envoy.send(
            &Request::get("/api/v1/catalog/x")
                .header("authorization", "Bearer t")
                .header("x-request-id", &format!("watch-{n}")),
        );
        assert_eq!(r.status, 200);
    }
    let watched = envoy.access_log_entry("watch-2").unwrap();
    assert!(
        watched["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=rate_limit outcome=would_block"),
        "{watched}"
    );
}

#[test]
fn an_idle_session_is_refused_after_its_idle_timeout() {
    let (_upstream, envoy) = start_filter(&test_policy("e2e"));
    let ok = envoy.send(&login("dan", GOOD_PASSWORD, "dan-login"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let cookie = ok
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let fresh = envoy.send(
        &Request::get("/api/v2/profile")
            .header("cookie", &cookie)
            .header("x-request-id", "dan-fresh"),
    );
    assert_eq!(fresh.status, 200, "{}", fresh.text());
    // idle_timeout is 2s.
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let idle = envoy.send(
        &Request::get("/api/v2/profile")
            .header("cookie", &cookie)
            .header("x-request-id", "dan-idle"),
    );
    assert_eq!(idle.status, 401, "{}", idle.text());
    assert!(
        envoy.access_log_entry("dan-idle").unwrap()["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=session outcome=blocked")
    );
}
