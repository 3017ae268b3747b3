//! Why packaging failed.

use std::path::{Path, PathBuf};

/// A packaging error.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The module does not start with the Wasm magic number and version 1.
    NotWasm,
    /// The tag is not a valid OCI tag.
    BadTag(String),
    /// The output directory exists, is not empty and is not an OCI layout.
    NotALayout(PathBuf),
    /// A tar entry's name does not fit a ustar header.
    NameTooLong(String),
    /// JSON encoding failed.
    Json(serde_json::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NotWasm => write!(
                f,
                "the module is not a Wasm binary (no `\\0asm` version 1 header); build it with `make wasm`"
            ),
            Self::BadTag(tag) => write!(
                f,
                "tag `{tag}` is not a valid OCI tag; use letters, digits, `.`, `_`, `-` (at most 128, not starting with `.` or `-`)"
            ),
            Self::NotALayout(path) => write!(
                f,
                "{} exists and is not an OCI layout; choose an empty or new directory",
                path.display()
            ),
            Self::NameTooLong(name) => {
                write!(f, "tar entry name `{name}` is longer than 100 bytes")
            }
            Self::Json(e) => write!(f, "json: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}
