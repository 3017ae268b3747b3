//! The replay client: sends a recording's requests to a real Envoy running the module,
//! in order and one connection each, paced to the (scaled) recorded times, with a
//! [`RecordedUpstream`] behind it; then reads Envoy's access log. What it keeps for each
//! record is what the comparison needs: the response the client got, the wall-clock
//! time the request was sent (to stamp the harness's copy of the record, so its virtual
//! clock sees what Envoy's clock saw), the client's port, and the access log line.
//!
//! Records with a `peer_uri_san` go over real mTLS to a second listener (see `tls.rs`).
//! Requests are strictly sequential: a request the filter delays holds back the next
//! one, exactly as its recorded successor would have waited in the harness's order.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::EnvoyError;
use super::bootstrap::{EnvoyConfig, PluginIds};
use super::http::{self, Request, Response};
use super::process::Envoy;
use super::stubs::StubClusters;
use super::tempdir::TempDir;
use super::tls::{self, Pki};
use super::transform::Schedule;
use super::upstream::RecordedUpstream;
use super::wait::poll;
use crate::HarnessConfig;
use crate::traffic::Record;

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// The Envoy binary.
    pub binary: PathBuf,
    /// The proxy-wasm module Envoy loads.
    pub module: PathBuf,
    /// Worker threads.
    pub concurrency: u32,
}

/// What happened to one record in Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyResult {
    /// Wall-clock nanoseconds since the epoch once the request was written.
    pub sent_ns: i64,
    /// The client's local port (the socket peer Envoy saw).
    pub local_port: u16,
    /// The listener it was sent to.
    pub listener_port: u16,
    /// The response the client read, or why there was none.
    pub response: Result<Response, String>,
    /// The access log line of the request (joined by the record marker).
    pub access_log: Option<Value>,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct EnvoyReplay {
    /// One result per record, in order.
    pub results: Vec<EnvoyResult>,
    /// Envoy's own log (the module's log lines are there).
    pub log: String,
    /// Wall-clock time the sends took.
    pub elapsed: Duration,
    /// Records sent over mTLS (those with a `peer_uri_san`).
    pub mtls: usize,
    /// Records whose connection Envoy closed itself (`connection: close`): with several
    /// workers, the worker assignment of the records after the first may differ.
    pub closed_by_envoy: Vec<usize>,
}

/// The HTTP request for a record (its `host` header, if any, is its authority already).
pub fn request_for(record: &Record) -> Request {
    let req = &record.request;
    Request {
        method: req.method.clone(),
        path: req.path.clone(),
        host: req.authority.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .cloned()
            .collect(),
        body: req.body.clone(),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or_default()
}

/// Replays `records` (already marked, see `transform::mark`) through Envoy with
/// `policy` as the module's configuration, paced by `schedule`, under the rules of
/// `rules` (the harness configuration of the other side).
pub fn run(
    options: &EnvoyOptions,
    rules: &HarnessConfig,
    policy: &str,
    records: &[Record],
    schedule: &Schedule,
) -> Result<EnvoyReplay, EnvoyError> {
    let dir = TempDir::new("replay").map_err(|e| EnvoyError::io("scratch directory", e))?;
    let mut pki = match records.iter().any(|r| r.peer_uri_san.is_some()) {
        true => Some(Pki::create(dir.path()).map_err(EnvoyError::Tls)?),
        false => None,
    };
    let upstream =
        RecordedUpstream::start(records).map_err(|e| EnvoyError::io("recorded upstream", e))?;
    let stubs = StubClusters::start(&rules.callouts)?;
    let mut config = EnvoyConfig::new(upstream.port())
        .with_filter(&options.module, policy)
        .with_concurrency(options.concurrency);
    config.faithful_headers = true;
    config.mtls = pki.as_ref().map(|p| p.listener().clone());
    config.failure_policy = rules.failure_policy;
    config.plugin = PluginIds {
        root_id: rules.root_id.clone(),
        vm_id: rules.vm_id.clone(),
        vm_configuration: String::from_utf8_lossy(&rules.vm_configuration).into_owned(),
    };
    config.clusters = stubs.clusters();
    config.http2_clusters = true;
    let hold_connections = options.concurrency > 1;
    config.exact_balance = hold_connections;
    let envoy = Envoy::start(&options.binary, &config).map_err(EnvoyError::Start)?;
    let plain_port = envoy.port();
    let mtls_port = envoy.listener_port("mtls");

    let start = Instant::now();
    let mut results = Vec::with_capacity(records.len());
    let mut held = Vec::new();
    let mut mtls = 0;
    for (record, offset) in records.iter().zip(&schedule.offsets_ns) {
        // Pacing to the schedule, not waiting for a condition: the recording says when.
        let due = start + Duration::from_nanos(*offset);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let tls = match (&record.peer_uri_san, pki.as_mut(), mtls_port) {
            (Some(san), Some(pki), Some(port)) => {
                Some((pki.client(san).map_err(EnvoyError::Tls)?, port))
            }
            _ => None,
        };
        let port = tls.as_ref().map_or(plain_port, |(_, p)| *p);
        mtls += usize::from(tls.is_some());
        let (result, connection) = send_one(
            &request_for(record),
            port,
            tls.map(|(c, _)| c),
            hold_connections,
        );
        results.push(result);
        if hold_connections {
            held.extend(connection);
        }
    }
    let elapsed = start.elapsed();
    let closed_by_envoy = results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.response.as_ref().is_ok_and(|resp| {
                resp.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
                })
            })
        })
        .map(|(i, _)| i)
        .collect();

    // Envoy flushes its access log every 50 ms; wait until every record has its line.
    let wanted = records.len();
    let lines = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let lines = envoy.access_log();
        (lines.iter().filter(|l| record_index(l).is_some()).count() >= wanted).then_some(lines)
    })
    .unwrap_or_else(|| envoy.access_log());
    for line in lines {
        if let Some(result) = record_index(&line).and_then(|i| results.get_mut(i)) {
            result.access_log = Some(line);
        }
    }
    drop(held);
    Ok(EnvoyReplay {
        results,
        log: envoy.log(),
        elapsed,
        mtls,
        closed_by_envoy,
    })
}

/// The record index of an access log line.
fn record_index(line: &Value) -> Option<usize> {
    line.get("record")?.as_str()?.parse().ok()
}

/// Sends one request on a new connection (TLS when a client configuration is given),
/// and gives the connection back.
fn send_one(
    req: &Request,
    port: u16,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    keep_alive: bool,
) -> (EnvoyResult, Option<Box<dyn std::any::Any>>) {
    let mut result = EnvoyResult {
        sent_ns: now_ns(),
        local_port: 0,
        listener_port: port,
        response: Err("not sent".to_owned()),
        access_log: None,
    };
    let tcp = match http::connect(port) {
        Ok(tcp) => tcp,
        Err(e) => {
            result.response = Err(format!("connect: {e}"));
            return (result, None);
        }
    };
    result.local_port = tcp.local_addr().map(|a| a.port()).unwrap_or_default();
    let (response, held) = match tls {
        Some(config) => match tls::wrap(config, tcp) {
            Ok(mut stream) => (
                exchange(&mut stream, req, keep_alive, &mut result.sent_ns),
                Some(Box::new(stream) as Box<dyn std::any::Any>),
            ),
            Err(e) => (Err(e), None),
        },
        None => {
            let mut tcp = tcp;
            (
                exchange(&mut tcp, req, keep_alive, &mut result.sent_ns),
                Some(Box::new(tcp) as Box<dyn std::any::Any>),
            )
        }
    };
    result.response = response.map_err(|e| e.to_string());
    (result, held)
}

/// Writes the request, notes the time, reads the response.
fn exchange(
    stream: &mut (impl std::io::Read + Write),
    req: &Request,
    keep_alive: bool,
    sent_ns: &mut i64,
) -> std::io::Result<Response> {
    stream.write_all(&http::encode_with(req, keep_alive))?;
    stream.flush()?;
    // Stamped once the request is on the wire (and any TLS handshake done): the closest
    // the client can get to the moment Envoy's filter reads its clock.
    *sent_ns = now_ns();
    http::read_response(&mut BufReader::new(stream), &req.method)
}
