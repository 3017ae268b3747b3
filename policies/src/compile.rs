//! From policy text to a compiled [`Policy`], collecting every mistake with its place.
//!
//! The text is parsed as JSON first, then read into the document's types (see
//! [`crate::read`]): tiers, APIs and partners one by one, so that every error keeps its
//! index and one bad entry does not hide the next. Then every value the types cannot
//! judge (durations, dates, patterns, limits, references between units) is checked. An
//! API's controls are its tier's with the API's own fields laid over them; an error in a
//! merged value is reported where the value was written: under `apis[i]` when the API
//! set it, under `tiers.NAME` otherwise.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use crate::decision::{Action, EventKind, HeaderChange, Mode, Severity};
use crate::error::PolicyErrors;
use crate::json::Json;
use crate::model::{
    AmbiguousPathsSpec, ApiSpec, BindingTarget, ClaimRuleSpec, ControlsSpec, CorsSpec,
    CounterPlace, CredentialSpec, IdentitySpec, LifecycleSpec, LifecycleStatus, LoginKey,
    NotifySpec, OnError, PartnerSpec, QuotaCount, QuotaKeyName, QuotaKeySpec, RateKey,
    ServiceLimits, StateSpec, UnknownAction, UnknownRoutesSpec,
};
use crate::policy::{
    Api, ApiInfo, Auth, Binding, Body, ClaimRule, ClaimTest, Claims, Controls, Cors,
    CounterService, Credential, Hardening, Identity, Lifecycle, Login, LoginLimits, Notify,
    OriginPattern, Ownership, Partner, PartnerMatch, Policy, Quota, QuotaKey, RateLimit, Session,
    Spraying, StateConfig, Unknown, UserSource, UsernameSource,
};
use crate::read::{Errors, FromJson, ObjectReader, join, nearest, quoted_list};
use crate::routes::{AddError, RouteIndexBuilder, TextMap};
use crate::state::Table;
use crate::units::{http_date, parse_duration, parse_rfc3339};

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

/// Where a field of a bundle of merged controls was written: decides the error path.
struct Origin<'a> {
    /// The blocks merged, the most specific first: the API's (`apis[i]`, when compiling
    /// an API), its tier's (`tiers.NAME`), then `defaults`.
    layers: &'a [(&'a str, &'a Json<'a>)],
    /// Where a field that none of them wrote is reported: the tier.
    home: &'a str,
    /// The API's raw value, when compiling an API.
    api: Option<&'a Json<'a>>,
}

impl Origin<'_> {
    /// The path of a field: under the most specific block that wrote the deepest part of
    /// it, so a missing field is reported at the block that lacks it.
    fn path(&self, fields: &[&str]) -> String {
        let relative = fields.join(".");
        for depth in (1..=fields.len()).rev() {
            if let Some((path, _)) = self
                .layers
                .iter()
                .find(|(_, v)| has_field(v, fields.iter().take(depth)))
            {
                return join(path, &relative);
            }
        }
        join(self.home, &relative)
    }

    fn is_api(&self) -> bool {
        self.api.is_some()
    }

    /// Whether the bundle being compiled wrote this field itself (not its tier or the
    /// defaults under it), so a setting that has no effect in this bundle is reported
    /// here; a tier's setting may serve its other APIs, and `defaults` are only judged
    /// with a tier over them.
    fn wrote(&self, fields: &[&str]) -> bool {
        self.layers.len() > 1
            && self
                .layers
                .first()
                .is_some_and(|(_, v)| has_field(v, fields.iter()))
    }

    /// Whether the API itself has a block (login applies only to APIs that say so).
    fn api_has(&self, field: &str) -> bool {
        self.api.is_some_and(|api| api.get(field).is_some())
    }
}

/// Whether `value` has the field at the end of `fields` (object keys, outermost first),
/// looked up key by key: Origin asks this for every field it places, once per API.
fn has_field<'f>(value: &Json, mut fields: impl Iterator<Item = &'f &'f str>) -> bool {
    fields
        .try_fold(value, |value, field| value.get(field))
        .is_some()
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

/// The most distinct usernames spraying detection counts: the 64-bit sketch estimates
/// well up to about half its bits.
const MAX_SPRAYING_USERNAMES: u32 = 32;

/// The bits that `n` distinct usernames set on average in the 64-bit sketch,
/// `64 (1 - (63/64)^n)`, to the nearest: the sketch's threshold for "n usernames", so
/// that spraying is reported at `n` distinct usernames on average (one usually sets a
/// bit of its own; two sharing a bit make it one later, and the rounding one earlier).
fn sketch_bits(n: u32) -> u32 {
    let mut empty = 1.0_f64;
    for _ in 0..n {
        empty *= 63.0 / 64.0;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "between 0.5 and 64.5"
    )]
    let bits = (64.0 * (1.0 - empty) + 0.5) as u32;
    bits.max(1)
}

fn resolve_mode(own: Option<Mode>, default: Mode) -> Mode {
    own.unwrap_or(default)
}

/// Reads a list of credentials; a header named `cookie` is refused, since any cookie at
/// all would pass it.
fn compile_credentials(
    errors: &mut Errors,
    specs: Option<&[CredentialSpec]>,
    path: &str,
) -> Vec<Credential> {
    let mut out = Vec::new();
    for (i, spec) in specs.unwrap_or_default().iter().enumerate() {
        let at = join(path, &format!("[{i}]"));
        let (name, credential) = match spec {
            CredentialSpec::Header(name) => {
                let name = name.to_ascii_lowercase();
                (name.clone(), Credential::Header(name))
            }
            CredentialSpec::Cookie(name) => (name.clone(), Credential::Cookie(name.clone())),
        };
        if !is_token(&name) {
            errors.push(
                &at,
                format!("`{name}` is not a header or cookie name"),
                "use letters, digits and `-`",
            );
        } else if credential == Credential::Header("cookie".to_owned()) {
            errors.push(
                &at,
                "the `cookie` header passes with any cookie at all",
                "name the cookie that is the credential, e.g. {\"cookie\": \"sid\"}",
            );
        } else {
            out.push(credential);
        }
    }
    out
}

/// Where a bundle's counted controls count (`counters`): each control's place is
/// `true` when it counts in `service`.
#[derive(Default)]
struct Places {
    service: Option<CounterService>,
    rate_limit: bool,
    login: bool,
    login_client_ip: bool,
    quotas: bool,
}

#[cold]
fn compile_counters(errors: &mut Errors, spec: &ControlsSpec, origin: &Origin<'_>) -> Places {
    let Some(counters) = &spec.counters else {
        return Places::default();
    };
    let service = counters.service.as_ref().and_then(|service| {
        let at = |field: &str| origin.path(&["counters", "service", field]);
        if service.cluster.trim().is_empty() {
            errors.push(
                &at("cluster"),
                "is empty",
                "name the Envoy cluster of the rate limit service, e.g. `ratelimit`",
            );
        }
        let domain = service
            .domain
            .clone()
            .unwrap_or_else(|| "stakeguard".to_owned());
        if domain.is_empty() {
            errors.push(
                &at("domain"),
                "is empty",
                "write the rate limit domain, e.g. `stakeguard`",
            );
        }
        let timeout = duration(
            errors,
            service.timeout.as_deref(),
            &at("timeout"),
            Some(100),
        );
        let failure = service
            .failure_mode
            .or(spec.on_error)
            .unwrap_or(OnError::FailClosed);
        Some(CounterService {
            cluster: service.cluster.clone(),
            domain,
            timeout_ms: timeout?,
            fail_open: failure == OnError::FailOpen,
            limits_in_request: service.limits.unwrap_or(ServiceLimits::Request)
                == ServiceLimits::Request,
        })
    });
    let mut place = |field: &str, written: Option<CounterPlace>| {
        let by_service = written == Some(CounterPlace::Service);
        if by_service && counters.service.is_none() {
            errors.push(
                &origin.path(&["counters", field]),
                "counts in a rate limit service but `counters.service` names none",
                "add `counters.service` with the service's `cluster`, or write `local`",
            );
        }
        by_service && service.is_some()
    };
    Places {
        rate_limit: place("rate_limit", counters.rate_limit),
        login: place("login", counters.login),
        login_client_ip: place("login_client_ip", counters.login_client_ip),
        quotas: place("quotas", counters.quotas),
        service,
    }
}

/// Refuses a window the rate limit service cannot count: with limits in the request it
/// must be one unit (1s, 1m, 1h, 1d); in the service's configuration, whole seconds.
#[cold]
fn check_service_window(errors: &mut Errors, service: &CounterService, window_ms: u64, path: &str) {
    if service.limits_in_request && crate::rls::Unit::of_window(window_ms).is_none() {
        errors.push(
            path,
            "is no window a rate limit service takes in the request",
            "write `1s`, `1m`, `1h` or `1d`, or set `counters.service.limits` to `config` and load what `stakeguard ratelimit-config` writes into the service",
        );
    } else if !window_ms.is_multiple_of(1_000) {
        errors.push(
            path,
            "is not whole seconds",
            "a rate limit service counts windows of whole seconds",
        );
    }
}

/// Refuses the login settings a rate limit service cannot carry out for one key: its
/// counters are windows (a key stays locked until its window ends, so the lockout is the
/// window) and nothing clears them (no reset on success).
#[cold]
fn check_service_login(
    errors: &mut Errors,
    service: &CounterService,
    limits: &LoginLimits,
    paths: [String; 3],
    reset_written: bool,
) {
    let [window, lockout, reset] = paths;
    check_service_window(errors, service, limits.window_ms, &window);
    if limits.lockout_ms != limits.window_ms {
        errors.push(
            &lockout,
            "differs from the window while failures count in a rate limit service",
            "the service counts failures in fixed windows and a key stays locked until its window ends: write the window's duration, or count this key `local`",
        );
    }
    if reset_written {
        errors.push(
            &reset,
            "cannot be carried out: a rate limit service never clears a count",
            "remove it (false when counting in a service), or count this key `local`",
        );
    }
}

/// Compiles one bundle of controls (a tier alone, or a tier with an API laid over it).
fn compile_controls(errors: &mut Errors, spec: &ControlsSpec, origin: &Origin<'_>) -> Controls {
    let default_mode = spec.mode.unwrap_or_default();
    let places = compile_counters(errors, spec, origin);
    let auth = spec.auth.as_ref().and_then(|auth| {
        let mode = resolve_mode(auth.mode, default_mode);
        let required = compile_credentials(errors, auth.required.as_deref(), &origin.path(&["auth", "required"]));
        let any_of = compile_credentials(errors, auth.any_of.as_deref(), &origin.path(&["auth", "any_of"]));
        let written = |list: &Option<Vec<CredentialSpec>>| list.as_ref().map_or(0, Vec::len);
        if mode != Mode::Off && written(&auth.required) + written(&auth.any_of) == 0 {
            errors.push(
                &origin.path(&["auth"]),
                "names no credential",
                "list what a request must carry in `required` (all of them) or `any_of` (one of them), e.g. [\"authorization\", {\"cookie\": \"sid\"}]",
            );
        }
        if written(&auth.any_of) == 1 {
            errors.push(
                &origin.path(&["auth", "any_of"]),
                "has one alternative",
                "list two or more, or move it to `required`",
            );
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
            any_of,
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
        let username_limits = LoginLimits {
            max_failures: u32::try_from(max_failures?).ok()?,
            window_ms: window?,
            lockout_ms: lockout?,
            action,
            reset_on_success: login.reset_on_success.unwrap_or(!places.login),
            by_service: places.login,
        };
        let by_client_ip = keys.contains(&LoginKey::ClientIp);
        let client_limits = match &login.client_ip {
            None => LoginLimits {
                reset_on_success: false,
                by_service: places.login_client_ip,
                ..username_limits
            },
            Some(own) => {
                let at = |field: &str| origin.path(&["login", "client_ip", field]);
                if !by_client_ip && origin.wrote(&["login", "client_ip"]) {
                    errors.push(
                        &origin.path(&["login", "client_ip"]),
                        "sets thresholds for a key that is not counted",
                        "add \"client_ip\" to `login.keys`, or remove `login.client_ip`",
                    );
                }
                let max_failures = own.max_failures.map(|n| at_least_one(errors, Some(u64::from(n)), &at("max_failures")));
                let window = own.window.as_deref().map(|t| duration(errors, Some(t), &at("window"), None));
                let lockout = own.lockout.as_deref().map(|t| duration(errors, Some(t), &at("lockout"), None));
                let action = own.action.unwrap_or(action);
                if action == Action::Log {
                    errors.push(&at("action"), "`log` is not a lockout action", "use `block`, `delay` or `alert`");
                }
                LoginLimits {
                    max_failures: match max_failures {
                        Some(n) => u32::try_from(n?).ok()?,
                        None => username_limits.max_failures,
                    },
                    window_ms: window.unwrap_or(Some(username_limits.window_ms))?,
                    lockout_ms: lockout.unwrap_or(Some(username_limits.lockout_ms))?,
                    action,
                    reset_on_success: own.reset_on_success.unwrap_or(false),
                    by_service: places.login_client_ip,
                }
            }
        };
        if let Some(service) = &places.service {
            let at = |field: &str| origin.path(&["login", field]);
            if by_username && username_limits.by_service {
                let paths = [at("window"), at("lockout"), at("reset_on_success")];
                check_service_login(errors, service, &username_limits, paths, login.reset_on_success == Some(true));
            }
            if by_client_ip && client_limits.by_service {
                let own = login.client_ip.as_ref();
                let written = |field: &str, set: bool| if set { origin.path(&["login", "client_ip", field]) } else { at(field) };
                let paths = [
                    written("window", own.is_some_and(|c| c.window.is_some())),
                    written("lockout", own.is_some_and(|c| c.lockout.is_some())),
                    origin.path(&["login", "client_ip", "reset_on_success"]),
                ];
                let reset = own.is_some_and(|c| c.reset_on_success == Some(true));
                check_service_login(errors, service, &client_limits, paths, reset);
            }
        }
        let spraying = match &login.spraying {
            None => None,
            Some(spec) => {
                let at = |field: &str| origin.path(&["login", "spraying", field]);
                if login.username.is_none() && origin.is_api() {
                    errors.push(
                        &origin.path(&["login", "username"]),
                        "missing",
                        "spotting spraying needs the username: set `username.json_pointer` or `username.form_field`",
                    );
                }
                let max_usernames = spec.max_usernames;
                match max_usernames {
                    Some(n) if (2..=MAX_SPRAYING_USERNAMES).contains(&n) => {}
                    Some(n) => errors.push(
                        &at("max_usernames"),
                        format!("{n} is out of range"),
                        format!("write between 2 and {MAX_SPRAYING_USERNAMES} usernames"),
                    ),
                    None => errors.push(&at("max_usernames"), "missing", "write how many distinct usernames, e.g. 5"),
                }
                let window = duration(errors, spec.window.as_deref(), &at("window"), None);
                let lockout = spec.lockout.as_deref().map(|t| duration(errors, Some(t), &at("lockout"), None));
                let action = spec.action.unwrap_or(Action::Alert);
                if action == Action::Log {
                    errors.push(&at("action"), "`log` is not a spraying action", "use `alert`, `block` or `delay`");
                }
                if action == Action::Alert && origin.wrote(&["login", "spraying", "lockout"]) {
                    errors.push(
                        &at("lockout"),
                        "has no effect with the `alert` action",
                        "remove it, or set `action` to `block` or `delay`",
                    );
                }
                let max_usernames = max_usernames.filter(|n| (2..=MAX_SPRAYING_USERNAMES).contains(n))?;
                let window_ms = window?;
                Some(Spraying {
                    max_usernames,
                    limits: LoginLimits {
                        max_failures: sketch_bits(max_usernames),
                        window_ms,
                        lockout_ms: lockout.unwrap_or(Some(window_ms))?,
                        action,
                        reset_on_success: false,
                        by_service: false,
                    },
                })
            }
        };
        if let (Some(first), Some(longest)) = (delay, max_delay)
            && longest < first
        {
            errors.push(
                &origin.path(&["login", "max_delay"]),
                "is shorter than `delay`",
                "the longest delay caps the growing one: write at least the first delay",
            );
        }
        let delaying = [Some(&username_limits), Some(&client_limits), spraying.as_ref().map(|s| &s.limits)]
            .into_iter()
            .flatten()
            .any(|l| l.action == Action::Delay);
        for (field, set) in [("delay", login.delay.is_some()), ("max_delay", login.max_delay.is_some())] {
            if set && !delaying && origin.wrote(&["login", field]) {
                errors.push(
                    &origin.path(&["login", field]),
                    "has no effect: no key of this login uses the `delay` action",
                    "set `action` (or `client_ip.action`) to `delay`, or remove it",
                );
            }
        }
        Some(Login {
            mode,
            username_limits,
            client_limits,
            delay_ms: delay?,
            max_delay_ms: max_delay?,
            by_username,
            by_client_ip,
            failure_statuses,
            username,
            body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
            spraying,
        })
        .filter(|login| login.mode != Mode::Off)
    });

    let session = spec.session.as_ref().and_then(|session| {
        let mode = resolve_mode(session.mode, default_mode);
        // A cookie that is the API's credential is the session the timeouts are about.
        let cookie = session.cookie.clone().or_else(|| {
            let auth = spec.auth.as_ref()?;
            let mut cookies = auth.required.iter().chain(&auth.any_of).flatten().filter_map(|c| match c {
                CredentialSpec::Cookie(name) => Some(name),
                CredentialSpec::Header(_) => None,
            });
            match (cookies.next(), cookies.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        });
        if cookie.as_deref().is_none_or(|c| !is_token(c)) {
            errors.push(
                &origin.path(&["session", "cookie"]),
                "missing or not a cookie name",
                "name the session cookie, e.g. `sid` (an API whose `auth` names one cookie credential uses that one)",
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
        if let (Some(service), Some(per_ms)) =
            (places.service.as_ref().filter(|_| places.rate_limit), per)
        {
            check_service_window(
                errors,
                service,
                per_ms,
                &origin.path(&["rate_limit", "per"]),
            );
            if rate.exact == Some(true) {
                errors.push(
                    &origin.path(&["rate_limit", "exact"]),
                    "has no effect when the rate limit counts in a rate limit service",
                    "remove it: the service counts every request",
                );
            }
        }
        (mode != Mode::Off).then_some(RateLimit {
            mode,
            requests: u32::try_from(requests?).ok()?,
            per_ms: per?,
            key: rate.key.unwrap_or(RateKey::ClientIp),
            action,
            exact: rate.exact.unwrap_or(false),
            by_service: places.rate_limit,
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
        for (name, value) in response.headers.iter().flat_map(|named| named.0.iter()) {
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
                headers.push((name.to_ascii_lowercase().into(), value.as_str().into()));
            }
        }
        let mut strip = Vec::new();
        for (i, name) in response.strip.iter().flatten().enumerate() {
            if is_token(name) {
                strip.push(name.to_ascii_lowercase().into());
            } else {
                errors.push(
                    &join(&origin.path(&["response", "strip"]), &format!("[{i}]")),
                    format!("`{name}` is not a header name"),
                    "use letters, digits and `-`",
                );
            }
        }
        let cookies = response.cookies.as_ref();
        (mode != Mode::Off).then_some(Hardening {
            mode,
            secure: cookies.and_then(|c| c.secure).unwrap_or(false),
            http_only: cookies.and_then(|c| c.http_only).unwrap_or(false),
            same_site: cookies.and_then(|c| c.same_site),
            headers,
            strip,
        })
    });

    let ownership = spec.ownership.as_ref().and_then(|ownership| {
        let mode = resolve_mode(ownership.mode, default_mode);
        let mut bindings = Vec::new();
        let bind_path = origin.path(&["ownership", "bind"]);
        for (i, binding) in ownership.bind.iter().flatten().enumerate() {
            let path = join(&bind_path, &format!("[{i}]"));
            let target = match (binding.to, &binding.claim) {
                (BindingTarget::User, None) => crate::policy::BindingTarget::User,
                (BindingTarget::Claim, Some(claim)) if !claim.is_empty() => {
                    crate::policy::BindingTarget::Claim(claim.clone())
                }
                (BindingTarget::User, Some(_)) => {
                    errors.push(
                        &join(&path, "claim"),
                        "is only for `to: claim`",
                        "remove it, or bind to a claim",
                    );
                    continue;
                }
                (BindingTarget::Claim, _) => {
                    errors.push(
                        &join(&path, "claim"),
                        "missing",
                        "name the claim that lists the caller's ids, e.g. `accounts`",
                    );
                    continue;
                }
            };
            bindings.push(Binding {
                param: binding.param.clone(),
                target,
            });
        }
        if bindings.is_empty() && mode != Mode::Off {
            errors.push(
                &bind_path,
                "binds no parameter",
                "e.g. [{\"param\": \"user_id\", \"to\": \"user\"}]",
            );
        }
        let bypass = ownership.bypass.as_ref().and_then(|rule| {
            compile_claim_rule(errors, rule, &origin.path(&["ownership", "bypass"]))
        });
        (mode != Mode::Off).then_some(Ownership {
            mode,
            bindings,
            bypass,
        })
    });

    let claims = spec.claims.as_ref().and_then(|claims| {
        let mode = resolve_mode(claims.mode, default_mode);
        let path = origin.path(&["claims", "require"]);
        let require =
            compile_claim_rules(errors, claims.require.as_deref().unwrap_or_default(), &path);
        if require.is_empty() && mode != Mode::Off {
            errors.push(
                &path,
                "requires no claim",
                "e.g. [{\"claim\": \"scope\", \"contains\": \"transfers:write\"}]",
            );
        }
        (mode != Mode::Off).then_some(Claims { mode, require })
    });

    let mut quotas = Vec::new();
    let mut quota_names: Vec<String> = Vec::new();
    for (i, quota) in spec.quotas.iter().flatten().enumerate() {
        let path = join(&origin.path(&["quotas"]), &format!("[{i}]"));
        let mode = resolve_mode(quota.mode, default_mode);
        let name = quota.name.clone().unwrap_or_else(|| format!("quota{i}"));
        if quota_names.contains(&name) {
            errors.push(
                &join(&path, "name"),
                format!("`{name}` names two quotas"),
                "give each quota its own name",
            );
        }
        quota_names.push(name.clone());
        let limit = at_least_one(errors, quota.limit.map(u64::from), &join(&path, "limit"));
        let per = duration(errors, quota.per.as_deref(), &join(&path, "per"), None);
        let key = match &quota.key {
            None | Some(QuotaKeySpec::Named(QuotaKeyName::User)) => QuotaKey::User,
            Some(QuotaKeySpec::Named(QuotaKeyName::ClientIp)) => QuotaKey::ClientIp,
            Some(QuotaKeySpec::BodyField(json_pointer)) if json_pointer.starts_with('/') => {
                QuotaKey::BodyPointer(json_pointer.clone())
            }
            Some(QuotaKeySpec::BodyField(json_pointer)) => {
                errors.push(
                    &join(&path, "key.json_pointer"),
                    format!("`{json_pointer}` is not a JSON pointer"),
                    "start it with `/`, e.g. `/to_account`",
                );
                continue;
            }
        };
        let action = quota.action.unwrap_or(Action::Block);
        if !matches!(action, Action::Block | Action::Alert) {
            errors.push(
                &join(&path, "action"),
                format!("`{}` is not a quota action", action.as_str()),
                "use `block` or `alert`",
            );
        }
        let methods = compile_methods(
            errors,
            quota.methods.as_deref().unwrap_or_default(),
            &join(&path, "methods"),
        );
        if let (Some(service), Some(per_ms)) =
            (places.service.as_ref().filter(|_| places.quotas), per)
        {
            check_service_window(errors, service, per_ms, &join(&path, "per"));
        }
        if mode == Mode::Off {
            continue;
        }
        if let (Some(limit), Some(per_ms)) = (limit, per) {
            quotas.push(Quota {
                name: name.clone(),
                by_service: places.quotas,
                mode,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                per_ms,
                key,
                success_only: quota.count.unwrap_or(QuotaCount::Success) == QuotaCount::Success,
                action,
                methods,
            });
        }
    }

    let cors = spec
        .cors
        .as_ref()
        .and_then(|cors| compile_cors(errors, cors, origin, default_mode));

    Controls {
        default_mode,
        ownership,
        claims,
        quotas,
        cors,
        on_error: spec.on_error.unwrap_or(OnError::FailClosed),
        auth,
        login,
        session,
        rate_limit,
        body,
        response,
        incidents: compile_incidents(errors, spec, origin),
        service: places.service,
    }
}

/// Event names to severities; an unknown event name is a mistake, not a silent no-op.
fn compile_incidents(
    errors: &mut Errors,
    spec: &ControlsSpec,
    origin: &Origin<'_>,
) -> Vec<(EventKind, Severity)> {
    let mut incidents = Vec::new();
    for (name, severity) in spec.incidents.iter().flat_map(|named| named.0.iter()) {
        match EventKind::from_name(name) {
            Some(kind) => incidents.push((kind, *severity)),
            None => {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = match nearest(name, &names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("expected one of {}", quoted_list(&names)),
                };
                errors.push(
                    &origin.path(&["incidents", name]),
                    format!("unknown event `{name}`"),
                    hint,
                );
            }
        }
    }
    incidents
}

fn compile_claim_rule(errors: &mut Errors, spec: &ClaimRuleSpec, path: &str) -> Option<ClaimRule> {
    if spec.claim.is_empty() {
        errors.push(
            &join(path, "claim"),
            "is empty",
            "name the claim, e.g. `scope`",
        );
        return None;
    }
    let test = match (&spec.one_of, &spec.contains, &spec.equals) {
        (Some(values), None, None) if !values.is_empty() => ClaimTest::OneOf(values.clone()),
        (None, Some(value), None) => ClaimTest::Contains(value.clone()),
        (None, None, Some(value)) => ClaimTest::Equals(value.clone()),
        _ => {
            errors.push(
                path,
                "needs exactly one of `in` (a non-empty list), `contains` and `equals`",
                "e.g. {\"claim\": \"role\", \"in\": [\"admin\"]}",
            );
            return None;
        }
    };
    Some(ClaimRule {
        claim: spec.claim.clone(),
        test,
    })
}

fn compile_claim_rules(errors: &mut Errors, specs: &[ClaimRuleSpec], path: &str) -> Vec<ClaimRule> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| compile_claim_rule(errors, rule, &join(path, &format!("[{i}]"))))
        .collect()
}

fn compile_methods(errors: &mut Errors, methods: &[String], path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, method) in methods.iter().enumerate() {
        if is_token(method) {
            out.push(method.to_ascii_uppercase());
        } else {
            errors.push(
                &join(path, &format!("[{i}]")),
                format!("`{method}` is not a method"),
                "write names such as `GET` or `POST`",
            );
        }
    }
    out
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path.
fn compile_origin(text: &str) -> Option<OriginPattern> {
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', ' '])
    {
        return None;
    }
    match rest.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Some(OriginPattern::Subdomains {
                scheme: scheme.to_owned(),
                suffix: suffix.to_owned(),
            })
        }
        Some(_) => None,
        None if !rest.contains('*') => Some(OriginPattern::Exact(lower.clone())),
        None => None,
    }
}

fn compile_cors(
    errors: &mut Errors,
    cors: &CorsSpec,
    origin: &Origin<'_>,
    default_mode: Mode,
) -> Option<Cors> {
    let mode = resolve_mode(cors.mode, default_mode);
    let credentials = cors.allow_credentials.unwrap_or(false);
    let origins_path = origin.path(&["cors", "allow_origins"]);
    let mut any_origin = false;
    let mut origins = Vec::new();
    for (i, text) in cors.allow_origins.iter().flatten().enumerate() {
        let path = join(&origins_path, &format!("[{i}]"));
        if text == "*" {
            if credentials {
                errors.push(
                    &path,
                    "`*` with `allow_credentials` would let any site act with the user's cookies",
                    "list the origins that may send credentials",
                );
            }
            any_origin = true;
        } else if let Some(pattern) = compile_origin(text) {
            origins.push(pattern);
        } else {
            errors.push(
                &path,
                format!("`{text}` is not an origin"),
                "write `https://app.example.com`, `https://*.example.com` or `*`",
            );
        }
    }
    if !any_origin && origins.is_empty() && mode != Mode::Off {
        errors.push(
            &origins_path,
            "allows no origin",
            "list the browser origins that may call this API",
        );
    }
    let join_list = |list: &Option<Vec<String>>, path: &str, errors: &mut Errors| {
        list.as_ref().map(|items| {
            for (i, item) in items.iter().enumerate() {
                if !is_token(item) {
                    errors.push(
                        &join(path, &format!("[{i}]")),
                        format!("`{item}` is not a header or method name"),
                        "use letters, digits and `-`",
                    );
                }
            }
            items.join(", ")
        })
    };
    let methods = join_list(
        &cors.allow_methods,
        &origin.path(&["cors", "allow_methods"]),
        errors,
    );
    let headers = join_list(
        &cors.allow_headers,
        &origin.path(&["cors", "allow_headers"]),
        errors,
    );
    let expose = join_list(
        &cors.expose_headers,
        &origin.path(&["cors", "expose_headers"]),
        errors,
    );
    let max_age = cors
        .max_age
        .as_deref()
        .and_then(|text| duration(errors, Some(text), &origin.path(&["cors", "max_age"]), None))
        .map(|ms| (ms / 1_000).to_string());
    (mode != Mode::Off).then_some(Cors {
        mode,
        any_origin,
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age,
    })
}

/// An API's `lifecycle` (`api` is the API's path).
fn compile_lifecycle(
    errors: &mut Errors,
    spec: Option<&LifecycleSpec>,
    api: &str,
    default_mode: Mode,
) -> Lifecycle {
    let Some(spec) = spec else {
        return Lifecycle::Active;
    };
    let path = &join(api, "lifecycle");
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
            let deprecation = format!("@{}", deprecated_at.unwrap_or(0).div_euclid(1_000));
            let notice = [
                Some(("deprecation", deprecation)),
                sunset_ms.map(|sunset| ("sunset", http_date(sunset))),
                link.clone().map(|link| ("link", link)),
            ]
            .into_iter()
            .flatten()
            .map(|(name, value)| HeaderChange::Set(name.into(), value.into()))
            .collect();
            Lifecycle::Deprecated {
                mode,
                sunset_ms,
                notice,
                link,
            }
        }
        LifecycleStatus::Retired => Lifecycle::Retired { mode, link },
    }
}

fn compile_identity(errors: &mut Errors, spec: Option<&IdentitySpec>) -> Identity {
    let client = spec.and_then(|s| s.client_ip.as_ref());
    let forwarded_header = client
        .and_then(|c| c.header.clone())
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
    for (i, source) in spec
        .and_then(|s| s.user.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
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
        trusted_hops: client.and_then(|c| c.trusted_hops).unwrap_or(0),
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
        exempt: spec.exempt.clone().unwrap_or_default(),
    })
}

pub(crate) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let network: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((network, prefix))
}

/// Turns the errors found into the final result.
fn refused(errors: Errors) -> PolicyErrors {
    PolicyErrors {
        errors: errors.list,
    }
}

pub(crate) fn compile(text: &str) -> Result<Policy, PolicyErrors> {
    let mut errors = Errors::default();
    let root = match Json::parse(text) {
        Ok(value) => value,
        Err(error) => {
            errors.push(
                "(document)",
                format!("not valid JSON: {error}"),
                "a policy is one JSON object",
            );
            return Err(refused(errors));
        }
    };
    let Some(mut top) = ObjectReader::new(&root, "", &mut errors) else {
        return Err(refused(errors));
    };
    let revision: Option<String> = top.required("revision");
    let identity_spec: Option<IdentitySpec> = top.optional("identity");
    let notify_spec: Option<NotifySpec> = top.optional("notify");
    let state_spec: Option<StateSpec> = top.optional("state");
    let unknown_spec: Option<UnknownRoutesSpec> = top.optional("unknown_routes");
    let ambiguous_spec: Option<AmbiguousPathsSpec> = top.optional("ambiguous_paths");
    // Tiers, APIs and partners are read one by one below, so that every error keeps its
    // index and one bad entry does not hide the next.
    let tiers_raw = top.raw("tiers");
    let apis_raw = top.raw("apis");
    let partners_raw = top.raw("partners");
    let defaults_raw = top.raw("defaults");
    top.finish();

    if revision
        .as_deref()
        .is_some_and(|r| r.is_empty() || !is_header_text(r))
    {
        errors.push(
            "revision",
            "is empty or has control characters",
            "label this version of the policy, e.g. \"2026-11-29.1\"",
        );
    }
    let identity = compile_identity(&mut errors, identity_spec.as_ref());
    let notify = notify_spec.and_then(|spec| {
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
    let max_delayed = state_spec
        .as_ref()
        .and_then(|s| s.max_delayed)
        .unwrap_or(1024);
    if max_delayed == 0 {
        errors.push(
            "state.max_delayed",
            "is 0",
            "to never delay, use `block` or `alert` actions; write at least 1",
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
            .unwrap_or(Severity::Ticket),
        owner: unknown_spec
            .as_ref()
            .and_then(|u| u.owner.clone())
            .unwrap_or_else(|| "unowned".to_owned()),
        contact: unknown_spec.as_ref().and_then(|u| u.contact.clone()),
    };
    let ambiguous_mode = ambiguous_spec.map_or(Mode::Enforce, |a| a.mode);

    let mut partners = Vec::new();
    match partners_raw {
        None => {}
        Some(Json::Array(list)) => {
            // Each name's first place (a list searched per partner would grow with the
            // square of the partners).
            let mut seen: TextMap<usize> = TextMap::default();
            for (i, value) in list.iter().enumerate() {
                let path = format!("partners[{i}]");
                if let Some(spec) = PartnerSpec::read(value, &path, &mut errors)
                    && let Some(partner) = compile_partner(&mut errors, &spec, &path)
                {
                    partners.push(partner);
                }
                if let Some(name) = value.get("name").and_then(Json::as_str) {
                    match seen.get(name) {
                        Some(first) => errors.push(
                            &join(&path, "name"),
                            format!("partner `{name}` is also partners[{first}]"),
                            "give each partner one entry",
                        ),
                        None => {
                            seen.insert(name.into(), i);
                        }
                    }
                }
            }
        }
        Some(other) => errors.push(
            "partners",
            format!("expected a list, found {}", other.kind()),
            "write a JSON array of partners",
        ),
    }

    // The defaults are only read here: they are a part of every tier, not a bundle of
    // their own (a field they leave out a tier may give), so their values are judged in
    // each tier compiled over them and reported once, at `defaults`.
    let defaults = match defaults_raw {
        Some(value) => {
            ControlsSpec::read(value, "defaults", &mut errors);
            value.clone()
        }
        None => Json::Object(Vec::new()),
    };
    let mut tiers: Vec<Tier<'_>> = Vec::new();
    match tiers_raw {
        Some(Json::Object(fields)) => {
            for (name, value) in fields {
                let path = join("tiers", name);
                let before = errors.list.len();
                let mut merged = defaults.clone();
                merged.overlay(value);
                if ControlsSpec::read(value, &path, &mut errors).is_some()
                    && let Some(spec) = ControlsSpec::read(&merged, &path, &mut Errors::default())
                {
                    let origin = Origin {
                        layers: &[(&path, value), ("defaults", &defaults)],
                        home: &path,
                        api: None,
                    };
                    compile_controls(&mut errors, &spec, &origin);
                }
                tiers.push(Tier {
                    name,
                    value,
                    merged,
                    valid: errors.list.len() == before,
                    plain: OnceCell::new(),
                });
            }
        }
        Some(other) => errors.push(
            "tiers",
            format!("expected an object, found {}", other.kind()),
            "map tier names to their controls",
        ),
        None => {}
    }

    let mut apis = Vec::new();
    let mut builder = RouteIndexBuilder::new();
    // Where each compiled API is in the document, by id: a route that conflicts with
    // another names that one's place.
    let mut places: Vec<usize> = Vec::new();
    // Each name and version's first place: a map, not a list searched per API (the
    // inventory may have 10,000 of them), and of the route index's kind, whose code the
    // module holds already (a map of another kind cost 2 to 5 KB of it).
    let mut names: TextMap<usize> = TextMap::default();
    match apis_raw {
        Some(Json::Array(list)) => {
            for (i, value) in list.iter().enumerate() {
                let path = format!("apis[{i}]");
                let Some(spec) = ApiSpec::read(value, &path, &mut errors) else {
                    continue;
                };
                let around = Around {
                    tiers: &tiers,
                    defaults: &defaults,
                    user_sources: identity.user.len(),
                    partners: partners.len(),
                };
                let Some(api) = compile_api(&mut errors, &spec, value, &path, &around) else {
                    continue;
                };
                let id = apis.len();
                // The length keeps `a` `bc` apart from `ab` `c`.
                let key = format!("{}:{}{}", spec.name.len(), spec.name, spec.version);
                match names.get(key.as_str()) {
                    Some(first) => errors.push(
                        &path,
                        format!(
                            "duplicate API `{}` version `{}`; it is also apis[{first}]",
                            spec.name, spec.version
                        ),
                        "give each name and version one entry, with all its routes",
                    ),
                    None => {
                        names.insert(key.into(), i);
                    }
                }
                places.push(i);
                for (j, route) in spec.routes.iter().enumerate() {
                    let methods = route.methods.as_deref().unwrap_or_default();
                    match builder.add(route.host.as_deref(), &route.path, methods, (id, j)) {
                        Ok(()) => {}
                        Err(AddError::Pattern(e)) => {
                            errors.push(&format!("{path}.routes[{j}]"), e.message, e.hint);
                        }
                        Err(AddError::Conflict {
                            existing: (other_api, other_route),
                        }) => {
                            let other = places
                                .get(other_api)
                                .map(|k| format!("apis[{k}].routes[{other_route}]"))
                                .unwrap_or_default();
                            errors.push(
                                &format!("{path}.routes[{j}]"),
                                format!("matches the same requests as {other} (`{}`)", route.path),
                                "make their hosts, paths or methods differ",
                            );
                        }
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
        Some(other) => errors.push(
            "apis",
            format!("expected a list, found {}", other.kind()),
            "write a JSON array of APIs",
        ),
        None => {}
    }

    // Judged only on an otherwise valid inventory: an API left out by a mistake of its
    // own would make its tier's login look unused.
    if errors.list.is_empty() {
        refuse_login_that_applies_nowhere(&mut errors, &tiers, defaults_raw, apis_raw);
    }
    if !errors.list.is_empty() {
        return Err(refused(errors));
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
            if login.spraying.is_some() {
                tables.push(Table::Spray);
            }
        }
        if controls.rate_limit.is_some() {
            tables.push(Table::Rate);
        }
        if controls.session.is_some() {
            tables.push(Table::Session);
        }
        if !controls.quotas.is_empty() {
            tables.push(Table::Quota);
        }
    }
    tables.sort_by_key(|t| *t as u8);
    tables.dedup();
    // Every counter table may be keyed by the client (the user key falls back to it),
    // and so may sessions bound to it and CIDR partners.
    let needs_source_address = !tables.is_empty()
        || partners
            .iter()
            .any(|p| matches!(p.matcher, PartnerMatch::Cidr { .. }));
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
        needs_source_address,
        max_delayed: usize::try_from(max_delayed).unwrap_or(usize::MAX),
        worker: crate::worker::WorkerState::default(),
    })
}

/// A `login` block in a tier (or the defaults) applies only to the APIs that have a
/// `login` block of their own; one that no API takes up locks nobody out.
fn refuse_login_that_applies_nowhere(
    errors: &mut Errors,
    tiers: &[Tier<'_>],
    defaults: Option<&Json>,
    apis: Option<&Json>,
) {
    let apis = match apis {
        Some(Json::Array(list)) => list.as_slice(),
        _ => &[],
    };
    let takes_login = |api: &Json| api.get("login").is_some();
    let hint = "login applies only to APIs with a `login` block of their own: add one (it may be `{}` with the username's place) to the sign-in APIs, or remove this";
    for tier in tiers {
        let of_tier = |api: &&Json| api.get("tier").and_then(Json::as_str) == Some(tier.name);
        if tier.value.get("login").is_some() && !apis.iter().filter(of_tier).any(takes_login) {
            errors.push(
                &join(&join("tiers", tier.name), "login"),
                "applies to no API of this tier",
                hint,
            );
        }
    }
    if defaults.is_some_and(|d| d.get("login").is_some()) && !apis.iter().any(takes_login) {
        errors.push("defaults.login", "applies to no API", hint);
    }
}

/// Settings of an API's merged controls that could never take effect for it, reported
/// where they were written: the checks that need the whole API (its routes) or the
/// document (identity, partners) rather than one control block.
fn refuse_dead_settings(
    errors: &mut Errors,
    spec: &ApiSpec,
    merged: &ControlsSpec,
    controls: &Controls,
    origin: &Origin<'_>,
    around: &Around<'_, '_>,
) {
    let no_user = around.user_sources == 0;
    let user_hint = "add a source under `identity.user` (a header your authenticating proxy sets, a cookie or a `jwt_claim`), or count by `client_ip`";
    if let Some(rate) = &controls.rate_limit {
        let written = merged.rate_limit.as_ref().and_then(|r| r.key);
        if no_user && written == Some(RateKey::User) {
            errors.push(
                &origin.path(&["rate_limit", "key"]),
                "counts by `user`, but `identity.user` names no source: every request would be counted by its client address",
                user_hint,
            );
        }
        if around.partners == 0 && rate.key == RateKey::Partner {
            errors.push(
                &origin.path(&["rate_limit", "key"]),
                "counts by `partner`, but the policy has no `partners`: every request would be counted by its client address",
                "define the partners under `partners`, or count by `client_ip`",
            );
        }
    }
    for (i, quota) in merged.quotas.iter().flatten().enumerate() {
        let at = format!("{}[{i}]", origin.path(&["quotas"]));
        if no_user && quota.key == Some(QuotaKeySpec::Named(QuotaKeyName::User)) {
            errors.push(
                &join(&at, "key"),
                "counts by `user`, but `identity.user` names no source: every flow would be counted by its client address",
                user_hint,
            );
        }
        let methods = quota.methods.as_deref().unwrap_or_default();
        let served = |method: &String| {
            spec.routes.iter().any(|r| {
                r.methods
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|m| m.eq_ignore_ascii_case(method)))
            })
        };
        if !methods.is_empty() && !methods.iter().any(served) {
            errors.push(
                &join(&at, "methods"),
                "names no method a route of this API accepts: the quota would never count",
                "list methods of the API's routes, e.g. [\"POST\"]",
            );
        }
    }
    if let Some(ownership) = &controls.ownership
        && no_user
        && ownership
            .bindings
            .iter()
            .any(|b| matches!(b.target, crate::policy::BindingTarget::User))
    {
        errors.push(
            &origin.path(&["ownership", "bind"]),
            "binds a parameter `to: user`, but `identity.user` names no source: every request would be refused",
            "add a source under `identity.user`, or bind `to: claim`",
        );
    }
    if let Some(login) = &controls.login
        && !login.by_username
        && login.spraying.is_none()
    {
        for field in ["username", "body_limit"] {
            if origin.wrote(&["login", field]) {
                errors.push(
                    &origin.path(&["login", field]),
                    "has no effect: this login counts no username",
                    "add \"username\" to `login.keys` (or set up `login.spraying`), or remove it",
                );
            }
        }
    }
}

/// A tier as written, with the defaults under it, and whether it compiled without
/// mistakes.
struct Tier<'v> {
    name: &'v str,
    value: &'v Json<'v>,
    merged: Json<'v>,
    valid: bool,
    /// The controls of its APIs that override none of them, compiled for the first such
    /// API and shared by the others: none of them can change a thing about the bundle or
    /// where its mistakes are reported (under the tier or the defaults, the same for each
    /// of them, so that the repeats would be dropped as duplicates anyway), and an
    /// inventory of thousands of APIs is mostly such APIs.
    plain: OnceCell<Option<Bundle>>,
}

/// An API's controls, as read from its tier and the defaults with its own fields laid
/// over them, and as compiled.
struct Bundle {
    spec: ControlsSpec,
    controls: Arc<Controls>,
}

impl Bundle {
    fn compile(
        errors: &mut Errors,
        tier: &Tier<'_>,
        overrides: Vec<(Cow<'_, str>, Json<'_>)>,
        path: &str,
        origin: &Origin<'_>,
    ) -> Option<Bundle> {
        let mut merged = tier.merged.clone();
        merged.overlay(&Json::Object(overrides));
        // The merged value holds nothing that was not already read (and reported) where
        // it was written.
        let spec = ControlsSpec::read(&merged, path, &mut Errors::default())?;
        let controls = Arc::new(compile_controls(errors, &spec, origin));
        Some(Bundle { spec, controls })
    }
}

/// What an API is compiled against: the tiers, the defaults under them, and the parts of
/// the document that decide whether a control can do anything.
struct Around<'a, 'v> {
    tiers: &'a [Tier<'v>],
    defaults: &'a Json<'v>,
    /// `identity.user` sources: without one, no request has a user.
    user_sources: usize,
    /// `partners`: without one, no request is a partner's.
    partners: usize,
}

fn compile_api(
    errors: &mut Errors,
    spec: &ApiSpec,
    value: &Json,
    path: &str,
    around: &Around<'_, '_>,
) -> Option<Api> {
    let (tiers, defaults) = (around.tiers, around.defaults);
    for (field, text) in [
        ("name", &spec.name),
        ("version", &spec.version),
        ("owner", &spec.owner),
    ] {
        if text.is_empty() || !is_header_text(text) {
            errors.push(
                &join(path, field),
                "is empty or has control characters",
                "write printable text",
            );
        }
    }
    let Some(tier) = tiers.iter().find(|t| t.name == spec.tier) else {
        let names: Vec<&str> = tiers.iter().map(|t| t.name).collect();
        let hint = if names.is_empty() {
            "define it under `tiers`, e.g. {\"tiers\": {\"critical\": {...}}}".to_owned()
        } else {
            format!("expected one of {}", quoted_list(&names))
        };
        errors.push(
            &join(path, "tier"),
            format!("unknown tier `{}`", spec.tier),
            hint,
        );
        return None;
    };
    let overrides: Vec<(Cow<'_, str>, Json<'_>)> = match value {
        Json::Object(fields) => fields
            .iter()
            .filter(|(key, _)| ControlsSpec::FIELDS.contains(&key.as_ref()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    // A broken tier was reported at the tier, and its APIs would only repeat its errors.
    let mut discarded = Errors::default();
    let control_errors = if tier.valid {
        &mut *errors
    } else {
        &mut discarded
    };
    let tier_path = join("tiers", &spec.tier);
    let origin = Origin {
        layers: &[
            (path, value),
            (&tier_path, tier.value),
            ("defaults", defaults),
        ],
        home: &tier_path,
        api: Some(value),
    };
    let own;
    let bundle = if overrides.is_empty() {
        tier.plain
            .get_or_init(|| Bundle::compile(control_errors, tier, overrides, path, &origin))
            .as_ref()
    } else {
        own = Bundle::compile(control_errors, tier, overrides, path, &origin);
        own.as_ref()
    }?;
    let (controls_spec, controls) = (&bundle.spec, &bundle.controls);
    refuse_dead_settings(
        control_errors,
        spec,
        controls_spec,
        controls,
        &origin,
        around,
    );
    let lifecycle = compile_lifecycle(errors, spec.lifecycle.as_ref(), path, controls.default_mode);
    let route_claims = spec
        .routes
        .iter()
        .enumerate()
        .map(|(j, route)| match route.require.as_deref() {
            // Most routes require nothing of their own: no path to write for them.
            None => Vec::new(),
            Some(rules) => {
                compile_claim_rules(errors, rules, &format!("{path}.routes[{j}].require"))
            }
        })
        .collect();
    if let Some(ownership) = &controls.ownership {
        for (i, binding) in ownership.bindings.iter().enumerate() {
            let placeholder = format!("{{{}}}", binding.param);
            let used = spec
                .routes
                .iter()
                .any(|r| r.path.split('/').any(|segment| segment == placeholder));
            if !used {
                errors.push(
                    &format!("{}[{i}].param", origin.path(&["ownership", "bind"])),
                    format!("no route of this API has the parameter `{}`", binding.param),
                    format!(
                        "bind a parameter its routes use, e.g. in a route `/users/{placeholder}`"
                    ),
                );
            }
        }
    }
    Some(Api {
        route_claims,
        info: ApiInfo {
            name: spec.name.clone(),
            version: spec.version.clone(),
            owner: spec.owner.clone(),
            contact: spec.contact.clone(),
            tier: spec.tier.clone(),
        },
        lifecycle,
        controls: Arc::clone(controls),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly"
    )]

    use serde_json::{Value, json};

    use super::*;

    fn api(name: &str, tier: &str, path: &str) -> Value {
        json!({ "name": name, "version": "v1", "owner": "team", "tier": tier,
                "routes": [ { "path": path } ] })
    }

    fn document(apis: Vec<Value>) -> String {
        json!({
            "revision": "1",
            "tiers": {
                "a": { "rate_limit": { "requests": 60, "per": "1m" } },
                "b": { "rate_limit": { "requests": 60, "per": "1m" } }
            },
            "apis": apis
        })
        .to_string()
    }

    #[test]
    fn apis_that_override_nothing_share_their_tiers_controls() {
        let mut own = api("own", "a", "/own");
        own["rate_limit"] = json!({ "requests": 5 });
        let policy = compile(&document(vec![
            api("first", "a", "/first"),
            api("second", "a", "/second"),
            own,
            api("other", "b", "/other"),
        ]))
        .unwrap();
        let controls = |i: usize| &policy.apis[i].controls;
        assert!(Arc::ptr_eq(controls(0), controls(1)));
        assert!(!Arc::ptr_eq(controls(0), controls(2)));
        assert!(!Arc::ptr_eq(controls(0), controls(3)));
        let requests = |i: usize| controls(i).rate_limit.as_ref().map(|r| r.requests);
        assert_eq!(
            [requests(0), requests(1), requests(2), requests(3)],
            [Some(60), Some(60), Some(5), Some(60)]
        );
    }

    #[test]
    fn a_conflict_names_the_other_route_where_it_is_written() {
        // apis[1] is left out of the index (unknown tier), so ids and places differ.
        let Err(refused) = compile(&document(vec![
            api("x", "a", "/x"),
            api("lost", "nowhere", "/lost"),
            api("x2", "a", "/x"),
            api("y", "b", "/y"),
            api("y2", "b", "/y"),
        ])) else {
            panic!("the conflicts were accepted");
        };
        let paths: Vec<String> = refused.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                "apis[1].tier: unknown tier `nowhere`; expected one of `a`, `b`",
                "apis[2].routes[0]: matches the same requests as apis[0].routes[0] (`/x`); make their hosts, paths or methods differ",
                "apis[4].routes[0]: matches the same requests as apis[3].routes[0] (`/y`); make their hosts, paths or methods differ",
            ]
        );
    }
}
