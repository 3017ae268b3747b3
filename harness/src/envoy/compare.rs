//! Envoy's side and the harness's side of one recording, reduced to what both can say
//! the same way, and the records where they disagree.
//!
//! Compared per record: the outcome (`forwarded`, `local_reply`, `trapped`, `reset`),
//! the status the client saw, the `grpc-status` of a local reply to a gRPC request
//! (Envoy answers those as trailers-only gRPC responses), the response header changes
//! the filter made (on forwarded responses: the headers the client got against those the
//! upstream sent) and the published decision without its per-request `ref=`. A stream
//! that trapped under fail-open went on without the filter: both sides count it as
//! forwarded, since that is all the client (and Envoy's access log) can tell. Headers that Envoy itself owns on
//! the way out (`date`, framing) are left out of the header changes of both sides.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::replay::EnvoyResult;
use super::upstream::Reply;
use crate::report::{Entry, HeaderChange, Outcome, Text, header_changes};
use crate::traffic::Record;

/// Response headers Envoy writes or drops on its own, whatever the filter did: the date,
/// message framing and hop-by-hop headers, and the status pseudo-header (compared on its
/// own).
const ENVOY_OWNED: [&str; 6] = [
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    ":status",
];

/// One side's account of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `forwarded`, `local_reply`, `trapped`, `stalled` or `reset`.
    pub outcome: String,
    /// The status the client saw (0: none).
    pub status: u32,
    /// The `grpc-status` of a local reply to a gRPC request.
    pub grpc_status: Option<u32>,
    /// Response header changes (`+name: value`, `-name`, `~name: value`), forwarded
    /// responses only.
    pub header_changes: Vec<String>,
    /// The published decision without `ref=`, if any.
    pub decision: Option<String>,
}

/// A record on which the two sides disagree.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Record index.
    pub index: usize,
    /// `METHOD authority path`.
    pub request: String,
    /// Seconds since the first request (real, scaled time).
    pub at_s: f64,
    /// What Envoy did.
    pub envoy: Observation,
    /// What the harness did.
    pub harness: Observation,
}

/// The result of comparing one recording.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Records compared.
    pub compared: usize,
    /// Envoy's outcomes, counted (to see that a comparison was not vacuous).
    pub outcomes: BTreeMap<String, usize>,
    /// Records for which Envoy logged a published decision.
    pub decisions: usize,
    /// Records where the sides disagree.
    pub mismatches: Vec<Mismatch>,
    /// What may make a mismatch the setup's rather than the module's.
    pub caveats: Vec<String>,
}

fn change_text(c: &HeaderChange) -> String {
    match (c.op.as_str(), &c.value) {
        ("add", Some(v)) => format!("+{}: {v}", c.name),
        ("remove", _) => format!("-{}", c.name),
        (_, Some(v)) => format!("~{}: {v}", c.name),
        (op, None) => format!("{op} {}", c.name),
    }
}

fn kept(headers: &[(String, String)]) -> Vec<(Text, Text)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .filter(|(n, _)| !ENVOY_OWNED.contains(&n.as_str()))
        .map(|(n, v)| (Text::from(n), Text::from(v.as_str())))
        .collect()
}

/// A decision's text without the per-request reference (`ref=...` words, or a JSON
/// object's `ref`/`reference` member).
pub fn decision_text(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => {
            let mut map = map.clone();
            map.remove("ref");
            map.remove("reference");
            return Some(serde_json::Value::Object(map).to_string());
        }
        other => other.to_string(),
    };
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.starts_with("ref="))
        .collect();
    match words.join(" ") {
        t if t.is_empty() || t == "-" => None,
        t => Some(t),
    }
}

/// Envoy's account: the outcome from the access log's response code details
/// (`via_upstream` is a forwarded response, `wasm_fail_stream` a failed VM), the status
/// and headers the client got.
pub fn envoy_observation(reply: &Reply, result: &EnvoyResult) -> Observation {
    let details = result
        .access_log
        .as_ref()
        .and_then(|l| l.get("details"))
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    let decision = result
        .access_log
        .as_ref()
        .and_then(|l| l.get("decision"))
        .and_then(|d| {
            // A text decision is logged as a string; a JSON one may be parsed back.
            match d.as_str().map(serde_json::from_str::<serde_json::Value>) {
                Some(Ok(v @ serde_json::Value::Object(_))) => decision_text(&v),
                _ => decision_text(d),
            }
        });
    let Ok(response) = &result.response else {
        return Observation {
            outcome: "reset".to_owned(),
            status: 0,
            grpc_status: None,
            header_changes: Vec::new(),
            decision,
        };
    };
    let outcome = match details {
        "via_upstream" => "forwarded",
        d if d.starts_with("wasm_fail") => "trapped",
        _ => "local_reply",
    };
    let header_changes = match outcome {
        "forwarded" => header_changes(&kept(&reply.headers), &kept(&response.headers))
            .iter()
            .map(change_text)
            .collect(),
        _ => Vec::new(),
    };
    let grpc_status = match outcome {
        "forwarded" => None,
        _ => response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
            .and_then(|(_, v)| v.parse().ok()),
    };
    Observation {
        outcome: outcome.to_owned(),
        status: u32::from(response.status),
        grpc_status,
        header_changes,
        decision,
    }
}

/// The harness's account of the same record.
pub fn harness_observation(entry: &Entry) -> Observation {
    let went_on_without_filter =
        entry.outcome == Outcome::Trapped && entry.local_reply.is_none() && entry.status != 0;
    let outcome = match went_on_without_filter {
        true => "forwarded".to_owned(),
        false => entry.outcome.name().to_owned(),
    };
    let header_changes = match outcome.as_str() {
        "forwarded" => entry
            .response_header_changes
            .iter()
            .filter(|c| !ENVOY_OWNED.contains(&c.name.to_ascii_lowercase().as_str()))
            .map(|c| {
                change_text(&HeaderChange {
                    name: Text::from(c.name.to_ascii_lowercase()),
                    ..c.clone()
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Observation {
        outcome,
        status: entry.status,
        grpc_status: entry.local_reply.as_ref().and_then(|r| r.grpc_status),
        header_changes,
        decision: entry.decision.as_ref().and_then(decision_text),
    }
}

/// Compares the two sides record by record. `records` are the records as sent (marked),
/// `start_ns` the send time of the first.
pub fn compare(records: &[Record], envoy: &[EnvoyResult], harness: &[Entry]) -> Comparison {
    let start_ns = envoy.first().map(|r| r.sent_ns).unwrap_or_default();
    let mut out = Comparison::default();
    for (index, ((record, result), entry)) in records.iter().zip(envoy).zip(harness).enumerate() {
        let reply = super::upstream::recorded_reply(record);
        let e = envoy_observation(&reply, result);
        let h = harness_observation(entry);
        out.compared += 1;
        *out.outcomes.entry(e.outcome.clone()).or_default() += 1;
        out.decisions += usize::from(e.decision.is_some());
        if e != h {
            #[expect(clippy::cast_precision_loss, reason = "seconds for display only")]
            let at_s = result.sent_ns.saturating_sub(start_ns) as f64 / 1e9;
            out.mismatches.push(Mismatch {
                index,
                request: format!(
                    "{} {} {}",
                    record.request.method, record.request.authority, record.request.path
                ),
                at_s,
                envoy: e,
                harness: h,
            });
        }
    }
    out
}

impl Comparison {
    /// Every mismatch with both sides, field by field, and a closing count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for m in &self.mismatches {
            let _ = writeln!(out, "#{} +{:.3}s {}", m.index, m.at_s, m.request);
            let row = |out: &mut String, field: &str, e: String, h: String| {
                let mark = if e == h { " " } else { "!" };
                let _ = writeln!(out, "  {mark} {field:<9} envoy:   {e}");
                let _ = writeln!(out, "    {:<9} harness: {h}", "");
            };
            row(
                &mut out,
                "outcome",
                m.envoy.outcome.clone(),
                m.harness.outcome.clone(),
            );
            row(
                &mut out,
                "status",
                m.envoy.status.to_string(),
                m.harness.status.to_string(),
            );
            let grpc = |g: Option<u32>| g.map_or_else(|| "-".to_owned(), |g| g.to_string());
            row(
                &mut out,
                "grpc",
                grpc(m.envoy.grpc_status),
                grpc(m.harness.grpc_status),
            );
            row(
                &mut out,
                "headers",
                m.envoy.header_changes.join(" | "),
                m.harness.header_changes.join(" | "),
            );
            row(
                &mut out,
                "decision",
                m.envoy.decision.clone().unwrap_or_else(|| "-".to_owned()),
                m.harness.decision.clone().unwrap_or_else(|| "-".to_owned()),
            );
        }
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        for caveat in &self.caveats {
            let _ = writeln!(out, "note: {caveat}");
        }
        let _ = writeln!(
            out,
            "{} of {} records differ between Envoy and the harness (envoy: {}; {} decisions)",
            self.mismatches.len(),
            self.compared,
            outcomes.join(", "),
            self.decisions
        );
        out
    }
}
