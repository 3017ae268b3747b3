//! Metrics: names that Envoy's `stats_tags` turn into Prometheus labels, a per-worker
//! batch of increments, and the cache of metric ids.
//!
//! Names (each `<part>` sanitized to `[A-Za-z0-9_-]`):
//!
//! | metric | kind | Prometheus |
//! |---|---|---|
//! | `stakeguard.decision.api.<a>.version.<v>.control.<c>.outcome.<o>` | counter | `stakeguard_decision{api,version,control,outcome}` |
//! | `stakeguard.incident.api.<a>.version.<v>.control.<c>.severity.<s>` | counter | `stakeguard_incident{api,version,control,severity}` |
//! | `stakeguard.policy.revision.<r>` | gauge, 1 for the revision in use | `stakeguard_policy{revision}` |
//! | `stakeguard.config.accepted` / `.rejected` | counter | |
//! | `stakeguard.store.conflicts` / `.failures` | counter | |
//! | `stakeguard.alerts.sent` / `.failed` / `.deduplicated` / `.dropped` | counter | |
//! | `stakeguard.paused.cap_hits` | counter | |
//!
//! A request never calls the host for a metric: increments are summed per name in the
//! worker's [`Batch`] and flushed by the root context's tick (one `proxy_increment_metric`
//! per distinct name per tick, plus one `proxy_define_metric` the first time a name is
//! seen by the worker). Counters of config loads are written at once: they happen outside
//! traffic, and a rejected configuration may never tick.

use std::collections::HashMap;

use proxy_wasm::types::{LogLevel, MetricType};
use stakeguard_policies::{ApiId, Control, Outcome, Policy, Severity};

use crate::host;

/// Config loads taken into use.
pub const CONFIG_ACCEPTED: &str = "stakeguard.config.accepted";
/// Config loads refused.
pub const CONFIG_REJECTED: &str = "stakeguard.config.rejected";
/// Compare-and-swap conflicts on shared data (the engine retried).
pub const STORE_CONFLICTS: &str = "stakeguard.store.conflicts";
/// Shared-data operations that failed.
pub const STORE_FAILURES: &str = "stakeguard.store.failures";
/// Alerts Alertmanager accepted (2xx).
pub const ALERTS_SENT: &str = "stakeguard.alerts.sent";
/// Alerts that failed: non-2xx, timeout, dispatch error.
pub const ALERTS_FAILED: &str = "stakeguard.alerts.failed";
/// Alerts not sent because the same one was sent within the dedupe window.
pub const ALERTS_DEDUPLICATED: &str = "stakeguard.alerts.deduplicated";
/// Alerts dropped because the worker's queue was full.
pub const ALERTS_DROPPED: &str = "stakeguard.alerts.dropped";
/// Delays not carried out because the worker already held its cap of paused streams.
pub const PAUSED_CAP_HITS: &str = "stakeguard.paused.cap_hits";

/// Keeps `[A-Za-z0-9_-]`, replaces anything else (dots included) with `_`.
pub fn sanitize(part: &str) -> String {
    let clean: String = part
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

fn api_parts(policy: &Policy, api: Option<ApiId>) -> (String, String) {
    match api.and_then(|id| policy.api(id)) {
        Some(info) => (sanitize(&info.name), sanitize(&info.version)),
        None => ("none".to_owned(), "none".to_owned()),
    }
}

/// The decision counter's name.
pub fn decision_name(
    policy: &Policy,
    api: Option<ApiId>,
    control: Option<Control>,
    outcome: Outcome,
) -> String {
    let (name, version) = api_parts(policy, api);
    let control = control.map_or("none", Control::as_str);
    format!(
        "stakeguard.decision.api.{name}.version.{version}.control.{control}.outcome.{}",
        outcome.as_str()
    )
}

/// The incident counter's name.
pub fn incident_name(
    policy: &Policy,
    api: Option<ApiId>,
    control: Control,
    severity: Severity,
) -> String {
    let (name, version) = api_parts(policy, api);
    format!(
        "stakeguard.incident.api.{name}.version.{version}.control.{}.severity.{}",
        control.as_str(),
        severity.as_str()
    )
}

/// The revision gauge's name.
pub fn revision_name(revision: &str) -> String {
    format!("stakeguard.policy.revision.{}", sanitize(revision))
}

/// The worker's metric ids and pending increments.
#[derive(Debug, Default)]
pub struct Batch {
    ids: HashMap<String, u32>,
    pending: HashMap<String, u64>,
}

impl Batch {
    /// Counts `by` on a counter, to be flushed later.
    pub fn add(&mut self, name: impl Into<String>, by: u64) {
        if by > 0 {
            *self.pending.entry(name.into()).or_default() += by;
        }
    }

    /// Whether increments wait for a flush.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }

    fn id(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        match host::define_metric(kind, name) {
            Ok(id) => {
                self.ids.insert(name.to_owned(), id);
                Some(id)
            }
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("stakeguard: cannot define metric {name}: status {}", e.0),
                );
                None
            }
        }
    }

    /// Writes every pending increment to the host.
    pub fn flush(&mut self) {
        for (name, by) in std::mem::take(&mut self.pending) {
            if let Some(id) = self.id(MetricType::Counter, &name) {
                let _ = host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
            }
        }
    }

    /// Increments a counter now (outside traffic).
    pub fn increment_now(&mut self, name: &str) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = host::increment_metric(id, 1);
        }
    }

    /// Sets a gauge now.
    pub fn gauge_now(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = host::record_metric(id, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_only_safe_characters() {
        assert_eq!(sanitize("2026-11-29.1"), "2026-11-29_1");
        assert_eq!(sanitize("a b/c"), "a_b_c");
        assert_eq!(sanitize(""), "_");
    }

    #[test]
    fn increments_are_summed_per_name_until_flushed() {
        let mut batch = Batch::default();
        batch.add("a", 1);
        batch.add("a", 2);
        batch.add("b", 0);
        assert!(batch.is_dirty());
        assert_eq!(batch.pending.get("a"), Some(&3));
        assert_eq!(batch.pending.get("b"), None);
    }
}
