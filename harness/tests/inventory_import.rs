//! `import` on real OpenAPI documents (`tests/data/openapi/`: the Swagger Petstore in
//! YAML, grouped by tags, and Twilio Verify v2 in JSON, versioned in its paths), pinned
//! by golden policies in `tests/golden/import/` and accepted by the built module; the
//! merge into a hand-written policy; extensions, deprecation and bad documents.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod inventory_support;

use std::path::Path;

use inventory_support::{assert_accepted, golden, openapi, stakeguard};
use stakeguard_harness::inventory::merge::{self, Defaults};
use stakeguard_harness::inventory::openapi::{Described, GroupBy, Options, describe};
use stakeguard_harness::inventory::{UNASSIGNED, UNCLASSIFIED, source};
use stakeguard_policies::json::Json;

fn options(group_by: GroupBy) -> Options {
    Options {
        group_by,
        deprecated_at: "2026-01-01T00:00:00Z".to_owned(),
    }
}

fn defaults() -> Defaults {
    Defaults {
        owner: UNASSIGNED.to_owned(),
        tier: UNCLASSIFIED.to_owned(),
    }
}

fn read_described(file: &str, group_by: GroupBy) -> Described {
    describe(&source::read(&openapi(file)).unwrap(), &options(group_by)).unwrap()
}

fn yaml(text: &str) -> Json<'static> {
    source::parse(Path::new("inline.yaml"), text).unwrap()
}

fn empty_policy() -> Json<'static> {
    Json::parse(r#"{"revision": "t", "tiers": {}, "apis": []}"#).unwrap()
}

fn imported(doc: &Json<'static>, group_by: GroupBy) -> String {
    let described = describe(doc, &options(group_by)).unwrap();
    merge::finish(&merge::merge(empty_policy(), &described.apis, &defaults()).unwrap()).unwrap()
}

#[test]
fn the_petstore_becomes_one_api_per_tag_under_its_server_path() {
    let described = read_described("petstore.yaml", GroupBy::Tag);
    let apis: Vec<(&str, &str, usize)> = described
        .apis
        .iter()
        .map(|a| (a.name.as_str(), a.version.as_str(), a.routes.len()))
        .collect();
    assert_eq!(
        apis,
        [("pet", "v3", 5), ("store", "v3", 3), ("user", "v3", 5)]
    );
    let pet = &described.apis[0].routes[3];
    assert_eq!(
        (pet.path.as_str(), pet.methods.join(",")),
        ("/api/v3/pet/{petId}", "GET,POST,DELETE".into())
    );
    assert_eq!(pet.origin, "/paths/~1pet~1{petId}/get");
}

#[test]
fn the_imported_documents_match_their_golden_policies_and_are_accepted() {
    for (file, name) in [
        ("petstore.yaml", "petstore"),
        ("twilio_verify_v2.json", "twilio_verify_v2"),
    ] {
        let (code, stdout, stderr) = stakeguard(&[
            "import",
            openapi(file).to_str().unwrap(),
            "--deprecated-at",
            "2026-01-01T00:00:00Z",
        ]);
        assert_eq!(code, 0, "{stderr}");
        golden(&format!("import/{name}.json"), &stdout);
        assert_accepted(file, &stdout);
    }
}

#[test]
fn twilio_groups_by_tag_and_takes_the_version_from_its_paths() {
    let described = read_described("twilio_verify_v2.json", GroupBy::Tag);
    assert_eq!(described.apis.len(), 20);
    assert!(described.apis.iter().all(|a| a.version == "v2"));
    // The two untagged operations go to their path group.
    let services = described
        .apis
        .iter()
        .find(|a| a.name == "Services")
        .unwrap();
    assert_eq!(services.routes.len(), 2);
    // One path whose methods have two tags gives each API its own methods.
    let factors = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors";
    let methods = |api: &str| {
        let api = described.apis.iter().find(|a| a.name == api).unwrap();
        api.routes
            .iter()
            .find(|r| r.path == factors)
            .unwrap()
            .methods
            .clone()
    };
    assert_eq!(methods("VerifyV2Factor"), ["GET"]);
    assert_eq!(methods("VerifyV2NewFactor"), ["POST"]);
    // By path group, everything under `/v2/Services` is one API.
    let by_path = read_described("twilio_verify_v2.json", GroupBy::Path);
    let names: Vec<&str> = by_path.apis.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["Services", "Forms", "SafeList", "Attempts", "Templates"]
    );
    let policy = imported(
        &source::read(&openapi("twilio_verify_v2.json")).unwrap(),
        GroupBy::Path,
    );
    assert_accepted("twilio by path", &policy);
}

const HAND_WRITTEN: &str = r##"{
  "revision": "shop-7",
  "tiers": {
    "critical": { "auth": { "required": ["authorization"] } },
    "low": { "mode": "monitor" }
  },
  "apis": [
    { "name": "pet", "version": "v3", "owner": "team-pets", "tier": "critical",
      "contact": "#pets",
      "routes": [ { "path": "/api/v3/pet/{id}", "methods": ["GET"] },
                  { "path": "/api/v3/pet", "methods": ["PUT"] } ],
      "rate_limit": { "requests": 10, "per": "1m", "key": "client_ip" } },
    { "name": "accounts", "version": "v1", "owner": "team-users", "tier": "critical",
      "routes": [ { "path": "/api/v3/user/login", "methods": ["GET"] } ] }
  ],
  "unknown_routes": { "action": "alert" }
}"##;

#[test]
fn a_merge_keeps_hand_written_fields_and_reports_conflicts() {
    let mut described = read_described("petstore.yaml", GroupBy::Tag);
    described.apis[0].owner = Some("team-store".to_owned());
    let merged = merge::merge(
        Json::parse(HAND_WRITTEN).unwrap(),
        &described.apis,
        &defaults(),
    )
    .unwrap();
    let conflicts: Vec<String> = merged.conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        conflicts,
        [
            "apis[0].owner: the policy says \"team-pets\", the source \"team-store\"; the policy's value stays (from `pet` `v3`)",
            "apis[1]: `GET /api/v3/user/login` is already served by `accounts` `v1`; it stays there (from /paths/~1user~1login/get)",
        ]
    );
    let text = merge::finish(&merged).unwrap();
    assert_accepted("the merged policy", &text);
    let doc = Json::parse(&text).unwrap().into_owned();
    let pet = doc.pointer("/apis/0").unwrap();
    assert_eq!(pet.get("owner").and_then(Json::as_str), Some("team-pets"));
    assert_eq!(pet.get("contact").and_then(Json::as_str), Some("#pets"));
    assert_eq!(
        pet.pointer("/rate_limit/requests").map(ToString::to_string),
        Some("10".to_owned())
    );
    // The existing routes gain the methods they lacked; the same shape under another
    // parameter name is the same route.
    assert_eq!(
        pet.pointer("/routes/0/methods").unwrap().to_string(),
        r#"["GET","POST","DELETE"]"#
    );
    assert_eq!(
        pet.pointer("/routes/1/methods").unwrap().to_string(),
        r#"["PUT","POST"]"#
    );
    assert_eq!(
        doc.pointer("/unknown_routes/action"),
        Some(&Json::String("alert".into()))
    );
    assert_eq!(
        doc.pointer("/apis/2/name"),
        Some(&Json::String("store".into()))
    );
    // The route another API serves stays out of `user`.
    let Some(Json::Array(user_routes)) = doc.pointer("/apis/3/routes") else {
        panic!("user routes")
    };
    assert_eq!(user_routes.len(), 4);
    assert!(
        user_routes
            .iter()
            .all(|r| r.get("path") != Some(&Json::String("/api/v3/user/login".into())))
    );
    // Importing the same document again changes nothing.
    let again = merge::merge(doc.clone(), &described.apis, &defaults()).unwrap();
    assert_eq!(again.document, doc);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
}

#[test]
fn the_cli_merges_into_a_policy_file_and_writes_the_output() {
    let dir = std::env::temp_dir();
    let policy = dir.join(format!("stakeguard-into-{}.json", std::process::id()));
    let out = dir.join(format!("stakeguard-merged-{}.json", std::process::id()));
    std::fs::write(&policy, HAND_WRITTEN).unwrap();
    let (code, stdout, stderr) = stakeguard(&[
        "import",
        openapi("petstore.yaml").to_str().unwrap(),
        "--into",
        policy.to_str().unwrap(),
        "--tier",
        "low",
        "--owner",
        "team-shop",
        "-o",
        out.to_str().unwrap(),
    ]);
    let merged = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&policy).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    assert!(
        stderr
            .contains("stakeguard: conflict: apis[1]: `GET /api/v3/user/login` is already served"),
        "{stderr}"
    );
    assert!(
        stderr.contains(": 3 APIs from ") && stderr.contains("1 conflicts, 0 skipped"),
        "{stderr}"
    );
    let doc = Json::parse(&merged).unwrap();
    assert_eq!(
        doc.pointer("/apis/2/owner"),
        Some(&Json::String("team-shop".into()))
    );
    assert_eq!(
        doc.pointer("/apis/2/tier"),
        Some(&Json::String("low".into()))
    );
    assert_accepted("the CLI's merged policy", &merged);
}

const EXTENDED: &str = r#"
openapi: 3.1.0
info: { title: Bank, version: "2.4" }
x-stakeguard-owner: team-platform
servers: [ { url: "https://{region}.bank.example/{base}", variables: { region: { default: eu }, base: { default: api } } } ]
tags:
  - name: accounts
    x-stakeguard-tier: critical
    x-stakeguard-incidents: { object_not_owned: page }
paths:
  /v1/accounts/{id}:
    get: { tags: [accounts], deprecated: true, x-stakeguard-sunset: "2027-03-31T00:00:00Z" }
  /v2/accounts/{id}:
    get: { tags: [accounts] }
    delete: { tags: [accounts], deprecated: true }
  /files/{name}.{ext}:
    get: { x-stakeguard-api: files, x-stakeguard-owner: team-docs }
webhooks:
  newAccount: { post: { responses: { "200": { description: ok } } } }
"#;

#[test]
fn extensions_deprecation_servers_and_partial_templates_are_read() {
    let described = describe(&yaml(EXTENDED), &options(GroupBy::Tag)).unwrap();
    let summary: Vec<String> = described
        .apis
        .iter()
        .map(|a| {
            let routes: Vec<String> = a
                .routes
                .iter()
                .map(|r| format!("{} {}", r.methods.join(","), r.path))
                .collect();
            format!(
                "{} {} owner={} tier={} incidents={:?} lifecycle={} routes={routes:?}",
                a.name,
                a.version,
                a.owner.as_deref().unwrap_or("-"),
                a.tier.as_deref().unwrap_or("-"),
                a.incidents,
                a.lifecycle.as_ref().map_or("-".into(), ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#"accounts v1 owner=team-platform tier=critical incidents=[("object_not_owned", "page")] lifecycle={"status":"deprecated","deprecated_at":"2026-01-01T00:00:00Z","sunset":"2027-03-31T00:00:00Z"} routes=["GET /api/v1/accounts/{id}"]"#,
            r#"accounts v2 owner=team-platform tier=critical incidents=[("object_not_owned", "page")] lifecycle=- routes=["GET /api/v2/accounts/{id}"]"#,
            r#"accounts-deprecated v2 owner=team-platform tier=critical incidents=[("object_not_owned", "page")] lifecycle={"status":"deprecated","deprecated_at":"2026-01-01T00:00:00Z"} routes=["DELETE /api/v2/accounts/{id}"]"#,
            r#"files 2.4 owner=team-docs tier=- incidents=[] lifecycle=- routes=["GET /api/files/{name}"]"#,
        ]
    );
    assert_eq!(
        described.notes,
        [
            "/paths/~1files~1{name}.{ext}/get: `{name}.{ext}` fills part of a segment with a parameter; the route takes the whole segment as one"
        ]
    );
    let policy = imported(&yaml(EXTENDED), GroupBy::Tag);
    assert_accepted("the extended document", &policy);
}

fn problems(text: &str) -> Vec<String> {
    describe(&yaml(text), &options(GroupBy::Tag))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn bad_documents_are_refused_at_their_json_pointer() {
    assert_eq!(
        problems("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n"),
        [
            "/swagger: Swagger 2.0 is not supported; convert the document to OpenAPI 3 first (e.g. with swagger2openapi)"
        ]
    );
    assert_eq!(
        problems("openapi: 3.0.3\ninfo: {title: t}\npaths:\n  /a: {get: {}}\n"),
        [
            "/info/version: missing; give the document an `info.version`, or version its paths (`/v1/...`)"
        ]
    );
    let unknown = problems(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {x-stakeguard-ownr: me}\n",
    );
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0].starts_with("/paths/~1a/get/x-stakeguard-ownr: unknown extension `x-stakeguard-ownr`; stakeguard reads `x-stakeguard-owner`,"),
        "{unknown:?}"
    );
    assert_eq!(
        problems(
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {x-stakeguard-owner: a}\n    put: {x-stakeguard-owner: b}\n"
        ),
        [
            "/paths/~1a/put/x-stakeguard-owner: `x-stakeguard-owner` differs from the one at /paths/~1a/get/x-stakeguard-owner, in the same API `a`; give the API's operations the same value, or move one to another API with `x-stakeguard-api`"
        ]
    );
    assert_eq!(
        problems(
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  a: {get: {}}\n  /b: {get: {x-stakeguard-tier: 3}}\n"
        ),
        [
            "/paths/a: the path `a` does not start with `/`; write paths as `/pets/{petId}`",
            "/paths/~1b/get/x-stakeguard-tier: is a number; write a string",
        ]
    );
}

#[test]
fn the_cli_names_the_file_of_a_bad_document() {
    let path = std::env::temp_dir().join(format!("stakeguard-bad-{}.yaml", std::process::id()));
    std::fs::write(&path, "openapi: 2.0\ninfo: {title: t, version: '1'}\n").unwrap();
    let (code, _, stderr) = stakeguard(&["import", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "{}: /openapi: OpenAPI `2.0` is not supported; import an OpenAPI 3.0 or 3.1 document",
            path.display()
        )),
        "{stderr}"
    );
}
