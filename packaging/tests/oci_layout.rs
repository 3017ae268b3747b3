//! `stakeguard-oci` on the real module: the layout is read back the way Istio's fetcher
//! reads an image (index -> manifest -> media types -> digests and sizes verified -> the
//! Wasm layer) and gives back the module byte for byte; the tarball holds the same files;
//! two runs give identical bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn module_path() -> PathBuf {
    let path = std::env::var_os("STAKEGUARD_WASM").map_or_else(
        || repo_root().join("target/wasm32-wasip1/release/stakeguard_filter.wasm"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "stakeguard.wasm not found at {}; run `make wasm` first",
        path.display()
    );
    path
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("stakeguard-oci-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn package(module: &Path, out: &Path, tar: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_stakeguard-oci"))
        .arg("--module")
        .arg(module)
        .arg("--out")
        .arg(out)
        .arg("--tar")
        .arg(tar)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "stakeguard-oci failed: {text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    text
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the blob a descriptor names and checks its size and digest, as a fetcher must.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex_digest = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex_digest)).unwrap();
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "size of {digest}"
    );
    assert_eq!(hex(&bytes), hex_digest, "content of {digest}");
    bytes
}

/// The module, read as Istio's `extractOCIArtifactImage` does (after the registry has
/// resolved the tag through the index).
fn fetch(layout: &Path, tag: &str) -> (Vec<u8>, String) {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"));
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest_bytes = blob(layout, descriptor);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    assert_eq!(config["type"], "envoy_proxy");
    assert_eq!(config["config"]["root_ids"][0], "stakeguard");
    // Istio: "number of layers must be 2", then the layer of the Wasm media type.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "Istio's oci variant has exactly two layers"
    );
    for layer in layers {
        blob(layout, layer);
    }
    let wasm: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .collect();
    assert_eq!(wasm.len(), 1, "{manifest}");
    assert!(
        layers
            .iter()
            .any(|l| l["mediaType"] == "application/vnd.module.wasm.config.v1+json"),
        "the other layer is the runtime config"
    );
    (blob(layout, wasm[0]), hex(&manifest_bytes))
}

fn layout_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn tar_files(tar: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).unwrap());
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0, "fixed timestamps");
        if header.entry_type().is_dir() {
            continue;
        }
        assert!(header.entry_type().is_file());
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

#[test]
fn the_layout_gives_back_the_module_and_the_tarball_holds_the_same_layout() {
    let module_file = module_path();
    let module = std::fs::read(&module_file).unwrap();
    let scratch = Scratch::new("layout");
    let out = scratch.0.join("oci");
    let tar = scratch.0.join("stakeguard-oci.tar");
    let printed = package(&module_file, &out, &tar);

    let (fetched, manifest_hex) = fetch(&out, "0.1.0");
    assert!(
        fetched == module,
        "the Wasm layer is the module, byte for byte"
    );
    assert!(
        printed.contains(&format!("sha256 for url oci://...:0.1.0: {manifest_hex}")),
        "the printed WasmPlugin sha256 is the manifest digest: {printed}"
    );
    assert!(printed.contains(&format!("module   sha256:{}", hex(&module))));

    let in_dir = layout_files(&out);
    assert_eq!(in_dir.len(), 5, "oci-layout, index.json and three blobs");
    assert_eq!(tar_files(&tar), in_dir, "the tarball holds the same layout");

    // Deterministic: packaging again (over the earlier layout) gives the same bytes.
    let tar_bytes = std::fs::read(&tar).unwrap();
    package(&module_file, &out, &tar);
    assert_eq!(std::fs::read(&tar).unwrap(), tar_bytes);
    assert_eq!(layout_files(&out), in_dir);
}

#[test]
fn a_tampered_blob_is_caught_by_the_reader() {
    // The reader above must be able to fail: change one byte of the module blob.
    let module_file = module_path();
    let scratch = Scratch::new("tamper");
    let out = scratch.0.join("oci");
    package(&module_file, &out, &scratch.0.join("t.tar"));
    let module_hex = hex(&std::fs::read(&module_file).unwrap());
    let blob_path = out.join("blobs/sha256").join(&module_hex);
    let mut bytes = std::fs::read(&blob_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob_path, bytes).unwrap();
    let caught = std::panic::catch_unwind(|| fetch(&out, "0.1.0"));
    assert!(caught.is_err(), "a changed blob must fail its digest check");
}

#[test]
fn an_output_directory_that_is_not_a_layout_is_left_alone() {
    let scratch = Scratch::new("refuse");
    let out = scratch.0.join("precious");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_stakeguard-oci"))
        .arg("--module")
        .arg(module_path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("is not an OCI layout"));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
}
