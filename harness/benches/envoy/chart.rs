//! `envoy.svg`: throughput and latency of configurations (a)–(e) at a glance, drawn from
//! `envoy.json` by hand (grouped bars, fixed size, no script), texts escaped by the
//! posture report's escaper.

use std::fmt::Write;

use serde_json::Value;
use stakeguard_harness::posture::html::esc;

use crate::report::med;

const CONFIGURATIONS: [&str; 5] = [
    "(a) no filter",
    "(b) empty Wasm filter",
    "(c) stakeguard, allow",
    "(d) stakeguard, deny",
    "(e) Envoy native filters",
];

/// The mean over a configuration's requests of each request's median of `name` in the
/// `runs` or `latency` list `list` of `mode`'s rows.
fn figure(
    overhead: &Value,
    mode: &str,
    configuration: &str,
    list: &str,
    name: &str,
) -> Option<f64> {
    let medians: Vec<f64> = overhead["rows"]
        .as_array()?
        .iter()
        .filter(|r| r["mode"] == mode && r["configuration"] == configuration)
        .filter_map(|r| {
            let values: Vec<f64> = r[list]
                .as_array()?
                .iter()
                .filter_map(|v| v[name].as_f64())
                .collect();
            (!values.is_empty()).then(|| med(&values))
        })
        .collect();
    (!medians.is_empty()).then(|| medians.iter().sum::<f64>() / medians.len() as f64)
}

/// A round axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice(max: f64) -> f64 {
    let power = 10f64.powf(max.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

/// One panel: `series` (name, colour, a value per configuration) as grouped bars.
fn panel(
    out: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    series: &[(&str, &str, Vec<Option<f64>>)],
) {
    const W: f64 = 380.0;
    const TOP: f64 = 40.0;
    const PLOT_H: f64 = 200.0;
    const LEFT: f64 = 50.0;
    let max = nice(
        series
            .iter()
            .flat_map(|(_, _, v)| v.iter().flatten())
            .copied()
            .fold(0.0, f64::max),
    );
    let base = TOP + PLOT_H;
    let _ = write!(
        out,
        "<text x=\"{:.0}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        x0 + LEFT,
        esc(title)
    );
    for step in 0..=4 {
        let value = max * f64::from(step) / 4.0;
        let y = base - PLOT_H * f64::from(step) / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{:.0}\" y1=\"{y:.1}\" x2=\"{:.0}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            x0 + LEFT,
            x0 + W,
            x0 + LEFT - 4.0,
            y + 3.0,
            compact(value),
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" transform=\"rotate(-90 {:.0} {:.0})\" text-anchor=\"middle\">{}</text>",
        x0 + 10.0,
        TOP + PLOT_H / 2.0,
        x0 + 10.0,
        TOP + PLOT_H / 2.0,
        esc(unit)
    );
    let slot = (W - LEFT) / CONFIGURATIONS.len() as f64;
    let bar = slot * 0.8 / series.len().max(1) as f64;
    for (c, configuration) in CONFIGURATIONS.iter().enumerate() {
        let left = x0 + LEFT + slot * c as f64 + slot * 0.1;
        for (s, (name, colour, values)) in series.iter().enumerate() {
            let Some(value) = values.get(c).copied().flatten() else {
                continue;
            };
            let h = PLOT_H * value / max;
            let x = left + bar * s as f64;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\">\
                 <title>{}: {} {value:.0} {}</title></rect>",
                base - h,
                bar - 1.0,
                esc(configuration),
                esc(name),
                esc(unit),
            );
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"8\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                base - h - 2.0,
                compact(value)
            );
        }
        let label = configuration
            .split_once(' ')
            .map_or(*configuration, |(l, _)| l);
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            left + slot * 0.4,
            base + 14.0,
            esc(label)
        );
    }
    for (s, (name, colour, _)) in series.iter().enumerate() {
        let x = x0 + LEFT + 120.0 * s as f64;
        let _ = write!(
            out,
            "<rect x=\"{x:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\">{}</text>",
            base + 24.0,
            x + 14.0,
            base + 33.0,
            esc(name)
        );
    }
}

/// `12.3k` for 12,300; whole numbers below 1,000.
fn compact(value: f64) -> String {
    if value >= 1_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else {
        format!("{value:.0}")
    }
}

/// The chart of `envoy.json`'s overhead section (empty panels without one).
pub fn svg(all: &Value) -> String {
    let overhead = &all["overhead"];
    let per_configuration = |mode: &str, list: &str, name: &str| -> Vec<Option<f64>> {
        CONFIGURATIONS
            .iter()
            .map(|c| figure(overhead, mode, c, list, name))
            .collect()
    };
    let rate = overhead["latency_rate"].as_u64().unwrap_or(0);
    let mut out = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 800 330\" width=\"800\" height=\"330\" \
         font-family=\"sans-serif\" role=\"img\"><title>stakeguard in Envoy: throughput and latency of (a)–(e)</title>\
         <rect width=\"800\" height=\"330\" fill=\"#fff\"/>",
    );
    panel(
        &mut out,
        0.0,
        "Throughput, one worker",
        "requests/s",
        &[
            (
                "direct_response",
                "#2e86c1",
                per_configuration("direct_response", "runs", "requests_per_second"),
            ),
            (
                "proxy",
                "#85c1e9",
                per_configuration("proxy", "runs", "requests_per_second"),
            ),
        ],
    );
    panel(
        &mut out,
        410.0,
        // Short enough for the panel's 380 px at 13 px bold.
        &format!("Latency at {rate} req/s (open loop, direct)"),
        "µs",
        &[
            (
                "p50",
                "#58b368",
                per_configuration("direct_response", "latency", "p50_us"),
            ),
            (
                "p99",
                "#c0392b",
                per_configuration("direct_response", "latency", "p99_us"),
            ),
        ],
    );
    let _ = write!(
        out,
        "<text x=\"50\" y=\"306\" font-size=\"10\" fill=\"#555\">(a) no filter · (b) empty Wasm filter · (c) stakeguard, allow path · (d) stakeguard, deny path (local 4xx)</text>\
         <text x=\"50\" y=\"320\" font-size=\"10\" fill=\"#555\">(e) RBAC + local rate limit + header mutation · bars: mean of each configuration's request medians · Envoy 1.40.0, {}</text>",
        esc(&crate::report::utc(
            overhead["measured"]["unix_time"].as_u64().unwrap_or(0)
        ))
    );
    out.push_str("</svg>\n");
    out
}
