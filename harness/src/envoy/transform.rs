//! The transforms that let a recording run through a real Envoy in real time, applied
//! identically to what Envoy and the harness get:
//!
//! - **Time scale**: a recording spans minutes or hours of virtual time. Every duration
//!   of the policy is divided by the factor ([`scale_policy`]) and so are the gaps
//!   between the records' timestamps ([`Schedule`]), so windows, lockouts, idle
//!   timeouts, delays and quotas expire after the same requests as they would unscaled.
//! - **Client identity**: every request reaches Envoy from 127.0.0.1, so a policy that
//!   keys on the socket peer would see one client. [`forward_identity`] appends the
//!   recorded peer to `x-forwarded-for` and raises `identity.client_ip.trusted_hops` by
//!   one: the client IP the policy then picks is the one it picked from the recording.
//! - **Record marker**: [`mark`] adds `x-stakeguard-record: <index>` so the upstream can
//!   answer with that record's response and the access log line can be joined to it.

use serde_json::{Map, Value};

use super::upstream::RECORD_HEADER;
use crate::traffic::Record;

/// Policy fields that hold durations (the engine's `duration(...)` fields).
const DURATION_KEYS: [&str; 10] = [
    "window",
    "lockout",
    "per",
    "idle_timeout",
    "absolute_timeout",
    "delay",
    "max_delay",
    "max_age",
    "timeout",
    "dedupe_window",
];

/// Durations the engine assumes when a policy leaves them out, by the object holding
/// them: they must be scaled too, so the transform writes them in, where they take
/// effect (the policy refuses a setting that has none, such as a login `delay` without a
/// `delay` action).
const DEFAULTS: [(&str, &str, &str, Applies); 4] = [
    ("login", "delay", "1s", delays),
    ("login", "max_delay", "30s", delays),
    ("alertmanager", "timeout", "1s", always),
    ("alertmanager", "dedupe_window", "5m", always),
];

/// Whether a default applies to the object that would hold it.
type Applies = fn(&Map<String, Value>) -> bool;

fn always(_: &Map<String, Value>) -> bool {
    true
}

/// Whether a login block delays: its `action`, or its client-IP key's, is `delay`.
fn delays(login: &Map<String, Value>) -> bool {
    let delay = |m: &Map<String, Value>| m.get("action").and_then(Value::as_str) == Some("delay");
    delay(login)
        || login
            .get("client_ip")
            .and_then(Value::as_object)
            .is_some_and(delay)
}

/// A duration divided by `factor`, in whole milliseconds and never zero (the engine
/// refuses a zero duration).
fn scaled(text: &str, factor: f64) -> Option<String> {
    let ms = stakeguard_policies::units::parse_duration(text)?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "durations are far below 2^52 ms; the result is rounded and clamped to >= 1"
    )]
    let out = ((ms as f64 / factor).round() as u64).max(1);
    Some(format!("{out}ms"))
}

/// The policy with every duration divided by `factor` (defaults written in first).
pub fn scale_policy(policy: &Value, factor: f64) -> Value {
    let mut out = policy.clone();
    scale_value(&mut out, None, factor);
    out
}

fn scale_value(value: &mut Value, key: Option<&str>, factor: f64) {
    match value {
        Value::Object(map) => {
            if let Some(key) = key {
                for (holder, field, default, applies) in DEFAULTS {
                    if holder == key && !map.contains_key(field) && applies(map) {
                        map.insert(field.to_owned(), Value::String(default.to_owned()));
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if DURATION_KEYS.contains(&k.as_str())
                    && let Value::String(text) = v
                    && let Some(new) = scaled(text, factor)
                {
                    *text = new;
                } else {
                    scale_value(v, Some(k), factor);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                scale_value(item, key, factor);
            }
        }
        _ => {}
    }
}

/// Raises `identity.client_ip.trusted_hops` by one (creating the path), to go with
/// [`forward_identity`] on every record.
pub fn trust_one_more_hop(policy: &mut Value) {
    let client_ip = policy
        .as_object_mut()
        .and_then(|root| object_at(root, "identity"))
        .and_then(|identity| object_at(identity, "client_ip"));
    if let Some(client_ip) = client_ip {
        let hops = client_ip
            .get("trusted_hops")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        client_ip.insert(
            "trusted_hops".to_owned(),
            Value::from(hops.saturating_add(1)),
        );
    }
}

/// The object under `key`, created (or replacing a non-object) when needed.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The IP of an `ip:port` or `[v6]:port` address.
pub fn address_ip(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match address.rsplit_once(':') {
        // `a:b:c` without brackets is a bare IPv6 address.
        Some((ip, _)) if !ip.contains(':') => ip,
        _ => address,
    }
}

/// The client a record without a recorded peer stands for: such records share one
/// client, as they share the missing peer in a plain replay.
pub const UNRECORDED_PEER: &str = "0.0.0.0";

/// Appends the record's recorded peer (or [`UNRECORDED_PEER`]) to its `x-forwarded-for`,
/// as the trusted proxy in front would, so the policy's client IP survives the socket
/// peer becoming 127.0.0.1.
pub fn forward_identity(record: &mut Record) {
    let ip = record
        .source
        .as_deref()
        .map_or(UNRECORDED_PEER, address_ip)
        .to_owned();
    let headers = &mut record.request.headers;
    match headers
        .iter_mut()
        .rfind(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
    {
        Some((_, value)) => *value = format!("{value}, {ip}"),
        None => headers.push(("x-forwarded-for".to_owned(), ip)),
    }
}

/// Adds the record marker header (the record's index).
pub fn mark(record: &mut Record, index: usize) {
    record
        .request
        .headers
        .push((RECORD_HEADER.to_owned(), index.to_string()));
}

/// When each record is due, relative to the first, with the recording's gaps divided by
/// the time scale. A record without a time is due with the previous one; the clock never
/// goes backwards (as in the harness).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Offsets from the start, in nanoseconds, one per record.
    pub offsets_ns: Vec<u64>,
}

impl Schedule {
    /// The schedule of `records` at `factor`.
    pub fn new(records: &[Record], factor: f64) -> Self {
        let first = records.iter().find_map(|r| r.time_ns);
        let mut last = 0u64;
        let offsets_ns = records
            .iter()
            .map(|r| {
                if let (Some(t), Some(first)) = (r.time_ns, first) {
                    let gap = t.saturating_sub(first).max(0);
                    #[expect(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        clippy::cast_precision_loss,
                        reason = "non-negative nanoseconds well within f64's range"
                    )]
                    let scaled = (gap as f64 / factor) as u64;
                    last = last.max(scaled);
                }
                last
            })
            .collect();
        Self { offsets_ns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_divided_and_defaults_written_in() {
        let policy = serde_json::json!({
            "tiers": {"t": {"login": {"window": "15m", "lockout": "30m", "action": "delay"},
                            "rate_limit": {"per": "1m", "requests": 5},
                            "session": {"idle_timeout": "10m"}},
                      "b": {"login": {"window": "15m"}}},
            "notify": {"alertmanager": {"cluster": "am", "timeout": "250ms"}},
            "apis": [{"quotas": [{"per": "1d"}], "lifecycle": {"sunset": "2027-03-31T00:00:00Z"}}],
            "revision": "1"
        });
        let out = scale_policy(&policy, 60.0);
        assert_eq!(out["tiers"]["t"]["login"]["window"], "15000ms");
        assert_eq!(out["tiers"]["t"]["login"]["delay"], "17ms");
        // A login that does not delay gets no delay (the policy would refuse it).
        assert_eq!(out["tiers"]["b"]["login"].get("delay"), None);
        assert_eq!(out["tiers"]["t"]["rate_limit"]["per"], "1000ms");
        assert_eq!(out["notify"]["alertmanager"]["timeout"], "4ms");
        assert_eq!(out["notify"]["alertmanager"]["dedupe_window"], "5000ms");
        assert_eq!(out["apis"][0]["quotas"][0]["per"], "1440000ms");
        assert_eq!(
            out["apis"][0]["lifecycle"]["sunset"],
            "2027-03-31T00:00:00Z"
        );
        assert_eq!(out["revision"], "1");
    }

    #[test]
    fn one_more_trusted_hop_carries_the_recorded_peer() {
        let mut policy = serde_json::json!({"identity": {"client_ip": {"trusted_hops": 0}}});
        trust_one_more_hop(&mut policy);
        assert_eq!(policy["identity"]["client_ip"]["trusted_hops"], 1);
        let mut bare = serde_json::json!({});
        trust_one_more_hop(&mut bare);
        assert_eq!(bare["identity"]["client_ip"]["trusted_hops"], 1);

        let mut record = Record {
            source: Some("203.0.113.10:3456".into()),
            ..Record::default()
        };
        forward_identity(&mut record);
        assert_eq!(
            record.request.headers,
            vec![("x-forwarded-for".to_string(), "203.0.113.10".to_string())]
        );
        record.source = Some("[2001:db8::1]:80".into());
        forward_identity(&mut record);
        assert_eq!(record.request.headers[0].1, "203.0.113.10, 2001:db8::1");
        record.source = None;
        forward_identity(&mut record);
        assert_eq!(
            record.request.headers[0].1,
            "203.0.113.10, 2001:db8::1, 0.0.0.0"
        );
    }

    #[test]
    fn schedules_divide_the_gaps_and_never_go_back() {
        let at = |s: i64| Record {
            time_ns: Some(s * 1_000_000_000),
            ..Record::default()
        };
        let records = vec![at(100), at(160), Record::default(), at(130), at(220)];
        let schedule = Schedule::new(&records, 60.0);
        assert_eq!(
            schedule.offsets_ns,
            vec![
                0,
                1_000_000_000,
                1_000_000_000,
                1_000_000_000,
                2_000_000_000
            ]
        );
    }
}
