//! A policy's posture as data: every API with its labels, lifecycle, routes and the
//! effective controls in business words, for tools that lay them out themselves
//! (`stakeguard report`'s page and JSON). `check --explain` prints the same facts as text
//! ([`crate::explain`]), so the two never tell different stories.
//!
//! Native tooling only: the filter never calls it, so none of it ships in the module.

use crate::decision::{Mode, Severity};
use crate::error::PolicyErrors;
use crate::explain;
use crate::json::Json;
use crate::model::{LifecycleStatus, OnError};
use crate::policy::{ApiInfo, Lifecycle, Notify, Policy};

/// What a policy promises, API by API.
#[derive(Debug, Clone)]
pub struct Posture {
    /// The document's `revision`.
    pub revision: String,
    /// The tiers' names, in the document's order.
    pub tiers: Vec<String>,
    /// Whether the tiers sit over a `defaults` block.
    pub over_defaults: bool,
    /// What happens to requests no API claims.
    pub shadow: ShadowPosture,
    /// Where incidents are sent, if anywhere.
    pub notify: Option<Notify>,
    /// What requests meet once a trap has failed the module.
    pub on_trap: TrapPosture,
    /// Every API, in the document's order.
    pub apis: Vec<ApiPosture>,
}

/// What requests meet once a trap has failed the module's VM: Envoy's `failure_policy`
/// (Istio's `failStrategy`), one setting for the whole filter and every route it sees.
/// A trap cannot be caught inside the VM, and a failed VM is not asked about later
/// requests, so no API's `on_error` can apply to its own requests alone: the filter
/// fails closed when any API's `on_error` is `fail_closed` (the default), and open only
/// when every API's is `fail_open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapPosture {
    /// The failure policy the filter needs.
    pub on_error: OnError,
    /// The APIs (`name version`) whose `on_error` is `fail_closed`.
    pub fail_closed: Vec<String>,
    /// The APIs whose `on_error` is `fail_open`.
    pub fail_open: Vec<String>,
}

impl TrapPosture {
    /// The value of Envoy's `PluginConfig.failure_policy`.
    pub fn envoy(&self) -> &'static str {
        match self.on_error {
            OnError::FailClosed => "FAIL_CLOSED",
            OnError::FailOpen => "FAIL_OPEN",
        }
    }

    /// The value of Istio's `failStrategy` (`WasmPlugin`, `TrafficExtension`).
    pub fn istio(&self) -> &'static str {
        match self.on_error {
            OnError::FailClosed => "FAIL_CLOSE",
            OnError::FailOpen => "FAIL_OPEN",
        }
    }

    fn of(policy: &Policy) -> TrapPosture {
        let name = |api: &crate::policy::Api| format!("{} {}", api.info.name, api.info.version);
        let (closed, open): (Vec<_>, Vec<_>) = policy
            .apis
            .iter()
            .partition(|api| api.controls.on_error == OnError::FailClosed);
        TrapPosture {
            on_error: if closed.is_empty() && !open.is_empty() {
                OnError::FailOpen
            } else {
                OnError::FailClosed
            },
            fail_closed: closed.into_iter().map(name).collect(),
            fail_open: open.into_iter().map(name).collect(),
        }
    }
}

/// The handling of shadow APIs (`unknown_routes`).
#[derive(Debug, Clone)]
pub struct ShadowPosture {
    /// What happens to such requests, in business words.
    pub handling: &'static str,
    /// The control's mode.
    pub mode: Mode,
    /// How urgent the incident is when one is raised.
    pub severity: Severity,
    /// Who is told.
    pub owner: String,
    /// How to reach them.
    pub contact: Option<String>,
}

/// One API's posture.
#[derive(Debug, Clone)]
pub struct ApiPosture {
    /// Name, version, owner, contact, tier.
    pub info: ApiInfo,
    /// Where it is in its life.
    pub lifecycle: LifecyclePosture,
    /// Its routes as written (`METHODS host/path`).
    pub routes: Vec<String>,
    /// Its effective controls, in the order `check --explain` prints them.
    pub controls: Vec<ControlFact>,
}

/// An API's lifecycle as written (not as of a date: see [`Policy::lifecycle_at`]).
#[derive(Debug, Clone)]
pub struct LifecyclePosture {
    /// Active, deprecated or retired.
    pub status: LifecycleStatus,
    /// The lifecycle control's mode (none for an active API).
    pub mode: Option<Mode>,
    /// When a deprecated API stops answering, in milliseconds since the epoch.
    pub sunset_ms: Option<i64>,
    /// Where clients should go instead.
    pub successor: Option<String>,
    /// The whole of it in business words.
    pub text: String,
}

/// One effective control of an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFact {
    /// The policy block that sets it (`login`, `rate_limit`, `incidents`, ...).
    pub field: &'static str,
    /// Its heading in business words (`failed-login lockout`).
    pub title: &'static str,
    /// Its mode; none for blocks that are settings rather than controls (`incidents`,
    /// `on_error`).
    pub mode: Option<Mode>,
    /// Which blocks wrote it: `defaults`, `tier <t>`, `this API`, joined with ` + `.
    pub written_by: String,
    /// What it does, in business words.
    pub text: String,
}

/// Compiles `text` and lays out its posture.
pub fn posture(text: &str) -> Result<Posture, PolicyErrors> {
    let policy = Policy::from_json(text)?;
    // The document compiled, so it is JSON; the raw value tells who wrote each block.
    let doc = Json::parse(text).unwrap_or(Json::Null);
    let tiers = match doc.get("tiers") {
        Some(Json::Object(fields)) => fields.iter().map(|(name, _)| name.to_string()).collect(),
        _ => Vec::new(),
    };
    let raw_apis = match doc.get("apis") {
        Some(Json::Array(list)) => list.as_slice(),
        _ => &[],
    };
    let apis = policy
        .apis
        .iter()
        .zip(raw_apis)
        .map(|(api, raw)| {
            let (status, mode, sunset_ms, link) = match &api.lifecycle {
                Lifecycle::Active => (LifecycleStatus::Active, None, None, None),
                Lifecycle::Deprecated {
                    mode,
                    sunset_ms,
                    link,
                    ..
                } => (
                    LifecycleStatus::Deprecated,
                    Some(*mode),
                    *sunset_ms,
                    link.as_deref(),
                ),
                Lifecycle::Retired { mode, link } => {
                    (LifecycleStatus::Retired, Some(*mode), None, link.as_deref())
                }
            };
            let routes = match raw.get("routes") {
                Some(Json::Array(routes)) => routes.iter().map(explain::route_text).collect(),
                _ => Vec::new(),
            };
            ApiPosture {
                info: api.info.clone(),
                lifecycle: LifecyclePosture {
                    status,
                    mode,
                    sunset_ms,
                    successor: explain::successor(link).map(str::to_owned),
                    text: explain::lifecycle_text(api),
                },
                routes,
                controls: explain::control_facts(api, raw, &doc),
            }
        })
        .collect();
    let unknown = &policy.unknown;
    Ok(Posture {
        revision: policy.revision.clone(),
        tiers,
        over_defaults: doc.get("defaults").is_some(),
        shadow: ShadowPosture {
            handling: explain::shadow_handling(unknown),
            mode: unknown.mode,
            severity: unknown.severity,
            owner: unknown.owner.clone(),
            contact: unknown.contact.clone(),
        },
        notify: policy.notify.clone(),
        on_trap: TrapPosture::of(&policy),
        apis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
        "revision": "r1",
        "tiers": { "critical": { "rate_limit": { "requests": 5, "per": "1m", "key": "client_ip" } },
                   "low": { "mode": "monitor" } },
        "apis": [
            { "name": "accounts", "version": "v1", "owner": "team-accounts", "tier": "critical",
              "lifecycle": { "status": "deprecated", "deprecated_at": "2026-01-01T00:00:00Z",
                             "sunset": "2027-03-31T00:00:00Z", "successor": "/api/v2/accounts" },
              "routes": [ { "path": "/api/v1/accounts/{id}", "methods": ["GET"] } ] },
            { "name": "bills", "version": "v1", "owner": "team-billing", "tier": "low",
              "rate_limit": { "requests": 50, "per": "1m", "key": "client_ip" },
              "routes": [ { "path": "/api/v1/bills/**" } ] }
        ]
    }"#;

    #[test]
    fn a_deprecated_api_carries_its_sunset_and_successor() {
        let posture = posture(POLICY).unwrap();
        let life = &posture.apis[0].lifecycle;
        assert_eq!(life.status, LifecycleStatus::Deprecated);
        assert_eq!(life.sunset_ms, Some(1_806_451_200_000));
        assert_eq!(life.successor.as_deref(), Some("/api/v2/accounts"));
        assert_eq!(posture.apis[0].routes, vec!["GET /api/v1/accounts/{id}"]);
    }

    #[test]
    fn controls_carry_their_mode_and_who_wrote_them() {
        let posture = posture(POLICY).unwrap();
        let rate = |i: usize| {
            posture.apis[i]
                .controls
                .iter()
                .find(|c| c.field == "rate_limit")
                .cloned()
                .unwrap()
        };
        assert_eq!(rate(0).mode, Some(Mode::Enforce));
        assert_eq!(rate(0).written_by, "tier critical");
        assert_eq!(rate(1).mode, Some(Mode::Monitor));
        assert_eq!(rate(1).written_by, "this API");
        assert!(rate(1).text.starts_with("50 requests per client address"));
    }

    #[test]
    fn the_filter_fails_closed_on_a_trap_when_any_api_fails_closed() {
        let on_trap = posture(POLICY).unwrap().on_trap;
        assert_eq!(on_trap.on_error, OnError::FailClosed);
        assert_eq!(
            (on_trap.envoy(), on_trap.istio()),
            ("FAIL_CLOSED", "FAIL_CLOSE")
        );
        assert_eq!(on_trap.fail_closed, ["accounts v1", "bills v1"]);
        let open = POLICY.replace(
            r#""low": { "mode""#,
            r#""low": { "on_error": "fail_open", "mode""#,
        );
        let on_trap = posture(&open).unwrap().on_trap;
        assert_eq!(on_trap.on_error, OnError::FailClosed);
        assert_eq!(
            (on_trap.fail_closed, on_trap.fail_open),
            (vec!["accounts v1".to_owned()], vec!["bills v1".to_owned()])
        );
        let all_open = open.replace(
            r#""critical": { "rate_limit""#,
            r#""critical": { "on_error": "fail_open", "rate_limit""#,
        );
        let on_trap = posture(&all_open).unwrap().on_trap;
        assert_eq!(on_trap.on_error, OnError::FailOpen);
        assert_eq!(
            (on_trap.envoy(), on_trap.istio()),
            ("FAIL_OPEN", "FAIL_OPEN")
        );
    }

    #[test]
    fn explain_prints_the_same_facts() {
        let posture = posture(POLICY).unwrap();
        let text = explain::explain(POLICY).unwrap();
        for api in &posture.apis {
            for fact in &api.controls {
                assert!(
                    text.contains(&fact.text),
                    "{} missing from explain",
                    fact.text
                );
            }
        }
    }
}
