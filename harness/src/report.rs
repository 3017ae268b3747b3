//! What a replay produced: one [`Entry`] per recorded request and a [`Summary`], with
//! the two renderings the CLI prints (a table for people, JSON Lines for machines and
//! golden files). JSON output is deterministic: no wall-clock time, maps sorted, fields
//! in a fixed order.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::traffic::time::{format_rfc3339, parse_rfc3339};

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request went upstream and the (possibly changed) response came back.
    Forwarded,
    /// The module answered with `proxy_send_local_response`.
    LocalReply,
    /// A callback trapped; the fail-open/fail-closed policy decided.
    Trapped,
    /// The stream was paused and nothing could resume it.
    Stalled,
    /// The module reset the stream (`proxy_close_stream`).
    Reset,
}

impl Outcome {
    /// The name printed in tables and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::LocalReply => "local_reply",
            Outcome::Trapped => "trapped",
            Outcome::Stalled => "stalled",
            Outcome::Reset => "reset",
        }
    }
}

/// One header the module added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderChange {
    /// What happened to the header.
    pub op: ChangeOp,
    /// Header name.
    pub name: Text,
    /// New value (none for `remove`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Text>,
}

/// What a [`HeaderChange`] did, written `add`, `remove` or `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// A value was appended.
    Add,
    /// Every value was removed.
    Remove,
    /// The values were replaced (the new ones joined with `, `).
    Set,
}

impl ChangeOp {
    /// The name written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Add => "add",
            ChangeOp::Remove => "remove",
            ChangeOp::Set => "set",
        }
    }
}

impl fmt::Display for ChangeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The local reply a module sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReplyReport {
    /// Status.
    pub status: u32,
    /// `response.code_details`.
    pub details: String,
    /// Body (lossy UTF-8, at most 256 bytes).
    pub body: String,
    /// For a gRPC request: the `grpc-status` of the trailers-only reply the client got
    /// (on HTTP 200; the body went as `grpc-message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
}

/// A body the module rewrote: enough to tell two rewrites apart without printing them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrittenBody {
    /// Its length in bytes.
    pub length: usize,
    /// The first 12 hex digits of its SHA-256 (compare with `sha256sum`).
    pub sha256: String,
    /// The whole body (lossy UTF-8), when the replay was asked to show bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl RewrittenBody {
    /// The report of `body`, with its text when `show` is set.
    pub fn of(body: &[u8], show: bool) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        let sha256 = digest
            .as_ref()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            length: body.len(),
            sha256,
            text: show.then(|| String::from_utf8_lossy(body).into_owned()),
        }
    }

    fn describe(&self) -> String {
        let mut out = format!("{} bytes sha256:{}", self.length, self.sha256);
        if let Some(text) = &self.text {
            out.push_str(&format!(" {text:?}"));
        }
        out
    }
}

/// A callout the module made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalloutReport {
    /// Cluster.
    pub cluster: String,
    /// `http`, `grpc` or `grpc_stream`.
    pub kind: String,
    /// `:method` (http) or `service/method` (gRPC).
    pub method: String,
    /// `:path` (http).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Request body size.
    pub body_size: usize,
    /// Start of the body (lossy UTF-8, at most 120 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body_preview: String,
    /// What the stub answered: a status, `timeout`, `reset`, or `none` (never answered).
    pub answer: String,
    /// The `grpc-status` a gRPC callout's stub answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Virtual milliseconds until the answer.
    pub after_ms: u64,
}

/// One replayed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Index in the replayed traffic.
    pub index: usize,
    /// Recorded start time.
    pub time: Time,
    /// The worker VM that ran it.
    pub worker: usize,
    /// `:method`.
    pub method: Text,
    /// `:authority`.
    pub authority: Text,
    /// `:path`.
    pub path: Text,
    /// How it ended.
    pub outcome: Outcome,
    /// The status the client saw (0: none).
    pub status: u32,
    /// Request header changes the module made before forwarding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_header_changes: Vec<HeaderChange>,
    /// Response header changes the module made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_header_changes: Vec<HeaderChange>,
    /// The request body that reached upstream, when the module changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_changed: Option<RewrittenBody>,
    /// The response body the client got, when the module changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body_changed: Option<RewrittenBody>,
    /// The local reply, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_reply: Option<LocalReplyReport>,
    /// Properties the module set (filter state), by path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// The published decision (`stakeguard.decision`), parsed as JSON when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
    /// Callouts made for this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callouts: Vec<CalloutReport>,
    /// Log lines of this request's context (`level: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// The trap and backtrace, if a callback trapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap: Option<String>,
    /// Host notes (VM restarts, ignored calls, defaults used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A point in virtual time, nanoseconds since the epoch, written as RFC 3339 UTC with
/// milliseconds: kept as a number, so a replay formats no dates, only its output does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub i64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format_rfc3339(self.0))
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_rfc3339(&text)
            .map(Time)
            .map_err(serde::de::Error::custom)
    }
}

/// Text shared, not copied: an entry's with the prepared record it came from, a header
/// map's between the maps a replay passes along and the changes reported (a reference
/// count each time); it reads, compares, prints and serializes as a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Arc<str>);

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(Arc::from(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Arc::from(text))
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

impl Entry {
    /// A short label of the decision: api, control and outcome/action when present.
    pub fn decision_label(&self) -> Option<String> {
        self.decision.as_ref().map(decision_label)
    }
}

/// The fields of a decision: a JSON object's members, or the `key=value` words of a
/// text decision (`api=login control=rate_limit outcome=blocked ref=...`).
pub fn decision_fields(value: &serde_json::Value) -> BTreeMap<String, String> {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        serde_json::Value::String(s) => s
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A short label for a decision value: api, version, control, mode and outcome (or
/// action) when present, the text itself otherwise.
pub fn decision_label(value: &serde_json::Value) -> String {
    let fields = decision_fields(value);
    let parts: Vec<&str> = ["api", "version", "control", "mode"]
        .iter()
        .filter_map(|k| fields.get(*k).map(String::as_str))
        .chain(
            fields
                .get("outcome")
                .or_else(|| fields.get("action"))
                .map(String::as_str),
        )
        .collect();
    if !parts.is_empty() {
        return parts.join(" ");
    }
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(80).collect()
}

/// The label of an incident metric: the `key.value` segments after an `incident`
/// segment as `key=value` words (`stakeguard.incident.api.login.version.v2.control.login
/// .severity.page` -> `api=login version=v2 control=login severity=page`); `None` for
/// other names. Metric names are all a module can publish generically, and this one
/// naming convention (Envoy's `stats_tags` read the same pairs) is enough to group them.
pub fn incident_label(metric: &str) -> Option<String> {
    let mut segments = metric.split('.');
    segments.by_ref().find(|s| *s == "incident")?;
    let rest: Vec<&str> = segments.collect();
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return None;
    }
    let words: Vec<String> = rest
        .chunks(2)
        .filter_map(|pair| match pair {
            [key, value] => Some(format!("{key}={value}")),
            _ => None,
        })
        .collect();
    Some(words.join(" "))
}

/// A metric's final value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricReport {
    /// counter, gauge or histogram.
    pub kind: String,
    /// Counter/gauge value; last recorded value for histograms.
    pub value: u64,
    /// Histogram sample count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
}

/// Totals over the replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests replayed.
    pub requests: usize,
    /// Count by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Count by published decision label (requests with a decision only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decisions: BTreeMap<String, u64>,
    /// Metrics the module defined, with final values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricReport>,
    /// Incidents counted by the module's metrics, by [`incident_label`] (counters named
    /// `<prefix>.incident.<key>.<value>...` with a non-zero value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incidents: BTreeMap<String, u64>,
    /// Log lines by level.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, u64>,
    /// Log lines written outside any request (start, ticks, callouts, queues).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_logs: Vec<String>,
    /// Traps outside any request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_traps: Vec<String>,
    /// Ticks fired.
    pub ticks: u64,
    /// Callouts made.
    pub callouts: u64,
    /// VM restarts after traps.
    pub vm_restarts: u64,
    /// Streams that stalled.
    pub stalled: u64,
}

/// A whole replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// One entry per request, in traffic order.
    pub entries: Vec<Entry>,
    /// Totals.
    pub summary: Summary,
}

/// The summary line of JSON Lines output.
#[derive(Debug, Serialize, Deserialize)]
pub struct SummaryLine {
    /// The summary.
    pub summary: Summary,
}

impl Report {
    /// JSON Lines: one entry per line, then `{"summary": ...}`.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
            out.push('\n');
        }
        let line = SummaryLine {
            summary: self.summary.clone(),
        };
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
        out
    }

    /// A table for people, then the summary.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>5} {:<24} {:>2} {:<7} {:<24} {:<32} {:<11} {:>6}  details",
            "#", "time", "w", "method", "host", "path", "outcome", "status"
        );
        for e in &self.entries {
            let mut details = Vec::new();
            if let Some(d) = e.decision_label() {
                details.push(format!("decision: {d}"));
            }
            for c in &e.request_header_changes {
                details.push(format!("req {}", change_text(c)));
            }
            for c in &e.response_header_changes {
                details.push(format!("resp {}", change_text(c)));
            }
            if let Some(grpc) = e.local_reply.as_ref().and_then(|r| r.grpc_status) {
                details.push(format!(
                    "grpc-status {grpc} {}",
                    crate::grpc::code_name(grpc)
                ));
            }
            if let Some(body) = &e.request_body_changed {
                details.push(format!("req body rewritten: {}", body.describe()));
            }
            if let Some(body) = &e.response_body_changed {
                details.push(format!("resp body rewritten: {}", body.describe()));
            }
            for c in &e.callouts {
                let grpc = c.grpc_status.map_or(String::new(), |g| {
                    format!(" grpc-status {g} {}", crate::grpc::code_name(g))
                });
                details.push(format!(
                    "callout {} {} {} -> {}{grpc}",
                    c.cluster, c.method, c.path, c.answer
                ));
            }
            if let Some(t) = &e.trap {
                details.push(format!("trap: {}", t.lines().next().unwrap_or("")));
            }
            details.extend(e.notes.iter().cloned());
            let _ = writeln!(
                out,
                "{:>5} {:<24} {:>2} {:<7} {:<24} {:<32} {:<11} {:>6}  {}",
                e.index,
                e.time,
                e.worker,
                e.method,
                clip(&e.authority, 24),
                clip(&e.path, 32),
                e.outcome.name(),
                e.status,
                details.join("; ")
            );
        }
        let s = &self.summary;
        let _ = writeln!(out, "\nsummary: {} requests", s.requests);
        let join = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(out, "  outcomes: {}", join(&s.outcomes));
        if !s.decisions.is_empty() {
            let _ = writeln!(out, "  decisions:");
            for (k, v) in &s.decisions {
                let _ = writeln!(out, "    {v:>6}  {k}");
            }
        }
        if !s.incidents.is_empty() {
            let _ = writeln!(out, "  incidents:");
            for (k, v) in &s.incidents {
                let _ = writeln!(out, "    {v:>6}  {k}");
            }
        }
        if !s.metrics.is_empty() {
            let _ = writeln!(out, "  metrics:");
            for (k, m) in &s.metrics {
                let _ = writeln!(out, "    {k} ({}) = {}", m.kind, m.value);
            }
        }
        let _ = writeln!(out, "  logs: {}", join(&s.logs));
        let _ = writeln!(
            out,
            "  ticks={} callouts={} vm_restarts={} stalled={}",
            s.ticks, s.callouts, s.vm_restarts, s.stalled
        );
        for t in &s.root_traps {
            let _ = writeln!(out, "  root trap: {t}");
        }
        out
    }
}

fn change_text(c: &HeaderChange) -> String {
    match (c.op, &c.value) {
        (ChangeOp::Remove, _) => format!("-{}", c.name),
        (ChangeOp::Add, Some(v)) => format!("+{}: {}", c.name, clip(v, 40)),
        (_, Some(v)) => format!("~{}: {}", c.name, clip(v, 40)),
        (_, None) => format!("~{}", c.name),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Whether two header names are equal: mostly the same shared text, otherwise short
/// names that differ from their first bytes, compared in line (a `memcmp` call costs
/// more than these few bytes).
fn same_name(a: &Text, b: &Text) -> bool {
    a.len() == b.len()
        && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a.bytes().zip(b.bytes()).all(|(x, y)| x == y))
}

/// The changes from `before` to `after`, by header name in order of appearance. A
/// change shares the name and the value it reports with `after`.
///
/// Maps are a handful of entries, so each name's values are found by scanning both
/// lists, and the two value lists are compared in one walk that also says which change
/// it is: equal (none), `before`'s values followed by more (`add` the rest, all of them
/// when there were none), none left (`remove`), anything else (`set`).
pub fn header_changes(before: &[(Text, Text)], after: &[(Text, Text)]) -> Vec<HeaderChange> {
    fn values<'l>(list: &'l [(Text, Text)], name: &'l Text) -> impl Iterator<Item = &'l Text> {
        list.iter()
            .filter(move |(k, _)| same_name(k, name))
            .map(|(_, v)| v)
    }
    if before == after {
        return Vec::new();
    }
    let all = || before.iter().chain(after);
    // Room for the most changes there can be (a name removed or set once, or added per
    // value), so the list never grows.
    let mut out = Vec::with_capacity(before.len() + after.len());
    for (i, (name, _)) in all().enumerate() {
        if all().take(i).any(|(k, _)| same_name(k, name)) {
            // Not the name's first appearance: its change is already out.
            continue;
        }
        let change = |op, value| HeaderChange {
            op,
            name: name.clone(),
            value,
        };
        let (mut b, mut a) = (values(before, name), values(after, name));
        let mut kept = 0;
        loop {
            match (b.next(), a.next()) {
                (None, None) => break,
                (Some(x), Some(y)) if x == y => kept += 1,
                (None, Some(first)) => {
                    out.push(change(ChangeOp::Add, Some(first.clone())));
                    out.extend(a.map(|v| change(ChangeOp::Add, Some(v.clone()))));
                    break;
                }
                (Some(_), None) if kept == 0 => {
                    out.push(change(ChangeOp::Remove, None));
                    break;
                }
                _ => {
                    let joined: Vec<&str> = values(after, name).map(|v| &**v).collect();
                    out.push(change(ChangeOp::Set, Some(Text::from(joined.join(", ")))));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (Text, Text) {
        (Text::from(k), Text::from(v))
    }

    #[test]
    fn header_changes_name_adds_removes_and_sets() {
        let before = vec![p("a", "1"), p("b", "2"), p("c", "3")];
        let after = vec![p("a", "1"), p("b", "x"), p("d", "4"), p("a", "5")];
        let changes = header_changes(&before, &after);
        let text: Vec<String> = changes.iter().map(change_text).collect();
        assert_eq!(text, vec!["+a: 5", "~b: x", "-c", "+d: 4"]);
    }

    #[test]
    fn header_changes_of_repeated_names_add_only_after_every_kept_value() {
        let before = vec![p("a", "1"), p("a", "2"), p("b", "1"), p("c", "1")];
        let after = vec![
            p("c", "1"),
            p("a", "1"),
            p("b", "2"),
            p("b", "1"),
            p("d", "1"),
            p("d", "2"),
            p("c", "2"),
        ];
        let changes = header_changes(&before, &after);
        let text: Vec<String> = changes.iter().map(change_text).collect();
        assert_eq!(text, vec!["~a: 1", "~b: 2, 1", "+c: 2", "+d: 1", "+d: 2"]);
        assert!(header_changes(&before, &before).is_empty());
    }

    #[test]
    fn decision_labels_pick_known_fields() {
        let v = serde_json::json!({"api": "login", "control": "rate_limit", "outcome": "block", "x": 1});
        assert_eq!(decision_label(&v), "login rate_limit block");
        assert_eq!(decision_label(&serde_json::json!("allow")), "allow");
        let text = serde_json::json!("api=login version=v2 control=login outcome=alerted ref=sg-1");
        assert_eq!(decision_label(&text), "login v2 login alerted");
    }

    #[test]
    fn incident_metrics_are_labelled_by_their_key_value_segments() {
        assert_eq!(
            incident_label("stakeguard.incident.api.login.version.v2.control.login.severity.page")
                .as_deref(),
            Some("api=login version=v2 control=login severity=page")
        );
        assert_eq!(incident_label("stakeguard.decision.api.login"), None);
        assert_eq!(incident_label("x.incident.api"), None);
        assert_eq!(incident_label("x.incident"), None);
    }
}
