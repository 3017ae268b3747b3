//! The policy document as written: the types operators edit, read from JSON.
//!
//! These types say what may be written, nothing more: durations, dates and patterns stay
//! strings here and are checked in [`crate::compile`], where every mistake is collected
//! with its JSON path instead of stopping at the first. Control blocks are all-optional
//! because a tier writes a complete bundle while an API overrides single fields of it.
//! Each type is declared once with [`spec_struct!`] or [`spec_enum!`], which give it its
//! reader and its part of the JSON Schema (`policies/policy.schema.json`).

use crate::decision::{Action, Control, Mode, Severity};
use crate::json::Json;
use crate::read::{Errors, FromJson, Named, Schemas, object, spec_enum, spec_struct};

spec_struct! {
    /// The whole policy document: the API inventory and how each API is protected.
    pub struct PolicyDocument {
        /// A label for this version of the policy, shown in logs and metrics when it is taken
        /// into use (e.g. `2026-11-29.1`).
        revision: req String,
        /// How clients and users are identified.
        identity: opt IdentitySpec,
        /// Where incidents are sent.
        notify: opt NotifySpec,
        /// Sizing of the shared counter tables.
        state: opt StateSpec,
        /// Controls every tier starts from (hardening, stripping, incidents...): a tier's
        /// own fields are laid over them, field by field, as an API's are over its tier's.
        defaults: opt ControlsSpec,
        /// Named bundles of controls; every API names one.
        tiers: req Named<ControlsSpec>,
        /// The API inventory.
        apis: req Vec<ApiSpec>,
        /// What happens to requests that match no API (shadow APIs).
        unknown_routes: opt UnknownRoutesSpec,
        /// What happens to paths that cannot be normalized without ambiguity.
        ambiguous_paths: opt AmbiguousPathsSpec,
        /// Known partners and the controls they are exempt from.
        partners: opt Vec<PartnerSpec>,
    }
}

spec_struct! {
    /// How the engine identifies the client and the user behind a request.
    pub struct IdentitySpec {
        /// Where the client IP comes from.
        client_ip: opt ClientIpSpec,
        /// Where the user comes from, tried in order; the first present wins.
        user: opt Vec<UserSourceSpec>,
    }
}

spec_struct! {
    /// The client IP: the socket peer, or an `X-Forwarded-For` entry written by a proxy you
    /// trust.
    pub struct ClientIpSpec {
        /// How many proxies in front of this one append to `X-Forwarded-For`. 0 (default)
        /// uses the socket peer address; N uses the N-th entry from the right.
        trusted_hops: opt u32,
        /// The header that carries the forwarded chain; `x-forwarded-for` by default.
        header: opt String,
    }
}

spec_struct! {
    /// One place the user identity can come from: exactly one of the fields.
    pub struct UserSourceSpec {
        /// A request header set by an authenticating proxy in front.
        header: opt String,
        /// A cookie.
        cookie: opt String,
        /// A claim of the bearer token's payload. The signature is not verified here: run
        /// Envoy's `jwt_authn` filter before stakeguard so only verified tokens arrive.
        jwt_claim: opt String,
    }
}

spec_struct! {
    /// Where incidents go.
    pub struct NotifySpec {
        /// A Prometheus Alertmanager reached through an Envoy cluster.
        alertmanager: req AlertmanagerSpec,
    }
}

spec_struct! {
    /// A Prometheus Alertmanager behind an Envoy cluster.
    pub struct AlertmanagerSpec {
        /// The Envoy cluster name.
        cluster: req String,
        /// The `:authority` of alert requests; the cluster name by default.
        authority: opt String,
        /// How long an alert may take before it counts as failed; `1s` by default.
        timeout: opt String,
        /// One alert per API, control and key within this window; `5m` by default.
        dedupe_window: opt String,
    }
}

spec_struct! {
    /// Sizing of the counter tables kept in the proxy's shared data.
    pub struct StateSpec {
        /// Prefix of every shared-data key, so that two stakeguard filters in one proxy keep
        /// separate counters; `stakeguard` by default.
        namespace: opt String,
        /// Slots per counter table (each holds two keys); 4096 by default. The memory bound
        /// of per-key state is `tables × slots × 2` entries whatever keys clients send.
        slots: opt u32,
        /// Delayed requests one worker holds at most (1024 by default); past it a delay
        /// is not carried out (the request goes on at once, and `stakeguard.paused.cap_hits`
        /// counts it), so an attacker cannot pile up held connections without bound.
        max_delayed: opt u32,
    }
}

spec_struct! {
    /// A bundle of controls: what a tier sets, and what an API may override field by field.
    pub struct ControlsSpec {
        /// The default mode of every control in the bundle.
        mode: opt Mode,
        /// What a request sees when the counter store fails: `fail_closed` (503) or
        /// `fail_open` (continue, with an event).
        on_error: opt OnError,
        /// Required credentials.
        auth: opt AuthSpec,
        /// Failed-login lockout; applies only to APIs that have a `login` block themselves.
        login: opt LoginSpec,
        /// Session idle and absolute timeouts.
        session: opt SessionSpec,
        /// Requests per key per window.
        rate_limit: opt RateLimitSpec,
        /// Request body size and content types.
        body: opt BodySpec,
        /// Response hardening.
        response: opt ResponseSpec,
        /// Object ownership (OWASP API1): route parameters bound to the caller's identity.
        ownership: opt OwnershipSpec,
        /// Function-level authorization (OWASP API5): bearer-token claims a request needs.
        claims: opt ClaimsSpec,
        /// Business-flow quotas (OWASP API6) over long windows.
        quotas: opt Vec<QuotaSpec>,
        /// Cross-origin requests (OWASP API8).
        cors: opt CorsSpec,
        /// Which events are incidents, and how severe.
        incidents: opt Named<Severity>,
        /// Where the counted controls count: in this proxy (`local`, the default) or in a
        /// rate limit service the whole fleet shares (Envoy's RLS v3 API).
        counters: opt CountersSpec,
    }
}

spec_struct! {
    /// Where each counted control counts. `local` (the default) is this proxy's shared
    /// data, seen by all its workers; `service` is the rate limit service of `service`,
    /// shared by every proxy in front of the API, asked once per request for all of the
    /// request's service-counted controls.
    pub struct CountersSpec {
        /// The rate limit service (`envoy.service.ratelimit.v3.RateLimitService`).
        service: opt CounterServiceSpec,
        /// Where `rate_limit` counts: `local` or `service`.
        rate_limit: opt CounterPlace,
        /// Where failed logins count by username: `local` or `service`.
        login: opt CounterPlace,
        /// Where failed logins count by client address: `local` or `service`.
        login_client_ip: opt CounterPlace,
        /// Where business-flow `quotas` count: `local` or `service`.
        quotas: opt CounterPlace,
    }
}

spec_struct! {
    /// A rate limit service speaking Envoy's RLS v3 API behind an Envoy cluster
    /// (envoyproxy/ratelimit, Limitador).
    pub struct CounterServiceSpec {
        /// The Envoy cluster of the service (HTTP/2).
        cluster: req String,
        /// The rate limit domain of every request; `stakeguard` by default.
        domain: opt String,
        /// How long a request is held for the service's answer; `100ms` by default.
        timeout: opt String,
        /// What a request sees when the service times out, cannot be reached or answers
        /// nonsense: `fail_closed` (503) or `fail_open` (through, with a `store_failure`
        /// incident); the bundle's `on_error` by default.
        failure_mode: opt OnError,
        /// Where the service finds each limit: `request` (default: in the descriptor's
        /// `limit`, so windows must be 1s, 1m, 1h or 1d) or `config` (in the service's own
        /// configuration, as `stakeguard ratelimit-config` writes it; any whole seconds).
        limits: opt ServiceLimits,
    }
}

spec_enum! {
    /// Where a counted control counts.
    pub enum CounterPlace {
        /// In this proxy's shared data.
        Local = "local",
        /// In the rate limit service of `counters.service`.
        Service = "service",
    }
}

spec_enum! {
    /// Where the rate limit service finds the limits.
    pub enum ServiceLimits {
        /// In each request's descriptors (`RateLimitDescriptor.limit`).
        Request = "request",
        /// In the service's configuration (`stakeguard ratelimit-config`).
        Config = "config",
    }
}

spec_enum! {
    /// What the request sees when the counter store fails.
    pub enum OnError {
        /// Answer 503: nothing passes unchecked.
        FailClosed = "fail_closed",
        /// Let the request through and raise a `store_failure` event.
        FailOpen = "fail_open",
    }
}

spec_struct! {
    /// Credentials a request must carry.
    pub struct AuthSpec {
        /// The control's mode.
        mode: opt Mode,
        /// Credentials that must all be present and non-empty: header names, or
        /// `{"header": NAME}` and `{"cookie": NAME}`.
        required: opt Vec<CredentialSpec>,
        /// Alternatives of which at least one must be present, e.g. a bearer token or a
        /// session cookie: `["authorization", {"cookie": "sid"}]`.
        any_of: opt Vec<CredentialSpec>,
        /// The `WWW-Authenticate` challenge of the 401; `Bearer` by default.
        challenge: opt String,
    }
}

/// A credential: a header name (`"authorization"` or `{"header": "authorization"}`) or a
/// named cookie (`{"cookie": "sid"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSpec {
    /// A request header.
    Header(String),
    /// A cookie of the `Cookie` header.
    Cookie(String),
}

spec_struct! {
    /// A credential written as an object: exactly one of the fields.
    pub struct CredentialFieldsSpec {
        /// A request header's name.
        header: opt String,
        /// A cookie's name.
        cookie: opt String,
    }
}

impl FromJson for CredentialSpec {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        match value {
            Json::Object(_) => {
                let fields = CredentialFieldsSpec::read(value, path, errors)?;
                match (fields.header, fields.cookie) {
                    (Some(header), None) => Some(CredentialSpec::Header(header)),
                    (None, Some(cookie)) => Some(CredentialSpec::Cookie(cookie)),
                    _ => {
                        errors.push(
                            path,
                            "needs exactly one of `header` and `cookie`",
                            "e.g. {\"cookie\": \"sid\"} or {\"header\": \"authorization\"}",
                        );
                        None
                    }
                }
            }
            _ => String::read(value, path, errors).map(CredentialSpec::Header),
        }
    }

    fn schema(schemas: &mut Schemas) -> Json<'static> {
        let header = String::schema(schemas);
        let fields = CredentialFieldsSpec::schema(schemas);
        object(vec![("oneOf", Json::Array(vec![header, fields]))])
    }
}

spec_struct! {
    /// Failed-login lockout, counted from response statuses.
    pub struct LoginSpec {
        /// The control's mode.
        mode: opt Mode,
        /// Failures within `window` that lock a key out.
        max_failures: opt u32,
        /// The window failures are counted in.
        window: opt String,
        /// How long a lockout lasts.
        lockout: opt String,
        /// What a locked-out attempt meets: `block` (429), `delay` (growing with failures) or
        /// `alert` (let through, incident).
        action: opt Action,
        /// The first delay of the `delay` action, doubled with each failure over the limit.
        delay: opt String,
        /// The longest delay of the `delay` action.
        max_delay: opt String,
        /// Which keys are counted: `username`, `client_ip`, or both (default).
        keys: opt Vec<LoginKey>,
        /// Response statuses that count as a failed attempt; `[401, 403]` by default.
        failure_statuses: opt Vec<u16>,
        /// Whether a successful login clears the username's failures; true by default.
        /// The client IP's are kept unless `client_ip.reset_on_success` says otherwise.
        reset_on_success: opt bool,
        /// Where the username is in the request body.
        username: opt UsernameSpec,
        /// Thresholds for the client-IP key when they should differ from the username's
        /// (one address trying many usernames is credential stuffing, and an office
        /// behind one address needs more room than one person): `max_failures`,
        /// `window`, `lockout` and `action`, each defaulting to the values above
        /// (e.g. block a username, only alert on an address).
        client_ip: opt LoginLimitsSpec,
        /// Password spraying: one client failing with many different usernames (few
        /// tries each, so no username lockout fires). Raises `password_spraying`.
        spraying: opt SprayingSpec,
        /// How many bytes of a login body are read to find the username; 65536 by default.
        /// A longer body counts under an unknown username and raises `login_body_too_large`.
        body_limit: opt u32,
    }
}

spec_struct! {
    /// Lockout thresholds for one key of the login control.
    pub struct LoginLimitsSpec {
        /// Failures within `window` that lock the key out.
        max_failures: opt u32,
        /// The window failures are counted in.
        window: opt String,
        /// How long a lockout lasts.
        lockout: opt String,
        /// What a locked-out attempt meets: `block`, `delay` or `alert`.
        action: opt Action,
        /// Whether a successful login from the address clears its failures; false by
        /// default, since a sprayer who owns one valid account could otherwise start over
        /// after every few tries.
        reset_on_success: opt bool,
    }
}

spec_struct! {
    /// Password spraying: many distinct usernames failing from one client.
    pub struct SprayingSpec {
        /// Distinct usernames failing from one client within `window` that count as
        /// spraying (2 to 32; counted in a 64-bit sketch, see the README).
        max_usernames: opt u32,
        /// The window usernames are counted in.
        window: opt String,
        /// `alert` (default: an incident, attempts go on) or `block` (429 for the
        /// client's login attempts until `lockout` ends) or `delay`.
        action: opt Action,
        /// How long a client caught spraying stays refused, with `block` or `delay`;
        /// the window by default.
        lockout: opt String,
    }
}

spec_enum! {
    /// A key failed logins are counted by.
    pub enum LoginKey {
        /// The username from the request body.
        Username = "username",
        /// The client IP.
        ClientIp = "client_ip",
    }
}

spec_struct! {
    /// Where the username sits in a login body: exactly one of the fields.
    pub struct UsernameSpec {
        /// A JSON pointer (RFC 6901) into a JSON body, e.g. `/username`.
        json_pointer: opt String,
        /// A field of an `application/x-www-form-urlencoded` body.
        form_field: opt String,
    }
}

spec_struct! {
    /// Session timeouts on a session cookie.
    pub struct SessionSpec {
        /// The control's mode.
        mode: opt Mode,
        /// The session cookie's name; the API's cookie credential (`auth`) by default.
        cookie: opt String,
        /// How long a session may go unused.
        idle_timeout: opt String,
        /// How long a session may live at all.
        absolute_timeout: opt String,
        /// Whether a session presented from another client IP than the one it was first seen
        /// from is refused (`session_hijack_suspected`); false by default.
        bind_client_ip: opt bool,
    }
}

spec_struct! {
    /// Requests per key per window.
    pub struct RateLimitSpec {
        /// The control's mode.
        mode: opt Mode,
        /// Requests allowed per window.
        requests: opt u32,
        /// The window.
        per: opt String,
        /// What is counted: `user`, `client_ip`, `partner` or the whole `api`.
        key: opt RateKey,
        /// What a request over the limit meets: `block` (429, default), `delay` or `alert`.
        action: opt Action,
        /// Count every request in the shared store as it comes (default false: each
        /// worker reserves a few hits at a time, which never lets more through than the
        /// limit but may refuse a little early; see the README).
        exact: opt bool,
    }
}

spec_enum! {
    /// What a rate limit counts by.
    pub enum RateKey {
        /// The user identity; the client IP when there is none.
        User = "user",
        /// The client IP.
        ClientIp = "client_ip",
        /// The partner; the client IP for requests from no partner.
        Partner = "partner",
        /// All requests to the API together.
        Api = "api",
    }
}

spec_struct! {
    /// Request body limits.
    pub struct BodySpec {
        /// The control's mode.
        mode: opt Mode,
        /// The largest body accepted (413 beyond).
        max_bytes: opt u64,
        /// Media types a body may have (415 otherwise), e.g. `application/json`.
        content_types: opt Vec<String>,
    }
}

spec_struct! {
    /// Response hardening.
    pub struct ResponseSpec {
        /// The control's mode.
        mode: opt Mode,
        /// Attributes added to every `Set-Cookie` that lacks them.
        cookies: opt CookieSpec,
        /// Headers set when the upstream did not set them.
        headers: opt Named<String>,
        /// Headers removed (e.g. `server`, `x-powered-by`).
        strip: opt Vec<String>,
    }
}

spec_struct! {
    /// Cookie attributes to enforce.
    pub struct CookieSpec {
        /// Add `Secure`.
        secure: opt bool,
        /// Add `HttpOnly`.
        http_only: opt bool,
        /// Add `SameSite=...` when missing.
        same_site: opt SameSite,
    }
}

spec_enum! {
    /// The `SameSite` cookie attribute.
    pub enum SameSite {
        /// `SameSite=Strict`.
        Strict = "Strict",
        /// `SameSite=Lax`.
        Lax = "Lax",
        /// `SameSite=None`.
        None = "None",
    }
}

spec_struct! {
    /// One API of the inventory: who owns it, what is at stake, which routes it serves, and
    /// field-by-field overrides of its tier's controls.
    pub struct ApiSpec {
        /// The API's name; with `version`, unique in the inventory.
        name: req String,
        /// The API's version, e.g. `v2`.
        version: req String,
        /// The team told when something happens.
        owner: req String,
        /// How to reach the owner (a channel, a mail address, a pager key).
        contact: opt String,
        /// The tier: how much is at stake.
        tier: req String,
        /// Active, deprecated or retired.
        lifecycle: opt LifecycleSpec,
        /// The routes the API serves.
        routes: req Vec<RouteSpec>,
        /// Overrides of the tier's controls.
        controls: flat ControlsSpec,
    }
}

spec_struct! {
    /// Route parameters bound to the caller's identity: a request is allowed only when each
    /// bound parameter equals (after percent-decoding) the identity it is bound to.
    pub struct OwnershipSpec {
        /// The control's mode.
        mode: opt Mode,
        /// The bindings; each names a template parameter of the API's routes.
        bind: opt Vec<BindingSpec>,
        /// Callers holding one of these claim values (e.g. a `support` role) are not bound.
        bypass: opt ClaimRuleSpec,
    }
}

spec_struct! {
    /// One binding of a route parameter.
    pub struct BindingSpec {
        /// The template parameter, e.g. `user_id` for `/users/{user_id}/accounts`.
        param: req String,
        /// `user`: the parameter must equal the user identity (`identity.user`).
        /// `claim`: it must be one of the values of the bearer-token claim named by `claim`
        /// (a string or a list, e.g. an `accounts` claim listing account ids).
        to: req BindingTarget,
        /// The claim, with `to: claim`.
        claim: opt String,
    }
}

spec_enum! {
    /// What a route parameter is bound to.
    pub enum BindingTarget {
        /// The user identity.
        User = "user",
        /// The values of a bearer-token claim.
        Claim = "claim",
    }
}

spec_struct! {
    /// Bearer-token claims a request must carry. The signature is not verified here: Envoy's
    /// `jwt_authn` must run first, so that only verified claims arrive.
    pub struct ClaimsSpec {
        /// The control's mode.
        mode: opt Mode,
        /// Every rule must hold (401 without a token, 403 when one fails).
        require: opt Vec<ClaimRuleSpec>,
    }
}

spec_struct! {
    /// One claim rule: exactly one of `in`, `contains` and `equals`.
    pub struct ClaimRuleSpec {
        /// The claim's name, e.g. `role` or `scope`.
        claim: req String,
        /// The claim (or one of its values, for a list) is one of these.
        one_of as "in": opt Vec<String>,
        /// The claim holds this value: an element of a list, or a word of a space-separated
        /// string (as OAuth `scope` is written).
        contains: opt String,
        /// The claim is exactly this.
        equals: opt String,
    }
}

spec_struct! {
    /// A quota on a sensitive business flow, e.g. at most 5 transfers per user per day.
    pub struct QuotaSpec {
        /// A name for the flow, unique within the API, shown in events.
        name: opt String,
        /// The control's mode.
        mode: opt Mode,
        /// How many times the flow may run per window.
        limit: opt u32,
        /// The window, e.g. `1h` or `1d`.
        per: opt String,
        /// What is counted: `user` (default), `client_ip`, or a JSON body field.
        key: opt QuotaKeySpec,
        /// Count only requests the upstream answered with 2xx (`success`, default), so
        /// failed attempts do not burn a customer's quota, or every request the upstream
        /// answered (`all`). Requests another control refused never count.
        count: opt QuotaCount,
        /// `block` (429 with `Retry-After`, default) or `alert`.
        action: opt Action,
        /// The methods the flow is made of; any when absent.
        methods: opt Vec<String>,
    }
}

/// What a quota counts by: `user`, `client_ip`, or `{"json_pointer": "/to"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaKeySpec {
    /// `user` or `client_ip`.
    Named(QuotaKeyName),
    /// A field of the JSON request body, by RFC 6901 pointer (e.g. `/to_account`).
    BodyField(String),
}

spec_struct! {
    /// A field of the JSON request body.
    pub struct BodyFieldSpec {
        /// An RFC 6901 pointer, e.g. `/to_account`.
        json_pointer: req String,
    }
}

impl FromJson for QuotaKeySpec {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        match value {
            Json::Object(_) => BodyFieldSpec::read(value, path, errors)
                .map(|f| QuotaKeySpec::BodyField(f.json_pointer)),
            _ => QuotaKeyName::read(value, path, errors).map(QuotaKeySpec::Named),
        }
    }

    fn schema(schemas: &mut Schemas) -> Json<'static> {
        let named = QuotaKeyName::schema(schemas);
        let field = BodyFieldSpec::schema(schemas);
        object(vec![("oneOf", Json::Array(vec![named, field]))])
    }
}

spec_enum! {
    /// A named quota key.
    pub enum QuotaKeyName {
        /// The user identity (the client IP when there is none).
        User = "user",
        /// The client IP.
        ClientIp = "client_ip",
    }
}

spec_enum! {
    /// Which requests a quota counts.
    pub enum QuotaCount {
        /// Only requests answered with 2xx.
        Success = "success",
        /// Every request the upstream answers, whatever its status.
        All = "all",
    }
}

spec_struct! {
    /// Cross-origin resource sharing: which browser origins may call the API.
    pub struct CorsSpec {
        /// The control's mode: enforce refuses other origins (403), monitor reports them.
        mode: opt Mode,
        /// Exact origins (`https://app.bank.example`), `https://*.suffix` wildcards, or `*`
        /// (any origin, never with credentials).
        allow_origins: opt Vec<String>,
        /// Methods a cross-origin request may use; the route's methods by default.
        allow_methods: opt Vec<String>,
        /// Request headers a cross-origin request may send.
        allow_headers: opt Vec<String>,
        /// Response headers a script may read.
        expose_headers: opt Vec<String>,
        /// Whether cookies and credentials may be sent.
        allow_credentials: opt bool,
        /// How long a browser may cache a preflight answer.
        max_age: opt String,
    }
}

spec_struct! {
    /// Where an API is in its life.
    pub struct LifecycleSpec {
        /// `active`, `deprecated` or `retired`.
        status: req LifecycleStatus,
        /// When the deprecation took effect (RFC 3339); required for `deprecated`, sent in the
        /// `Deprecation` header (RFC 9745).
        deprecated_at: opt String,
        /// When the API stops answering (RFC 3339), sent in the `Sunset` header (RFC 8594);
        /// after it the API is treated as retired.
        sunset: opt String,
        /// Where clients should go instead, sent as `Link: <...>; rel="successor-version"`.
        successor: opt String,
        /// The lifecycle control's mode; the API's or tier's mode by default.
        mode: opt Mode,
    }
}

spec_enum! {
    /// Where an API is in its life.
    pub enum LifecycleStatus {
        /// In service.
        Active = "active",
        /// Still answering, with deprecation notices, until its sunset.
        Deprecated = "deprecated",
        /// No longer answering: 410 Gone.
        Retired = "retired",
    }
}

spec_struct! {
    /// One route of an API.
    pub struct RouteSpec {
        /// An exact host or `*.suffix`; any host when absent. Case-insensitive, port ignored.
        host: opt String,
        /// An exact path, a template (`/users/{id}`) or a trailing glob (`/bills/**`).
        path: req String,
        /// Accepted methods; any when absent.
        methods: opt Vec<String>,
        /// Claims this route needs on top of the API's `claims` (function-level
        /// authorization per route, e.g. `scope contains transfers:write` on a POST).
        require: opt Vec<ClaimRuleSpec>,
    }
}

spec_struct! {
    /// What happens to requests that match no API.
    pub struct UnknownRoutesSpec {
        /// `block` (404), `alert` (let through, incident), `log` (default) or `allow` (say
        /// nothing).
        action: req UnknownAction,
        /// The control's mode; `enforce` by default.
        mode: opt Mode,
        /// The team told about shadow APIs.
        owner: opt String,
        /// How to reach that team.
        contact: opt String,
        /// The severity of a `shadow_api` incident; `ticket` by default.
        severity: opt Severity,
    }
}

spec_enum! {
    /// The action for requests that match no API.
    pub enum UnknownAction {
        /// Let through and say nothing.
        Allow = "allow",
        /// Let through with a log line.
        Log = "log",
        /// Let through and raise an incident.
        Alert = "alert",
        /// Answer 404.
        Block = "block",
    }
}

spec_struct! {
    /// What happens to paths that stay ambiguous after normalization (`%2F`, `%5C`, `\`,
    /// `%00`, bad percent-encoding, `..` above the root).
    pub struct AmbiguousPathsSpec {
        /// `enforce` (400, default), `monitor` (let through unmatched, reported) or `off`.
        mode: req Mode,
    }
}

spec_struct! {
    /// A partner and the controls it is exempt from.
    pub struct PartnerSpec {
        /// The partner's name, used as its rate-limit key.
        name: req String,
        /// How its requests are recognized.
        matcher as "match": req PartnerMatchSpec,
        /// Controls the partner skips.
        exempt: opt Vec<Control>,
    }
}

spec_struct! {
    /// How a partner's requests are recognized: a header value, a client CIDR, or the mTLS
    /// peer certificate's URI SAN (exactly one).
    pub struct PartnerMatchSpec {
        /// A request header name; goes with `equals`.
        header: opt String,
        /// The header's exact value.
        equals: opt String,
        /// A client IP range such as `203.0.113.0/24`.
        client_cidr: opt String,
        /// The peer certificate's URI SAN, e.g. `spiffe://partner.example/acme`.
        uri_san: opt String,
    }
}

/// The JSON Schema (draft 2020-12) of the policy document, generated from the same
/// declarations that read it; committed as `policies/policy.schema.json`.
pub fn json_schema() -> String {
    let mut schemas = Schemas::default();
    let mut properties = Vec::new();
    let mut required = Vec::new();
    PolicyDocument::describe_fields(&mut schemas, &mut properties, &mut required);
    let root = crate::read::struct_schema(
        "A stakeguard policy: the API inventory and how each API is protected.",
        properties,
        required,
    );
    let mut fields = vec![
        (
            "$schema".into(),
            Json::string("https://json-schema.org/draft/2020-12/schema"),
        ),
        ("title".into(), Json::string("stakeguard policy")),
    ];
    if let Json::Object(root_fields) = root {
        fields.extend(root_fields);
    }
    let defs = schemas
        .defs
        .into_iter()
        .map(|(name, schema)| (name.into(), schema))
        .collect();
    fields.push(("$defs".into(), Json::Object(defs)));
    let mut out = String::new();
    Json::Object(fields).write_pretty(&mut out, 0);
    out.push('\n');
    out
}
