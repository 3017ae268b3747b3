//! Helpers shared by the harness's integration tests: building the conformance module
//! once, replaying JSON Lines text, and small WAT modules.

#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{Harness, HarnessConfig, Report};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The bundled recordings (`envoy-examples/traffic/`): name (of golden files), traffic
/// file, example policy.
pub const RECORDINGS: [(&str, &str, &str); 3] = [
    ("bank", "bank.jsonl", "bank.json"),
    ("retailer", "retailer.har", "retailer.json"),
    ("minimal", "minimal.tap.jsonl", "minimal.json"),
];

/// Builds `stakeguard-conformance` for wasm32-wasip1 (release) once per test binary and
/// returns its bytes. Uses the same target directory as the running tests.
pub fn conformance_wasm() -> Vec<u8> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "-q",
                "-p",
                "stakeguard-conformance",
                "--target",
                "wasm32-wasip1",
                "--release",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build for the conformance module");
        assert!(status.success(), "building the conformance module failed");
        target.join("wasm32-wasip1/release/stakeguard_conformance.wasm")
    });
    std::fs::read(path).expect("read the conformance module")
}

/// The conformance module compiled once per test binary, reconfigured per test.
pub fn conformance(config: HarnessConfig) -> Harness {
    static BASE: OnceLock<Harness> = OnceLock::new();
    BASE.get_or_init(|| Harness::new(&conformance_wasm(), HarnessConfig::default()).expect("load"))
        .reconfigure(config)
}

/// Replays `jsonl` through the conformance module.
pub fn replay_conformance(config: HarnessConfig, jsonl: &str) -> Report {
    conformance(config).replay(&records(jsonl)).expect("replay")
}

/// Reads JSON Lines traffic from text.
pub fn records(jsonl: &str) -> Vec<Record> {
    let (records, errors) = traffic::read_str(Path::new("test.jsonl"), jsonl).expect("traffic");
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// Replays `jsonl` through `module` with `config`.
pub fn replay(module: &[u8], config: HarnessConfig, jsonl: &str) -> Report {
    Harness::new(module, config)
        .expect("load module")
        .replay(&records(jsonl))
        .expect("replay")
}

/// The built stakeguard.wasm (`make wasm`), read once per test binary.
pub fn filter_wasm() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = workspace().join("target/wasm32-wasip1/release/stakeguard_filter.wasm");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the filter first with `make wasm`",
                path.display()
            )
        })
    })
}

/// A test data file.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A minimal 0.2.1 module in WAT: memory, a bump allocator, the ABI marker, plus `body`
/// (imports go before the memory in `imports`).
pub fn wat_module(imports: &str, body: &str) -> Vec<u8> {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  {body}
)"#
    )
    .into_bytes()
}

/// One GET request line.
pub fn get(path: &str) -> String {
    format!(
        r#"{{"time":"2026-01-01T00:00:00Z","request":{{"method":"GET","authority":"example.com","path":"{path}"}},"response":{{"status":200,"body":"upstream"}}}}"#
    )
}
