//! The Istio manifests in `envoy-examples/istio/` (`WasmPlugin` and `TrafficExtension`)
//! are valid against their CRDs: the OpenAPI v3 schema (`tests/src/openapi.rs`) and every
//! CEL rule of `x-kubernetes-validations`, each re-implemented here by hand with the rule
//! quoted, and each shown to fail on a manifest that breaks it. Their `pluginConfig` is the
//! bank policy (`policies/examples/bank.json`), written so that Kubernetes' YAML 1.1 parser
//! reads the same values.
//!
//! The CRDs are read from `shared/istio/` beside the repository (CI lays it there).
//! `STAKEGUARD_UPDATE_ISTIO=1` rewrites the manifests' `pluginConfig` from bank.json and
//! their `failStrategy` with the one it needs (`make istio`), since the policy moves with
//! the product.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use stakeguard_packaging::{Image, ImageOptions};
use stakeguard_tests::openapi::{self, Violation};
use stakeguard_tests::{repo_root, require_filter_wasm};

const WASM_PLUGIN: &str = "envoy-examples/istio/wasmplugin.yaml";
const TRAFFIC_EXTENSION: &str = "envoy-examples/istio/trafficextension.yaml";

fn shared_istio() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/istio");
    assert!(
        dir.is_dir(),
        "the Istio CRDs are expected in {} (shared/ beside the repository)",
        dir.display()
    );
    dir
}

fn crd_schema(file: &str) -> Value {
    let text = std::fs::read_to_string(shared_istio().join(file)).unwrap();
    let crd: Value = serde_norway::from_str(&text).unwrap();
    openapi::crd_schema(&crd, "v1alpha1").unwrap().clone()
}

fn manifest(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bank() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap(),
    )
    .unwrap()
}

/// A CEL rule's text with its whitespace collapsed, so a rule folded over several YAML
/// lines compares equal to the one-line form quoted below.
fn normalize(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn has(value: &Value, field: &str) -> bool {
    value.get(field).is_some()
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The scheme and the rest of a URL, as Go's `url.getScheme` splits them: a scheme is
/// `[A-Za-z][A-Za-z0-9+.-]*` before the first `:`; a `:` first is an error; any other
/// character before a `:` means there is no scheme.
fn go_scheme(s: &str) -> Result<(String, &str), ()> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err(()),
            ':' => return Ok((s[..i].to_ascii_lowercase(), &s[i + 1..])),
            _ => return Ok((String::new(), s)),
        }
    }
    Ok((String::new(), s))
}

/// Kubernetes CEL `isURL`: Go's `url.ParseRequestURI` succeeds. With a scheme, any rest is
/// accepted (an opaque URL or `//authority/path`, whose port must be numeric); without
/// one, only an absolute path.
fn is_url(s: &str) -> bool {
    let Ok((scheme, rest)) = go_scheme(s) else {
        return false;
    };
    if s.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return false;
    }
    if let Some(after) = rest.strip_prefix("//") {
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        if let Some((_, port)) = host_port.rsplit_once(':')
            && !host_port.ends_with(']')
            && !port.chars().all(|c| c.is_ascii_digit())
        {
            return false;
        }
        return true;
    }
    !scheme.is_empty() || rest.starts_with('/')
}

/// `url(s).getScheme()`.
fn url_scheme(s: &str) -> String {
    go_scheme(s).map(|(scheme, _)| scheme).unwrap_or_default()
}

/// The `x-kubernetes-validations` rules of the two CRDs, by hand. An unknown rule is an
/// error, so a CRD that gains a rule fails this test until the rule is implemented here.
fn cel(rule: &str, this: &Value) -> Result<bool, String> {
    let schemes = ["", "http", "https", "oci", "file"];
    match normalize(rule).as_str() {
        // `!self.contains("*")` (a matchLabels value)
        r#"!self.contains("*")"# => Ok(!str_of(this).contains('*')),
        // `self.all(key, !key.contains("*"))` (matchLabels keys)
        r#"self.all(key, !key.contains("*"))"# => Ok(this
            .as_object()
            .is_some_and(|m| m.keys().all(|k| !k.contains('*')))),
        // `self.all(key, key.size() != 0)`
        "self.all(key, key.size() != 0)" => Ok(this
            .as_object()
            .is_some_and(|m| m.keys().all(|k| !k.is_empty()))),
        // `self.size() == 0` (targetRef namespace: cross-namespace references refused)
        "self.size() == 0" => Ok(str_of(this).is_empty()),
        // `isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"])
        //   : (isURL("http://" + self) && url("http://" + self).getScheme() in [...])`
        // (TrafficExtension lists the same schemes as "file", "oci".)
        r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"#
        | r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])"# =>
        {
            let s = str_of(this);
            Ok(if is_url(s) {
                schemes.contains(&url_scheme(s).as_str())
            } else {
                let prefixed = format!("http://{s}");
                is_url(&prefixed) && schemes.contains(&url_scheme(&prefixed).as_str())
            })
        }
        // `(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)`
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"# => {
            let value_from = this.get("valueFrom").map_or("", str_of);
            Ok(value_from != "HOST" || !has(this, "value"))
        }
        // WasmPlugin: `(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0)
        //   + (has(self.targetRefs) ? 1 : 0) <= 1`
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            Ok(["selector", "targetRef", "targetRefs"]
                .iter()
                .filter(|f| has(this, f))
                .count()
                <= 1)
        }
        // TrafficExtension: `(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1`
        "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            Ok(["selector", "targetRefs"]
                .iter()
                .filter(|f| has(this, f))
                .count()
                <= 1)
        }
        // TrafficExtension: `has(self.wasm) != has(self.lua)`
        "has(self.wasm) != has(self.lua)" => Ok(has(this, "wasm") != has(this, "lua")),
        other => Err(format!("no hand implementation of `{other}`")),
    }
}

/// The object below `apiVersion`/`kind`/`metadata`, which the CRD schema describes (the
/// API server checks the envelope itself).
fn body(manifest: &Value) -> Value {
    let mut body = manifest.clone();
    if let Some(map) = body.as_object_mut() {
        for field in ["apiVersion", "kind", "metadata"] {
            map.remove(field);
        }
    }
    body
}

/// Every violation of a whole manifest: its envelope, then the CRD schema and rules.
fn validate_manifest(schema: &Value, manifest: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if manifest["apiVersion"] != "extensions.istio.io/v1alpha1" {
        out.push(Violation {
            path: "apiVersion".to_owned(),
            message: "expected extensions.istio.io/v1alpha1".to_owned(),
        });
    }
    if manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        out.push(Violation {
            path: "metadata.name".to_owned(),
            message: "missing".to_owned(),
        });
    }
    out.extend(openapi::validate(schema, &body(manifest), &cel));
    out
}

fn assert_valid(schema: &Value, manifest: &Value, what: &str) {
    let found = validate_manifest(schema, manifest);
    assert!(found.is_empty(), "{what}: {found:#?}");
}

fn assert_breaks(schema: &Value, manifest: &Value, path: &str, message: &str) {
    let found = validate_manifest(schema, manifest);
    assert!(
        found
            .iter()
            .any(|v| v.path == path && v.message.contains(message)),
        "expected `{message}` at {path}, got {found:#?}"
    );
}

/// The manifest's `pluginConfig`.
fn plugin_config(manifest: &Value) -> &Value {
    manifest
        .pointer("/spec/pluginConfig")
        .or_else(|| manifest.pointer("/spec/wasm/pluginConfig"))
        .unwrap()
}

/// Rewrites everything after the `pluginConfig:` line (the last key of each manifest)
/// with bank.json as YAML, keeping the document's key order.
fn update_plugin_config(path: &str) {
    let file = repo_root().join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    let (head, _) = text.split_once("pluginConfig:\n").unwrap();
    let indent = head.lines().last().unwrap_or_default().len() + 2;
    let bank_text =
        std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap();
    let ordered: serde_norway::Value = serde_json::from_str(&bank_text).unwrap();
    let yaml = quote_yaml11(&serde_norway::to_string(&ordered).unwrap());
    let body: String = yaml
        .lines()
        .map(|l| format!("{}{l}\n", " ".repeat(indent)))
        .collect();
    std::fs::write(&file, format!("{head}pluginConfig:\n{body}")).unwrap();
}

/// The `failStrategy` the bank policy needs: what a trap in the module leaves requests
/// (`stakeguard check --explain` says it too).
fn bank_fail_strategy() -> &'static str {
    let text = std::fs::read_to_string(repo_root().join("policies/examples/bank.json")).unwrap();
    stakeguard_policies::posture::posture(&text)
        .unwrap()
        .on_trap
        .istio()
}

/// Rewrites the manifest's `failStrategy:` line with the one the bank policy needs.
fn update_fail_strategy(path: &str) {
    let file = repo_root().join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: String = text
        .lines()
        .map(|line| match line.split_once("failStrategy: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                format!("{indent}failStrategy: {}\n", bank_fail_strategy())
            }
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
}

/// Whether a plain (unquoted) YAML scalar reads differently under YAML 1.1, which
/// Kubernetes' parser (sigs.k8s.io/yaml on go-yaml v2) follows: `on`/`off`/`yes`/`no`/`y`/`n`
/// are booleans there, and a date or time is a timestamp; both stay strings under the
/// YAML 1.2 rules `serde_norway` follows, so quoting them keeps the two readings equal.
fn yaml11_ambiguous(plain: &str) -> bool {
    let words = ["y", "n", "yes", "no", "on", "off"];
    let date = plain.len() >= 10
        && plain.char_indices().take(10).all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    words.iter().any(|w| plain.eq_ignore_ascii_case(w)) || date
}

/// The value part of a YAML block line (`key: value` or `- value`), if any.
fn line_value(line: &str) -> Option<(usize, &str)> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let start = if let Some(i) = line.find(": ") {
        i + 2
    } else {
        let trimmed = line.trim_start();
        trimmed.strip_prefix("- ")?;
        line.len() - trimmed.len() + 2
    };
    Some((start, line[start..].trim_end()))
}

/// The lines whose plain scalar a YAML 1.1 parser reads differently.
fn yaml11_ambiguous_lines(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    text.lines()
        .filter(|l| line_value(l).is_some_and(|(_, v)| yaml11_ambiguous(v)))
        .map(str::to_owned)
        .collect()
}

/// Quotes the plain scalars a YAML 1.1 parser would read differently.
fn quote_yaml11(yaml: &str) -> String {
    yaml.lines()
        .map(|l| match line_value(l) {
            Some((start, v)) if yaml11_ambiguous(v) => format!("{}'{v}'\n", &l[..start]),
            _ => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn the_manifests_carry_the_bank_policy() {
    if std::env::var_os("STAKEGUARD_UPDATE_ISTIO").is_some() {
        update_plugin_config(WASM_PLUGIN);
        update_plugin_config(TRAFFIC_EXTENSION);
        update_fail_strategy(WASM_PLUGIN);
        update_fail_strategy(TRAFFIC_EXTENSION);
    }
    for path in [WASM_PLUGIN, TRAFFIC_EXTENSION] {
        assert!(
            *plugin_config(&manifest(path)) == bank(),
            "{path}: pluginConfig differs from policies/examples/bank.json; run `make istio` \
             (STAKEGUARD_UPDATE_ISTIO=1 cargo test -p stakeguard-tests --test istio_manifests)"
        );
        let ambiguous = yaml11_ambiguous_lines(path);
        assert!(
            ambiguous.is_empty(),
            "{path}: Kubernetes (YAML 1.1) reads these as booleans or timestamps; quote them: {ambiguous:#?}"
        );
    }
}

#[test]
fn the_wasm_plugin_is_valid_against_its_crd() {
    let schema = crd_schema("wasmplugins.extensions.istio.io.yaml");
    let plugin = manifest(WASM_PLUGIN);
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_valid(&schema, &plugin, WASM_PLUGIN);
    let spec = &plugin["spec"];
    assert_eq!(spec["phase"], "AUTHZ");
    assert_eq!(spec["failStrategy"], bank_fail_strategy());
    assert_eq!(spec["pluginName"], "stakeguard", "the filter's root id");
    assert!(str_of(&spec["url"]).starts_with("oci://"));
    assert!(has(spec, "selector"));
    assert!(has(spec, "imagePullPolicy"));
}

#[test]
fn the_traffic_extension_is_valid_against_its_crd() {
    let schema = crd_schema("trafficextensions.extensions.istio.io.yaml");
    let extension = manifest(TRAFFIC_EXTENSION);
    assert_eq!(extension["kind"], "TrafficExtension");
    assert_valid(&schema, &extension, TRAFFIC_EXTENSION);
    let wasm = &extension["spec"]["wasm"];
    assert_eq!(extension["spec"]["phase"], "AUTHZ");
    assert_eq!(wasm["failStrategy"], bank_fail_strategy());
    assert_eq!(wasm["pluginName"], "stakeguard");
    // The same plugin as the WasmPlugin.
    let plugin = manifest(WASM_PLUGIN);
    for field in [
        "url",
        "imagePullPolicy",
        "pluginName",
        "failStrategy",
        "pluginConfig",
    ] {
        assert_eq!(wasm[field], plugin["spec"][field], "{field}");
    }
}

#[test]
fn the_sha256_is_the_image_manifest_digest_when_pinned() {
    // Istio checks an oci:// image against its manifest digest. The committed manifests
    // leave it out (the module changes with every build; `make oci` prints it); if one is
    // pinned it must be the digest of the image built from the current module, and a
    // pinned digest must pass the CRD's pattern.
    let module = std::fs::read(require_filter_wasm()).unwrap();
    let image = Image::new(module, &ImageOptions::default()).unwrap();
    let digest = image.manifest_hex().to_owned();
    let plugin_schema = crd_schema("wasmplugins.extensions.istio.io.yaml");
    let extension_schema = crd_schema("trafficextensions.extensions.istio.io.yaml");
    let mut plugin = manifest(WASM_PLUGIN);
    let mut extension = manifest(TRAFFIC_EXTENSION);
    for (path, sha) in [
        (WASM_PLUGIN, plugin.pointer("/spec/sha256")),
        (TRAFFIC_EXTENSION, extension.pointer("/spec/wasm/sha256")),
    ] {
        if let Some(sha) = sha {
            assert_eq!(
                str_of(sha),
                digest,
                "{path}: sha256 is not the manifest digest of the current image; run `make oci`"
            );
        }
    }
    plugin["spec"]["sha256"] = json!(digest);
    extension["spec"]["wasm"]["sha256"] = json!(digest);
    assert_valid(&plugin_schema, &plugin, "pinned WasmPlugin");
    assert_valid(&extension_schema, &extension, "pinned TrafficExtension");
    // The module's own sha256 is a valid pattern too, but the wrong value for oci://.
    assert_ne!(image.module.hex, digest);
    plugin["spec"]["sha256"] = json!(digest.to_uppercase());
    assert_breaks(
        &plugin_schema,
        &plugin,
        "spec.sha256",
        "does not match pattern",
    );
}

#[test]
fn schema_violations_are_caught() {
    let schema = crd_schema("wasmplugins.extensions.istio.io.yaml");
    let good = manifest(WASM_PLUGIN);
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        edit(&mut m);
        m
    };
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["failStrategy"] = json!("FAIL_CLOSED")),
        "spec.failStrategy",
        "is not one of",
    );
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["failStratgy"] = json!("FAIL_CLOSE")),
        "spec.failStratgy",
        "unknown field",
    );
    assert_breaks(
        &schema,
        &broken(&|m| {
            m["spec"].as_object_mut().unwrap().remove("url");
        }),
        "spec",
        "required field `url`",
    );
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["pluginName"] = json!("")),
        "spec.pluginName",
        "below minLength",
    );
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["priority"] = json!(1_u64 << 40)),
        "spec.priority",
        "int32",
    );
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["match"] = json!([{ "ports": [{ "number": 0 }] }])),
        "spec.match[0].ports[0].number",
        "below minimum",
    );
    assert_breaks(
        &schema,
        &broken(&|m| m["spec"]["selector"] = json!("app=bank")),
        "spec.selector",
        "expected object",
    );
    // The plugin's own config is free-form for the CRD (the filter validates it).
    let free = broken(&|m| m["spec"]["pluginConfig"] = json!({ "anything": [1, { "x": null }] }));
    assert!(validate_manifest(&schema, &free).is_empty());
}

/// One negative case per CEL rule: the manifest is broken so that exactly that rule
/// fails, and the violation carries the rule's message at the rule's path.
#[test]
fn every_cel_rule_fails_on_a_manifest_that_breaks_it() {
    let plugin_schema = crd_schema("wasmplugins.extensions.istio.io.yaml");
    let extension_schema = crd_schema("trafficextensions.extensions.istio.io.yaml");
    let plugin = manifest(WASM_PLUGIN);
    let extension = manifest(TRAFFIC_EXTENSION);
    let edit = |base: &Value, f: &dyn Fn(&mut Value)| {
        let mut m = base.clone();
        f(&mut m);
        m
    };
    let target_refs = json!([{ "kind": "Service", "name": "bank-api", "namespace": "other" }]);
    let cases: Vec<(&Value, Value, &str, &str)> = vec![
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["selector"]["matchLabels"]["app"] = json!("bank-*")
            }),
            "spec.selector.matchLabels.app",
            "wildcard not allowed in label value match",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["selector"]["matchLabels"]["app*"] = json!("x")
            }),
            "spec.selector.matchLabels",
            "wildcard not allowed in label key match",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["selector"]["matchLabels"][""] = json!("x")
            }),
            "spec.selector.matchLabels",
            "key must not be empty",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"].as_object_mut().unwrap().remove("selector");
                m["spec"]["targetRefs"] = target_refs.clone();
            }),
            "spec.targetRefs[0].namespace",
            "cross namespace referencing is not currently supported",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"].as_object_mut().unwrap().remove("selector");
                m["spec"]["targetRef"] = target_refs[0].clone();
            }),
            "spec.targetRef.namespace",
            "cross namespace referencing is not currently supported",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["url"] = json!("ftp://registry.example.com/filter.wasm")
            }),
            "spec.url",
            "url must have schema one of",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["vmConfig"] =
                    json!({ "env": [{ "name": "POD_NAME", "valueFrom": "HOST", "value": "x" }] });
            }),
            "spec.vmConfig.env[0]",
            "value may only be set when valueFrom is INLINE",
        ),
        (
            &plugin_schema,
            edit(&plugin, &|m| {
                m["spec"]["targetRefs"] = json!([{ "kind": "Service", "name": "bank-api" }]);
            }),
            "spec",
            "only one of targetRefs or selector can be set",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"]["selector"]["matchLabels"]["app"] = json!("*")
            }),
            "spec.selector.matchLabels.app",
            "wildcard not allowed in label value match",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"]["wasm"]["url"] = json!("gopher://x/y")
            }),
            "spec.wasm.url",
            "url must have schema one of",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"]["wasm"]["vmConfig"] =
                    json!({ "env": [{ "name": "N", "valueFrom": "HOST", "value": "v" }] });
            }),
            "spec.wasm.vmConfig.env[0]",
            "value may only be set when valueFrom is INLINE",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"].as_object_mut().unwrap().remove("selector");
                m["spec"]["targetRefs"] = target_refs.clone();
            }),
            "spec.targetRefs[0].namespace",
            "cross namespace referencing is not currently supported",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"]["targetRefs"] = json!([{ "kind": "Service", "name": "bank-api" }]);
            }),
            "spec",
            "only one of targetRefs or selector can be set",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"]["lua"] = json!({ "inlineCode": "-- x" })
            }),
            "spec",
            "exactly one of wasm or lua must be set",
        ),
        (
            &extension_schema,
            edit(&extension, &|m| {
                m["spec"].as_object_mut().unwrap().remove("wasm");
            }),
            "spec",
            "exactly one of wasm or lua must be set",
        ),
    ];
    for (schema, broken, path, message) in &cases {
        assert_breaks(schema, broken, path, message);
    }
}

#[test]
fn the_url_rule_follows_go_url_parsing() {
    let ok = |s: &str| {
        cel(r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"#, &json!(s)).unwrap()
    };
    assert!(ok("oci://registry.example.com/stakeguard/filter:0.1.0"));
    assert!(ok("https://example.com/stakeguard.wasm"));
    assert!(ok("file:///opt/filters/stakeguard.wasm"));
    assert!(
        ok("registry.example.com/stakeguard/filter"),
        "no scheme: read as http://"
    );
    assert!(!ok("ftp://example.com/x.wasm"));
    assert!(!ok("s3://bucket/x.wasm"));
    // Go's parser is lenient: "://x" is no URL, but "http://://x" is (empty host, empty
    // port), so the rule lets it through, as the API server would.
    assert!(!is_url("://x"));
    assert!(ok("://x"));
    assert!(
        cel("a rule nobody implemented", &json!(null)).is_err(),
        "unknown rules are reported, not passed"
    );
}
