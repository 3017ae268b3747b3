//! The posture report (`stakeguard report`): the policy's inventory in business terms
//! (every API with its owner, tier, lifecycle and effective controls) and, when traffic
//! was replayed or Envoy's stats were read, what each control did to it. One data model,
//! [`PostureReport`], with two renderings: JSON for tools (serde) and one self-contained
//! HTML page for the people who own the APIs ([`html`]).
//!
//! The facts about the policy come from [`stakeguard_policies::posture`], the same ones
//! `check --explain` prints; the facts about traffic come from what the module itself
//! counted (its decision and incident counters, [`counters`]), so a replay and a running
//! Envoy give the same page. A replay adds what only per-request entries tell
//! ([`evidence`]): decisions over time, the shadow endpoints, who calls deprecated
//! versions.

pub mod counters;
pub mod evidence;
pub mod html;
mod svg;

use std::collections::BTreeMap;

use serde::Serialize;
use stakeguard_policies::posture::{ApiPosture, Posture, posture};
use stakeguard_policies::{Policy, PolicyErrors};

use crate::report::Report;
use crate::traffic::Record;
use crate::traffic::time::format_rfc3339;
use counters::{CounterKind, Counters};

/// The outcomes a decision counter can name, weightiest first (the order of the
/// engine's `Outcome::weight`, reversed): charts stack them in this order.
pub const OUTCOMES: [&str; 8] = [
    "blocked",
    "delayed",
    "would_block",
    "failed_open",
    "alerted",
    "annotated",
    "logged",
    "allowed",
];

/// Where the traffic figures came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The policy alone: no traffic figures.
    Policy,
    /// Recorded traffic replayed through the module.
    Replay {
        /// The traffic files, as given.
        files: Vec<String>,
        /// The first and last recorded request times.
        from: String,
        /// See `from`.
        to: String,
    },
    /// Envoy's Prometheus stats.
    Prometheus {
        /// The file or URL read.
        from: String,
    },
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct PostureReport {
    /// The policy's revision.
    pub revision: String,
    /// The date days to sunset are counted from.
    pub as_of: String,
    /// Where the traffic figures came from.
    pub source: Source,
    /// Things a reader should know about the figures (another revision in the proxy,
    /// counters of APIs this policy does not name).
    pub notes: Vec<String>,
    /// Totals over every API, with traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// When a replay gave times: the buckets of every timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// Requests no API claims.
    pub shadow: ShadowView,
    /// Where incidents are sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertRoute>,
    /// Every owner and what they own.
    pub owners: Vec<OwnerView>,
    /// Every API, in the policy's order.
    pub apis: Vec<ApiView>,
}

/// Totals over the traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests counted.
    pub requests: u64,
    /// Requests by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests a monitor-mode control would have blocked or delayed.
    pub would_block: u64,
    /// Incidents by severity.
    pub incidents: BTreeMap<String, u64>,
    /// Alert deliveries by fate (`sent`, `failed`, `deduplicated`, `dropped`).
    pub alerts: BTreeMap<String, u64>,
}

/// The buckets of the decisions-over-time charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The first bucket's start.
    pub start: String,
    /// The width of a bucket in milliseconds.
    pub bucket_ms: u64,
    /// How many buckets.
    pub buckets: usize,
}

/// Requests no API claims and what is done with them.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowView {
    /// What happens to them, in business words.
    pub handling: String,
    /// The control's mode.
    pub mode: String,
    /// The severity of their incidents.
    pub severity: String,
    /// Who is told.
    pub owner: String,
    /// How to reach them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// What the filter did to requests no API claims (controls `unknown_route` and
    /// `path`), with traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// The shadow endpoints seen (a replay only: stats do not say which paths).
    pub endpoints: Vec<ShadowEndpoint>,
}

/// One endpoint no API claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowEndpoint {
    /// `:method`.
    pub method: String,
    /// `:authority`.
    pub authority: String,
    /// `:path` without its query.
    pub path: String,
    /// Requests.
    pub requests: u64,
    /// Requests by outcome.
    pub outcomes: BTreeMap<String, u64>,
}

/// Where incidents are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRoute {
    /// Prometheus Alertmanager, behind this Envoy cluster.
    pub cluster: String,
    /// The alert requests' `:authority`.
    pub authority: String,
    /// The Alertmanager API path.
    pub path: String,
    /// How long one alert may take.
    pub timeout_ms: u64,
    /// One alert per API, control, event and key within this window.
    pub dedupe_window_ms: u64,
}

/// An owner and what they own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerView {
    /// The owning team.
    pub owner: String,
    /// How to reach them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Their APIs (`name version`); `shadow APIs` for the owner of unknown routes.
    pub apis: Vec<String>,
    /// Incidents over their APIs by severity, with traffic.
    pub incidents: BTreeMap<String, u64>,
    /// Requests their monitor-mode controls would have blocked, with traffic.
    pub would_block: u64,
}

/// One API.
#[derive(Debug, Clone, Serialize)]
pub struct ApiView {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Owning team.
    pub owner: String,
    /// How to reach them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Tier.
    pub tier: String,
    /// Where it is in its life.
    pub lifecycle: LifecycleView,
    /// Routes as written.
    pub routes: Vec<String>,
    /// Effective controls.
    pub controls: Vec<ControlView>,
    /// What happened to its traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

/// An API's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleView {
    /// `active`, `deprecated` or `retired`.
    pub status: String,
    /// The lifecycle control's mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// In business words.
    pub text: String,
    /// When it stops answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sunset: Option<String>,
    /// Whole days from `as_of` to the sunset (negative once past it, when the engine
    /// treats the API as retired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_to_sunset: Option<i64>,
    /// Where clients should go instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
}

/// One effective control of an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlView {
    /// The policy block (`login`, `rate_limit`, ...).
    pub field: String,
    /// The control's name in decisions and metrics, for blocks that are controls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Its heading in business words.
    pub title: String,
    /// Its mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Which blocks wrote it.
    pub written_by: String,
    /// What it does, in business words.
    pub text: String,
}

/// What happened to the traffic of one API (or of the requests no API claims).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Requests.
    pub requests: u64,
    /// Requests by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests a monitor-mode control would have blocked or delayed.
    pub would_block: u64,
    /// What each control did: control -> outcome -> requests (plain allowed requests,
    /// control `none`, are left out).
    pub controls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Incidents by severity.
    pub incidents: BTreeMap<String, u64>,
    /// Incidents by control, then severity.
    pub incidents_by_control: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests per timeline bucket by outcome (a replay only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timeline: BTreeMap<String, Vec<u64>>,
    /// Who called this deprecated or retired version (a replay only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deprecated_callers: Vec<Caller>,
}

/// A caller of a deprecated or retired version, as the filter identifies callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The filter's digest of the caller's identity (user, else client address): the
    /// `key` of its events, never the identity itself.
    pub key: String,
    /// Requests.
    pub requests: u64,
    /// The client addresses they came from, as recorded.
    pub clients: Vec<String>,
    /// Their `user-agent`s, as recorded.
    pub user_agents: Vec<String>,
}

/// What the figures come from.
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    /// Nothing: the policy alone.
    None,
    /// A replay of `records` and its report.
    Replay {
        /// The replayed records, in replay order (entries refer to them by index).
        records: &'a [Record],
        /// What the replay did.
        report: &'a Report,
        /// The traffic files, for the page.
        files: &'a [String],
    },
    /// Envoy's counters.
    Prometheus {
        /// What was read.
        counters: &'a Counters,
        /// The file or URL, for the page.
        from: &'a str,
    },
}

/// Builds the report of the policy `text` as of `as_of_ns` (days to sunset count from
/// it) with the figures of `evidence`.
pub fn build(
    text: &str,
    as_of_ns: i64,
    evidence: Evidence<'_>,
) -> Result<PostureReport, PolicyErrors> {
    let posture = posture(text)?;
    let mut report = policy_view(&posture, as_of_ns);
    match evidence {
        Evidence::None => {}
        Evidence::Replay {
            records,
            report: replay,
            files,
        } => {
            let policy = Policy::from_json(text)?;
            let counters = counters::from_metrics(&replay.summary.metrics);
            apply_counters(&mut report, &counters);
            report.source = evidence::replay_source(records, files);
            evidence::apply_replay(&mut report, &policy, records, replay);
        }
        Evidence::Prometheus { counters, from } => {
            apply_counters(&mut report, counters);
            report.source = Source::Prometheus {
                from: from.to_owned(),
            };
        }
    }
    if report.totals.is_some() {
        for owner in &mut report.owners {
            owner_totals(owner, &report.apis, &report.shadow);
        }
    }
    Ok(report)
}

/// The policy's side of the report: no traffic yet.
fn policy_view(posture: &Posture, as_of_ns: i64) -> PostureReport {
    let apis: Vec<ApiView> = posture
        .apis
        .iter()
        .map(|api| api_view(api, as_of_ns))
        .collect();
    let shadow = &posture.shadow;
    let mut owners: Vec<OwnerView> = Vec::new();
    let mut own = |owner: &str, contact: Option<&String>, api: String| match owners
        .iter_mut()
        .find(|o| o.owner == owner)
    {
        Some(o) => {
            o.apis.push(api);
            if o.contact.is_none() {
                o.contact = contact.cloned();
            }
        }
        None => owners.push(OwnerView {
            owner: owner.to_owned(),
            contact: contact.cloned(),
            apis: vec![api],
            incidents: BTreeMap::new(),
            would_block: 0,
        }),
    };
    for api in &apis {
        own(
            &api.owner,
            api.contact.as_ref(),
            format!("{} {}", api.name, api.version),
        );
    }
    own(
        &shadow.owner,
        shadow.contact.as_ref(),
        SHADOW_APIS.to_owned(),
    );
    PostureReport {
        revision: posture.revision.clone(),
        as_of: format_rfc3339(as_of_ns),
        source: Source::Policy,
        notes: Vec::new(),
        totals: None,
        timeline: None,
        shadow: ShadowView {
            handling: shadow.handling.to_owned(),
            mode: shadow.mode.as_str().to_owned(),
            severity: shadow.severity.as_str().to_owned(),
            owner: shadow.owner.clone(),
            contact: shadow.contact.clone(),
            activity: None,
            endpoints: Vec::new(),
        },
        alerts: posture.notify.as_ref().map(|n| AlertRoute {
            cluster: n.cluster.clone(),
            authority: n.authority.clone(),
            path: n.path.clone(),
            timeout_ms: n.timeout_ms,
            dedupe_window_ms: n.dedupe_window_ms,
        }),
        owners,
        apis,
    }
}

/// The owner's entry for the requests no API claims.
pub const SHADOW_APIS: &str = "shadow APIs";

const DAY_NS: i64 = 86_400_000_000_000;

fn api_view(api: &ApiPosture, as_of_ns: i64) -> ApiView {
    let info = &api.info;
    let life = &api.lifecycle;
    let sunset_ns = life.sunset_ms.map(|ms| ms.saturating_mul(1_000_000));
    ApiView {
        name: info.name.clone(),
        version: info.version.clone(),
        owner: info.owner.clone(),
        contact: info.contact.clone(),
        tier: info.tier.clone(),
        lifecycle: LifecycleView {
            status: life.status.as_str().to_owned(),
            mode: life.mode.map(|m| m.as_str().to_owned()),
            text: life.text.clone(),
            sunset: sunset_ns.map(format_rfc3339),
            // Whole days left, rounded down: an API with 20 hours left has 0 days.
            days_to_sunset: sunset_ns.map(|s| (s - as_of_ns).div_euclid(DAY_NS)),
            successor: life.successor.clone(),
        },
        routes: api.routes.clone(),
        controls: api
            .controls
            .iter()
            .map(|c| ControlView {
                field: c.field.to_owned(),
                control: control_of(c.field).map(str::to_owned),
                title: c.title.to_owned(),
                mode: c.mode.map(|m| m.as_str().to_owned()),
                written_by: c.written_by.clone(),
                text: c.text.clone(),
            })
            .collect(),
        activity: None,
    }
}

/// The control a policy block is counted under in decisions and metrics.
fn control_of(field: &str) -> Option<&str> {
    match field {
        "quotas" => Some("quota"),
        "incidents" | "on_error" => None,
        other => Some(other),
    }
}

/// A policy name as the filter writes it into metric names (`filter/src/metrics.rs`'s
/// `sanitize`: `[A-Za-z0-9_-]` kept, anything else `_`, at most 64 characters).
fn metric_part(part: &str) -> String {
    let clean: String = part
        .chars()
        .take(64)
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

/// Which API a counter's or decision's `api`/`version` labels name: `Ok(Some(i))` for
/// the policy's API `i`, `Ok(None)` for requests no API claims, `Err` for an API this
/// policy does not have.
fn api_index(apis: &[ApiView], api: &str, version: &str) -> Result<Option<usize>, ()> {
    if matches!(api, "none" | "-" | "") {
        return Ok(None);
    }
    apis.iter()
        .position(|a| {
            (a.name == api || metric_part(&a.name) == api)
                && (a.version == version || metric_part(&a.version) == version)
        })
        .map(Some)
        .ok_or(())
}

/// Adds the module's counters: activity per API, the shadow APIs' and the totals.
fn apply_counters(report: &mut PostureReport, counters: &Counters) {
    let mut totals = Totals {
        alerts: counters.alerts.clone(),
        ..Totals::default()
    };
    let mut shadow = Activity::default();
    for api in &mut report.apis {
        api.activity = Some(Activity::default());
    }
    let mut foreign = Vec::new();
    for c in &counters.counters {
        let activity = match api_index(&report.apis, &c.api, &c.version) {
            Ok(Some(i)) => report.apis.get_mut(i).and_then(|a| a.activity.as_mut()),
            Ok(None) => Some(&mut shadow),
            Err(()) => {
                let name = format!("{} {}", c.api, c.version);
                if !foreign.contains(&name) {
                    foreign.push(name);
                }
                None
            }
        };
        match c.kind {
            CounterKind::Decision => {
                totals.requests += c.count;
                *totals.outcomes.entry(c.value_label.clone()).or_default() += c.count;
                if c.value_label == "would_block" {
                    totals.would_block += c.count;
                }
            }
            CounterKind::Incident => {
                *totals.incidents.entry(c.value_label.clone()).or_default() += c.count;
            }
        }
        if let Some(activity) = activity {
            activity.count(c.kind, &c.control, &c.value_label, c.count);
        }
    }
    for name in foreign {
        report.notes.push(format!(
            "the counters name API {name}, which this policy does not have: its requests \
             are in the totals only"
        ));
    }
    match counters.revisions.as_slice() {
        [] => {}
        [one] if *one == metric_part(&report.revision) => {}
        others => report.notes.push(format!(
            "the proxy reports revision {} in use; this page describes revision {}",
            others.join(", "),
            report.revision
        )),
    }
    report.shadow.activity = Some(shadow);
    report.totals = Some(totals);
}

impl Activity {
    /// Adds `count` of a decision (`label` an outcome) or an incident (a severity).
    fn count(&mut self, kind: CounterKind, control: &str, label: &str, count: u64) {
        match kind {
            CounterKind::Decision => {
                self.requests += count;
                *self.outcomes.entry(label.to_owned()).or_default() += count;
                if label == "would_block" {
                    self.would_block += count;
                }
                if control != "none" {
                    *self
                        .controls
                        .entry(control.to_owned())
                        .or_default()
                        .entry(label.to_owned())
                        .or_default() += count;
                }
            }
            CounterKind::Incident => {
                *self.incidents.entry(label.to_owned()).or_default() += count;
                *self
                    .incidents_by_control
                    .entry(control.to_owned())
                    .or_default()
                    .entry(label.to_owned())
                    .or_default() += count;
            }
        }
    }
}

/// An owner's incidents and would-block requests over what they own.
fn owner_totals(owner: &mut OwnerView, apis: &[ApiView], shadow: &ShadowView) {
    let mut activities: Vec<&Activity> = apis
        .iter()
        .filter(|a| a.owner == owner.owner)
        .filter_map(|a| a.activity.as_ref())
        .collect();
    if shadow.owner == owner.owner {
        activities.extend(shadow.activity.as_ref());
    }
    for activity in activities {
        owner.would_block += activity.would_block;
        for (severity, n) in &activity.incidents {
            *owner.incidents.entry(severity.clone()).or_default() += n;
        }
    }
}

impl PostureReport {
    /// The JSON twin of the page.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
        "revision": "r.1",
        "tiers": { "t": { "rate_limit": { "requests": 5, "per": "1m", "key": "client_ip", "mode": "monitor" } } },
        "apis": [
            { "name": "pay ments", "version": "v1", "owner": "team-pay", "tier": "t",
              "lifecycle": { "status": "deprecated", "deprecated_at": "2026-01-01T00:00:00Z",
                             "sunset": "2026-01-31T00:00:00Z" },
              "routes": [ { "path": "/pay" } ] }
        ]
    }"#;

    #[test]
    fn days_to_sunset_count_whole_days_and_go_negative_after_it() {
        let day = DAY_NS;
        let sunset = crate::traffic::time::parse_rfc3339("2026-01-31T00:00:00Z").unwrap();
        let at = |ns| {
            build(POLICY, ns, Evidence::None).unwrap().apis[0]
                .lifecycle
                .days_to_sunset
        };
        assert_eq!(at(sunset - 10 * day), Some(10));
        assert_eq!(at(sunset - day / 2), Some(0));
        assert_eq!(at(sunset + day / 2), Some(-1));
    }

    #[test]
    fn counters_are_matched_to_apis_by_their_sanitized_names() {
        let text = "stakeguard_decision{api=\"pay_ments\",version=\"v1\",control=\"rate_limit\",outcome=\"would_block\"} 4\n\
            stakeguard_decision{api=\"pay_ments\",version=\"v1\",control=\"none\",outcome=\"allowed\"} 6\n\
            stakeguard_decision{api=\"gone\",version=\"v9\",control=\"none\",outcome=\"allowed\"} 2\n\
            stakeguard_incident{api=\"none\",version=\"none\",control=\"unknown_route\",severity=\"info\"} 1\n\
            stakeguard_policy{revision=\"r_0\"} 1\n";
        let counters = counters::from_prometheus("f", text).unwrap();
        let report = build(
            POLICY,
            0,
            Evidence::Prometheus {
                counters: &counters,
                from: "f",
            },
        )
        .unwrap();
        let activity = report.apis[0].activity.as_ref().unwrap();
        assert_eq!(activity.requests, 10);
        assert_eq!(activity.would_block, 4);
        assert_eq!(activity.controls["rate_limit"]["would_block"], 4);
        assert!(!activity.controls.contains_key("none"));
        let totals = report.totals.as_ref().unwrap();
        assert_eq!((totals.requests, totals.would_block), (12, 4));
        assert_eq!(report.owners[0].would_block, 4);
        assert_eq!(report.owners[1].incidents["info"], 1, "{:?}", report.owners);
        assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
        assert!(report.notes[0].contains("gone v9"));
        assert!(report.notes[1].contains("revision r_0"));
    }
}
