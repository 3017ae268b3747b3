//! Records made ready for replay, once: the header maps (pseudo-headers included), body
//! chunks and property facts of each record, built before the record loop. Every replay
//! of a prepared set hands these to its streams, the module, the access-log phase and
//! the report by reference count, so a request costs the host no string building.

use std::collections::HashMap;
use std::sync::Arc;

use super::stream::Flow;
use crate::host::state::HeaderMap;
use crate::properties::StreamInfo;
use crate::report::Text;
use crate::traffic::Record;

/// Records prepared for replay by [`Harness::prepare`](super::Harness::prepare), for any
/// number of [`Session::replay_prepared`](super::Session::replay_prepared) calls on
/// sessions of that harness (the body chunks follow its `chunk_size`).
pub struct PreparedRecords {
    pub(super) records: Vec<PreparedRecord>,
    /// How many connections the records open: named ones once each, and one per
    /// record without a connection.
    pub(super) connections: usize,
}

/// One record, ready for replay.
pub(super) struct PreparedRecord {
    /// When the request started, nanoseconds since the epoch.
    pub(super) time_ns: Option<i64>,
    /// The record's connection, numbered in order of first appearance in the set.
    pub(super) connection: usize,
    /// The request as the client sends it.
    pub(super) request: Flow,
    /// The response as upstream sends it (a bare 200 when none was recorded).
    pub(super) response: Flow,
    /// Whether the response was recorded.
    pub(super) response_recorded: bool,
    pub(super) method: Text,
    pub(super) authority: Text,
    pub(super) path: Text,
    /// What the property model knows of the record.
    pub(super) info: Arc<StreamInfo>,
}

impl PreparedRecords {
    /// Prepares `records`, cutting bodies into chunks of `chunk_size`.
    pub(super) fn new(records: &[Record], chunk_size: Option<usize>) -> PreparedRecords {
        let mut named: HashMap<&str, usize> = HashMap::new();
        let mut connections = 0;
        let records = records
            .iter()
            .enumerate()
            .map(|(index, record)| {
                let mut open = || {
                    connections += 1;
                    connections - 1
                };
                let connection = match &record.connection {
                    Some(name) => *named.entry(name).or_insert_with(open),
                    None => open(),
                };
                prepare(index, record, connection, chunk_size)
            })
            .collect();
        PreparedRecords {
            records,
            connections,
        }
    }

    /// The virtual time a replay of these records starts at (see
    /// [`first_time_ns`](super::first_time_ns)).
    pub fn start_ns(&self) -> u64 {
        super::start_ns(self.records.iter().map(|r| r.time_ns))
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn prepare(
    index: usize,
    record: &Record,
    connection: usize,
    chunk_size: Option<usize>,
) -> PreparedRecord {
    let req = &record.request;
    let request_headers = HeaderMap::from_pairs(req.header_pairs());
    let request = Flow::new(
        request_headers.clone(),
        &req.body,
        HeaderMap::from_pairs(req.trailers.iter().cloned()),
        chunk_size,
    );
    let response = match &record.response {
        Some(r) => {
            let status = (":status".to_string(), r.status.to_string());
            Flow::new(
                HeaderMap::from_pairs(std::iter::once(status).chain(r.headers.iter().cloned())),
                &r.body,
                HeaderMap::from_pairs(r.trailers.iter().cloned()),
                chunk_size,
            )
        }
        None => Flow::new(
            HeaderMap::from_pairs([(":status".to_string(), "200".to_string())]),
            &[],
            HeaderMap::default(),
            chunk_size,
        ),
    };
    let info = StreamInfo {
        request_id: req
            .headers
            .iter()
            .find(|(k, _)| k == "x-request-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("harness-{index}")),
        protocol: "HTTP/1.1".to_string(),
        source: Some(
            record
                .source
                .clone()
                .unwrap_or_else(|| unrecorded_peer(connection)),
        ),
        destination: record.destination.clone(),
        peer_uri_san: record.peer_uri_san.clone(),
        sni: Some(req.authority.split(':').next().unwrap_or("").to_string()),
        route_name: String::new(),
        cluster_name: String::new(),
        request_headers,
        overrides: crate::properties::overrides(&record.properties),
    };
    PreparedRecord {
        time_ns: record.time_ns,
        connection,
        request,
        response,
        response_recorded: record.response.is_some(),
        method: Text::from(req.method.as_str()),
        authority: Text::from(req.authority.as_str()),
        path: Text::from(req.path.as_str()),
        info: Arc::new(info),
    }
}

/// The peer of a connection whose recording does not say (HAR has no client address):
/// Envoy always knows one, so a module never sees `source.address` missing; one loopback
/// client, as `replay --envoy` sends them, with a port per connection.
fn unrecorded_peer(connection: usize) -> String {
    format!("127.0.0.1:{}", 32768 + connection % 28232)
}
