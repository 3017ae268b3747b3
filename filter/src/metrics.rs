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
use std::rc::Rc;

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
/// Calls to the rate limit service that failed: timeouts, an unreachable cluster,
/// answers that are no `RateLimitResponse` (the service's `failure_mode` decided).
pub const SERVICE_ERRORS: &str = "stakeguard.ratelimit_service.errors";
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

/// What a stream's decision counter is made of; its name is built only at flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionKey {
    /// The API.
    pub api: Option<ApiId>,
    /// The control behind the decision.
    pub control: Option<Control>,
    /// What the request experienced.
    pub outcome: Outcome,
}

/// The worker's metric ids and pending increments.
#[derive(Debug, Default)]
pub struct Batch {
    ids: HashMap<String, u32>,
    pending: HashMap<String, u64>,
    /// Decisions counted since the last flush, with the policy they were decided under
    /// (a stream may end after a swap; its API ids are its own policy's). A handful of
    /// distinct entries per tick, so a list searched in place: no name is formatted,
    /// hashed or allocated per request.
    decisions: Vec<(Rc<Policy>, DecisionKey, u64)>,
}

impl Batch {
    /// Counts `by` on a counter, to be flushed later.
    pub fn add(&mut self, name: impl Into<String>, by: u64) {
        if by > 0 {
            *self.pending.entry(name.into()).or_default() += by;
        }
    }

    /// Counts one stream's decision, to be flushed later.
    pub fn count_decision(&mut self, policy: &Rc<Policy>, key: DecisionKey) {
        let known = self
            .decisions
            .iter_mut()
            .find(|(p, k, _)| *k == key && Rc::ptr_eq(p, policy));
        match known {
            Some((_, _, count)) => *count += 1,
            None => self.decisions.push((Rc::clone(policy), key, 1)),
        }
    }

    /// Whether increments wait for a flush.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty() || !self.decisions.is_empty()
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
        for (policy, key, by) in std::mem::take(&mut self.decisions) {
            self.add(
                decision_name(&policy, key.api, key.control, key.outcome),
                by,
            );
        }
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

    #[test]
    fn decisions_are_counted_per_policy_and_key_without_names() {
        let text = r#"{"revision":"1","tiers":{"t":{}},"apis":[{"name":"a","version":"v1","owner":"o","tier":"t","routes":[{"path":"/a"}]}]}"#;
        let old = Rc::new(Policy::from_json(text).unwrap());
        let new = Rc::new(Policy::from_json(text).unwrap());
        let key = DecisionKey {
            api: Some(0),
            control: None,
            outcome: Outcome::Allowed,
        };
        let mut batch = Batch::default();
        batch.count_decision(&old, key);
        batch.count_decision(&old, key);
        batch.count_decision(&new, key);
        assert!(batch.is_dirty());
        let counts: Vec<u64> = batch.decisions.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(
            counts,
            vec![2, 1],
            "a swapped-in policy counts apart from the old one"
        );
        assert!(
            batch.pending.is_empty(),
            "no name is built before the flush"
        );
    }
}
