//! Recording a test's traffic and replaying it with the harness: [`Recording`] sends
//! requests to an Envoy (one connection each, as [`crate::envoy::Envoy::send`] does) and
//! keeps every exchange as a HAR 1.2 entry, the request as it went on the wire and the
//! response the client got; [`replay`] runs `stakeguard replay --format jsonl` on such a
//! file and reads its report back. A test compares the two runs request by request.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use stakeguard_harness::envoy::http::encode;
use stakeguard_harness::report::{Entry, Report, SummaryLine};
use stakeguard_harness::traffic::time::format_rfc3339;

use crate::client::{Request, Response};
use crate::envoy::Envoy;

/// Exchanges in the order they were sent, timed by a monotonic clock from the first.
pub struct Recording {
    origin_ns: i64,
    first: Option<Instant>,
    entries: Vec<Value>,
}

impl Recording {
    /// An empty recording whose first exchange will be stamped `origin_ns` (nanoseconds
    /// since the epoch), each later one that plus the time elapsed since the first was
    /// sent: the gaps are the run's own, the origin is the test's choice (a replay's
    /// clock starts wherever the recording does).
    pub fn starting_at(origin_ns: i64) -> Self {
        Self {
            origin_ns,
            first: None,
            entries: Vec::new(),
        }
    }

    /// Sends `request` to `envoy` and records the exchange.
    pub fn send(&mut self, envoy: &Envoy, request: &Request) -> Response {
        let now = Instant::now();
        let first = *self.first.get_or_insert(now);
        let elapsed = i64::try_from(now.duration_since(first).as_nanos()).unwrap_or(i64::MAX);
        let response = envoy.send(request);
        let entry = entry(
            self.origin_ns.saturating_add(elapsed),
            self.entries.len(),
            request,
            &response,
        );
        self.entries.push(entry);
        response
    }

    /// The HAR 1.2 document.
    pub fn to_har(&self) -> Value {
        json!({
            "log": {
                "version": "1.2",
                "creator": { "name": "stakeguard-tests", "version": env!("CARGO_PKG_VERSION") },
                "entries": self.entries,
            }
        })
    }
}

/// HAR's `{name, value}` list.
fn name_values<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Value> {
    pairs
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// One HAR entry. The request's headers are read back from its encoding, so the entry
/// holds what went on the wire (`host`, `connection: close`, `content-length`) and not
/// what the test's `Request` spelled. Every exchange is a connection of its own.
fn entry(time_ns: i64, index: usize, request: &Request, response: &Response) -> Value {
    let wire = encode(request);
    let head_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(wire.len());
    let head = String::from_utf8_lossy(wire.get(..head_end).unwrap_or_default()).into_owned();
    let request_headers = name_values(
        head.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(": ")),
    );
    let mime = |headers: &[(String, String)]| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let request_mime = mime(&request.headers);
    let mut har_request = json!({
        "method": request.method,
        "url": format!("http://{}{}", request.host, request.path),
        "httpVersion": "HTTP/1.1",
        "headers": request_headers,
        "queryString": [], "cookies": [],
        "headersSize": -1,
        "bodySize": request.body.len(),
    });
    if let Some(fields) = har_request.as_object_mut()
        && !request.body.is_empty()
    {
        fields.insert(
            "postData".to_owned(),
            json!({
                "mimeType": request_mime,
                "text": String::from_utf8_lossy(&request.body),
            }),
        );
    }
    json!({
        "startedDateTime": format_rfc3339(time_ns),
        "time": 0,
        "connection": index.to_string(),
        "serverIPAddress": "127.0.0.1",
        "request": har_request,
        "response": {
            "status": response.status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": name_values(response.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            "cookies": [],
            "content": {
                "size": response.body.len(),
                "mimeType": mime(&response.headers),
                "text": response.text(),
            },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": response.body.len(),
        },
        "cache": {},
        "timings": { "send": 0, "wait": 0, "receive": 0 },
    })
}

/// Runs `stakeguard replay --format jsonl --module MODULE --policy POLICY ARGS... TRAFFIC`
/// (the CLI of [`crate::ecds::stakeguard_cli`]) and parses its report.
pub fn replay(
    module: &Path,
    policy: &Path,
    traffic: &Path,
    args: &[&str],
) -> Result<Report, String> {
    let cli = crate::ecds::stakeguard_cli()?;
    let out = Command::new(&cli)
        .arg("replay")
        .args(["--format", "jsonl", "--module"])
        .arg(module)
        .arg("--policy")
        .arg(policy)
        .args(args)
        .arg(traffic)
        .output()
        .map_err(|e| format!("run {}: {e}", cli.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "stakeguard replay {args:?} exited with {}: {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines
        .pop()
        .ok_or("stakeguard replay printed nothing")
        .and_then(|line| {
            serde_json::from_str::<SummaryLine>(line).map_err(|_| "no summary line at the end")
        })?;
    let entries = lines
        .iter()
        .map(|line| serde_json::from_str::<Entry>(line).map_err(|e| format!("{e}: {line}")))
        .collect::<Result<_, _>>()?;
    Ok(Report {
        entries,
        summary: summary.summary,
    })
}
