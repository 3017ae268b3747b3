//! Controls counted in a rate limit service (`counters`): what the engine asks, how it
//! acts on the answer, what it does when the service fails, and the settings it refuses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::{Host, START, req};
use stakeguard_policies::rls::{self, Code};
use stakeguard_policies::{
    EventKind, HeaderChange, Outcome, Policy, Response, ServiceCall, Verdict,
};

fn policy(counters: &str, extra: &str) -> String {
    format!(
        r#"{{
        "revision": "rls-1",
        "tiers": {{ "critical": {{
            "on_error": "fail_closed",
            "rate_limit": {{ "requests": 25, "per": "1m", "key": "client_ip" }},
            "login": {{ "max_failures": 5, "window": "1h", "lockout": "1h" }},
            "counters": {counters}
            {extra}
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

const SERVICE: &str = r#"{ "service": { "cluster": "ratelimit", "domain": "bank", "timeout": "50ms" },
    "rate_limit": "service", "login": "service", "login_client_ip": "service" }"#;

/// A `RateLimitResponse`: the overall code and, per descriptor, its code and seconds
/// until the window resets (under 128: one varint byte).
fn answer(statuses: &[(u64, u64)]) -> Vec<u8> {
    let over = statuses.iter().any(|(code, _)| *code == 2);
    let mut out = vec![0x08, if over { 2 } else { 1 }];
    for (code, reset) in statuses {
        let status = [0x08, *code as u8, 0x22, 2, 0x08, *reset as u8];
        out.extend_from_slice(&[0x12, status.len() as u8]);
        out.extend_from_slice(&status);
    }
    out
}

fn asked(verdict: &Verdict) -> &ServiceCall {
    match verdict {
        Verdict::AskService(call) => call,
        other => panic!("expected a call to the rate limit service, got {other:?}"),
    }
}

/// The descriptors of a call as (entries, limit, hits), decoded by hand.
fn descriptors(message: &[u8]) -> Vec<String> {
    // Entries are printable; a crude but independent look: the text between fields.
    let mut out = Vec::new();
    for part in message.split(|b| *b == 0x12).skip(1) {
        let text: String = part
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() {
                    *b as char
                } else {
                    ' '
                }
            })
            .collect();
        out.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    out
}

#[test]
fn a_service_counted_rate_limit_asks_once_and_refuses_on_over_limit() {
    let host = Host::new(&policy(SERVICE, ""));
    let exchange = host.send(&req("GET", "/rates").from("10.0.0.7:1234"));
    let call = asked(&exchange.verdict);
    let service = host.policy.counter_service(call).unwrap();
    assert_eq!(service.cluster, "ratelimit");
    assert_eq!(service.timeout_ms, 50);
    let text = descriptors(&call.message).join(" | ");
    assert!(
        text.contains("rates@v1") && text.contains("rate_limit"),
        "{text}"
    );
    // No shared data was touched for the count.
    let calls_before = host.store.calls();
    let mut stream = exchange.stream;
    let verdict =
        host.policy
            .on_service_answer(&mut stream, Some(&answer(&[(2, 42)])), &host, &*host.store);
    let Verdict::Reply(reply) = verdict else {
        panic!("expected 429, got {verdict:?}");
    };
    assert_eq!(reply.status, 429);
    let header = |n: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("retry-after"), Some("42"));
    assert_eq!(header("ratelimit-limit"), Some("25"));
    assert_eq!(host.store.calls(), calls_before);
    assert_eq!(
        stream
            .take_events()
            .iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        [EventKind::RateLimited]
    );
}

/// `answer` with, in the one status, the limit the service applied (per minute) and the
/// hits left, and a header the service asks to add.
fn answer_with_budget(code: u64, limit: u8, remaining: u8, reset: u8) -> Vec<u8> {
    let status = [
        0x08, code as u8, 0x12, 4, 0x08, limit, 0x10, 2, 0x18, remaining, 0x22, 2, 0x08, reset,
    ];
    let header = [
        0x1a, 10, 0x0a, 5, b'X', b'-', b'R', b'L', b'S', 0x12, 1, b'1',
    ];
    let mut out = vec![
        0x08,
        if code == 2 { 2 } else { 1 },
        0x12,
        status.len() as u8,
    ];
    out.extend_from_slice(&status);
    out.extend_from_slice(&header);
    out
}

#[test]
fn an_ok_answer_puts_the_budget_and_the_services_headers_on_the_response() {
    let host = Host::new(&policy(SERVICE, ""));
    let mut exchange = host.send(&req("GET", "/rates"));
    asked(&exchange.verdict);
    let stream = &mut exchange.stream;
    let verdict = host.policy.on_service_answer(
        stream,
        Some(&answer_with_budget(1, 30, 7, 12)),
        &host,
        &*host.store,
    );
    assert_eq!(verdict, Verdict::Continue);
    assert!(stream.wants_response());
    assert!(
        !stream.needs_response_headers(),
        "setting headers reads none"
    );
    let mut changes = Vec::new();
    host.policy
        .on_response(stream, None, &host, &*host.store, &mut changes);
    let set: Vec<(String, String)> = changes
        .iter()
        .filter_map(|c| match c {
            HeaderChange::Set(n, v) => Some((n.to_string(), v.to_string())),
            _ => None,
        })
        .collect();
    let expected = [
        ("ratelimit-limit", "30"),
        ("ratelimit-remaining", "7"),
        ("ratelimit-reset", "12"),
        ("x-rls", "1"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()));
    assert_eq!(set, expected);

    // Over the limit, the service's header goes on the 429 instead.
    let mut exchange = host.send(&req("GET", "/rates"));
    let verdict = host.policy.on_service_answer(
        &mut exchange.stream,
        Some(&answer_with_budget(2, 30, 0, 12)),
        &host,
        &*host.store,
    );
    let Verdict::Reply(reply) = verdict else {
        panic!("expected 429, got {verdict:?}");
    };
    assert!(
        reply
            .headers
            .contains(&("x-rls".to_owned(), "1".to_owned())),
        "{:?}",
        reply.headers
    );
    assert!(
        reply
            .headers
            .contains(&("retry-after".to_owned(), "12".to_owned()))
    );
}

#[test]
fn a_monitored_rate_limit_adds_no_budget_headers() {
    let monitored = policy(SERVICE, "").replace(
        r#""key": "client_ip" }"#,
        r#""key": "client_ip", "mode": "monitor" }"#,
    );
    assert!(monitored.contains("monitor"));
    let host = Host::new(&monitored);
    let mut exchange = host.send(&req("GET", "/rates"));
    asked(&exchange.verdict);
    let stream = &mut exchange.stream;
    host.policy
        .on_service_answer(stream, Some(&answer(&[(1, 10)])), &host, &*host.store);
    let mut changes = Vec::new();
    host.policy
        .on_response(stream, None, &host, &*host.store, &mut changes);
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn an_ok_answer_lets_the_request_through() {
    let host = Host::new(&policy(SERVICE, ""));
    let mut exchange = host.send(&req("GET", "/rates"));
    asked(&exchange.verdict);
    let verdict = host.policy.on_service_answer(
        &mut exchange.stream,
        Some(&answer(&[(1, 10)])),
        &host,
        &*host.store,
    );
    assert_eq!(verdict, Verdict::Continue);
}

#[test]
fn local_counting_makes_no_call() {
    let host = Host::new(&policy(r#"{ "rate_limit": "local" }"#, ""));
    let exchange = host.send(&req("GET", "/rates"));
    assert_eq!(exchange.verdict, Verdict::Continue);
}

#[test]
fn a_failed_call_answers_503_when_the_tier_fails_closed() {
    let host = Host::new(&policy(SERVICE, ""));
    for answer in [None, Some(&b"\x08"[..]), Some(&b""[..])] {
        let mut exchange = host.send(&req("GET", "/rates"));
        let verdict =
            host.policy
                .on_service_answer(&mut exchange.stream, answer, &host, &*host.store);
        assert!(
            matches!(&verdict, Verdict::Reply(r) if r.status == 503),
            "{answer:?}: {verdict:?}"
        );
        assert_eq!(exchange.stream.take_service_errors(), 1);
    }
}

#[test]
fn a_failed_call_lets_the_request_through_with_an_incident_when_failing_open() {
    let counters = r#"{ "service": { "cluster": "ratelimit", "failure_mode": "fail_open" },
        "rate_limit": "service" }"#;
    let host = Host::new(&policy(counters, ""));
    let mut exchange = host.send(&req("GET", "/rates"));
    let verdict = host
        .policy
        .on_service_answer(&mut exchange.stream, None, &host, &*host.store);
    assert_eq!(verdict, Verdict::Continue);
    let events = exchange.stream.take_events();
    assert!(
        events.iter().any(|e| e.kind == EventKind::StoreFailure
            && e.outcome == Outcome::FailedOpen
            && e.severity.is_some()),
        "{events:?}"
    );
}

#[test]
fn a_login_asks_with_the_username_after_the_body_and_counts_failures_on_the_response() {
    let host = Host::new(&policy(SERVICE, ""));
    let mut exchange = host.send(&req("POST", "/login").json(r#"{"username":"alice"}"#));
    // One call for the rate limit, the client address and the username together.
    let text = descriptors(&asked(&exchange.verdict).message).join(" | ");
    assert!(!text.contains("alice"), "raw usernames never leave: {text}");
    for control in ["rate_limit", "login_client_ip", "login_username"] {
        assert!(text.contains(control), "{control} in {text}");
    }
    let stream = &mut exchange.stream;
    let ok = answer(&[(1, 60), (1, 90), (1, 90)]);
    assert_eq!(
        host.policy
            .on_service_answer(stream, Some(&ok), &host, &*host.store),
        Verdict::Continue
    );
    let response = Response {
        status: 401,
        headers: &Vec::<(&str, &str)>::new(),
    };
    let mut changes = Vec::new();
    host.policy
        .on_response(stream, Some(&response), &host, &*host.store, &mut changes);
    let count = host
        .policy
        .take_service_call(stream)
        .expect("the failure is counted in the service");
    let decoded = descriptors(&count.message).join(" | ");
    assert!(decoded.contains("login_username") && decoded.contains("login_client_ip"));
    assert!(!decoded.contains("rate_limit"), "{decoded}");
    // The service says the username is over now: this failure is the lockout.
    stream.take_events();
    let over = answer(&[(2, 90), (1, 90)]);
    assert_eq!(
        host.policy
            .on_service_answer(stream, Some(&over), &host, &*host.store),
        Verdict::Continue
    );
    let kinds: Vec<EventKind> = stream.take_events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::LoginLockout]);
}

#[test]
fn a_locked_username_is_refused_with_the_services_reset() {
    let host = Host::new(&policy(SERVICE, ""));
    let mut exchange = host.send(&req("POST", "/login").json(r#"{"username":"alice"}"#));
    asked(&exchange.verdict);
    let over = answer(&[(1, 60), (1, 90), (2, 120)]);
    let verdict =
        host.policy
            .on_service_answer(&mut exchange.stream, Some(&over), &host, &*host.store);
    let Verdict::Reply(reply) = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(reply.status, 429);
    assert!(
        reply
            .headers
            .contains(&("retry-after".to_owned(), "120".to_owned()))
    );
}

#[test]
fn the_codec_round_trips_through_the_engines_descriptors() {
    // The limit of an outcome is its threshold minus one: 5 failures send 4.
    let host = Host::new(&policy(SERVICE, ""));
    let exchange = host.send(&req("POST", "/login").json(r#"{"username":"bob"}"#));
    let message = &asked(&exchange.verdict).message;
    // RateLimitOverride{requests_per_unit 4, unit MINUTE..} would be 0x08 4 0x10 N.
    assert!(
        message.windows(4).any(|w| w == [0x08, 25, 0x10, 2]),
        "the rate limit's 25 per minute"
    );
    assert_eq!(
        rls::decode_response(&answer(&[(2, 1)])).unwrap().overall,
        Code::OverLimit
    );
    let _ = START;
}

fn errors(counters: &str, extra: &str) -> String {
    Policy::from_json(&policy(counters, extra))
        .unwrap_err()
        .to_string()
}

#[test]
fn settings_a_service_cannot_carry_out_are_refused_with_their_path() {
    let no_service = errors(r#"{ "rate_limit": "service" }"#, "");
    assert!(
        no_service.contains("tiers.critical.counters.rate_limit: counts in a rate limit service but `counters.service` names none"),
        "{no_service}"
    );
    let window =
        Policy::from_json(&policy(SERVICE, "").replace(r#""per": "1m""#, r#""per": "15m""#))
            .unwrap_err()
            .to_string();
    assert!(
        window.contains(
            "tiers.critical.rate_limit.per: is no window a rate limit service takes in the request"
        ),
        "{window}"
    );
    // With the limits in the service's configuration, 15 minutes is fine.
    let config = SERVICE.replace(
        r#""timeout": "50ms""#,
        r#""timeout": "50ms", "limits": "config""#,
    );
    Policy::from_json(&policy(&config, "").replace(r#""per": "1m""#, r#""per": "15m""#)).unwrap();
    let lockout = Policy::from_json(
        &policy(SERVICE, "").replace(r#""lockout": "1h""#, r#""lockout": "30m""#),
    )
    .unwrap_err()
    .to_string();
    assert!(
        lockout.contains("tiers.critical.login.lockout: differs from the window while failures count in a rate limit service"),
        "{lockout}"
    );
}
