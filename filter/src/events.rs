//! What the filter says about a request: the reference id, the published decision and
//! one structured JSON log line per engine event (incidents at warn, the rest at debug).

use std::borrow::Cow;

use stakeguard_policies::json::ObjectWriter;
use stakeguard_policies::{ApiId, Decision, Event, EventKind, Outcome, Policy};

/// The longest `x-request-id` taken as the reference.
const MAX_REFERENCE: usize = 64;

/// The reference of a request: its `x-request-id` when that is 1–64 characters of
/// `[A-Za-z0-9-]` (Envoy generates a UUID when the client sent none), else `sg-` and
/// the time and a per-worker counter in hex.
pub fn reference(request_id: Option<&str>, now_ms: u64, counter: u64) -> Cow<'_, str> {
    match request_id {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REFERENCE
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Cow::Borrowed(id)
        }
        _ => Cow::Owned(format!("sg-{now_ms:x}-{counter:x}")),
    }
}

/// A value for a `key=value` list: no spaces, quotes or `=`.
fn word(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '=' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a decision says nothing worth publishing: allowed, no control involved.
pub fn is_plain(decision: &Decision) -> bool {
    decision.outcome == Outcome::Allowed && decision.control.is_none()
}

/// The published decision, `None` when there is nothing to say (plain `allowed` with no
/// control involved): `api=accounts version=v1 tier=critical control=lifecycle
/// outcome=blocked ref=...`. Envoy's access log prints it with
/// `%FILTER_STATE(wasm.stakeguard.decision:PLAIN)%`.
pub fn decision_value(policy: &Policy, decision: &Decision, reference: &str) -> Option<String> {
    if is_plain(decision) {
        return None;
    }
    let mut out = String::with_capacity(128);
    match decision.api.and_then(|id| policy.api(id)) {
        Some(api) => {
            out.push_str(&format!(
                "api={} version={} tier={} ",
                word(&api.name),
                word(&api.version),
                word(&api.tier)
            ));
        }
        None => out.push_str("api=- "),
    }
    if let Some(control) = decision.control {
        out.push_str("control=");
        out.push_str(control.as_str());
        out.push(' ');
    }
    out.push_str("outcome=");
    out.push_str(decision.outcome.as_str());
    out.push_str(" ref=");
    out.push_str(&word(reference));
    Some(out)
}

/// What the log line says about the request besides the event.
pub struct RequestSummary<'a> {
    /// The reference (also in the client's error body).
    pub reference: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path, cut to 256 bytes.
    pub path: &'a str,
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// The event's JSON log line; the first key is `event` (tests and log pipelines find the
/// lines by it).
pub fn log_line(policy: &Policy, event: &Event, req: &RequestSummary<'_>) -> String {
    let mut line = ObjectWriter::new()
        .string("event", event.kind.as_str())
        .string("control", event.control.as_str())
        .string("mode", event.mode.as_str())
        .string("outcome", event.outcome.as_str())
        .boolean("incident", event.severity.is_some())
        .string_opt("severity", event.severity.map(|s| s.as_str()));
    if let Some(api) = event.api.and_then(|id| policy.api(id)) {
        line = line
            .string("api", &api.name)
            .string("version", &api.version)
            .string("owner", &api.owner)
            .string("tier", &api.tier);
    }
    if let Some(key) = event.key {
        line = line.string("key", &format!("{key:016x}"));
    }
    line.string("reference", req.reference)
        .string("method", cut(req.method, 16))
        .string("path", cut(req.path, 256))
        .string("revision", policy.revision())
        .finish()
}

/// The most (kind, API) pairs [`IncidentLines`] tells apart in one tick; incidents of
/// others are held back.
const MAX_KINDS_PER_TICK: usize = 64;

/// Incident log lines of one tick of the worker (100 ms while anything is pending): the
/// first incident of each kind and API is written at once; the others are only counted,
/// and one line at the tick says how many were held back. A flood of refused requests
/// (an unknown-route scan, a credential-stuffing run) then costs a log write per kind
/// per tick, not per request: in Envoy a written line costs as much as a third of a
/// request. Metrics (by API, control and severity) and alerts still count every
/// incident.
#[derive(Debug, Default)]
pub struct IncidentLines {
    /// Kinds and APIs written this tick.
    seen: Vec<(EventKind, Option<ApiId>)>,
    /// Lines held back this tick.
    held: u64,
}

impl IncidentLines {
    /// Whether an incident's line is written now: the first of its kind and API this
    /// tick.
    pub fn admit(&mut self, event: &Event) -> bool {
        let key = (event.kind, event.api);
        let first = !self.seen.contains(&key) && self.seen.len() < MAX_KINDS_PER_TICK;
        if first {
            self.seen.push(key);
        } else {
            self.held += 1;
        }
        first
    }

    /// Whether the tick has lines to account for.
    pub fn is_pending(&self) -> bool {
        !self.seen.is_empty()
    }

    /// Ends the tick: the line saying how many were held back, when any were.
    pub fn end_tick(&mut self, policy: &Policy) -> Option<String> {
        self.seen.clear();
        let held = std::mem::take(&mut self.held);
        (held > 0).then(|| {
            ObjectWriter::new()
                .string("event", "incident_lines_held")
                .number("count", held)
                .string("revision", policy.revision())
                .finish()
        })
    }
}

/// A JSON body for local replies the filter makes itself (not the engine's).
pub fn error_body(error: &str, reference: &str) -> String {
    ObjectWriter::new()
        .string("error", error)
        .string("reference", reference)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_request_id_is_the_reference_and_a_dirty_one_is_replaced() {
        assert_eq!(reference(Some("abc-123"), 1, 2), "abc-123");
        assert_eq!(reference(Some("a b"), 255, 2), "sg-ff-2");
        assert_eq!(reference(Some(&"a".repeat(65)), 255, 2), "sg-ff-2");
        assert_eq!(reference(Some(""), 255, 16), "sg-ff-10");
        assert_eq!(reference(None, 255, 2), "sg-ff-2");
    }

    #[test]
    fn cutting_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }

    fn incident(kind: EventKind, api: Option<ApiId>) -> Event {
        Event {
            kind,
            control: stakeguard_policies::Control::UnknownRoute,
            api,
            mode: stakeguard_policies::Mode::Enforce,
            outcome: Outcome::Blocked,
            severity: Some(stakeguard_policies::Severity::Ticket),
            key: None,
        }
    }

    #[test]
    fn the_first_incident_of_a_kind_and_api_is_written_and_the_rest_summed_up_at_the_tick() {
        let policy = Policy::from_json(include_str!("../../policies/examples/bank.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut lines = IncidentLines::default();
        let shadow = incident(EventKind::ShadowApi, None);
        let lockout = incident(EventKind::LoginLockout, Some(0));
        assert!(lines.admit(&shadow));
        assert!(!lines.admit(&shadow));
        assert!(!lines.admit(&shadow));
        assert!(
            lines.admit(&lockout),
            "another kind and API has a line of its own"
        );
        assert!(lines.admit(&incident(EventKind::LoginLockout, Some(1))));
        assert!(lines.is_pending());
        let summary = lines.end_tick(&policy).unwrap_or_default();
        let json = stakeguard_policies::json::Json::parse(&summary)
            .unwrap_or_else(|e| panic!("{e:?}: {summary}"));
        assert_eq!(
            json.get("event").and_then(|v| v.as_str()),
            Some("incident_lines_held")
        );
        assert_eq!(
            json.get("count").and_then(|v| v.as_text()),
            Some("2"),
            "only what was held back: {summary}"
        );
        // A new tick: the next one is written again, and a quiet tick says nothing.
        assert!(!lines.is_pending());
        assert!(lines.admit(&shadow));
        assert_eq!(lines.end_tick(&policy), None);
    }

    #[test]
    fn kinds_beyond_the_bound_are_held_back_together() {
        let policy = Policy::from_json(include_str!("../../policies/examples/bank.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut lines = IncidentLines::default();
        for api in 0..MAX_KINDS_PER_TICK {
            assert!(lines.admit(&incident(EventKind::ShadowApi, Some(api))));
        }
        assert!(!lines.admit(&incident(EventKind::ShadowApi, Some(MAX_KINDS_PER_TICK))));
        let summary = lines.end_tick(&policy).unwrap_or_default();
        assert!(summary.contains(r#""count":1"#), "{summary}");
    }

    #[test]
    fn words_have_no_spaces_or_equals() {
        assert_eq!(word("a b=c\"d"), "a_b_c_d");
    }
}
