//! Controls counted in a rate limit service, replayed through the built module with the
//! harness's in-memory RLS v3 service (`--ratelimit-service`, or `ratelimit_service` in
//! the callouts file): two workers share the service's counts as two proxies would, and
//! a service that times out follows the policy's `failure_mode`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use stakeguard_harness::HarnessConfig;
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::report::Report;

/// Rates: 25 requests per minute per client address; login: 5 failures per hour lock a
/// username out; both counted in the service of cluster `ratelimit`.
fn policy(failure_mode: &str) -> String {
    format!(
        r#"{{
        "revision": "rls-harness",
        "tiers": {{ "critical": {{
            "rate_limit": {{ "requests": 25, "per": "1m", "key": "client_ip" }},
            "login": {{ "max_failures": 5, "window": "1h", "lockout": "1h", "keys": ["username"] }},
            "incidents": {{ "login_lockout": "ticket" }},
            "counters": {{
                "service": {{ "cluster": "ratelimit", "domain": "bank", "timeout": "50ms",
                              "failure_mode": "{failure_mode}" }},
                "rate_limit": "service", "login": "service"
            }}
        }} }},
        "apis": [
            {{ "name": "login", "version": "v2", "owner": "team-identity", "tier": "critical",
               "routes": [ {{ "path": "/login", "methods": ["POST"] }} ],
               "login": {{ "username": {{ "json_pointer": "/username" }} }} }},
            {{ "name": "rates", "version": "v1", "owner": "team-rates", "tier": "critical",
               "routes": [ {{ "path": "/rates" }} ] }}
        ]
    }}"#
    )
}

fn config(policy: &str, callouts: CalloutConfig) -> HarnessConfig {
    HarnessConfig {
        plugin_configuration: policy.as_bytes().to_vec(),
        workers: 2,
        callouts,
        ..HarnessConfig::default()
    }
}

fn served() -> CalloutConfig {
    let mut callouts = CalloutConfig::default();
    callouts.serve_ratelimit("ratelimit");
    callouts
}

/// `n` requests to `/rates` from one client, each on its own connection (so the two
/// workers take turns), 100 ms apart.
fn rates(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"time":{},"connection":{i},"source":"203.0.113.9:{}","request":{{"authority":"bank.example.com","path":"/rates"}},"response":{{"status":200}}}}"#,
                1_795_910_400_000u64 + 100 * i as u64,
                40_000 + i
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `n` failed sign-ins of `alice`, each from another address and connection.
fn failed_logins(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"time":{},"connection":{i},"source":"198.51.100.{}:5000","request":{{"method":"POST","authority":"bank.example.com","path":"/login","headers":[["content-type","application/json"]],"body":"{{\"username\":\"alice\"}}"}},"response":{{"status":401}}}}"#,
                1_795_910_400_000u64 + 1_000 * i as u64,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn statuses(report: &Report) -> Vec<u32> {
    report.entries.iter().map(|e| e.status).collect()
}

#[test]
fn two_workers_share_the_services_count_and_let_exactly_25_through() {
    let report = common::replay(
        common::filter_wasm(),
        config(&policy("fail_closed"), served()),
        &rates(40),
    );
    let got = statuses(&report);
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 25, "{got:?}");
    assert!(got[25..].iter().all(|s| *s == 429), "{got:?}");
    let workers: std::collections::BTreeSet<usize> =
        report.entries.iter().map(|e| e.worker).collect();
    assert_eq!(workers.len(), 2, "both workers served");
    // One call per request, to the service's method, none on the response.
    for entry in &report.entries {
        assert_eq!(entry.callouts.len(), 1, "{:?}", entry.callouts);
        let call = &entry.callouts[0];
        assert_eq!(
            (
                call.cluster.as_str(),
                call.kind.as_str(),
                call.method.as_str()
            ),
            (
                "ratelimit",
                "grpc",
                "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
            )
        );
    }
    let refused = report.entries[30]
        .local_reply
        .as_ref()
        .expect("a local reply");
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    // Allowed answers tell the client its budget as the service counted it.
    let remaining: Vec<String> = report.entries[..25]
        .iter()
        .map(|e| {
            let change = e
                .response_header_changes
                .iter()
                .find(|c| c.name == "ratelimit-remaining")
                .unwrap_or_else(|| panic!("{:?}", e.response_header_changes));
            change.value.as_ref().unwrap().to_string()
        })
        .collect();
    let expected: Vec<String> = (0..25).rev().map(|n: u32| n.to_string()).collect();
    assert_eq!(remaining, expected);
}

#[test]
fn the_fifth_failure_across_workers_locks_the_username_out() {
    let report = common::replay(
        common::filter_wasm(),
        config(&policy("fail_closed"), served()),
        &failed_logins(8),
    );
    let got = statuses(&report);
    assert_eq!(got, [401, 401, 401, 401, 401, 429, 429, 429], "{got:?}");
    let lockouts: Vec<usize> = report
        .entries
        .iter()
        .filter(|e| {
            e.logs
                .iter()
                .any(|l| l.contains("\"event\":\"login_lockout\""))
        })
        .map(|e| e.index)
        .collect();
    assert_eq!(lockouts, [4], "the 5th failure is the lockout");
    // Each upstream-answered failure made two calls (the check, then the count).
    assert_eq!(report.entries[0].callouts.len(), 2);
    assert_eq!(report.entries[6].callouts.len(), 1);
}

#[test]
fn a_service_that_times_out_fails_closed_with_503_or_open_with_an_incident() {
    let timeout = CalloutConfig::parse("[clusters.ratelimit]\ntimeout = true\n").unwrap();
    let closed = common::replay(
        common::filter_wasm(),
        config(&policy("fail_closed"), timeout.clone()),
        &rates(2),
    );
    assert_eq!(statuses(&closed), [503, 503]);
    let call = &closed.entries[0].callouts[0];
    assert_eq!((call.answer.as_str(), call.after_ms), ("timeout", 50));
    let open = common::replay(
        common::filter_wasm(),
        config(&policy("fail_open"), timeout),
        &rates(2),
    );
    assert_eq!(statuses(&open), [200, 200]);
    assert!(
        open.entries[0]
            .logs
            .iter()
            .any(|l| l.contains("store_failure")),
        "{:?}",
        open.entries[0].logs
    );
}

#[test]
fn a_stub_answering_garbage_is_a_service_failure() {
    let garbage =
        CalloutConfig::parse("[clusters.ratelimit]\nbody_base64 = \"/////w==\"\n").unwrap();
    let report = common::replay(
        common::filter_wasm(),
        config(&policy("fail_closed"), garbage),
        &rates(1),
    );
    assert_eq!(statuses(&report), [503]);
}

fn stakeguard(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stakeguard"))
        .current_dir(common::workspace())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_with_ratelimit_service_answers_the_policys_cluster() {
    let dir = std::env::temp_dir().join(format!("stakeguard-rls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    let traffic_path = dir.join("rates.jsonl");
    std::fs::write(&policy_path, policy("fail_closed")).unwrap();
    std::fs::write(&traffic_path, rates(30)).unwrap();
    let (ok, stdout, stderr) = stakeguard(&[
        "replay",
        "--policy",
        policy_path.to_str().unwrap(),
        traffic_path.to_str().unwrap(),
        "--ratelimit-service",
        "--format",
        "jsonl",
    ]);
    assert!(ok, "{stderr}");
    let statuses: Vec<u64> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("status").and_then(serde_json::Value::as_u64))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{stdout}"
    );
    // Without a service-counted control the option is a mistake.
    let (ok, _, stderr) = stakeguard(&[
        "replay",
        "--policy",
        "policies/examples/bank.json",
        traffic_path.to_str().unwrap(),
        "--ratelimit-service",
    ]);
    assert!(
        !ok && stderr.contains("counts no control in a rate limit service"),
        "{stderr}"
    );
}

#[test]
fn diff_with_ratelimit_service_shows_a_lower_fleet_limit_and_without_it_says_why_nothing_changed() {
    let dir = std::env::temp_dir().join(format!("stakeguard-rls-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("old.json");
    let new = dir.join("new.json");
    let traffic = dir.join("rates.jsonl");
    std::fs::write(&old, policy("fail_closed")).unwrap();
    std::fs::write(
        &new,
        policy("fail_closed").replace(r#""requests": 25"#, r#""requests": 20"#),
    )
    .unwrap();
    std::fs::write(&traffic, rates(30)).unwrap();
    let args = |service: bool| {
        let mut args = vec![
            "diff",
            "--policy",
            old.to_str().unwrap(),
            "--policy",
            new.to_str().unwrap(),
            traffic.to_str().unwrap(),
        ];
        if service {
            args.push("--ratelimit-service");
        }
        stakeguard(&args)
    };
    // Counted in the in-memory service, across both workers: requests 21 to 25 of the
    // minute now meet the lower limit.
    let (_, stdout, stderr) = args(true);
    assert!(
        stdout.contains("5 of 30 requests changed"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("nothing answers"), "{stderr}");
    // Without it both policies fail closed on every request, alike: the note says why.
    let (_, stdout, stderr) = args(false);
    assert!(stdout.contains("0 of 30 requests changed"), "{stdout}");
    assert!(
        stderr.contains("cluster `ratelimit`, which nothing answers here")
            && stderr.contains("--ratelimit-service"),
        "{stderr}"
    );
}

#[test]
fn ratelimit_config_writes_both_services_formats() {
    let dir = std::env::temp_dir().join(format!("stakeguard-rlc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy("fail_closed")).unwrap();
    let (ok, yaml, stderr) = stakeguard(&["ratelimit-config", policy_path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let doc: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(doc["domain"], "bank");
    let rates = doc["descriptors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["value"] == "rates@v1")
        .unwrap();
    assert_eq!(rates["descriptors"][0]["value"], "rate_limit");
    assert_eq!(
        rates["descriptors"][0]["descriptors"][0]["rate_limit"],
        serde_json::json!({ "unit": "minute", "requests_per_unit": 25 })
    );
    let (ok, yaml, stderr) = stakeguard(&[
        "ratelimit-config",
        policy_path.to_str().unwrap(),
        "--format",
        "limitador",
    ]);
    assert!(ok, "{stderr}");
    let limits: Vec<serde_json::Value> = serde_norway::from_str(&yaml).unwrap();
    let login = limits
        .iter()
        .find(|l| l["conditions"][1] == "descriptors[0]['control'] == 'login_username'")
        .unwrap();
    assert_eq!(
        (login["max_value"].as_u64(), login["seconds"].as_u64()),
        (Some(4), Some(3600))
    );
    assert_eq!(login["namespace"], "bank");
    assert_eq!(login["variables"][0], "descriptors[0]['key']");
}
