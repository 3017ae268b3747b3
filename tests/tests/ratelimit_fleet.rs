//! Fleet-wide counting: two Envoy processes ("pods", `--concurrency 2` each) run
//! stakeguard in front of one upstream and count through one rate limit service, the
//! Limitador peer (`tests/ratelimit-peer`) with its counters in a real redis-server.
//!
//! - A rate limit of 25 lets exactly 25 requests through across both proxies, however
//!   the requests are spread; the 26th and later get 429 with `Retry-After`.
//! - A lockout after 5 failures, the failures spread over both proxies, locks the
//!   username on the 5th: the 6th attempt is refused by either proxy.
//! - With the peer stopped, a `fail_closed` API answers 503 (the call fails, nothing
//!   hangs) and a `fail_open` one forwards and raises a `store_failure` incident, which a
//!   real Alertmanager receives as the owner's alert; both count the failures in
//!   `stakeguard.ratelimit_service.errors`.
//! - The first run's requests, recorded as HAR with their timing, replayed by the harness
//!   (`stakeguard replay --ratelimit-service`, four workers for the pods' four) end alike
//!   request by request: the same status, from the upstream or from the filter (with the
//!   same error code); without the service every one of them is refused 503 instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stakeguard_harness::report::Outcome;
use stakeguard_tests::TempDir;
use stakeguard_tests::alertmanager::{self, Alertmanager};
use stakeguard_tests::client::{Request, Response};
use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::ratelimit_peer::RatelimitPeer;
use stakeguard_tests::recording::{self, Recording};
use stakeguard_tests::redis::Redis;
use stakeguard_tests::stats::sum;
use stakeguard_tests::upstream::Upstream;
use stakeguard_tests::wait::eventually;

const RATE: usize = 25;

/// Rates: 25 per day per user, counted in the service; login: 5 failures per hour lock
/// a username out; `status` fails closed, `weather` fails open. All in the service of
/// cluster `ratelimit`.
fn policy() -> String {
    format!(
        r#"{{
  "revision": "fleet-1",
  "identity": {{ "user": [ {{ "header": "x-user-id" }} ] }},
  "defaults": {{ "counters": {{
      "service": {{ "cluster": "ratelimit", "domain": "fleet", "timeout": "250ms" }},
      "rate_limit": "service", "login": "service" }} }},
  "tiers": {{
    "critical": {{
      "on_error": "fail_closed",
      "rate_limit": {{ "requests": {RATE}, "per": "1d", "key": "user" }},
      "login": {{ "max_failures": 5, "window": "1h", "lockout": "1h", "keys": ["username"] }},
      "incidents": {{ "login_lockout": "ticket" }}
    }},
    "low": {{
      "on_error": "fail_open",
      "rate_limit": {{ "requests": 1000, "per": "1d", "key": "user" }},
      "incidents": {{ "store_failure": "ticket" }}
    }}
  }},
  "notify": {{ "alertmanager": {{ "cluster": "alertmanager", "timeout": "250ms" }} }},
  "apis": [
    {{ "name": "rates", "version": "v1", "owner": "team-rates", "tier": "critical",
      "routes": [ {{ "path": "/api/v1/rates/**", "methods": ["GET"] }} ] }},
    {{ "name": "login", "version": "v1", "owner": "team-identity", "tier": "critical",
      "routes": [ {{ "path": "/api/v1/login", "methods": ["POST"] }} ],
      "login": {{ "username": {{ "json_pointer": "/username" }} }} }},
    {{ "name": "weather", "version": "v1", "owner": "team-weather", "tier": "low",
      "routes": [ {{ "path": "/api/v1/weather/**", "methods": ["GET"] }} ] }}
  ]
}}"#
    )
}

/// One "pod": an Envoy with two workers running stakeguard in front of `upstream`, its
/// `ratelimit` cluster pointing at `peer`.
fn pod(upstream: &Upstream, peer: &RatelimitPeer, alertmanager: &Alertmanager) -> Envoy {
    let module = stakeguard_tests::filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let cluster = peer.cluster("ratelimit");
    let config = EnvoyConfig::new(upstream.port())
        .with_concurrency(2)
        .with_alertmanager(alertmanager.port())
        .with_filter(&module, &policy());
    Envoy::start_with(
        |paths| {
            let mut bootstrap = config.bootstrap(paths);
            bootstrap
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
                .unwrap()
                .push(cluster.clone());
            bootstrap
        },
        2,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

struct Fleet {
    upstream: Upstream,
    pods: [Envoy; 2],
    peer: RatelimitPeer,
    alertmanager: Alertmanager,
    _redis: Redis,
}

fn fleet() -> Fleet {
    let redis = Redis::start().unwrap_or_else(|e| panic!("{e}"));
    let peer = RatelimitPeer::start(&redis, None).unwrap_or_else(|e| panic!("{e}"));
    let alertmanager = Alertmanager::start().unwrap_or_else(|e| panic!("{e}"));
    let upstream = Upstream::start().unwrap();
    let pods = [
        pod(&upstream, &peer, &alertmanager),
        pod(&upstream, &peer, &alertmanager),
    ];
    Fleet {
        upstream,
        pods,
        peer,
        alertmanager,
        _redis: redis,
    }
}

fn login(user: &str) -> Request {
    Request::post_json(
        "/api/v1/login",
        &format!(r#"{{"username":"{user}","password":"wrong"}}"#),
    )
}

/// What the client saw of one request: the status, whether the upstream received it,
/// and when the filter answered instead, the `error` code of its answer (`rate_limited`,
/// `login_locked`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    forwarded: bool,
    refusal: Option<String>,
}

/// The `error` field of a refusal's JSON body.
fn refusal(body: &str) -> Option<String> {
    let answer: Value = serde_json::from_str(body).ok()?;
    answer["error"].as_str().map(str::to_owned)
}

/// The fleet's traffic, recorded as it is sent.
struct Run<'a> {
    fleet: &'a Fleet,
    recording: Recording,
    seen: Vec<Seen>,
}

impl Run<'_> {
    fn send(&mut self, pod: usize, request: &Request) -> Response {
        // The upstream notes a request before it answers, so the count has moved by the
        // time the client has its response.
        let before = self.fleet.upstream.requests().len();
        let response = self.recording.send(&self.fleet.pods[pod], request);
        let forwarded = self.fleet.upstream.requests().len() > before;
        self.seen.push(Seen {
            status: response.status,
            forwarded,
            refusal: (!forwarded).then(|| refusal(&response.text())).flatten(),
        });
        response
    }
}

/// The start of the current UTC day, in nanoseconds since the epoch. The recording starts
/// there because the harness's service, like envoyproxy/ratelimit, aligns its windows on
/// the epoch, while Limitador's start at a key's first hit: on a day boundary, every
/// window of the replay (this policy's hour and day) opens before its key's first hit and
/// outlasts the run, as the peer's did, wherever in the day the test runs.
fn start_of_today_ns() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_secs() - now.as_secs() % 86_400).unwrap() * 1_000_000_000
}

#[test]
fn two_proxies_share_one_limit_and_one_lockout_through_the_service_and_a_replay_agrees() {
    let fleet = fleet();
    let mut run = Run {
        fleet: &fleet,
        recording: Recording::starting_at(start_of_today_ns()),
        seen: Vec::new(),
    };
    // 40 requests of one user, alternating between the pods, one connection each (so
    // both workers of each pod serve some).
    let request = Request::get("/api/v1/rates/eur").header("x-user-id", "ada");
    let responses: Vec<Response> = (0..40).map(|i| run.send(i % 2, &request)).collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    // Each answer that passed tells the client what is left of the fleet's budget, as
    // the peer counted it across both pods.
    let remaining: Vec<Option<&str>> = responses[..RATE]
        .iter()
        .map(|r| r.header("ratelimit-remaining"))
        .collect();
    let expected: Vec<String> = (0..RATE).rev().map(|n| n.to_string()).collect();
    assert_eq!(
        remaining,
        expected
            .iter()
            .map(|n| Some(n.as_str()))
            .collect::<Vec<_>>()
    );
    assert_eq!(responses[0].header("ratelimit-limit"), Some("25"));
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        passed, RATE,
        "exactly {RATE} across both proxies: {statuses:?}"
    );
    assert!(statuses[RATE..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(fleet.upstream.count("/api/v1/rates/eur"), RATE);
    let refused = run.send(1, &request);
    assert_eq!(refused.status, 429);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(refused.header("ratelimit-limit"), Some("25"));
    // Another user has a count of their own.
    let other = Request::get("/api/v1/rates/eur").header("x-user-id", "bea");
    assert_eq!(run.send(0, &other).status, 200);

    // Failures of one username spread over both pods: the 5th locks it out everywhere.
    let statuses: Vec<u16> = (0..5)
        .map(|i| run.send(i % 2, &login("carol")).status)
        .collect();
    assert_eq!(
        statuses, [401; 5],
        "failures below the lockout reach the upstream"
    );
    for pod in 0..2 {
        let locked = run.send(pod, &login("carol"));
        assert_eq!(locked.status, 429, "{}", locked.text());
        assert!(locked.header("retry-after").is_some());
    }
    assert_eq!(fleet.upstream.count("/api/v1/login"), 5);
    // The 5th failure's count is the lockout: its incident is in that pod's log (once
    // Envoy has flushed it).
    let lockouts = eventually(|| {
        let found: Vec<Value> = fleet
            .pods
            .iter()
            .flat_map(|pod| pod.filter_events())
            .filter(|e| e["event"] == "login_lockout")
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .unwrap_or_else(|| panic!("no lockout incident: {}", fleet.pods[0].log_tail(40)));
    assert_eq!(lockouts.len(), 1, "{lockouts:#?}");
    assert_eq!(lockouts[0]["severity"], "ticket");
    assert!(
        !fleet.peer.log().contains("panicked"),
        "{}",
        fleet.peer.log()
    );
    let Run {
        recording, seen, ..
    } = run;
    let refusals = |code: &str| {
        seen.iter()
            .filter(|s| s.refusal.as_deref() == Some(code))
            .count()
    };
    assert_eq!(
        (refusals("rate_limited"), refusals("login_locked")),
        (40 - RATE + 1, 2),
        "{seen:?}"
    );
    replay_agrees(&recording, &seen);
}

/// Replays the fleet's recording with the harness counting in its in-memory service
/// (`--ratelimit-service`), four workers for the pods' four, and checks that every request
/// ended as it did in the Envoy run: the same status, answered by the upstream (the
/// recorded response) or by the filter alike, and then with the same error code. The
/// status alone would not do: a request the replay forwards gets the recorded answer, the
/// proxy's 429 too. Then replays it without the service, where
/// the calls to cluster `ratelimit` have no answer and the fail-closed tier refuses
/// everything it counts: the agreement is the service's doing.
fn replay_agrees(recording: &Recording, seen: &[Seen]) {
    let dir = TempDir::new("ratelimit-fleet-replay").unwrap();
    let har = dir.path().join("fleet.har");
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&har, recording.to_har().to_string()).unwrap();
    std::fs::write(&policy_file, policy()).unwrap();
    let module = stakeguard_tests::require_filter_wasm();
    let replay = |args: &[&str]| {
        recording::replay(&module, &policy_file, &har, args).unwrap_or_else(|e| panic!("{e}"))
    };

    let report = replay(&["--workers", "4", "--ratelimit-service"]);
    let replayed: Vec<Seen> = report
        .entries
        .iter()
        .map(|e| Seen {
            status: u16::try_from(e.status).unwrap(),
            forwarded: e.outcome == Outcome::Forwarded,
            refusal: e.local_reply.as_ref().and_then(|r| refusal(&r.body)),
        })
        .collect();
    assert_eq!(replayed.len(), seen.len());
    for (i, (envoy, harness)) in seen.iter().zip(&replayed).enumerate() {
        assert_eq!(
            envoy, harness,
            "request {i} ({} {}): Envoy and the replay differ; the replay's entry: {:?}",
            report.entries[i].method, report.entries[i].path, report.entries[i]
        );
    }
    let forwarded = seen.iter().filter(|s| s.forwarded).count();
    let outcomes = &report.summary.outcomes;
    assert_eq!(
        (outcomes.get("forwarded"), outcomes.get("local_reply")),
        (
            Some(&(forwarded as u64)),
            Some(&((seen.len() - forwarded) as u64))
        ),
        "{outcomes:?}"
    );
    // A count kept per worker would have refused nothing: no worker served RATE
    // requests of the rates route, nor 5 logins.
    let per_worker = |path: &str| {
        let mut served = [0usize; 4];
        for e in report.entries.iter().filter(|e| &*e.path == path) {
            served[e.worker] += 1;
        }
        served
    };
    let rates = per_worker("/api/v1/rates/eur");
    assert!(rates.iter().all(|n| *n < RATE), "{rates:?}");
    let logins = per_worker("/api/v1/login");
    assert!(logins.iter().all(|n| *n < 5), "{logins:?}");

    // Every request of the recording counts in the service (rates and login alike).
    let without = replay(&["--workers", "4"]);
    assert_eq!(without.entries.len(), seen.len());
    for e in &without.entries {
        let refused = e.outcome == Outcome::LocalReply
            && e.local_reply
                .as_ref()
                .is_some_and(|r| r.status == 503 && r.body.contains("counter_service_unavailable"));
        assert!(refused, "without the service: {e:?}");
    }
}

#[test]
fn with_the_service_stopped_fail_closed_answers_503_and_fail_open_forwards_with_an_incident() {
    let mut fleet = fleet();
    let rates = Request::get("/api/v1/rates/eur").header("x-user-id", "dan");
    let weather = Request::get("/api/v1/weather/today").header("x-user-id", "dan");
    assert_eq!(fleet.pods[0].send(&rates).status, 200);
    fleet.peer.stop();
    for pod in &fleet.pods {
        let closed = pod.send(&rates);
        assert_eq!(closed.status, 503, "{}", closed.text());
        assert!(
            closed.text().contains("counter_service_unavailable"),
            "{}",
            closed.text()
        );
        let open = pod.send(&weather);
        assert_eq!(open.status, 200, "fail_open forwards: {}", open.text());
    }
    assert_eq!(fleet.upstream.count("/api/v1/weather/today"), 2);
    assert_eq!(fleet.upstream.count("/api/v1/rates/eur"), 1);
    for pod in &fleet.pods {
        let errors = eventually(|| {
            let n = sum(
                &pod.prometheus(),
                "stakeguard_ratelimit_service_errors",
                &[],
            );
            (n >= 2.0).then_some(n)
        })
        .unwrap_or_else(|| panic!("{:?}", pod.admin_get("/stats?filter=stakeguard")));
        assert_eq!(errors, 2.0);
        let log = pod.log_tail(200);
        assert!(
            log.contains("store_failure") && log.contains("weather"),
            "the fail-open incident is logged: {log}"
        );
    }
    // ... and reaches the owner: a real Alertmanager holds the weather API's alert.
    let alert = eventually(|| {
        fleet.alertmanager.alerts().ok()?.into_iter().find(|a| {
            alertmanager::label(a, "alertname") == Some("store_failure")
                && alertmanager::label(a, "api") == Some("weather")
        })
    })
    .unwrap_or_else(|| panic!("no store_failure alert: {:?}", fleet.alertmanager.alerts()));
    assert_eq!(alertmanager::label(&alert, "owner"), Some("team-weather"));
}
