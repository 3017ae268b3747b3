//! From policy text to a compiled [`Policy`], collecting every mistake with its place.
//!
//! The document is read as JSON first, then each unit (a tier, an API, a partner, each
//! top-level block) is deserialized on its own, so one bad API does not hide the errors
//! of the next. Then every value serde cannot judge (durations, dates, patterns, limits,
//! references between units) is checked. An API's controls are its tier's with the
//! API's own fields laid over them; an error in a merged value is reported where the
//! value was written: under `apis[i]` when the API set it, under `tiers.NAME` otherwise.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::decision::{Action, Mode};
use crate::error::{PolicyError, PolicyErrors};
use crate::model::AmbiguousPathsSpec;
use crate::model::{
    API_FIELDS, ApiSpec, CONTROLS_FIELDS, ControlsSpec, DOCUMENT_FIELDS, IdentitySpec,
    LifecycleSpec, LifecycleStatus, LoginKey, NotifySpec, OnError, PartnerSpec, RateKey, StateSpec,
    UnknownAction, UnknownRoutesSpec,
};
use crate::policy::{
    Api, ApiInfo, Auth, Body, Controls, Hardening, Identity, Lifecycle, Login, Notify, Partner,
    PartnerMatch, Policy, RateLimit, Session, StateConfig, Unknown, UserSource, UsernameSource,
};
use crate::routes::{AddError, RouteIndexBuilder};
use crate::state::Table;
use crate::units::{http_date, parse_duration, parse_rfc3339};

/// The mistakes found so far, each once, in the order found.
#[derive(Default)]
struct Errors {
    list: Vec<PolicyError>,
}

impl Errors {
    fn push(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        let error = PolicyError::new(path, message, hint);
        if !self.list.contains(&error) {
            self.list.push(error);
        }
    }

    /// Deserializes one unit, reporting a failure at the exact path inside it.
    fn parse<T: DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let inner = error.path().to_string();
                let at = if inner == "." || inner.is_empty() {
                    path.to_owned()
                } else {
                    join(path, &inner)
                };
                let text = error.into_inner().to_string();
                let (message, hint) = match text.split_once(", expected") {
                    Some((message, expected)) => {
                        (message.to_owned(), format!("expected{expected}"))
                    }
                    None => (text, String::new()),
                };
                self.push(&at, message, hint);
                None
            }
        }
    }

    /// Reports every key of `object` that is not one of `allowed`, with the nearest
    /// allowed name when the key looks like a typo of it.
    fn check_keys(&mut self, object: &Map<String, Value>, allowed: &[&[&str]], path: &str) {
        for key in object.keys() {
            if allowed.iter().any(|names| names.contains(&key.as_str())) {
                continue;
            }
            let all: Vec<&str> = allowed
                .iter()
                .flat_map(|names| names.iter().copied())
                .collect();
            let hint = match nearest(key, &all) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("expected one of {}", quoted_list(&all)),
            };
            self.push(&join(path, key), format!("unknown field `{key}`"), hint);
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.starts_with('[')) {
        (true, _) => key.to_owned(),
        (false, true) => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The allowed name within two edits of `key`, if there is one.
fn nearest<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut next = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = next.last().copied().unwrap_or(usize::MAX);
            let cost = diagonal + usize::from(ca != *cb);
            diagonal = above;
            next.push(
                cost.min(above.saturating_add(1))
                    .min(left.saturating_add(1)),
            );
        }
        row = next;
    }
    row.last().copied().unwrap_or(usize::MAX)
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` is safe to send as (part of) a header value.
fn is_header_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Where a field of an API's merged controls was written: decides the error path.
struct Origin<'a> {
    /// The tier's path (`tiers.NAME`) and its raw value.
    tier: (String, Option<&'a Value>),
    /// The API's path (`apis[i]`) and its raw value, when compiling an API.
    api: Option<(String, &'a Value)>,
}

impl Origin<'_> {
    /// The path of a field: under whichever of the API and the tier wrote the deepest
    /// part of it (the API first), so a missing field is reported at the block that lacks it.
    fn path(&self, fields: &[&str]) -> String {
        let relative = fields.join(".");
        if let Some((api_path, api)) = &self.api {
            for depth in (1..=fields.len()).rev() {
                let pointer: String = fields.iter().take(depth).map(|f| format!("/{f}")).collect();
                if api.pointer(&pointer).is_some() {
                    return join(api_path, &relative);
                }
                if self.tier.1.is_some_and(|t| t.pointer(&pointer).is_some()) {
                    break;
                }
            }
        }
        join(&self.tier.0, &relative)
    }

    fn is_api(&self) -> bool {
        self.api.is_some()
    }

    /// Whether the API itself has a block (login applies only to APIs that say so).
    fn api_has(&self, field: &str) -> bool {
        self.api
            .as_ref()
            .is_some_and(|(_, api)| api.get(field).is_some())
    }
}

fn duration(
    errors: &mut Errors,
    text: Option<&str>,
    path: &str,
    default: Option<u64>,
) -> Option<u64> {
    let Some(text) = text else {
        if default.is_none() {
            errors.push(
                path,
                "missing",
                "write a duration such as `30s`, `15m` or `8h`",
            );
        }
        return default;
    };
    match parse_duration(text) {
        Some(0) => {
            errors.push(
                path,
                format!("`{text}` is zero"),
                "a duration must be longer than zero",
            );
            None
        }
        Some(ms) => Some(ms),
        None => {
            errors.push(
                path,
                format!("`{text}` is not a duration"),
                "write a whole number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `1h30m`",
            );
            None
        }
    }
}

fn at_least_one(errors: &mut Errors, value: Option<u64>, path: &str) -> Option<u64> {
    match value {
        None => {
            errors.push(path, "missing", "write a number of at least 1");
            None
        }
        Some(0) => {
            errors.push(
                path,
                "is 0",
                "a threshold of 0 would refuse everything; write at least 1",
            );
            None
        }
        some => some,
    }
}

fn resolve_mode(own: Option<Mode>, default: Mode) -> Mode {
    own.unwrap_or(default)
}

/// Compiles one bundle of controls (a tier alone, or a tier with an API laid over it).
fn compile_controls(errors: &mut Errors, spec: &ControlsSpec, origin: &Origin<'_>) -> Controls {
    let default_mode = spec.mode.unwrap_or_default();
    let auth = spec.auth.as_ref().and_then(|auth| {
        let mode = resolve_mode(auth.mode, default_mode);
        let required: Vec<String> = auth
            .required
            .iter()
            .flatten()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if mode != Mode::Off && required.is_empty() {
            errors.push(
                &origin.path(&["auth", "required"]),
                "names no credential",
                "list the header names a request must carry, e.g. [\"authorization\"]",
            );
        }
        for (i, name) in required.iter().enumerate() {
            if !is_token(name) {
                errors.push(
                    &join(&origin.path(&["auth", "required"]), &format!("[{i}]")),
                    format!("`{name}` is not a header name"),
                    "use letters, digits and `-`",
                );
            }
        }
        let challenge = auth
            .challenge
            .clone()
            .unwrap_or_else(|| "Bearer".to_owned());
        if !is_header_text(&challenge) {
            errors.push(
                &origin.path(&["auth", "challenge"]),
                "contains control characters",
                "write printable ASCII",
            );
        }
        (mode != Mode::Off).then_some(Auth {
            mode,
            required,
            challenge,
        })
    });

    // Login applies only to APIs that have a `login` block of their own (the tier's
    // block holds the thresholds they share); a tier alone is checked as written.
    let login_applies = !origin.is_api() || origin.api_has("login");
    let login = spec.login.as_ref().filter(|_| login_applies).and_then(|login| {
        let mode = resolve_mode(login.mode, default_mode);
        let max_failures = at_least_one(errors, login.max_failures.map(u64::from), &origin.path(&["login", "max_failures"]));
        let window = duration(errors, login.window.as_deref(), &origin.path(&["login", "window"]), None);
        let lockout = duration(errors, login.lockout.as_deref(), &origin.path(&["login", "lockout"]), None);
        let delay = duration(errors, login.delay.as_deref(), &origin.path(&["login", "delay"]), Some(1_000));
        let max_delay = duration(errors, login.max_delay.as_deref(), &origin.path(&["login", "max_delay"]), Some(30_000));
        let action = login.action.unwrap_or(Action::Block);
        if action == Action::Log {
            errors.push(&origin.path(&["login", "action"]), "`log` is not a lockout action", "use `block`, `delay` or `alert`");
        }
        let keys = login.keys.clone().unwrap_or_else(|| vec![LoginKey::Username, LoginKey::ClientIp]);
        if keys.is_empty() {
            errors.push(&origin.path(&["login", "keys"]), "is empty", "count by `username`, `client_ip` or both");
        }
        let by_username = keys.contains(&LoginKey::Username);
        let failure_statuses = login.failure_statuses.clone().unwrap_or_else(|| vec![401, 403]);
        for (i, status) in failure_statuses.iter().enumerate() {
            if !(100..=599).contains(status) {
                errors.push(
                    &join(&origin.path(&["login", "failure_statuses"]), &format!("[{i}]")),
                    format!("{status} is not an HTTP status"),
                    "write a status between 100 and 599",
                );
            }
        }
        let username = login.username.as_ref().and_then(|u| match (&u.json_pointer, &u.form_field) {
            (Some(pointer), None) if pointer.is_empty() || pointer.starts_with('/') => {
                Some(UsernameSource::JsonPointer(pointer.clone()))
            }
            (Some(pointer), None) => {
                errors.push(
                    &origin.path(&["login", "username", "json_pointer"]),
                    format!("`{pointer}` is not a JSON pointer"),
                    "start it with `/`, e.g. `/username` (RFC 6901)",
                );
                None
            }
            (None, Some(field)) if !field.is_empty() => Some(UsernameSource::FormField(field.clone())),
            _ => {
                errors.push(
                    &origin.path(&["login", "username"]),
                    "needs exactly one of `json_pointer` and `form_field`",
                    "e.g. {\"json_pointer\": \"/username\"}",
                );
                None
            }
        });
        if origin.is_api() && by_username && login.username.is_none() {
            errors.push(
                &origin.path(&["login", "username"]),
                "missing",
                "counting failures by username needs `username.json_pointer` or `username.form_field`; or set `keys` to [\"client_ip\"]",
            );
        }
        let body_limit = login.body_limit.unwrap_or(65_536);
        if body_limit == 0 {
            errors.push(&origin.path(&["login", "body_limit"]), "is 0", "write how many bytes to read, e.g. 65536");
        }
        Some(Login {
            mode,
            max_failures: u32::try_from(max_failures?).ok()?,
            window_ms: window?,
            lockout_ms: lockout?,
            action,
            delay_ms: delay?,
            max_delay_ms: max_delay?,
            by_username,
            by_client_ip: keys.contains(&LoginKey::ClientIp),
            failure_statuses,
            reset_on_success: login.reset_on_success.unwrap_or(true),
            username,
            body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
        })
        .filter(|login| login.mode != Mode::Off)
    });

    let session = spec.session.as_ref().and_then(|session| {
        let mode = resolve_mode(session.mode, default_mode);
        let cookie = session.cookie.clone();
        if cookie.as_deref().is_none_or(|c| !is_token(c)) {
            errors.push(
                &origin.path(&["session", "cookie"]),
                "missing or not a cookie name",
                "name the session cookie, e.g. `sid`",
            );
        }
        let idle = session.idle_timeout.as_deref().and_then(|t| {
            duration(
                errors,
                Some(t),
                &origin.path(&["session", "idle_timeout"]),
                None,
            )
        });
        let absolute = session.absolute_timeout.as_deref().and_then(|t| {
            duration(
                errors,
                Some(t),
                &origin.path(&["session", "absolute_timeout"]),
                None,
            )
        });
        if session.idle_timeout.is_none() && session.absolute_timeout.is_none() {
            errors.push(
                &origin.path(&["session"]),
                "sets no timeout",
                "set `idle_timeout`, `absolute_timeout` or both",
            );
        }
        // Kept when off: its cookie still marks the start of sessions that other APIs
        // check (a login API sets the cookie but does not check it).
        Some(Session {
            mode,
            cookie: cookie?,
            idle_ms: idle,
            absolute_ms: absolute,
            bind_client_ip: session.bind_client_ip.unwrap_or(false),
        })
    });

    let rate_limit = spec.rate_limit.as_ref().and_then(|rate| {
        let mode = resolve_mode(rate.mode, default_mode);
        let requests = at_least_one(
            errors,
            rate.requests.map(u64::from),
            &origin.path(&["rate_limit", "requests"]),
        );
        let per = duration(
            errors,
            rate.per.as_deref(),
            &origin.path(&["rate_limit", "per"]),
            None,
        );
        let action = rate.action.unwrap_or(Action::Block);
        if action == Action::Log {
            errors.push(
                &origin.path(&["rate_limit", "action"]),
                "`log` is not a rate-limit action",
                "use `block`, `delay` or `alert`",
            );
        }
        (mode != Mode::Off).then_some(RateLimit {
            mode,
            requests: u32::try_from(requests?).ok()?,
            per_ms: per?,
            key: rate.key.unwrap_or(RateKey::ClientIp),
            action,
        })
    });

    let body = spec.body.as_ref().and_then(|body| {
        let mode = resolve_mode(body.mode, default_mode);
        if body.max_bytes.is_none() && body.content_types.is_none() {
            errors.push(
                &origin.path(&["body"]),
                "sets no limit",
                "set `max_bytes`, `content_types` or both",
            );
        }
        if body.max_bytes == Some(0) {
            errors.push(
                &origin.path(&["body", "max_bytes"]),
                "is 0",
                "to refuse bodies, allow no content types instead",
            );
        }
        let content_types: Vec<String> = body
            .content_types
            .iter()
            .flatten()
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        for (i, media) in content_types.iter().enumerate() {
            let valid = media
                .split_once('/')
                .is_some_and(|(a, b)| is_token(a) && is_token(b));
            if !valid {
                errors.push(
                    &join(&origin.path(&["body", "content_types"]), &format!("[{i}]")),
                    format!("`{media}` is not a media type"),
                    "write `type/subtype` without parameters, e.g. `application/json`",
                );
            }
        }
        (mode != Mode::Off).then_some(Body {
            mode,
            max_bytes: body.max_bytes,
            content_types,
        })
    });

    let response = spec.response.as_ref().and_then(|response| {
        let mode = resolve_mode(response.mode, default_mode);
        let mut headers = Vec::new();
        for (name, value) in response.headers.iter().flatten() {
            let path = join(&origin.path(&["response", "headers"]), name);
            if !is_token(name) {
                errors.push(
                    &path,
                    format!("`{name}` is not a header name"),
                    "use letters, digits and `-`",
                );
            } else if !is_header_text(value) {
                errors.push(
                    &path,
                    "the value has control characters",
                    "write printable ASCII",
                );
            } else {
                headers.push((name.to_ascii_lowercase(), value.clone()));
            }
        }
        let mut strip = Vec::new();
        for (i, name) in response.strip.iter().flatten().enumerate() {
            if is_token(name) {
                strip.push(name.to_ascii_lowercase());
            } else {
                errors.push(
                    &join(&origin.path(&["response", "strip"]), &format!("[{i}]")),
                    format!("`{name}` is not a header name"),
                    "use letters, digits and `-`",
                );
            }
        }
        let cookies = response.cookies.clone().unwrap_or_default();
        (mode != Mode::Off).then_some(Hardening {
            mode,
            secure: cookies.secure.unwrap_or(false),
            http_only: cookies.http_only.unwrap_or(false),
            same_site: cookies.same_site,
            headers,
            strip,
        })
    });

    Controls {
        default_mode,
        on_error: spec.on_error.unwrap_or(OnError::FailClosed),
        auth,
        login,
        session,
        rate_limit,
        body,
        response,
        incidents: spec
            .incidents
            .iter()
            .flatten()
            .map(|(kind, severity)| (*kind, *severity))
            .collect(),
    }
}

/// Lays the API's control fields over its tier's: objects merge key by key, anything
/// else replaces.
fn overlay(base: &mut Value, top: &Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(key) {
                    Some(existing) => overlay(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, top) => *base = top.clone(),
    }
}

fn compile_lifecycle(
    errors: &mut Errors,
    spec: Option<&LifecycleSpec>,
    path: &str,
    default_mode: Mode,
) -> Lifecycle {
    let Some(spec) = spec else {
        return Lifecycle::Active;
    };
    let mode = spec.mode.unwrap_or(default_mode);
    let time = |errors: &mut Errors, text: &Option<String>, field: &str| {
        text.as_deref().and_then(|t| {
            let parsed = parse_rfc3339(t);
            if parsed.is_none() {
                errors.push(
                    &join(path, field),
                    format!("`{t}` is not an RFC 3339 time"),
                    "write a full date and time with an offset, e.g. `2027-03-31T00:00:00Z`",
                );
            }
            parsed
        })
    };
    let deprecated_at = time(errors, &spec.deprecated_at, "deprecated_at");
    let sunset_ms = time(errors, &spec.sunset, "sunset");
    let link = spec.successor.as_ref().and_then(|successor| {
        if successor.is_empty() || !is_header_text(successor) || successor.contains(['<', '>', ' '])
        {
            errors.push(
                &join(path, "successor"),
                format!("`{successor}` cannot go in a Link header"),
                "write a URI or path without spaces or angle brackets",
            );
            return None;
        }
        Some(format!("<{successor}>; rel=\"successor-version\""))
    });
    match spec.status {
        LifecycleStatus::Active => {
            if spec.sunset.is_some() || spec.deprecated_at.is_some() {
                errors.push(
                    &join(path, "status"),
                    "an active API has a deprecation or sunset date",
                    "set `status` to `deprecated`, or remove the dates",
                );
            }
            Lifecycle::Active
        }
        LifecycleStatus::Deprecated => {
            if spec.deprecated_at.is_none() {
                errors.push(
                    &join(path, "deprecated_at"),
                    "missing",
                    "a deprecated API needs the RFC 3339 time its deprecation took effect, for the Deprecation header (RFC 9745)",
                );
            }
            Lifecycle::Deprecated {
                mode,
                deprecation: format!("@{}", deprecated_at.unwrap_or(0).div_euclid(1_000)),
                sunset_ms,
                sunset: sunset_ms.map(http_date),
                link,
            }
        }
        LifecycleStatus::Retired => Lifecycle::Retired { mode, link },
    }
}

fn compile_identity(errors: &mut Errors, spec: &IdentitySpec) -> Identity {
    let client = spec.client_ip.clone().unwrap_or_default();
    let forwarded_header = client
        .header
        .clone()
        .unwrap_or_else(|| "x-forwarded-for".to_owned())
        .to_ascii_lowercase();
    if !is_token(&forwarded_header) {
        errors.push(
            "identity.client_ip.header",
            format!("`{forwarded_header}` is not a header name"),
            "e.g. `x-forwarded-for`",
        );
    }
    let mut user = Vec::new();
    for (i, source) in spec.user.iter().enumerate() {
        let path = format!("identity.user[{i}]");
        match (&source.header, &source.cookie, &source.jwt_claim) {
            (Some(h), None, None) if is_token(h) => {
                user.push(UserSource::Header(h.to_ascii_lowercase()))
            }
            (None, Some(c), None) if is_token(c) => user.push(UserSource::Cookie(c.clone())),
            (None, None, Some(claim)) if !claim.is_empty() => {
                user.push(UserSource::JwtClaim(claim.clone()))
            }
            _ => errors.push(
                &path,
                "needs exactly one of `header`, `cookie` and `jwt_claim`, with a name",
                "e.g. {\"header\": \"x-user-id\"} or {\"jwt_claim\": \"sub\"}",
            ),
        }
    }
    Identity {
        trusted_hops: client.trusted_hops,
        forwarded_header,
        user,
    }
}

fn compile_partner(errors: &mut Errors, spec: &PartnerSpec, path: &str) -> Option<Partner> {
    let m = &spec.matcher;
    let matcher = match (&m.header, &m.equals, &m.client_cidr, &m.uri_san) {
        (Some(header), Some(value), None, None) if is_token(header) => PartnerMatch::Header {
            name: header.to_ascii_lowercase(),
            value: value.clone(),
        },
        (None, None, Some(cidr), None) => match parse_cidr(cidr) {
            Some((network, prefix)) => PartnerMatch::Cidr { network, prefix },
            None => {
                errors.push(
                    &join(path, "match.client_cidr"),
                    format!("`{cidr}` is not a CIDR range"),
                    "write an address and a prefix length, e.g. `203.0.113.0/24` or `2001:db8::/32`",
                );
                return None;
            }
        },
        (None, None, None, Some(san)) if !san.is_empty() => PartnerMatch::UriSan(san.clone()),
        _ => {
            errors.push(
                &join(path, "match"),
                "needs exactly one of `header` with `equals`, `client_cidr` and `uri_san`",
                "e.g. {\"header\": \"x-partner-id\", \"equals\": \"acme\"}",
            );
            return None;
        }
    };
    if spec.name.is_empty() {
        errors.push(&join(path, "name"), "is empty", "name the partner");
    }
    Some(Partner {
        name: spec.name.clone(),
        matcher,
        exempt: spec.exempt.clone(),
    })
}

pub(crate) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let network: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((network, prefix))
}

/// Looks up a top-level block and deserializes it when present.
fn block<T: DeserializeOwned>(
    errors: &mut Errors,
    root: &Map<String, Value>,
    key: &str,
) -> Option<T> {
    root.get(key).and_then(|value| errors.parse(value, key))
}

pub(crate) fn compile(text: &str) -> Result<Policy, PolicyErrors> {
    let mut errors = Errors::default();
    let root: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            errors.push(
                "(document)",
                format!("not valid JSON: {error}"),
                "a policy is one JSON object",
            );
            return Err(PolicyErrors {
                errors: errors.list,
            });
        }
    };
    let Some(root) = root.as_object() else {
        errors.push(
            "(document)",
            "is not a JSON object",
            "a policy is one JSON object with `revision`, `tiers` and `apis`",
        );
        return Err(PolicyErrors {
            errors: errors.list,
        });
    };
    errors.check_keys(root, &[DOCUMENT_FIELDS], "");

    let revision: Option<String> = block(&mut errors, root, "revision");
    if revision
        .as_deref()
        .is_none_or(|r| r.is_empty() || !is_header_text(r))
    {
        errors.push(
            "revision",
            "missing or empty",
            "label this version of the policy, e.g. \"2026-11-29.1\"",
        );
    }
    let identity_spec: IdentitySpec = block(&mut errors, root, "identity").unwrap_or_default();
    let identity = compile_identity(&mut errors, &identity_spec);
    let notify = block::<NotifySpec>(&mut errors, root, "notify").and_then(|spec| {
        let am = spec.alertmanager;
        if am.cluster.is_empty() {
            errors.push(
                "notify.alertmanager.cluster",
                "is empty",
                "name the Envoy cluster of your Alertmanager",
            );
        }
        let timeout = duration(
            &mut errors,
            am.timeout.as_deref(),
            "notify.alertmanager.timeout",
            Some(1_000),
        );
        let dedupe = duration(
            &mut errors,
            am.dedupe_window.as_deref(),
            "notify.alertmanager.dedupe_window",
            Some(300_000),
        );
        Some(Notify {
            authority: am.authority.unwrap_or_else(|| am.cluster.clone()),
            cluster: am.cluster,
            path: "/api/v2/alerts".to_owned(),
            timeout_ms: timeout?,
            dedupe_window_ms: dedupe?,
        })
    });
    let state_spec: Option<StateSpec> = block(&mut errors, root, "state");
    let namespace = state_spec
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| "stakeguard".to_owned());
    if namespace.is_empty()
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        errors.push(
            "state.namespace",
            format!("`{namespace}` is not a namespace"),
            "use letters, digits, `-` and `_`",
        );
    }
    let slots = state_spec.as_ref().and_then(|s| s.slots).unwrap_or(4096);
    if !(1..=1_048_576).contains(&slots) {
        errors.push(
            "state.slots",
            format!("{slots} is out of range"),
            "write between 1 and 1048576 slots",
        );
    }
    let unknown_spec: Option<UnknownRoutesSpec> = block(&mut errors, root, "unknown_routes");
    let unknown = Unknown {
        action: unknown_spec
            .as_ref()
            .map_or(UnknownAction::Log, |u| u.action),
        mode: unknown_spec
            .as_ref()
            .and_then(|u| u.mode)
            .unwrap_or_default(),
        severity: unknown_spec
            .as_ref()
            .and_then(|u| u.severity)
            .unwrap_or(crate::decision::Severity::Ticket),
        owner: unknown_spec
            .as_ref()
            .and_then(|u| u.owner.clone())
            .unwrap_or_else(|| "unowned".to_owned()),
        contact: unknown_spec.as_ref().and_then(|u| u.contact.clone()),
    };
    let ambiguous_mode = block::<AmbiguousPathsSpec>(&mut errors, root, "ambiguous_paths")
        .map_or(Mode::Enforce, |a| a.mode);

    let mut partners = Vec::new();
    match root.get("partners") {
        None => {}
        Some(Value::Array(list)) => {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, value) in list.iter().enumerate() {
                let path = format!("partners[{i}]");
                if let Some(spec) = errors.parse::<PartnerSpec>(value, &path)
                    && let Some(partner) = compile_partner(&mut errors, &spec, &path)
                {
                    partners.push(partner);
                }
                if let Some(name) = value.get("name").and_then(Value::as_str)
                    && let Some(first) = seen.insert(name, i)
                {
                    errors.push(
                        &join(&path, "name"),
                        format!("partner `{name}` is also partners[{first}]"),
                        "give each partner one entry",
                    );
                }
            }
        }
        Some(_) => errors.push(
            "partners",
            "is not a list",
            "write a JSON array of partners",
        ),
    }

    // Tiers: each compiled alone, so a mistake in a tier is reported once, at the tier.
    let mut tier_values: BTreeMap<String, (&Value, bool)> = BTreeMap::new();
    match root.get("tiers") {
        Some(Value::Object(tiers)) => {
            for (name, value) in tiers {
                let path = join("tiers", name);
                let before = errors.list.len();
                match value.as_object() {
                    Some(object) => errors.check_keys(object, &[CONTROLS_FIELDS], &path),
                    None => {
                        errors.push(&path, "is not an object", "a tier is an object of controls")
                    }
                }
                if let Some(spec) = errors.parse::<ControlsSpec>(value, &path) {
                    let origin = Origin {
                        tier: (path.clone(), Some(value)),
                        api: None,
                    };
                    compile_controls(&mut errors, &spec, &origin);
                }
                tier_values.insert(name.clone(), (value, errors.list.len() == before));
            }
        }
        Some(_) => errors.push(
            "tiers",
            "is not an object",
            "map tier names to their controls",
        ),
        None => errors.push(
            "tiers",
            "missing",
            "define at least one tier, e.g. {\"critical\": {...}}",
        ),
    }
    let tier_names: Vec<&str> = tier_values.keys().map(String::as_str).collect();

    let mut apis = Vec::new();
    let mut builder = RouteIndexBuilder::new();
    let mut route_paths: Vec<Vec<String>> = Vec::new();
    let mut names: HashMap<(String, String), usize> = HashMap::new();
    match root.get("apis") {
        Some(Value::Array(list)) => {
            for (i, value) in list.iter().enumerate() {
                let path = format!("apis[{i}]");
                let Some(object) = value.as_object() else {
                    errors.push(
                        &path,
                        "is not an object",
                        "an API is an object with `name`, `version`, `owner`, `tier` and `routes`",
                    );
                    continue;
                };
                errors.check_keys(object, &[API_FIELDS, CONTROLS_FIELDS], &path);
                let Some(spec) = errors.parse::<ApiSpec>(value, &path) else {
                    continue;
                };
                if let Some(api) =
                    compile_api(&mut errors, &spec, value, &path, &tier_values, &tier_names)
                {
                    let id = apis.len();
                    if let Some(first) = names.insert((spec.name.clone(), spec.version.clone()), i)
                    {
                        errors.push(
                            &path,
                            format!(
                                "duplicate API `{}` version `{}`; it is also apis[{first}]",
                                spec.name, spec.version
                            ),
                            "give each name and version one entry, with all its routes",
                        );
                    }
                    route_paths.push(Vec::new());
                    for (j, route) in spec.routes.iter().enumerate() {
                        let route_path = format!("{path}.routes[{j}]");
                        let methods = route.methods.clone().unwrap_or_default();
                        match builder.add(route.host.as_deref(), &route.path, &methods, (id, j)) {
                            Ok(()) => {}
                            Err(AddError::Pattern(e)) => {
                                errors.push(&route_path, e.message, e.hint)
                            }
                            Err(AddError::Conflict {
                                existing: (other_api, other_route),
                            }) => {
                                let other = route_paths
                                    .get(other_api)
                                    .and_then(|p| p.get(other_route))
                                    .cloned()
                                    .unwrap_or_default();
                                errors.push(
                                    &route_path,
                                    format!(
                                        "matches the same requests as {other} (`{}`)",
                                        route.path
                                    ),
                                    "make their hosts, paths or methods differ",
                                );
                            }
                        }
                        if let Some(paths) = route_paths.last_mut() {
                            paths.push(route_path);
                        }
                    }
                    if spec.routes.is_empty() {
                        errors.push(
                            &join(&path, "routes"),
                            "is empty",
                            "list at least one route, e.g. {\"path\": \"/api/v1/orders/{id}\"}",
                        );
                    }
                    apis.push(api);
                }
            }
        }
        Some(_) => errors.push("apis", "is not a list", "write a JSON array of APIs"),
        None => errors.push("apis", "missing", "list the API inventory"),
    }

    if !errors.list.is_empty() {
        return Err(PolicyErrors {
            errors: errors.list,
        });
    }
    let mut tables = Vec::new();
    for api in &apis {
        let controls = &api.controls;
        if let Some(login) = &controls.login {
            if login.by_username {
                tables.push(Table::LoginUser);
            }
            if login.by_client_ip {
                tables.push(Table::LoginIp);
            }
        }
        if controls.rate_limit.is_some() {
            tables.push(Table::Rate);
        }
        if controls.session.is_some() {
            tables.push(Table::Session);
        }
    }
    tables.sort_by_key(|t| *t as u8);
    tables.dedup();
    Ok(Policy {
        revision: revision.unwrap_or_default(),
        apis,
        index: builder.build(),
        identity,
        partners,
        unknown,
        ambiguous_mode,
        notify,
        state: StateConfig {
            namespace,
            slots,
            tables,
        },
    })
}

fn compile_api(
    errors: &mut Errors,
    spec: &ApiSpec,
    value: &Value,
    path: &str,
    tiers: &BTreeMap<String, (&Value, bool)>,
    tier_names: &[&str],
) -> Option<Api> {
    for (field, text) in [
        ("name", &spec.name),
        ("version", &spec.version),
        ("owner", &spec.owner),
    ] {
        if text.is_empty() || !is_header_text(text) {
            errors.push(
                &join(path, field),
                "missing or empty",
                "write printable text",
            );
        }
    }
    let Some((tier_value, tier_valid)) = tiers.get(&spec.tier) else {
        errors.push(
            &join(path, "tier"),
            format!("unknown tier `{}`", spec.tier),
            format!("expected one of {}", quoted_list(tier_names)),
        );
        return None;
    };
    let mut merged = (*tier_value).clone();
    if let Some(object) = value.as_object() {
        for (key, field) in object {
            if CONTROLS_FIELDS.contains(&key.as_str()) {
                match merged.get_mut(key) {
                    Some(existing) => overlay(existing, field),
                    None => {
                        if let Some(m) = merged.as_object_mut() {
                            m.insert(key.clone(), field.clone());
                        }
                    }
                }
            }
        }
    }
    // A broken tier was reported at the tier; its APIs would only repeat its errors.
    let mut discarded = Errors::default();
    let control_errors = if *tier_valid {
        &mut *errors
    } else {
        &mut discarded
    };
    let controls_spec: ControlsSpec = control_errors.parse(&merged, path)?;
    let origin = Origin {
        tier: (join("tiers", &spec.tier), Some(*tier_value)),
        api: Some((path.to_owned(), value)),
    };
    let controls = compile_controls(control_errors, &controls_spec, &origin);
    let lifecycle = compile_lifecycle(
        errors,
        spec.lifecycle.as_ref(),
        &join(path, "lifecycle"),
        controls.default_mode,
    );
    Some(Api {
        info: ApiInfo {
            name: spec.name.clone(),
            version: spec.version.clone(),
            owner: spec.owner.clone(),
            contact: spec.contact.clone(),
            tier: spec.tier.clone(),
        },
        lifecycle,
        controls,
    })
}
