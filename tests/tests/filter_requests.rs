//! Request controls decided on headers, in a real Envoy: unknown routes, lifecycle,
//! methods, credentials, monitor mode; the decision published to the access log; the
//! decision metrics with their labels in `/stats/prometheus`.

use stakeguard_tests::client::Request;
use stakeguard_tests::stats::sum;
use stakeguard_tests::wait::eventually;
use stakeguard_tests::{start_filter, test_policy};

#[test]
fn controls_on_request_headers_block_annotate_or_pass_and_say_so() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));

    // Allowed: a known route with credentials reaches the upstream, nothing published.
    let ok = envoy.send(
        &Request::get("/api/v2/accounts/7")
            .header("authorization", "Bearer t")
            .header("x-request-id", "req-ok"),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(upstream.count("/api/v2/accounts/7"), 1);
    let plain = envoy.send(&Request::get("/api/v1/rates/eur").header("x-request-id", "req-plain"));
    assert_eq!(plain.status, 200, "{}", plain.text());

    // Unknown route (shadow API): blocked, the reference in the body, never upstream.
    let shadow = envoy.send(&Request::get("/internal/debug").header("x-request-id", "req-shadow"));
    assert_eq!(shadow.status, 404, "{}", shadow.text());
    assert_eq!(shadow.header("content-type"), Some("application/json"));
    assert_eq!(shadow.json().unwrap()["reference"], "req-shadow");
    assert_eq!(upstream.count("/internal"), 0);

    // Lifecycle: deprecated is annotated, retired is gone.
    let deprecated =
        envoy.send(&Request::get("/api/v1/accounts/7").header("x-request-id", "req-deprecated"));
    assert_eq!(deprecated.status, 200);
    assert!(
        deprecated.header("deprecation").is_some(),
        "{:?}",
        deprecated.headers
    );
    assert!(
        deprecated.header("sunset").is_some(),
        "{:?}",
        deprecated.headers
    );
    let retired = envoy.send(
        &Request::get("/api/v0/statements/2025")
            .header("authorization", "Bearer t")
            .header("x-request-id", "req-retired"),
    );
    assert_eq!(retired.status, 410, "{}", retired.text());
    assert_eq!(upstream.count("/api/v0"), 0);

    // Method not allowed.
    let method = envoy.send(
        &Request::new("DELETE", "/api/v2/accounts/7")
            .header("authorization", "Bearer t")
            .header("x-request-id", "req-method"),
    );
    assert_eq!(method.status, 405, "{}", method.text());

    // Missing credentials.
    let anon = envoy.send(&Request::get("/api/v2/accounts/7").header("x-request-id", "req-anon"));
    assert_eq!(anon.status, 401, "{}", anon.text());
    assert_eq!(
        upstream.count("/api/v2/accounts/7"),
        1,
        "the anonymous request never reached the upstream"
    );

    // Monitor mode: the same missing credentials only report.
    let watched =
        envoy.send(&Request::get("/api/v1/catalog/shoes").header("x-request-id", "req-watched"));
    assert_eq!(watched.status, 200, "{}", watched.text());

    // The published decisions, as the access log prints them.
    let decision = |id: &str| -> String {
        let entry = envoy
            .access_log_entry(id)
            .unwrap_or_else(|| panic!("no access log entry for {id}:\n{:#?}", envoy.access_log()));
        entry["decision"].as_str().unwrap_or("").to_owned()
    };
    let plain_decision = decision("req-plain");
    assert!(
        plain_decision.is_empty() || plain_decision == "-",
        "a plain allow publishes nothing: {plain_decision}"
    );
    let hardened = decision("req-ok");
    assert!(
        hardened.is_empty() || hardened == "-",
        "routine response hardening publishes nothing: {hardened}"
    );
    let shadow_decision = decision("req-shadow");
    assert!(
        shadow_decision.contains("control=unknown_route")
            && shadow_decision.contains("outcome=blocked")
            && shadow_decision.contains("ref=req-shadow"),
        "{shadow_decision}"
    );
    assert!(decision("req-deprecated").contains("api=accounts version=v1"));
    assert!(
        decision("req-deprecated").contains("outcome=annotated"),
        "{}",
        decision("req-deprecated")
    );
    assert!(
        decision("req-retired").contains("control=lifecycle outcome=blocked"),
        "{}",
        decision("req-retired")
    );
    assert!(
        decision("req-method").contains("control=method outcome=blocked"),
        "{}",
        decision("req-method")
    );
    assert!(
        decision("req-anon").contains("control=auth outcome=blocked"),
        "{}",
        decision("req-anon")
    );
    assert!(
        decision("req-watched").contains("control=auth outcome=would_block"),
        "{}",
        decision("req-watched")
    );

    // The decision metrics, labelled by Envoy's stats tags (flushed on the filter's tick).
    let blocked = |api: &str, version: &str, control: &str| {
        eventually(|| {
            let v = sum(
                &envoy.prometheus(),
                "stakeguard_decision",
                &[
                    ("api", api),
                    ("version", version),
                    ("control", control),
                    ("outcome", "blocked"),
                ],
            );
            (v >= 1.0).then_some(v)
        })
    };
    assert_eq!(blocked("none", "none", "unknown_route"), Some(1.0));
    assert_eq!(blocked("statements", "v0", "lifecycle"), Some(1.0));
    assert_eq!(blocked("accounts", "v2", "auth"), Some(1.0));
    let samples = envoy.prometheus();
    assert_eq!(
        sum(
            &samples,
            "stakeguard_decision",
            &[
                ("api", "rates"),
                ("version", "v1"),
                ("control", "none"),
                ("outcome", "allowed")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "stakeguard_decision",
            &[
                ("api", "accounts"),
                ("version", "v2"),
                ("control", "none"),
                ("outcome", "allowed")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "stakeguard_decision",
            &[
                ("api", "catalog"),
                ("control", "auth"),
                ("outcome", "would_block")
            ]
        ),
        1.0
    );

    // One structured log line per event, with the reference the client saw.
    let events = envoy.filter_events();
    let shadow_event = events
        .iter()
        .find(|e| e["reference"] == "req-shadow")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(shadow_event["event"], "shadow_api");
    assert_eq!(shadow_event["incident"], true);
    assert_eq!(shadow_event["severity"], "ticket");
    assert!(
        !envoy
            .log_lines("\"reference\":\"req-shadow\"")
            .iter()
            .any(|l| !l.contains("[warning]")),
        "incidents log at warn"
    );
    assert_eq!(
        sum(
            &envoy.prometheus(),
            "stakeguard_incident",
            &[
                ("api", "none"),
                ("control", "unknown_route"),
                ("severity", "ticket")
            ]
        ),
        1.0
    );

    assert_eq!(
        blocked("accounts", "v2", "method"),
        Some(1.0),
        "the 405 on accounts v2 is counted for accounts v2"
    );
}
