//! Upstreams for Envoy's `upstream` cluster: a small HTTP/1.1 server on
//! `127.0.0.1:<free port>` (std `TcpListener`, one thread per connection, keep-alive)
//! that answers through a handler and remembers every request it received, and the
//! [`RecordedUpstream`] a replay uses, which answers each request with the response its
//! record holds.
//!
//! The replay client marks each request with `x-stakeguard-record: <index>` (the
//! [`RECORD_HEADER`]); the recorded upstream reads it, answers with that record's
//! response and notes which headers it sent, so the comparison can tell what the filter
//! changed on the way back. A request without the header (an alert the filter posts to a
//! cluster pointed here) gets `200 {}`.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::http::{read_body, read_head};
use crate::traffic::Record;

/// The request header that names the record a request replays.
pub const RECORD_HEADER: &str = "x-stakeguard-record";

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Response headers (repeats allowed, e.g. several `set-cookie`); framing headers
    /// (`content-length`, `transfer-encoding`, `connection`) are written by the server.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with a status and an empty JSON body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// How a server answers: called once per request, from the connection's thread.
pub type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// How a server answers one request, with time in it (a callout stub's latency, timeout
/// or reset).
#[derive(Debug, Clone)]
pub enum Answer {
    /// This reply, after this long.
    After(Duration, Reply),
    /// Close the connection without an answer after this long (a reset).
    HangUp(Duration),
    /// Never answer: hold the connection until the server stops (the caller's timeout
    /// fires).
    Never,
}

/// A handler that answers with time in it.
pub type Answering = dyn Fn(&Received) -> Answer + Send + Sync;

struct Shared {
    handler: Box<Answering>,
    received: Mutex<Vec<Received>>,
    stop: AtomicBool,
}

/// Accepts connections on `listener` in a thread of its own and serves each in another
/// (`name-PORT` and `name-conn`), until the flag `stop` picks out of `shared` is set (the
/// next connection, a server's drop makes one, then ends the loop).
pub(super) fn accept_in_background<S: Send + Sync + 'static>(
    listener: TcpListener,
    name: &str,
    shared: &Arc<S>,
    stop: fn(&S) -> &AtomicBool,
    serve: fn(TcpStream, &Arc<S>),
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let accept_shared = Arc::clone(shared);
    let conn_name = format!("{name}-conn");
    std::thread::Builder::new()
        .name(format!("{name}-{port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stop(&accept_shared).load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                let _ = std::thread::Builder::new()
                    .name(conn_name.clone())
                    .spawn(move || serve(conn, &conn_shared));
            }
        })?;
    Ok(())
}

/// Locks a mutex, taking the data of a poisoned one (a panicking handler thread must not
/// take the whole upstream down with it).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running upstream; stops accepting on drop.
pub struct Server {
    port: u16,
    shared: Arc<Shared>,
}

impl Server {
    /// Starts a server on a free loopback port that answers with `handler`.
    pub fn start(handler: Box<Handler>) -> std::io::Result<Self> {
        Self::start_answering(Box::new(move |req: &Received| {
            Answer::After(Duration::ZERO, handler(req))
        }))
    }

    /// Starts a server on a free loopback port whose `handler` may also delay, hang up or
    /// never answer.
    pub fn start_answering(handler: Box<Answering>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            handler,
            received: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        accept_in_background(
            listener,
            "upstream",
            &shared,
            |s| &s.stop,
            |c, s| serve(c, s),
        )?;
        Ok(Self { port, shared })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received (whole, body included) so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut writer = write_half;
    loop {
        let Ok(Some((start, headers))) = read_head(&mut reader) else {
            return;
        };
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        // A request reset before its body is complete (a filter refusing it on its body)
        // never counts as received.
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let req = Received {
            method,
            path,
            headers,
            body,
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let answer = (shared.handler)(&req);
        let head_only = req.method == "HEAD";
        lock(&shared.received).push(req);
        let reply = match answer {
            Answer::After(delay, reply) => {
                std::thread::sleep(delay);
                reply
            }
            Answer::HangUp(delay) => {
                std::thread::sleep(delay);
                return;
            }
            Answer::Never => {
                // Polling the stop flag, not waiting for a condition: nothing else will
                // end this connection.
                while !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        };
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only && !matches!(reply.status, 204 | 304) {
            bytes.extend_from_slice(&reply.body);
        }
        if writer.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

/// Headers the server writes itself, so a recorded value would be a second, conflicting
/// copy.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// The reply for a record: its recorded response (framing headers dropped), or `200`
/// with no body when none was recorded (what the harness assumes too).
pub fn recorded_reply(record: &Record) -> Reply {
    match &record.response {
        Some(r) => Reply {
            status: r.status,
            headers: r
                .headers
                .iter()
                .filter(|(n, _)| !FRAMING.contains(&n.to_ascii_lowercase().as_str()))
                .cloned()
                .collect(),
            body: r.body.clone(),
        },
        None => Reply {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// An upstream that answers each request with the recorded response of the record its
/// [`RECORD_HEADER`] names.
pub struct RecordedUpstream {
    server: Server,
}

impl RecordedUpstream {
    /// Starts an upstream for these records (indexed as given).
    pub fn start(records: &[Record]) -> std::io::Result<Self> {
        let replies: Vec<Reply> = records.iter().map(recorded_reply).collect();
        let server = Server::start(Box::new(move |req: &Received| {
            req.header(RECORD_HEADER)
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| replies.get(i).cloned())
                .unwrap_or_else(|| Reply::status(200))
        }))?;
        Ok(Self { server })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The record indices it answered, each as often as it was asked.
    pub fn answered(&self) -> Vec<usize> {
        self.server
            .requests()
            .iter()
            .filter_map(|r| r.header(RECORD_HEADER)?.parse().ok())
            .collect()
    }
}
