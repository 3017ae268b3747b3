//! The filter's decision and incident counters, whichever way they arrive: a replay's
//! final metrics (`stakeguard.decision.api.<a>.version.<v>.control.<c>.outcome.<o>`) or
//! Envoy's `/stats/prometheus` text, where the `stats_tags` of the example configurations
//! turn the same segments into labels (`stakeguard_decision{api,version,control,outcome}`).
//! Names and labels are those of `filter/src/metrics.rs`.

use std::collections::BTreeMap;

use crate::report::MetricReport;

/// A counter that says something about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Decision or incident.
    pub kind: CounterKind,
    /// The API's name as the metric writes it (`none` for requests no API claims).
    pub api: String,
    /// Its version (`none` likewise).
    pub version: String,
    /// The control (`none` for a plain allowed request).
    pub control: String,
    /// The decision's outcome or the incident's severity.
    pub value_label: String,
    /// The count.
    pub count: u64,
}

/// What a [`Counter`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// One per request, by its weightiest outcome.
    Decision,
    /// One per incident raised.
    Incident,
}

/// Counters that are not per request: alert deliveries, the revision in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Decisions and incidents.
    pub counters: Vec<Counter>,
    /// Alert deliveries by fate (`sent`, `failed`, `deduplicated`, `dropped`).
    pub alerts: BTreeMap<String, u64>,
    /// The revisions the proxy reports in use.
    pub revisions: Vec<String>,
}

/// The fates of alert deliveries the filter counts (`stakeguard.alerts.<fate>`).
const ALERT_FATES: [&str; 4] = ["sent", "failed", "deduplicated", "dropped"];

/// Reads a replay's final metrics.
pub fn from_metrics(metrics: &BTreeMap<String, MetricReport>) -> Counters {
    let mut out = Counters::default();
    for (name, metric) in metrics {
        let Some(rest) = name.strip_prefix("stakeguard.") else {
            continue;
        };
        if let Some(fate) = rest.strip_prefix("alerts.") {
            if ALERT_FATES.contains(&fate) {
                *out.alerts.entry(fate.to_owned()).or_default() += metric.value;
            }
        } else if let Some(revision) = rest.strip_prefix("policy.revision.") {
            if metric.value > 0 {
                out.revisions.push(revision.to_owned());
            }
        } else if let Some(counter) = dotted_counter(rest, metric.value) {
            out.counters.push(counter);
        }
    }
    out
}

/// `decision.api.a.version.v.control.c.outcome.o` (or `incident...severity.s`): the
/// segments are sanitized by the filter, so they hold no dots.
fn dotted_counter(rest: &str, count: u64) -> Option<Counter> {
    let segments: Vec<&str> = rest.split('.').collect();
    let (kind, last) = match segments.first() {
        Some(&"decision") => (CounterKind::Decision, "outcome"),
        Some(&"incident") => (CounterKind::Incident, "severity"),
        _ => return None,
    };
    match segments.get(1..) {
        Some(
            [
                "api",
                api,
                "version",
                version,
                "control",
                control,
                key,
                value,
            ],
        ) if *key == last => Some(Counter {
            kind,
            api: (*api).to_owned(),
            version: (*version).to_owned(),
            control: (*control).to_owned(),
            value_label: (*value).to_owned(),
            count,
        }),
        _ => None,
    }
}

/// An error reading Prometheus text: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct PrometheusError {
    /// The file or URL.
    pub source_name: String,
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads Envoy's `/stats/prometheus` text; `source_name` names it in errors. Samples of
/// other metrics are skipped; a stakeguard sample that cannot be read is an error, and so
/// is a decision or incident counter without its labels (Envoy without the `stats_tags`
/// of `envoy-examples/standalone/envoy.yaml` prints the segments in the name instead).
pub fn from_prometheus(source_name: &str, text: &str) -> Result<Counters, PrometheusError> {
    let mut out = Counters::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || !line.starts_with("stakeguard_") {
            continue;
        }
        let err = |message: String| PrometheusError {
            source_name: source_name.to_owned(),
            line: i + 1,
            message,
        };
        let (name, labels, value) = sample(line).map_err(err)?;
        let count = |value: f64| -> Result<u64, PrometheusError> {
            // Counters are whole numbers; Envoy prints them without a fraction.
            if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
                Ok(value as u64)
            } else {
                Err(err(format!("`{name}` has value {value}; expected a count")))
            }
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    err(format!(
                        "`{name}` has no `{key}` label; give Envoy the stats_tags of \
                         envoy-examples/standalone/envoy.yaml"
                    ))
                })
        };
        let kind = match name {
            "stakeguard_decision" => Some((CounterKind::Decision, "outcome")),
            "stakeguard_incident" => Some((CounterKind::Incident, "severity")),
            _ => None,
        };
        if let Some((kind, last)) = kind {
            out.counters.push(Counter {
                kind,
                api: label("api")?,
                version: label("version")?,
                control: label("control")?,
                value_label: label(last)?,
                count: count(value)?,
            });
        } else if name.starts_with("stakeguard_decision_")
            || name.starts_with("stakeguard_incident_")
        {
            return Err(err(format!(
                "`{name}` carries its labels in its name; give Envoy the stats_tags of \
                 envoy-examples/standalone/envoy.yaml"
            )));
        } else if let Some(fate) = name.strip_prefix("stakeguard_alerts_") {
            if ALERT_FATES.contains(&fate) {
                *out.alerts.entry(fate.to_owned()).or_default() += count(value)?;
            }
        } else if name == "stakeguard_policy" && value > 0.0 {
            out.revisions.push(label("revision")?);
        }
    }
    Ok(out)
}

/// A sample's labels, in order.
type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Result<(&str, Labels, f64), String> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (name, after) = line.split_at(open);
            let (labels, rest) = labels(after.get(1..).unwrap_or_default())?;
            (name, labels, rest)
        }
        None => {
            let (name, rest) = line
                .split_once([' ', '\t'])
                .ok_or_else(|| format!("`{line}` has no value"))?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("`{name}` has no value"))?;
    let value = value
        .parse::<f64>()
        .map_err(|_| format!("`{name}` has value `{value}`; expected a number"))?;
    Ok((name, labels, value))
}

/// Reads `a="x",b="y"}` and returns the labels and what follows the `}`.
fn labels(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((out, after));
        }
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("bad labels at `{rest}`; expected name=\"value\""))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label `{key}` has no closing quote")),
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label `{key}` ends in a backslash")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.trim().to_owned(), value));
        rest = after.get(end + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(value: u64) -> MetricReport {
        MetricReport {
            kind: "counter".to_owned(),
            value,
            samples: None,
        }
    }

    #[test]
    fn replay_metrics_are_read_from_their_dotted_names() {
        let metrics = BTreeMap::from([
            (
                "stakeguard.decision.api.login.version.v2.control.login.outcome.would_block"
                    .to_owned(),
                metric(3),
            ),
            (
                "stakeguard.incident.api.none.version.none.control.unknown_route.severity.ticket"
                    .to_owned(),
                metric(2),
            ),
            ("stakeguard.alerts.sent".to_owned(), metric(4)),
            ("stakeguard.policy.revision.r-1".to_owned(), metric(1)),
            ("stakeguard.config.accepted".to_owned(), metric(2)),
        ]);
        let counters = from_metrics(&metrics);
        assert_eq!(counters.counters.len(), 2);
        assert_eq!(counters.counters[0].value_label, "would_block");
        assert_eq!(counters.counters[0].count, 3);
        assert_eq!(counters.counters[1].kind, CounterKind::Incident);
        assert_eq!(counters.counters[1].control, "unknown_route");
        assert_eq!(counters.alerts.get("sent"), Some(&4));
        assert_eq!(counters.revisions, vec!["r-1"]);
    }

    #[test]
    fn prometheus_samples_are_read_from_their_labels() {
        let text = "# TYPE stakeguard_decision counter\n\
            stakeguard_decision{api=\"accounts\",version=\"v2\",control=\"auth\",outcome=\"blocked\"} 3\n\
            stakeguard_incident{api=\"a\\\"b\",version=\"v0\",control=\"lifecycle\",severity=\"ticket\"} 1 1700000000\n\
            stakeguard_alerts_failed{} 2\n\
            stakeguard_policy{revision=\"bank-1\"} 1\n\
            envoy_cluster_upstream_rq{envoy_cluster_name=\"x\"} 7\n";
        let counters = from_prometheus("stats.txt", text).unwrap();
        assert_eq!(counters.counters.len(), 2);
        assert_eq!(counters.counters[0].control, "auth");
        assert_eq!(counters.counters[0].count, 3);
        assert_eq!(counters.counters[1].api, "a\"b");
        assert_eq!(counters.alerts.get("failed"), Some(&2));
        assert_eq!(counters.revisions, vec!["bank-1"]);
    }

    #[test]
    fn prometheus_errors_name_the_line_and_the_fix() {
        let untagged =
            "x 1\nstakeguard_decision_api_login_version_v2_control_none_outcome_allowed{} 5\n";
        let e = from_prometheus("http://127.0.0.1:9901/stats/prometheus", untagged).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string()
                .starts_with("http://127.0.0.1:9901/stats/prometheus:2: ")
        );
        assert!(e.message.contains("stats_tags"), "{e}");
        let no_label = "stakeguard_decision{api=\"a\",version=\"v\",control=\"c\"} 1\n";
        let e = from_prometheus("f", no_label).unwrap_err();
        assert!(e.message.contains("no `outcome` label"), "{e}");
        let e = from_prometheus("f", "stakeguard_alerts_sent{} many\n").unwrap_err();
        assert!(e.message.contains("expected a number"), "{e}");
        let e = from_prometheus("f", "stakeguard_alerts_sent{} 1.5\n").unwrap_err();
        assert!(e.message.contains("expected a count"), "{e}");
        let e = from_prometheus("f", "stakeguard_decision{api=\"a} 1\n").unwrap_err();
        assert!(e.message.contains("closing quote"), "{e}");
    }
}
