//! The end of a stream (`proxy_on_log` with the final maps, `proxy_on_done`,
//! `proxy_on_delete`) and of a replay: each stream's entry gets what the module changed
//! and published, and the report gets its summary.

use std::collections::BTreeMap;

use super::session::Session;
use super::stream::status_of;
use crate::abi::MetricType;
use crate::host::state::{HeaderMap, lock};
use crate::report::{HeaderChange, MetricReport, Outcome, Report, header_changes, incident_label};

/// The filter-state property a module publishes its decision in.
const DECISION_PROPERTY: &str = "stakeguard.decision";

/// What the module changed from `before` to `after` (nothing, at the cost of a pointer
/// comparison, when the module left the map alone).
fn changes(before: &HeaderMap, after: &HeaderMap) -> Vec<HeaderChange> {
    if before == after {
        return Vec::new();
    }
    header_changes(before.entries(), after.entries())
}

impl Session<'_> {
    /// The stream is done: access log, done, delete, then its report entry.
    pub(super) fn finish(&mut self, w: usize, ctx: u32) {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return;
        };
        let request_final = s.request.final_headers().clone();
        let response_final = s.response.final_headers().clone();
        let trailers = s.response.sent_trailers.clone();
        if let Some(st) = self.stream_state(w, ctx) {
            st.log_request_headers = request_final;
            st.log_response_headers = response_final;
            st.log_response_trailers = trailers;
            st.request_headers = None;
            st.response_headers = None;
            st.request_body = None;
            st.response_body = None;
        }
        self.set_clock(w);
        let result = match self.vm(w) {
            Some(vm) => vm
                .on_log(ctx)
                .and_then(|_| vm.on_done(ctx))
                .and_then(|_| vm.on_delete(ctx)),
            None => Ok(()),
        };
        self.after_call(w);
        let filter_state = self
            .any_vm(w)
            .and_then(|vm| vm.state_mut().streams.remove(&ctx))
            .map(|st| st.filter_state)
            .unwrap_or_default();
        let Some(s) = self.streams.remove(&(w, ctx)) else {
            return;
        };
        let Some(entry) = self.entry_at(s.index) else {
            return;
        };
        for (k, v) in filter_state {
            let key = String::from_utf8_lossy(&k).replace('\0', ".");
            let value = String::from_utf8_lossy(&v).into_owned();
            if key == DECISION_PROPERTY {
                entry.decision = Some(
                    serde_json::from_str(&value)
                        .unwrap_or(serde_json::Value::String(value.clone())),
                );
            }
            entry.properties.insert(key, value);
        }
        let response_final = s.response.final_headers();
        if s.local_reply.is_none()
            && let Some(sent) = &s.request.sent_headers
        {
            entry.request_header_changes = changes(&s.request.arrived.headers, sent);
            entry.request_body_changed = s.request.body_changed();
        }
        entry.response_header_changes = changes(&s.response.arrived.headers, response_final);
        entry.response_body_changed = s.response.body_changed();
        entry.status = if s.reset {
            0
        } else {
            status_of(response_final)
        };
        if !s.reset {
            entry.outcome = if s.local_reply.is_some() {
                Outcome::LocalReply
            } else {
                Outcome::Forwarded
            };
        }
        let Err(t) = result else {
            return;
        };
        let text = format!("{}: {}", t.callback, t.message);
        entry.trap = Some(text.clone());
        entry.outcome = Outcome::Trapped;
        self.fail_vm(w, Some(ctx), &text);
    }

    /// The report of the replay just done; the summary covers what happened since the
    /// previous report, metrics are their values now.
    pub(super) fn report(&mut self) -> Report {
        let mut summary = std::mem::take(&mut self.summary);
        // Handed over whole: no entry moves again (the next replay allocates its list once).
        let entries = std::mem::take(&mut self.entries);
        summary.requests = entries.len();
        // Counted by outcome first, so names are copied once per outcome, not per entry.
        let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
        for e in &entries {
            *outcomes.entry(e.outcome).or_default() += 1;
            if let Some(label) = e.decision_label() {
                *summary.decisions.entry(label).or_default() += 1;
            }
        }
        for (outcome, n) in outcomes {
            *summary
                .outcomes
                .entry(outcome.name().to_string())
                .or_default() += n;
        }
        for (name, m) in &lock(&self.shared).metrics {
            if m.kind == Some(MetricType::Counter)
                && m.value > 0
                && let Some(label) = incident_label(name)
            {
                *summary.incidents.entry(label).or_default() += m.value;
            }
            summary.metrics.insert(
                name.clone(),
                MetricReport {
                    kind: m.kind.map_or("unknown", |k| k.name()).to_string(),
                    value: m.value,
                    samples: (m.kind == Some(MetricType::Histogram)).then_some(m.samples),
                },
            );
        }
        Report { entries, summary }
    }
}
