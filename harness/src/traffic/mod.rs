//! Recorded traffic: the [`Record`] every reader produces and format detection.
//!
//! Three formats are read, told apart by content: HAR 1.2 (browser devtools, mitmproxy
//! and proxy tool exports), Envoy tap traces (buffered or streamed, one JSON object or
//! JSON Lines), and stakeguard's own JSON Lines (see `harness/README.md`). An unreadable
//! entry is an error naming the file, the entry index (and line) and the field; the
//! lenient readers report such entries and go on.

pub mod har;
pub mod jsonl;
pub mod tap;
pub mod time;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::TrafficError;

/// One recorded request and, when recorded, its upstream response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// When the request started, nanoseconds since the epoch.
    pub time_ns: Option<i64>,
    /// Downstream connection key (requests of one connection go to one worker).
    pub connection: Option<String>,
    /// The request.
    pub request: RecordRequest,
    /// Downstream peer `ip:port`.
    pub source: Option<String>,
    /// Local address `ip:port`.
    pub destination: Option<String>,
    /// Peer certificate URI SAN (mTLS).
    pub peer_uri_san: Option<String>,
    /// The upstream response, when recorded.
    pub response: Option<RecordResponse>,
    /// Property overrides by dotted path (`null` removes a property).
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Where it came from (`file:entry`), for messages.
    pub origin: String,
}

/// A recorded request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRequest {
    /// `:method`.
    pub method: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`, with the query.
    pub path: String,
    /// `:scheme`.
    pub scheme: String,
    /// Regular headers in order (no pseudo-headers).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, String)>,
}

/// A recorded upstream response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordResponse {
    /// Status code.
    pub status: u16,
    /// Regular headers in order (no `:status`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, String)>,
}

impl RecordRequest {
    /// All request headers as Envoy's map holds them: pseudo-headers first.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (":authority".to_string(), self.authority.clone()),
            (":path".to_string(), self.path.clone()),
            (":method".to_string(), self.method.clone()),
            (":scheme".to_string(), self.scheme.clone()),
        ];
        out.extend(self.headers.iter().cloned());
        out
    }
}

/// The formats the readers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HAR 1.2.
    Har,
    /// Envoy tap traces.
    Tap,
    /// stakeguard JSON Lines.
    JsonLines,
}

/// Tells the format from the content.
pub fn detect(text: &str) -> Option<Format> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if map.contains_key("log") {
            return Some(Format::Har);
        }
        if tap::is_tap_object(&map) {
            return Some(Format::Tap);
        }
        return Some(Format::JsonLines);
    }
    let first = trimmed.lines().next()?;
    match serde_json::from_str::<serde_json::Value>(first) {
        Ok(serde_json::Value::Object(map)) if tap::is_tap_object(&map) => Some(Format::Tap),
        Ok(serde_json::Value::Object(_)) => Some(Format::JsonLines),
        _ => None,
    }
}

/// Reads a traffic file; the first bad entry is an error.
pub fn read_file(path: &Path) -> Result<Vec<Record>, TrafficError> {
    let (records, mut errors) = read_file_lenient(path)?;
    match errors.is_empty() {
        true => Ok(records),
        false => Err(errors.remove(0)),
    }
}

/// Reads a traffic file, collecting bad entries instead of stopping at the first.
pub fn read_file_lenient(path: &Path) -> Result<(Vec<Record>, Vec<TrafficError>), TrafficError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrafficError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read_str(path, &text)
}

/// Reads traffic from text; `path` names it in messages.
pub fn read_str(path: &Path, text: &str) -> Result<(Vec<Record>, Vec<TrafficError>), TrafficError> {
    match detect(text) {
        Some(Format::Har) => har::read(path, text),
        Some(Format::Tap) => tap::read(path, text),
        Some(Format::JsonLines) => Ok(jsonl::read(path, text)),
        None => Err(TrafficError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// An entry error.
pub(crate) fn entry_error(
    path: &Path,
    entry: usize,
    line: Option<usize>,
    field: &str,
    message: impl Into<String>,
) -> TrafficError {
    TrafficError::Entry {
        path: PathBuf::from(path),
        entry,
        line: line.map(|l| format!(" (line {l})")).unwrap_or_default(),
        field: if field.is_empty() || field == "." {
            "(entry)".to_string()
        } else {
            field.to_string()
        },
        message: message.into(),
    }
}

/// Decodes standard base64 (padding optional).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    engine
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
        .map_err(|e| format!("invalid base64: {e}"))
}

/// Splits a URL into scheme, authority and path (with query, without fragment).
pub fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((scheme.to_ascii_lowercase(), authority.to_string(), path))
}

/// Drops pseudo-headers and `host` (Envoy folds it into `:authority`), lowercases names.
pub(crate) fn regular_headers<I: IntoIterator<Item = (String, String)>>(
    pairs: I,
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| !k.starts_with(':') && k != "host")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_pseudo_headers() {
        assert_eq!(
            split_url("HTTPS://user@api.example.com:8443/a/b?x=1#frag").unwrap(),
            (
                "https".into(),
                "api.example.com:8443".into(),
                "/a/b?x=1".into()
            )
        );
        assert_eq!(
            split_url("http://h?q").unwrap(),
            ("http".into(), "h".into(), "/?q".into())
        );
        assert!(split_url("/relative").is_err());
    }

    #[test]
    fn formats_are_told_apart_by_content() {
        assert_eq!(detect(r#"{"log":{"entries":[]}}"#), Some(Format::Har));
        assert_eq!(detect(r#"{"http_buffered_trace":{}}"#), Some(Format::Tap));
        assert_eq!(
            detect("{\"request\":{}}\n{\"request\":{}}\n"),
            Some(Format::JsonLines)
        );
        assert_eq!(detect("GET / HTTP/1.1"), None);
    }
}
