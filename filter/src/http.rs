//! The stream callbacks: request headers (and, when the engine asks, the body) become a
//! [`Request`] for the engine; its verdict becomes an [`Action`], a local reply or a pause;
//! response headers get the engine's changes. Events become log lines, metrics and alerts.
//!
//! Host calls on the allow path: the clock, the request header map (one call for all
//! headers) and `source.address`. Metrics are batched in the worker, and a decision that
//! says nothing (plain `allowed`) is not published.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use stakeguard_policies::{HeaderChange, LocalReply, Policy, Request, Response, Verdict};

use crate::events::{self, RequestSummary};
use crate::host;
use crate::metrics;
use crate::root::Worker;
use crate::store::SharedData;

/// The filter-state key the decision is published under (`wasm.stakeguard.decision`).
pub const DECISION_PROPERTY: &str = "stakeguard.decision";

type Pairs = Vec<(String, String)>;

/// Header values as text; a value that is not UTF-8 is read lossily (the engine then sees
/// replacement characters: a decision, never a trap).
fn as_text(raw: Vec<(String, Vec<u8>)>) -> Pairs {
    raw.into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

fn find<'a>(headers: &'a Pairs, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One HTTP stream.
pub struct Stream {
    id: u32,
    policy: Rc<Policy>,
    worker: Rc<RefCell<Worker>>,
    store: SharedData,
    engine: Option<stakeguard_policies::Stream>,
    reference: String,
    method: String,
    path: String,
    reading_body: bool,
    paused: bool,
    replied: bool,
    published: Option<String>,
}

impl Stream {
    /// A stream decided by `policy` (the one in use when it started).
    pub fn new(id: u32, policy: Rc<Policy>, worker: Rc<RefCell<Worker>>) -> Self {
        Self {
            id,
            policy,
            worker,
            store: SharedData::default(),
            engine: None,
            reference: String::new(),
            method: String::new(),
            path: String::new(),
            reading_body: false,
            paused: false,
            replied: false,
            published: None,
        }
    }

    /// Turns the engine's events into logs, metrics and alerts, and publishes the decision
    /// when it changed and says something.
    fn after_engine(&mut self, now: u64) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let events = engine.take_events();
        let decision = engine.decision();
        let (conflicts, failures) = self.store.take_counts();
        let summary = RequestSummary {
            reference: &self.reference,
            method: &self.method,
            path: &self.path,
        };
        {
            let mut worker = self.worker.borrow_mut();
            let Worker {
                metrics: batch,
                alerts,
                ..
            } = &mut *worker;
            batch.add(metrics::STORE_CONFLICTS, conflicts);
            batch.add(metrics::STORE_FAILURES, failures);
            for event in &events {
                if let Some(severity) = event.severity {
                    batch.add(
                        metrics::incident_name(&self.policy, event.api, event.control, severity),
                        1,
                    );
                    alerts.raise(&self.policy, event, &self.reference, now, batch);
                }
            }
            worker.schedule_tick();
        }
        for event in &events {
            let level = if event.severity.is_some() {
                LogLevel::Warn
            } else {
                LogLevel::Info
            };
            host::log(level, &events::log_line(&self.policy, event, &summary));
        }
        let value = events::decision_value(&self.policy, &decision, &self.reference);
        if value.is_some() && value != self.published {
            if let Some(text) = &value
                && let Err(e) = host::set_property(&[DECISION_PROPERTY], text.as_bytes())
            {
                host::log(
                    LogLevel::Warn,
                    &format!("stakeguard: cannot publish the decision: status {}", e.0),
                );
            }
            self.published = value;
        }
    }

    fn carry_out(&mut self, verdict: Verdict, now: u64, end_of_stream: bool) -> Action {
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::ReadBody if self.reading_body => Action::Continue,
            Verdict::ReadBody if end_of_stream => self.decide_body(&[], true, now),
            Verdict::ReadBody => {
                // Envoy turns a paused header callback into "stop all", so no body would
                // ever come: the headers go on, the body is held (paused body callbacks
                // buffer it) until the engine has decided on it.
                self.reading_body = true;
                Action::Continue
            }
            Verdict::Reply(reply) => {
                self.reply(&reply);
                Action::Pause
            }
            Verdict::Delay(ms) => {
                let mut worker = self.worker.borrow_mut();
                let held = worker.pause(
                    self.id,
                    now.saturating_add(ms),
                    self.policy.max_delayed_streams(),
                );
                worker.schedule_tick();
                drop(worker);
                if held {
                    self.paused = true;
                    Action::Pause
                } else {
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "stakeguard: {} streams already paused; not delaying {}",
                            self.policy.max_delayed_streams(),
                            self.reference
                        ),
                    );
                    Action::Continue
                }
            }
        }
    }

    fn decide_body(&mut self, body: &[u8], complete: bool, now: u64) -> Action {
        let Some(engine) = self.engine.as_mut() else {
            return Action::Continue;
        };
        let verdict = self
            .policy
            .on_request_body(engine, body, complete, &now, &self.store);
        self.after_engine(now);
        // A second ReadBody is read as Continue: the body was given.
        self.reading_body = true;
        let action = self.carry_out(verdict, now, true);
        self.reading_body = false;
        action
    }

    fn reply(&mut self, reply: &LocalReply) {
        self.replied = true;
        let mut headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        headers.push(("content-type", b"application/json"));
        if let Err(e) =
            host::send_local_response(reply.status, "stakeguard", reply.body.as_bytes(), &headers)
        {
            // The request stays paused (fail closed) until Envoy's timeouts end it.
            host::log(
                LogLevel::Critical,
                &format!(
                    "stakeguard: local reply {} failed: status {}",
                    reply.status, e.0
                ),
            );
        }
    }

    fn refuse(&mut self, why: &str) -> Action {
        host::log(
            LogLevel::Error,
            &format!("stakeguard: {why}; refusing {}", self.reference),
        );
        self.reply(&LocalReply {
            status: 503,
            headers: Vec::new(),
            body: events::error_body("policy_unavailable", &self.reference),
        });
        Action::Pause
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let now = host::now_ms();
        let headers = match host::get_headers(MapType::HttpRequestHeaders) {
            Ok(raw) => as_text(raw),
            Err(e) => return self.refuse(&format!("cannot read request headers: status {}", e.0)),
        };
        let counter = {
            let mut worker = self.worker.borrow_mut();
            worker.references = worker.references.wrapping_add(1);
            worker.references
        };
        self.reference = events::reference(
            find(&headers, "x-request-id").map(str::as_bytes),
            now,
            counter,
        );
        find(&headers, ":method")
            .unwrap_or("")
            .clone_into(&mut self.method);
        find(&headers, ":path")
            .unwrap_or("")
            .clone_into(&mut self.path);
        // Each property is a host call: read only what the policy can use.
        let property = |path: &[&str]| match host::get_property(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        };
        let source = if self.policy.needs_source_address() {
            property(&["source", "address"])
        } else {
            None
        };
        let peer_uri_san = if self.policy.needs_peer_certificate() {
            property(&["connection", "uri_san_peer_certificate"])
        } else {
            None
        };
        let authority = find(&headers, ":authority")
            .or_else(|| find(&headers, "host"))
            .unwrap_or("");
        let request = Request {
            method: &self.method,
            authority,
            path: &self.path,
            headers: &headers,
            source_address: source.as_deref(),
            peer_uri_san: peer_uri_san.as_deref(),
            reference: &self.reference,
        };
        let (engine, verdict) = self.policy.on_request(&request, &now, &self.store);
        self.engine = Some(engine);
        self.after_engine(now);
        self.carry_out(verdict, now, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.paused || self.replied {
            return Action::Pause;
        }
        if !self.reading_body {
            return Action::Continue;
        }
        let limit = self
            .engine
            .as_ref()
            .map_or(0, stakeguard_policies::Stream::body_limit);
        if !end_of_stream && body_size <= limit {
            // Envoy keeps buffering (StopIterationAndBuffer).
            return Action::Pause;
        }
        let now = host::now_ms();
        let body = match host::get_buffer(BufferType::HttpRequestBody, 0, body_size.min(limit)) {
            Ok(body) => body,
            Err(e) => {
                host::log(
                    LogLevel::Warn,
                    &format!("stakeguard: cannot read the request body: status {}", e.0),
                );
                Vec::new()
            }
        };
        let complete = end_of_stream && body_size <= limit;
        self.decide_body(&body, complete, now)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let Some(engine) = self.engine.as_mut() else {
            return Action::Continue;
        };
        if !engine.wants_response() {
            return Action::Continue;
        }
        let now = host::now_ms();
        let raw = match host::get_headers(MapType::HttpResponseHeaders) {
            Ok(raw) => raw,
            Err(e) => {
                host::log(
                    LogLevel::Warn,
                    &format!("stakeguard: cannot read response headers: status {}", e.0),
                );
                return Action::Continue;
            }
        };
        let headers = as_text(raw.clone());
        let status = find(&headers, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let changes = self.policy.on_response(
            engine,
            &Response {
                status,
                headers: &headers,
            },
            &now,
            &self.store,
        );
        if !changes.is_empty() {
            let changed = apply(raw, changes);
            let pairs: Vec<(&str, &[u8])> = changed
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            if let Err(e) = host::set_headers(MapType::HttpResponseHeaders, &pairs) {
                host::log(
                    LogLevel::Error,
                    &format!(
                        "stakeguard: cannot rewrite response headers: status {}",
                        e.0
                    ),
                );
            }
        }
        self.after_engine(now);
        Action::Continue
    }

    fn on_log(&mut self) {
        let mut worker = self.worker.borrow_mut();
        if self.paused {
            worker.forget(self.id);
        }
        if let Some(engine) = &self.engine {
            let decision = engine.decision();
            let key = metrics::DecisionKey {
                api: decision.api,
                control: decision.control,
                outcome: decision.outcome,
            };
            worker.metrics.count_decision(&self.policy, key);
        }
        worker.schedule_tick();
    }
}

/// Applies the engine's changes to the response headers (values kept as bytes).
pub fn apply(
    mut headers: Vec<(String, Vec<u8>)>,
    changes: Vec<HeaderChange>,
) -> Vec<(String, Vec<u8>)> {
    for change in changes {
        match change {
            HeaderChange::Set(name, value) => {
                let name = name.to_ascii_lowercase();
                headers.retain(|(n, _)| *n != name);
                headers.push((name, value.into_bytes()));
            }
            HeaderChange::Remove(name) => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            }
            HeaderChange::ReplaceSetCookies(cookies) => {
                headers.retain(|(n, _)| n != "set-cookie");
                headers.extend(
                    cookies
                        .into_iter()
                        .map(|c| ("set-cookie".to_owned(), c.into_bytes())),
                );
            }
        }
    }
    headers
}

/// The stream of a worker that has no policy (it never accepted one): every request is
/// refused with 503. Envoy does not normally create streams for a refused configuration;
/// this is the fail-closed answer if it ever does.
pub struct Refusal;

impl Context for Refusal {}

impl HttpContext for Refusal {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let body = events::error_body("policy_unavailable", "-");
        let _ = host::send_local_response(
            503,
            "stakeguard_no_policy",
            body.as_bytes(),
            &[("content-type", b"application/json")],
        );
        Action::Pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn header_changes_replace_remove_and_rewrite_cookies() {
        let headers = h(&[
            (":status", "200"),
            ("server", "x"),
            ("set-cookie", "a=1"),
            ("cache-control", "public"),
            ("set-cookie", "b=2"),
        ]);
        let out = apply(
            headers,
            vec![
                HeaderChange::Remove("Server".into()),
                HeaderChange::Set("cache-control".into(), "no-store".into()),
                HeaderChange::ReplaceSetCookies(vec!["a=1; Secure".into(), "b=2; Secure".into()]),
            ],
        );
        assert_eq!(
            out,
            h(&[
                (":status", "200"),
                ("cache-control", "no-store"),
                ("set-cookie", "a=1; Secure"),
                ("set-cookie", "b=2; Secure")
            ])
        );
    }
}
