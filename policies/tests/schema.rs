//! The committed JSON Schema (`policies/policy.schema.json`) is the one the model
//! generates. Run with `STAKEGUARD_UPDATE_SCHEMA=1` to rewrite it after changing the model.

#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use stakeguard_policies::model::PolicyDocument;

#[test]
fn the_committed_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/policy.schema.json");
    let generated =
        serde_json::to_string_pretty(&schemars::schema_for!(PolicyDocument)).unwrap() + "\n";
    if std::env::var_os("STAKEGUARD_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "policies/policy.schema.json is out of date; run `make schema` (STAKEGUARD_UPDATE_SCHEMA=1 cargo test -p stakeguard-policies --test schema)"
    );
}

#[test]
fn the_examples_satisfy_the_schema_shape() {
    // A light structural check without a schema validator: every example's top-level and
    // API fields are properties the schema knows.
    let schema = serde_json::to_value(schemars::schema_for!(PolicyDocument)).unwrap();
    for name in ["bank", "retailer", "minimal"] {
        let text = std::fs::read_to_string(format!(
            "{}/examples/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in doc.as_object().unwrap().keys() {
            assert!(schema["properties"].get(key).is_some(), "{name}: {key}");
        }
        for api in doc["apis"].as_array().unwrap() {
            for key in api.as_object().unwrap().keys() {
                assert!(
                    schema["$defs"]["ApiSpec"]["properties"].get(key).is_some(),
                    "{name}: apis.{key}"
                );
            }
        }
    }
}
