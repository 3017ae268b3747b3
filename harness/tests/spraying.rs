//! Password spraying in a browser recording (HAR 1.2, which records no client address):
//! one browser failing to sign in with many usernames, with successful sign-ins of its
//! own account in between, as a real user's session would have them. Every HAR request
//! comes from one unrecorded peer, as in Envoy every request has one; the client-IP
//! lockout counts them, a success does not clear the address's count, and the spraying
//! rule reports (or blocks) the address.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use serde_json::{Value, json};
use stakeguard_harness::report::Report;
use stakeguard_harness::traffic;
use stakeguard_harness::{Harness, HarnessConfig};

/// A HAR entry: a JSON login of `user`, answered `status`, one second after the last.
fn entry(i: usize, user: &str, status: u16) -> Value {
    json!({
        "startedDateTime": format!("2026-12-01T10:00:{:02}.000Z", i),
        "time": 5,
        "request": {
            "method": "POST",
            "url": "https://bank.example.com/api/v2/login",
            "httpVersion": "HTTP/1.1",
            "headers": [{ "name": "content-type", "value": "application/json" }],
            "queryString": [], "cookies": [], "headersSize": -1, "bodySize": -1,
            "postData": {
                "mimeType": "application/json",
                "text": format!(r#"{{"username":"{user}","password":"guess"}}"#)
            }
        },
        "response": {
            "status": status, "statusText": "", "httpVersion": "HTTP/1.1",
            "headers": [], "cookies": [],
            "content": { "size": 0, "mimeType": "application/json", "text": "" },
            "redirectURL": "", "headersSize": -1, "bodySize": -1
        },
        "cache": {}, "timings": { "send": 0, "wait": 5, "receive": 0 }
    })
}

/// 13 failures across 9 usernames, the browser's own sign-in succeeding after every
/// third failure.
fn recording() -> String {
    let mut entries = Vec::new();
    let mut failures = 0;
    for i in 0..17 {
        if i % 4 == 3 {
            entries.push(entry(i, "me@example.com", 200));
        } else {
            entries.push(entry(i, &format!("user{}@example.com", failures % 9), 401));
            failures += 1;
        }
    }
    json!({ "log": { "version": "1.2", "creator": { "name": "test", "version": "1" },
                     "entries": entries } })
    .to_string()
}

fn replay(login: Value) -> Report {
    let mut policy: Value = serde_json::from_str(
        &std::fs::read_to_string(common::workspace().join("policies/examples/bank.json")).unwrap(),
    )
    .unwrap();
    policy["tiers"]["critical"]["login"] = login;
    let records = traffic::read_str(Path::new("spray.har"), &recording())
        .unwrap()
        .0;
    let h = Harness::new(
        common::filter_wasm(),
        HarnessConfig {
            plugin_configuration: policy.to_string().into_bytes(),
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    h.replay(&records).unwrap()
}

fn statuses(report: &Report) -> Vec<u32> {
    report.entries.iter().map(|e| e.status).collect()
}

#[test]
fn the_client_address_of_a_har_recording_is_locked_out_despite_its_successes() {
    let report = replay(json!({
        "max_failures": 5, "window": "15m", "lockout": "30m",
        "client_ip": { "max_failures": 10, "window": "15m", "lockout": "1h" }
    }));
    let got = statuses(&report);
    // The tenth failure is request 12 (three failures, then a success, and so on); from
    // then on the address is refused, its own sign-in too.
    assert_eq!(
        &got[..13],
        &[
            401, 401, 401, 200, 401, 401, 401, 200, 401, 401, 401, 200, 401
        ],
        "{got:?}"
    );
    assert!(got[13..].iter().all(|s| *s == 429), "{got:?}");
}

#[test]
fn spraying_from_a_har_recording_is_reported_and_can_be_blocked() {
    let spraying = |action: &str| {
        json!({
            "max_failures": 5, "window": "15m", "lockout": "30m",
            "client_ip": { "max_failures": 50 },
            "spraying": { "max_usernames": 5, "window": "15m", "action": action }
        })
    };
    let report = replay(spraying("alert"));
    let reported: Vec<usize> = report
        .entries
        .iter()
        .filter(|e| {
            e.logs
                .iter()
                .any(|l| l.contains("\"event\":\"password_spraying\""))
        })
        .map(|e| e.index)
        .collect();
    assert_eq!(reported.len(), 1, "reported once: {reported:?}");
    assert!(statuses(&report).iter().all(|s| *s != 429), "alert only");
    let report = replay(spraying("block"));
    let got = statuses(&report);
    let first_refused = got
        .iter()
        .position(|s| *s == 429)
        .expect("the sprayer is refused");
    assert!(first_refused > reported[0], "{got:?}");
    assert!(got[first_refused..].iter().all(|s| *s == 429), "{got:?}");
}
