//! The conformance module (`tests/conformance`) writes the same transcript in a real Envoy
//! as in the harness, except for the differences listed in [`ALLOWED`], each with its
//! reason (the same list is in harness/README.md under "Differences from Envoy").
//!
//! Envoy (1 worker, V8) runs the module as an HTTP filter with the configuration the
//! harness golden test uses, a `conformance_upstream` cluster answering its callout as the
//! harness's stub does (`harness/tests/data/conformance-callouts.toml`), and an upstream
//! answering each request with its recorded response. The records of
//! `harness/tests/data/conformance.jsonl` go through it in order, and the module's lines
//! are read back from Envoy's log (`wasm log <names>: <message>`). The same records go
//! through `stakeguard_harness::Harness` (1 worker). Three transcripts are compared line by
//! line (a longest-common-subsequence diff; every differing hunk must be made of allowed
//! differences, or the test fails and prints both sides):
//!
//! - the stream callbacks: Envoy's worker against the harness's entries, in request order;
//! - the root callbacks of Envoy's worker VM against the harness's worker 0;
//! - the start (`on_vm_start`, `on_configure`) of the first VM Envoy creates, on its main
//!   thread with fresh shared state, against the harness's worker 0's start.
//!
//! Envoy also runs the root callbacks of a second main-thread VM (and delivers queue
//! notifications and ticks to the main-thread VMs); the harness has no main thread, so
//! those lines are not compared (see the README).
//!
//! No normalization is needed: the module prints value classes, not raw times or ids
//! (`nonzero=true` for the clock, `same id=...` for metric ids and queue tokens).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Value, json};
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::envoy::replay::request_for;
use stakeguard_harness::envoy::upstream::{Received, Reply, Server, recorded_reply};
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig};
use stakeguard_tests::envoy::{Envoy, EnvoyConfig, cluster};
use stakeguard_tests::{repo_root, wait};

/// The plugin configuration the harness golden test gives the module.
const CONFIGURATION: &str = r#"{"conformance":true}"#;

/// The callbacks that run on a root context; every other line comes from a stream.
const ROOT_CALLBACKS: [&str; 5] = [
    "on_vm_start:",
    "on_configure:",
    "on_queue_ready:",
    "on_tick:",
    "root:",
];

/// One allowed difference: the harness's lines and Envoy's lines of a differing hunk (as
/// regular expressions matching whole lines, `level: message`), and why they differ.
struct Allowed {
    harness: &'static [&'static str],
    envoy: &'static [&'static str],
    reason: &'static str,
}

/// Why the header counts of a request differ.
const ADDED_REQUEST_HEADERS: &str = "Envoy adds x-forwarded-proto, x-request-id and (with \
    use_remote_address) x-envoy-external-address before the filter chain, and the client \
    sends content-length with a body; the harness gives the module the recorded headers";

/// Why the body callbacks differ.
const HTTP1_END_OF_STREAM: &str = "Envoy's HTTP/1.1 codec delivers a body's bytes without \
    end_of_stream and then an empty end-of-stream call; the harness delivers the last chunk \
    with end_of_stream=true";

/// Why the worker VM's start differs: it shares state with the VMs Envoy started first.
const MAIN_THREAD_VMS: &str = "Envoy starts two VMs of the module on its main thread (the \
    base VM and the main thread's own) before the worker's, and they share metrics, shared \
    data and queues with it; the harness's single worker starts first";

/// Every difference between the two transcripts that is known and explained. Keep in step
/// with harness/README.md, "Differences from Envoy".
const ALLOWED: &[Allowed] = &[
    Allowed {
        harness: &[r"info: on_request_headers: path=/forward\?q=1 headers=6 end_of_stream=false"],
        envoy: &[r"info: on_request_headers: path=/forward\?q=1 headers=10 end_of_stream=false"],
        reason: ADDED_REQUEST_HEADERS,
    },
    Allowed {
        harness: &[r"info: on_request_headers: path=/(local|callout) headers=4 end_of_stream=true"],
        envoy: &[r"info: on_request_headers: path=/(local|callout) headers=7 end_of_stream=true"],
        reason: ADDED_REQUEST_HEADERS,
    },
    Allowed {
        harness: &[],
        envoy: &[r"info: on_request_body: size=5 end_of_stream=false"],
        reason: HTTP1_END_OF_STREAM,
    },
    Allowed {
        harness: &[r"info: on_response_body: size=5 end_of_stream=true"],
        envoy: &[r"info: on_response_body: size=5 end_of_stream=false"],
        reason: HTTP1_END_OF_STREAM,
    },
    Allowed {
        harness: &[],
        envoy: &[
            r"info: on_response_body: size=0 end_of_stream=true",
            r"info: on_response_body: get_buffer_bytes\(1, 0, 4294967295\) -> Ok = none",
        ],
        reason: HTTP1_END_OF_STREAM,
    },
    Allowed {
        harness: &[r"info: on_response_headers: headers=2 end_of_stream=false"],
        envoy: &[r"info: on_response_headers: headers=3 end_of_stream=false"],
        reason: "the upstream sends the framing header content-length, which the recorded \
            response does not hold",
    },
    Allowed {
        harness: &[r"info: on_http_call_response: headers=2 body=7 trailers=0"],
        envoy: &[r"info: on_http_call_response: headers=4 body=7 trailers=0"],
        reason: "Envoy's callout answer carries the upstream's content-length and the \
            x-envoy-upstream-service-time its router adds; the harness stub answers with the \
            configured headers only",
    },
    Allowed {
        harness: &[r"info: on_vm_start: get_metric\(second id\) -> Ok = 2"],
        envoy: &[r"info: on_vm_start: get_metric\(second id\) -> Ok = [46]"],
        reason: MAIN_THREAD_VMS,
    },
    Allowed {
        harness: &[
            r#"info: on_vm_start: set_shared_data\("conformance.created", "v", cas=12345\) -> Ok"#,
        ],
        envoy: &[
            r#"info: on_vm_start: set_shared_data\("conformance.created", "v", cas=12345\) -> CasMismatch"#,
        ],
        reason: MAIN_THREAD_VMS,
    },
    Allowed {
        harness: &[r"info: on_vm_start: dequeue_shared_queue\(empty\) -> Empty"],
        envoy: &[r"info: on_vm_start: dequeue_shared_queue\(empty\) -> Ok"],
        reason: MAIN_THREAD_VMS,
    },
    Allowed {
        harness: &[r#"info: on_queue_ready: dequeue_shared_queue -> Ok = "item""#],
        envoy: &[r"info: on_queue_ready: dequeue_shared_queue -> Empty"],
        reason: QUEUE_RACE,
    },
];

/// Why the worker's queue notification may find the queue empty in Envoy.
const QUEUE_RACE: &str = "Envoy notifies every VM of the vm_id that registered the queue, the \
    main thread's too, each on its own thread; whichever dequeues first takes the item, so \
    the worker's dequeue is Empty in about one run in ten; the harness has one worker and \
    no main thread, so it always takes it";

/// Builds the conformance module (cheap when it is up to date) and returns its path.
fn conformance_wasm() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "-q",
            "-p",
            "stakeguard-conformance",
            "--target",
            "wasm32-wasip1",
            "--release",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build for the conformance module");
    assert!(status.success(), "building the conformance module failed");
    target.join("wasm32-wasip1/release/stakeguard_conformance.wasm")
}

fn data(name: &str) -> PathBuf {
    repo_root().join("harness/tests/data").join(name)
}

/// One line the module logged in Envoy: the thread that ran it and `level: message`.
#[derive(Debug, Clone)]
struct EnvoyLine {
    thread: String,
    text: String,
}

/// The module's lines in Envoy's log. A line looks like
/// `[time][thread][info][wasm] [source/...context.cc:N] wasm log <root_id> <vm_id>: <msg>`
/// (the names before the colon vary with the context); the module's messages are single
/// lines, as it prints values with `{:?}`.
fn envoy_lines(log: &str) -> Vec<EnvoyLine> {
    let re = Regex::new(r"^\[[^\]]*\]\[(\d+)\]\[(\w+)\]\[wasm\] \[[^\]]*\] wasm log [^:]*: (.*)$")
        .unwrap();
    log.lines()
        .filter_map(|l| {
            let c = re.captures(l)?;
            // Envoy's level names, in the harness's spelling.
            let level = match &c[2] {
                "warning" => "warn",
                other => other,
            };
            Some(EnvoyLine {
                thread: c[1].to_owned(),
                text: format!("{level}: {}", &c[3]),
            })
        })
        .collect()
}

fn is_root(text: &str) -> bool {
    let message = text.split_once(": ").map_or(text, |(_, m)| m);
    ROOT_CALLBACKS.iter().any(|p| message.starts_with(p))
}

fn is_start(text: &str) -> bool {
    let message = text.split_once(": ").map_or(text, |(_, m)| m);
    message.starts_with("on_vm_start:") || message.starts_with("on_configure:")
}

/// A run of lines where the transcripts differ, with where it starts on each side.
#[derive(Debug)]
struct Hunk {
    at_harness: usize,
    at_envoy: usize,
    harness: Vec<String>,
    envoy: Vec<String>,
}

/// The differing hunks of a longest-common-subsequence alignment of `a` and `b`.
fn diff(a: &[String], b: &[String]) -> Vec<Hunk> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut hunks: Vec<Hunk> = Vec::new();
    let (mut i, mut j) = (0, 0);
    let open = |hunks: &mut Vec<Hunk>, i: usize, j: usize| {
        let fresh = hunks
            .last()
            .is_none_or(|h| h.at_harness + h.harness.len() != i || h.at_envoy + h.envoy.len() != j);
        if fresh {
            hunks.push(Hunk {
                at_harness: i,
                at_envoy: j,
                harness: Vec::new(),
                envoy: Vec::new(),
            });
        }
    };
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            open(&mut hunks, i, j);
            hunks.last_mut().unwrap().envoy.push(b[j].clone());
            j += 1;
        } else {
            open(&mut hunks, i, j);
            hunks.last_mut().unwrap().harness.push(a[i].clone());
            i += 1;
        }
    }
    hunks
}

fn full_match(pattern: &str, line: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|e| panic!("allow-list pattern {pattern:?}: {e}"))
        .is_match(line)
}

/// The reasons that explain a hunk, if it is a sequence of allowed differences.
fn explain(harness: &[String], envoy: &[String]) -> Option<Vec<&'static str>> {
    if harness.is_empty() && envoy.is_empty() {
        return Some(Vec::new());
    }
    ALLOWED.iter().find_map(|allowed| {
        let (h, e) = (allowed.harness.len(), allowed.envoy.len());
        if h + e == 0 || h > harness.len() || e > envoy.len() {
            return None;
        }
        let matches = |patterns: &[&str], lines: &[String]| {
            patterns.iter().zip(lines).all(|(p, l)| full_match(p, l))
        };
        if !(matches(allowed.harness, harness) && matches(allowed.envoy, envoy)) {
            return None;
        }
        let mut rest = explain(&harness[h..], &envoy[e..])?;
        rest.insert(0, allowed.reason);
        Some(rest)
    })
}

/// Compares one transcript pair; returns the unexplained hunks, rendered with both sides,
/// and prints the explained ones.
fn compare(name: &str, harness: &[String], envoy: &[String]) -> Vec<String> {
    assert!(!harness.is_empty(), "{name}: the harness logged nothing");
    assert!(!envoy.is_empty(), "{name}: Envoy logged nothing");
    let mut failures = Vec::new();
    for hunk in diff(harness, envoy) {
        let render = || {
            let mut out = format!(
                "{name}: harness line {}, envoy line {}\n",
                hunk.at_harness + 1,
                hunk.at_envoy + 1
            );
            for l in &hunk.harness {
                out.push_str(&format!("  harness: {l}\n"));
            }
            for l in &hunk.envoy {
                out.push_str(&format!("  envoy:   {l}\n"));
            }
            out
        };
        match explain(&hunk.harness, &hunk.envoy) {
            Some(reasons) => eprintln!("allowed: {}  because: {}", render(), reasons.join("; ")),
            None => failures.push(render()),
        }
    }
    failures
}

/// Envoy for the conformance module: one worker, V8, the module as the HTTP filter with
/// the golden test's configuration; the `upstream` cluster answers each request with its
/// record's response, `conformance_upstream` answers the module's callout as the harness's
/// stub does.
fn start_envoy(
    module: &Path,
    records: &[Record],
    callouts: &CalloutConfig,
) -> (Server, Server, Envoy) {
    // Requests are told apart by path (each record has its own).
    let replies: BTreeMap<String, Reply> = records
        .iter()
        .map(|r| (r.request.path.clone(), recorded_reply(r)))
        .collect();
    let upstream = Server::start(Box::new(move |req: &Received| {
        replies
            .get(&req.path)
            .cloned()
            .unwrap_or_else(|| Reply::status(404))
    }))
    .unwrap();
    let stub = callouts
        .clusters
        .get("conformance_upstream")
        .cloned()
        .expect("the conformance callouts name conformance_upstream");
    let stub_reply = Reply {
        status: stub.status.unwrap_or(200),
        headers: stub.headers.as_ref().map(|h| h.pairs()).unwrap_or_default(),
        body: stub.body.clone().unwrap_or_default().into_bytes(),
    };
    let callout_upstream = Server::start(Box::new(move |_: &Received| stub_reply.clone())).unwrap();
    let mut config = EnvoyConfig::new(upstream.port())
        .with_filter(module, CONFIGURATION)
        .with_concurrency(1);
    // No `x-envoy-*` headers, `server` passed through, the socket peer as the client: the
    // module sees what the client and the upstream sent, as in the harness.
    config.faithful_headers = true;
    let callout_port = callout_upstream.port();
    let envoy = Envoy::start_with(
        |paths| {
            let mut bootstrap = config.bootstrap(paths);
            let clusters = bootstrap
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
                .unwrap();
            // One request per upstream connection: the module grows the first request's
            // body after its headers (with their content-length) went upstream, so the
            // extra bytes must not be read as the start of the next request.
            for c in clusters.iter_mut() {
                c["typed_extension_protocol_options"] = json!({
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "common_http_protocol_options": { "max_requests_per_connection": 1 },
                        "explicit_http_config": { "http_protocol_options": {} },
                    }
                });
            }
            clusters.push(cluster("conformance_upstream", callout_port));
            bootstrap
        },
        1,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (upstream, callout_upstream, envoy)
}

#[test]
fn envoy_and_the_harness_write_the_same_conformance_transcript() {
    let started = Instant::now();
    let module = conformance_wasm();
    let records = traffic::read_file(&data("conformance.jsonl")).unwrap();
    let callouts = CalloutConfig::from_file(&data("conformance-callouts.toml")).unwrap();

    // The harness, as its golden test runs it.
    let harness = Harness::new(
        &std::fs::read(&module).unwrap(),
        HarnessConfig {
            plugin_configuration: CONFIGURATION.as_bytes().to_vec(),
            workers: 1,
            callouts: callouts.clone(),
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let report = harness.replay(&records).unwrap();
    let harness_streams: Vec<String> = report
        .entries
        .iter()
        .flat_map(|e| e.logs.iter().cloned())
        .collect();
    let harness_root: Vec<String> = report
        .summary
        .root_logs
        .iter()
        .map(|l| {
            l.strip_prefix("worker 0: ")
                .unwrap_or_else(|| panic!("one worker: {l}"))
                .to_owned()
        })
        .collect();
    let harness_start: Vec<String> = harness_root
        .iter()
        .filter(|l| is_start(l))
        .cloned()
        .collect();

    // Envoy, the same records in order, one connection each.
    let (_upstream, _callout_upstream, envoy) = start_envoy(&module, &records, &callouts);
    for record in &records {
        let sent = envoy.send(&request_for(record));
        let expected = report
            .entries
            .iter()
            .find(|e| e.path == record.request.path)
            .map(|e| e.status);
        assert_eq!(
            Some(u32::from(sent.status)),
            expected,
            "{}: Envoy and the harness answered differently\n{}",
            record.request.path,
            envoy.log_tail(40)
        );
    }
    // Done when every stream logged its on_done and the worker's ticks stopped (the module
    // stops them after two; a tick at 1 s, so this takes about 2 s after start).
    let done = records.len();
    let lines = wait::poll(Duration::from_secs(15), Duration::from_millis(50), || {
        let lines = envoy_lines(&envoy.log());
        let worker = lines
            .iter()
            .find(|l| !is_root(&l.text))
            .map(|l| l.thread.clone())?;
        let on_done = lines
            .iter()
            .filter(|l| l.thread == worker && l.text.ends_with(": on_done"))
            .count();
        let ticks_stopped = lines.iter().any(|l| {
            l.thread == worker
                && l.text
                    .ends_with("on_tick: set_tick_period_milliseconds(0) -> Ok")
        });
        (on_done == done && ticks_stopped).then_some(lines)
    })
    .unwrap_or_else(|| panic!("Envoy's log never completed:\n{}", envoy.log_tail(80)));

    let worker = lines
        .iter()
        .find(|l| !is_root(&l.text))
        .map(|l| l.thread.clone())
        .unwrap();
    let on = |thread: &str, root: bool| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.thread == thread && is_root(&l.text) == root)
            .map(|l| l.text.clone())
            .collect()
    };
    let envoy_streams = on(&worker, false);
    let envoy_root = on(&worker, true);
    // The first VM Envoy starts (on the main thread, before any other): its start up to
    // the next VM's `on_vm_start`.
    let main = lines[0].thread.clone();
    assert_ne!(main, worker, "the first VM runs on the main thread");
    let main_start: Vec<String> = on(&main, true)
        .into_iter()
        .filter(|l| is_start(l))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.ends_with("on_vm_start: vm_configuration_size = 0"))
        .map(|(_, l)| l)
        .collect();

    let mut failures = compare("streams", &harness_streams, &envoy_streams);
    failures.extend(compare("worker root", &harness_root, &envoy_root));
    failures.extend(compare("first VM start", &harness_start, &main_start));
    eprintln!(
        "compared {} stream, {} root and {} start lines in {:.1?}",
        harness_streams.len(),
        harness_root.len(),
        harness_start.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "differences between Envoy and the harness that are not on the allow-list \
         (fix the harness host, or list them with their reason in ALLOWED and the README):\n{}",
        failures.join("\n")
    );
}
