//! stakeguard.wasm as an OCI image, built without Docker or a registry client: an OCI
//! image layout directory and a tarball of it, in the *Wasm artifact* ("oci") variant of
//! the Wasm image specification that Istio's image fetcher (`pkg/wasm/imagefetcher.go`)
//! accepts:
//!
//! - the manifest's config has media type `application/vnd.module.wasm.config.v1+json`
//!   (the runtime config: `envoy_proxy`, the ABI, the root id);
//! - exactly **two** layers, as the specification describes and as Istio checks
//!   (`number of layers must be 2`): the runtime config again, and the raw module as
//!   `application/vnd.module.wasm.content.layer.v1+wasm` (not compressed, not tarred:
//!   Istio reads the layer's bytes as the module).
//!
//! Output is deterministic: no timestamps, JSON with sorted keys, tar entries in sorted
//! order with mtime 0 and uid/gid 0, so the same module always gives the same digests.
//!
//! Istio verifies an `oci://` image against the WasmPlugin's `sha256` using the image's
//! **manifest digest** (not the module's sha256, which is what it checks for `http(s)://`
//! URLs); [`Image::manifest_hex`] is that value.

pub mod archive;
pub mod error;

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use error::Error;

/// The media type of the runtime config (manifest config and first layer).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The media type of the layer holding the raw module.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// An OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The annotation an OCI layout uses to name a manifest (the tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation naming a layer's file.
pub const TITLE: &str = "org.opencontainers.image.title";

/// What goes into the image besides the module.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The tag (`org.opencontainers.image.ref.name` in `index.json`).
    pub tag: String,
    /// The root id the module registers (the runtime config's `root_ids`).
    pub root_id: String,
    /// The file name given to the module layer.
    pub module_title: String,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            tag: "0.1.0".to_owned(),
            root_id: "stakeguard".to_owned(),
            module_title: "stakeguard.wasm".to_owned(),
        }
    }
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its media type where it is referenced.
    pub media_type: &'static str,
    /// The hex sha256 of the bytes.
    pub hex: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        Self {
            media_type,
            hex: sha256_hex(&bytes),
            bytes,
        }
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }

    /// An OCI descriptor of this blob.
    fn descriptor(&self, annotations: Option<Value>) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        });
        if let (Some(annotations), Some(map)) = (annotations, d.as_object_mut()) {
            map.insert("annotations".to_owned(), annotations);
        }
        d
    }
}

/// The hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Wasm module packaged as an OCI image, in memory.
#[derive(Debug, Clone)]
pub struct Image {
    /// The runtime config (manifest config and first layer).
    pub config: Blob,
    /// The module (second layer).
    pub module: Blob,
    /// The image manifest.
    pub manifest: Blob,
    /// `index.json`.
    pub index: Vec<u8>,
    /// The tag.
    pub tag: String,
}

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl Image {
    /// Packages `module` (checked to start with the Wasm magic number and version 1).
    pub fn new(module: Vec<u8>, options: &ImageOptions) -> Result<Self, Error> {
        if !module.starts_with(b"\0asm\x01\0\0\0") {
            return Err(Error::NotWasm);
        }
        if !valid_tag(&options.tag) {
            return Err(Error::BadTag(options.tag.clone()));
        }
        // The runtime config of the Wasm image specification for Envoy filters.
        let config = json!({
            "type": "envoy_proxy",
            "abiVersions": ["proxy_abi_version_0_2_1"],
            "config": { "root_ids": [options.root_id] },
        });
        let config = Blob::new(WASM_CONFIG_MEDIA_TYPE, to_bytes(&config)?);
        let module = Blob::new(WASM_LAYER_MEDIA_TYPE, module);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(None),
            "layers": [
                config.descriptor(Some(json!({ TITLE: "runtime-config.json" }))),
                module.descriptor(Some(json!({ TITLE: options.module_title }))),
            ],
            "annotations": {
                TITLE: "stakeguard",
                "org.opencontainers.image.version": options.tag,
            },
        });
        let manifest = Blob::new(OCI_MANIFEST_MEDIA_TYPE, to_bytes(&manifest)?);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": [manifest.descriptor(Some(json!({ REF_NAME: options.tag })))],
        });
        Ok(Self {
            config,
            module,
            manifest,
            index: to_bytes(&index)?,
            tag: options.tag.clone(),
        })
    }

    /// The manifest digest's hex: the value for a WasmPlugin's (or TrafficExtension's)
    /// `sha256` when its `url` is this image (`oci://...`).
    pub fn manifest_hex(&self) -> &str {
        &self.manifest.hex
    }

    /// Every file of the layout, relative paths in sorted order, each blob once.
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let mut files: Vec<(String, &[u8])> = vec![
            ("oci-layout".to_owned(), OCI_LAYOUT),
            ("index.json".to_owned(), &self.index),
        ];
        for blob in [&self.config, &self.module, &self.manifest] {
            let path = format!("blobs/sha256/{}", blob.hex);
            if !files.iter().any(|(p, _)| *p == path) {
                files.push((path, &blob.bytes));
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    /// Writes the layout into `dir`, replacing an earlier layout there (a directory that
    /// exists, is not empty and is not an OCI layout is refused rather than cleared).
    pub fn write_layout(&self, dir: &Path) -> Result<(), Error> {
        if dir.exists() {
            let is_layout = dir.join("oci-layout").is_file();
            let empty = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_none();
            if !is_layout && !empty {
                return Err(Error::NotALayout(dir.to_path_buf()));
            }
            // A stale layout would keep blobs of earlier modules.
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        for (path, bytes) in self.files() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// The layout as one tar archive (what `skopeo`'s `oci-archive:` transport reads).
    pub fn tar(&self) -> Result<Vec<u8>, Error> {
        let mut tar = archive::Tar::default();
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        for (path, bytes) in self.files() {
            tar.file(&path, bytes)?;
        }
        Ok(tar.finish())
    }
}

fn to_bytes(value: &Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(Error::Json)
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    #[test]
    fn the_same_module_gives_the_same_digests() {
        let a = Image::new(module(), &ImageOptions::default()).unwrap();
        let b = Image::new(module(), &ImageOptions::default()).unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.tar().unwrap(), b.tar().unwrap());
    }

    #[test]
    fn a_different_module_changes_the_manifest_digest() {
        let a = Image::new(module(), &ImageOptions::default()).unwrap();
        let mut other = module();
        other.push(0);
        let b = Image::new(other, &ImageOptions::default()).unwrap();
        assert_ne!(a.manifest_hex(), b.manifest_hex());
    }

    #[test]
    fn bytes_that_are_not_wasm_are_refused() {
        assert!(matches!(
            Image::new(b"MZ".to_vec(), &ImageOptions::default()),
            Err(Error::NotWasm)
        ));
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        assert!(valid_tag("0.1.0"));
        assert!(valid_tag("latest"));
        assert!(!valid_tag(""));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("a/b"));
    }

    #[test]
    fn sha256_of_nothing_is_the_known_value() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
