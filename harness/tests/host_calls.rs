//! Host calls counted by the harness (`Session::count_host_calls`, `stakeguard bench
//! --host-calls`) for known requests through the built stakeguard.wasm with the bank
//! policy. The expected calls are read off the filter's code (`filter/src/http.rs`,
//! `root.rs`, `store.rs`) and the policy, not off a run: when the filter changes what it
//! asks of the host, this test says so, and BENCHMARKS.md's tables must follow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::host::calls::HostCalls;
use stakeguard_harness::replay::first_time_ns;
use stakeguard_harness::{Harness, HarnessConfig};

fn bank() -> Harness {
    let policy = std::fs::read(common::workspace().join("policies/examples/bank.json")).unwrap();
    Harness::new(
        common::filter_wasm(),
        HarnessConfig {
            plugin_configuration: policy,
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .expect("load stakeguard.wasm")
}

/// `GET /api/v1/rates/gbp-eur` (the bank's standard tier: a rate limit by client
/// address, headers stripped from the response), at `time` on connection c1.
fn rates(time: &str) -> String {
    format!(
        r#"{{"time":"{time}","connection":"c1","source":"203.0.113.10:30297","request":{{"method":"GET","authority":"bank.example.com","path":"/api/v1/rates/gbp-eur","headers":[["accept","application/json"]]}},"response":{{"status":200,"headers":[["server","rates-svc"],["x-powered-by","Express"],["content-type","application/json"]]}}}}"#
    )
}

/// The calls of each stream callback and of the tick, as `(callback, import, detail,
/// calls)`.
fn calls(counted: &HostCalls) -> Vec<(&'static str, &'static str, String, u64)> {
    counted
        .calls()
        .iter()
        .map(|(k, t)| (k.callback, k.import, k.detail.clone(), t.calls))
        .collect()
}

fn call(
    callback: &'static str,
    import: &'static str,
    detail: &str,
) -> (&'static str, &'static str, String, u64) {
    (callback, import, detail.to_string(), 1)
}

const REQUEST: &str = "proxy_on_request_headers";
const RESPONSE: &str = "proxy_on_response_headers";
const LOG: &str = "proxy_on_log";
const TICK: &str = "proxy_on_tick";

/// The calls every bank request makes on its request headers (`on_http_request_headers`):
/// the clock, the whole request map in one call, `source.address` (the policy trusts no
/// forwarded hop and rate-limits by client address) and the peer certificate's URI SAN
/// (the aggregator partner is matched by certificate).
fn request_reads() -> Vec<(&'static str, &'static str, String, u64)> {
    vec![
        call(REQUEST, "proxy_get_current_time_nanoseconds", ""),
        call(REQUEST, "proxy_get_header_map_pairs", "request_headers"),
        call(
            REQUEST,
            "proxy_get_property",
            "connection.uri_san_peer_certificate",
        ),
        call(REQUEST, "proxy_get_property", "source.address"),
    ]
}

/// The metric a plain allowed rates request adds to.
const ALLOWED: &str = "stakeguard.decision.api.rates.version.v1.control.none.outcome.allowed";

/// The calls of every rates request whose window this worker has a reservation for
/// (see the test for why each is made).
fn per_request() -> Vec<(&'static str, &'static str, String, u64)> {
    let mut calls = request_reads();
    calls.extend([
        call(
            RESPONSE,
            "proxy_remove_header_map_value",
            "response_headers: server",
        ),
        call(
            RESPONSE,
            "proxy_remove_header_map_value",
            "response_headers: x-powered-by",
        ),
        call(TICK, "proxy_get_current_time_nanoseconds", ""),
        call(TICK, "proxy_increment_metric", ALLOWED),
    ]);
    calls
}

#[test]
fn a_standard_tier_request_makes_the_calls_the_filter_code_makes() {
    let h = bank();
    let first = common::records(&rates("2026-11-29T09:01:00.000Z"));
    let second = common::records(&rates("2026-11-29T09:01:01.000Z"));
    let mut session = h.session(first_time_ns(&first)).unwrap();
    session.count_host_calls();

    // The first request of the window on this worker reserves hits from the shared
    // rate-limit slot: one read (of the slot `create_state_keys` made, empty) and one
    // compare-and-swap write (`rate_limit::take` through `Slots::update`). The response
    // only strips `server` and `x-powered-by`: the tier needs no response map read, so
    // two removes (`apply_one_by_one`). `on_log` counts the decision in the worker's
    // batch and starts the flush tick (`Worker::schedule_tick`: a call only when the
    // period changes). The tick after the request (the replay runs the clock on) reads
    // the clock, defines the decision's metric (the first time this worker flushes it)
    // and adds to it (`metrics.rs`); the tick then keeps running, empty, for ten ticks
    // (`IDLE_TICKS` in `root.rs`), so the next request does not start it again.
    session.replay(&first, 0, &mut |_| {});
    let mut expected = per_request();
    expected.extend([
        call(REQUEST, "proxy_get_shared_data", "found"),
        call(REQUEST, "proxy_set_shared_data", "compare-and-swap"),
        call(LOG, "proxy_set_tick_period_milliseconds", "100"),
        call(TICK, "proxy_define_metric", ALLOWED),
    ]);
    expected.sort();
    let counted = session.take_host_calls();
    assert_eq!(calls(&counted), expected, "{}", counted.table(1));
    for callback in [
        REQUEST,
        RESPONSE,
        LOG,
        TICK,
        "proxy_on_done",
        "proxy_on_delete",
    ] {
        assert_eq!(counted.callbacks().get(callback), Some(&1), "{callback}");
    }

    // A second later, in the same window: the request is counted from the worker's
    // reservation, without a shared-data call, the metric is known, and the tick runs
    // still: no call to start it.
    session.replay(&second, 0, &mut |_| {});
    let mut expected = per_request();
    expected.sort();
    let counted = session.take_host_calls();
    assert_eq!(calls(&counted), expected, "{}", counted.table(1));

    // Five seconds on, the tick has stopped after its empty ticks (which made no call
    // but the last): this request starts it again.
    let third = common::records(&rates("2026-11-29T09:01:06.000Z"));
    session.replay(&third, 0, &mut |_| {});
    let mut expected = per_request();
    expected.extend([
        call(TICK, "proxy_set_tick_period_milliseconds", "0"),
        call(LOG, "proxy_set_tick_period_milliseconds", "100"),
    ]);
    expected.sort();
    let counted = session.take_host_calls();
    assert_eq!(calls(&counted), expected, "{}", counted.table(1));
    // What the request map read hands back is the recorded map plus the pseudo-headers.
    let pairs = counted
        .calls()
        .iter()
        .find(|(k, _)| k.import == "proxy_get_header_map_pairs")
        .map(|(_, t)| *t)
        .unwrap();
    assert_eq!(pairs.allocations, 1);
    assert!(pairs.bytes_out > 40, "{pairs:?}");
}

#[test]
fn an_unknown_route_is_refused_with_a_log_line_and_a_published_decision() {
    let h = bank();
    let records = common::records(
        r#"{"time":"2026-11-29T09:01:00.000Z","connection":"c1","source":"203.0.113.10:30297","request":{"method":"GET","authority":"bank.example.com","path":"/api/v2/admin","headers":[]},"response":{"status":200,"headers":[]}}"#,
    );
    let mut session = h.session(first_time_ns(&records)).unwrap();
    session.count_host_calls();
    session.replay(&records, 0, &mut |_| {});
    let counted = session.take_host_calls();
    // `unknown_routes.action: block` (severity ticket): the event is logged at warn, the
    // decision published (`after_engine`), and the 404 sent as a local reply (`reply`);
    // the incident and the alert go out on the tick, not per request.
    let request = counted.of(REQUEST);
    for expected in [
        ("proxy_log", "warn", 1),
        ("proxy_send_local_response", "404", 1),
        ("proxy_set_property", "stakeguard.decision", 1),
        ("proxy_get_header_map_pairs", "request_headers", 1),
    ] {
        assert!(
            request.contains(&expected),
            "{expected:?}\n{}",
            counted.table(1)
        );
    }
    // A local reply skips the response callback's work (`replied`).
    assert_eq!(counted.of(RESPONSE), vec![], "{}", counted.table(1));
}

#[test]
fn a_session_that_does_not_count_has_nothing_to_report() {
    let h = bank();
    let records = common::records(&rates("2026-11-29T09:01:00.000Z"));
    let mut session = h.session(first_time_ns(&records)).unwrap();
    session.replay(&records, 0, &mut |_| {});
    assert_eq!(session.take_host_calls(), HostCalls::new());
}
