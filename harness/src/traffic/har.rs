//! HAR 1.2 (browser devtools, mitmproxy, Charles, ZAP exports): each entry's request URL
//! becomes `:scheme`, `:authority` and `:path` (with the query), `startedDateTime` the
//! time, `connection` the connection key; bodies in `text` are base64 when `encoding`
//! says so. Fields HAR tools add beyond 1.2 are ignored.

use std::path::Path;

use serde::Deserialize;

use super::{
    Record, RecordRequest, RecordResponse, decode_base64, entry_error, regular_headers, split_url,
};
use crate::error::TrafficError;

#[derive(Debug, Deserialize)]
struct Har {
    log: Log,
}

#[derive(Debug, Deserialize)]
struct Log {
    entries: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    started_date_time: String,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    connection: Option<String>,
    #[serde(default, rename = "serverIPAddress")]
    server_ip_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Debug, Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct PostData {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Response {
    status: i64,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

fn text_body(text: Option<String>, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match (text, encoding) {
        (None, _) => Ok(Vec::new()),
        (Some(t), Some("base64")) => decode_base64(&t),
        (Some(t), _) => Ok(t.into_bytes()),
    }
}

fn pairs(list: Vec<NameValue>) -> Vec<(String, String)> {
    regular_headers(list.into_iter().map(|nv| (nv.name, nv.value)))
}

fn convert(path: &Path, index: usize, value: serde_json::Value) -> Result<Record, TrafficError> {
    let fail = |field: &str, message: String| entry_error(path, index, None, field, message);
    let entry: Entry = serde_path_to_error::deserialize(value).map_err(|e| {
        fail(
            &format!("log.entries[{index}].{}", e.path()),
            e.inner().to_string(),
        )
    })?;
    let at = |f: &str| format!("log.entries[{index}].{f}");
    let time_ns = super::time::parse_rfc3339(&entry.started_date_time)
        .map_err(|e| fail(&at("startedDateTime"), e))?;
    let (scheme, authority, path_q) =
        split_url(&entry.request.url).map_err(|e| fail(&at("request.url"), e))?;
    let body = match entry.request.post_data {
        Some(p) => text_body(p.text, p.encoding.as_deref())
            .map_err(|e| fail(&at("request.postData.text"), e))?,
        None => Vec::new(),
    };
    let response = match entry.response {
        // Devtools write status 0 for requests that never got an answer.
        Some(r) if r.status > 0 => {
            let status = u16::try_from(r.status).map_err(|_| {
                fail(
                    &at("response.status"),
                    format!("{} is not an HTTP status", r.status),
                )
            })?;
            let body = match r.content {
                Some(c) => text_body(c.text, c.encoding.as_deref())
                    .map_err(|e| fail(&at("response.content.text"), e))?,
                None => Vec::new(),
            };
            Some(RecordResponse {
                status,
                headers: pairs(r.headers),
                body,
                trailers: Vec::new(),
            })
        }
        _ => None,
    };
    Ok(Record {
        time_ns: Some(time_ns),
        connection: entry.connection,
        request: RecordRequest {
            method: entry.request.method,
            authority,
            path: path_q,
            scheme,
            headers: pairs(entry.request.headers),
            body,
            trailers: Vec::new(),
        },
        source: None,
        destination: entry.server_ip_address,
        peer_uri_san: None,
        response,
        properties: Default::default(),
        origin: format!("{}#{index}", path.display()),
    })
}

/// Reads a HAR document.
pub fn read(path: &Path, text: &str) -> Result<(Vec<Record>, Vec<TrafficError>), TrafficError> {
    let har: Har = serde_json::from_str(text).map_err(|e| TrafficError::Entry {
        path: path.to_path_buf(),
        entry: 0,
        line: format!(" (line {})", e.line()),
        field: "log.entries".to_string(),
        message: e.to_string(),
    })?;
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (i, value) in har.log.entries.into_iter().enumerate() {
        match convert(path, i, value) {
            Ok(r) => records.push(r),
            Err(e) => errors.push(e),
        }
    }
    Ok((records, errors))
}
