//! `discover` on the bundled recordings (`envoy-examples/traffic/`) with their example
//! policies: the JSON inventory and the table pinned by golden files in
//! `tests/golden/discover/`, the skeleton policy accepted by the built module, and the
//! skeleton covering every endpoint that was a shadow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod inventory_support;

use inventory_support::{RECORDINGS, assert_accepted, golden, stakeguard, workspace};
use stakeguard_harness::inventory::discover::{Inventory, Status, discover, render_table};
use stakeguard_harness::inventory::{merge, skeleton};
use stakeguard_harness::traffic::{self, Record};
use stakeguard_policies::Policy;
use std::borrow::Cow;

use stakeguard_policies::json::Json;

fn recording(name: &str) -> (Vec<Record>, String) {
    let (_, file, policy) = RECORDINGS.iter().find(|(n, _, _)| *n == name).unwrap();
    let root = workspace();
    let records = traffic::read_file(&root.join("envoy-examples/traffic").join(file)).unwrap();
    let policy = std::fs::read_to_string(root.join("policies/examples").join(policy)).unwrap();
    (records, policy)
}

fn inventory(name: &str) -> (Inventory, String) {
    let (records, text) = recording(name);
    let policy = Policy::from_json(&text).unwrap();
    (discover(&records, Some(&policy)), text)
}

fn skeleton_of(name: &str) -> String {
    let (inventory, text) = inventory(name);
    let merged =
        skeleton::skeleton(Some(Json::parse(&text).unwrap().into_owned()), &inventory).unwrap();
    assert!(merged.conflicts.is_empty(), "{:?}", merged.conflicts);
    merge::finish(&merged).unwrap()
}

#[test]
fn each_recordings_inventory_matches_its_golden_file() {
    for (name, _, _) in RECORDINGS {
        let (inventory, _) = inventory(name);
        let json = serde_json::to_string_pretty(&inventory).unwrap() + "\n";
        golden(&format!("discover/{name}.json"), &json);
    }
}

#[test]
fn the_bank_table_matches_its_golden_file() {
    golden("discover/bank.txt", &render_table(&inventory("bank").0));
}

#[test]
fn the_bank_inventory_finds_its_shadows_zombies_and_covered_apis() {
    let (inventory, _) = inventory("bank");
    let find = |method: &str, path: &str| {
        inventory
            .endpoints
            .iter()
            .find(|e| e.method == method && e.path == path)
            .unwrap_or_else(|| panic!("no {method} {path}"))
    };
    let v1 = &find("GET", "/api/v1/accounts/{id}").coverage[0];
    assert_eq!(
        (v1.status, v1.lifecycle),
        (Status::Zombie, Some("deprecated"))
    );
    let v0 = &find("GET", "/api/v0/statements/{param}/{param2}").coverage[0];
    assert_eq!((v0.status, v0.lifecycle), (Status::Zombie, Some("retired")));
    assert!(find("GET", "/api/v2/internal/debug").is_shadow());
    let login = find("POST", "/api/v2/login");
    assert_eq!(login.coverage[0].status, Status::Covered);
    assert!(login.login_failures > 0 && login.set_cookie > 0);
    // Six customers' profiles are one endpoint: the route's own template names them.
    let profiles = find("GET", "/api/v2/users/{user_id}/profile");
    assert!(profiles.clients >= 6, "{profiles:?}");
}

#[test]
fn skeletons_are_accepted_by_the_module() {
    for (name, _, _) in RECORDINGS {
        assert_accepted(&format!("the {name} skeleton"), &skeleton_of(name));
        // Without a policy every endpoint becomes an API of its own.
        let (records, _) = recording(name);
        let bare = skeleton::skeleton(None, &discover(&records, None)).unwrap();
        assert_accepted(
            &format!("the {name} skeleton without a policy"),
            &merge::finish(&bare).unwrap(),
        );
    }
}

#[test]
fn the_bank_skeleton_matches_its_golden_file() {
    golden("discover/bank.skeleton.json", &skeleton_of("bank"));
}

#[test]
fn a_skeleton_covers_every_shadow_endpoint_and_keeps_the_policy() {
    for (name, _, _) in RECORDINGS {
        let (before, text) = inventory(name);
        let skeleton = skeleton_of(name);
        let policy = Policy::from_json(&skeleton).unwrap();
        let (records, _) = recording(name);
        let after = discover(&records, Some(&policy));
        assert!(
            after.endpoints.iter().all(|e| !e.is_shadow()),
            "{name}: {after:#?}"
        );
        // Every API of the policy is still there, unchanged, in order, before the new ones.
        let (Json::Object(old), Json::Object(new)) = (
            Json::parse(&text).unwrap().into_owned(),
            Json::parse(&skeleton).unwrap().into_owned(),
        ) else {
            panic!("objects");
        };
        let apis = |fields: &[(Cow<'static, str>, Json<'static>)]| match fields
            .iter()
            .find(|(k, _)| k == "apis")
        {
            Some((_, Json::Array(apis))) => apis.clone(),
            _ => panic!("apis"),
        };
        let (old_apis, new_apis) = (apis(&old), apis(&new));
        assert_eq!(&new_apis[..old_apis.len()], &old_apis[..], "{name}");
        let shadows = before.endpoints.iter().filter(|e| e.is_shadow()).count();
        assert!(new_apis.len() > old_apis.len() || shadows == 0, "{name}");
        for (key, value) in &old {
            if key != "apis" && key != "tiers" {
                assert_eq!(
                    new.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                    Some(value),
                    "{name}: {key}"
                );
            }
        }
    }
}

#[test]
fn the_cli_prints_json_and_writes_the_skeleton() {
    let out = std::env::temp_dir().join(format!("stakeguard-skeleton-{}.json", std::process::id()));
    let (code, stdout, stderr) = stakeguard(&[
        "discover",
        "--policy",
        "policies/examples/bank.json",
        "--format",
        "json",
        "--write-skeleton",
        out.to_str().unwrap(),
        "envoy-examples/traffic/bank.jsonl",
    ]);
    assert_eq!(code, 0, "{stderr}");
    golden("discover/bank.json", &stdout);
    let written = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert_eq!(written, skeleton_of("bank"));
    assert!(
        stderr.contains("give each `unassigned` API its owner and tier"),
        "{stderr}"
    );
    let (code, stdout, _) = stakeguard(&["discover", "envoy-examples/traffic/minimal.tap.jsonl"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("METHOD ") && stdout.contains(" requests, "),
        "{stdout}"
    );
}

#[test]
fn a_refused_policy_is_named_before_any_work() {
    let (code, _, stderr) = stakeguard(&[
        "discover",
        "--policy",
        r#"{"revision":"x","tiers":{},"apis":[{"name":"a"}]}"#,
        "envoy-examples/traffic/minimal.tap.jsonl",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the policy is refused") && stderr.contains("apis[0]"),
        "{stderr}"
    );
}
