//! Invalid policy documents through the module itself (`check`, as `stakeguard check`
//! and Envoy run it): each of `tests/data/bad-policies/*.json` (written by its
//! `generate.py`: the examples with one mistake each, and texts that are no policy at
//! all) must be refused without a trap, with an error at the JSON path its manifest
//! names, and with exactly the messages of `tests/golden/bad_policies.txt`
//! (`UPDATE_GOLDEN=1` rewrites the golden file after a deliberate change of wording).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use stakeguard_harness::{Harness, HarnessConfig, check};

/// How the module prefixes each mistake it logs.
const PREFIX: &str = "error: stakeguard: policy rejected: ";

#[test]
fn every_bad_policy_is_refused_at_its_path_with_its_golden_messages() {
    let dir = common::data("bad-policies");
    let manifest: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.len() >= 50, "{} documents", manifest.len());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && name != "manifest.json")
        .collect();
    files.sort();
    assert_eq!(
        files,
        manifest.keys().cloned().collect::<Vec<_>>(),
        "the manifest names every document; run generate.py"
    );

    // `check::check_module` with the module compiled once: what it does per document is
    // this, a harness of one worker given the document as plugin configuration.
    let module = Harness::new(
        common::filter_wasm(),
        HarnessConfig {
            workers: 1,
            ..HarnessConfig::default()
        },
    )
    .unwrap();
    let mut golden = String::new();
    let mut wrong = Vec::new();
    for (file, path) in &manifest {
        let text = std::fs::read(dir.join(file)).unwrap();
        let result = check::check(&module.with_plugin_configuration(text).unwrap()).unwrap();
        let errors: Vec<&str> = result
            .logs
            .iter()
            .filter_map(|line| line.strip_prefix(PREFIX))
            .collect();
        if result.ok() {
            wrong.push(format!("{file}: accepted"));
        }
        if let Some(trap) = &result.trap {
            wrong.push(format!("{file}: trapped: {trap}"));
        }
        let at = format!("{path}: ");
        if !errors.iter().any(|e| e.starts_with(&at)) {
            wrong.push(format!("{file}: no error at `{path}`, only {errors:#?}"));
        }
        golden.push_str(&format!("== {file}\n"));
        for error in &errors {
            golden.push_str(error);
            golden.push('\n');
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let golden_path = common::workspace().join("harness/tests/golden/bad_policies.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &golden).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", golden_path.display()));
    for (seen, want) in golden.lines().zip(expected.lines()) {
        assert_eq!(seen, want, "{} differs", golden_path.display());
    }
    assert_eq!(
        golden.lines().count(),
        expected.lines().count(),
        "{} has another number of lines",
        golden_path.display()
    );
}
