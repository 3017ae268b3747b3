//! A small validator for Kubernetes CRD schemas (`openAPIV3Schema`), covering the subset
//! Istio's CRDs use: `type`, `properties`, `required`, `enum`, `pattern`, `minLength`,
//! `maxLength`, `minimum`, `maximum`, `maxItems`, `maxProperties`, `items`,
//! `additionalProperties`, `nullable`, `format: int32`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string`, `oneOf`/`anyOf`/`allOf`/`not` (as used with `required`)
//! and the list-map keys of `x-kubernetes-list-type: map`.
//!
//! Two choices differ from a bare API server on purpose: an unknown field is an error
//! (the API server would prune it silently, hiding a typo such as `failStratgy`), and every
//! `x-kubernetes-validations` rule is handed to a caller-supplied checker, which must
//! implement it by hand (there is no CEL interpreter here) or report it unknown, so a new
//! rule in a newer CRD cannot pass unnoticed.

use serde_json::Value;

/// One violation: where (a JSON path such as `spec.wasm.url`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The path of the offending value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks one `x-kubernetes-validations` rule: `rule` is the CEL text, `value` is `self`.
/// Returns `Ok(true)` when it holds, `Ok(false)` when it does not, `Err` when the checker
/// does not know the rule.
pub type RuleChecker<'a> = dyn Fn(&str, &Value) -> Result<bool, String> + 'a;

/// The `openAPIV3Schema` of a CRD's version `version`.
pub fn crd_schema<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
}

/// Validates `value` against `schema`; every violation is returned (empty when valid).
pub fn validate(schema: &Value, value: &Value, rules: &RuleChecker<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, value, "", rules, &mut out);
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn push(out: &mut Vec<Violation>, path: &str, message: String) {
    out.push(Violation {
        path: if path.is_empty() {
            "<root>".to_owned()
        } else {
            path.to_owned()
        },
        message,
    });
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, value: &Value) -> bool {
    let got = type_name(value);
    got == want || (want == "number" && got == "integer")
}

fn check(
    schema: &Value,
    value: &Value,
    path: &str,
    rules: &RuleChecker<'_>,
    out: &mut Vec<Violation>,
) {
    let Some(s) = schema.as_object() else {
        return;
    };
    let flag = |name: &str| s.get(name).and_then(Value::as_bool).unwrap_or(false);
    if value.is_null() && flag("nullable") {
        return;
    }
    let int_or_string = flag("x-kubernetes-int-or-string");
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            push(
                out,
                path,
                format!("expected an integer or a string, got {}", type_name(value)),
            );
            return;
        }
    } else if let Some(want) = s.get("type").and_then(Value::as_str)
        && !type_matches(want, value)
    {
        push(
            out,
            path,
            format!("expected {want}, got {}", type_name(value)),
        );
        // Nothing below makes sense for a value of the wrong type.
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        push(
            out,
            path,
            format!("{value} is not one of {}", Value::Array(allowed.clone())),
        );
    }
    match value {
        Value::String(text) => check_string(s, text, path, out),
        Value::Number(n) => check_number(s, n, path, out),
        Value::Array(items) => check_array(s, items, path, rules, out),
        Value::Object(map) => check_object(s, map, path, rules, out),
        _ => {}
    }
    check_combinators(s, value, path, rules, out);
    if let Some(validations) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        for v in validations {
            let rule = v.get("rule").and_then(Value::as_str).unwrap_or_default();
            let message = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("validation rule failed");
            match rules(rule, value) {
                Ok(true) => {}
                Ok(false) => push(out, path, format!("{message} (rule `{rule}`)")),
                Err(e) => push(out, path, format!("rule not checked: {e}: `{rule}`")),
            }
        }
    }
}

fn check_string(
    s: &serde_json::Map<String, Value>,
    text: &str,
    path: &str,
    out: &mut Vec<Violation>,
) {
    // Kubernetes counts string lengths in characters (runes), not bytes.
    let len = text.chars().count() as u64;
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        push(out, path, format!("length {len} is below minLength {min}"));
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        push(out, path, format!("length {len} is above maxLength {max}"));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => push(
                out,
                path,
                format!("{text:?} does not match pattern {pattern}"),
            ),
            Err(e) => push(out, path, format!("bad pattern {pattern}: {e}")),
        }
    }
}

fn check_number(
    s: &serde_json::Map<String, Value>,
    n: &serde_json::Number,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let v = n.as_f64().unwrap_or(f64::NAN);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && v < min
    {
        push(out, path, format!("{n} is below minimum {min}"));
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64)
        && v > max
    {
        push(out, path, format!("{n} is above maximum {max}"));
    }
    if s.get("format").and_then(Value::as_str) == Some("int32")
        && n.as_i64().is_none_or(|i| i32::try_from(i).is_err())
    {
        push(out, path, format!("{n} does not fit int32"));
    }
}

fn check_array(
    s: &serde_json::Map<String, Value>,
    items: &[Value],
    path: &str,
    rules: &RuleChecker<'_>,
    out: &mut Vec<Violation>,
) {
    let len = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        push(out, path, format!("{len} items, above maxItems {max}"));
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        push(out, path, format!("{len} items, below minItems {min}"));
    }
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), rules, out);
        }
    }
    // A list map: its keys must be unique across items.
    if s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
        && let Some(keys) = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
    {
        let mut seen = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key: Vec<Option<&Value>> = keys
                .iter()
                .filter_map(Value::as_str)
                .map(|k| item.get(k))
                .collect();
            if seen.contains(&key) {
                push(
                    out,
                    &format!("{path}[{i}]"),
                    format!(
                        "duplicate entry for list-map keys {}",
                        Value::Array(keys.clone())
                    ),
                );
            }
            seen.push(key);
        }
    }
}

fn check_object(
    s: &serde_json::Map<String, Value>,
    map: &serde_json::Map<String, Value>,
    path: &str,
    rules: &RuleChecker<'_>,
    out: &mut Vec<Violation>,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                push(out, path, format!("required field `{name}` is missing"));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        push(
            out,
            path,
            format!("{} properties, above maxProperties {max}", map.len()),
        );
    }
    let properties = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (key, v) in map {
        let at = child(path, key);
        if let Some(prop) = properties.and_then(|p| p.get(key)) {
            check(prop, v, &at, rules, out);
        } else if let Some(additional) = additional {
            match additional {
                Value::Bool(false) => push(out, &at, "no additional properties allowed".to_owned()),
                Value::Bool(true) => {}
                schema => check(schema, v, &at, rules, out),
            }
        } else if !preserve && properties.is_some() {
            push(out, &at, "unknown field".to_owned());
        }
    }
}

fn check_combinators(
    s: &serde_json::Map<String, Value>,
    value: &Value,
    path: &str,
    rules: &RuleChecker<'_>,
    out: &mut Vec<Violation>,
) {
    let passes = |schema: &Value| validate_at(schema, value, path, rules).is_empty();
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for schema in all {
            check(schema, value, path, rules, out);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        push(
            out,
            path,
            format!("matches none of anyOf {}", Value::Array(any.clone())),
        );
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let matching = one.iter().filter(|schema| passes(schema)).count();
        if matching != 1 {
            push(
                out,
                path,
                format!(
                    "matches {matching} of oneOf {}, expected exactly 1",
                    Value::Array(one.clone())
                ),
            );
        }
    }
    if let Some(not) = s.get("not")
        && passes(not)
    {
        push(out, path, format!("must not match {not}"));
    }
}

fn validate_at(
    schema: &Value,
    value: &Value,
    path: &str,
    rules: &RuleChecker<'_>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, value, path, rules, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_rules(rule: &str, _: &Value) -> Result<bool, String> {
        Err(format!("unknown rule {rule}"))
    }

    #[test]
    fn types_enums_lengths_and_patterns_are_checked() {
        let schema = json!({
            "type": "object",
            "required": ["a"],
            "properties": {
                "a": { "type": "string", "enum": ["x", "y"] },
                "b": { "type": "string", "pattern": "^[a-f0-9]{4}$", "maxLength": 4 },
                "c": { "type": "array", "maxItems": 1, "items": { "type": "integer", "maximum": 3 } }
            }
        });
        assert!(
            validate(
                &schema,
                &json!({"a": "x", "b": "beef", "c": [3]}),
                &no_rules
            )
            .is_empty()
        );
        let bad = validate(
            &schema,
            &json!({"a": "z", "b": "BEEF!", "c": [4, 1], "d": 1}),
            &no_rules,
        );
        let paths: Vec<&str> = bad.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "b", "c", "c[0]", "d"], "{bad:#?}");
        let missing = validate(&schema, &json!({}), &no_rules);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].message.contains("required field `a`"));
    }

    #[test]
    fn one_of_with_not_any_of_required_means_at_most_one() {
        let schema = json!({
            "type": "object",
            "properties": { "wasm": { "type": "object" }, "lua": { "type": "object" } },
            "oneOf": [
                { "not": { "anyOf": [ { "required": ["wasm"] }, { "required": ["lua"] } ] } },
                { "required": ["wasm"] },
                { "required": ["lua"] }
            ]
        });
        assert!(validate(&schema, &json!({}), &no_rules).is_empty());
        assert!(validate(&schema, &json!({"wasm": {}}), &no_rules).is_empty());
        assert_eq!(
            validate(&schema, &json!({"wasm": {}, "lua": {}}), &no_rules).len(),
            1
        );
    }

    #[test]
    fn preserved_objects_accept_anything_and_unknown_rules_are_reported() {
        let schema = json!({
            "type": "object",
            "properties": {
                "config": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                "name": { "type": "string", "x-kubernetes-validations": [ { "rule": "self.size() > 0", "message": "m" } ] }
            }
        });
        assert!(
            validate(
                &schema,
                &json!({"config": {"any": [1, {"x": null}]}}),
                &no_rules
            )
            .is_empty()
        );
        let unknown = validate(&schema, &json!({"name": "n"}), &no_rules);
        assert_eq!(unknown.len(), 1);
        assert!(unknown[0].message.starts_with("rule not checked"));
    }
}
