//! The bypass corpus (`tests/data/bypass/*.jsonl`, written by its `generate.py`): raw
//! requests aimed at the example policies' protected routes through every spelling an
//! attacker tries (percent-encoding single, double and mixed case, overlong UTF-8, dot
//! segments plain, encoded and double-encoded, under public prefixes too, repeated
//! slashes, `;` parameters, trailing dots and slashes, case, backslashes, `%00`,
//! absolute-form targets, host tricks, duplicated headers, override headers, oversized
//! headers and cookies), each with its expected fate.
//!
//! Run through the harness and through a real Envoy with default HCM settings and with
//! the settings the README recommends. Besides each case's own fate, one invariant holds
//! for every request that reaches the upstream: a lenient backend (decoding repeatedly,
//! `\` as `/`, `;parameters` stripped, case-insensitive, honouring method and URL
//! override headers) reads it as the same route the filter judged it by, or as no
//! protected route at all. (Method and URL override headers are refused with 400 by the
//! engine itself, so the invariant holds with Envoy's defaults too.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use serde_json::Value;
use stakeguard_harness::report::{Entry, Outcome};
use stakeguard_harness::traffic::{Record, RecordRequest, RecordResponse};
use stakeguard_harness::{Harness, HarnessConfig};
use stakeguard_policies::{Policy, RouteOf};
use stakeguard_tests::client::Request;
use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::upstream::Upstream;
use stakeguard_tests::{repo_root, require_filter_wasm};

/// The example policies the corpus aims at, with the APIs anyone may call.
const TARGETS: &[(&str, &[&str])] = &[("bank", &["rates v1"]), ("retailer", &["catalogue v1"])];

/// Headers with which backends let a client choose the method or the path.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
const URL_OVERRIDES: &[&str] = &["x-original-url", "x-rewrite-url"];

/// The header that names the corpus case a request in Envoy belongs to.
const MARKER: &str = "x-corpus-case";

#[derive(Debug)]
struct Case {
    id: String,
    method: String,
    target: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: Expect,
    envoy: BTreeMap<String, Expect>,
}

#[derive(Debug, Clone, Default)]
struct Expect {
    status: Option<u16>,
    forwarded: bool,
    api: Option<String>,
    by_envoy: bool,
}

fn expect_of(value: &Value) -> Expect {
    Expect {
        status: value["status"].as_u64().map(|s| s as u16),
        forwarded: value["forwarded"].as_bool().unwrap_or(false),
        api: value["api"].as_str().map(str::to_owned),
        by_envoy: value["by"] == "envoy",
    }
}

fn corpus(policy: &str) -> Vec<Case> {
    let path = repo_root().join(format!("tests/data/bypass/{policy}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
            let pairs = |v: &Value| -> Vec<(String, String)> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_owned(),
                            p[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            };
            Case {
                id: v["id"].as_str().unwrap().to_owned(),
                method: v["method"].as_str().unwrap().to_owned(),
                target: v["target"].as_str().unwrap().to_owned(),
                host: v["host"].as_str().map(str::to_owned),
                headers: pairs(&v["headers"]),
                body: v["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
                expect: expect_of(&v["expect"]),
                envoy: v["envoy"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, e)| (k.clone(), expect_of(e)))
                    .collect(),
            }
        })
        .collect()
}

fn policy_text(name: &str) -> String {
    let path = repo_root().join(format!("policies/examples/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How a backend that reads a request loosely understands it: the path (or the URL an
/// override header names) decoded until nothing changes, `\` as `/`, `;parameters`
/// dropped, dot segments resolved (clamped at the root), lowercased; the method an
/// override header names.
fn lenient_reading(method: &str, target: &str, headers: &[(String, String)]) -> (String, String) {
    let header = |names: &[&str]| {
        headers
            .iter()
            .find(|(n, _)| names.iter().any(|m| n.eq_ignore_ascii_case(m)))
            .map(|(_, v)| v.clone())
    };
    let method = header(METHOD_OVERRIDES).unwrap_or_else(|| method.to_owned());
    let target = header(URL_OVERRIDES).unwrap_or_else(|| target.to_owned());
    // Absolute form: the path starts after the authority.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
        None => target,
    };
    let raw = target.split(['?', '#']).next().unwrap_or_default();
    let mut bytes = raw.as_bytes().to_vec();
    for _ in 0..8 {
        let decoded = percent_decode(&bytes);
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    let text: String = bytes
        .iter()
        .map(|&b| match b {
            b'\\' => "/".to_owned(),
            // Kept encoded so that routing sees them as text, not as a query or escape.
            b'?' | b'#' | b'%' | 0..=0x20 | 0x7f.. => format!("%{b:02X}"),
            _ => char::from(b).to_ascii_lowercase().to_string(),
        })
        .collect();
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            kept => segments.push(kept),
        }
    }
    let trailing = if text.ends_with('/') && !segments.is_empty() {
        "/"
    } else {
        ""
    };
    (
        method.to_ascii_uppercase(),
        format!("/{}{trailing}", segments.join("/")),
    )
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A route outcome with the API's labels, comparable across readings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    Api(String),
    MethodNotAllowed(String),
    Unknown,
    Ambiguous,
}

fn reading(policy: &Policy, host: &str, path: &str, method: &str) -> Reading {
    let label = |id| {
        policy
            .api(id)
            .map(|a| format!("{} {}", a.name, a.version))
            .unwrap_or_default()
    };
    match policy.route_of(host, path, method) {
        RouteOf::Api { api, .. } => Reading::Api(label(api)),
        RouteOf::MethodNotAllowed(api) => Reading::MethodNotAllowed(label(api)),
        RouteOf::Unknown => Reading::Unknown,
        _ => Reading::Ambiguous,
    }
}

/// `None` when a forwarded request is safe, else what went wrong: the lenient reading
/// is a protected route other than the one the filter judged the request by.
fn bypass(
    policy: &Policy,
    public: &[&str],
    host: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> Option<String> {
    let strict = reading(policy, host, path, method);
    let (lenient_method, lenient_path) = lenient_reading(method, path, headers);
    let lenient = reading(policy, host, &lenient_path, &lenient_method);
    let harmless = match &lenient {
        Reading::Unknown | Reading::Ambiguous => true,
        Reading::Api(api) => public.contains(&api.as_str()),
        Reading::MethodNotAllowed(_) => false,
    };
    (!harmless && lenient != strict).then(|| {
        format!(
            "the filter judged {method} {path} as {strict:?}; a lenient backend reads \
             {lenient_method} {lenient_path} as {lenient:?}"
        )
    })
}

fn record(n: usize, case: &Case) -> Record {
    let mut headers = case.headers.clone();
    // The harness takes `:authority` from the record; a Host header after it would be a
    // second authority, which is what the duplicated-host cases send.
    if let Some(extra) = headers.iter().position(|(n, _)| n == "host") {
        headers.remove(extra);
    }
    Record {
        time_ns: Some(1_767_225_600_000_000_000 + n as i64 * 1_000_000_000),
        connection: Some(format!("c{n}")),
        // One client per case, so that no rate limit or lockout of one case decides another.
        source: Some(format!(
            "10.{}.{}.{}:40000",
            n / 65536,
            (n / 256) % 256,
            n % 256
        )),
        request: RecordRequest {
            method: case.method.clone(),
            authority: case.host.clone().unwrap_or_default(),
            path: case.target.clone(),
            scheme: "https".to_owned(),
            headers,
            body: case.body.clone(),
            trailers: Vec::new(),
        },
        response: Some(RecordResponse {
            status: 200,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: b"{}".to_vec(),
            trailers: Vec::new(),
        }),
        origin: case.id.clone(),
        ..Record::default()
    }
}

fn decision_api(entry: &Entry) -> Option<String> {
    let fields = stakeguard_harness::report::decision_fields(entry.decision.as_ref()?);
    Some(format!("{} {}", fields.get("api")?, fields.get("version")?))
}

#[test]
fn every_corpus_request_meets_its_routes_policy_or_is_refused_in_the_harness() {
    let module = std::fs::read(require_filter_wasm()).unwrap();
    let mut total = 0;
    let mut failures = Vec::new();
    for (name, public) in TARGETS {
        let text = policy_text(name);
        let policy = Policy::from_json(&text).unwrap();
        let cases = corpus(name);
        total += cases.len();
        let records: Vec<Record> = cases
            .iter()
            .enumerate()
            .map(|(n, c)| record(n, c))
            .collect();
        let harness = Harness::new(
            &module,
            HarnessConfig {
                plugin_configuration: text.into_bytes(),
                workers: 1,
                ..HarnessConfig::default()
            },
        )
        .unwrap();
        let report = harness.replay(&records).unwrap();
        assert_eq!(report.entries.len(), cases.len(), "{name}");
        for (case, entry) in cases.iter().zip(&report.entries) {
            let forwarded = entry.outcome == Outcome::Forwarded;
            let mut wrong = Vec::new();
            if forwarded != case.expect.forwarded {
                wrong.push(format!("outcome {:?}", entry.outcome));
            }
            if let Some(status) = case.expect.status
                && entry.status != u32::from(status)
            {
                wrong.push(format!("status {} (expected {status})", entry.status));
            }
            if let Some(api) = &case.expect.api {
                let seen = decision_api(entry).or_else(|| {
                    // A request the filter lets through silently publishes no decision:
                    // the route is the engine's reading of it.
                    forwarded
                        .then(|| {
                            reading(
                                &policy,
                                case.host.as_deref().unwrap_or(""),
                                &case.target,
                                &case.method,
                            )
                        })
                        .and_then(|r| match r {
                            Reading::Api(api) => Some(api),
                            _ => None,
                        })
                });
                if seen.as_deref() != Some(api) {
                    wrong.push(format!("api {seen:?} (expected {api})"));
                }
            }
            if forwarded {
                let host = case.host.as_deref().unwrap_or("");
                let broken = bypass(
                    &policy,
                    public,
                    host,
                    &case.method,
                    &case.target,
                    &case.headers,
                );
                if let Some(why) = broken {
                    wrong.push(format!("bypass: {why}"));
                }
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{name} {} ({} {}): {}; decision {:?}",
                    case.id,
                    case.method,
                    case.target.chars().take(120).collect::<String>(),
                    wrong.join(", "),
                    entry.decision_label()
                ));
            }
        }
    }
    assert!(total >= 200, "the corpus holds {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} corpus requests went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The HTTP connection manager settings the README recommends in front of stakeguard.
fn recommended(hcm: &mut Value) {
    let map = hcm.as_object_mut().unwrap();
    map.insert("normalize_path".into(), true.into());
    map.insert("merge_slashes".into(), true.into());
    map.insert(
        "path_with_escaped_slashes_action".into(),
        "REJECT_REQUEST".into(),
    );
    map.insert(
        "common_http_protocol_options".into(),
        serde_json::json!({ "headers_with_underscores_action": "REJECT_REQUEST" }),
    );
    map.insert("strip_trailing_host_dot".into(), true.into());
    map.insert("strip_any_host_port".into(), true.into());
    let remove: Vec<Value> = METHOD_OVERRIDES
        .iter()
        .chain(URL_OVERRIDES)
        .map(|&h| h.into())
        .collect();
    map["route_config"]
        .as_object_mut()
        .unwrap()
        .insert("request_headers_to_remove".into(), remove.into());
}

fn run_in_envoy(profile: &str) {
    let module = require_filter_wasm();
    let mut total = 0;
    let mut failures = Vec::new();
    for (name, public) in TARGETS {
        let text = policy_text(name);
        let policy = Policy::from_json(&text).unwrap();
        let upstream = Upstream::start().unwrap();
        let config = EnvoyConfig::new(upstream.port()).with_filter(&module, &text);
        let envoy =
            Envoy::start_with(
                |paths| {
                    let mut bootstrap = config.bootstrap(paths);
                    if profile == "recommended" {
                        recommended(
                            &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
                                ["filters"][0]["typed_config"],
                        );
                    }
                    bootstrap
                },
                2,
                &[],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        for (n, case) in corpus(name).iter().enumerate() {
            total += 1;
            let expect = case.envoy.get(profile).unwrap_or(&case.expect);
            let mut request = Request::new(&case.method, &case.target);
            request.host = case.host.clone().unwrap_or_default();
            request.headers = case.headers.clone();
            // Envoy trusts no forwarding header here: the client is the socket peer, and
            // the retailer's one trusted hop is this address.
            request.headers.push((
                "x-forwarded-for".into(),
                format!("10.1.{}.{}", n / 256, n % 256),
            ));
            request.body = case.body.clone();
            // Marks the case's own request: the filter's alerts reach the same upstream
            // (the `alertmanager` cluster), at times of their own.
            let marker = format!("{name}-{n}");
            request.headers.push((MARKER.into(), marker.clone()));
            let response = match request.send(envoy.port()) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{name} {}: {e}", case.id));
                    continue;
                }
            };
            let received = upstream.requests();
            let got = received
                .iter()
                .find(|r| r.header(MARKER) == Some(marker.as_str()));
            let forwarded = got.is_some();
            let mut wrong = Vec::new();
            if forwarded != expect.forwarded {
                wrong.push(format!("forwarded {forwarded}"));
            }
            if !forwarded
                && let Some(status) = expect.status
                && response.status != status
            {
                wrong.push(format!("status {} (expected {status})", response.status));
            }
            let ambiguous = response
                .json()
                .ok()
                .is_some_and(|v| v["error"] == "ambiguous_path");
            if !forwarded && expect.by_envoy == ambiguous && response.status == 400 {
                wrong.push(format!(
                    "refused by {} (expected {})",
                    if ambiguous { "stakeguard" } else { "envoy" },
                    if expect.by_envoy {
                        "envoy"
                    } else {
                        "stakeguard"
                    }
                ));
            }
            if let Some(got) = got {
                let host = got.header("host").unwrap_or_default();
                let broken = bypass(&policy, public, host, &got.method, &got.path, &got.headers);
                if let Some(why) = broken {
                    wrong.push(format!("bypass: {why}"));
                }
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{name} {} ({} {}): {}: {}",
                    case.id,
                    case.method,
                    case.target.chars().take(120).collect::<String>(),
                    wrong.join(", "),
                    response.text().chars().take(100).collect::<String>()
                ));
            }
        }
    }
    assert!(total >= 200, "the corpus holds {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} corpus requests went wrong in Envoy ({profile} HCM settings):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_request_meets_its_routes_policy_or_is_refused_in_envoy_with_default_settings() {
    run_in_envoy("default");
}

#[test]
fn every_corpus_request_meets_its_routes_policy_or_is_refused_in_envoy_with_recommended_settings() {
    run_in_envoy("recommended");
}

#[test]
fn the_lenient_reading_decodes_repeatedly_and_folds_what_backends_fold() {
    let none: &[(String, String)] = &[];
    let cases = [
        ("/api/v1/rates/%252e%252e/%252e%252e/v2/x", "/api/v2/x"),
        ("/A\\B/..;/C;x=1/d", "/a/c/d"),
        ("/a/%2e%2e/%2e%2e/../b/", "/b/"),
        ("http://h/a/b?q=/../..", "/a/b"),
        ("/a%3Fb", "/a%3Fb"),
        ("/caf%C3%A9", "/caf%C3%A9"),
    ];
    for (target, path) in cases {
        assert_eq!(
            lenient_reading("get", target, none),
            ("GET".to_owned(), path.to_owned()),
            "{target}"
        );
    }
    let overrides = [
        ("x-original-url".to_owned(), "/admin".to_owned()),
        ("X-HTTP-Method-Override".to_owned(), "delete".to_owned()),
    ];
    assert_eq!(
        lenient_reading("GET", "/public", &overrides),
        ("DELETE".to_owned(), "/admin".to_owned())
    );
}
