//! The effective controls of every API in business words, for people checking a policy
//! (`stakeguard check --explain`): what each API gets after its tier, the `defaults`
//! under the tiers and its own overrides were merged, and which of those blocks wrote
//! each control. The facts come from [`crate::posture`] (which tools read as data); this
//! file holds their wording and the text rendering.
//!
//! Native tooling only: the filter never calls it, so none of it ships in the module.

use std::fmt::Write;

use crate::decision::{Action, Mode};
use crate::error::PolicyErrors;
use crate::json::Json;
use crate::model::{OnError, RateKey, UnknownAction};
use crate::policy::{
    Api, BindingTarget, ClaimRule, ClaimTest, CounterService, Credential, Lifecycle, Login,
    LoginLimits, QuotaKey, Unknown,
};
use crate::posture::{ControlFact, TrapPosture, posture};

/// Compiles `text` and describes every API's effective controls, one block per API.
pub fn explain(text: &str) -> Result<String, PolicyErrors> {
    let posture = posture(text)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy {}: {} APIs; tiers {}{}",
        posture.revision,
        posture.apis.len(),
        posture.tiers.join(", "),
        if posture.over_defaults {
            ", each over `defaults`"
        } else {
            ""
        }
    );
    let shadow = &posture.shadow;
    let _ = writeln!(
        out,
        "requests to no API (shadow APIs): {} ({}), reported to {}",
        shadow.handling,
        shadow.mode.as_str(),
        shadow.owner
    );
    let _ = writeln!(out, "{}", trap_text(&posture.on_trap));
    for api in &posture.apis {
        let info = &api.info;
        let contact = info
            .contact
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n{} {}: owner {}{contact}, tier {}, {}",
            info.name, info.version, info.owner, info.tier, api.lifecycle.text
        );
        if !api.routes.is_empty() {
            let _ = writeln!(out, "  routes: {}", api.routes.join("; "));
        }
        for fact in &api.controls {
            let mode = fact
                .mode
                .map(|m| format!(" ({})", m.as_str()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{mode} [{}]: {}",
                fact.title, fact.written_by, fact.text
            );
        }
    }
    Ok(out)
}

/// What requests meet if the module traps, and the filter setting that decides it.
fn trap_text(on_trap: &TrapPosture) -> String {
    let setting = format!(
        "if the module traps (set Envoy's `failure_policy: {}`, Istio's `failStrategy: {}`)",
        on_trap.envoy(),
        on_trap.istio()
    );
    match on_trap.on_error {
        OnError::FailOpen => format!(
            "{setting}: requests go through unchecked until the VM is replaced, as every \
             API's on_error is fail_open"
        ),
        OnError::FailClosed if on_trap.fail_open.is_empty() => {
            format!("{setting}: requests are refused with 503 until the VM is replaced")
        }
        OnError::FailClosed => format!(
            "{setting}: requests are refused with 503 until the VM is replaced, because {} \
             fail closed; {} fail open on a store failure but get 503 on a trap too (one \
             failure policy per filter)",
            on_trap.fail_closed.join(", "),
            on_trap.fail_open.join(", ")
        ),
    }
}

/// What happens to requests no API claims, in business words.
pub(crate) fn shadow_handling(unknown: &Unknown) -> &'static str {
    match unknown.action {
        UnknownAction::Allow => "let through silently",
        UnknownAction::Log => "let through and logged",
        UnknownAction::Alert => "let through as incidents",
        UnknownAction::Block => "refused with 404",
    }
}

/// Which blocks wrote a control: the API, its tier, the defaults.
fn written_by(field: &str, raw: &Json, tier: &str, doc: &Json) -> String {
    let mut by = Vec::new();
    if doc.get("defaults").and_then(|d| d.get(field)).is_some() {
        by.push("defaults".to_owned());
    }
    if doc
        .get("tiers")
        .and_then(|t| t.get(tier))
        .and_then(|t| t.get(field))
        .is_some()
    {
        by.push(format!("tier {tier}"));
    }
    if raw.get(field).is_some() {
        by.push("this API".to_owned());
    }
    by.join(" + ")
}

/// An API's place in its life, in business words.
pub(crate) fn lifecycle_text(api: &Api) -> String {
    match &api.lifecycle {
        Lifecycle::Active => "active".to_owned(),
        Lifecycle::Deprecated { mode, link, .. } => format!(
            "deprecated ({}): answers carry Deprecation and Sunset headers{}",
            mode.as_str(),
            successor(link.as_deref())
                .map(|successor| format!(" pointing to {successor}"))
                .unwrap_or_default()
        ),
        Lifecycle::Retired { mode, .. } => format!("retired ({}): 410 Gone", mode.as_str()),
    }
}

/// The successor an API's `Link` header names.
pub(crate) fn successor(link: Option<&str>) -> Option<&str> {
    link?.strip_prefix('<')?.split('>').next()
}

/// Every control an API gets, in the order `check --explain` prints them; `raw` is the
/// API as written and `doc` the whole document, to tell which blocks wrote each.
pub(crate) fn control_facts(api: &Api, raw: &Json, doc: &Json) -> Vec<ControlFact> {
    let info = &api.info;
    let mut facts = Vec::new();
    let c = &api.controls;
    let mut line = |field: &'static str, mode: Option<Mode>, text: String| {
        facts.push(ControlFact {
            field,
            title: title(field),
            mode,
            written_by: written_by(field, raw, &info.tier, doc),
            text,
        });
    };
    if let Some(auth) = &c.auth {
        let mut parts = Vec::new();
        if !auth.required.is_empty() {
            parts.push(format!(
                "every request carries {}",
                and_list(&auth.required)
            ));
        }
        if !auth.any_of.is_empty() {
            parts.push(format!("carries {}", or_list(&auth.any_of)));
        }
        line(
            "auth",
            Some(auth.mode),
            format!("{}; otherwise 401", parts.join(" and ")),
        );
    }
    if let Some(login) = &c.login {
        line(
            "login",
            Some(login.mode),
            login_text(login, c.service.as_ref()),
        );
    }
    if let Some(session) = &c.session {
        let mut ends = Vec::new();
        if let Some(idle) = session.idle_ms {
            ends.push(format!("after {} unused", duration(idle)));
        }
        if let Some(total) = session.absolute_ms {
            ends.push(format!("{} after it started", duration(total)));
        }
        let bound = if session.bind_client_ip {
            "; used from another client address it is refused as hijacked"
        } else {
            ""
        };
        line(
            "session",
            Some(session.mode),
            format!(
                "the session in cookie `{}` ends {} (401){bound}",
                session.cookie,
                ends.join(" or ")
            ),
        );
    }
    if let Some(rate) = &c.rate_limit {
        let key = match rate.key {
            RateKey::User => "user (client address without one)",
            RateKey::ClientIp => "client address",
            RateKey::Partner => "partner (client address for others)",
            RateKey::Api => "the whole API",
        };
        let counting = if rate.by_service {
            counted_in(c.service.as_ref())
        } else if rate.exact {
            "counted exactly in the shared store".to_owned()
        } else {
            "reserved a few at a time per worker, never more than the limit".to_owned()
        };
        line(
            "rate_limit",
            Some(rate.mode),
            format!(
                "{} requests per {key} per {}, then {}; {counting}",
                rate.requests,
                duration(rate.per_ms),
                action_text(rate.action, "429 with Retry-After")
            ),
        );
    }
    if let Some(body) = &c.body {
        let mut parts = Vec::new();
        if let Some(max) = body.max_bytes {
            parts.push(format!("at most {max} bytes (413)"));
        }
        if !body.content_types.is_empty() {
            parts.push(format!("only {} (415)", body.content_types.join(", ")));
        }
        line(
            "body",
            Some(body.mode),
            format!("request bodies {}", parts.join(", ")),
        );
    }
    if let Some(response) = &c.response {
        let mut parts = Vec::new();
        let mut cookie = Vec::new();
        if response.secure {
            cookie.push("Secure".to_owned());
        }
        if response.http_only {
            cookie.push("HttpOnly".to_owned());
        }
        if let Some(same_site) = response.same_site {
            cookie.push(format!("SameSite={}", same_site.as_str()));
        }
        if !cookie.is_empty() {
            parts.push(format!("cookies get {}", cookie.join(", ")));
        }
        if !response.headers.is_empty() {
            let names: Vec<&str> = response.headers.iter().map(|(n, _)| &**n).collect();
            parts.push(format!("sets {} when missing", names.join(", ")));
        }
        if !response.strip.is_empty() {
            let names: Vec<&str> = response.strip.iter().map(|n| &**n).collect();
            parts.push(format!("removes {}", names.join(", ")));
        }
        line("response", Some(response.mode), parts.join("; "));
    }
    if let Some(ownership) = &c.ownership {
        let binds: Vec<String> = ownership
            .bindings
            .iter()
            .map(|b| match &b.target {
                BindingTarget::User => format!("`{}` must be the caller", b.param),
                BindingTarget::Claim(claim) => {
                    format!("`{}` must be one of the token's `{claim}`", b.param)
                }
            })
            .collect();
        let bypass = ownership
            .bypass
            .as_ref()
            .map(|r| format!("; callers whose {} are not bound", rule_text(r)))
            .unwrap_or_default();
        line(
            "ownership",
            Some(ownership.mode),
            format!("{} (403){bypass}", binds.join(", ")),
        );
    }
    if let Some(claims) = &c.claims {
        let rules: Vec<String> = claims.require.iter().map(rule_text).collect();
        line(
            "claims",
            Some(claims.mode),
            format!("the token's {} (401 without one, 403)", rules.join(" and ")),
        );
    }
    for quota in &c.quotas {
        let key = match &quota.key {
            QuotaKey::User => "user".to_owned(),
            QuotaKey::ClientIp => "client address".to_owned(),
            QuotaKey::BodyPointer(pointer) => format!("body field {pointer}"),
        };
        let counted = if quota.success_only {
            "counting requests answered with 2xx"
        } else {
            "counting every request the upstream answered"
        };
        let place = if quota.by_service {
            format!("; {}", counted_in(c.service.as_ref()))
        } else {
            String::new()
        };
        line(
            "quotas",
            Some(quota.mode),
            format!(
                "{} per {key} per {}, {counted}, then {}{place}",
                quota.limit,
                duration(quota.per_ms),
                action_text(quota.action, "429 with Retry-After")
            ),
        );
    }
    if let Some(cors) = &c.cors {
        let origins = if cors.any_origin {
            "any origin".to_owned()
        } else {
            format!("{} origin pattern(s)", cors.origins.len())
        };
        line(
            "cors",
            Some(cors.mode),
            format!(
                "browsers may call from {origins}{}; others are refused (403)",
                if cors.credentials {
                    ", with credentials"
                } else {
                    ""
                }
            ),
        );
    }
    if !c.incidents.is_empty() {
        let list: Vec<String> = c
            .incidents
            .iter()
            .map(|(kind, severity)| format!("{} → {}", kind.as_str(), severity.as_str()))
            .collect();
        line("incidents", None, list.join(", "));
    }
    let on_error = match c.on_error {
        OnError::FailClosed => "refuse with 503 (fail closed)",
        OnError::FailOpen => "let requests through and report it (fail open)",
    };
    line(
        "on_error",
        None,
        format!("when the counter store fails: {on_error}"),
    );
    facts
}

/// A control's heading.
fn title(field: &'static str) -> &'static str {
    match field {
        "auth" => "credentials",
        "login" => "failed-login lockout",
        "rate_limit" => "rate limit",
        "body" => "request body",
        "response" => "response hardening",
        "ownership" => "object ownership",
        "claims" => "required claims",
        "quotas" => "business-flow quota",
        "on_error" => "store failure",
        other => other,
    }
}

fn login_text(login: &Login, service: Option<&CounterService>) -> String {
    let statuses: Vec<String> = login.failure_statuses.iter().map(u16::to_string).collect();
    let mut parts = Vec::new();
    for (counted, key, limits) in [
        (login.by_username, "a username", &login.username_limits),
        (login.by_client_ip, "a client address", &login.client_limits),
    ] {
        if counted {
            let mut text = limits_text(key, limits);
            if limits.by_service {
                text.push_str(&format!(" ({})", counted_in(service)));
            }
            parts.push(text);
        }
    }
    if let Some(spraying) = &login.spraying {
        let lock = match spraying.limits.action {
            Action::Alert => String::new(),
            _ => format!(" for {}", duration(spraying.limits.lockout_ms)),
        };
        parts.push(format!(
            "{} distinct usernames failing from one client address within {} are password spraying: {}{lock}",
            spraying.max_usernames,
            duration(spraying.limits.window_ms),
            action_text(spraying.limits.action, "429")
        ));
    }
    let clears = match (
        login.by_username && login.username_limits.reset_on_success,
        login.by_client_ip && login.client_limits.reset_on_success,
    ) {
        (true, true) => "; a success clears the username's and the address's count",
        (true, false) => "; a success clears the username's count",
        (false, true) => "; a success clears the address's count",
        (false, false) => "",
    };
    format!(
        "{} (failures are answers {}){clears}",
        parts.join("; "),
        statuses.join(", ")
    )
}

/// Where a service-counted control counts, in words.
fn counted_in(service: Option<&CounterService>) -> String {
    let Some(service) = service else {
        return "counted in this proxy".to_owned();
    };
    let failing = if service.fail_open {
        "let through with an incident"
    } else {
        "503"
    };
    let limits = if service.limits_in_request {
        "limits sent in each request"
    } else {
        "limits from the service's configuration (`stakeguard ratelimit-config`)"
    };
    format!(
        "counted fleet-wide in the rate limit service of cluster `{}` (domain `{}`, {limits}; one call per request, held up to {}, then {failing})",
        service.cluster,
        service.domain,
        duration(service.timeout_ms)
    )
}

fn limits_text(key: &str, limits: &LoginLimits) -> String {
    format!(
        "{key} with {} failures within {} is locked out for {}: {}",
        limits.max_failures,
        duration(limits.window_ms),
        duration(limits.lockout_ms),
        action_text(limits.action, "429 with Retry-After")
    )
}

fn action_text(action: Action, block: &str) -> String {
    match action {
        Action::Block => format!("block ({block})"),
        Action::Delay => "delay (growing with each failure)".to_owned(),
        Action::Alert => "alert (let through, incident)".to_owned(),
        Action::Log => "log".to_owned(),
    }
}

fn rule_text(rule: &ClaimRule) -> String {
    match &rule.test {
        ClaimTest::OneOf(values) => format!("`{}` is one of {}", rule.claim, values.join(", ")),
        ClaimTest::Contains(value) => format!("`{}` contains {value}", rule.claim),
        ClaimTest::Equals(value) => format!("`{}` is {value}", rule.claim),
    }
}

fn credential(c: &Credential) -> String {
    match c {
        Credential::Header(name) => format!("header `{name}`"),
        Credential::Cookie(name) => format!("cookie `{name}`"),
    }
}

fn and_list(list: &[Credential]) -> String {
    list.iter()
        .map(credential)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn or_list(list: &[Credential]) -> String {
    list.iter().map(credential).collect::<Vec<_>>().join(" or ")
}

pub(crate) fn route_text(route: &Json) -> String {
    let methods = match route.get("methods") {
        Some(Json::Array(list)) => {
            let names: Vec<&str> = list.iter().filter_map(Json::as_str).collect();
            format!("{} ", names.join(","))
        }
        _ => String::new(),
    };
    let host = route.get("host").and_then(Json::as_str).unwrap_or_default();
    let path = route.get("path").and_then(Json::as_str).unwrap_or_default();
    format!("{methods}{host}{path}")
}

/// `90_000` → `1m30s`: the units a policy is written in.
fn duration(ms: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in UNITS {
        let count = rest / size;
        if count > 0 {
            let _ = write!(out, "{count}{unit}");
            rest %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_a_policy_writes_them() {
        assert_eq!(duration(90_000), "1m30s");
        assert_eq!(duration(86_400_000), "1d");
        assert_eq!(duration(1_500), "1s500ms");
    }
}
