//! What the fuzz targets run, as plain functions over bytes: the libFuzzer binaries in
//! `fuzz/fuzz_targets/` call them under `cargo +nightly fuzz run`, and
//! `tests/corpora.rs` feeds them every committed corpus file on the stable toolchain, so
//! `make test` replays what fuzzing found in a few seconds.
//!
//! Each function panics only when the code under test does something it must never do
//! (the fuzzer reports the panic as a crash); everything a hostile input may legitimately
//! cause (a refused policy, an unreadable recording, a local reply) is an answer.
//!
//! - [`policy`]: policy reading, validation and compilation on any text;
//! - [`exchange`]: requests and responses, several per input and sharing state, against
//!   every example policy;
//! - [`traffic`]: the HAR, Envoy tap and JSON Lines readers of the harness;
//! - [`host`]: the harness host driven by a hostile module (arbitrary pointers,
//!   lengths, types, tokens and call orders, and a hostile allocator);
//! - [`service_answer`]: any bytes as the rate limit service's answer, to a request's
//!   questions and to a response's counts.

#![expect(
    clippy::panic,
    reason = "a panic is how a fuzz target reports what must never happen"
)]

mod host;

pub use host::host;

use std::cell::Cell;
use std::path::Path;

use stakeguard_policies::{
    Clock, CounterStore, HeaderChange, MemoryStore, Policy, Request, Response, Verdict,
};

/// Reads `data` as a policy document. A refused document must say why, with every
/// error's message; an accepted one must list the state keys it needs.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_json(text) {
        Ok(policy) => {
            // Every table is `slots` keys, created before traffic: bounded, whatever
            // the document says.
            let keys = policy.state_keys().count();
            assert!(keys <= 64 * 1_048_576, "{keys} state keys");
        }
        Err(errors) => assert!(!errors.to_string().is_empty(), "a refusal without a reason"),
    }
}

/// The example policies an exchange runs against, compiled once per thread.
const EXAMPLES: [&str; 3] = [
    include_str!("../../../policies/examples/bank.json"),
    include_str!("../../../policies/examples/retailer.json"),
    include_str!("../../../policies/examples/minimal.json"),
];

/// 2026-11-29T00:00:00Z, where each input's clock starts.
const START_MS: u64 = 1_795_910_400_000;

/// Most exchanges one input runs (more would only slow the fuzzer down).
const MAX_EXCHANGES: usize = 16;

/// Slots per counter table. Every input starts from fresh tables, so the examples'
/// default (4096) would spend each run creating 20,480 keys; a few slots also make
/// keys collide within a handful of requests, which is what the tables' collision rules
/// are for.
const SLOTS: &str = r#"{"state": {"slots": 4},"#;

thread_local! {
    /// Per example, two workers of one proxy: the same policy compiled twice, as each of
    /// Envoy's worker VMs compiles it.
    static HOSTS: Vec<[Policy; 2]> = EXAMPLES
        .iter()
        .map(|text| [compile(text), compile(text)])
        .collect();
}

fn compile(example: &str) -> Policy {
    let text = example.replacen('{', SLOTS, 1);
    match Policy::from_json(&text) {
        Ok(policy) => policy,
        Err(errors) => panic!("an example policy is refused: {errors}"),
    }
}

struct Now(Cell<u64>);

impl Clock for Now {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// One request (and its response) as the fuzzer writes it.
#[derive(Debug, Default)]
struct Exchange {
    method: String,
    target: String,
    authority: String,
    source: Option<String>,
    peer_uri_san: Option<String>,
    advance_ms: u64,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    response_headers: Vec<(String, String)>,
}

/// Runs requests and responses through one of the example policies. The first byte
/// picks the policy; the rest is up to [`MAX_EXCHANGES`] exchanges separated by `0xFE`,
/// each of `head 0xFF body 0xFF response-head`. A head is lines: `METHOD TARGET`, then
/// `name: value` headers, where `host` is the authority and the pseudo-headers
/// `:source`, `:peer-san` and `:advance` (milliseconds the clock moves first) set the
/// rest; a response head is a status line and headers. Exchanges alternate between two
/// workers sharing one store, as Envoy's do.
pub fn exchange(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    HOSTS.with(|hosts| {
        let Some([first, second]) = hosts.get(usize::from(selector) % hosts.len()) else {
            return;
        };
        let store = MemoryStore::new();
        for key in first.state_keys() {
            if store.set(&key, b"", None).is_err() {
                panic!("the memory store refused {key}");
            }
        }
        let now = Now(Cell::new(START_MS));
        for (n, raw) in rest.split(|&b| b == 0xFE).take(MAX_EXCHANGES).enumerate() {
            let exchange = parse(raw);
            now.0.set(now.0.get().saturating_add(exchange.advance_ms));
            let worker = if n % 2 == 0 { first } else { second };
            run(worker, &store, &now, &exchange);
        }
    });
}

fn run(policy: &Policy, store: &MemoryStore, clock: &Now, exchange: &Exchange) {
    let request = Request {
        method: &exchange.method,
        authority: &exchange.authority,
        path: &exchange.target,
        headers: &exchange.headers,
        source_address: exchange.source.as_deref(),
        peer_uri_san: exchange.peer_uri_san.as_deref(),
        reference: "fuzz",
    };
    let (mut stream, mut verdict) = policy.on_request(&request, clock, store);
    if verdict == Verdict::ReadBody {
        let limit = stream.body_limit();
        let complete = exchange.body.len() <= limit;
        let body = exchange.body.get(..limit).unwrap_or(&exchange.body);
        verdict = policy.on_request_body(&mut stream, body, complete, clock, store);
        assert!(verdict != Verdict::ReadBody, "the body was asked for twice");
    }
    match verdict {
        Verdict::Reply(reply) => {
            assert!(
                (100..=599).contains(&reply.status),
                "a local reply with status {}",
                reply.status
            );
        }
        Verdict::Continue | Verdict::Delay(_) if stream.wants_response() => {
            let response = Response {
                status: exchange.status,
                headers: &exchange.response_headers,
            };
            let read = stream.needs_response_headers().then_some(&response);
            let mut changes: Vec<HeaderChange> = Vec::new();
            policy.on_response(&mut stream, read, clock, store, &mut changes);
        }
        _ => {}
    }
}

fn parse(raw: &[u8]) -> Exchange {
    let mut sections = raw.splitn(3, |&b| b == 0xFF);
    let head = String::from_utf8_lossy(sections.next().unwrap_or_default()).into_owned();
    let body = sections.next().unwrap_or_default().to_vec();
    let response = String::from_utf8_lossy(sections.next().unwrap_or_default()).into_owned();

    let mut lines = head.split('\n');
    let (method, target) = lines
        .next()
        .unwrap_or_default()
        .split_once(' ')
        .unwrap_or(("GET", "/"));
    let mut exchange = Exchange {
        method: method.to_owned(),
        target: target.to_owned(),
        body,
        ..Exchange::default()
    };
    for (name, value) in lines.filter_map(header) {
        match name.as_str() {
            "host" if exchange.authority.is_empty() => exchange.authority = value,
            ":source" => exchange.source = Some(value),
            ":peer-san" => exchange.peer_uri_san = Some(value),
            ":advance" => exchange.advance_ms = value.parse().unwrap_or_default(),
            _ => exchange.headers.push((name, value)),
        }
    }
    let mut lines = response.split('\n');
    exchange.status = lines
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(200);
    exchange.response_headers = lines.filter_map(header).collect();
    exchange
}

/// `name: value` (or `:pseudo: value`), the name lowercased as Envoy hands it over.
fn header(line: &str) -> Option<(String, String)> {
    let (colon, line) = match line.strip_prefix(':') {
        Some(rest) => (":", rest),
        None => ("", line),
    };
    let (name, value) = line.split_once(':')?;
    Some((
        format!("{colon}{}", name.to_ascii_lowercase()),
        value.trim_start().to_owned(),
    ))
}

/// A policy counting its rate limit and login failures in a rate limit service.
const SERVICE_POLICY: &str = r#"{
  "revision": "fuzz-rls",
  "defaults": { "counters": {
      "service": { "cluster": "ratelimit", "domain": "fuzz", "timeout": "50ms" },
      "rate_limit": "service", "login": "service", "login_client_ip": "service" } },
  "tiers": { "critical": {
      "on_error": "fail_closed",
      "rate_limit": { "requests": 25, "per": "1m", "key": "client_ip" },
      "login": { "max_failures": 5, "window": "1h", "lockout": "1h" } } },
  "apis": [
    { "name": "login", "version": "v1", "owner": "team-identity", "tier": "critical",
      "routes": [ { "path": "/login", "methods": ["POST"] } ],
      "login": { "username": { "json_pointer": "/username" } } } ]
}"#;

thread_local! {
    static SERVICE: Policy = compile(SERVICE_POLICY);
}

/// Whether a header the engine hands the host is one: a lowercase token name and a
/// value without line breaks or NUL.
fn is_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && !b.is_ascii_uppercase())
        && !value.contains(['\r', '\n', '\0'])
}

/// Feeds `data` as the `RateLimitResponse` of the rate limit service to a sign-in's
/// questions and, when the request goes on, to the count of its failure. The decoder
/// must keep within its bounds and keep only headers the host can take; the engine must
/// answer with a reply a client can get (429 or 503), or let the request go on with
/// header changes that are headers.
pub fn service_answer(data: &[u8]) {
    use stakeguard_policies::rls;
    if let Some(answer) = rls::decode_response(data) {
        assert!(answer.statuses.len() <= rls::MAX_STATUSES);
        assert!(answer.headers.len() <= rls::MAX_HEADERS);
        for (name, value) in &answer.headers {
            assert!(is_header(name, value), "{name:?}: {value:?}");
        }
    }
    SERVICE.with(|policy| {
        let store = MemoryStore::new();
        let now = Now(Cell::new(START_MS));
        let headers = [("content-type".to_owned(), "application/json".to_owned())];
        let request = Request {
            method: "POST",
            authority: "bank.example.com",
            path: "/login",
            headers: &headers,
            source_address: Some("203.0.113.9:40000"),
            peer_uri_san: None,
            reference: "fuzz",
        };
        let (mut stream, verdict) = policy.on_request(&request, &now, &store);
        assert_eq!(verdict, Verdict::ReadBody);
        let body = br#"{"username":"alice","password":"x"}"#;
        let verdict = policy.on_request_body(&mut stream, body, true, &now, &store);
        assert!(matches!(verdict, Verdict::AskService(_)), "{verdict:?}");
        match policy.on_service_answer(&mut stream, Some(data), &now, &store) {
            Verdict::Reply(reply) => {
                assert!([429, 503].contains(&reply.status), "{}", reply.status);
                for (name, value) in &reply.headers {
                    assert!(is_header(name, value), "{name:?}: {value:?}");
                }
            }
            Verdict::Continue | Verdict::Delay(_) => {
                let response_headers = [(":status".to_owned(), "401".to_owned())];
                let response = Response {
                    status: 401,
                    headers: &response_headers,
                };
                let mut changes = Vec::new();
                policy.on_response(&mut stream, Some(&response), &now, &store, &mut changes);
                for change in &changes {
                    if let HeaderChange::Set(name, value) = change {
                        assert!(is_header(name, value), "{name:?}: {value:?}");
                    }
                }
                if policy.take_service_call(&mut stream).is_some() {
                    let verdict = policy.on_service_answer(&mut stream, Some(data), &now, &store);
                    assert_eq!(
                        verdict,
                        Verdict::Continue,
                        "the response's count refuses nothing"
                    );
                }
            }
            other => panic!("after the service's answer: {other:?}"),
        }
    });
}

/// Reads `data` as recorded traffic the way `stakeguard replay` does (the format told
/// from the content), and with each reader whatever the content, as a file of the wrong
/// format would be. Every refusal must name the file.
pub fn traffic(data: &[u8]) {
    use stakeguard_harness::traffic::{har, jsonl, read_str, tap};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.input");
    let named = |error: &stakeguard_harness::TrafficError| {
        assert!(error.to_string().contains("fuzz.input"), "{error}");
    };
    for result in [
        read_str(path, text),
        har::read(path, text),
        tap::read(path, text),
    ] {
        match result {
            Ok((_, errors)) => errors.iter().for_each(named),
            Err(error) => named(&error),
        }
    }
    jsonl::read(path, text).1.iter().for_each(named);
}
