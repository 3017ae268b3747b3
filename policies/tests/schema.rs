//! The committed JSON Schema (`policies/policy.schema.json`) is the one the model
//! declares. Run `make schema` to rewrite it after changing the model.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use stakeguard_policies::json::Json;
use stakeguard_policies::model::json_schema;

#[test]
fn the_committed_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/policy.schema.json");
    let generated = json_schema();
    if std::env::var_os("STAKEGUARD_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "policies/policy.schema.json is out of date; run `make schema`"
    );
}

/// Every field of every example is a property the schema declares (a light check of
/// the schema's shape without a validator; the engine's own reader is the real judge).
#[test]
fn the_examples_use_only_declared_fields() {
    let text = json_schema();
    let schema = Json::parse(&text).unwrap();
    let api_properties = schema.pointer("/$defs/ApiSpec/properties").unwrap();
    for name in ["bank", "retailer", "minimal"] {
        let text = std::fs::read_to_string(format!(
            "{}/examples/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let doc = Json::parse(&text).unwrap();
        let Json::Object(fields) = &doc else {
            panic!("{name}: not an object")
        };
        for (key, _) in fields {
            assert!(
                schema.pointer(&format!("/properties/{key}")).is_some(),
                "{name}: {key}"
            );
        }
        let Some(Json::Array(apis)) = doc.get("apis") else {
            panic!("{name}: no apis")
        };
        for api in apis {
            let Json::Object(fields) = api else { panic!() };
            for (key, _) in fields {
                assert!(api_properties.get(key).is_some(), "{name}: apis.{key}");
            }
        }
    }
}
