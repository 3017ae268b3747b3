//! Key flooding: a million distinct usernames and client addresses failing to sign in,
//! and a million distinct addresses on a rate-limited route, against the bank example
//! in the harness (two workers sharing one store, as Envoy's do), with a real user and a
//! real client among them (`make flood`: minutes in a debug build). `make test` runs the
//! same floods at a scale that still overflows every table: 4,000 keys per route
//! against the bank with 64 slots per table (128 entries) instead of 4096.
//!
//! The slot tables (README, `state.slots`) bound the counters' memory whatever keys
//! arrive, and a flood shares counters rather than evicting them (it errs toward
//! protection): the real user's lockout must still fire at its threshold, or earlier
//! when the flood's failures share its counter, never later; the real client's rate
//! limit likewise. The memory bound is measured on the engine with the in-memory store,
//! which mirrors shared data (same keys, same values), fed the same requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::report::{Outcome, decision_fields};
use stakeguard_harness::traffic::{Record, RecordRequest, RecordResponse};
use stakeguard_harness::{Harness, HarnessConfig};
use stakeguard_policies::{CounterStore, MemoryStore, Policy, Request, Response, Verdict};

/// How big a flood, against how big tables.
#[derive(Clone, Copy, Debug)]
struct Scale {
    /// Distinct flooding keys per route.
    keys: u64,
    /// `state.slots` of the policy (`None`: the bank's default, 4096).
    slots: Option<usize>,
}

/// The flood of `make flood`.
const MILLION: Scale = Scale {
    keys: 1_000_000,
    slots: None,
};

/// The flood of `make test`: 4,000 keys live within each window (the login window holds
/// all of them, a minute of the rate limit about 400) against 128 entries per table.
const SMALL: Scale = Scale {
    keys: 4_000,
    slots: Some(64),
};

/// The slots per table when the policy does not say (README, `state.slots`).
const DEFAULT_SLOTS: usize = 4096;
/// The bank's counter tables.
const TABLES: usize = 5;
/// Bytes a slot key's value may reach: two 32-byte entries.
const SLOT_VALUE_BYTES: usize = 2 * 32;

/// The flood lasts ten minutes of virtual time: inside the login window (15m), so no
/// flooding entry expires and every slot is full.
const FLOOD_NS: u64 = 600_000_000_000;
/// Records replayed per call of the session (the session keeps its state between calls).
const BATCH: u64 = 20_000;
/// 2026-11-29T00:00:00Z.
const START_NS: u64 = 1_795_910_400_000_000_000;

/// The bank's username threshold (`tiers.critical.login.max_failures`) and the rates
/// API's limit per client address (`tiers.standard.rate_limit.requests`, per minute).
const LOGIN_THRESHOLD: usize = 5;
const RATE_LIMIT: usize = 300;

const VICTIM_USER: &str = "alice@bank.example";
/// The victim signs in through the bank's partner (exempt from rate limits), so that what
/// refuses it is the lockout under test: the flood fills the rate-limit table too, and a
/// request the rate limit refuses never reaches the upstream to count as a failure.
const VICTIM_PARTNER: &str = "spiffe://partners.example/aggregator";
const VICTIM_IP: &str = "192.0.2.77";
const REAL_CLIENT_IP: &str = "192.0.2.88";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Flood,
    Victim,
    RealClient,
}

/// The `n`-th distinct IPv4 address of the flood (never one of the real ones, in 10/8).
fn flood_ip(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn login(time_ns: u64, user: &str, ip: &str) -> Record {
    let body = format!(r#"{{"username":"{user}","password":"guess"}}"#);
    record(time_ns, "POST", "/api/v2/login", ip, body, 401)
}

fn rates(time_ns: u64, ip: &str) -> Record {
    record(time_ns, "GET", "/api/v1/rates/eur", ip, String::new(), 200)
}

fn record(time_ns: u64, method: &str, path: &str, ip: &str, body: String, status: u16) -> Record {
    let mut headers = Vec::new();
    if !body.is_empty() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    Record {
        time_ns: Some(time_ns as i64),
        source: Some(format!("{ip}:40000")),
        request: RecordRequest {
            method: method.to_owned(),
            authority: "bank.example.com".to_owned(),
            path: path.to_owned(),
            scheme: "https".to_owned(),
            headers,
            body: body.into_bytes(),
            trailers: Vec::new(),
        },
        response: Some(RecordResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }),
        origin: "flood".to_owned(),
        ..Record::default()
    }
}

/// The `i`-th record of the whole traffic, in time order: the flood alternates between
/// a failed sign-in of a new username from a new address and a rates request from
/// another new address; the victim fails to sign in at six points spread over the flood
/// (the sixth must be refused), and the real client sends `RATE_LIMIT + 1` rates
/// requests in its minute, one after each flood request from the fifth minute on.
fn traffic(scale: Scale) -> impl Iterator<Item = (Who, Record)> {
    let flood = scale.keys;
    let step = FLOOD_NS / (2 * flood);
    let victim_at: Vec<u64> = (1..=LOGIN_THRESHOLD as u64 + 1)
        .map(|k| k * (2 * flood) / (LOGIN_THRESHOLD as u64 + 2))
        .collect();
    let client_from = flood;
    (0..2 * flood).flat_map(move |i| {
        let time = START_NS + i * step;
        let flood = if i % 2 == 0 {
            login(time, &format!("user{i}@flood.example"), &flood_ip(i))
        } else {
            rates(time, &flood_ip(i))
        };
        let mut out = vec![(Who::Flood, flood)];
        if victim_at.contains(&i) {
            let mut attempt = login(time + 1, VICTIM_USER, VICTIM_IP);
            attempt.peer_uri_san = Some(VICTIM_PARTNER.to_owned());
            out.push((Who::Victim, attempt));
        }
        if (client_from..=client_from + RATE_LIMIT as u64).contains(&i) {
            out.push((Who::RealClient, rates(time + 2, REAL_CLIENT_IP)));
        }
        out
    })
}

/// The bank's policy, with the scale's slots per table.
fn policy_text(scale: Scale) -> String {
    let text =
        std::fs::read_to_string(common::workspace().join("policies/examples/bank.json")).unwrap();
    match scale.slots {
        Some(slots) => text.replacen('{', &format!(r#"{{"state": {{"slots": {slots}}},"#), 1),
        None => text,
    }
}

/// The bank's state keys at the scale's slots per table.
fn table_keys(scale: Scale) -> usize {
    TABLES * scale.slots.unwrap_or(DEFAULT_SLOTS)
}

/// The one-based attempt at which each real party was first refused with 429, and by
/// which control.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refusals {
    victim: Option<(usize, String)>,
    real_client: Option<(usize, String)>,
}

impl Refusals {
    fn note(&mut self, who: Who, attempts: &mut [usize; 2], refused_by: Option<String>) {
        let (slot, first) = match who {
            Who::Flood => return,
            Who::Victim => (0, &mut self.victim),
            Who::RealClient => (1, &mut self.real_client),
        };
        attempts[slot] += 1;
        if let Some(control) = refused_by
            && first.is_none()
        {
            *first = Some((attempts[slot], control));
        }
    }

    /// The victim's lockout and the real client's rate limit fired, neither later than
    /// its threshold.
    fn check(&self) {
        let Some((victim, control)) = &self.victim else {
            panic!("the victim's lockout never fired: {self:?}");
        };
        assert_eq!(control, "login", "{self:?}");
        assert!(
            *victim <= LOGIN_THRESHOLD + 1,
            "the victim was first refused at attempt {victim}, after its threshold"
        );
        let Some((client, control)) = &self.real_client else {
            panic!("the real client's rate limit never fired: {self:?}");
        };
        assert_eq!(control, "rate_limit", "{self:?}");
        assert!(
            *client <= RATE_LIMIT + 1,
            "the real client was first refused at request {client}, over its limit"
        );
    }
}

#[test]
#[ignore = "two million requests, minutes in a debug build: `make flood`"]
fn a_million_flooding_keys_neither_grow_the_store_nor_delay_a_real_lockout_in_the_harness() {
    flood_the_harness(MILLION);
}

#[test]
fn a_flood_overflowing_small_tables_neither_grows_the_store_nor_delays_a_real_lockout_in_the_harness()
 {
    flood_the_harness(SMALL);
}

/// The flood through the built module with two workers: shared data keeps the keys the
/// module made at start, each value within a slot's two entries, and the real parties
/// are refused no later than their thresholds.
fn flood_the_harness(scale: Scale) {
    let harness = Harness::new(
        common::filter_wasm(),
        HarnessConfig {
            plugin_configuration: policy_text(scale).into_bytes(),
            workers: 2,
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let mut session = harness.session(START_NS).unwrap();
    let (keys_at_start, bytes_at_start) = session.shared_data_size();
    assert!(
        keys_at_start >= table_keys(scale),
        "{keys_at_start} shared-data keys at start, fewer than the tables' {}",
        table_keys(scale)
    );
    let mut refusals = Refusals::default();
    let mut attempts = [0; 2];
    let mut replayed = 0;
    let mut batch: Vec<(Who, Record)> = Vec::new();
    let mut run = |batch: &mut Vec<(Who, Record)>, refusals: &mut Refusals| {
        let records: Vec<Record> = batch.iter().map(|(_, r)| r.clone()).collect();
        let report = session.replay(&records, 0, &mut |_| {});
        assert_eq!(report.entries.len(), records.len());
        for ((who, _), entry) in batch.iter().zip(&report.entries) {
            assert!(entry.trap.is_none(), "{:?}", entry.trap);
            let refused_by = (entry.outcome == Outcome::LocalReply && entry.status == 429)
                .then(|| decision_fields(entry.decision.as_ref()?).remove("control"))
                .flatten();
            refusals.note(*who, &mut attempts, refused_by);
        }
        replayed += records.len();
        batch.clear();
    };
    for item in traffic(scale) {
        batch.push(item);
        if batch.len() as u64 == BATCH {
            run(&mut batch, &mut refusals);
        }
    }
    run(&mut batch, &mut refusals);
    assert!(replayed as u64 > 2 * scale.keys);

    let (keys, bytes) = session.shared_data_size();
    let bound = bytes_at_start + keys_at_start * SLOT_VALUE_BYTES;
    assert_eq!(keys, keys_at_start, "the flood created shared-data keys");
    assert!(bytes <= bound, "{bytes} bytes of shared data, over {bound}");
    refusals.check();
    eprintln!("harness: {keys} keys, {bytes} bytes (bound {bound}); {refusals:?}");
}

/// The engine, one worker, with the in-memory store: the same requests, answered as
/// recorded, leave exactly the keys the policy created before traffic, each no bigger
/// than a slot's two entries.
#[test]
#[ignore = "two million requests, a minute in a debug build: `make flood`"]
fn a_million_flooding_keys_leave_the_store_at_its_documented_bound() {
    flood_the_engine(MILLION);
}

#[test]
fn a_flood_overflowing_small_tables_leaves_the_store_at_its_documented_bound() {
    flood_the_engine(SMALL);
}

fn flood_the_engine(scale: Scale) {
    let text = policy_text(scale);
    let policy = Policy::from_json(&text).unwrap();
    let store = MemoryStore::new();
    let keys: Vec<String> = policy.state_keys().collect();
    for key in &keys {
        store.set(key, b"", None).unwrap();
    }
    // README `state.slots`: each table is `slots` keys (4096 by default) of two entries.
    assert_eq!(
        keys.len(),
        table_keys(scale),
        "the bank's tables at {scale:?}"
    );
    let bound = keys.len() * SLOT_VALUE_BYTES;

    let mut refusals = Refusals::default();
    let mut attempts = [0; 2];
    for (who, record) in traffic(scale) {
        let now = record.time_ns.unwrap() as u64 / 1_000_000;
        let req = &record.request;
        let source = record.source.as_deref();
        let request = Request {
            method: &req.method,
            authority: &req.authority,
            path: &req.path,
            headers: &req.headers,
            source_address: source,
            peer_uri_san: record.peer_uri_san.as_deref(),
            reference: "flood",
        };
        let (mut stream, mut verdict) = policy.on_request(&request, &now, &store);
        if verdict == Verdict::ReadBody {
            verdict = policy.on_request_body(&mut stream, &req.body, true, &now, &store);
        }
        let refused_by = matches!(&verdict, Verdict::Reply(reply) if reply.status == 429)
            .then(|| stream.decision().control.map(|c| c.as_str().to_owned()))
            .flatten();
        if !matches!(verdict, Verdict::Reply(_)) && stream.wants_response() {
            let response = record.response.as_ref().unwrap();
            let answer = Response {
                status: response.status,
                headers: &response.headers,
            };
            let read = stream.needs_response_headers().then_some(&answer);
            policy.on_response(&mut stream, read, &now, &store, &mut Vec::new());
        }
        refusals.note(who, &mut attempts, refused_by);
    }
    assert_eq!(store.len(), keys.len(), "the flood created keys of its own");
    let bytes: usize = keys
        .iter()
        .map(|k| store.get(k).unwrap().map_or(0, |(v, _)| v.len()))
        .sum();
    assert!(bytes <= bound, "{bytes} bytes of values, over {bound}");
    refusals.check();
    eprintln!(
        "engine: {bytes} bytes in {} keys (bound {bound}); {refusals:?}",
        keys.len()
    );
}
