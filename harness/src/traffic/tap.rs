//! Envoy tap traces (`envoy.data.tap.v3.TraceWrapper` as JSON): buffered traces
//! (`http_buffered_trace` with request and response headers, body and trailers) and
//! streamed segments (`http_streamed_trace_segment`, joined by `trace_id`), as one JSON
//! object, JSON Lines, or a JSON array. Bodies are `as_bytes` (base64) or `as_string`;
//! `truncated` is kept as is. Both the proto field names and their camelCase JSON
//! names are accepted. The downstream remote address is the connection key.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{Record, RecordRequest, RecordResponse, decode_base64, entry_error, regular_headers};
use crate::error::TrafficError;

/// Whether a JSON object is a tap trace.
pub fn is_tap_object(map: &Map<String, Value>) -> bool {
    [
        "http_buffered_trace",
        "httpBufferedTrace",
        "http_streamed_trace_segment",
        "httpStreamedTraceSegment",
    ]
    .iter()
    .any(|k| map.contains_key(*k))
}

/// Gets `snake` or its camelCase twin.
fn field<'a>(v: &'a Value, snake: &str) -> Option<&'a Value> {
    let camel: String = {
        let mut out = String::new();
        let mut up = false;
        for c in snake.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    v.get(snake).or_else(|| v.get(camel))
}

fn headers(v: Option<&Value>, at: &str) -> Result<Vec<(String, String)>, (String, String)> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| {
        (
            at.to_string(),
            "expected a list of {key, value}".to_string(),
        )
    })?;
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let key = h.get("key").and_then(Value::as_str);
        let value = field(h, "value")
            .and_then(Value::as_str)
            .or_else(|| field(h, "raw_value").and_then(Value::as_str));
        match key {
            Some(k) => out.push((k.to_string(), value.unwrap_or("").to_string())),
            None => return Err((format!("{at}[{i}].key"), "missing header key".to_string())),
        }
    }
    Ok(out)
}

fn body(v: Option<&Value>, at: &str) -> Result<Vec<u8>, (String, String)> {
    let Some(v) = v else { return Ok(Vec::new()) };
    if let Some(b) = field(v, "as_bytes").and_then(Value::as_str) {
        return decode_base64(b).map_err(|e| (format!("{at}.as_bytes"), e));
    }
    if let Some(s) = field(v, "as_string").and_then(Value::as_str) {
        return Ok(s.as_bytes().to_vec());
    }
    Ok(Vec::new())
}

fn address(conn: Option<&Value>, which: &str) -> Option<String> {
    let sa = field(field(conn?, which)?, "socket_address")?;
    let ip = sa.get("address")?.as_str()?;
    let port =
        field(sa, "port_value").and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()));
    Some(match port {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    })
}

struct Parts {
    request_headers: Vec<(String, String)>,
    request_body: Vec<u8>,
    request_trailers: Vec<(String, String)>,
    response_headers: Option<Vec<(String, String)>>,
    response_body: Vec<u8>,
    response_trailers: Vec<(String, String)>,
    time: Option<i64>,
    connection: Option<Value>,
}

fn build(parts: Parts, origin: String) -> Result<Record, (String, String)> {
    let get = |name: &str| {
        parts
            .request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let method = get(":method").ok_or((
        "request.headers".to_string(),
        "no :method header".to_string(),
    ))?;
    let path =
        get(":path").ok_or(("request.headers".to_string(), "no :path header".to_string()))?;
    let authority = get(":authority").or_else(|| get("host")).ok_or((
        "request.headers".to_string(),
        "no :authority or host header".to_string(),
    ))?;
    let scheme = get(":scheme").unwrap_or_else(|| "http".to_string());
    let response = match parts.response_headers {
        None => None,
        Some(h) => {
            let status = h
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
                .ok_or((
                    "response.headers".to_string(),
                    "no valid :status header".to_string(),
                ))?;
            Some(RecordResponse {
                status,
                headers: regular_headers(h),
                body: parts.response_body,
                trailers: parts.response_trailers,
            })
        }
    };
    let source = address(parts.connection.as_ref(), "remote_address");
    Ok(Record {
        time_ns: parts.time,
        connection: source.clone(),
        request: RecordRequest {
            method,
            authority,
            path,
            scheme,
            headers: regular_headers(parts.request_headers),
            body: parts.request_body,
            trailers: parts.request_trailers,
        },
        source,
        destination: address(parts.connection.as_ref(), "local_address"),
        peer_uri_san: None,
        response,
        properties: Default::default(),
        origin,
    })
}

fn time_of(msg: Option<&Value>) -> Option<i64> {
    let t = field(msg?, "headers_received_time")?.as_str()?;
    super::time::parse_rfc3339(t).ok()
}

fn buffered(trace: &Value, origin: String) -> Result<Record, (String, String)> {
    let req = field(trace, "request");
    let resp = field(trace, "response");
    let parts = Parts {
        request_headers: headers(
            req.and_then(|r| field(r, "headers")),
            "http_buffered_trace.request.headers",
        )?,
        request_body: body(
            req.and_then(|r| field(r, "body")),
            "http_buffered_trace.request.body",
        )?,
        request_trailers: headers(
            req.and_then(|r| field(r, "trailers")),
            "http_buffered_trace.request.trailers",
        )?,
        response_headers: match resp.and_then(|r| field(r, "headers")) {
            Some(h) => Some(headers(Some(h), "http_buffered_trace.response.headers")?),
            None => None,
        },
        response_body: body(
            resp.and_then(|r| field(r, "body")),
            "http_buffered_trace.response.body",
        )?,
        response_trailers: headers(
            resp.and_then(|r| field(r, "trailers")),
            "http_buffered_trace.response.trailers",
        )?,
        time: time_of(req),
        connection: field(trace, "downstream_connection").cloned(),
    };
    build(parts, origin)
}

/// Reads tap traces.
pub fn read(path: &Path, text: &str) -> Result<(Vec<Record>, Vec<TrafficError>), TrafficError> {
    // One object, an array, or JSON Lines: gather (entry index, line, value).
    let mut values: Vec<(Option<usize>, Value)> = Vec::new();
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(items)) => values.extend(items.into_iter().map(|v| (None, v))),
        Ok(v) => values.push((None, v)),
        Err(_) => {
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => values.push((Some(n + 1), v)),
                    Err(e) => {
                        return Err(entry_error(
                            path,
                            values.len(),
                            Some(n + 1),
                            "(entry)",
                            e.to_string(),
                        ));
                    }
                }
            }
        }
    }
    let mut records = Vec::new();
    let mut errors = Vec::new();
    // Streamed segments by trace id, in first-seen order.
    let mut streams: BTreeMap<String, (usize, Option<usize>, Parts)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (index, (line, value)) in values.into_iter().enumerate() {
        if let Some(trace) = field(&value, "http_buffered_trace") {
            match buffered(trace, format!("{}#{index}", path.display())) {
                Ok(r) => records.push((index, r)),
                Err((f, m)) => errors.push(entry_error(path, index, line, &f, m)),
            }
        } else if let Some(seg) = field(&value, "http_streamed_trace_segment") {
            let id = match field(seg, "trace_id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    errors.push(entry_error(
                        path,
                        index,
                        line,
                        "http_streamed_trace_segment.trace_id",
                        "missing trace id",
                    ));
                    continue;
                }
            };
            if !streams.contains_key(&id) {
                order.push(id.clone());
            }
            let (_, _, parts) = streams.entry(id).or_insert_with(|| {
                (
                    index,
                    line,
                    Parts {
                        request_headers: Vec::new(),
                        request_body: Vec::new(),
                        request_trailers: Vec::new(),
                        response_headers: None,
                        response_body: Vec::new(),
                        response_trailers: Vec::new(),
                        time: None,
                        connection: None,
                    },
                )
            });
            let at = "http_streamed_trace_segment";
            let r = (|| -> Result<(), (String, String)> {
                if let Some(h) = field(seg, "request_headers") {
                    parts.request_headers = headers(
                        field(h, "headers"),
                        &format!("{at}.request_headers.headers"),
                    )?;
                    parts.time = parts.time.or(time_of(Some(h)));
                }
                if let Some(b) = field(seg, "request_body_chunk") {
                    parts
                        .request_body
                        .extend(body(Some(b), &format!("{at}.request_body_chunk"))?);
                }
                if let Some(h) = field(seg, "request_trailers") {
                    parts.request_trailers = headers(
                        field(h, "headers"),
                        &format!("{at}.request_trailers.headers"),
                    )?;
                }
                if let Some(h) = field(seg, "response_headers") {
                    parts.response_headers = Some(headers(
                        field(h, "headers"),
                        &format!("{at}.response_headers.headers"),
                    )?);
                }
                if let Some(b) = field(seg, "response_body_chunk") {
                    parts
                        .response_body
                        .extend(body(Some(b), &format!("{at}.response_body_chunk"))?);
                }
                if let Some(h) = field(seg, "response_trailers") {
                    parts.response_trailers = headers(
                        field(h, "headers"),
                        &format!("{at}.response_trailers.headers"),
                    )?;
                }
                if let Some(c) = field(seg, "connection") {
                    parts.connection = Some(c.clone());
                }
                Ok(())
            })();
            if let Err((f, m)) = r {
                errors.push(entry_error(path, index, line, &f, m));
            }
        } else {
            errors.push(entry_error(
                path,
                index,
                line,
                "(entry)",
                "neither http_buffered_trace nor http_streamed_trace_segment",
            ));
        }
    }
    for id in order {
        if let Some((index, line, parts)) = streams.remove(&id) {
            match build(parts, format!("{}#trace-{id}", path.display())) {
                Ok(r) => records.push((index, r)),
                Err((f, m)) => errors.push(entry_error(
                    path,
                    index,
                    line,
                    &format!("trace {id}: {f}"),
                    m,
                )),
            }
        }
    }
    records.sort_by_key(|(i, _)| *i);
    Ok((records.into_iter().map(|(_, r)| r).collect(), errors))
}
