//! The posture report as one self-contained HTML page for API owners: styles inline,
//! charts as inline SVG ([`super::svg`]), no script and nothing fetched, so it can be
//! mailed or attached to a ticket. Every text from the policy or the traffic goes through
//! [`esc`]. Figures carry `data-*` attributes naming what they count, so tests read the
//! page the way a person does and still know which number is which.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::svg;
use super::{Activity, ApiView, OUTCOMES, PostureReport, SHADOW_APIS, Source};

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1c2833;background:#f7f9fa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e8e8;vertical-align:top}
th{background:#eaeded;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.tile{background:#fff;border:1px solid #d5d8dc;border-radius:6px;padding:8px 14px;min-width:110px}
.tile b{display:block;font-size:22px}.tile span{color:#566573;font-size:12px}
.tile.wb{border:2px solid #7d3c98;background:#f5eef8}.tile.wb b{color:#7d3c98}
.callout{border-left:5px solid #7d3c98;background:#f5eef8;padding:8px 14px;margin:10px 0}
.api{background:#fff;border:1px solid #d5d8dc;border-radius:6px;padding:4px 16px 12px;margin:14px 0}
.mode{display:inline-block;border-radius:3px;padding:0 6px;font-size:12px;color:#fff}
.mode.enforce{background:#1e8449}.mode.monitor{background:#7d3c98}.mode.off{background:#909497}
.life.deprecated{color:#b9770e;font-weight:600}.life.retired{color:#922b21;font-weight:600}
.muted{color:#707b7c}.wbn{color:#7d3c98;font-weight:700}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
code{background:#f2f3f4;padding:0 3px;border-radius:3px}
";

/// The whole page.
pub fn render(report: &PostureReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>API posture: policy {}</title><style>{STYLE}</style></head><body><main>",
        esc(&report.revision)
    );
    header(&mut out, report);
    if report.totals.is_some() {
        would_block(&mut out, report);
    }
    inventory(&mut out, report);
    for api in &report.apis {
        api_section(&mut out, report, api);
    }
    shadow(&mut out, report);
    owners(&mut out, report);
    out.push_str("</main></body></html>\n");
    out
}

fn header(out: &mut String, report: &PostureReport) {
    let _ = write!(
        out,
        "<header><h1>API posture</h1><p>Policy revision <b id=\"revision\">{}</b>: {} APIs, \
         sunsets counted from {}.</p><p id=\"source\">",
        esc(&report.revision),
        report.apis.len(),
        esc(day(&report.as_of)),
    );
    match &report.source {
        Source::Policy => out.push_str(
            "The policy alone: give recorded traffic or Envoy's stats to see what the controls did.",
        ),
        Source::Replay { files, from, to } => {
            let _ = write!(
                out,
                "Recorded traffic from {} to {} ({}), replayed through the filter module.",
                esc(from),
                esc(to),
                esc(&files.join(", "))
            );
        }
        Source::Prometheus { from } => {
            let _ = write!(
                out,
                "Envoy's counters from <code>{}</code> (totals since the proxy started; \
                 shadow endpoints, timelines and callers need a recording).",
                esc(from)
            );
        }
    }
    out.push_str("</p>");
    for note in &report.notes {
        let _ = write!(out, "<p class=\"callout note\">{}</p>", esc(note));
    }
    if let Some(t) = &report.totals {
        let tile = |out: &mut String, class: &str, key: &str, n: u64, label: &str| {
            let _ = write!(
                out,
                "<div class=\"tile {class}\"><b data-total=\"{key}\">{n}</b><span>{label}</span></div>"
            );
        };
        out.push_str("<div class=\"tiles\">");
        tile(out, "", "requests", t.requests, "requests");
        tile(
            out,
            "wb",
            "would_block",
            t.would_block,
            "monitor mode would have blocked",
        );
        for outcome in ["blocked", "delayed", "alerted"] {
            tile(
                out,
                "",
                outcome,
                t.outcomes.get(outcome).copied().unwrap_or(0),
                outcome,
            );
        }
        let incidents: u64 = t.incidents.values().sum();
        let by: Vec<String> = t
            .incidents
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let label = format!("incidents ({})", by.join(", "));
        tile(out, "", "incidents", incidents, &esc(&label));
        if !t.alerts.is_empty() {
            let alerts: Vec<String> = t.alerts.iter().map(|(f, n)| format!("{n} {f}")).collect();
            let sent = t.alerts.get("sent").copied().unwrap_or(0);
            tile(
                out,
                "",
                "alerts_sent",
                sent,
                &esc(&format!("alerts ({})", alerts.join(", "))),
            );
        }
        out.push_str("</div>");
        legend(out);
    }
    out.push_str("</header>");
}

fn legend(out: &mut String) {
    out.push_str("<p class=\"legend\">");
    for outcome in OUTCOMES {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            svg::colour(outcome),
            outcome_name(outcome)
        );
    }
    out.push_str("</p>");
}

fn outcome_name(outcome: &str) -> String {
    esc(&outcome.replace('_', "-"))
}

/// The section an owner switching a rule to enforce reads: what monitor mode caught.
fn would_block(out: &mut String, report: &PostureReport) {
    out.push_str("<section id=\"would-block\"><h2>Monitor mode: would have blocked</h2>");
    let mut rows = Vec::new();
    for api in &report.apis {
        let Some(activity) = &api.activity else {
            continue;
        };
        for (control, outcomes) in &activity.controls {
            if let Some(n) = outcomes.get("would_block").filter(|n| **n > 0) {
                rows.push((format!("{} {}", api.name, api.version), control.clone(), *n));
            }
        }
    }
    if let Some(activity) = &report.shadow.activity {
        for (control, outcomes) in &activity.controls {
            if let Some(n) = outcomes.get("would_block").filter(|n| **n > 0) {
                rows.push((SHADOW_APIS.to_owned(), control.clone(), *n));
            }
        }
    }
    if rows.is_empty() {
        out.push_str(
            "<p class=\"callout\">No monitor-mode control would have blocked or delayed a request.</p>",
        );
    } else {
        out.push_str(
            "<p class=\"callout\">These requests went through only because their control is in \
             monitor mode. Check they are the requests the rule is meant for, then switch it to \
             enforce.</p><table><tr><th>API</th><th>control</th><th class=\"n\">would have blocked</th></tr>",
        );
        for (api, control, n) in rows {
            let _ = write!(
                out,
                "<tr data-api=\"{a}\" data-control=\"{c}\"><td>{a}</td><td>{c}</td>\
                 <td class=\"n wbn\" data-count=\"would_block\">{n}</td></tr>",
                a = esc(&api),
                c = esc(&control),
            );
        }
        out.push_str("</table>");
    }
    let monitored: Vec<String> = report
        .apis
        .iter()
        .flat_map(|api| {
            api.controls
                .iter()
                .filter(|c| c.mode.as_deref() == Some("monitor"))
                .map(move |c| format!("{} {}: {}", api.name, api.version, c.title))
        })
        .collect();
    if !monitored.is_empty() {
        let _ = write!(
            out,
            "<p>Controls in monitor mode: {}.</p>",
            esc(&monitored.join("; "))
        );
    }
    out.push_str("</section>");
}

fn count(activity: Option<&Activity>, outcome: &str) -> String {
    activity.map_or_else(
        || "—".to_owned(),
        |a| a.outcomes.get(outcome).copied().unwrap_or(0).to_string(),
    )
}

fn inventory(out: &mut String, report: &PostureReport) {
    let traffic = report.totals.is_some();
    out.push_str(
        "<section id=\"inventory\"><h2>Inventory</h2><table><tr><th>API</th><th>version</th>\
         <th>owner</th><th>tier</th><th>lifecycle</th><th class=\"n\">days to sunset</th>",
    );
    if traffic {
        out.push_str(
            "<th class=\"n\">requests</th><th class=\"n\">blocked</th>\
             <th class=\"n\">would have blocked</th><th class=\"n\">incidents</th>",
        );
    }
    out.push_str("</tr>");
    for api in &report.apis {
        let life = &api.lifecycle;
        let days = life
            .days_to_sunset
            .map_or_else(String::new, |d| d.to_string());
        let _ = write!(
            out,
            "<tr data-api=\"{key}\"><td><a href=\"#{anchor}\">{name}</a></td><td>{version}</td>\
             <td>{owner}</td><td>{tier}</td><td class=\"life {status}\">{status}</td>\
             <td class=\"n\" data-count=\"days_to_sunset\">{days}</td>",
            key = esc(&api_key(api)),
            anchor = anchor(api),
            name = esc(&api.name),
            version = esc(&api.version),
            owner = esc(&api.owner),
            tier = esc(&api.tier),
            status = esc(&life.status),
        );
        if traffic {
            let a = api.activity.as_ref();
            let _ = write!(
                out,
                "<td class=\"n\" data-count=\"requests\">{}</td>\
                 <td class=\"n\" data-count=\"blocked\">{}</td>\
                 <td class=\"n wbn\" data-count=\"would_block\">{}</td>\
                 <td class=\"n\" data-count=\"incidents\">{}</td>",
                a.map_or(0, |a| a.requests),
                count(a, "blocked"),
                a.map_or(0, |a| a.would_block),
                a.map_or(0, |a| a.incidents.values().sum::<u64>()),
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

fn api_key(api: &ApiView) -> String {
    format!("{} {}", api.name, api.version)
}

/// An id made of `[a-z0-9-]` only, so it needs no escaping in `href` or `id`.
fn anchor(api: &ApiView) -> String {
    let raw = format!("api-{}-{}", api.name, api.version);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn mode_badge(mode: Option<&str>) -> String {
    mode.map_or_else(String::new, |m| {
        format!("<span class=\"mode {m}\">{m}</span>", m = esc(m))
    })
}

fn api_section(out: &mut String, report: &PostureReport, api: &ApiView) {
    let life = &api.lifecycle;
    let contact = api
        .contact
        .as_deref()
        .map(|c| format!(" ({})", esc(c)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<section class=\"api\" id=\"{}\" data-api=\"{}\"><h2>{} {}</h2>\
         <p>Owner <b>{}</b>{contact}, tier <b>{}</b>; <span class=\"life {}\">{}</span>",
        anchor(api),
        esc(&api_key(api)),
        esc(&api.name),
        esc(&api.version),
        esc(&api.owner),
        esc(&api.tier),
        esc(&life.status),
        esc(&life.text),
    );
    if let (Some(sunset), Some(days)) = (&life.sunset, life.days_to_sunset) {
        let when = if days >= 0 {
            format!("{days} days to its sunset on {}", day(sunset))
        } else {
            format!(
                "its sunset was {} days ago, on {}: it answers 410 Gone",
                -days,
                day(sunset)
            )
        };
        let _ = write!(out, "; <b>{}</b>", esc(&when));
    }
    let _ = write!(
        out,
        ".</p><p class=\"muted\">Routes: {}</p>",
        esc(&api.routes.join("; "))
    );
    let activity = api.activity.as_ref();
    if let Some(a) = activity {
        timeline_chart(out, report, a);
    }
    controls_table(out, api, activity);
    if let Some(a) = activity {
        incidents(out, a);
        callers(out, a);
    }
    out.push_str("</section>");
}

/// Decisions over time, when a replay gave times.
fn timeline_chart(out: &mut String, report: &PostureReport, a: &Activity) {
    let Some(t) = &report.timeline else {
        return;
    };
    let start = crate::traffic::time::parse_rfc3339(&t.start).unwrap_or(0);
    let width_ns = i64::try_from(t.bucket_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let at = |i: usize| {
        let ns = start.saturating_add(width_ns.saturating_mul(i64::try_from(i).unwrap_or(0)));
        clock(&crate::traffic::time::format_rfc3339(ns))
    };
    let label = |i: usize| format!("{}–{}", at(i), at(i + 1));
    let _ = write!(
        out,
        "<h3>Decisions over time <span class=\"muted\">({} per bar)</span></h3>{}",
        esc(&width(t.bucket_ms)),
        svg::timeline(&a.timeline, t.buckets, &at(0), &at(t.buckets), &label)
    );
}

/// The controls an API gets, with what each did: the policy's controls first, then any
/// control seen in traffic that no block writes (method, lifecycle, path).
fn controls_table(out: &mut String, api: &ApiView, activity: Option<&Activity>) {
    out.push_str(
        "<h3>Controls</h3><table class=\"controls\"><tr><th>control</th><th>mode</th>\
         <th>what it does</th><th>what it did</th></tr>",
    );
    let scale = activity
        .and_then(|a| a.controls.values().map(|o| o.values().sum::<u64>()).max())
        .unwrap_or(0);
    let empty = BTreeMap::new();
    let mut shown = Vec::new();
    for c in &api.controls {
        let did = c
            .control
            .as_deref()
            .and_then(|name| activity.and_then(|a| a.controls.get(name)));
        shown.extend(c.control.clone());
        let _ = write!(
            out,
            "<tr data-control=\"{}\"><td>{}</td><td>{}</td><td>{} <span class=\"muted\">[{}]</span></td><td>",
            esc(c.control.as_deref().unwrap_or(&c.field)),
            esc(&c.title),
            mode_badge(c.mode.as_deref()),
            esc(&c.text),
            esc(&c.written_by),
        );
        if activity.is_some() && c.control.is_some() {
            did_cell(out, did.unwrap_or(&empty), scale);
        }
        out.push_str("</td></tr>");
    }
    if api.lifecycle.status != "active" && !shown.iter().any(|s| s == "lifecycle") {
        shown.push("lifecycle".to_owned());
        let _ = write!(
            out,
            "<tr data-control=\"lifecycle\"><td>lifecycle</td><td>{}</td><td>{}</td><td>",
            mode_badge(api.lifecycle.mode.as_deref()),
            esc(&api.lifecycle.text),
        );
        if let Some(a) = activity {
            did_cell(out, a.controls.get("lifecycle").unwrap_or(&empty), scale);
        }
        out.push_str("</td></tr>");
    }
    if let Some(a) = activity {
        for (control, outcomes) in &a.controls {
            if shown.contains(control) {
                continue;
            }
            let _ = write!(
                out,
                "<tr data-control=\"{c}\"><td>{c}</td><td></td><td class=\"muted\">checked on \
                 every request</td><td>",
                c = esc(control)
            );
            did_cell(out, outcomes, scale);
            out.push_str("</td></tr>");
        }
    }
    out.push_str("</table>");
}

fn did_cell(out: &mut String, outcomes: &BTreeMap<String, u64>, scale: u64) {
    if outcomes.values().all(|n| *n == 0) {
        out.push_str("<span class=\"muted\">nothing</span>");
        return;
    }
    out.push_str(&svg::control_bar(outcomes, scale));
    for outcome in OUTCOMES
        .iter()
        .copied()
        .filter(|o| outcomes.contains_key(*o))
        .chain(
            outcomes
                .keys()
                .map(String::as_str)
                .filter(|o| !OUTCOMES.contains(o)),
        )
    {
        let n = outcomes.get(outcome).copied().unwrap_or(0);
        let class = if outcome == "would_block" {
            " class=\"wbn\""
        } else {
            ""
        };
        let _ = write!(
            out,
            " <span{class} data-outcome=\"{o}\">{n} {name}</span>",
            o = esc(outcome),
            name = outcome_name(outcome),
        );
    }
}

fn incidents(out: &mut String, a: &Activity) {
    if a.incidents_by_control.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Incidents</h3><table><tr><th>control</th><th>severity</th><th class=\"n\">incidents</th></tr>",
    );
    for (control, by) in &a.incidents_by_control {
        for (severity, n) in by {
            let _ = write!(
                out,
                "<tr data-control=\"{c}\" data-severity=\"{s}\"><td>{c}</td><td>{s}</td>\
                 <td class=\"n\" data-count=\"incidents\">{n}</td></tr>",
                c = esc(control),
                s = esc(severity),
            );
        }
    }
    out.push_str("</table>");
}

fn callers(out: &mut String, a: &Activity) {
    if a.deprecated_callers.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Who still calls this version</h3><table class=\"callers\"><tr><th>caller \
         (the filter's key)</th><th class=\"n\">requests</th><th>from</th><th>user agent</th></tr>",
    );
    for c in &a.deprecated_callers {
        let _ = write!(
            out,
            "<tr data-caller=\"{k}\"><td><code>{k}</code></td><td class=\"n\" data-count=\"requests\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            c.requests,
            esc(&c.clients.join(", ")),
            esc(&c.user_agents.join(", ")),
            k = esc(&c.key),
        );
    }
    out.push_str("</table>");
}

fn shadow(out: &mut String, report: &PostureReport) {
    let s = &report.shadow;
    let _ = write!(
        out,
        "<section class=\"api\" id=\"shadow\"><h2>Shadow APIs</h2><p>Requests no API of the \
         policy claims are {} {}; incidents ({}) go to <b>{}</b>.</p>",
        esc(&s.handling),
        mode_badge(Some(&s.mode)),
        esc(&s.severity),
        esc(&s.owner),
    );
    let Some(a) = &s.activity else {
        out.push_str("</section>");
        return;
    };
    let _ = write!(
        out,
        "<p><b data-count=\"requests\">{}</b> requests matched no API or were refused as \
         ambiguous paths.</p>",
        a.requests
    );
    timeline_chart(out, report, a);
    let scale = a
        .controls
        .values()
        .map(|o| o.values().sum::<u64>())
        .max()
        .unwrap_or(0);
    if !a.controls.is_empty() {
        out.push_str("<table class=\"controls\"><tr><th>control</th><th>what it did</th></tr>");
        for (control, outcomes) in &a.controls {
            let _ = write!(
                out,
                "<tr data-control=\"{c}\"><td>{c}</td><td>",
                c = esc(control)
            );
            did_cell(out, outcomes, scale);
            out.push_str("</td></tr>");
        }
        out.push_str("</table>");
    }
    incidents(out, a);
    if !s.endpoints.is_empty() {
        out.push_str(
            "<h3>Endpoints seen</h3><table id=\"shadow-endpoints\"><tr><th>method</th><th>host</th>\
             <th>path</th><th class=\"n\">requests</th><th>what the filter did</th></tr>",
        );
        for e in &s.endpoints {
            let did: Vec<String> = e
                .outcomes
                .iter()
                .map(|(o, n)| format!("{n} {}", o.replace('_', "-")))
                .collect();
            let _ = write!(
                out,
                "<tr data-path=\"{p}\"><td>{}</td><td>{}</td><td><code>{p}</code></td>\
                 <td class=\"n\" data-count=\"requests\">{}</td><td>{}</td></tr>",
                esc(&e.method),
                esc(&e.authority),
                e.requests,
                esc(&did.join(", ")),
                p = esc(&e.path),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn owners(out: &mut String, report: &PostureReport) {
    out.push_str("<section id=\"owners\"><h2>Owners and where their alerts go</h2>");
    match &report.alerts {
        Some(a) => {
            let _ = write!(
                out,
                "<p>Incidents are sent to Prometheus Alertmanager (<code>POST {}</code> through \
                 Envoy cluster <code>{}</code>, {} ms at most), one alert per API, control, event \
                 and caller every {}; each carries the labels <code>owner</code>, \
                 <code>severity</code>, <code>api</code>, <code>version</code> and \
                 <code>control</code>, so Alertmanager routes it to the owner.</p>",
                esc(&a.path),
                esc(&a.cluster),
                a.timeout_ms,
                esc(&width(a.dedupe_window_ms)),
            );
        }
        None => out.push_str(
            "<p class=\"callout\">The policy sends no alerts (no <code>notify</code> block): \
             incidents reach owners only through logs and metrics.</p>",
        ),
    }
    let traffic = report.totals.is_some();
    out.push_str("<table><tr><th>owner</th><th>contact</th><th>owns</th>");
    if traffic {
        out.push_str("<th>incidents</th><th class=\"n\">would have blocked</th>");
    }
    out.push_str("</tr>");
    for o in &report.owners {
        let _ = write!(
            out,
            "<tr data-owner=\"{}\"><td><b>{}</b></td><td>{}</td><td>{}</td>",
            esc(&o.owner),
            esc(&o.owner),
            esc(o.contact.as_deref().unwrap_or("")),
            esc(&o.apis.join(", ")),
        );
        if traffic {
            let by: Vec<String> = o
                .incidents
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            let _ = write!(
                out,
                "<td>{}</td><td class=\"n wbn\" data-count=\"would_block\">{}</td>",
                esc(&by.join(", ")),
                o.would_block
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

/// `2027-03-31T00:00:00.000Z` -> `2027-03-31`.
fn day(time: &str) -> &str {
    time.get(..10).unwrap_or(time)
}

/// `2026-11-29T09:05:00.000Z` -> `09:05` (seconds when they are not zero).
fn clock(time: &str) -> String {
    match (time.get(11..16), time.get(17..19)) {
        (Some(hm), Some("00")) => hm.to_owned(),
        (Some(_), Some(_)) => time.get(11..19).unwrap_or(time).to_owned(),
        _ => time.to_owned(),
    }
}

/// `120000` -> `2 min`.
fn width(ms: u64) -> String {
    match ms {
        ms if ms >= 86_400_000 && ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{} s", ms / 1_000),
        ms => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::{Evidence, build};

    const POLICY: &str = r#"{
        "revision": "<r&1>",
        "tiers": { "t": { "mode": "monitor", "rate_limit": { "requests": 5, "per": "1m", "key": "client_ip" } } },
        "apis": [ { "name": "pay<script>", "version": "v1", "owner": "o\"x", "tier": "t",
                    "routes": [ { "path": "/pay" } ] } ]
    }"#;

    #[test]
    fn text_from_the_policy_is_escaped_everywhere() {
        let page = render(&build(POLICY, 0, Evidence::None).unwrap());
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<r&1>"));
        assert!(page.contains("pay&lt;script&gt;"));
        assert!(page.contains("data-owner=\"o&quot;x\""));
        assert!(page.contains("id=\"api-pay-script--v1\""));
    }

    #[test]
    fn the_page_fetches_nothing() {
        let page = render(&build(POLICY, 0, Evidence::None).unwrap());
        for needle in ["<script", "<link", "src=", "url(", "@import"] {
            assert!(!page.contains(needle), "{needle} in the page");
        }
    }

    #[test]
    fn times_and_widths_read_as_people_write_them() {
        assert_eq!(clock("2026-11-29T09:05:00.000Z"), "09:05");
        assert_eq!(clock("2026-11-29T09:05:30.000Z"), "09:05:30");
        assert_eq!(width(120_000), "2 min");
        assert_eq!(width(15_000), "15 s");
        assert_eq!(width(3_600_000), "1 h");
    }
}
