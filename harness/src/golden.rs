//! Golden files: compare a replay's JSON Lines with an expected file and describe every
//! difference by entry index and field, expected versus got.

use std::collections::BTreeSet;

use serde_json::Value;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Line in the files (1-based) and, for entries, the entry index.
    pub place: String,
    /// JSON path of the field.
    pub field: String,
    /// Expected value (JSON), or `(absent)`.
    pub expected: String,
    /// Value got (JSON), or `(absent)`.
    pub got: String,
}

fn walk(
    path: &str,
    expected: Option<&Value>,
    got: Option<&Value>,
    out: &mut Vec<(String, String, String)>,
) {
    match (expected, got) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
            out.push((path.to_string(), show(a), show(b)));
        }
    }
}

/// Compares two JSON Lines texts.
pub fn compare(expected: &str, got: &str) -> Vec<Difference> {
    let parse = |t: &str| -> Vec<Option<Value>> {
        t.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let (e, g) = (parse(expected), parse(got));
    let mut out = Vec::new();
    for i in 0..e.len().max(g.len()) {
        let (a, b) = (e.get(i).cloned().flatten(), g.get(i).cloned().flatten());
        let index = a
            .as_ref()
            .or(b.as_ref())
            .and_then(|v| v.get("index"))
            .and_then(Value::as_u64);
        let place = match index {
            Some(n) => format!("line {} (entry {n})", i + 1),
            None => format!("line {}", i + 1),
        };
        let mut diffs = Vec::new();
        walk("", a.as_ref(), b.as_ref(), &mut diffs);
        for (field, expected, got) in diffs {
            out.push(Difference {
                place: place.clone(),
                field: if field.is_empty() {
                    "(line)".to_string()
                } else {
                    field
                },
                expected,
                got,
            });
        }
    }
    out
}

/// A readable rendering of differences.
pub fn render(diffs: &[Difference]) -> String {
    let mut out = String::new();
    for d in diffs {
        out.push_str(&format!(
            "{}: {}\n  expected: {}\n  got:      {}\n",
            d.place, d.field, d.expected, d.got
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_entry_and_field() {
        let expected =
            "{\"index\":0,\"status\":200,\"logs\":[\"a\"]}\n{\"summary\":{\"requests\":1}}\n";
        let got = "{\"index\":0,\"status\":403,\"logs\":[\"a\"]}\n{\"summary\":{\"requests\":1}}\n";
        let d = compare(expected, got);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].place, "line 1 (entry 0)");
        assert_eq!(d[0].field, "status");
        assert_eq!((d[0].expected.as_str(), d[0].got.as_str()), ("200", "403"));
        assert!(compare(expected, expected).is_empty());
        assert_eq!(compare(expected, "").len(), 2);
    }
}
