//! `stakeguard report` on the bundled recordings through the built stakeguard.wasm: the
//! report's figures must be the replay's own (its summary's decision counters, its
//! entries' decisions), the same counters read as Envoy's Prometheus stats must give the
//! same figures, and the CLI must name the place of bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::posture::{self, Evidence, PostureReport, counters};
use stakeguard_harness::report::{Report, decision_fields};
use stakeguard_harness::traffic::time::parse_rfc3339;
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig};

const AS_OF: &str = "2026-11-29T12:00:00Z";

fn root() -> PathBuf {
    common::workspace()
}

fn replay(traffic: &str, policy: &str) -> (String, Vec<Record>, Report) {
    let text = std::fs::read_to_string(root().join("policies/examples").join(policy)).unwrap();
    let records = traffic::read_paths(&[root().join("envoy-examples/traffic").join(traffic)])
        .expect("traffic");
    let config = stakeguard_harness::posture::evidence::for_report(HarnessConfig {
        plugin_configuration: text.clone().into_bytes(),
        callouts: CalloutConfig::from_file(&root().join("envoy-examples/traffic/callouts.toml"))
            .unwrap(),
        ..HarnessConfig::default()
    });
    let report = Harness::new(common::filter_wasm(), config)
        .unwrap()
        .replay(&records)
        .unwrap();
    (text, records, report)
}

fn posture_of(text: &str, records: &[Record], report: &Report) -> PostureReport {
    let files = vec!["traffic".to_owned()];
    posture::build(
        text,
        parse_rfc3339(AS_OF).unwrap(),
        Evidence::Replay {
            records,
            report,
            files: &files,
        },
    )
    .unwrap()
}

/// Requests per published decision, `api version control outcome`, from the replay's own
/// entries (`-` for requests no API claims).
fn decisions(report: &Report) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in &report.entries {
        if let Some(d) = &e.decision {
            let f = decision_fields(d);
            let key = format!(
                "{} {} {} {}",
                f["api"],
                f.get("version").map_or("-", |v| v),
                f["control"],
                f["outcome"]
            );
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

#[test]
fn the_bank_report_counts_what_the_replay_decided() {
    let (text, records, replay) = replay("bank.jsonl", "bank.json");
    let report = posture_of(&text, &records, &replay);
    let totals = report.totals.as_ref().unwrap();
    assert_eq!(totals.requests, replay.entries.len() as u64);
    assert_eq!(replay.summary.requests, replay.entries.len());
    // Every published decision is in its API's (or the shadow APIs') control counts.
    for (key, n) in decisions(&replay) {
        let words: Vec<&str> = key.split(' ').collect();
        let (api, version, control, outcome) = (words[0], words[1], words[2], words[3]);
        let activity = if api == "-" {
            report.shadow.activity.as_ref().unwrap()
        } else {
            report
                .apis
                .iter()
                .find(|a| a.name == api && a.version == version)
                .unwrap_or_else(|| panic!("{api} {version} not in the report"))
                .activity
                .as_ref()
                .unwrap()
        };
        assert_eq!(activity.controls[control][outcome], n, "{key}");
    }
    // Every request is in exactly one API's timeline, and each timeline adds up to its
    // API's request count (the counters and the entries tell the same story).
    let timelines: u64 = report
        .apis
        .iter()
        .filter_map(|a| a.activity.as_ref())
        .chain(report.shadow.activity.as_ref())
        .map(|a| {
            let sum: u64 = a.timeline.values().flatten().sum();
            assert_eq!(sum, a.requests, "{a:?}");
            sum
        })
        .sum();
    assert_eq!(timelines, totals.requests);
    // Incidents by severity are the summary's incident counters.
    let mut severities: BTreeMap<String, u64> = BTreeMap::new();
    for (label, n) in &replay.summary.incidents {
        let severity = label.rsplit("severity=").next().unwrap();
        *severities.entry(severity.to_owned()).or_default() += n;
    }
    assert_eq!(totals.incidents, severities);
}

#[test]
fn the_bank_report_lists_shadow_endpoints_and_deprecated_callers() {
    let (text, records, replay) = replay("bank.jsonl", "bank.json");
    let report = posture_of(&text, &records, &replay);
    let shadow_paths: Vec<String> = replay
        .entries
        .iter()
        .filter(|e| {
            e.decision
                .as_ref()
                .is_some_and(|d| decision_fields(d)["control"] == "unknown_route")
        })
        .map(|e| e.path.split('?').next().unwrap().to_owned())
        .collect();
    assert!(!shadow_paths.is_empty());
    let listed: u64 = report.shadow.endpoints.iter().map(|e| e.requests).sum();
    assert_eq!(listed, shadow_paths.len() as u64);
    for path in &shadow_paths {
        assert!(
            report.shadow.endpoints.iter().any(|e| &e.path == path),
            "{path}"
        );
    }
    // accounts v1 is deprecated: its callers are the keys of its lifecycle events, and
    // they add up to its requests.
    let v1 = report
        .apis
        .iter()
        .find(|a| a.name == "accounts" && a.version == "v1")
        .unwrap();
    assert_eq!(v1.lifecycle.status, "deprecated");
    let sunset = parse_rfc3339(v1.lifecycle.sunset.as_deref().unwrap()).unwrap();
    let days = (sunset - parse_rfc3339(AS_OF).unwrap()).div_euclid(86_400_000_000_000);
    assert_eq!(v1.lifecycle.days_to_sunset, Some(days));
    let activity = v1.activity.as_ref().unwrap();
    let callers: u64 = activity.deprecated_callers.iter().map(|c| c.requests).sum();
    assert_eq!(callers, activity.requests);
    assert!(
        activity
            .deprecated_callers
            .iter()
            .all(|c| !c.clients.is_empty())
    );
}

#[test]
fn monitor_mode_would_blocks_are_counted_per_control_and_shown_first() {
    let (text, records, replay) = replay("retailer.har", "retailer.json");
    let report = posture_of(&text, &records, &replay);
    let expected: u64 = decisions(&replay)
        .iter()
        .filter(|(k, _)| k.ends_with(" would_block"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        expected > 0,
        "the retailer recording has monitor-mode catches"
    );
    assert_eq!(report.totals.as_ref().unwrap().would_block, expected);
    let owners: u64 = report.owners.iter().map(|o| o.would_block).sum();
    assert_eq!(owners, expected);
    let page = posture::html::render(&report);
    let section = page.find("id=\"would-block\"").unwrap();
    assert!(section < page.find("id=\"inventory\"").unwrap());
    for api in &report.apis {
        for (control, outcomes) in &api.activity.as_ref().unwrap().controls {
            if let Some(n) = outcomes.get("would_block") {
                let row = format!(
                    "<tr data-api=\"{} {}\" data-control=\"{control}\"><td>{} {}</td><td>{control}</td>\
                     <td class=\"n wbn\" data-count=\"would_block\">{n}</td>",
                    api.name, api.version, api.name, api.version
                );
                assert!(page.contains(&row), "{row}");
            }
        }
    }
}

/// The replay's decision and incident counters as Envoy prints them with the example
/// `stats_tags`.
fn as_prometheus(report: &Report) -> String {
    let mut out = String::from("# TYPE stakeguard_decision counter\n");
    for (name, m) in &report.summary.metrics {
        let parts: Vec<&str> = name.split('.').collect();
        let line = match parts.as_slice() {
            [
                "stakeguard",
                kind @ ("decision" | "incident"),
                "api",
                a,
                "version",
                v,
                "control",
                c,
                last,
                value,
            ] => {
                format!(
                    "stakeguard_{kind}{{api=\"{a}\",version=\"{v}\",control=\"{c}\",{last}=\"{value}\"}} {}\n",
                    m.value
                )
            }
            ["stakeguard", "alerts", fate] => format!("stakeguard_alerts_{fate}{{}} {}\n", m.value),
            ["stakeguard", "policy", "revision", r] => {
                format!("stakeguard_policy{{revision=\"{r}\"}} {}\n", m.value)
            }
            _ => continue,
        };
        out.push_str(&line);
    }
    out.push_str("envoy_server_live{} 1\n");
    out
}

#[test]
fn envoys_stats_give_the_figures_a_replay_gives() {
    let (text, records, replay) = replay("bank.jsonl", "bank.json");
    let from_replay = posture_of(&text, &records, &replay);
    let stats = as_prometheus(&replay);
    let counters = counters::from_prometheus("stats", &stats).unwrap();
    let from_stats = posture::build(
        &text,
        parse_rfc3339(AS_OF).unwrap(),
        Evidence::Prometheus {
            counters: &counters,
            from: "stats",
        },
    )
    .unwrap();
    assert_eq!(from_stats.totals, from_replay.totals);
    assert!(from_stats.notes.is_empty(), "{:?}", from_stats.notes);
    for (a, b) in from_stats.apis.iter().zip(&from_replay.apis) {
        let (a, b) = (a.activity.as_ref().unwrap(), b.activity.as_ref().unwrap());
        assert_eq!(
            (a.requests, &a.controls, &a.incidents),
            (b.requests, &b.controls, &b.incidents)
        );
        assert!(a.timeline.is_empty() && a.deprecated_callers.is_empty());
    }
    assert_eq!(from_stats.owners, from_replay.owners);
}

fn stakeguard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stakeguard"));
    cmd.current_dir(root());
    cmd
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stakeguard-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_cli_writes_the_page_and_its_json_twin_with_the_same_figures() {
    common::filter_wasm();
    let (html, json) = (temp("bank.html"), temp("bank.json"));
    for (format, out) in [("html", &html), ("json", &json)] {
        let run = stakeguard()
            .args(["report", "--policy", "policies/examples/bank.json"])
            .args(["--callouts", "envoy-examples/traffic/callouts.toml"])
            .args([
                "envoy-examples/traffic/bank.jsonl",
                "--as-of",
                AS_OF,
                "--format",
                format,
                "-o",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    let (_, _, replay) = replay("bank.jsonl", "bank.json");
    assert_eq!(json["totals"]["requests"], replay.entries.len());
    assert!(page.contains(&format!(
        "data-total=\"requests\">{}</b>",
        replay.entries.len()
    )));
    for api in json["apis"].as_array().unwrap() {
        let row = format!(
            "<tr data-api=\"{} {}\">",
            api["name"].as_str().unwrap(),
            api["version"].as_str().unwrap()
        );
        let at = page.find(&row).unwrap_or_else(|| panic!("{row}"));
        let cell = format!(
            "data-count=\"requests\">{}</td>",
            api["activity"]["requests"]
        );
        assert!(page[at..].contains(&cell), "{row} {cell}");
    }
}

#[test]
fn metrics_come_from_an_http_admin_endpoint_too() {
    let (_, _, replay) = replay("bank.jsonl", "bank.json");
    let stats = as_prometheus(&replay);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = conn.read(&mut request).unwrap();
        let head = String::from_utf8_lossy(&request[..n]).into_owned();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{stats}",
            stats.len()
        );
        head
    });
    let run = stakeguard()
        .args([
            "report",
            "--policy",
            "policies/examples/bank.json",
            "--format",
            "json",
        ])
        .args([
            "--metrics",
            &format!("http://127.0.0.1:{port}/stats/prometheus"),
        ])
        .output()
        .unwrap();
    let head = server.join().unwrap();
    assert!(head.starts_with("GET /stats/prometheus HTTP/1.1"), "{head}");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["source"]["kind"], "prometheus");
    assert_eq!(json["totals"]["requests"], replay.entries.len());
}

#[test]
fn bad_input_is_named_where_it_is() {
    let stats = temp("untagged.txt");
    std::fs::write(
        &stats,
        "# envoy\nstakeguard_decision_api_login_version_v2_control_none_outcome_allowed{} 3\n",
    )
    .unwrap();
    let run = stakeguard()
        .args([
            "report",
            "--policy",
            "policies/examples/bank.json",
            "--metrics",
        ])
        .arg(&stats)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:2: ", stats.display())), "{err}");
    assert!(err.contains("stats_tags"), "{err}");

    let run = stakeguard()
        .args(["report", "--policy", "no-such-policy.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no such file `no-such-policy.json`"), "{err}");

    let run = stakeguard()
        .args([
            "report",
            "--policy",
            r#"{"revision":"1","tiers":{},"apis":[{"name":"a"}]}"#,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("the policy is refused") && err.contains("apis[0]"),
        "{err}"
    );

    let run = stakeguard()
        .args([
            "report",
            "--policy",
            "policies/examples/bank.json",
            "--as-of",
            "tomorrow",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("--as-of: `tomorrow` is not an RFC 3339 timestamp"),
        "{err}"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = stakeguard()
        .args(["report", "--policy", "policies/examples/bank.json"])
        .args(["--metrics", &format!("http://127.0.0.1:{closed}")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "--metrics http://127.0.0.1:{closed}: cannot connect"
        )),
        "{err}"
    );
}
