//! The decision engine: what a request meets on its way through, callback by callback.
//!
//! [`Policy::on_request`] normalizes the path, finds the API and walks its controls in a
//! fixed order (lifecycle, credentials, session, rate limit, body, login lockout). In
//! enforce mode the first control that blocks ends the walk with a local reply; in
//! monitor mode it records `would_block` and the walk goes on, so one request reports
//! everything it would have met. [`Policy::on_request_body`] finishes what needed the body
//! (the login username, bodies without a length), and [`Policy::on_response`] counts
//! outcomes (failed logins, new sessions) and hardens the response.

mod authorization;
mod cors;
mod login;
mod quota;
mod rate_limit;
mod reply;
mod response;
mod service;
mod session;

use crate::decision::{
    Action, ApiId, Control, Event, EventKind, HeaderChange, Mode, Outcome, ServiceCall, Severity,
    Verdict,
};
use std::cell::OnceCell;

use crate::host::{Clock, CounterStore, Millis, StoreError};
use crate::identity;
use crate::json::RawJson;
use crate::model::{OnError, UnknownAction};
use crate::path::normalize;
use crate::policy::{Api, Credential, Lifecycle, Policy};
use crate::request::{Request, Response};
use crate::routes::{Found, Match};
use crate::state::{Slots, key_hash};

pub(crate) use reply::error_reply;
pub use service::ServiceLimit;

/// What the engine remembers about one stream between its callbacks.
#[derive(Debug, Default)]
pub struct Stream {
    api: Option<ApiId>,
    events: Vec<Event>,
    decision: Decision,
    /// Digest of the client IP, for counting login failures and binding sessions.
    client: Option<u64>,
    /// Digest of the login username, once read from the body.
    username: Option<u64>,
    /// Whether this stream's response counts as a login attempt.
    login_attempt: bool,
    body_limit: usize,
    /// The host's reference, kept only when the body is read, for replies made then.
    reference: String,
    /// The longest delay a control asked for, served after the walk.
    delay_ms: u64,
    /// Whether the body is read to check its size (no `content-length` was sent).
    body_size_check: bool,
    wants_response: bool,
    /// Whether the API's own controls read the response (see
    /// [`Stream::needs_response_headers`]).
    reads_response: bool,
    /// Counter updates that found their slot full (see [`crate::state`]).
    collisions: u32,
    /// Quotas (by index) and keys to count when the upstream answers 2xx.
    quota_pending: Vec<(usize, u64)>,
    /// Whether a quota is keyed by a field of the body.
    quota_body: bool,
    /// The request's `Origin` when the policy allows it, for the CORS headers.
    cors_origin: Option<String>,
    /// Questions to the rate limit service, sent together in one call (see
    /// [`service`]); empty for controls that count locally.
    asked: Vec<service::Asked>,
    /// Whether the questions are the response's counts.
    counting_response: bool,
    /// Whether the service found a login key of this request locked already.
    login_locked: bool,
    /// Calls to the rate limit service that failed.
    service_errors: u32,
    /// Headers the service's answer puts on the upstream's response.
    service_headers: Vec<(String, String)>,
}

/// The one decision published for a stream: the most significant thing that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The API the request was routed to.
    pub api: Option<ApiId>,
    /// The control behind the outcome; `None` when nothing fired.
    pub control: Option<Control>,
    /// What the request experienced.
    pub outcome: Outcome,
}

impl Default for Decision {
    fn default() -> Self {
        Decision {
            api: None,
            control: None,
            outcome: Outcome::Allowed,
        }
    }
}

impl Stream {
    /// Takes the events raised since the last call, leaving none behind.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The decision to publish: the heaviest outcome so far.
    pub fn decision(&self) -> Decision {
        Decision {
            api: self.api,
            ..self.decision
        }
    }

    /// How many counter updates of this stream found their slot full and had to share
    /// or evict an entry: a sign that the policy's `state.slots` is too small.
    pub fn store_collisions(&self) -> u32 {
        self.collisions
    }

    /// Notes a counter update's collision, if it had one.
    pub(crate) fn note(&mut self, updated: &crate::state::Updated) {
        self.collisions += u32::from(updated.collided);
    }

    /// How many calls to the rate limit service failed since the last call (timeouts,
    /// unreachable, answers that are no `RateLimitResponse`), for the host's metric.
    pub fn take_service_errors(&mut self) -> u32 {
        std::mem::take(&mut self.service_errors)
    }

    /// The API the request was routed to.
    pub fn api(&self) -> Option<ApiId> {
        self.api
    }

    /// Whether [`Policy::on_response`] has anything to do for this stream.
    pub fn wants_response(&self) -> bool {
        self.wants_response
    }

    /// Whether [`Policy::on_response`] must see the response headers: to count an
    /// outcome (a login attempt, a quota counted on success), to notice a session
    /// starting, or to harden cookies, add missing security headers or report what
    /// monitor mode would change. When it need not, the host can skip reading them (in
    /// Envoy that read costs as much as every other host call of a response together) and
    /// pass `None`: the changes then hold only what needs no reading (CORS, deprecation
    /// notices, headers to strip, removed whether present or not).
    pub fn needs_response_headers(&self) -> bool {
        self.reads_response || self.login_attempt || !self.quota_pending.is_empty()
    }

    fn pending_delay(&self) -> Verdict {
        if self.delay_ms > 0 {
            Verdict::Delay(self.delay_ms)
        } else {
            Verdict::Continue
        }
    }

    /// How many body bytes to buffer before calling [`Policy::on_request_body`].
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }
}

/// Everything a control needs while it decides on one request.
pub(crate) struct Context<'r, 'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) api: &'a Api,
    pub(crate) api_id: ApiId,
    pub(crate) request: Option<&'r Request<'r>>,
    pub(crate) now: Millis,
    pub(crate) slots: Slots<'a>,
    /// The partner the request comes from, if any.
    pub(crate) partner: Option<usize>,
    /// The route within the API.
    pub(crate) route: usize,
    /// The matched route, for its template parameters.
    pub(crate) found: Option<Found<'a, 'r, (ApiId, usize)>>,
    /// The bearer token's claims, decoded on first use.
    claims: OnceCell<Option<identity::Claims>>,
}

impl<'r> Context<'r, '_> {
    /// The bearer token's claims (decoded once per request, only when a control asks).
    pub(crate) fn claims(&self) -> Option<RawJson<'_>> {
        self.claims
            .get_or_init(|| {
                self.request
                    .and_then(|r| identity::bearer_claims(r.headers))
            })
            .as_ref()
            .map(identity::Claims::json)
    }

    /// A template parameter of the matched route, still percent-encoded.
    pub(crate) fn param(&self, name: &str) -> Option<&'r str> {
        self.found.as_ref().and_then(|found| found.param(name))
    }
}

impl Context<'_, '_> {
    /// Whether the request's partner skips this control.
    pub(crate) fn exempt(&self, control: Control) -> bool {
        self.partner
            .and_then(|p| self.policy.partners.get(p))
            .is_some_and(|partner| partner.exempt.contains(&control))
    }

    pub(crate) fn reference(&self) -> &str {
        self.request.map_or("", |r| r.reference)
    }
}

impl Stream {
    /// Records an event and lets it weigh on the published decision.
    pub(crate) fn raise(
        &mut self,
        kind: EventKind,
        control: Control,
        mode: Mode,
        outcome: Outcome,
        severity: Option<Severity>,
        key: Option<u64>,
    ) {
        if self.decision.control.is_none() || outcome.weight() > self.decision.outcome.weight() {
            self.decision.control = Some(control);
            self.decision.outcome = outcome;
        }
        self.events.push(Event {
            kind,
            control,
            api: self.api,
            mode,
            outcome,
            severity,
            key,
        });
    }

    /// Raises an event for a control that would block: in enforce mode the request is
    /// blocked (the caller sends `reply`), in monitor mode it goes on as `would_block`.
    /// Returns the verdict that ends the walk, if any.
    pub(crate) fn block(
        &mut self,
        api: &Api,
        kind: EventKind,
        control: Control,
        mode: Mode,
        key: Option<u64>,
        reply: impl FnOnce() -> Verdict,
    ) -> Option<Verdict> {
        let severity = api.controls.severity(kind);
        match mode {
            Mode::Off => None,
            Mode::Monitor => {
                self.raise(kind, control, mode, Outcome::WouldBlock, severity, key);
                None
            }
            Mode::Enforce => {
                self.raise(kind, control, mode, Outcome::Blocked, severity, key);
                Some(reply())
            }
        }
    }

    /// Carries out a counting control's action when its key is over the limit: block
    /// with `reply`, delay by `delay_ms`, or let through with an incident or a log line.
    /// Monitor mode turns block and delay into `would_block`. A delay does not end the
    /// walk: it is served once every other control has had its say.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per counting control, each naming every part of the event"
    )]
    pub(crate) fn act(
        &mut self,
        cx: &Context<'_, '_>,
        kind: EventKind,
        control: Control,
        mode: Mode,
        action: Action,
        key: Option<u64>,
        delay_ms: u64,
        reply: impl FnOnce() -> Verdict,
    ) -> Option<Verdict> {
        let severity = cx.api.controls.severity(kind);
        let outcome = match (mode, action) {
            (Mode::Off, _) => return None,
            (Mode::Monitor, Action::Block | Action::Delay) => Outcome::WouldBlock,
            (_, Action::Alert) => Outcome::Alerted,
            (_, Action::Log) => Outcome::Logged,
            (Mode::Enforce, Action::Block) => Outcome::Blocked,
            (Mode::Enforce, Action::Delay) => Outcome::Delayed,
        };
        let severity = match outcome {
            Outcome::Alerted => Some(severity.unwrap_or(Severity::Ticket)),
            _ => severity,
        };
        self.raise(kind, control, mode, outcome, severity, key);
        match outcome {
            Outcome::Blocked => Some(reply()),
            Outcome::Delayed => {
                self.delay_ms = self.delay_ms.max(delay_ms);
                None
            }
            _ => None,
        }
    }

    /// The counter store failed: the tier's `on_error` decides.
    pub(crate) fn store_failed(
        &mut self,
        cx: &Context<'_, '_>,
        _error: StoreError,
    ) -> Option<Verdict> {
        let severity = cx.api.controls.severity(EventKind::StoreFailure);
        let fail_open = matches!(cx.api.controls.on_error, OnError::FailOpen);
        self.counting_failed(fail_open, severity, "store_unavailable", cx.reference())
    }

    /// Counting failed, in the store or in a rate limit service: the event, and with
    /// `fail_open` nothing more, else a 503 with `code`.
    pub(crate) fn counting_failed(
        &mut self,
        fail_open: bool,
        severity: Option<Severity>,
        code: &'static str,
        reference: &str,
    ) -> Option<Verdict> {
        let outcome = if fail_open {
            Outcome::FailedOpen
        } else {
            Outcome::Blocked
        };
        self.raise(
            EventKind::StoreFailure,
            Control::Store,
            Mode::Enforce,
            outcome,
            severity,
            None,
        );
        (!fail_open).then(|| {
            error_reply(
                503,
                code,
                "the request could not be checked; try again shortly",
                reference,
                Vec::new(),
            )
        })
    }
}

impl Stream {
    /// The store failed while counting a response: the request is already upstream, so
    /// nothing can be blocked any more and the failure is reported as failed open.
    pub(crate) fn store_failed_late(&mut self, cx: &Context<'_, '_>, _error: StoreError) {
        let severity = cx.api.controls.severity(EventKind::StoreFailure);
        self.raise(
            EventKind::StoreFailure,
            Control::Store,
            Mode::Enforce,
            Outcome::FailedOpen,
            severity,
            None,
        );
    }
}

impl Policy {
    fn slots<'a>(&'a self, store: &'a dyn CounterStore) -> Slots<'a> {
        Slots {
            store,
            namespace: &self.state.namespace,
            slots: self.state.slots,
        }
    }

    /// Decides on the request headers.
    pub fn on_request(
        &self,
        request: &Request<'_>,
        clock: &dyn Clock,
        store: &dyn CounterStore,
    ) -> (Stream, Verdict) {
        let mut stream = Stream::default();
        let verdict = self.decide_request(&mut stream, request, clock, store);
        (stream, verdict)
    }

    fn decide_request(
        &self,
        stream: &mut Stream,
        request: &Request<'_>,
        clock: &dyn Clock,
        store: &dyn CounterStore,
    ) -> Verdict {
        if let Some(why) = overridden_target(request) {
            return self.refuse_ambiguous(stream, request, why);
        }
        let path = match normalize(request.path) {
            Ok(path) => path,
            Err(error) => return self.refuse_ambiguous(stream, request, error.describe()),
        };
        // A CORS preflight is routed as the request it announces.
        let preflight = cors::is_preflight(request);
        let method = if preflight {
            request
                .headers
                .get("access-control-request-method")
                .unwrap_or(request.method)
        } else {
            request.method
        };
        let (found, method_served) = match self.index.lookup(request.authority, &path, method) {
            Match::Found(found) => (Some(found), true),
            Match::NotFound => return self.unknown_route(stream, request),
            Match::MethodNotAllowed {
                allow,
                value: (api_id, _),
            } => {
                stream.api = Some(api_id);
                let Some(api) = self.apis.get(api_id) else {
                    return Verdict::Continue;
                };
                if preflight && api.controls.cors.is_some() {
                    (None, false)
                } else {
                    let mode = api.controls.default_mode;
                    return stream
                        .block(
                            api,
                            EventKind::MethodNotAllowed,
                            Control::Method,
                            mode,
                            None,
                            || {
                                error_reply(
                                    405,
                                    "method_not_allowed",
                                    "this method is not served on this path",
                                    request.reference,
                                    vec![("allow".to_owned(), allow.to_owned())],
                                )
                            },
                        )
                        .unwrap_or(Verdict::Continue);
                }
            }
        };
        let (api_id, route) = match &found {
            Some(found) => found.value,
            None => (stream.api.unwrap_or_default(), usize::MAX),
        };
        stream.api = Some(api_id);
        let Some(api) = self.apis.get(api_id) else {
            return Verdict::Continue;
        };
        let client_ip = identity::client_ip(request, &self.identity);
        stream.client = client_ip.map(|ip| key_hash("client_ip", ip.as_bytes()));
        let partner = if self.partners.is_empty() {
            None
        } else {
            identity::partner(&self.partners, request, client_ip).map(|(i, _)| i)
        };
        let cx = Context {
            policy: self,
            api,
            api_id,
            request: Some(request),
            now: clock.now_ms(),
            slots: self.slots(store),
            partner,
            route,
            found,
            claims: OnceCell::new(),
        };
        if preflight && let Some(verdict) = cors::preflight(stream, &cx, method_served) {
            return verdict;
        }
        stream.wants_response = api.controls.response.is_some()
            || matches!(api.lifecycle, Lifecycle::Deprecated { .. })
            || api.controls.session.is_some();
        stream.reads_response = api.controls.session.is_some()
            || api
                .controls
                .response
                .as_ref()
                .is_some_and(response::reads_response);
        // The controls in order, the first verdict wins. Direct calls: a table of function
        // pointers made each of the ten an indirect call in wasm.
        let verdict = lifecycle(stream, &cx)
            .or_else(|| cors::check(stream, &cx))
            .or_else(|| credentials(stream, &cx))
            .or_else(|| authorization::check_claims(stream, &cx))
            .or_else(|| authorization::check_ownership(stream, &cx))
            .or_else(|| session::check(stream, &cx))
            .or_else(|| rate_limit::check(stream, &cx))
            .or_else(|| quota::check(stream, &cx))
            .or_else(|| body_headers(stream, &cx))
            .or_else(|| login::check(stream, &cx));
        if let Some(verdict) = verdict {
            return verdict;
        }
        if stream.body_limit > 0 {
            stream.reference = request.reference.to_owned();
            Verdict::ReadBody
        } else if let Some(call) = service::call(api, api_id, &stream.asked) {
            stream.reference = request.reference.to_owned();
            Verdict::AskService(call)
        } else {
            stream.pending_delay()
        }
    }

    /// Acts on the rate limit service's answer to a [`Verdict::AskService`] of the
    /// request (`answer` is the `RateLimitResponse`, `None` when the call failed or timed
    /// out), or to [`Policy::take_service_call`]'s counts of the response (the verdict
    /// is then `Continue`: the response goes on).
    pub fn on_service_answer(
        &self,
        stream: &mut Stream,
        answer: Option<&[u8]>,
        clock: &dyn Clock,
        store: &dyn CounterStore,
    ) -> Verdict {
        let Some(cx) = self.context(stream, clock, store) else {
            return Verdict::Continue;
        };
        if std::mem::take(&mut stream.counting_response) {
            service::counted(stream, &cx, answer);
            return Verdict::Continue;
        }
        let reference = std::mem::take(&mut stream.reference);
        service::decide(stream, &cx, answer, &reference).unwrap_or_else(|| stream.pending_delay())
    }

    /// The rate limit service a [`ServiceCall`] goes to.
    pub fn counter_service(&self, call: &ServiceCall) -> Option<&crate::CounterService> {
        self.apis.get(call.api)?.controls.service.as_ref()
    }

    /// The call counting the response's outcomes in the rate limit service (failed
    /// logins, quotas counted on success), after [`Policy::on_response`]; `None` when
    /// nothing of it counts there. The host holds the response until the answer, which
    /// goes to [`Policy::on_service_answer`].
    pub fn take_service_call(&self, stream: &mut Stream) -> Option<ServiceCall> {
        let api_id = stream.api?;
        let call = service::call(self.apis.get(api_id)?, api_id, &stream.asked)?;
        stream.counting_response = true;
        Some(call)
    }

    /// A request whose target is not one thing: 400 (`ambiguous_paths.mode` decides).
    fn refuse_ambiguous(&self, stream: &mut Stream, request: &Request<'_>, why: &str) -> Verdict {
        let mode = self.ambiguous_mode;
        let outcome = match mode {
            Mode::Off => return Verdict::Continue,
            Mode::Monitor => Outcome::WouldBlock,
            Mode::Enforce => Outcome::Blocked,
        };
        stream.raise(
            EventKind::AmbiguousPath,
            Control::Path,
            mode,
            outcome,
            None,
            None,
        );
        match mode {
            Mode::Enforce => error_reply(400, "ambiguous_path", why, request.reference, Vec::new()),
            _ => Verdict::Continue,
        }
    }

    fn unknown_route(&self, stream: &mut Stream, request: &Request<'_>) -> Verdict {
        let unknown = &self.unknown;
        let (outcome, severity) = match (unknown.action, unknown.mode) {
            (UnknownAction::Allow, _) | (_, Mode::Off) => return Verdict::Continue,
            (UnknownAction::Log, _) => (Outcome::Logged, None),
            (UnknownAction::Alert, _) => (Outcome::Alerted, Some(unknown.severity)),
            (UnknownAction::Block, Mode::Monitor) => (Outcome::WouldBlock, Some(unknown.severity)),
            (UnknownAction::Block, Mode::Enforce) => (Outcome::Blocked, Some(unknown.severity)),
        };
        stream.raise(
            EventKind::ShadowApi,
            Control::UnknownRoute,
            unknown.mode,
            outcome,
            severity,
            None,
        );
        if outcome == Outcome::Blocked {
            error_reply(
                404,
                "unknown_route",
                "no API is published on this route",
                request.reference,
                Vec::new(),
            )
        } else {
            Verdict::Continue
        }
    }

    /// Decides on the buffered body; `complete` is false when the body was longer than
    /// [`Stream::body_limit`] and `body` holds only its first bytes.
    pub fn on_request_body(
        &self,
        stream: &mut Stream,
        body: &[u8],
        complete: bool,
        clock: &dyn Clock,
        store: &dyn CounterStore,
    ) -> Verdict {
        let Some(cx) = self.context(stream, clock, store) else {
            return Verdict::Continue;
        };
        let reference = std::mem::take(&mut stream.reference);
        // The buffer may be larger than the limit (another control asked for more), so
        // the size is checked against the limit itself, not only by truncation.
        if stream.body_size_check
            && let Some(limit) = &cx.api.controls.body
            && (!complete || limit.max_bytes.is_some_and(|max| body.len() as u64 > max))
            && !cx.exempt(Control::Body)
            && let Some(verdict) = stream.block(
                cx.api,
                EventKind::BodyTooLarge,
                Control::Body,
                limit.mode,
                None,
                || body_too_large(&reference),
            )
        {
            return verdict;
        }
        if let Some(verdict) = login::check_body(stream, &cx, &reference, body, complete)
            .or_else(|| quota::check_body(stream, &cx, &reference, body))
        {
            return verdict;
        }
        match service::call(cx.api, cx.api_id, &stream.asked) {
            Some(call) => {
                stream.reference = reference;
                Verdict::AskService(call)
            }
            None => stream.pending_delay(),
        }
    }

    /// Counts the response and appends the header changes to make to `changes`, a list
    /// the host can keep from response to response so that answering allocates nothing.
    /// `response` is `None` when the host did not read the response headers because
    /// [`Stream::needs_response_headers`] said it need not.
    pub fn on_response(
        &self,
        stream: &mut Stream,
        response: Option<&Response<'_>>,
        clock: &dyn Clock,
        store: &dyn CounterStore,
        changes: &mut Vec<HeaderChange>,
    ) {
        let Some(cx) = self.context(stream, clock, store) else {
            return;
        };
        changes.reserve(response::most_changes(cx.api));
        if let Some(response) = response {
            login::count(stream, &cx, response);
            quota::count_answered(stream, &cx, response);
            session::observe_issued(stream, &cx, response);
        }
        cors::respond(stream, cx.api, changes);
        service::respond(stream, changes);
        response::lifecycle_headers(&cx, changes);
        response::harden(stream, &cx, response, changes);
    }

    /// The context of the body and response callbacks, which see no request headers:
    /// partner exemptions were settled on the headers.
    fn context<'a>(
        &'a self,
        stream: &Stream,
        clock: &dyn Clock,
        store: &'a dyn CounterStore,
    ) -> Option<Context<'a, 'a>> {
        let api_id = stream.api?;
        Some(Context {
            policy: self,
            api: self.apis.get(api_id)?,
            api_id,
            request: None,
            now: clock.now_ms(),
            slots: self.slots(store),
            partner: None,
            route: usize::MAX,
            found: None,
            claims: OnceCell::new(),
        })
    }
}

/// Deprecated APIs are annotated; retired ones (and deprecated ones past their sunset)
/// answer 410.
fn lifecycle(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let (mode, link) = match &cx.api.lifecycle {
        Lifecycle::Active => return None,
        Lifecycle::Deprecated {
            mode,
            sunset_ms,
            link,
            ..
        } => {
            let past_sunset =
                sunset_ms.is_some_and(|sunset| i64::try_from(cx.now).unwrap_or(i64::MAX) >= sunset);
            if !past_sunset {
                if *mode != Mode::Off && !cx.exempt(Control::Lifecycle) {
                    let outcome = if *mode == Mode::Enforce {
                        Outcome::Annotated
                    } else {
                        Outcome::Logged
                    };
                    let severity = cx.api.controls.severity(EventKind::DeprecatedApiCalled);
                    stream.raise(
                        EventKind::DeprecatedApiCalled,
                        Control::Lifecycle,
                        *mode,
                        outcome,
                        severity,
                        stream.client,
                    );
                }
                return None;
            }
            (*mode, link)
        }
        Lifecycle::Retired { mode, link } => (*mode, link),
    };
    if cx.exempt(Control::Lifecycle) {
        return None;
    }
    let reference = cx.reference();
    stream.block(
        cx.api,
        EventKind::RetiredApiCalled,
        Control::Lifecycle,
        mode,
        stream.client,
        || {
            let headers = link
                .iter()
                .map(|l| ("link".to_owned(), l.clone()))
                .collect();
            error_reply(
                410,
                "api_retired",
                "this API version is retired",
                reference,
                headers,
            )
        },
    )
}

/// Headers by which frameworks (Rails, Laravel, Spring's filter, IIS, Symfony) let a
/// request name another method or target than its own: a backend honouring them would act
/// on what no control judged. A method override equal to the method says nothing new.
fn overridden_target(request: &Request<'_>) -> Option<&'static str> {
    const METHOD: [&str; 3] = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    const TARGET: [&str; 2] = ["x-original-url", "x-rewrite-url"];
    let headers = request.headers;
    if METHOD.iter().any(|name| {
        headers
            .get(name)
            .is_some_and(|m| !m.trim().eq_ignore_ascii_case(request.method))
    }) {
        return Some("a method-override header names another method than the request's");
    }
    TARGET
        .iter()
        .any(|name| headers.get(name).is_some())
        .then_some("a URL-override header names another target than the request's")
}

/// Required credentials: 401 with a challenge when one is missing.
fn credentials(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let auth = cx.api.controls.auth.as_ref()?;
    let request = cx.request?;
    if cx.exempt(Control::Auth) {
        return None;
    }
    let present = |credential: &Credential| {
        let value = match credential {
            Credential::Header(name) => request.headers.get(name),
            Credential::Cookie(name) => crate::identity::cookie(request.headers, name),
        };
        value.is_some_and(|v| !v.trim().is_empty())
    };
    if auth.required.iter().all(present)
        && (auth.any_of.is_empty() || auth.any_of.iter().any(present))
    {
        return None;
    }
    stream.block(
        cx.api,
        EventKind::CredentialsMissing,
        Control::Auth,
        auth.mode,
        stream.client,
        || {
            error_reply(
                401,
                "credentials_missing",
                "this API needs credentials",
                request.reference,
                vec![("www-authenticate".to_owned(), auth.challenge.clone())],
            )
        },
    )
}

/// The 413 answer, on the headers (by `content-length`) or on the body (measured).
fn body_too_large(reference: &str) -> Verdict {
    error_reply(
        413,
        "body_too_large",
        "the request body is larger than this API accepts",
        reference,
        Vec::new(),
    )
}

/// Body size by `content-length` and content type by `content-type`; a body sent without
/// a length is read (up to the limit) to be measured.
fn body_headers(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let limits = cx.api.controls.body.as_ref()?;
    let request = cx.request?;
    if cx.exempt(Control::Body) {
        return None;
    }
    let length = request
        .headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body =
        length.is_some_and(|l| l > 0) || request.headers.get("transfer-encoding").is_some();
    if let (Some(max), Some(length)) = (limits.max_bytes, length)
        && length > max
    {
        let verdict = stream.block(
            cx.api,
            EventKind::BodyTooLarge,
            Control::Body,
            limits.mode,
            stream.client,
            || body_too_large(request.reference),
        );
        if verdict.is_some() {
            return verdict;
        }
    }
    if has_body && !limits.content_types.is_empty() {
        let media = request
            .headers
            .get("content-type")
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if !limits
            .content_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(media))
        {
            let verdict = stream.block(
                cx.api,
                EventKind::ContentTypeRefused,
                Control::Body,
                limits.mode,
                stream.client,
                || {
                    error_reply(
                        415,
                        "content_type_refused",
                        "this API does not accept this content type",
                        request.reference,
                        Vec::new(),
                    )
                },
            );
            if verdict.is_some() {
                return verdict;
            }
        }
    }
    if let (Some(max), None, true) = (limits.max_bytes, length, has_body) {
        stream.body_size_check = true;
        stream.body_limit = stream
            .body_limit
            .max(usize::try_from(max).unwrap_or(usize::MAX));
    }
    None
}
