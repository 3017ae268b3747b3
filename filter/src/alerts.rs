//! Incidents to the API's owner: Alertmanager v2 alerts, deduplicated per worker, sent by
//! the root context.
//!
//! A stream only queues an alert (a ready JSON body); the root context's tick dispatches
//! the queue with `dispatch_http_call`, so the callout belongs to the root context and
//! outlives the stream, and a slow or failing Alertmanager never holds or changes a
//! request. Memory is bounded: [`Dedupe`] is a fixed table of hashes and times, the queue
//! and the set of calls in flight are capped.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use proxy_wasm::types::{LogLevel, MapType};
use stakeguard_policies::json::ObjectWriter;
use stakeguard_policies::{Event, Headers, Policy};

use crate::host;
use crate::metrics::{self, Batch};

/// Slots of the dedupe table (per worker).
pub const DEDUPE_SLOTS: usize = 1024;
/// Alerts waiting for the next tick, at most.
pub const QUEUE_CAP: usize = 64;
/// Alert calls in flight, at most.
pub const IN_FLIGHT_CAP: usize = 64;

/// One alert per (API, control, event, key) per window, remembered in a fixed table
/// indexed by the hash; a collision only makes an alert go out early.
#[derive(Debug)]
pub struct Dedupe {
    slots: Vec<(u64, u64)>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self {
            slots: vec![(0, 0); DEDUPE_SLOTS],
        }
    }
}

impl Dedupe {
    /// Whether an alert with this hash should go out now (and records it if so).
    pub fn admit(&mut self, hash: u64, now_ms: u64, window_ms: u64) -> bool {
        let index = usize::try_from(hash % DEDUPE_SLOTS as u64).unwrap_or(0);
        let Some(slot) = self.slots.get_mut(index) else {
            return true;
        };
        if slot.0 == hash && slot.1 != 0 && now_ms.saturating_sub(slot.1) < window_ms {
            return false;
        }
        *slot = (hash, now_ms.max(1));
        true
    }
}

/// The dedupe hash of an event.
pub fn event_hash(event: &Event) -> u64 {
    let mut h = DefaultHasher::new();
    (event.api, event.control, event.kind, event.key).hash(&mut h);
    h.finish()
}

/// An alert ready to send.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The Envoy cluster of Alertmanager.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Callout timeout.
    pub timeout_ms: u64,
    /// The JSON array of one alert.
    pub body: String,
}

/// Builds the alert for an incident, `None` when the policy notifies nobody.
pub fn build(policy: &Policy, event: &Event, reference: &str) -> Option<Alert> {
    let notify = policy.notify()?;
    let severity = event.severity?;
    let api = event.api.and_then(|id| policy.api(id));
    let (name, version, tier) = match api {
        Some(api) => (api.name.as_str(), api.version.as_str(), api.tier.as_str()),
        None => ("unknown", "none", "none"),
    };
    let (owner, contact) = match api {
        Some(api) => (api.owner.as_str(), api.contact.as_deref()),
        None => policy.unknown_routes_owner(),
    };
    let summary = format!(
        "{} on {name} {version} ({} {}, {})",
        event.kind.as_str(),
        event.control.as_str(),
        event.mode.as_str(),
        event.outcome.as_str()
    );
    let labels = ObjectWriter::new()
        .string("alertname", event.kind.as_str())
        .string("api", name)
        .string("version", version)
        .string("owner", owner)
        .string("tier", tier)
        .string("severity", severity.as_str())
        .string("control", event.control.as_str())
        .string("mode", event.mode.as_str())
        .string("source", "stakeguard")
        .finish();
    let annotations = ObjectWriter::new()
        .string("summary", &summary)
        .string("contact", contact.unwrap_or(""))
        .string("reference", reference)
        .string("revision", policy.revision())
        .finish();
    let alert = ObjectWriter::new()
        .raw("labels", &labels)
        .raw("annotations", &annotations)
        .finish();
    let body = format!("[{alert}]");
    Some(Alert {
        cluster: notify.cluster.clone(),
        authority: notify.authority.clone(),
        path: notify.path.clone(),
        timeout_ms: notify.timeout_ms,
        body,
    })
}

/// The worker's alert state: dedupe table, queue, calls in flight.
#[derive(Debug, Default)]
pub struct Alerts {
    dedupe: Dedupe,
    queue: Vec<Alert>,
    in_flight: HashSet<u32>,
}

impl Alerts {
    /// Queues the alert of an incident unless it was sent within the dedupe window.
    pub fn raise(
        &mut self,
        policy: &Policy,
        event: &Event,
        reference: &str,
        now_ms: u64,
        metrics: &mut Batch,
    ) {
        let Some(notify) = policy.notify() else {
            return;
        };
        if !self
            .dedupe
            .admit(event_hash(event), now_ms, notify.dedupe_window_ms)
        {
            metrics.add(metrics::ALERTS_DEDUPLICATED, 1);
            return;
        }
        if self.queue.len() >= QUEUE_CAP {
            metrics.add(metrics::ALERTS_DROPPED, 1);
            return;
        }
        if let Some(alert) = build(policy, event, reference) {
            self.queue.push(alert);
        }
    }

    /// Whether alerts wait for the tick.
    pub fn is_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Dispatches queued alerts (from the root context's tick).
    pub fn dispatch(&mut self, metrics: &mut Batch) {
        for alert in std::mem::take(&mut self.queue) {
            if self.in_flight.len() >= IN_FLIGHT_CAP {
                metrics.add(metrics::ALERTS_DROPPED, 1);
                continue;
            }
            let headers = vec![
                (":method", "POST"),
                (":path", alert.path.as_str()),
                (":authority", alert.authority.as_str()),
                ("content-type", "application/json"),
            ];
            let timeout = Duration::from_millis(alert.timeout_ms.max(1));
            match proxy_wasm::hostcalls::dispatch_http_call(
                &alert.cluster,
                headers,
                Some(alert.body.as_bytes()),
                vec![],
                timeout,
            ) {
                Ok(token) => {
                    self.in_flight.insert(token);
                }
                Err(status) => {
                    metrics.add(metrics::ALERTS_FAILED, 1);
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "stakeguard: alert to cluster {} not dispatched: {status:?}",
                            alert.cluster
                        ),
                    );
                }
            }
        }
    }

    /// Counts the answer to an alert call: sent on 2xx, failed otherwise (no headers
    /// means a timeout or a reset).
    pub fn on_response(&mut self, token: u32, num_headers: usize, metrics: &mut Batch) {
        if !self.in_flight.remove(&token) {
            return;
        }
        let status = if num_headers == 0 {
            None
        } else {
            host::get_headers(MapType::HttpCallResponseHeaders)
                .ok()
                .and_then(|headers| headers.read()?.get(":status")?.parse::<u16>().ok())
        };
        match status {
            Some(200..=299) => metrics.add(metrics::ALERTS_SENT, 1),
            other => {
                metrics.add(metrics::ALERTS_FAILED, 1);
                let said = other.map_or_else(
                    || "no response (timeout or reset)".to_owned(),
                    |s| format!("status {s}"),
                );
                host::log(LogLevel::Warn, &format!("stakeguard: alert failed: {said}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_alert_goes_out_once_per_window() {
        let mut d = Dedupe::default();
        assert!(d.admit(7, 1_000, 500));
        assert!(!d.admit(7, 1_400, 500));
        assert!(d.admit(7, 1_500, 500));
        assert!(
            d.admit(7 + DEDUPE_SLOTS as u64, 1_501, 500),
            "a colliding hash replaces the slot"
        );
        assert!(d.admit(7, 1_502, 500));
    }
}
