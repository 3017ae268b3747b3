//! The compiled policy: what the engine consults on every request.
//!
//! Everything a decision needs is resolved here once, at configuration time: tier
//! defaults merged into each API, modes settled, durations in milliseconds, routes in an
//! index whose lookup does not depend on the size of the inventory. A request then costs
//! one index lookup and a walk over the few controls of its API.

use std::net::IpAddr;
use std::sync::Arc;

use crate::decision::{Action, ApiId, Control, EventKind, HeaderChange, Mode, Severity};
use crate::model::{LifecycleStatus, OnError, RateKey, SameSite, UnknownAction};
use crate::routes::{Match, RouteIndex};
use crate::state::Table;

/// A validated, compiled policy, ready to decide. Build it with [`Policy::from_json`].
#[derive(Debug)]
pub struct Policy {
    pub(crate) revision: String,
    pub(crate) apis: Vec<Api>,
    /// Route index values: (API, route within the API).
    pub(crate) index: RouteIndex<(ApiId, usize)>,
    pub(crate) identity: Identity,
    pub(crate) partners: Vec<Partner>,
    pub(crate) unknown: Unknown,
    pub(crate) ambiguous_mode: Mode,
    pub(crate) notify: Option<Notify>,
    pub(crate) state: StateConfig,
    pub(crate) needs_source_address: bool,
    pub(crate) max_delayed: usize,
    /// What this worker remembers between requests (each worker compiles its own policy).
    pub(crate) worker: crate::worker::WorkerState,
}

/// Who an API belongs to and what is at stake: the labels on every event about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// The API's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The owning team.
    pub owner: String,
    /// How to reach the owner.
    pub contact: Option<String>,
    /// The tier's name.
    pub tier: String,
}

/// Where the route index puts a request, decided nothing: for inventory tools that
/// compare recorded traffic with the policy ([`Policy::route_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOf<'p> {
    /// A route of this API serves the path and method; `pattern` is the route's path as
    /// written, e.g. `/api/v2/accounts/{id}`.
    Api {
        /// The API.
        api: ApiId,
        /// The matched route's path pattern.
        pattern: &'p str,
    },
    /// This API's most specific route for the path does not serve the method (405).
    MethodNotAllowed(ApiId),
    /// No route matches: a shadow API.
    Unknown,
    /// The path stays ambiguous after normalization (refused with 400).
    Ambiguous,
}

/// Where incidents are sent: a Prometheus Alertmanager behind an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The Envoy cluster.
    pub cluster: String,
    /// The `:authority` of alert requests.
    pub authority: String,
    /// The Alertmanager API path, `/api/v2/alerts`.
    pub path: String,
    /// How long an alert may take.
    pub timeout_ms: u64,
    /// One alert per API, control, event and key within this window.
    pub dedupe_window_ms: u64,
}

/// One API with its tier's controls merged in.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) info: ApiInfo,
    pub(crate) lifecycle: Lifecycle,
    /// Shared by the APIs of a tier that override none of its controls.
    pub(crate) controls: Arc<Controls>,
    /// Claims each route needs on top of the API's, by route index.
    pub(crate) route_claims: Vec<Vec<ClaimRule>>,
}

#[derive(Debug)]
pub(crate) enum Lifecycle {
    Active,
    Deprecated {
        mode: Mode,
        sunset_ms: Option<i64>,
        /// The `Deprecation` (RFC 9745 structured date, `@<seconds>`), `Sunset` and
        /// `Link` headers of every answer, made once so each answer shares their text.
        notice: Vec<HeaderChange>,
        /// The `Link` header value.
        link: Option<String>,
    },
    Retired {
        mode: Mode,
        link: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Controls {
    pub(crate) default_mode: Mode,
    pub(crate) on_error: OnError,
    pub(crate) auth: Option<Auth>,
    pub(crate) login: Option<Login>,
    pub(crate) session: Option<Session>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) body: Option<Body>,
    pub(crate) response: Option<Hardening>,
    pub(crate) ownership: Option<Ownership>,
    pub(crate) claims: Option<Claims>,
    pub(crate) quotas: Vec<Quota>,
    pub(crate) cors: Option<Cors>,
    pub(crate) incidents: Vec<(EventKind, Severity)>,
    /// The rate limit service the controls marked `by_service` count in.
    pub(crate) service: Option<CounterService>,
}

/// A rate limit service some controls count in (`counters.service`), shared by every
/// proxy in front of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterService {
    /// The Envoy cluster of the service.
    pub cluster: String,
    /// The rate limit domain of every request.
    pub domain: String,
    /// How long a request is held for the answer.
    pub timeout_ms: u64,
    /// Whether a request goes on (with an incident) when the service fails.
    pub fail_open: bool,
    /// Whether each descriptor carries its limit (`limits: request`).
    pub limits_in_request: bool,
}

impl Controls {
    pub(crate) fn severity(&self, kind: EventKind) -> Option<Severity> {
        self.incidents
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| *s)
    }
}

#[derive(Debug)]
pub(crate) struct Ownership {
    pub(crate) mode: Mode,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) bypass: Option<ClaimRule>,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub(crate) param: String,
    pub(crate) target: BindingTarget,
}

#[derive(Debug)]
pub(crate) enum BindingTarget {
    User,
    Claim(String),
}

#[derive(Debug)]
pub(crate) struct Claims {
    pub(crate) mode: Mode,
    pub(crate) require: Vec<ClaimRule>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClaimRule {
    pub(crate) claim: String,
    pub(crate) test: ClaimTest,
}

#[derive(Debug, Clone)]
pub(crate) enum ClaimTest {
    OneOf(Vec<String>),
    Contains(String),
    Equals(String),
}

#[derive(Debug)]
pub(crate) struct Quota {
    pub(crate) mode: Mode,
    pub(crate) limit: u32,
    pub(crate) per_ms: u64,
    pub(crate) key: QuotaKey,
    pub(crate) success_only: bool,
    pub(crate) action: Action,
    /// The quota's name, in its service descriptor.
    pub(crate) name: String,
    /// Whether it counts in the API's rate limit service.
    pub(crate) by_service: bool,
    /// Uppercase; empty means any method.
    pub(crate) methods: Vec<String>,
}

#[derive(Debug)]
pub(crate) enum QuotaKey {
    User,
    ClientIp,
    BodyPointer(String),
}

#[derive(Debug)]
pub(crate) struct Cors {
    pub(crate) mode: Mode,
    pub(crate) any_origin: bool,
    pub(crate) origins: Vec<OriginPattern>,
    /// `Access-Control-Allow-Methods`, or `None` for the route's own methods.
    pub(crate) methods: Option<String>,
    pub(crate) headers: Option<String>,
    pub(crate) expose: Option<String>,
    pub(crate) credentials: bool,
    /// Seconds, for `Access-Control-Max-Age`.
    pub(crate) max_age: Option<String>,
}

#[derive(Debug)]
pub(crate) enum OriginPattern {
    /// `scheme://host[:port]`, lowercase.
    Exact(String),
    /// `scheme://*.suffix`: the scheme and `.suffix`, lowercase.
    Subdomains { scheme: String, suffix: String },
}

#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) mode: Mode,
    /// Every one must be present.
    pub(crate) required: Vec<Credential>,
    /// At least one must be present (no condition when empty).
    pub(crate) any_of: Vec<Credential>,
    pub(crate) challenge: String,
}

/// A credential a request carries: a header (lowercase name) or a named cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    Header(String),
    Cookie(String),
}

#[derive(Debug)]
pub(crate) struct Login {
    pub(crate) mode: Mode,
    /// Thresholds of the username key.
    pub(crate) username_limits: LoginLimits,
    /// Thresholds of the client-IP key.
    pub(crate) client_limits: LoginLimits,
    pub(crate) delay_ms: u64,
    pub(crate) max_delay_ms: u64,
    pub(crate) by_username: bool,
    pub(crate) by_client_ip: bool,
    pub(crate) failure_statuses: Vec<u16>,
    pub(crate) username: Option<UsernameSource>,
    pub(crate) body_limit: usize,
    pub(crate) spraying: Option<Spraying>,
}

/// The thresholds and action of one login key (username, client IP, or a client caught
/// spraying).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginLimits {
    pub(crate) max_failures: u32,
    pub(crate) window_ms: u64,
    pub(crate) lockout_ms: u64,
    pub(crate) action: Action,
    pub(crate) reset_on_success: bool,
    /// Whether the key counts in the API's rate limit service.
    pub(crate) by_service: bool,
}

/// Password-spraying detection: distinct failing usernames per client, in a 64-bit
/// sketch (each username sets one bit). `limits.max_failures` is the number of set bits
/// that `max_usernames` distinct usernames leave on average, so a collision of two
/// usernames on one bit does not hide a sprayer behind the threshold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spraying {
    pub(crate) max_usernames: u32,
    pub(crate) limits: LoginLimits,
}

impl Login {
    /// The thresholds of the key counted in `table`.
    pub(crate) fn limits(&self, table: Table) -> &LoginLimits {
        match (table, &self.spraying) {
            (Table::LoginIp, _) => &self.client_limits,
            (Table::Spray, Some(spraying)) => &spraying.limits,
            _ => &self.username_limits,
        }
    }
}

#[derive(Debug)]
pub(crate) enum UsernameSource {
    JsonPointer(String),
    FormField(String),
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) mode: Mode,
    pub(crate) cookie: String,
    pub(crate) idle_ms: Option<u64>,
    pub(crate) absolute_ms: Option<u64>,
    pub(crate) bind_client_ip: bool,
}

#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) mode: Mode,
    pub(crate) requests: u32,
    pub(crate) per_ms: u64,
    pub(crate) key: RateKey,
    pub(crate) action: Action,
    /// Count every request in the shared store (no reservations, see
    /// [`crate::engine`]'s rate limit).
    pub(crate) exact: bool,
    /// Whether it counts in the API's rate limit service.
    pub(crate) by_service: bool,
}

#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) mode: Mode,
    pub(crate) max_bytes: Option<u64>,
    /// Lowercase media types without parameters.
    pub(crate) content_types: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Hardening {
    pub(crate) mode: Mode,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: Option<SameSite>,
    /// Lowercase names; shared with the header changes that set them.
    pub(crate) headers: Vec<(Arc<str>, Arc<str>)>,
    /// Lowercase names; shared with the header changes that remove them.
    pub(crate) strip: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
pub(crate) struct Identity {
    pub(crate) trusted_hops: u32,
    pub(crate) forwarded_header: String,
    pub(crate) user: Vec<UserSource>,
}

#[derive(Debug)]
pub(crate) enum UserSource {
    Header(String),
    Cookie(String),
    JwtClaim(String),
}

#[derive(Debug)]
pub(crate) struct Partner {
    pub(crate) name: String,
    pub(crate) matcher: PartnerMatch,
    pub(crate) exempt: Vec<Control>,
}

#[derive(Debug)]
pub(crate) enum PartnerMatch {
    Header { name: String, value: String },
    Cidr { network: IpAddr, prefix: u8 },
    UriSan(String),
}

#[derive(Debug)]
pub(crate) struct Unknown {
    pub(crate) action: UnknownAction,
    pub(crate) mode: Mode,
    pub(crate) severity: Severity,
    pub(crate) owner: String,
    pub(crate) contact: Option<String>,
}

#[derive(Debug)]
pub(crate) struct StateConfig {
    pub(crate) namespace: String,
    pub(crate) slots: u32,
    /// The tables some API uses; only these are created.
    pub(crate) tables: Vec<Table>,
}

impl Policy {
    /// Parses, validates and compiles a policy document. On failure, every mistake found
    /// is returned, each with its JSON path.
    pub fn from_json(text: &str) -> Result<Policy, crate::PolicyErrors> {
        crate::compile::compile(text)
    }

    /// The document's `revision`.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The labels of an API.
    pub fn api(&self, id: ApiId) -> Option<&ApiInfo> {
        self.apis.get(id).map(|api| &api.info)
    }

    /// Routes a request the way [`Policy::on_request`] does (the same normalization and
    /// index lookup, CORS preflights aside) without deciding anything. `path` as sent,
    /// query included.
    pub fn route_of(&self, authority: &str, path: &str, method: &str) -> RouteOf<'_> {
        let Ok(normal) = crate::path::normalize(path) else {
            return RouteOf::Ambiguous;
        };
        match self.index.lookup(authority, &normal, method) {
            Match::Found(found) => RouteOf::Api {
                api: found.value.0,
                pattern: found.pattern(),
            },
            Match::MethodNotAllowed {
                value: (api, _), ..
            } => RouteOf::MethodNotAllowed(api),
            Match::NotFound => RouteOf::Unknown,
        }
    }

    /// Where an API is in its life at `now_ms` as the engine treats it: a deprecated API
    /// past its sunset counts as retired (it answers 410 from then on).
    pub fn lifecycle_at(&self, id: ApiId, now_ms: i64) -> Option<LifecycleStatus> {
        Some(match &self.apis.get(id)?.lifecycle {
            Lifecycle::Active => LifecycleStatus::Active,
            Lifecycle::Deprecated { sunset_ms, .. } if sunset_ms.is_some_and(|s| now_ms >= s) => {
                LifecycleStatus::Retired
            }
            Lifecycle::Deprecated { .. } => LifecycleStatus::Deprecated,
            Lifecycle::Retired { .. } => LifecycleStatus::Retired,
        })
    }

    /// How many APIs the inventory holds.
    pub fn api_count(&self) -> usize {
        self.apis.len()
    }

    /// Where incidents are sent, if anywhere.
    pub fn notify(&self) -> Option<&Notify> {
        self.notify.as_ref()
    }

    /// The owner and contact told about shadow APIs (requests that match no API).
    pub fn unknown_routes_owner(&self) -> (&str, Option<&str>) {
        (&self.unknown.owner, self.unknown.contact.as_deref())
    }

    /// Whether any decision can depend on the client's address (counters keyed by it,
    /// sessions bound to it, CIDR partners) and the trusted proxies' forwarded header in
    /// `headers` does not already name the client, so the host reads `source.address`
    /// only then: in Envoy a property read costs about as much as the whole header map.
    pub fn needs_source_address(&self, headers: &dyn crate::Headers) -> bool {
        self.needs_source_address
            && crate::identity::forwarded_client(headers, &self.identity).is_none()
    }

    /// The shared-data key under which the host remembers the revision in use (in the
    /// policy's namespace, so two filters in one proxy keep their own).
    pub fn revision_key(&self) -> String {
        format!("{}/revision", self.state.namespace)
    }

    /// How many delayed requests one worker may hold at once (`state.max_delayed`).
    pub fn max_delayed_streams(&self) -> usize {
        self.max_delayed
    }

    /// Whether a partner is recognized by its mTLS certificate, so the host reads
    /// `connection.uri_san_peer_certificate` only then.
    pub fn needs_peer_certificate(&self) -> bool {
        self.partners
            .iter()
            .any(|p| matches!(p.matcher, PartnerMatch::UriSan(_)))
    }

    /// The shared-data keys of every counter slot this policy uses. Envoy's shared data
    /// has no insert-if-absent, so the filter creates these (with an empty value, only
    /// where missing) before traffic: every later update is then a real compare-and-swap
    /// and no first write can be lost to a race between workers.
    pub fn state_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.state.tables.iter().flat_map(move |table| {
            (0..self.state.slots).map(move |slot| table.key(&self.state.namespace, slot))
        })
    }
}
