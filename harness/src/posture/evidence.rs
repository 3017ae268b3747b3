//! What only a replay's per-request entries tell, beyond the module's counters: decisions
//! over time per API, the shadow endpoints requested, and who still calls deprecated or
//! retired versions.
//!
//! Each entry is attributed by its published decision (`api=... control=... outcome=...`).
//! The filter publishes nothing for a plain allowed request, so those are placed by the
//! engine's own route index ([`Policy::route_of`], read-only, as `discover` does): the
//! module decided, the index only says which API the request was for.

use std::collections::BTreeMap;

use stakeguard_policies::{Policy, RouteOf};

use super::{Activity, Caller, PostureReport, ShadowEndpoint, Source, Timeline, api_index};
use crate::abi::LogLevel;
use crate::replay::HarnessConfig;
use crate::report::{Entry, Report, decision_fields};
use crate::traffic::Record;
use crate::traffic::time::format_rfc3339;

/// About this many buckets across the recording.
const BUCKETS: u64 = 24;

/// Bucket widths a reader takes in at a glance, in milliseconds.
const WIDTHS_MS: [u64; 17] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
];

/// The events that name a caller of a deprecated or retired version.
const LIFECYCLE_EVENTS: [&str; 2] = ["deprecated_api_called", "retired_api_called"];

/// A replay's configuration for a report: the module's event lines are read for callers
/// and shadow endpoints, and stakeguard logs the events that are no incident at debug,
/// so the replay must keep debug lines.
pub fn for_report(config: HarnessConfig) -> HarnessConfig {
    HarnessConfig {
        log_level: config.log_level.min(LogLevel::Debug),
        ..config
    }
}

/// The replay's source: its files and the recorded time span.
pub(super) fn replay_source(records: &[Record], files: &[String]) -> Source {
    let times = || records.iter().filter_map(|r| r.time_ns);
    let text = |t: Option<i64>| t.map(format_rfc3339).unwrap_or_default();
    Source::Replay {
        files: files.to_vec(),
        from: text(times().min()),
        to: text(times().max()),
    }
}

/// Where an entry's request belongs and what happened to it.
struct Attributed {
    /// The policy's API, or none for requests no API claims.
    api: Option<usize>,
    control: String,
    outcome: String,
}

fn attribute(report: &PostureReport, policy: &Policy, entry: &Entry) -> Option<Attributed> {
    match &entry.decision {
        Some(decision) => {
            let fields = decision_fields(decision);
            let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("none");
            // A decision naming an API this policy lacks is noted from the counters.
            let api = api_index(&report.apis, field("api"), field("version")).ok()?;
            Some(Attributed {
                api,
                control: field("control").to_owned(),
                outcome: field("outcome").to_owned(),
            })
        }
        None => {
            let api = match policy.route_of(&entry.authority, &entry.path, &entry.method) {
                RouteOf::Api { api, .. } | RouteOf::MethodNotAllowed(api) => Some(api),
                RouteOf::Unknown | RouteOf::Ambiguous => None,
            };
            Some(Attributed {
                api,
                control: "none".to_owned(),
                outcome: "allowed".to_owned(),
            })
        }
    }
}

/// Adds the timelines, shadow endpoints and deprecated callers of a replay to a report
/// that already holds its counters.
pub(super) fn apply_replay(
    report: &mut PostureReport,
    policy: &Policy,
    records: &[Record],
    replay: &Report,
) {
    let timeline = timeline(replay);
    let start_ns = timeline.as_ref().map_or(0, |(_, start)| *start);
    let timeline = timeline.map(|(t, _)| t);
    let mut endpoints: BTreeMap<(String, String, String), ShadowEndpoint> = BTreeMap::new();
    // Callers per API: key -> caller.
    let mut callers: BTreeMap<usize, BTreeMap<String, Caller>> = BTreeMap::new();
    for entry in &replay.entries {
        let Some(at) = attribute(report, policy, entry) else {
            continue;
        };
        if let Some(t) = &timeline {
            let bucket = bucket_of(t, start_ns, entry.time.0);
            let activity = match at.api {
                Some(i) => report.apis.get_mut(i).and_then(|a| a.activity.as_mut()),
                None => report.shadow.activity.as_mut(),
            };
            if let Some(activity) = activity {
                add_to_timeline(activity, &at.outcome, bucket, t.buckets);
            }
        }
        if at.api.is_none() && matches!(at.control.as_str(), "unknown_route" | "none") {
            let path = entry.path.split('?').next().unwrap_or_default().to_owned();
            let key = (
                entry.authority.to_string(),
                path.clone(),
                entry.method.to_string(),
            );
            let endpoint = endpoints.entry(key).or_insert_with(|| ShadowEndpoint {
                method: entry.method.to_string(),
                authority: entry.authority.to_string(),
                path,
                requests: 0,
                outcomes: BTreeMap::new(),
            });
            endpoint.requests += 1;
            *endpoint.outcomes.entry(at.outcome.clone()).or_default() += 1;
        }
        for (api, key) in lifecycle_callers(report, entry) {
            let record = records.get(entry.index);
            let caller = callers
                .entry(api)
                .or_default()
                .entry(key.clone())
                .or_insert_with(|| Caller {
                    key,
                    requests: 0,
                    clients: Vec::new(),
                    user_agents: Vec::new(),
                });
            caller.requests += 1;
            let client = record.and_then(|r| r.source.as_deref()).map(client_address);
            let agent = record.and_then(|r| {
                r.request
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
                    .map(|(_, v)| v.clone())
            });
            for (list, value) in [
                (&mut caller.clients, client),
                (&mut caller.user_agents, agent),
            ] {
                if let Some(value) = value
                    && !list.contains(&value)
                {
                    list.push(value);
                }
            }
        }
    }
    for (i, by_key) in callers {
        if let Some(activity) = report.apis.get_mut(i).and_then(|a| a.activity.as_mut()) {
            let mut list: Vec<Caller> = by_key.into_values().collect();
            // The heaviest callers first: those are the ones to call before the sunset.
            list.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.key.cmp(&b.key)));
            activity.deprecated_callers = list;
        }
    }
    let mut endpoints: Vec<ShadowEndpoint> = endpoints.into_values().collect();
    endpoints.sort_by_key(|e| std::cmp::Reverse(e.requests));
    report.shadow.endpoints = endpoints;
    report.timeline = timeline;
}

/// The API and caller key of each lifecycle event in an entry's logs (JSON after the
/// level, as the filter writes them).
fn lifecycle_callers(report: &PostureReport, entry: &Entry) -> Vec<(usize, String)> {
    entry
        .logs
        .iter()
        .filter_map(|line| {
            let (_, json) = line.split_once(": ")?;
            let event: serde_json::Value = serde_json::from_str(json).ok()?;
            let text = |k: &str| event.get(k).and_then(serde_json::Value::as_str);
            if !LIFECYCLE_EVENTS.contains(&text("event")?) {
                return None;
            }
            let api = api_index(&report.apis, text("api")?, text("version")?).ok()??;
            Some((api, text("key")?.to_owned()))
        })
        .collect()
}

/// `203.0.113.10:39367` -> `203.0.113.10`; `[2001:db8::1]:443` -> `2001:db8::1`.
fn client_address(source: &str) -> String {
    if let Some(rest) = source.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match source.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.to_owned()
        }
        _ => source.to_owned(),
    }
}

/// Buckets of a round width covering the replayed times, and the first one's start in
/// nanoseconds; none for an empty replay.
fn timeline(replay: &Report) -> Option<(Timeline, i64)> {
    let first = replay.entries.iter().map(|e| e.time.0).min()?;
    let last = replay.entries.iter().map(|e| e.time.0).max()?;
    let span_ms = u64::try_from((last - first) / 1_000_000).unwrap_or(0);
    let wanted = span_ms.div_ceil(BUCKETS);
    let width = WIDTHS_MS
        .iter()
        .copied()
        .find(|w| *w >= wanted)
        .unwrap_or_else(|| wanted.div_ceil(86_400_000) * 86_400_000);
    let width_ns = i64::try_from(width).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
    let start = first.div_euclid(width_ns) * width_ns;
    let buckets = usize::try_from((last - start) / width_ns + 1).unwrap_or(1);
    let timeline = Timeline {
        start: format_rfc3339(start),
        bucket_ms: width,
        buckets,
    };
    Some((timeline, start))
}

fn bucket_of(timeline: &Timeline, start: i64, time_ns: i64) -> usize {
    let width_ns = i64::try_from(timeline.bucket_ms)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    usize::try_from((time_ns - start) / width_ns.max(1)).unwrap_or(0)
}

fn add_to_timeline(activity: &mut Activity, outcome: &str, bucket: usize, buckets: usize) {
    let series = activity
        .timeline
        .entry(outcome.to_owned())
        .or_insert_with(|| vec![0; buckets]);
    if let Some(slot) = series.get_mut(bucket) {
        *slot += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_lose_their_ports() {
        assert_eq!(client_address("203.0.113.10:39367"), "203.0.113.10");
        assert_eq!(client_address("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(client_address("2001:db8::1"), "2001:db8::1");
    }
}
