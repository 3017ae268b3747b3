//! Hot reload through file-based ECDS, as `envoy-examples/hot-reload/` runs it: the
//! stakeguard filter's configuration is the resource `stakeguard` of a watched file, and
//! a swap writes a temporary file beside it and renames it over the watched one.
//!
//! [`Ecds`] owns the watched directory. Valid policies go through the example's own
//! `swap-policy.sh` ([`Ecds::swap_with_script`]), so the script the README tells people to
//! run is the one tested; [`Ecds::write`] writes a resource without any check, the way a
//! careless operator or a broken pipeline would, to show what Envoy does with a policy
//! the filter refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::TempDir;
use crate::envoy::{EnvoyConfig, Paths};

/// The filter's name: the ECDS resource name and the middle of Envoy's stat prefix
/// `extension_config_discovery.http_filter.<name>.`.
pub const FILTER_NAME: &str = "stakeguard";

/// The type the listener accepts for the resource.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Envoy refuses ECDS without a node identity.
pub fn node_args() -> Vec<String> {
    [
        "--service-node",
        "stakeguard-test",
        "--service-cluster",
        "stakeguard-test",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The stat Envoy counts a refused resource in.
pub fn update_rejected_stat() -> String {
    format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_rejected")
}

/// The stat Envoy counts an accepted resource in.
pub fn update_success_stat() -> String {
    format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_success")
}

/// The example's swap script.
pub fn swap_script() -> PathBuf {
    crate::repo_root().join("envoy-examples/hot-reload/swap-policy.sh")
}

/// The harness CLI the swap script checks policies with: `$STAKEGUARD_CLI`, else
/// `target/harness/stakeguard` (`make cli`), else `target/debug/stakeguard` (which
/// `cargo test --workspace` builds before it runs any test, for the harness's own tests).
pub fn stakeguard_cli() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STAKEGUARD_CLI")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("STAKEGUARD_CLI={} is not a file", path.display()))
        };
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    let candidates = [
        target.join("harness/stakeguard"),
        target.join("debug/stakeguard"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "the stakeguard CLI is not at {} or {}; run `make cli` (cargo build -p \
             stakeguard-harness --profile harness --bin stakeguard) before the hot-reload tests",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// What the swap script did.
#[derive(Debug, Clone)]
pub struct ScriptRun {
    /// Whether it exited with status 0.
    pub ok: bool,
    /// Its stdout followed by its stderr.
    pub output: String,
}

/// The watched directory of one Envoy run.
#[derive(Debug)]
pub struct Ecds {
    dir: TempDir,
    module: PathBuf,
}

impl Ecds {
    /// A fresh watched directory; resources name `module` as the filter's code.
    pub fn new(module: &Path) -> std::io::Result<Self> {
        Ok(Self {
            dir: TempDir::new("ecds")?,
            module: module.to_path_buf(),
        })
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The watched file.
    pub fn resource_path(&self) -> PathBuf {
        self.dir().join(format!("{FILTER_NAME}.json"))
    }

    /// The http filter entry that takes its configuration from the watched file.
    pub fn http_filter(&self) -> Value {
        json!({
            "name": FILTER_NAME,
            "config_discovery": {
                "config_source": {
                    "path_config_source": {
                        "path": self.resource_path(),
                        "watched_directory": { "path": self.dir() },
                    }
                },
                "type_urls": [WASM_TYPE_URL],
            }
        })
    }

    /// `config`'s bootstrap with the stakeguard filter delivered by ECDS (the config's
    /// own `filter` is ignored).
    pub fn bootstrap(&self, config: &EnvoyConfig, paths: &Paths) -> Value {
        let mut plain = config.clone();
        plain.filter = None;
        let mut bootstrap = plain.bootstrap(paths);
        let filters = bootstrap
            .pointer_mut(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
            )
            .and_then(Value::as_array_mut);
        if let Some(filters) = filters {
            filters.insert(0, self.http_filter());
        }
        bootstrap
    }

    /// The DiscoveryResponse `swap-policy.sh` writes for `policy`.
    pub fn resource(&self, policy: &str) -> Value {
        let revision = serde_json::from_str::<Value>(policy)
            .ok()
            .and_then(|p| p.get("revision").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        // What the policy needs on a trap (`stakeguard check --explain`); a refused one
        // is never swapped in by the script, and fails closed here.
        let failure_policy = stakeguard_policies::posture::posture(policy)
            .map_or("FAIL_CLOSED", |posture| posture.on_trap.envoy());
        json!({
            "version_info": revision,
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": FILTER_NAME,
                "typed_config": {
                    "@type": WASM_TYPE_URL,
                    "config": {
                        "name": FILTER_NAME,
                        "root_id": "stakeguard",
                        "failure_policy": failure_policy,
                        "vm_config": {
                            "vm_id": "stakeguard",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": { "local": { "filename": self.module } },
                        },
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": policy,
                        }
                    }
                }
            }]
        })
    }

    /// Writes the resource for `policy` without checking it: a temporary file in the
    /// watched directory renamed over the watched file (the rename is what Envoy's
    /// directory watch sees, and it is atomic).
    pub fn write(&self, policy: &str) -> std::io::Result<()> {
        let tmp = self.dir().join(format!(".{FILTER_NAME}.json.tmp"));
        std::fs::write(&tmp, self.resource(policy).to_string())?;
        std::fs::rename(&tmp, self.resource_path())
    }

    /// Runs `swap-policy.sh policy_file` against this directory (the script checks the
    /// policy with the stakeguard CLI, then renames the new resource into place).
    pub fn swap_with_script(&self, policy_file: &Path) -> Result<ScriptRun, String> {
        let cli = stakeguard_cli()?;
        let out = Command::new("bash")
            .arg(swap_script())
            .arg(policy_file)
            .env("ECDS_DIR", self.dir())
            .env("STAKEGUARD_WASM", &self.module)
            .env("STAKEGUARD_CLI", cli)
            .current_dir(crate::repo_root())
            .output()
            .map_err(|e| format!("run swap-policy.sh: {e}"))?;
        Ok(ScriptRun {
            ok: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
