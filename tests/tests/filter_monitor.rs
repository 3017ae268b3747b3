//! Monitor mode through a real Envoy: the end-to-end policy with every tier (and the
//! shadow-route and ambiguous-path controls) in monitor mode. Each request that enforce
//! mode refuses (see the other filter tests) now reaches the upstream unchanged, and the
//! published decision says what would have happened: `outcome=would_block`.

use std::time::Duration;

use stakeguard_tests::client::Request;
use stakeguard_tests::{start_filter, test_policy};

/// The end-to-end policy with every mode switch turned to monitor (a policy edit
/// through JSON pointers, so a missing field fails the test instead of panicking).
fn monitored_policy() -> String {
    let mut policy: serde_json::Value =
        serde_json::from_str(&test_policy("e2e")).unwrap_or_default();
    let set =
        |policy: &mut serde_json::Value, pointer: &str, key: &str, value: serde_json::Value| {
            let object = policy
                .pointer_mut(pointer)
                .and_then(serde_json::Value::as_object_mut);
            assert!(
                object.is_some(),
                "the e2e policy has no object at {pointer}"
            );
            if let Some(object) = object {
                object.insert(key.to_owned(), value);
            }
        };
    let tiers: Vec<String> = policy
        .get("tiers")
        .and_then(serde_json::Value::as_object)
        .map(|tiers| tiers.keys().cloned().collect())
        .unwrap_or_default();
    for tier in tiers {
        set(
            &mut policy,
            &format!("/tiers/{tier}"),
            "mode",
            "monitor".into(),
        );
    }
    set(&mut policy, "/unknown_routes", "mode", "monitor".into());
    set(
        &mut policy,
        "",
        "ambiguous_paths",
        serde_json::json!({ "mode": "monitor" }),
    );
    policy.to_string()
}

#[test]
fn every_refusal_becomes_would_block_and_the_traffic_passes() {
    let (upstream, envoy) = start_filter(&monitored_policy());
    let bearer = ("authorization", "Bearer t");
    let mut cases: Vec<(&str, Request, &str)> = vec![
        (
            "unknown",
            Request::get("/internal/debug"),
            "control=unknown_route",
        ),
        (
            "ambiguous",
            Request::get("/api/v2/accounts%2F1"),
            "control=path",
        ),
        (
            "retired",
            Request::get("/api/v0/statements/1").header(bearer.0, bearer.1),
            "control=lifecycle",
        ),
        (
            "no-credentials",
            Request::get("/api/v2/accounts/1"),
            "control=auth",
        ),
        (
            "too-large",
            Request::post_json(
                "/api/v2/payments",
                &format!(r#"{{"memo":"{}"}}"#, "x".repeat(100)),
            )
            .header(bearer.0, bearer.1),
            "control=body",
        ),
        (
            "wrong-type",
            Request::new("POST", "/api/v2/payments")
                .header("content-type", "text/plain")
                .header(bearer.0, bearer.1)
                .body(b"hello"),
            "control=body",
        ),
    ];
    for n in 0..3 {
        cases.push((
            "rates",
            Request::get(&format!("/api/v1/rates/eur-{n}")),
            "control=rate_limit",
        ));
    }
    let mut decisions = Vec::new();
    for (n, (name, request, control)) in cases.into_iter().enumerate() {
        let id = format!("{name}-{n}");
        let response = envoy.send(&request.header("x-request-id", &id));
        assert!(
            response.status < 400,
            "{id}: monitor mode refused it: {} {}",
            response.status,
            response.text()
        );
        let entry = envoy.access_log_entry(&id).unwrap_or_default();
        decisions.push((control, entry["decision"].as_str().unwrap_or("").to_owned()));
    }
    for control in [
        "unknown_route",
        "path",
        "lifecycle",
        "auth",
        "body",
        "rate_limit",
    ] {
        let wanted = format!("control={control} outcome=would_block");
        assert!(
            decisions.iter().any(|(_, d)| d.contains(&wanted)),
            "no would_block for {control}: {decisions:#?}"
        );
    }
    assert!(
        !decisions.iter().any(|(_, d)| d.contains("outcome=blocked")),
        "monitor mode blocked something: {decisions:#?}"
    );
    assert!(
        upstream.requests().len() >= 9,
        "every request reached the upstream"
    );
}

#[test]
fn lockouts_and_sessions_in_monitor_mode_hold_nothing_back() {
    let (upstream, envoy) = start_filter(&monitored_policy());
    // The reset flow locks after one failure and would delay the next attempts.
    for n in 0..3 {
        let attempt = Request::post_json(
            "/api/v1/password-reset",
            r#"{"username":"eve","password":"wrong"}"#,
        )
        .header("x-request-id", &format!("reset-{n}"))
        .header("x-upstream-status", "401");
        assert_eq!(envoy.send(&attempt).status, 401);
    }
    let locked = envoy.access_log_entry("reset-2").unwrap_or_default();
    assert!(
        locked["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=login outcome=would_block"),
        "{locked}"
    );
    // A session idle for longer than its 2 s timeout still passes.
    let with_session = |id: &str| {
        Request::get("/api/v2/profile")
            .header("cookie", "sid=monitored")
            .header("x-request-id", id)
    };
    assert_eq!(envoy.send(&with_session("session-0")).status, 200);
    std::thread::sleep(Duration::from_millis(2_300));
    let idle = envoy.send(&with_session("session-1"));
    assert_eq!(idle.status, 200, "{}", idle.text());
    let entry = envoy.access_log_entry("session-1").unwrap_or_default();
    assert!(
        entry["decision"]
            .as_str()
            .unwrap_or("")
            .contains("control=session outcome=would_block"),
        "{entry}"
    );
    // Hardening in monitor mode leaves the upstream's headers as they were.
    let plain = envoy.send(
        &Request::get("/api/v2/profile").header("x-upstream-header", "x-powered-by: test-upstream"),
    );
    assert_eq!(plain.header("x-powered-by"), Some("test-upstream"));
    assert!(upstream.count("/api/v1/password-reset") >= 3);
}
