//! Incidents reach a real Prometheus Alertmanager: with the bank policy
//! (`policies/examples/bank.json`), a login lockout and a call to a retired API version
//! become alerts Alertmanager holds, labelled with the API, version, owner, tier, control
//! and severity. With Alertmanager stopped, requests get the same answers and the failed
//! alert calls are counted in `stakeguard_alerts_failed`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;

use stakeguard_tests::alertmanager::{self, Alertmanager};
use stakeguard_tests::client::Request;
use stakeguard_tests::envoy::Envoy;
use stakeguard_tests::stats::sum;
use stakeguard_tests::upstream::GOOD_PASSWORD;
use stakeguard_tests::wait::eventually;
use stakeguard_tests::{repo_root, start_filter_with};

fn bank_policy() -> String {
    std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap()
}

fn login(user: &str, password: &str, id: &str) -> Request {
    Request::post_json(
        "/api/v2/login",
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    )
    .header("x-request-id", id)
}

fn retired(id: &str) -> Request {
    Request::get("/api/v0/statements/2026-10")
        .header("authorization", "Bearer t")
        .header("x-request-id", id)
}

/// The alert Alertmanager holds with this `alertname`, once it is there.
fn held(am: &Alertmanager, envoy: &Envoy, alertname: &str) -> Value {
    eventually(|| {
        am.alerts()
            .ok()?
            .into_iter()
            .find(|a| alertmanager::label(a, "alertname") == Some(alertname))
    })
    .unwrap_or_else(|| {
        panic!(
            "Alertmanager holds no {alertname} alert: {:?}\n--- envoy log ---\n{}",
            am.alerts(),
            envoy.log()
        )
    })
}

fn assert_labels(alert: &Value, want: &[(&str, &str)]) {
    for (name, value) in want {
        assert_eq!(
            alertmanager::label(alert, name),
            Some(*value),
            "label {name} of {alert:#}"
        );
    }
}

fn alerts_metric(envoy: &Envoy, name: &str) -> f64 {
    sum(&envoy.prometheus(), name, &[])
}

#[test]
fn lockouts_and_retired_calls_become_alerts_and_a_dead_alertmanager_changes_no_answer() {
    let mut am = Alertmanager::start().unwrap_or_else(|e| panic!("{e}"));
    let (upstream, envoy) =
        start_filter_with(&bank_policy(), |config| config.with_alertmanager(am.port()));

    // The bank locks a login after 5 failures (by username and by client address).
    let mut answers = Vec::new();
    for n in 0..5 {
        let bad = envoy.send(&login("victim", "wrong", &format!("fail-{n}")));
        assert_eq!(bad.status, 401, "failure {n}: {}", bad.text());
    }
    answers.push(
        envoy
            .send(&login("victim", GOOD_PASSWORD, "locked-1"))
            .status,
    );
    answers.push(envoy.send(&retired("retired-1")).status);
    assert_eq!(answers, [429, 410], "locked out, then a retired API");

    let lockout = held(&am, &envoy, "login_lockout");
    assert_labels(
        &lockout,
        &[
            ("api", "login"),
            ("version", "v2"),
            ("owner", "team-identity"),
            ("tier", "critical"),
            ("severity", "page"),
            ("control", "login"),
        ],
    );
    let retired_alert = held(&am, &envoy, "retired_api_called");
    assert_labels(
        &retired_alert,
        &[
            ("api", "statements"),
            ("version", "v0"),
            ("owner", "team-accounts"),
            ("tier", "critical"),
            ("severity", "ticket"),
            ("control", "lifecycle"),
        ],
    );
    assert_eq!(retired_alert["annotations"]["reference"], "retired-1");
    assert_eq!(retired_alert["status"]["state"], "active");
    let sent = eventually(|| {
        let sent = alerts_metric(&envoy, "stakeguard_alerts_sent");
        (sent >= 2.0).then_some(sent)
    })
    .unwrap_or_else(|| panic!("{:?}", envoy.admin_get("/stats?filter=stakeguard.alerts")));
    assert_eq!(alerts_metric(&envoy, "stakeguard_alerts_failed"), 0.0);

    // Alertmanager gone: the same requests get the same answers; a new incident (a shadow
    // API, never alerted before, so not deduplicated) fails to reach it and is counted.
    am.stop();
    assert!(am.has_exited());
    let logins_before = upstream.count("/api/v2/login");
    let again = vec![
        envoy
            .send(&login("victim", GOOD_PASSWORD, "locked-2"))
            .status,
        envoy.send(&retired("retired-2")).status,
    ];
    assert_eq!(again, answers, "the same answers without Alertmanager");
    let shadow = envoy.send(&Request::get("/internal/debug").header("x-request-id", "shadow-1"));
    assert_eq!(shadow.status, 404, "{}", shadow.text());
    assert_eq!(
        upstream.count("/api/v2/login"),
        logins_before,
        "still locked out"
    );
    let failed = eventually(|| {
        let failed = alerts_metric(&envoy, "stakeguard_alerts_failed");
        (failed >= 1.0).then_some(failed)
    })
    .unwrap_or_else(|| {
        panic!(
            "no failed alert counted: {:?}\n{}",
            envoy.admin_get("/stats?filter=stakeguard.alerts"),
            envoy.log()
        )
    });
    assert_eq!(
        alerts_metric(&envoy, "stakeguard_alerts_sent"),
        sent,
        "nothing more was accepted"
    );
    eprintln!("alerts: sent {sent} while Alertmanager ran, {failed} failed after it stopped");
}
