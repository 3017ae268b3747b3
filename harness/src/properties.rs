//! Envoy's attribute ("property") model, derived from each recorded request.
//!
//! `proxy_get_property` walks a NUL-separated path such as `request\0path`. Envoy answers
//! from its CEL attribute wrappers and serializes the value natively: strings and bytes
//! raw, integers as 8 little-endian bytes, booleans as one byte, timestamps and
//! durations as int64 nanoseconds, maps as proxy-wasm pairs. This module holds the
//! per-stream facts ([`StreamInfo`], built by the replay from a record and its
//! overrides) and the lookup, so the host function stays a thin adapter.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::abi::Status;
use crate::host::memory::{encode_pairs_into, pairs_size, text};
use crate::host::state::{HeaderMap, StreamState, VmConfig};
use crate::report::Text;

/// A property value before serialization, borrowing what it can from the stream and
/// the configuration: a lookup allocates only for values it has to build (a header
/// repeated under one name, an override path).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A string (or bytes), serialized raw.
    Bytes(Cow<'a, [u8]>),
    /// A signed integer, 8 bytes little-endian.
    Int(i64),
    /// An unsigned integer, 8 bytes little-endian.
    Uint(u64),
    /// A boolean, one byte.
    Bool(bool),
    /// A double, 8 bytes little-endian.
    Double(f64),
    /// A timestamp: int64 nanoseconds since the epoch.
    Timestamp(i64),
    /// A string map, serialized as pairs.
    Map(Cow<'a, [(Text, Text)]>),
}

impl<'a> Value<'a> {
    /// A string value.
    pub fn str(s: &'a str) -> Value<'a> {
        Value::Bytes(Cow::Borrowed(s.as_bytes()))
    }

    /// The same value, borrowed.
    fn borrowed(&self) -> Value<'_> {
        match self {
            Value::Bytes(b) => Value::Bytes(Cow::Borrowed(b)),
            Value::Map(pairs) => Value::Map(Cow::Borrowed(pairs)),
            Value::Int(i) => Value::Int(*i),
            Value::Uint(u) => Value::Uint(*u),
            Value::Bool(b) => Value::Bool(*b),
            Value::Double(d) => Value::Double(*d),
            Value::Timestamp(t) => Value::Timestamp(*t),
        }
    }

    /// Appends the bytes Envoy hands the module to `out`.
    pub fn serialize_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Int(i) | Value::Timestamp(i) => out.extend_from_slice(&i.to_le_bytes()),
            Value::Uint(u) => out.extend_from_slice(&u.to_le_bytes()),
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
            Value::Map(pairs) => {
                let start = out.len();
                out.resize(start + pairs_size(pairs), 0);
                if let Some(dest) = out.get_mut(start..) {
                    encode_pairs_into(pairs, dest);
                }
            }
        }
    }
}

impl Value<'static> {
    /// A value from a JSON override: strings raw, integers int64 (unsigned past
    /// i64::MAX), floats double, booleans, objects of strings as maps; null means "absent".
    pub fn from_json(value: &serde_json::Value) -> Option<Value<'static>> {
        Some(match value {
            serde_json::Value::Null => return None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::Uint(u)
                } else {
                    Value::Double(n.as_f64().unwrap_or_default())
                }
            }
            serde_json::Value::String(s) => Value::Bytes(Cow::Owned(s.as_bytes().to_vec())),
            serde_json::Value::Array(items) => Value::Map(
                items
                    .iter()
                    .map(|v| (Text::from(json_text(v)), Text::from("")))
                    .collect(),
            ),
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (Text::from(k.as_str()), Text::from(json_text(v))))
                    .collect(),
            ),
        })
    }
}

/// A record's property overrides by path. A key is a dotted path (`source.address`); an
/// object value is both the map at its path and, member by member, the values below it,
/// so the nested form `{"metadata": {"filter_metadata": {"envoy.lb": {...}}}}` answers
/// a module that asks for `metadata` / `filter_metadata` / `envoy.lb` as segments, like
/// the flat key `metadata.filter_metadata.envoy.lb`. A flat key wins over a value a
/// nested object implies at the same path.
pub fn overrides(
    properties: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, Option<Value<'static>>> {
    fn nested(
        path: &str,
        value: &serde_json::Value,
        out: &mut BTreeMap<String, Option<Value<'static>>>,
    ) {
        if let serde_json::Value::Object(members) = value {
            for (key, member) in members {
                let below = format!("{path}.{key}");
                nested(&below, member, out);
                out.insert(below, Value::from_json(member));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (path, value) in properties {
        nested(path, value, &mut out);
    }
    for (path, value) in properties {
        out.insert(path.clone(), Value::from_json(value));
    }
    out
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the property model knows about a record, whatever replay it runs in: built once
/// when the records are prepared, and shared by every stream that replays the record.
/// (The start time and connection id of a stream are the replay's: see
/// [`StreamState`].)
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// `x-request-id` or a generated id.
    pub request_id: String,
    /// `request.protocol`.
    pub protocol: String,
    /// Downstream peer `ip:port`.
    pub source: Option<String>,
    /// Local address `ip:port`.
    pub destination: Option<String>,
    /// Peer certificate URI SAN (implies mTLS).
    pub peer_uri_san: Option<String>,
    /// Requested server name (SNI).
    pub sni: Option<String>,
    /// `xds.route_name`.
    pub route_name: String,
    /// `xds.cluster_name`.
    pub cluster_name: String,
    /// The original request headers (for `request.*` once the live map is gone).
    pub request_headers: HeaderMap,
    /// Overrides from the record, by dotted path.
    pub overrides: BTreeMap<String, Option<Value<'static>>>,
}

/// The port of an `ip:port` or `[ipv6]:port` address.
fn port_of(addr: &str) -> Option<i64> {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest
            .split_once("]:")
            .and_then(|(_, port)| port.parse().ok());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => port.parse().ok(),
        _ => None,
    }
}

/// The values of header `name` (any case) joined with commas, as Envoy's CEL wrapper
/// answers.
fn headers_value<'a>(map: &'a HeaderMap, name: &str) -> Option<Value<'a>> {
    let mut values = map
        .entries()
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| &**v);
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Value::str(first));
    };
    let joined = [first, second]
        .into_iter()
        .chain(values)
        .collect::<Vec<_>>();
    Some(Value::Bytes(Cow::Owned(joined.join(",").into_bytes())))
}

/// The most segments after the first a property path the model answers has
/// (`request.headers.<name>`).
const MAX_REST: usize = 2;

/// The NUL-separated segments of a property path, found by a byte scan (the char
/// pattern's searcher costs more to set up than these short paths take to scan).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == 0) {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Looks a property up for the acting context (`stream` is `None` in a root context).
pub fn get<'a>(
    config: &'a VmConfig,
    stream: Option<&'a StreamState>,
    path: &[u8],
) -> Result<Value<'a>, Status> {
    let path = text(path);
    if let Some(stream) = stream
        && !stream.info.overrides.is_empty()
        && let Some(value) = stream.info.overrides.get(&path.replace('\0', "."))
    {
        return value.as_ref().map(Value::borrowed).ok_or(Status::NotFound);
    }
    let mut segments = segments(&path);
    let first = segments.next().unwrap_or_default();
    let mut rest = [""; MAX_REST];
    let mut count = 0;
    for segment in segments {
        // A longer path names nothing the model knows.
        let slot = rest.get_mut(count).ok_or(Status::NotFound)?;
        *slot = segment;
        count += 1;
    }
    let rest = rest.get(..count).unwrap_or_default();
    let value = match first {
        "plugin_name" if rest.is_empty() => Value::str(&config.plugin_name),
        "plugin_root_id" if rest.is_empty() => Value::str(&config.root_id),
        "plugin_vm_id" if rest.is_empty() => Value::str(&config.vm_id),
        "node" => match rest {
            ["id"] => Value::str(&config.node_id),
            ["cluster"] => Value::str(&config.node_cluster),
            _ => return Err(Status::NotFound),
        },
        _ => {
            let Some(stream) = stream else {
                return Err(Status::NotFound);
            };
            stream_value(stream, first, rest).ok_or(Status::NotFound)?
        }
    };
    Ok(value)
}

fn stream_value<'a>(stream: &'a StreamState, first: &str, rest: &[&str]) -> Option<Value<'a>> {
    let info = &stream.info;
    let live_request = stream
        .request_headers
        .as_ref()
        .unwrap_or(&info.request_headers);
    let response_headers = stream
        .response_headers
        .as_ref()
        .unwrap_or(&stream.log_response_headers);
    match (first, rest) {
        ("request", [field]) => request_field(stream, live_request, field),
        ("request", ["headers", name]) => headers_value(live_request, name),
        ("response", [field]) => response_field(stream, response_headers, field),
        ("response", ["headers", name]) => headers_value(response_headers, name),
        ("response", ["trailers", name]) => {
            let trailers = stream
                .response_trailers
                .as_ref()
                .unwrap_or(&stream.log_response_trailers);
            headers_value(trailers, name)
        }
        ("source", [field]) => peer_field(info.source.as_deref(), field),
        ("destination", [field]) => peer_field(info.destination.as_deref(), field),
        ("connection", [field]) => connection_field(stream, field),
        ("connection_id", []) => Some(Value::Uint(stream.connection_id)),
        ("xds", ["route_name"]) | ("route_name", []) => Some(Value::str(&info.route_name)),
        ("xds", ["cluster_name"]) | ("cluster_name", []) => Some(Value::str(&info.cluster_name)),
        ("filter_state", [key]) => key
            .strip_prefix("wasm.")
            .and_then(|name| stream.filter_state.get(name.as_bytes()))
            .map(|v| Value::Bytes(Cow::Borrowed(v))),
        (name, []) => stream
            .filter_state
            .get(name.as_bytes())
            .map(|v| Value::Bytes(Cow::Borrowed(v))),
        _ => None,
    }
}

fn request_field<'a>(
    stream: &'a StreamState,
    headers: &'a HeaderMap,
    field: &str,
) -> Option<Value<'a>> {
    let info = &stream.info;
    let path = headers.get(":path").unwrap_or("");
    Some(match field {
        "path" => Value::str(headers.get(":path")?),
        "url_path" => Value::str(path.split_once('?').map_or(path, |(p, _)| p)),
        "query" => Value::str(path.split_once('?').map_or("", |(_, q)| q)),
        "host" => Value::str(headers.get(":authority")?),
        "scheme" => Value::str(headers.get(":scheme")?),
        "method" => Value::str(headers.get(":method")?),
        "referer" => Value::str(headers.get("referer")?),
        "useragent" => Value::str(headers.get("user-agent")?),
        "id" => Value::str(&info.request_id),
        "protocol" => Value::str(&info.protocol),
        "time" => Value::Timestamp(stream.start_ns),
        "headers" => Value::Map(Cow::Borrowed(headers.entries())),
        "size" => Value::Int(i64::try_from(stream.request_body_total).unwrap_or(i64::MAX)),
        "total_size" => Value::Int(
            i64::try_from(stream.request_body_total + headers.byte_size() as u64)
                .unwrap_or(i64::MAX),
        ),
        _ => return None,
    })
}

fn response_field<'a>(
    stream: &'a StreamState,
    headers: &'a HeaderMap,
    field: &str,
) -> Option<Value<'a>> {
    Some(match field {
        "code" => Value::Int(i64::from(stream.response_status?)),
        "code_details" => {
            stream.response_status?;
            Value::str(&stream.response_details)
        }
        "flags" => Value::Uint(0),
        "headers" => {
            stream.response_status?;
            Value::Map(Cow::Borrowed(headers.entries()))
        }
        "size" => Value::Int(i64::try_from(stream.response_body_total).unwrap_or(i64::MAX)),
        "total_size" => Value::Int(
            i64::try_from(stream.response_body_total + headers.byte_size() as u64)
                .unwrap_or(i64::MAX),
        ),
        _ => return None,
    })
}

fn peer_field<'a>(addr: Option<&'a str>, field: &str) -> Option<Value<'a>> {
    let addr = addr?;
    match field {
        "address" => Some(Value::str(addr)),
        "port" => port_of(addr).map(Value::Int),
        _ => None,
    }
}

fn connection_field<'a>(stream: &'a StreamState, field: &str) -> Option<Value<'a>> {
    let info = &stream.info;
    Some(match field {
        "id" => Value::Uint(stream.connection_id),
        "mtls" => Value::Bool(info.peer_uri_san.is_some()),
        "uri_san_peer_certificate" => Value::str(info.peer_uri_san.as_deref()?),
        "requested_server_name" => Value::str(info.sni.as_deref().unwrap_or("")),
        "tls_version" => {
            info.peer_uri_san.as_deref()?;
            Value::str("TLSv1.3")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config() -> VmConfig {
        VmConfig {
            root_id: "root".into(),
            vm_id: "vm".into(),
            plugin_name: "plug".into(),
            vm_configuration: vec![],
            plugin_configuration: vec![],
            env: vec![],
            log_level: crate::abi::LogLevel::Info,
            callouts: Arc::default(),
            seed: 0,
            node_id: "node".into(),
            node_cluster: "c".into(),
        }
    }

    fn stream() -> StreamState {
        let headers = HeaderMap::from_pairs([
            (":path".to_string(), "/a/b?x=1".to_string()),
            (":method".to_string(), "GET".to_string()),
            ("x-k".to_string(), "1".to_string()),
            ("x-k".to_string(), "2".to_string()),
        ]);
        StreamState {
            request_headers: Some(headers.clone()),
            start_ns: 5,
            info: Arc::new(StreamInfo {
                source: Some("10.0.0.1:4242".into()),
                request_headers: headers,
                ..StreamInfo::default()
            }),
            ..StreamState::default()
        }
    }

    /// The bytes the module gets for `path`.
    fn get(
        config: &VmConfig,
        stream: Option<&StreamState>,
        path: &[u8],
    ) -> Result<Vec<u8>, Status> {
        super::get(config, stream, path).map(|v| {
            let mut out = Vec::new();
            v.serialize_into(&mut out);
            out
        })
    }

    #[test]
    fn paths_split_at_every_nul_as_str_split_does() {
        for path in ["", "a", "a\0b", "request\0headers\0x-k", "a\0\0", "\0"] {
            assert_eq!(
                segments(path).collect::<Vec<_>>(),
                path.split('\0').collect::<Vec<_>>(),
                "{path:?}"
            );
        }
    }

    #[test]
    fn request_fields_are_encoded_as_envoy_does() {
        let c = config();
        let s = stream();
        assert_eq!(
            get(&c, Some(&s), b"request\0url_path"),
            Ok(b"/a/b".to_vec())
        );
        assert_eq!(get(&c, Some(&s), b"request\0query"), Ok(b"x=1".to_vec()));
        assert_eq!(
            get(&c, Some(&s), b"request\0time"),
            Ok(5i64.to_le_bytes().to_vec())
        );
        assert_eq!(
            get(&c, Some(&s), b"request\0headers\0x-k"),
            Ok(b"1,2".to_vec())
        );
        assert_eq!(
            get(&c, Some(&s), b"source\0port"),
            Ok(4242i64.to_le_bytes().to_vec())
        );
        assert_eq!(get(&c, Some(&s), b"connection\0mtls"), Ok(vec![0]));
        assert_eq!(get(&c, Some(&s), b"response\0code"), Err(Status::NotFound));
        assert_eq!(get(&c, None, b"request\0path"), Err(Status::NotFound));
        assert_eq!(get(&c, None, b"plugin_root_id"), Ok(b"root".to_vec()));
    }

    #[test]
    fn overrides_win_and_null_removes() {
        let c = config();
        let mut s = stream();
        let mut info = (*s.info).clone();
        info.overrides
            .insert("request.path".into(), Some(Value::str("/o")));
        info.overrides.insert("source.address".into(), None);
        s.info = Arc::new(info);
        assert_eq!(get(&c, Some(&s), b"request\0path"), Ok(b"/o".to_vec()));
        assert_eq!(get(&c, Some(&s), b"source\0address"), Err(Status::NotFound));
    }

    #[test]
    fn nested_overrides_answer_segment_paths_like_flat_keys() {
        let c = config();
        let mut s = stream();
        let properties: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"metadata": {"filter_metadata": {"envoy.lb": {"canary": "true"}}},
                "source": {"address": "192.0.2.9:1"},
                "source.address": "192.0.2.1:2",
                "node": {"id": null}}"#,
        )
        .unwrap();
        let mut info = (*s.info).clone();
        info.overrides = overrides(&properties);
        s.info = Arc::new(info);
        let lb = get(&c, Some(&s), b"metadata\0filter_metadata\0envoy.lb").unwrap();
        let mut canary = Vec::new();
        Value::Map(vec![(Text::from("canary"), Text::from("true"))].into())
            .serialize_into(&mut canary);
        assert_eq!(lb, canary);
        assert_eq!(
            get(&c, Some(&s), b"metadata\0filter_metadata\0envoy.lb\0canary"),
            Ok(b"true".to_vec())
        );
        // The flat key wins over the nested object's member; a nested null removes.
        assert_eq!(
            get(&c, Some(&s), b"source\0address"),
            Ok(b"192.0.2.1:2".to_vec())
        );
        assert_eq!(get(&c, Some(&s), b"node\0id"), Err(Status::NotFound));
    }

    #[test]
    fn ipv6_peers_split_at_the_bracket() {
        assert_eq!(port_of("[::1]:80"), Some(80));
        assert_eq!(port_of("::1"), None);
    }
}
