//! The rate-limit-service peer (`tests/ratelimit-peer`, built by `cargo test --workspace`)
//! speaks real RLS v3: Envoy's own rate limit filter (`envoy.filters.http.ratelimit`, not
//! stakeguard) counts through it, with descriptors built by Envoy's route actions, and its
//! counts live in a real redis-server.
//!
//! - Limits from a limitador limits file: a user gets exactly N requests, then 429 with
//!   `x-envoy-ratelimited`, across two Envoy processes (`--concurrency 2` each) counting
//!   through one peer and one Redis.
//! - A limit carried by the request: Envoy's `limit.dynamic_metadata` override (metadata
//!   set by `envoy.filters.http.set_metadata`) sends `RateLimitDescriptor.limit`, and a
//!   peer started without a limits file applies it.
//! - The peer stopped: an Envoy with `failure_mode_deny` answers 503 (`status_on_error`),
//!   one without forwards; a peer started again on the same Redis carries on the count.
//! - The process: a clean exit on SIGTERM, a limits file it cannot read refused at start.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use serde_json::{Value, json};
use stakeguard_tests::client::Request;
use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::ratelimit_peer::RatelimitPeer;
use stakeguard_tests::redis::Redis;
use stakeguard_tests::upstream::Upstream;

const QUOTA: usize = 6;

fn limits() -> String {
    format!(
        "- namespace: edge\n  max_value: {QUOTA}\n  seconds: 3600\n  conditions:\n    - \"descriptors[0].api == 'quotes'\"\n  variables:\n    - descriptors[0].user\n"
    )
}

/// How the Envoy under test asks the peer.
struct Native {
    /// `failure_mode_deny`, answered with 503 when the peer cannot be reached.
    deny_on_failure: bool,
    /// A `limit` override the route sends with the descriptor (requests per hour).
    override_per_hour: Option<u32>,
}

/// One Envoy (2 workers) in front of `upstream` with Envoy's rate limit filter pointed at
/// `peer`: descriptors `[api=quotes, user=<x-user-id>]` in domain `edge`.
fn start_envoy(upstream: &Upstream, peer: &RatelimitPeer, native: &Native) -> Envoy {
    let cluster = peer.cluster("ratelimit");
    let config = EnvoyConfig::new(upstream.port()).with_concurrency(2);
    Envoy::start_with(
        |paths| {
            let mut bootstrap = config.bootstrap(paths);
            let clusters = bootstrap
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
                .unwrap();
            clusters.push(cluster.clone());
            let hcm = bootstrap
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
                .unwrap();
            let filters = hcm["http_filters"].as_array_mut().unwrap();
            filters.insert(0, ratelimit_filter(native.deny_on_failure));
            let mut rate_limit = json!({ "actions": [
                { "generic_key": { "descriptor_key": "api", "descriptor_value": "quotes" } },
                { "request_headers": { "header_name": "x-user-id", "descriptor_key": "user" } },
            ]});
            if let Some(per_hour) = native.override_per_hour {
                filters.insert(0, set_limit_metadata(per_hour));
                rate_limit["limit"] = json!({ "dynamic_metadata": { "metadata_key": {
                    "key": "stakeguard.test", "path": [{ "key": "limit" }]
                }}});
            }
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["rate_limits"] =
                json!([rate_limit]);
            bootstrap
        },
        2,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ratelimit_filter(deny_on_failure: bool) -> Value {
    json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": "edge",
            "timeout": "1s",
            "failure_mode_deny": deny_on_failure,
            "status_on_error": { "code": "ServiceUnavailable" },
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": "ratelimit" } },
                "transport_api_version": "V3",
            },
        }
    })
}

/// Dynamic metadata `stakeguard.test.limit = {requests_per_unit, unit: HOUR}`, where the
/// route's `limit` override reads it.
fn set_limit_metadata(per_hour: u32) -> Value {
    json!({
        "name": "envoy.filters.http.set_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
            "metadata": [{
                "metadata_namespace": "stakeguard.test",
                "value": { "limit": { "requests_per_unit": per_hour, "unit": "HOUR" } },
            }],
        }
    })
}

fn quotes(user: &str) -> Request {
    Request::get("/api/v1/quotes").header("x-user-id", user)
}

#[test]
fn two_envoys_share_one_quota_through_the_peer() {
    let redis = Redis::start().unwrap();
    let peer = RatelimitPeer::start(&redis, Some(&limits())).unwrap();
    let upstream = Upstream::start().unwrap();
    let native = Native {
        deny_on_failure: true,
        override_per_hour: None,
    };
    let pods = [
        start_envoy(&upstream, &peer, &native),
        start_envoy(&upstream, &peer, &native),
    ];

    // Alternating between the two proxies: the quota is the fleet's, not each proxy's.
    let statuses: Vec<u16> = (0..2 * QUOTA)
        .map(|i| pods[i % 2].send(&quotes("ada")).status)
        .collect();
    assert_eq!(&statuses[..QUOTA], [200; QUOTA], "{statuses:?}");
    assert_eq!(&statuses[QUOTA..], [429; QUOTA], "{statuses:?}");
    let refused = pods[0].send(&quotes("ada"));
    assert_eq!(refused.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(upstream.count("/api/v1/quotes"), QUOTA);

    // Another user has a quota of their own, whichever proxy serves them.
    assert_eq!(pods[1].send(&quotes("bea")).status, 200);
    assert_eq!(pods[0].send(&quotes("bea")).status, 200);
}

#[test]
fn a_limit_envoy_sends_with_the_descriptor_needs_no_limits_file() {
    let redis = Redis::start().unwrap();
    let peer = RatelimitPeer::start(&redis, None).unwrap();
    let upstream = Upstream::start().unwrap();
    let envoy = start_envoy(
        &upstream,
        &peer,
        &Native {
            deny_on_failure: true,
            override_per_hour: Some(3),
        },
    );
    let statuses: Vec<u16> = (0..5).map(|_| envoy.send(&quotes("cy")).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(upstream.count("/api/v1/quotes"), 3);
}

#[test]
fn with_the_peer_stopped_envoy_applies_its_failure_mode() {
    let redis = Redis::start().unwrap();
    let mut peer = RatelimitPeer::start(&redis, Some(&limits())).unwrap();
    let upstream = Upstream::start().unwrap();
    let closed = start_envoy(
        &upstream,
        &peer,
        &Native {
            deny_on_failure: true,
            override_per_hour: None,
        },
    );
    let open = start_envoy(
        &upstream,
        &peer,
        &Native {
            deny_on_failure: false,
            override_per_hour: None,
        },
    );
    assert_eq!(closed.send(&quotes("dee")).status, 200);
    assert_eq!(open.send(&quotes("dee")).status, 200);

    peer.stop();
    assert_eq!(closed.send(&quotes("dee")).status, 503);
    assert_eq!(open.send(&quotes("dee")).status, 200);
    assert_eq!(upstream.count("/api/v1/quotes"), 3);
}

#[test]
fn the_counts_live_in_redis_and_outlive_the_peer() {
    let redis = Redis::start().unwrap();
    let upstream = Upstream::start().unwrap();
    let native = Native {
        deny_on_failure: true,
        override_per_hour: None,
    };
    let mut first = RatelimitPeer::start(&redis, Some(&limits())).unwrap();
    let envoy = start_envoy(&upstream, &first, &native);
    for _ in 0..QUOTA - 1 {
        assert_eq!(envoy.send(&quotes("eve")).status, 200);
    }
    first.stop();
    drop(envoy);
    let second = RatelimitPeer::start(&redis, Some(&limits())).unwrap();
    let envoy = start_envoy(&upstream, &second, &native);
    assert_eq!(envoy.send(&quotes("eve")).status, 200);
    assert_eq!(envoy.send(&quotes("eve")).status, 429);
}

#[test]
fn the_peer_exits_cleanly_on_sigterm() {
    let redis = Redis::start().unwrap();
    let mut peer = RatelimitPeer::start(&redis, None).unwrap();
    let status = peer.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}: {}", peer.log());
}

#[test]
fn a_limits_file_it_cannot_read_stops_it_with_the_reason() {
    let redis = Redis::start().unwrap();
    let err = RatelimitPeer::start(&redis, Some("- namespace: bank\n  max_value: many\n"))
        .err()
        .unwrap();
    assert!(
        err.contains("limits file") && err.contains("max_value"),
        "{err}"
    );
}
