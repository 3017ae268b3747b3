//! The policy document as written: serde types for the JSON that operators edit.
//!
//! These types say what may be written, nothing more: durations, dates and patterns stay
//! strings here and are checked in [`crate::compile`], where every mistake is collected
//! with its JSON path instead of stopping at the first. Control blocks are all-optional
//! because a tier writes a complete bundle while an API overrides single fields of it.
//! The JSON Schema in `policies/policy.schema.json` is generated from these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::{Action, Control, EventKind, Mode, Severity};

#[cfg(not(target_arch = "wasm32"))]
use schemars::JsonSchema;

/// The whole policy document: the API inventory and how each API is protected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// A label for this version of the policy, shown in logs and metrics when it is taken
    /// into use (e.g. `2026-11-29.1`).
    pub revision: String,
    /// How clients and users are identified.
    #[serde(default)]
    pub identity: IdentitySpec,
    /// Where incidents are sent.
    #[serde(default)]
    pub notify: Option<NotifySpec>,
    /// Sizing of the shared counter tables.
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// Named bundles of controls; every API names one.
    pub tiers: BTreeMap<String, ControlsSpec>,
    /// The API inventory.
    pub apis: Vec<ApiSpec>,
    /// What happens to requests that match no API (shadow APIs).
    #[serde(default)]
    pub unknown_routes: Option<UnknownRoutesSpec>,
    /// What happens to paths that cannot be normalized without ambiguity.
    #[serde(default)]
    pub ambiguous_paths: Option<AmbiguousPathsSpec>,
    /// Known partners and the controls they are exempt from.
    #[serde(default)]
    pub partners: Vec<PartnerSpec>,
}

/// The top-level field names, for the unknown-field check (kept equal to the struct by a
/// test against the generated schema).
pub(crate) const DOCUMENT_FIELDS: &[&str] = &[
    "revision",
    "identity",
    "notify",
    "state",
    "tiers",
    "apis",
    "unknown_routes",
    "ambiguous_paths",
    "partners",
];

/// How the engine identifies the client and the user behind a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// Where the client IP comes from.
    #[serde(default)]
    pub client_ip: Option<ClientIpSpec>,
    /// Where the user comes from, tried in order; the first present wins.
    #[serde(default)]
    pub user: Vec<UserSourceSpec>,
}

/// The client IP: the socket peer, or an `X-Forwarded-For` entry written by a proxy you
/// trust.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientIpSpec {
    /// How many proxies in front of this one append to `X-Forwarded-For`. 0 (default)
    /// uses the socket peer address; N uses the N-th entry from the right.
    #[serde(default)]
    pub trusted_hops: u32,
    /// The header that carries the forwarded chain; `x-forwarded-for` by default.
    #[serde(default)]
    pub header: Option<String>,
}

/// One place the user identity can come from: exactly one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UserSourceSpec {
    /// A request header set by an authenticating proxy in front.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A claim of the bearer token's payload. The signature is not verified here: run
    /// Envoy's `jwt_authn` filter before stakeguard so only verified tokens arrive.
    #[serde(default)]
    pub jwt_claim: Option<String>,
}

/// Where incidents go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// A Prometheus Alertmanager reached through an Envoy cluster.
    pub alertmanager: AlertmanagerSpec,
}

/// A Prometheus Alertmanager behind an Envoy cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// The Envoy cluster name.
    pub cluster: String,
    /// The `:authority` of alert requests; the cluster name by default.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long an alert may take before it counts as failed; `1s` by default.
    #[serde(default)]
    pub timeout: Option<String>,
    /// One alert per API, control and key within this window; `5m` by default.
    #[serde(default)]
    pub dedupe_window: Option<String>,
}

/// Sizing of the counter tables kept in the proxy's shared data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Prefix of every shared-data key, so that two stakeguard filters in one proxy keep
    /// separate counters; `stakeguard` by default.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Slots per counter table (each holds two keys); 4096 by default. The memory bound
    /// of per-key state is `tables × slots × 2` entries whatever keys clients send.
    #[serde(default)]
    pub slots: Option<u32>,
}

/// A bundle of controls: what a tier sets, and what an API may override field by field.
///
/// Unknown fields are refused by [`crate::compile`] (serde cannot refuse them on a struct
/// that [`ApiSpec`] flattens); the schema refuses them too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(deny_unknown_fields))]
pub struct ControlsSpec {
    /// The default mode of every control in the bundle.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What a request sees when the counter store fails: `fail_closed` (503) or
    /// `fail_open` (continue, with an event).
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// Required credentials.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// Failed-login lockout; applies only to APIs that have a `login` block themselves.
    #[serde(default)]
    pub login: Option<LoginSpec>,
    /// Session idle and absolute timeouts.
    #[serde(default)]
    pub session: Option<SessionSpec>,
    /// Requests per key per window.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Request body size and content types.
    #[serde(default)]
    pub body: Option<BodySpec>,
    /// Response hardening.
    #[serde(default)]
    pub response: Option<ResponseSpec>,
    /// Which events are incidents, and how severe.
    #[serde(default)]
    pub incidents: Option<BTreeMap<EventKind, Severity>>,
}

/// The field names of [`ControlsSpec`], for the unknown-field check.
pub(crate) const CONTROLS_FIELDS: &[&str] = &[
    "mode",
    "on_error",
    "auth",
    "login",
    "session",
    "rate_limit",
    "body",
    "response",
    "incidents",
];

/// What the request sees when the counter store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Answer 503: nothing passes unchecked.
    FailClosed,
    /// Let the request through and raise a `store_failure` event.
    FailOpen,
}

/// Credentials a request must carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Header names that must all be present and non-empty.
    #[serde(default)]
    pub required: Option<Vec<String>>,
    /// The `WWW-Authenticate` challenge of the 401; `Bearer` by default.
    #[serde(default)]
    pub challenge: Option<String>,
}

/// Failed-login lockout, counted from response statuses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginSpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Failures within `window` that lock a key out.
    #[serde(default)]
    pub max_failures: Option<u32>,
    /// The window failures are counted in.
    #[serde(default)]
    pub window: Option<String>,
    /// How long a lockout lasts.
    #[serde(default)]
    pub lockout: Option<String>,
    /// What a locked-out attempt meets: `block` (429), `delay` (growing with failures) or
    /// `alert` (let through, incident).
    #[serde(default)]
    pub action: Option<Action>,
    /// The first delay of the `delay` action, doubled with each failure over the limit.
    #[serde(default)]
    pub delay: Option<String>,
    /// The longest delay of the `delay` action.
    #[serde(default)]
    pub max_delay: Option<String>,
    /// Which keys are counted: `username`, `client_ip`, or both (default).
    #[serde(default)]
    pub keys: Option<Vec<LoginKey>>,
    /// Response statuses that count as a failed attempt; `[401, 403]` by default.
    #[serde(default)]
    pub failure_statuses: Option<Vec<u16>>,
    /// Whether a successful login clears the username's and client's failures; true by
    /// default.
    #[serde(default)]
    pub reset_on_success: Option<bool>,
    /// Where the username is in the request body.
    #[serde(default)]
    pub username: Option<UsernameSpec>,
    /// How many bytes of a login body are read to find the username; 65536 by default.
    /// A longer body counts under an unknown username and raises `login_body_too_large`.
    #[serde(default)]
    pub body_limit: Option<u32>,
}

/// A key failed logins are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoginKey {
    /// The username from the request body.
    Username,
    /// The client IP.
    ClientIp,
}

/// Where the username sits in a login body: exactly one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UsernameSpec {
    /// A JSON pointer (RFC 6901) into a JSON body, e.g. `/username`.
    #[serde(default)]
    pub json_pointer: Option<String>,
    /// A field of an `application/x-www-form-urlencoded` body.
    #[serde(default)]
    pub form_field: Option<String>,
}

/// Session timeouts on a session cookie.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The session cookie's name.
    #[serde(default)]
    pub cookie: Option<String>,
    /// How long a session may go unused.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// How long a session may live at all.
    #[serde(default)]
    pub absolute_timeout: Option<String>,
    /// Whether a session presented from another client IP than the one it was first seen
    /// from is refused (`session_hijack_suspected`); false by default.
    #[serde(default)]
    pub bind_client_ip: Option<bool>,
}

/// Requests per key per window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Requests allowed per window.
    #[serde(default)]
    pub requests: Option<u32>,
    /// The window.
    #[serde(default)]
    pub per: Option<String>,
    /// What is counted: `user`, `client_ip`, `partner` or the whole `api`.
    #[serde(default)]
    pub key: Option<RateKey>,
    /// What a request over the limit meets: `block` (429, default), `delay` or `alert`.
    #[serde(default)]
    pub action: Option<Action>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The user identity; the client IP when there is none.
    User,
    /// The client IP.
    ClientIp,
    /// The partner; the client IP for requests from no partner.
    Partner,
    /// All requests to the API together.
    Api,
}

/// Request body limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BodySpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The largest body accepted (413 beyond).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Media types a body may have (415 otherwise), e.g. `application/json`.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
}

/// Response hardening.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// The control's mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Attributes added to every `Set-Cookie` that lacks them.
    #[serde(default)]
    pub cookies: Option<CookieSpec>,
    /// Headers set when the upstream did not set them.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Headers removed (e.g. `server`, `x-powered-by`).
    #[serde(default)]
    pub strip: Option<Vec<String>>,
}

/// Cookie attributes to enforce.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CookieSpec {
    /// Add `Secure`.
    #[serde(default)]
    pub secure: Option<bool>,
    /// Add `HttpOnly`.
    #[serde(default)]
    pub http_only: Option<bool>,
    /// Add `SameSite=...` when missing.
    #[serde(default)]
    pub same_site: Option<SameSite>,
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None`.
    None,
}

/// One API of the inventory: who owns it, what is at stake, which routes it serves, and
/// field-by-field overrides of its tier's controls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(deny_unknown_fields))]
pub struct ApiSpec {
    /// The API's name; with `version`, unique in the inventory.
    pub name: String,
    /// The API's version, e.g. `v2`.
    pub version: String,
    /// The team told when something happens.
    pub owner: String,
    /// How to reach the owner (a channel, a mail address, a pager key).
    #[serde(default)]
    pub contact: Option<String>,
    /// The tier: how much is at stake.
    pub tier: String,
    /// Active, deprecated or retired.
    #[serde(default)]
    pub lifecycle: Option<LifecycleSpec>,
    /// The routes the API serves.
    pub routes: Vec<RouteSpec>,
    /// Overrides of the tier's controls.
    #[serde(flatten)]
    pub controls: ControlsSpec,
}

/// The API-specific field names, for the unknown-field check (the controls' names are
/// allowed too).
pub(crate) const API_FIELDS: &[&str] = &[
    "name",
    "version",
    "owner",
    "contact",
    "tier",
    "lifecycle",
    "routes",
];

/// Where an API is in its life.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LifecycleSpec {
    /// `active`, `deprecated` or `retired`.
    pub status: LifecycleStatus,
    /// When the deprecation took effect (RFC 3339); required for `deprecated`, sent in the
    /// `Deprecation` header (RFC 9745).
    #[serde(default)]
    pub deprecated_at: Option<String>,
    /// When the API stops answering (RFC 3339), sent in the `Sunset` header (RFC 8594);
    /// after it the API is treated as retired.
    #[serde(default)]
    pub sunset: Option<String>,
    /// Where clients should go instead, sent as `Link: <...>; rel="successor-version"`.
    #[serde(default)]
    pub successor: Option<String>,
    /// The lifecycle control's mode; the API's or tier's mode by default.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// Where an API is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    /// In service.
    Active,
    /// Still answering, with deprecation notices, until its sunset.
    Deprecated,
    /// No longer answering: 410 Gone.
    Retired,
}

/// One route of an API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// An exact host or `*.suffix`; any host when absent. Case-insensitive, port ignored.
    #[serde(default)]
    pub host: Option<String>,
    /// An exact path, a template (`/users/{id}`) or a trailing glob (`/bills/**`).
    pub path: String,
    /// Accepted methods; any when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

/// What happens to requests that match no API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UnknownRoutesSpec {
    /// `block` (404), `alert` (let through, incident), `log` (default) or `allow` (say
    /// nothing).
    pub action: UnknownAction,
    /// The control's mode; `enforce` by default.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The team told about shadow APIs.
    #[serde(default)]
    pub owner: Option<String>,
    /// How to reach that team.
    #[serde(default)]
    pub contact: Option<String>,
    /// The severity of a `shadow_api` incident; `ticket` by default.
    #[serde(default)]
    pub severity: Option<Severity>,
}

/// The action for requests that match no API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum UnknownAction {
    /// Let through and say nothing.
    Allow,
    /// Let through with a log line.
    Log,
    /// Let through and raise an incident.
    Alert,
    /// Answer 404.
    Block,
}

/// What happens to paths that stay ambiguous after normalization (`%2F`, `%5C`, `\`,
/// `%00`, bad percent-encoding, `..` above the root).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AmbiguousPathsSpec {
    /// `enforce` (400, default), `monitor` (let through unmatched, reported) or `off`.
    pub mode: Mode,
}

/// A partner and the controls it is exempt from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    /// The partner's name, used as its rate-limit key.
    pub name: String,
    /// How its requests are recognized.
    #[serde(rename = "match")]
    pub matcher: PartnerMatchSpec,
    /// Controls the partner skips.
    #[serde(default)]
    pub exempt: Vec<Control>,
}

/// How a partner's requests are recognized: a header value, a client CIDR, or the mTLS
/// peer certificate's URI SAN (exactly one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PartnerMatchSpec {
    /// A request header name; goes with `equals`.
    #[serde(default)]
    pub header: Option<String>,
    /// The header's exact value.
    #[serde(default)]
    pub equals: Option<String>,
    /// A client IP range such as `203.0.113.0/24`.
    #[serde(default)]
    pub client_cidr: Option<String>,
    /// The peer certificate's URI SAN, e.g. `spiffe://partner.example/acme`.
    #[serde(default)]
    pub uri_san: Option<String>,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn properties(schema: &serde_json::Value, pointer: &str) -> Vec<String> {
        let mut names: Vec<String> = schema
            .pointer(pointer)
            .and_then(|p| p.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn sorted(names: &[&[&str]]) -> Vec<String> {
        let mut all: Vec<String> = names
            .iter()
            .flat_map(|n| n.iter().map(|s| s.to_string()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn the_unknown_field_lists_match_the_types() {
        let schema = serde_json::to_value(schemars::schema_for!(PolicyDocument)).unwrap();
        assert_eq!(
            properties(&schema, "/properties"),
            sorted(&[DOCUMENT_FIELDS])
        );
        assert_eq!(
            properties(&schema, "/$defs/ControlsSpec/properties"),
            sorted(&[CONTROLS_FIELDS])
        );
        assert_eq!(
            properties(&schema, "/$defs/ApiSpec/properties"),
            sorted(&[API_FIELDS, CONTROLS_FIELDS])
        );
    }
}
