//! What the engine tells its host to do, and the events it raised on the way.
//!
//! These types are the whole contract between the engine and the filter: a [`Verdict`]
//! for each request callback, [`HeaderChange`]s for the response, and [`Event`]s that the
//! filter turns into metrics, log lines and alerts. Nothing here holds a raw password,
//! token or cookie: keys appear only as [`KeyHash`]es.

use std::sync::Arc;

use crate::read::spec_enum;

/// A 64-bit digest of an identity key (user, client IP, session, username): enough to
/// correlate events, never enough to recover the key.
pub type KeyHash = u64;

/// The position of an API in the policy's inventory; see [`crate::Policy::api`].
pub type ApiId = usize;

spec_enum! {
    /// A protection a request can meet. The names are stable: they appear in metrics,
    /// logs, alerts, the published decision and the policy document's `exempt` lists.
    pub enum Control {
        /// The request path could not be normalized without ambiguity.
        Path = "path",
        /// The route is in no API of the inventory (a shadow API).
        UnknownRoute = "unknown_route",
        /// The API is deprecated or retired.
        Lifecycle = "lifecycle",
        /// The method is not one the route accepts.
        Method = "method",
        /// Required credentials are missing.
        Auth = "auth",
        /// The session cookie is idle or too old.
        Session = "session",
        /// Failed-login lockout.
        Login = "login",
        /// Requests per key per window.
        RateLimit = "rate_limit",
        /// Request body size and content type.
        Body = "body",
        /// Response hardening: cookie attributes, security headers, stripped headers.
        Response = "response",
        /// Object ownership: route parameters bound to the caller (OWASP API1).
        Ownership = "ownership",
        /// Function-level authorization by bearer-token claims (OWASP API5).
        Claims = "claims",
        /// Business-flow quotas (OWASP API6).
        Quota = "quota",
        /// Cross-origin requests (OWASP API8).
        Cors = "cors",
        /// The counter store itself (the tier's `on_error` decided).
        Store = "store",
    }
}

spec_enum! {
    /// Whether a control acts on traffic, only reports, or is switched off.
    pub enum Mode {
        /// The control changes traffic: blocks, delays, rewrites.
        Enforce = "enforce",
        /// The control changes no traffic and reports what it would have done.
        Monitor = "monitor",
        /// The control is not evaluated.
        Off = "off",
    }
}

spec_enum! {
    /// What a control does when it fires in enforce mode.
    pub enum Action {
        /// Answer with a local reply; the upstream never sees the request.
        Block = "block",
        /// Hold the request for a while, then let it through.
        Delay = "delay",
        /// Let it through and raise an incident.
        Alert = "alert",
        /// Let it through and write a log line.
        Log = "log",
    }
}

/// What actually happened to the request because of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Passed through, nothing to say (used by the published decision only).
    Allowed,
    /// Answered locally with an error status.
    Blocked,
    /// Monitor mode: would have been blocked or delayed, was let through.
    WouldBlock,
    /// Held for a while, then let through.
    Delayed,
    /// Let through and an incident raised.
    Alerted,
    /// Let through and logged.
    Logged,
    /// Let through with headers added (deprecation notices, hardening).
    Annotated,
    /// The counter store failed and the tier said fail open.
    FailedOpen,
}

impl Outcome {
    /// The outcome's stable name, as it appears in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Blocked => "blocked",
            Outcome::WouldBlock => "would_block",
            Outcome::Delayed => "delayed",
            Outcome::Alerted => "alerted",
            Outcome::Logged => "logged",
            Outcome::Annotated => "annotated",
            Outcome::FailedOpen => "failed_open",
        }
    }

    /// How much an outcome says about a request, to pick the one decision to publish.
    pub(crate) fn weight(self) -> u8 {
        match self {
            Outcome::Allowed => 0,
            Outcome::Logged => 1,
            Outcome::Annotated => 2,
            Outcome::Alerted => 3,
            Outcome::FailedOpen => 4,
            Outcome::WouldBlock => 5,
            Outcome::Delayed => 6,
            Outcome::Blocked => 7,
        }
    }
}

spec_enum! {
    /// How urgent an incident is; becomes the `severity` label of the alert.
    pub enum Severity {
        /// Wake someone up.
        Page = "page",
        /// Someone should look during working hours.
        Ticket = "ticket",
        /// Worth recording as an incident, nobody needs to act.
        Info = "info",
    }
}

spec_enum! {
    /// What happened, in the words a policy uses to say which events are incidents.
    pub enum EventKind {
        /// A path that normalization could not make unambiguous.
        AmbiguousPath = "ambiguous_path",
        /// A route that no API in the inventory claims.
        ShadowApi = "shadow_api",
        /// A call to a deprecated API version.
        DeprecatedApiCalled = "deprecated_api_called",
        /// A call to a retired API version, or to a deprecated one past its sunset.
        RetiredApiCalled = "retired_api_called",
        /// A method the route does not accept.
        MethodNotAllowed = "method_not_allowed",
        /// A request without the credentials its API requires.
        CredentialsMissing = "credentials_missing",
        /// A session cookie unused for longer than the idle timeout.
        SessionIdleTimeout = "session_idle_timeout",
        /// A session cookie older than the absolute timeout.
        SessionAbsoluteTimeout = "session_absolute_timeout",
        /// A session cookie presented from a different client than it was issued to.
        SessionHijackSuspected = "session_hijack_suspected",
        /// A login attempt that failed (counted from the response status).
        LoginFailure = "login_failure",
        /// A username or client reached its failure threshold and is locked out.
        LoginLockout = "login_lockout",
        /// A login attempt by a locked-out username or client.
        LoginLocked = "login_locked",
        /// A login body too large to read the username from.
        LoginBodyTooLarge = "login_body_too_large",
        /// One client failed to sign in with many distinct usernames (password spraying).
        PasswordSpraying = "password_spraying",
        /// A key went over its rate limit.
        RateLimited = "rate_limited",
        /// A request body over the size limit.
        BodyTooLarge = "body_too_large",
        /// A request body of a content type the API does not accept.
        ContentTypeRefused = "content_type_refused",
        /// The counter store failed.
        StoreFailure = "store_failure",
        /// The response was hardened (cookie attributes, security headers, stripped headers).
        ResponseHardened = "response_hardened",
        /// A route parameter bound to the caller named someone else's object.
        ObjectNotOwned = "object_not_owned",
        /// A route that needs bearer-token claims was called without a token.
        TokenMissing = "token_missing",
        /// The token's claims do not allow this function.
        ClaimsInsufficient = "claims_insufficient",
        /// A business flow reached its quota.
        QuotaExceeded = "quota_exceeded",
        /// A cross-origin request from an origin the API does not allow.
        CorsOriginRefused = "cors_origin_refused",
    }
}

/// One thing a control noticed about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The control that noticed it.
    pub control: Control,
    /// The API the request was routed to; `None` for shadow routes and bad paths.
    pub api: Option<ApiId>,
    /// The control's mode for this API.
    pub mode: Mode,
    /// What the request experienced because of it.
    pub outcome: Outcome,
    /// `Some` when the policy counts this event as an incident for the API.
    pub severity: Option<Severity>,
    /// The digest of the key the control counted (user, client IP, session, username).
    pub key: Option<KeyHash>,
}

/// An answer the proxy sends in place of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The HTTP status.
    pub status: u16,
    /// Headers of the reply, besides `content-type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The JSON body: `{"error": ..., "reference": ...}`.
    pub body: String,
}

/// What the host does with a request after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request go on.
    Continue,
    /// Buffer the request body and call [`crate::Policy::on_request_body`] with it.
    ReadBody,
    /// Answer locally; the upstream never sees the request.
    Reply(LocalReply),
    /// Hold the request for this many milliseconds, then let it go on.
    Delay(u64),
    /// Send this `ShouldRateLimit` call to the rate limit service, hold the request until
    /// it answers (or its timeout), and give the answer to
    /// [`crate::Policy::on_service_answer`], whose verdict then stands.
    AskService(ServiceCall),
}

/// A call to the rate limit service (`envoy.service.ratelimit.v3.RateLimitService/
/// ShouldRateLimit`) carrying every service-counted control of one request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    /// The API whose service is called: [`crate::Policy::counter_service`] names its
    /// cluster and timeout.
    pub api: ApiId,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
}

/// A change to the response headers.
///
/// Names and values are shared with the compiled policy wherever they come from it, so
/// hardening a response copies no text: a clone of an `Arc<str>` is a count increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Replace every value of the header with this one.
    Set(Arc<str>, Arc<str>),
    /// Remove the header.
    Remove(Arc<str>),
    /// Replace all `set-cookie` values with these (hardened) ones, in order.
    ReplaceSetCookies(Vec<String>),
}

#[expect(
    clippy::derivable_impls,
    reason = "spec_enum! writes the enum's derives"
)]
impl Default for Mode {
    fn default() -> Self {
        Mode::Enforce
    }
}
