//! Helpers of the `discover` and `import` tests: paths, exact golden files, the built
//! filter module (to check that generated policies are accepted) and the CLI binary.

#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use stakeguard_harness::check::check_module;

#[path = "../common/mod.rs"]
mod common;

#[allow(unused_imports, reason = "each test file takes the part it needs")]
pub use common::{RECORDINGS, filter_wasm, workspace};

/// A file of the OpenAPI test documents.
pub fn openapi(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/openapi")
        .join(name)
}

/// Compares `got` with `tests/golden/<name>` exactly; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, got).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    if expected != got {
        let line = expected
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(got.lines().count()));
        panic!(
            "{name} differs from its golden file at line {}:\n  expected: {}\n  got:      {}\nrerun with UPDATE_GOLDEN=1 if the change is intended",
            line + 1,
            expected.lines().nth(line).unwrap_or("(end)"),
            got.lines().nth(line).unwrap_or("(end)")
        );
    }
}

/// Asserts that the filter module accepts `policy`, as `stakeguard check` asks it.
pub fn assert_accepted(what: &str, policy: &str) {
    let result = check_module(filter_wasm(), policy.as_bytes().to_vec()).expect("load the module");
    assert!(
        result.ok(),
        "{what} is refused by the module: {:#?}",
        result.logs
    );
}

/// Runs the CLI: exit code, stdout, stderr.
pub fn stakeguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stakeguard"))
        .current_dir(workspace())
        .args(args)
        .output()
        .expect("run stakeguard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
