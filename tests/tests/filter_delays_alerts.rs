//! Delays carried out by pausing the stream and resuming it from the tick; incidents sent
//! as Alertmanager v2 alerts (here to the test upstream standing in for Alertmanager),
//! deduplicated per window; incident log lines held back in a flood and accounted for.

use std::time::{Duration, Instant};

use stakeguard_tests::client::Request;
use stakeguard_tests::stats::sum;
use stakeguard_tests::wait::eventually;
use stakeguard_tests::{start_filter, test_policy};

#[test]
fn a_delay_holds_the_request_then_lets_it_through() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    let attempt = |id: &str| {
        Request::post_json(
            "/api/v1/password-reset",
            r#"{"username":"eve","password":"wrong"}"#,
        )
        .header("x-request-id", id)
        .header("x-upstream-status", "401")
    };
    let first = envoy.send(&attempt("reset-0"));
    assert_eq!(first.status, 401, "{}", first.text());
    let started = Instant::now();
    let delayed = envoy.send(&attempt("reset-1"));
    let took = started.elapsed();
    assert_eq!(
        delayed.status,
        401,
        "the delayed request still reaches the upstream: {}",
        delayed.text()
    );
    assert!(
        took >= Duration::from_millis(500),
        "held for the delay, took {took:?}"
    );
    assert_eq!(upstream.count("/api/v1/password-reset"), 2);
    let decision = envoy.access_log_entry("reset-1").unwrap()["decision"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        decision.contains("control=login outcome=delayed"),
        "{decision}"
    );
}

#[test]
fn incidents_become_deduplicated_alertmanager_alerts() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    for n in 0..3 {
        let r = envoy.send(
            &Request::get("/api/v0/statements/1")
                .header("authorization", "Bearer t")
                .header("x-request-id", &format!("retired-{n}")),
        );
        assert_eq!(r.status, 410);
    }
    let alerts = eventually(|| {
        let alerts: Vec<_> = upstream
            .requests()
            .into_iter()
            .filter(|r| r.path == "/api/v2/alerts")
            .collect();
        (!alerts.is_empty()).then_some(alerts)
    })
    .unwrap_or_else(|| {
        panic!(
            "no alert reached the alertmanager cluster:\n{}",
            envoy.log()
        )
    });
    let alert = &alerts[0];
    assert_eq!(alert.method, "POST");
    assert_eq!(alert.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&alert.body).unwrap();
    let labels = &body[0]["labels"];
    assert_eq!(labels["alertname"], "retired_api_called");
    assert_eq!(labels["api"], "statements");
    assert_eq!(labels["version"], "v0");
    assert_eq!(labels["owner"], "team-accounts");
    assert_eq!(labels["tier"], "critical");
    assert_eq!(labels["severity"], "ticket");
    assert_eq!(labels["control"], "lifecycle");
    assert!(
        body[0]["annotations"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("retired-")
    );
    // Same API, control, event and client within the window: deduplicated per worker (2
    // workers: at most one alert each).
    std::thread::sleep(Duration::from_millis(300));
    let count = upstream
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v2/alerts")
        .count();
    assert!(
        (1..=2).contains(&count),
        "{count} alerts for 3 identical incidents"
    );
    let sent = eventually(|| {
        let s = envoy.prometheus();
        let sent = sum(&s, "stakeguard_alerts_sent", &[]);
        (sent >= 1.0 && sent + sum(&s, "stakeguard_alerts_deduplicated", &[]) >= 3.0)
            .then_some(sent)
    });
    assert!(
        sent.is_some(),
        "alerts sent + deduplicated = incidents: {:?}",
        envoy.admin_get("/stats?filter=stakeguard.alerts")
    );
}

/// Delayed requests a worker holds are capped (`state.max_delayed`): past the cap a
/// delay is not carried out, the request goes on at once, and the metric counts it.
#[test]
fn delayed_requests_past_the_cap_go_on_at_once_and_are_counted() {
    let mut policy: serde_json::Value = serde_json::from_str(&test_policy("e2e")).unwrap();
    policy["state"] = serde_json::json!({ "max_delayed": 2 });
    let (_upstream, envoy) =
        stakeguard_tests::start_filter_with(&policy.to_string(), |c| c.with_concurrency(1));
    let attempt = |id: String| {
        Request::post_json(
            "/api/v1/password-reset",
            r#"{"username":"eve","password":"wrong"}"#,
        )
        .header("x-request-id", &id)
        .header("x-upstream-status", "401")
    };
    assert_eq!(envoy.send(&attempt("lock".to_owned())).status, 401);
    // Six attempts at once on one worker: two are held, four are not.
    let port = envoy.port();
    let threads: Vec<_> = (0..6)
        .map(|n| {
            let request = attempt(format!("burst-{n}"));
            std::thread::spawn(move || {
                let started = Instant::now();
                let response = request.send(port).unwrap();
                (response.status, started.elapsed())
            })
        })
        .collect();
    let results: Vec<(u16, Duration)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        results.iter().all(|(status, _)| *status == 401),
        "{results:?}"
    );
    let held = results
        .iter()
        .filter(|(_, took)| *took >= Duration::from_millis(450))
        .count();
    assert_eq!(held, 2, "only the cap's worth are held: {results:?}");
    let hits = eventually(|| {
        let total = sum(&envoy.prometheus(), "stakeguard_paused_cap_hits", &[]);
        (total >= 4.0).then_some(total)
    })
    .unwrap_or_else(|| {
        panic!(
            "cap hits not counted:\n{}",
            envoy.admin_get("/stats/prometheus").unwrap_or_default()
        )
    });
    assert_eq!(hits, 4.0);
}

/// An Alertmanager that accepts connections and never answers: the alert times out
/// after the policy's `timeout`, is counted as failed, and the request that raised it is
/// answered at once all the same.
#[test]
fn a_silent_alertmanager_times_out_without_delaying_the_request() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // Accept and hold connections without ever writing a byte.
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    // A long alert timeout, so that an answer held back by the alert would show.
    let mut policy: serde_json::Value = serde_json::from_str(&test_policy("e2e")).unwrap();
    policy["notify"]["alertmanager"]["timeout"] = "2s".into();
    let (_upstream, envoy) = stakeguard_tests::start_filter_with(&policy.to_string(), |c| {
        c.with_alertmanager(silent_port)
    });
    let started = Instant::now();
    let retired = envoy.send(
        &Request::get("/api/v0/statements/1")
            .header("authorization", "Bearer t")
            .header("x-request-id", "retired-silent"),
    );
    assert_eq!(retired.status, 410);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the answer does not wait for the alert: {:?}",
        started.elapsed()
    );
    let failed = eventually(|| {
        let total = sum(&envoy.prometheus(), "stakeguard_alerts_failed", &[]);
        (total >= 1.0).then_some(total)
    })
    .unwrap_or_else(|| panic!("the timed-out alert is not counted:\n{}", envoy.log()));
    assert_eq!(failed, 1.0);
    drop(envoy);
    drop(holder);
}

#[test]
fn a_flood_of_incidents_writes_a_line_per_kind_per_tick_and_accounts_for_the_rest() {
    let (_upstream, envoy) = start_filter(&test_policy("e2e"));
    const FLOOD: usize = 60;
    for n in 0..FLOOD {
        let r = envoy.send(
            &Request::get(&format!("/scan/{n}")).header("x-request-id", &format!("scan-{n}")),
        );
        assert_eq!(r.status, 404, "{}", r.text());
    }
    // Every incident is counted, and each is either its own line or in a tick's count
    // of lines held back: nothing is lost.
    let (written, held) = eventually(|| {
        let events = envoy.filter_events();
        let written = events.iter().filter(|e| e["event"] == "shadow_api").count();
        let held: u64 = events
            .iter()
            .filter(|e| e["event"] == "incident_lines_held")
            .map(|e| e["count"].as_u64().unwrap_or(0))
            .sum();
        (written as u64 + held == FLOOD as u64).then_some((written, held))
    })
    .unwrap_or_else(|| panic!("{}", envoy.log_tail(80)));
    assert!(written >= 1, "the first of the flood is written at once");
    eprintln!("{written} lines written, {held} held back");
    assert_eq!(
        sum(
            &envoy.prometheus(),
            "stakeguard_incident",
            &[("control", "unknown_route")]
        ),
        FLOOD as f64
    );
}
