//! Merging [`NewApi`]s into a policy document without losing what people wrote.
//!
//! An API is the same API when its `name` and `version` are. For one that exists, the
//! policy's fields win: a field the policy lacks is added, a field it has with another
//! value is left alone and reported as a [`Conflict`]; routes are added method by method.
//! A route is checked against every route of the policy with the engine's own
//! [`RouteIndexBuilder`], so a method another API already serves on the same path shape
//! stays with that API (a conflict), and a pattern the engine refuses is reported as
//! skipped with the engine's message. A tier that is named but not defined is added in
//! monitor mode without controls, so the result passes `stakeguard check`.

use std::borrow::Cow;

use stakeguard_policies::json::Json;
use stakeguard_policies::routes::{AddError, RouteIndexBuilder};

use super::{NewApi, NewRoute};

/// What new APIs get when their source names no owner or tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// The owner.
    pub owner: String,
    /// The tier.
    pub tier: String,
}

/// Something the merge did not do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The policy's place, e.g. `apis[2].owner`.
    pub place: String,
    /// Where the refused value came from.
    pub origin: String,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (from {})", self.place, self.message, self.origin)
    }
}

/// The merged document and what the merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The policy document.
    pub document: Json<'static>,
    /// What was added, one line each.
    pub changes: Vec<String>,
    /// Values the policy kept against the source.
    pub conflicts: Vec<Conflict>,
    /// Routes the engine refuses as patterns.
    pub skipped: Vec<Conflict>,
}

/// Why a document cannot take APIs at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}; {hint}")]
pub struct ShapeError {
    /// The field.
    pub place: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// Merges `apis` into `document` (a policy object).
pub fn merge(
    mut document: Json<'static>,
    apis: &[NewApi],
    defaults: &Defaults,
) -> Result<Merged, ShapeError> {
    let mut merged = Merged {
        document: Json::Null,
        changes: Vec::new(),
        conflicts: Vec::new(),
        skipped: Vec::new(),
    };
    let Json::Object(root) = &mut document else {
        return Err(shape(
            "(document)",
            "is not a JSON object",
            "a policy is an object with `revision`, `tiers` and `apis`",
        ));
    };
    let mut list = entry(root, "apis", Json::Array(Vec::new()))
        .map(|slot| std::mem::replace(slot, Json::Null))
        .unwrap_or(Json::Array(Vec::new()));
    let Json::Array(existing) = &mut list else {
        return Err(shape(
            "apis",
            "is not a list",
            "write `apis` as a list of API objects",
        ));
    };
    let mut index = RouteIndexBuilder::new();
    for (a, api) in existing.iter().enumerate() {
        for (r, route) in api
            .get("routes")
            .and_then(as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (Some(path), methods) = (
                route.get("path").and_then(Json::as_str),
                strings(route.get("methods")),
            ) else {
                continue;
            };
            // A bad existing route is the policy's own mistake: `check` names it.
            let _ = index.add(
                route.get("host").and_then(Json::as_str),
                path,
                &methods,
                (a, r),
            );
        }
    }
    let mut tiers_used = Vec::new();
    for api in apis {
        let found = existing.iter().position(|e| {
            e.get("name").and_then(Json::as_str) == Some(&api.name)
                && e.get("version").and_then(Json::as_str) == Some(&api.version)
        });
        let (a, is_new) = match found {
            Some(a) => {
                if let Some(Json::Object(fields)) = existing.get_mut(a) {
                    merge_fields(&mut merged, fields, api, a);
                }
                (a, false)
            }
            None => {
                existing.push(new_api(api, defaults));
                (existing.len() - 1, true)
            }
        };
        let mark = merged.changes.len();
        let mut kept = !is_new;
        for route in &api.routes {
            let accepted = admit(&mut merged, &mut index, existing, route, a, api);
            if !accepted.is_empty() {
                add_route(&mut merged, existing, a, route, accepted);
                kept = true;
            }
        }
        if !kept {
            // Every route was refused: an API without routes is no API (and the engine
            // refuses one).
            existing.pop();
            continue;
        }
        if is_new {
            merged.changes.insert(
                mark,
                format!("apis[{a}]: added `{}` `{}`", api.name, api.version),
            );
        }
        if let Some(tier) = existing
            .get(a)
            .and_then(|e| e.get("tier"))
            .and_then(Json::as_str)
        {
            tiers_used.push(tier.to_owned());
        }
    }
    if let Some(slot) = entry(root, "apis", Json::Null) {
        *slot = list;
    }
    let Some(Json::Object(tiers)) = entry(root, "tiers", Json::Object(Vec::new())) else {
        return Err(shape(
            "tiers",
            "is not an object",
            "write `tiers` as an object of named tiers",
        ));
    };
    for tier in tiers_used {
        if !tiers.iter().any(|(name, _)| *name == tier) {
            tiers.push((
                tier.clone().into(),
                Json::Object(vec![("mode".into(), Json::string("monitor"))]),
            ));
            merged.changes.push(format!(
                "tiers.{tier}: added in monitor mode without controls; give it its protections"
            ));
        }
    }
    merged.document = document;
    Ok(merged)
}

fn shape(place: &str, message: &str, hint: &str) -> ShapeError {
    ShapeError {
        place: place.to_owned(),
        message: message.to_owned(),
        hint: hint.to_owned(),
    }
}

/// The methods of `route` the index takes for API `a`, reporting the others.
fn admit(
    merged: &mut Merged,
    index: &mut RouteIndexBuilder<(usize, usize)>,
    existing: &[Json<'_>],
    route: &NewRoute,
    a: usize,
    api: &NewApi,
) -> Vec<String> {
    let mut accepted = Vec::new();
    for method in &route.methods {
        match index.add(
            route.host.as_deref(),
            &route.path,
            std::slice::from_ref(method),
            (a, usize::MAX),
        ) {
            Ok(()) => accepted.push(method.clone()),
            Err(AddError::Pattern(e)) => {
                merged.skipped.push(Conflict {
                    place: format!("`{}` `{}`", api.name, api.version),
                    origin: route.origin.clone(),
                    message: format!("route skipped: {}; {}", e.message, e.hint),
                });
                return Vec::new();
            }
            // Already there (the same route, or the same shape with other parameter names).
            Err(AddError::Conflict {
                existing: (owner, _),
            }) if owner == a => {}
            Err(AddError::Conflict {
                existing: (owner, _),
            }) => {
                let label = |key: &str| {
                    existing
                        .get(owner)
                        .and_then(|e| e.get(key))
                        .and_then(Json::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                merged.conflicts.push(Conflict {
                    place: format!("apis[{owner}]"),
                    origin: route.origin.clone(),
                    message: format!(
                        "`{method} {}` is already served by `{}` `{}`; it stays there",
                        route.path,
                        label("name"),
                        label("version")
                    ),
                });
            }
        }
    }
    accepted
}

/// Adds `methods` on `route` to API `a`: to its route of the same host and path shape
/// (parameter names aside) when it has one that lists methods, as a new route otherwise.
fn add_route(
    merged: &mut Merged,
    existing: &mut [Json<'static>],
    a: usize,
    route: &NewRoute,
    methods: Vec<String>,
) {
    let Some(Json::Object(fields)) = existing.get_mut(a) else {
        return;
    };
    let Some(Json::Array(routes)) = entry(fields, "routes", Json::Array(Vec::new())) else {
        return;
    };
    let same = routes.iter_mut().enumerate().find(|(_, r)| {
        r.get("path").and_then(Json::as_str).map(shape_of) == Some(shape_of(&route.path))
            && r.get("host")
                .and_then(Json::as_str)
                .map(str::to_ascii_lowercase)
                == route.host.as_deref().map(str::to_ascii_lowercase)
            && matches!(r.get("methods"), Some(Json::Array(_)))
    });
    let shown = methods.join(", ");
    match same {
        Some((r, Json::Object(route_fields))) => {
            if let Some(Json::Array(list)) = entry(route_fields, "methods", Json::Array(Vec::new()))
            {
                list.extend(methods.into_iter().map(Json::string));
            }
            merged
                .changes
                .push(format!("apis[{a}].routes[{r}]: added {shown}"));
        }
        _ => {
            let mut object = Vec::new();
            if let Some(host) = &route.host {
                object.push(("host".into(), Json::string(host)));
            }
            object.push(("path".into(), Json::string(&route.path)));
            object.push((
                "methods".into(),
                Json::Array(methods.into_iter().map(Json::string).collect()),
            ));
            routes.push(Json::Object(object));
            merged.changes.push(format!(
                "apis[{a}].routes[{}]: added {shown} {}",
                routes.len() - 1,
                route.path
            ));
        }
    }
}

/// Fills the fields an existing API lacks; reports the ones it has otherwise.
fn merge_fields(
    merged: &mut Merged,
    fields: &mut Vec<(Cow<'static, str>, Json<'static>)>,
    api: &NewApi,
    a: usize,
) {
    let origin = format!("`{}` `{}`", api.name, api.version);
    let keep = |merged: &mut Merged,
                fields: &mut Vec<(Cow<'static, str>, Json<'static>)>,
                key: &str,
                value: Json<'static>| {
        let place = format!("apis[{a}].{key}");
        match fields.iter().find(|(k, _)| k == key) {
            None => {
                merged.changes.push(format!("{place}: set to {value}"));
                fields.push((key.to_owned().into(), value));
            }
            Some((_, current)) if same_value(current, &value) => {}
            Some((_, current)) => merged.conflicts.push(Conflict {
                place,
                origin: origin.clone(),
                message: format!(
                    "the policy says {current}, the source {value}; the policy's value stays"
                ),
            }),
        }
    };
    for (key, value) in [
        ("owner", &api.owner),
        ("contact", &api.contact),
        ("tier", &api.tier),
    ] {
        if let Some(value) = value {
            keep(merged, fields, key, Json::string(value));
        }
    }
    if let Some(lifecycle) = &api.lifecycle {
        keep(merged, fields, "lifecycle", lifecycle.clone());
    }
    if api.incidents.is_empty() {
        return;
    }
    let Some(Json::Object(incidents)) = entry(fields, "incidents", Json::Object(Vec::new())) else {
        return;
    };
    for (event, severity) in &api.incidents {
        let place = format!("apis[{a}].incidents.{event}");
        match incidents.iter().find(|(k, _)| k == event) {
            None => {
                merged
                    .changes
                    .push(format!("{place}: set to \"{severity}\""));
                incidents.push((event.clone().into(), Json::string(severity)));
            }
            Some((_, current)) if current.as_str() == Some(severity) => {}
            Some((_, current)) => merged.conflicts.push(Conflict {
                place,
                origin: origin.clone(),
                message: format!(
                    "the policy says {current}, the source \"{severity}\"; the policy's value stays"
                ),
            }),
        }
    }
}

/// Lifecycles are the same when their status is; other values when equal.
fn same_value(current: &Json<'_>, new: &Json<'_>) -> bool {
    match (current.get("status"), new.get("status")) {
        (Some(a), Some(b)) => a == b,
        _ => current == new,
    }
}

fn new_api(api: &NewApi, defaults: &Defaults) -> Json<'static> {
    let text = |s: &str| Json::string(s);
    let mut fields = vec![
        ("name".into(), text(&api.name)),
        ("version".into(), text(&api.version)),
        (
            "owner".into(),
            text(api.owner.as_deref().unwrap_or(&defaults.owner)),
        ),
    ];
    if let Some(contact) = &api.contact {
        fields.push(("contact".into(), text(contact)));
    }
    fields.push((
        "tier".into(),
        text(api.tier.as_deref().unwrap_or(&defaults.tier)),
    ));
    if let Some(lifecycle) = &api.lifecycle {
        fields.push(("lifecycle".into(), lifecycle.clone()));
    }
    if !api.incidents.is_empty() {
        let incidents = api
            .incidents
            .iter()
            .map(|(e, s)| (e.clone().into(), text(s)))
            .collect();
        fields.push(("incidents".into(), Json::Object(incidents)));
    }
    fields.push(("routes".into(), Json::Array(Vec::new())));
    Json::Object(fields)
}

/// The value of `key` in an object, inserted as `default` when missing (always `Some`).
fn entry<'a>(
    fields: &'a mut Vec<(Cow<'static, str>, Json<'static>)>,
    key: &str,
    default: Json<'static>,
) -> Option<&'a mut Json<'static>> {
    if !fields.iter().any(|(k, _)| k == key) {
        fields.push((key.to_owned().into(), default));
    }
    fields.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A path pattern with its parameter names left out: `/pet/{}` for `/pet/{petId}`.
fn shape_of(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn as_array<'v, 't>(value: &'v Json<'t>) -> Option<&'v Vec<Json<'t>>> {
    match value {
        Json::Array(items) => Some(items),
        _ => None,
    }
}

fn strings(value: Option<&Json<'_>>) -> Vec<String> {
    value
        .and_then(as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The merged document as a file (two-space indents, a final newline), once the engine
/// has accepted it: a merge that produced a policy the filter would refuse is a bug
/// here or a mistake already in the policy, and is reported rather than written.
pub fn finish(merged: &Merged) -> Result<String, stakeguard_policies::PolicyErrors> {
    let mut text = String::new();
    merged.document.write_pretty(&mut text, 0);
    text.push('\n');
    stakeguard_policies::Policy::from_json(&text)?;
    Ok(text)
}
