//! The stream callbacks: request headers (and, when the engine asks, the body) become a
//! [`Request`] for the engine; its verdict becomes an [`Action`], a local reply or a pause;
//! response headers get the engine's changes. Events become log lines, metrics and alerts.
//!
//! Host calls on the allow path, each justified in BENCHMARKS.md: on the request, the clock,
//! the request header map (one call for all headers) and the properties the policy uses
//! (`source.address`, the peer certificate's URI SAN); counters and sessions this worker
//! already knows need no shared-data call (see the engine's `worker` module). On the
//! response, only when the engine wants it: the response header map when the engine must
//! read it, and its changes, one call each or the map written back whole, whichever Envoy
//! does for less. Metrics are batched in the worker, and a decision that says nothing
//! (plain `allowed`) is not published.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use stakeguard_policies::{
    HeaderChange, Headers, LocalReply, Policy, Request, Response, ServiceCall, Verdict,
};

use crate::events::{self, RequestSummary};
use crate::headers::{self, HeaderBytes, HeaderMap};
use crate::host::{self, HostError, PropertyPath};
use crate::metrics;
use crate::root::Worker;
use crate::store::SharedData;

/// The filter-state key the decision is published under (`wasm.stakeguard.decision`).
pub const DECISION_PROPERTY: &str = "stakeguard.decision";

const SOURCE_ADDRESS: PropertyPath = "source\0address";
const PEER_URI_SAN: PropertyPath = "connection\0uri_san_peer_certificate";

/// The map a host call handed over, read in place into the worker's spare index, or why
/// not (`MALFORMED` when its lengths do not add up).
fn read<'h>(
    head: &'h Result<HeaderBytes, HostError>,
    worker: &RefCell<Worker>,
) -> Result<HeaderMap<'h>, HostError> {
    let head = head.as_ref().map_err(|e| *e)?;
    let spare = std::mem::take(&mut worker.borrow_mut().spare.index);
    head.read_reusing(spare).ok_or(HostError::MALFORMED)
}

/// Gives a map's index back to the worker for the next map.
fn give_back(headers: HeaderMap<'_>, worker: &RefCell<Worker>) {
    worker.borrow_mut().spare.index = headers.into_spare();
}

/// Makes the engine's changes to the response one host call each, in order (a later
/// change to the same name wins, as in [`headers::rewrite`]).
fn apply_one_by_one(changes: &[HeaderChange]) -> Result<(), HostError> {
    const MAP: MapType = MapType::HttpResponseHeaders;
    for change in changes {
        match change {
            HeaderChange::Set(name, value) => host::replace_header(MAP, name, value.as_bytes())?,
            HeaderChange::Remove(name) => host::remove_header(MAP, name)?,
            HeaderChange::ReplaceSetCookies(cookies) => {
                host::remove_header(MAP, "set-cookie")?;
                for cookie in cookies {
                    host::add_header(MAP, "set-cookie", cookie.as_bytes())?;
                }
            }
        }
    }
    Ok(())
}

/// What log lines, alerts and the published decision quote of a request. It is read again
/// from the kept request headers only when something is said: most requests say nothing.
struct Quote {
    reference: String,
    method: String,
    path: String,
}

/// One HTTP stream.
pub struct Stream {
    id: u32,
    policy: Rc<Policy>,
    worker: Rc<RefCell<Worker>>,
    store: SharedData,
    engine: Option<stakeguard_policies::Stream>,
    /// The request headers as the host handed them over (one buffer, kept as is).
    request_headers: HeaderBytes,
    /// When the request started and its number on this worker: with `x-request-id`, what
    /// its reference is made of.
    started_ms: u64,
    serial: u64,
    reading_body: bool,
    paused: bool,
    replied: bool,
    published: Option<String>,
    /// The call to the rate limit service the stream is held for, and whether it holds
    /// the response (the outcome's count) rather than the request.
    service_call: Option<(u32, bool)>,
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
            request_headers: HeaderBytes::default(),
            started_ms: 0,
            serial: 0,
            reading_body: false,
            paused: false,
            replied: false,
            published: None,
            service_call: None,
        }
    }

    /// The request as log lines quote it, read again from the kept request headers.
    fn quote(&self) -> Quote {
        let headers = self.request_headers.read();
        let find = |name| headers.as_ref().and_then(|h| h.get(name));
        let copy = |name| find(name).unwrap_or("").to_owned();
        Quote {
            reference: events::reference(find("x-request-id"), self.started_ms, self.serial)
                .into_owned(),
            method: copy(":method"),
            path: copy(":path"),
        }
    }

    /// Turns the engine's events into logs, metrics and alerts, and publishes the decision
    /// when it changed and says something.
    // Called from every callback: one copy of it, not one inlined into each.
    #[inline(never)]
    fn after_engine(&mut self, now: u64) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let events = engine.take_events();
        let decision = engine.decision();
        let (conflicts, failures) = self.store.take_counts();
        let service_errors = engine.take_service_errors();
        let quote = (!events.is_empty() || !events::is_plain(&decision)).then(|| self.quote());
        let mut worker = self.worker.borrow_mut();
        let Worker {
            metrics: batch,
            alerts,
            ..
        } = &mut *worker;
        batch.add(metrics::STORE_CONFLICTS, conflicts);
        batch.add(metrics::STORE_FAILURES, failures);
        batch.add(metrics::SERVICE_ERRORS, u64::from(service_errors));
        if let Some(quote) = &quote {
            for event in &events {
                if let Some(severity) = event.severity {
                    batch.add(
                        metrics::incident_name(&self.policy, event.api, event.control, severity),
                        1,
                    );
                    alerts.raise(&self.policy, event, &quote.reference, now, batch);
                }
            }
        }
        worker.schedule_tick();
        drop(worker);
        let Some(quote) = quote else {
            return;
        };
        let summary = RequestSummary {
            reference: &quote.reference,
            method: &quote.method,
            path: &quote.path,
        };
        // Incidents are the application log's business (the first of each kind and API
        // per tick, see `IncidentLines`); every other event is in the published decision
        // (the access log's) and the metrics already, so its line is debug: a refused
        // flood costs no log write per request.
        let mut debug = None;
        for event in &events {
            let level = if event.severity.is_some() {
                if !self.worker.borrow_mut().incident_lines.admit(event) {
                    continue;
                }
                LogLevel::Warn
            } else if *debug.get_or_insert_with(|| self.worker.borrow_mut().logs_debug()) {
                LogLevel::Debug
            } else {
                continue;
            };
            host::log(level, &events::log_line(&self.policy, event, &summary));
        }
        let value = events::decision_value(&self.policy, &decision, &quote.reference);
        if value.is_some() && value != self.published {
            if let Some(text) = &value
                && let Err(e) = host::set_property(DECISION_PROPERTY, text.as_bytes())
            {
                host::log(
                    LogLevel::Warn,
                    &format!("stakeguard: cannot publish the decision: status {}", e.0),
                );
            }
            self.published = value;
        }
    }

    #[inline(never)]
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
            Verdict::AskService(call) => match self.dispatch(&call, false) {
                Ok(()) => Action::Pause,
                // Not even sent (no such cluster): answered as a failed call at once.
                Err(()) => self.service_answered(None, now),
            },
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
                            self.quote().reference
                        ),
                    );
                    Action::Continue
                }
            }
        }
    }

    /// Sends a call to the rate limit service, with the service's timeout; the stream
    /// waits for [`HttpContext::on_grpc_call_response`].
    #[inline(never)]
    fn dispatch(&mut self, call: &ServiceCall, response: bool) -> Result<(), ()> {
        let policy = Rc::clone(&self.policy);
        let Some(service) = policy.counter_service(call) else {
            return Err(());
        };
        let sent = self.dispatch_grpc_call(
            &service.cluster,
            stakeguard_policies::rls::SERVICE,
            stakeguard_policies::rls::METHOD,
            Vec::new(),
            Some(&call.message),
            std::time::Duration::from_millis(service.timeout_ms),
        );
        match sent {
            Ok(token) => {
                self.service_call = Some((token, response));
                Ok(())
            }
            Err(status) => {
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "stakeguard: cannot call the rate limit service on cluster {}: status {}",
                        service.cluster, status as u32
                    ),
                );
                Err(())
            }
        }
    }

    /// The request's service call was answered (`None`: it failed): the engine's verdict
    /// on the answer is carried out.
    #[inline(never)]
    fn service_answered(&mut self, answer: Option<&[u8]>, now: u64) -> Action {
        let Some(engine) = self.engine.as_mut() else {
            return Action::Continue;
        };
        let verdict = self
            .policy
            .on_service_answer(engine, answer, &now, &self.store);
        self.after_engine(now);
        self.carry_out(verdict, now, true)
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

    /// Hands the response map back with the engine's changes, encoded in the worker's
    /// buffer (no allocation once it has grown to a response's size).
    fn rewrite_response(
        &self,
        headers: &HeaderMap<'_>,
        changes: &[HeaderChange],
    ) -> Result<(), HostError> {
        let mut worker = self.worker.borrow_mut();
        let Worker { encoded, spare, .. } = &mut *worker;
        headers::rewrite(headers, changes, encoded, &mut spare.pairs)
            .ok_or(HostError::MALFORMED)?;
        host::set_encoded_headers(MapType::HttpResponseHeaders, encoded)
    }

    fn refuse(&mut self, why: &str) -> Action {
        let reference = self.quote().reference;
        host::log(
            LogLevel::Error,
            &format!("stakeguard: {why}; refusing {reference}"),
        );
        self.reply(&LocalReply {
            status: 503,
            headers: Vec::new(),
            body: events::error_body("policy_unavailable", &reference),
        });
        Action::Pause
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some((token, response)) = self.service_call else {
            return;
        };
        if token != token_id {
            return;
        }
        self.service_call = None;
        let answer = if status_code == 0 {
            host::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size).ok()
        } else {
            None
        };
        let now = host::now_ms();
        let resumed = if response {
            if let Some(engine) = self.engine.as_mut() {
                self.policy
                    .on_service_answer(engine, answer.as_deref(), &now, &self.store);
            }
            self.after_engine(now);
            host::resume_response()
        } else if self.service_answered(answer.as_deref(), now) == Action::Continue {
            host::resume_request()
        } else {
            Ok(())
        };
        if let Err(e) = resumed {
            host::log(
                LogLevel::Debug,
                &format!("stakeguard: stream not resumed (gone?): status {}", e.0),
            );
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let now = host::now_ms();
        self.started_ms = now;
        self.serial = {
            let mut worker = self.worker.borrow_mut();
            worker.references = worker.references.wrapping_add(1);
            worker.references
        };
        let head = host::get_headers(MapType::HttpRequestHeaders);
        let headers = match read(&head, &self.worker) {
            Ok(headers) => headers,
            Err(e) => return self.refuse(&format!("cannot read request headers: status {}", e.0)),
        };
        let reference = events::reference(headers.get("x-request-id"), now, self.serial);
        // Each property is a host call: read only what the policy can use.
        let property = |path| match host::get_property(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        };
        let source = if self.policy.needs_source_address(&headers) {
            property(SOURCE_ADDRESS)
        } else {
            None
        };
        let peer_uri_san = if self.policy.needs_peer_certificate() {
            property(PEER_URI_SAN)
        } else {
            None
        };
        let authority = headers
            .get(":authority")
            .or_else(|| headers.get("host"))
            .unwrap_or("");
        let request = Request {
            method: headers.get(":method").unwrap_or(""),
            authority,
            path: headers.get(":path").unwrap_or(""),
            headers: &headers,
            source_address: source.as_deref(),
            peer_uri_san: peer_uri_san.as_deref(),
            reference: &reference,
        };
        let (engine, verdict) = self.policy.on_request(&request, &now, &self.store);
        give_back(headers, &self.worker);
        self.engine = Some(engine);
        self.request_headers = head.unwrap_or_default();
        self.after_engine(now);
        self.carry_out(verdict, now, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.paused || self.replied || self.service_call.is_some() {
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
        // The request's clock: the upstream's latency does not matter to any stamp the
        // response makes, and a clock read is a host call.
        let now = self.started_ms;
        // The worker's list, lent to this response and given back with its capacity, so
        // that answering allocates nothing once it has grown.
        let mut changes = std::mem::take(&mut self.worker.borrow_mut().changes);
        let applied = if engine.needs_response_headers() {
            let head = host::get_headers(MapType::HttpResponseHeaders);
            match read(&head, &self.worker) {
                Ok(headers) => {
                    let status = headers
                        .get(":status")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let response = Response {
                        status,
                        headers: &headers,
                    };
                    self.policy.on_response(
                        engine,
                        Some(&response),
                        &now,
                        &self.store,
                        &mut changes,
                    );
                    let applied = if headers::whole_map_is_cheaper(&changes) {
                        self.rewrite_response(&headers, &changes)
                    } else {
                        apply_one_by_one(&changes)
                    };
                    give_back(headers, &self.worker);
                    applied
                }
                Err(e) => {
                    host::log(
                        LogLevel::Warn,
                        &format!("stakeguard: cannot read response headers: status {}", e.0),
                    );
                    Ok(())
                }
            }
        } else {
            self.policy
                .on_response(engine, None, &now, &self.store, &mut changes);
            apply_one_by_one(&changes)
        };
        if let Err(e) = applied {
            host::log(
                LogLevel::Error,
                &format!(
                    "stakeguard: cannot rewrite response headers: status {}",
                    e.0
                ),
            );
        }
        changes.clear();
        self.worker.borrow_mut().changes = changes;
        // Outcomes counted in the rate limit service: the response waits for the count,
        // so that a lockout it causes is known (and reported) with it.
        let call = self
            .engine
            .as_mut()
            .and_then(|engine| self.policy.take_service_call(engine));
        if let Some(call) = call {
            if self.dispatch(&call, true).is_ok() {
                self.after_engine(now);
                return Action::Pause;
            }
            if let Some(engine) = self.engine.as_mut() {
                self.policy
                    .on_service_answer(engine, None, &now, &self.store);
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
