//! Recorded traffic: the [`Record`] every reader produces and format detection.
//!
//! Three formats are read, told apart by content: HAR 1.2 (browser devtools, mitmproxy
//! and proxy tool exports), Envoy tap traces (buffered or streamed, one JSON object or
//! JSON Lines), and stakeguard's own JSON Lines (see `harness/README.md`). An unreadable
//! entry is an error naming the file, the entry index (and line) and the field; the
//! lenient readers report such entries and go on. Several files, and directories read
//! whole, are merged in recorded-time order ([`sources`]).

pub mod har;
pub mod jsonl;
pub mod sources;
pub mod tap;
pub mod time;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::TrafficError;

pub use sources::{read_paths, read_paths_lenient};

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

/// Why a text is none of the formats, and where its reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undetected {
    /// What is wrong, in words (the format it looked like, when it looked like one).
    pub reason: String,
    /// One-based line where the reading stopped.
    pub line: usize,
    /// Column on that line (serde_json's count: 0 before its first character).
    pub column: usize,
}

/// Tells the format from the content. One JSON object is HAR (a `log` member), a tap
/// trace (a trace member) or one stakeguard record; an array is tap traces; otherwise the
/// first line decides between tap traces and stakeguard records as JSON Lines. A text
/// that is none of them says where it stopped: empty, cut short (an unclosed document:
/// a file still being written), or not JSON.
pub fn detect(text: &str) -> Result<Format, Undetected> {
    let whole = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => return Ok(object_format(&map)),
        Ok(serde_json::Value::Array(items)) => {
            return match items.first() {
                Some(serde_json::Value::Object(map)) if tap::is_tap_object(map) => Ok(Format::Tap),
                _ => Err(Undetected {
                    reason:
                        "unknown format: a JSON array whose first item is not an Envoy tap trace"
                            .to_string(),
                    line: 1,
                    column: 1,
                }),
            };
        }
        Ok(_) => {
            return Err(Undetected {
                reason: "unknown format: a JSON value that is neither an object nor an array"
                    .to_string(),
                line: 1,
                column: 1,
            });
        }
        Err(e) => e,
    };
    // JSON Lines: the whole text is several values, so only the first line is one.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(first) {
        return Ok(object_format(&map));
    }
    let looks_like = guess(text).map_or("a JSON document of unknown format", Format::article_name);
    let reason = match whole.classify() {
        serde_json::error::Category::Eof if text.trim().is_empty() => {
            "empty: the text ends before any JSON".to_string()
        }
        serde_json::error::Category::Eof => format!(
            "cut short: {looks_like} ends before it is complete (a file still being written?)"
        ),
        _ if !text.trim_start().starts_with(['{', '[']) => "unknown format: not JSON".to_string(),
        _ => format!("{looks_like} is not valid JSON: {}", strip_position(&whole)),
    };
    Err(Undetected {
        reason,
        line: whole.line(),
        column: whole.column(),
    })
}

/// The format of one whole JSON object.
fn object_format(map: &serde_json::Map<String, serde_json::Value>) -> Format {
    if map.contains_key("log") {
        Format::Har
    } else if tap::is_tap_object(map) {
        Format::Tap
    } else {
        Format::JsonLines
    }
}

/// The format an unreadable text looks like from its first member name (`{"log"` is
/// HAR, a trace member a tap trace, `"request"`/`"time"` a stakeguard record), so a
/// message about a cut-short file can name what it was meant to be.
fn guess(text: &str) -> Option<Format> {
    let rest = text.trim_start();
    let rest = rest.strip_prefix('[').map_or(rest, str::trim_start);
    let rest = rest.strip_prefix('{')?.trim_start().strip_prefix('"')?;
    let key = rest.split('"').next()?;
    match key {
        "log" => Some(Format::Har),
        "http_buffered_trace"
        | "httpBufferedTrace"
        | "http_streamed_trace_segment"
        | "httpStreamedTraceSegment" => Some(Format::Tap),
        "request" | "time" | "connection" => Some(Format::JsonLines),
        _ => None,
    }
}

/// serde_json's message without its trailing ` at line L column C` (the position is
/// given once, by the caller).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl Format {
    /// The format's name with an article, for messages.
    fn article_name(self) -> &'static str {
        match self {
            Format::Har => "a HAR 1.2 document",
            Format::Tap => "an Envoy tap trace",
            Format::JsonLines => "a stakeguard JSON Lines record",
        }
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
        Ok(Format::Har) => har::read(path, text),
        Ok(Format::Tap) => tap::read(path, text),
        Ok(Format::JsonLines) => Ok(jsonl::read(path, text)),
        Err(u) => Err(TrafficError::UnknownFormat {
            path: path.to_path_buf(),
            reason: u.reason,
            line: u.line,
            column: u.column,
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
        assert_eq!(detect(r#"{"log":{"entries":[]}}"#), Ok(Format::Har));
        assert_eq!(detect(r#"{"http_buffered_trace":{}}"#), Ok(Format::Tap));
        assert_eq!(detect(r#"[{"http_buffered_trace":{}}]"#), Ok(Format::Tap));
        assert_eq!(
            detect("{\"request\":{}}\n{\"request\":{}}\n"),
            Ok(Format::JsonLines)
        );
        let not_json = detect("GET / HTTP/1.1").unwrap_err();
        assert_eq!(not_json.reason, "unknown format: not JSON");
        assert_eq!((not_json.line, not_json.column), (1, 1));
    }

    #[test]
    fn empty_and_cut_short_texts_say_what_they_were_and_where_they_stop() {
        let empty = detect("\n  \n").unwrap_err();
        assert_eq!(empty.reason, "empty: the text ends before any JSON");
        assert_eq!(empty.line, 3);
        let har = detect("{\n  \"log\": {\n    \"entries\": [\n      {\"request\": {\"url\"")
            .unwrap_err();
        assert!(
            har.reason.starts_with("cut short: a HAR 1.2 document ends"),
            "{har:?}"
        );
        assert_eq!((har.line, har.column), (4, 24));
        let tap = detect("{\"http_buffered_trace\": {\"request\": ").unwrap_err();
        assert!(tap.reason.contains("an Envoy tap trace ends"), "{tap:?}");
        let bad = detect("{\"log\": {\"entries\": [}\n").unwrap_err();
        assert_eq!(
            bad.reason,
            "a HAR 1.2 document is not valid JSON: expected value"
        );
        assert_eq!((bad.line, bad.column), (1, 22));
    }
}
