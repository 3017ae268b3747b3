//! A scratch directory per Envoy run (bootstrap, logs, certificates), removed on drop
//! unless `STAKEGUARD_KEEP_TMP` is set, so a failed comparison can still be read.

use std::path::{Path, PathBuf};

/// A fresh scratch directory under the system temp dir, removed on drop unless
/// `STAKEGUARD_KEEP_TMP` is set (then its path is printed, to read Envoy's logs).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/stakeguard-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("stakeguard-{label}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STAKEGUARD_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
