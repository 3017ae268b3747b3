//! What the engine tells its host to do, and the events it raised on the way.
//!
//! These types are the whole contract between the engine and the filter: a [`Verdict`]
//! for each request callback, [`HeaderChange`]s for the response, and [`Event`]s that the
//! filter turns into metrics, log lines and alerts. Nothing here holds a raw password,
//! token or cookie: keys appear only as [`KeyHash`]es.

use serde::{Deserialize, Serialize};

/// A 64-bit digest of an identity key (user, client IP, session, username): enough to
/// correlate events, never enough to recover the key.
pub type KeyHash = u64;

/// The position of an API in the policy's inventory; see [`crate::Policy::api`].
pub type ApiId = usize;

/// A protection a request can meet. The names are stable: they appear in metrics,
/// logs, alerts, the published decision and the policy document's `exempt` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The request path could not be normalized without ambiguity.
    Path,
    /// The route is in no API of the inventory (a shadow API).
    UnknownRoute,
    /// The API is deprecated or retired.
    Lifecycle,
    /// The method is not one the route accepts.
    Method,
    /// Required credentials are missing.
    Auth,
    /// The session cookie is idle or too old.
    Session,
    /// Failed-login lockout.
    Login,
    /// Requests per key per window.
    RateLimit,
    /// Request body size and content type.
    Body,
    /// Response hardening: cookie attributes, security headers, stripped headers.
    Response,
    /// The counter store itself (the tier's `on_error` decided).
    Store,
}

impl Control {
    /// The control's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Path => "path",
            Control::UnknownRoute => "unknown_route",
            Control::Lifecycle => "lifecycle",
            Control::Method => "method",
            Control::Auth => "auth",
            Control::Session => "session",
            Control::Login => "login",
            Control::RateLimit => "rate_limit",
            Control::Body => "body",
            Control::Response => "response",
            Control::Store => "store",
        }
    }
}

/// Whether a control acts on traffic, only reports, or is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The control changes traffic: blocks, delays, rewrites.
    #[default]
    Enforce,
    /// The control changes no traffic and reports what it would have done.
    Monitor,
    /// The control is not evaluated.
    Off,
}

impl Mode {
    /// The mode's name as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
            Mode::Off => "off",
        }
    }
}

/// What a control does when it fires in enforce mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answer with a local reply; the upstream never sees the request.
    Block,
    /// Hold the request for a while, then let it through.
    Delay,
    /// Let it through and raise an incident.
    Alert,
    /// Let it through and write a log line.
    Log,
}

impl Action {
    /// The action's name as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Delay => "delay",
            Action::Alert => "alert",
            Action::Log => "log",
        }
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

/// How urgent an incident is; becomes the `severity` label of the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Someone should look during working hours.
    Ticket,
    /// Worth recording as an incident, nobody needs to act.
    Info,
}

impl Severity {
    /// The severity's name as written in the policy and in alert labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
            Severity::Info => "info",
        }
    }
}

/// What happened, in the words a policy uses to say which events are incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A path that normalization could not make unambiguous.
    AmbiguousPath,
    /// A route that no API in the inventory claims.
    ShadowApi,
    /// A call to a deprecated API version.
    DeprecatedApiCalled,
    /// A call to a retired API version, or to a deprecated one past its sunset.
    RetiredApiCalled,
    /// A method the route does not accept.
    MethodNotAllowed,
    /// A request without the credentials its API requires.
    CredentialsMissing,
    /// A session cookie unused for longer than the idle timeout.
    SessionIdleTimeout,
    /// A session cookie older than the absolute timeout.
    SessionAbsoluteTimeout,
    /// A session cookie presented from a different client than it was issued to.
    SessionHijackSuspected,
    /// A login attempt that failed (counted from the response status).
    LoginFailure,
    /// A username or client reached its failure threshold and is locked out.
    LoginLockout,
    /// A login attempt by a locked-out username or client.
    LoginLocked,
    /// A login body too large to read the username from.
    LoginBodyTooLarge,
    /// A key went over its rate limit.
    RateLimited,
    /// A request body over the size limit.
    BodyTooLarge,
    /// A request body of a content type the API does not accept.
    ContentTypeRefused,
    /// The counter store failed.
    StoreFailure,
    /// The response was hardened (cookie attributes, security headers, stripped headers).
    ResponseHardened,
}

impl EventKind {
    /// The event's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AmbiguousPath => "ambiguous_path",
            EventKind::ShadowApi => "shadow_api",
            EventKind::DeprecatedApiCalled => "deprecated_api_called",
            EventKind::RetiredApiCalled => "retired_api_called",
            EventKind::MethodNotAllowed => "method_not_allowed",
            EventKind::CredentialsMissing => "credentials_missing",
            EventKind::SessionIdleTimeout => "session_idle_timeout",
            EventKind::SessionAbsoluteTimeout => "session_absolute_timeout",
            EventKind::SessionHijackSuspected => "session_hijack_suspected",
            EventKind::LoginFailure => "login_failure",
            EventKind::LoginLockout => "login_lockout",
            EventKind::LoginLocked => "login_locked",
            EventKind::LoginBodyTooLarge => "login_body_too_large",
            EventKind::RateLimited => "rate_limited",
            EventKind::BodyTooLarge => "body_too_large",
            EventKind::ContentTypeRefused => "content_type_refused",
            EventKind::StoreFailure => "store_failure",
            EventKind::ResponseHardened => "response_hardened",
        }
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
}

/// A change to the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Replace every value of the header with this one.
    Set(String, String),
    /// Remove the header.
    Remove(String),
    /// Replace all `set-cookie` values with these (hardened) ones, in order.
    ReplaceSetCookies(Vec<String>),
}
