//! An in-memory rate limit service speaking Envoy's RLS v3 API
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), so that a replay shows
//! what a fleet counting in one service does, deterministically on the virtual clock.
//!
//! It counts as envoyproxy/ratelimit does: fixed windows aligned on the epoch, every
//! descriptor's hits added (over the limit too), OVER_LIMIT when the count after the hits
//! exceeds the limit. A descriptor's limit is the one in the request
//! (`RateLimitDescriptor.limit`) or, without one, the policy's generated limit for its
//! `api` and `control` entries (what `stakeguard ratelimit-config` writes); a descriptor
//! with neither is not limited. The request is decoded here, not by the engine's codec,
//! so a mistake in one does not hide in the other.
//!
//! One service serves every worker of a session (and every cluster answered by it), as
//! one service serves every proxy of a fleet.

use std::collections::HashMap;

/// A limit the service knows without the request naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredLimit {
    /// The rate limit domain.
    pub domain: String,
    /// The descriptor's `api` entry.
    pub api: String,
    /// The descriptor's `control` entry.
    pub control: String,
    /// Hits allowed per window.
    pub requests: u32,
    /// The window.
    pub window_ms: u64,
}

/// A counter's identity: the domain, the descriptor's entries and the window.
type CounterKey = (String, Vec<(String, String)>, u64);

/// The service's counters.
#[derive(Debug, Default)]
pub struct RateLimitService {
    limits: Vec<ConfiguredLimit>,
    /// (domain, entries, window) to (window start, count).
    counters: HashMap<CounterKey, (u64, u64)>,
    /// Calls answered.
    pub calls: u64,
}

/// A protobuf field of a message read here.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, or why it is not one.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first().ok_or("truncated varint")?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than ten bytes".to_string())
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).map_err(|e| e.to_string())?;
                if len > bytes.len() {
                    return Err(format!("field {} longer than the message", key >> 3));
                }
                let (head, rest) = bytes.split_at(len);
                bytes = rest;
                Field::Bytes(head)
            }
            wire => return Err(format!("wire type {wire} where RLS has none")),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".to_string())
}

/// The window of an `envoy.type.v3.RateLimitUnit`, in milliseconds.
fn unit_ms(unit: u64) -> Option<u64> {
    match unit {
        1 => Some(1_000),
        2 => Some(60_000),
        3 => Some(3_600_000),
        4 => Some(86_400_000),
        7 => Some(7 * 86_400_000),
        _ => None,
    }
}

/// The unit of a window, for the answer's `current_limit` (0, UNKNOWN, for windows that
/// are none).
fn unit_of(window_ms: u64) -> u64 {
    (1..=7)
        .find(|u| unit_ms(*u) == Some(window_ms))
        .unwrap_or(0)
}

struct Descriptor {
    entries: Vec<(String, String)>,
    limit: Option<(u32, u64)>,
    hits: Option<u64>,
}

fn descriptor(bytes: &[u8]) -> Result<Descriptor, String> {
    let mut d = Descriptor {
        entries: Vec::new(),
        limit: None,
        hits: None,
    };
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(entry)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for (n, f) in fields(entry)? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => key = text(b)?,
                        (2, Field::Bytes(b)) => value = text(b)?,
                        _ => {}
                    }
                }
                d.entries.push((key, value));
            }
            (2, Field::Bytes(limit)) => {
                let (mut requests, mut unit) = (0u64, 0u64);
                for (n, f) in fields(limit)? {
                    match (n, f) {
                        (1, Field::Varint(v)) => requests = v,
                        (2, Field::Varint(v)) => unit = v,
                        _ => {}
                    }
                }
                let window = unit_ms(unit).ok_or(format!("limit unit {unit}"))?;
                d.limit = Some((u32::try_from(requests).map_err(|e| e.to_string())?, window));
            }
            (3, Field::Bytes(wrapper)) => {
                let mut hits = 0;
                for (n, f) in fields(wrapper)? {
                    if let (1, Field::Varint(v)) = (n, f) {
                        hits = v;
                    }
                }
                d.hits = Some(hits);
            }
            _ => {}
        }
    }
    Ok(d)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, number: u64, field: Field<'_>) {
    match field {
        Field::Varint(v) => {
            put_varint(out, number << 3);
            put_varint(out, v);
        }
        Field::Bytes(b) => {
            put_varint(out, (number << 3) | 2);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }
}

impl RateLimitService {
    /// A service that knows these limits besides the ones requests carry.
    pub fn new(limits: Vec<ConfiguredLimit>) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Answers one `RateLimitRequest` at `now_ms`: the `RateLimitResponse`, or why the
    /// request is not one (the caller answers INVALID_ARGUMENT).
    pub fn answer(&mut self, request: &[u8], now_ms: u64) -> Result<Vec<u8>, String> {
        let mut domain = String::new();
        let mut hits_addend = 0u64;
        let mut descriptors = Vec::new();
        for (number, field) in fields(request)? {
            match (number, field) {
                (1, Field::Bytes(b)) => domain = text(b)?,
                (2, Field::Bytes(b)) => descriptors.push(descriptor(b)?),
                (3, Field::Varint(v)) => hits_addend = v,
                _ => {}
            }
        }
        if domain.is_empty() || descriptors.is_empty() {
            return Err("a request needs a domain and a descriptor".to_string());
        }
        self.calls += 1;
        let mut any_over = false;
        let mut statuses = Vec::new();
        for d in descriptors {
            let entry = |key: &str| {
                d.entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let configured = self.limits.iter().find(|l| {
                l.domain == domain
                    && entry("api") == Some(l.api.as_str())
                    && entry("control") == Some(l.control.as_str())
            });
            let limit = d
                .limit
                .or_else(|| configured.map(|l| (l.requests, l.window_ms)));
            let mut status = Vec::new();
            let Some((requests, window_ms)) = limit else {
                put_field(&mut status, 1, Field::Varint(1));
                statuses.push(status);
                continue;
            };
            let hits = d.hits.unwrap_or(hits_addend.max(1));
            let start = now_ms - now_ms % window_ms.max(1);
            let counter = self
                .counters
                .entry((domain.clone(), d.entries.clone(), window_ms))
                .or_insert((start, 0));
            if counter.0 != start {
                *counter = (start, 0);
            }
            counter.1 = counter.1.saturating_add(hits);
            let over = counter.1 > u64::from(requests);
            any_over |= over;
            let reset_ms = start + window_ms - now_ms;
            let mut current = Vec::new();
            put_field(&mut current, 1, Field::Varint(u64::from(requests)));
            put_field(&mut current, 2, Field::Varint(unit_of(window_ms)));
            let mut reset = Vec::new();
            put_field(&mut reset, 1, Field::Varint(reset_ms / 1_000));
            put_field(&mut reset, 2, Field::Varint((reset_ms % 1_000) * 1_000_000));
            put_field(&mut status, 1, Field::Varint(if over { 2 } else { 1 }));
            put_field(&mut status, 2, Field::Bytes(&current));
            put_field(
                &mut status,
                3,
                Field::Varint(u64::from(requests).saturating_sub(counter.1)),
            );
            put_field(&mut status, 4, Field::Bytes(&reset));
            statuses.push(status);
        }
        let mut out = Vec::new();
        put_field(&mut out, 1, Field::Varint(if any_over { 2 } else { 1 }));
        for status in &statuses {
            put_field(&mut out, 2, Field::Bytes(status));
        }
        Ok(out)
    }
}

/// The formats `stakeguard ratelimit-config` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// envoyproxy/ratelimit's configuration: one domain, descriptors `api` > `control` >
    /// `key` (each key counted on its own), windows of one unit.
    EnvoyRatelimit,
    /// Limitador's limits file: a namespace per domain, conditions on each descriptor's
    /// `api` and `control` entries (as `descriptors[0]`: each descriptor is checked on its
    /// own), the `key` entry as the variable, any whole seconds.
    Limitador,
}

/// The service configuration of a policy's service-counted controls, as YAML; an error
/// says why the format cannot hold them.
pub fn service_config(
    limits: &[stakeguard_policies::ServiceLimit],
    format: ConfigFormat,
    revision: &str,
) -> Result<String, String> {
    use serde_json::{Value, json};
    if limits.is_empty() {
        return Err(
            "the policy counts no control in a rate limit service; set `counters` (see the README)"
                .to_string(),
        );
    }
    let header = format!(
        "# Generated by `stakeguard ratelimit-config` from policy revision {revision}.\n\
         # Login and quota limits are the threshold minus one: the service says OVER_LIMIT\n\
         # when a count exceeds the limit, and the threshold is where the key is refused.\n"
    );
    let document: Value = match format {
        ConfigFormat::EnvoyRatelimit => {
            let Some(domain) = limits.first().map(|l| &l.domain) else {
                return Err("no limits".to_string());
            };
            if let Some(other) = limits.iter().find(|l| &l.domain != domain) {
                return Err(format!(
                    "the policy counts in two domains (`{domain}`, `{}`) and envoyproxy/ratelimit takes one per file; give every `counters.service` one `domain`",
                    other.domain
                ));
            }
            let mut apis: Vec<(String, Vec<Value>)> = Vec::new();
            for limit in limits {
                let unit = stakeguard_policies::rls::Unit::of_window(limit.window_ms).ok_or_else(|| {
                    format!(
                        "{} {}: a window of {} ms is no unit envoyproxy/ratelimit counts in (second, minute, hour, day); use --format limitador, or a window of one unit",
                        limit.api, limit.control, limit.window_ms
                    )
                })?;
                let control = json!({
                    "key": "control",
                    "value": limit.control,
                    "descriptors": [{
                        "key": "key",
                        "rate_limit": { "unit": unit.name(), "requests_per_unit": limit.requests },
                    }],
                });
                match apis.iter_mut().find(|(api, _)| *api == limit.api) {
                    Some((_, controls)) => controls.push(control),
                    None => apis.push((limit.api.clone(), vec![control])),
                }
            }
            json!({
                "domain": domain,
                "descriptors": apis
                    .into_iter()
                    .map(|(api, controls)| json!({ "key": "api", "value": api, "descriptors": controls }))
                    .collect::<Vec<_>>(),
            })
        }
        ConfigFormat::Limitador => Value::Array(
            limits
                .iter()
                .map(|limit| {
                    json!({
                        "namespace": limit.domain,
                        "name": format!("{} {}: {}", limit.api, limit.control, limit.counts),
                        "max_value": limit.requests,
                        "seconds": limit.window_ms.div_ceil(1_000),
                        "conditions": [
                            format!("descriptors[0]['api'] == '{}'", limit.api.replace('\\', "\\\\").replace('\'', "\\'")),
                            format!("descriptors[0]['control'] == '{}'", limit.control.replace('\\', "\\\\").replace('\'', "\\'")),
                        ],
                        "variables": ["descriptors[0]['key']"],
                    })
                })
                .collect(),
        ),
    };
    let yaml = serde_norway::to_string(&document).map_err(|e| e.to_string())?;
    Ok(format!("{header}{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stakeguard_policies::rls::{self, Code, Descriptor as Question, Unit};

    fn ask(
        service: &mut RateLimitService,
        hits: u64,
        limit: Option<(u32, Unit)>,
        now: u64,
    ) -> rls::Answer {
        let entries = [("api", "a@v1"), ("control", "rate_limit"), ("key", "k")];
        let mut request = Vec::new();
        rls::encode_request(
            "d",
            &[Question {
                entries: &entries,
                limit,
                hits,
            }],
            &mut request,
            &mut Vec::new(),
        );
        rls::decode_response(&service.answer(&request, now).unwrap()).unwrap()
    }

    #[test]
    fn a_limit_in_the_request_lets_that_many_through_per_window() {
        let mut service = RateLimitService::default();
        let over: Vec<bool> = (0..4)
            .map(|_| {
                ask(&mut service, 1, Some((3, Unit::Minute)), 61_000).overall == Code::OverLimit
            })
            .collect();
        assert_eq!(over, [false, false, false, true]);
        let last = ask(&mut service, 0, Some((3, Unit::Minute)), 61_000);
        assert_eq!(last.statuses[0].reset_ms, Some(59_000));
        // The next window starts afresh.
        assert_eq!(
            ask(&mut service, 1, Some((3, Unit::Minute)), 120_000).overall,
            Code::Ok
        );
    }

    #[test]
    fn a_configured_limit_applies_when_the_request_has_none() {
        let mut service = RateLimitService::new(vec![ConfiguredLimit {
            domain: "d".into(),
            api: "a@v1".into(),
            control: "rate_limit".into(),
            requests: 1,
            window_ms: 900_000,
        }]);
        assert_eq!(ask(&mut service, 1, None, 0).overall, Code::Ok);
        let answer = ask(&mut service, 1, None, 1_000);
        assert_eq!(answer.overall, Code::OverLimit);
        assert_eq!(answer.statuses[0].reset_ms, Some(899_000));
    }

    #[test]
    fn nonsense_is_refused() {
        let mut service = RateLimitService::default();
        assert!(service.answer(&[0x0a, 9], 0).is_err());
        assert!(service.answer(&[], 0).is_err());
    }
}
