//! A directory of Envoy tap traces as Envoy's `file_per_tap` sink wrote it (one file per
//! request, named by a random trace id; `tests/data/tap-dir/`, recorded by Envoy 1.40
//! with `record_headers_received_time`: six failed logins of one user, then two other
//! requests, about 0.27 s apart). Read whole, the records come in recorded-time order
//! whatever order the files are named in, so a login lockout fires on the same requests
//! as it did in the recorded run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;

use stakeguard_harness::traffic::{Record, read_paths};
use stakeguard_harness::{Harness, HarnessConfig};

fn tap_dir() -> PathBuf {
    common::data("tap-dir")
}

/// The directory's files in name order (Envoy's trace-id order, not time order).
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tap_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// What identifies a request of the recording: its path and the login body's password.
fn requests(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let body = String::from_utf8_lossy(&r.request.body);
            let password = body.split("\"password\":\"").nth(1).unwrap_or("");
            format!("{} {}", r.request.path, password.trim_end_matches("\"}"))
        })
        .collect()
}

const IN_TIME_ORDER: [&str; 8] = [
    "/api/v2/login p1",
    "/api/v2/login p2",
    "/api/v2/login p3",
    "/api/v2/login p4",
    "/api/v2/login p5",
    "/api/v2/login p6",
    "/api/v2/accounts/42 ",
    "/api/v1/bills/7 ",
];

#[test]
fn a_tap_directory_is_read_whole_in_recorded_time_order() {
    // The names alone would give another order: the test data must keep showing that.
    let by_name: Vec<Record> = files()
        .iter()
        .flat_map(|f| read_paths(std::slice::from_ref(f)).unwrap())
        .collect();
    assert_ne!(requests(&by_name), IN_TIME_ORDER);

    let records = read_paths(&[tap_dir()]).unwrap();
    assert_eq!(requests(&records), IN_TIME_ORDER);
    let times: Vec<i64> = records.iter().map(|r| r.time_ns.unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "recorded times must be kept distinct: {times:?}"
    );
}

#[test]
fn shuffled_tap_files_replay_exactly_like_the_ordered_ones() {
    let ordered = read_paths(&[tap_dir()]).unwrap();
    let mut shuffled = files();
    // A fixed shuffle (reversed, then the halves swapped): no order of names may matter.
    shuffled.reverse();
    shuffled.rotate_left(3);
    assert_ne!(shuffled, files());
    let from_shuffled = read_paths(&shuffled).unwrap();
    assert_eq!(requests(&from_shuffled), IN_TIME_ORDER);

    let policy = r#"{"revision":"tap","tiers":{"t":{"login":{"max_failures":3,"window":"15m","lockout":"30m","action":"block"}}},
        "apis":[{"name":"login","version":"v2","owner":"team-identity","tier":"t",
                 "routes":[{"path":"/api/v2/login","methods":["POST"]}],
                 "login":{"username":{"json_pointer":"/username"}}}]}"#;
    let harness = Harness::new(
        common::filter_wasm(),
        HarnessConfig {
            plugin_configuration: policy.as_bytes().to_vec(),
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let report = harness.replay(&ordered).unwrap();
    assert_eq!(
        report.to_jsonl(),
        harness.replay(&from_shuffled).unwrap().to_jsonl()
    );
    // The lockout fires where it did in the recorded run: after the third failure.
    let statuses: Vec<u32> = report.entries.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 200, 200]);
}
