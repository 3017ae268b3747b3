//! The page's charts as inline SVG, written by hand: stacked bars of decisions over time
//! and one small stacked bar per control. Fixed sizes, no script, every text escaped, so
//! the page renders the same offline in any browser.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::OUTCOMES;
use super::html::esc;

/// The colour of an outcome; would-block stands out on purpose (it is what tells an owner
/// a monitor-mode rule is ready for enforce).
pub fn colour(outcome: &str) -> &'static str {
    match outcome {
        "blocked" => "#c0392b",
        "delayed" => "#e67e22",
        "would_block" => "#7d3c98",
        "failed_open" => "#566573",
        "alerted" => "#d4ac0d",
        "annotated" => "#2e86c1",
        "logged" => "#aab7b8",
        "allowed" => "#58b368",
        _ => "#34495e",
    }
}

/// Outcomes in chart order: the known ones weightiest first, then any other by name.
fn ordered(counts: &BTreeMap<String, Vec<u64>>) -> Vec<(&str, &Vec<u64>)> {
    let known = OUTCOMES
        .iter()
        .filter_map(|o| counts.get_key_value(*o))
        .map(|(k, v)| (k.as_str(), v));
    let other = counts
        .iter()
        .filter(|(k, _)| !OUTCOMES.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v));
    known.chain(other).collect()
}

/// Decisions over time: one stacked bar per bucket, blocked at the bottom. `start_label`
/// and `end_label` mark the axis; `bucket_label(i)` names a bucket in its tooltip.
pub fn timeline(
    series: &BTreeMap<String, Vec<u64>>,
    buckets: usize,
    start_label: &str,
    end_label: &str,
    bucket_label: &dyn Fn(usize) -> String,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 110.0;
    const TOP: f64 = 8.0;
    const LEFT: f64 = 36.0;
    let plot_h = H - TOP - 18.0;
    let order = ordered(series);
    let totals: Vec<u64> = (0..buckets)
        .map(|i| {
            order
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let slot = (W - LEFT) / buckets.max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut out = format!(
        "<svg class=\"timeline\" role=\"img\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>decisions over time</title>"
    );
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#999\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{H}\" font-size=\"10\">{}</text>\
         <text x=\"{W}\" y=\"{H}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        esc(start_label),
        esc(end_label),
        y = TOP + plot_h,
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
    );
    for (i, total) in totals.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = TOP + plot_h;
        for (outcome, values) in &order {
            let n = values.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = plot_h * n as f64 / max as f64;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}: {n} {} of {total}</title></rect>",
                colour(outcome),
                esc(&bucket_label(i)),
                esc(&outcome.replace('_', "-")),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One control's outcomes as a horizontal stacked bar, `scale` requests wide.
pub fn control_bar(outcomes: &BTreeMap<String, u64>, scale: u64) -> String {
    const W: f64 = 160.0;
    const H: f64 = 12.0;
    let series: BTreeMap<String, Vec<u64>> = outcomes
        .iter()
        .map(|(k, v)| (k.clone(), vec![*v]))
        .collect();
    let mut out = format!(
        "<svg class=\"bar\" role=\"img\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"{W}\" height=\"{H}\" fill=\"#eef0f2\"/>"
    );
    let mut x = 0.0;
    for (outcome, values) in ordered(&series) {
        let n = values.first().copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let w = W * n as f64 / scale.max(1) as f64;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" width=\"{w:.1}\" height=\"{H}\" fill=\"{}\"><title>{n} {}</title></rect>",
            colour(outcome),
            esc(&outcome.replace('_', "-")),
        );
        x += w;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_stacks_each_bucket_to_its_total() {
        let series = BTreeMap::from([
            ("allowed".to_owned(), vec![2, 0, 4]),
            ("blocked".to_owned(), vec![2, 1, 0]),
        ]);
        let svg = timeline(&series, 3, "09:00", "09:03", &|i| format!("<b{i}>"));
        assert_eq!(
            svg.matches("<rect").count(),
            4,
            "one rect per non-zero count"
        );
        assert!(
            svg.contains(">4</text>"),
            "the axis shows the tallest bucket: {svg}"
        );
        assert!(svg.contains("&lt;b0&gt;: 2 blocked of 4"), "{svg}");
        assert!(!svg.contains("<b0>"), "labels are escaped");
    }

    #[test]
    fn a_control_bar_is_as_wide_as_its_share_of_the_scale() {
        let outcomes = BTreeMap::from([("would_block".to_owned(), 5), ("blocked".to_owned(), 3)]);
        let bar = control_bar(&outcomes, 16);
        assert!(bar.contains("width=\"30.0\""), "3 of 16 of 160 px: {bar}");
        assert!(
            bar.contains("x=\"30.0\" width=\"50.0\""),
            "5 of 16 next to it: {bar}"
        );
    }
}
