//! Reading Envoy's `/stats/prometheus` output: samples with their labels.

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `stakeguard_decision`.
    pub name: String,
    /// The labels in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(label, value)` pair of `want` is present.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(n, v)| self.label(n) == Some(*v))
    }
}

/// Parses Prometheus text exposition (comments and histograms' metadata are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), Vec::new()),
        Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').to_owned(), value));
        rest = after.get(end + 1..)?.trim_start_matches(',');
    }
    Some(labels)
}

/// The sum of every sample named `name` that carries all the `want` labels; `0.0` when
/// none does (a counter never incremented is not printed by Envoy).
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(want))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_values_are_read() {
        let text = "# TYPE stakeguard_decision counter\nstakeguard_decision{api=\"accounts\",outcome=\"blocked\"} 3\nplain 1.5\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].label("api"), Some("accounts"));
        assert_eq!(
            sum(&samples, "stakeguard_decision", &[("outcome", "blocked")]),
            3.0
        );
        assert_eq!(sum(&samples, "plain", &[]), 1.5);
        assert_eq!(sum(&samples, "missing", &[]), 0.0);
    }

    #[test]
    fn escaped_quotes_in_label_values_are_kept() {
        let samples = parse("m{a=\"x\\\"y\",b=\"z\"} 1");
        assert_eq!(samples[0].label("a"), Some("x\"y"));
        assert_eq!(samples[0].label("b"), Some("z"));
    }
}
