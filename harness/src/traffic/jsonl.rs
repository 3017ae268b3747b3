//! stakeguard's JSON Lines traffic format: one request (and optionally its upstream
//! response) per line. Field by field, see `harness/README.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Record, RecordRequest, RecordResponse, decode_base64, entry_error, regular_headers};
use crate::error::TrafficError;

/// A time as RFC 3339 text or milliseconds since the epoch.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Time {
    Millis(i64),
    Text(String),
}

/// A connection id as text or number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ConnectionId {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    time: Option<Time>,
    #[serde(default)]
    connection: Option<ConnectionId>,
    request: Request,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    peer_uri_san: Option<String>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default = "default_method")]
    method: String,
    authority: String,
    path: String,
    #[serde(default = "default_scheme")]
    scheme: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    trailers: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response {
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    trailers: Vec<(String, String)>,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_scheme() -> String {
    "https".to_string()
}

fn body(text: Option<String>, b64: Option<String>) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err("give `body` or `body_base64`, not both".to_string()),
        (Some(t), None) => Ok(t.into_bytes()),
        (None, Some(b)) => decode_base64(&b),
        (None, None) => Ok(Vec::new()),
    }
}

fn convert(line: Line) -> Result<Record, (String, String)> {
    let time_ns = match line.time {
        None => None,
        Some(Time::Millis(ms)) => Some(ms.saturating_mul(1_000_000)),
        Some(Time::Text(t)) => {
            Some(super::time::parse_rfc3339(&t).map_err(|e| ("time".to_string(), e))?)
        }
    };
    let request_body = body(line.request.body, line.request.body_base64)
        .map_err(|e| ("request.body_base64".to_string(), e))?;
    let response = match line.response {
        None => None,
        Some(r) => Some(RecordResponse {
            status: r.status,
            headers: regular_headers(r.headers),
            body: body(r.body, r.body_base64)
                .map_err(|e| ("response.body_base64".to_string(), e))?,
            trailers: r.trailers,
        }),
    };
    Ok(Record {
        time_ns,
        connection: line.connection.map(|c| match c {
            ConnectionId::Number(n) => n.to_string(),
            ConnectionId::Text(t) => t,
        }),
        request: RecordRequest {
            method: line.request.method,
            authority: line.request.authority,
            path: line.request.path,
            scheme: line.request.scheme,
            headers: regular_headers(line.request.headers),
            body: request_body,
            trailers: line.request.trailers,
        },
        source: line.source,
        destination: line.destination,
        peer_uri_san: line.peer_uri_san,
        response,
        properties: line.properties,
        origin: String::new(),
    })
}

/// Reads JSON Lines; blank lines are skipped, every other line is one entry.
pub fn read(path: &Path, text: &str) -> (Vec<Record>, Vec<TrafficError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut entry = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let index = entry;
        entry += 1;
        let de = &mut serde_json::Deserializer::from_str(line);
        let parsed: Result<Line, _> = serde_path_to_error::deserialize(de);
        let result = match parsed {
            Ok(l) => convert(l),
            Err(e) => Err((e.path().to_string(), e.inner().to_string())),
        };
        match result {
            Ok(mut r) => {
                r.origin = format!("{}:{}", path.display(), n + 1);
                records.push(r);
            }
            Err((field, message)) => {
                errors.push(entry_error(path, index, Some(n + 1), &field, message))
            }
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_a_record() {
        let text = r#"{"time":"2026-01-01T00:00:00Z","connection":7,"request":{"method":"POST","authority":"a","path":"/p","headers":[["X-A","1"],["host","a"]],"body_base64":"aGk="},"response":{"status":201,"body":"ok"},"properties":{"request.id":"r1"}}"#;
        let (records, errors) = read(Path::new("t.jsonl"), text);
        assert!(errors.is_empty(), "{errors:?}");
        let r = &records[0];
        assert_eq!(r.connection.as_deref(), Some("7"));
        assert_eq!(
            r.request.headers,
            vec![("x-a".to_string(), "1".to_string())]
        );
        assert_eq!(r.request.body, b"hi");
        assert_eq!(r.response.as_ref().unwrap().status, 201);
        assert_eq!(r.origin, "t.jsonl:1");
    }

    #[test]
    fn a_bad_field_is_named_with_entry_and_line() {
        let text = "{\"request\":{\"authority\":\"a\",\"path\":\"/\"}}\n\n{\"request\":{\"authority\":\"a\",\"path\":\"/\",\"headers\":[[\"k\",1]]}}\n";
        let (records, errors) = read(Path::new("t.jsonl"), text);
        assert_eq!(records.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.contains("t.jsonl: entry 1 (line 3): request.headers[0]"),
            "{message}"
        );
    }
}
