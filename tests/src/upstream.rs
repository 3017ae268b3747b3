//! The test upstream: a small HTTP/1.1 server on `127.0.0.1:<free port>` (std
//! `TcpListener`, one thread per connection, keep-alive) that Envoy's routes point at.
//!
//! What it answers, in order:
//! 1. a reply scripted with [`Upstream::respond`] for the longest matching path prefix;
//! 2. `POST` to a path containing `login`: `200` with `set-cookie: sid=...; Path=/` when
//!    the JSON body's `password` is [`GOOD_PASSWORD`], `401` otherwise;
//! 3. anything else: `200` with a JSON echo of the request (method, path, headers, body
//!    length), so tests can see what Envoy forwarded.
//!
//! Request headers `x-upstream-status: <code>` and `x-upstream-header: <name>: <value>`
//! (repeatable) change the status and add response headers of cases 2 and 3. Every request
//! received is recorded ([`Upstream::requests`]) so a test can prove a blocked request
//! never reached it.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::client::{read_body, read_head};

/// The password the upstream accepts on login routes.
pub const GOOD_PASSWORD: &str = "correct-horse";

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

/// A scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Response headers (repeats allowed, e.g. several `set-cookie`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A reply with a status and an empty JSON body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: "{}".to_owned(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Default)]
struct Shared {
    routes: Mutex<Vec<(String, Reply)>>,
    received: Mutex<Vec<Received>>,
    stop: AtomicBool,
    sessions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running test upstream; stops accepting on drop.
pub struct Upstream {
    port: u16,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts the upstream on a free loopback port.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if accept_shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let conn_shared = Arc::clone(&accept_shared);
                    let _ = std::thread::Builder::new()
                        .name("upstream-conn".to_owned())
                        .spawn(move || serve(conn, &conn_shared));
                }
            })?;
        Ok(Self { port, shared })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Scripts the reply for requests whose path starts with `prefix` (longest prefix wins).
    pub fn respond(&self, prefix: &str, reply: Reply) {
        let mut routes = lock(&self.shared.routes);
        routes.retain(|(p, _)| p != prefix);
        routes.push((prefix.to_owned(), reply));
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// How many received requests had a path starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        lock(&self.shared.received)
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }
}

impl Drop for Upstream {
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
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
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
        let reply = answer(&req, shared);
        lock(&shared.received).push(req);
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
        out.push_str(&reply.body);
        if writer.write_all(out.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn answer(req: &Received, shared: &Shared) -> Reply {
    let scripted = lock(&shared.routes)
        .iter()
        .filter(|(prefix, _)| req.path.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, reply)| reply.clone());
    if let Some(reply) = scripted {
        return reply;
    }
    let mut reply = if req.method == "POST" && req.path.contains("login") {
        let password = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| {
                v.get("password")
                    .and_then(|p| p.as_str())
                    .map(str::to_owned)
            });
        if password.as_deref() == Some(GOOD_PASSWORD) {
            let n = shared.sessions.fetch_add(1, Ordering::Relaxed);
            Reply::status(200)
                .header("content-type", "application/json")
                .header("set-cookie", &format!("sid=s{n:08x}; Path=/"))
        } else {
            Reply {
                body: r#"{"error":"bad credentials"}"#.to_owned(),
                ..Reply::status(401)
            }
            .header("content-type", "application/json")
        }
    } else {
        let echo = serde_json::json!({
            "method": req.method,
            "path": req.path,
            "headers": req.headers,
            "body_len": req.body.len(),
        });
        Reply {
            body: echo.to_string(),
            ..Reply::status(200)
        }
        .header("content-type", "application/json")
    };
    for (name, value) in &req.headers {
        if name == "x-upstream-status" {
            if let Ok(status) = value.parse() {
                reply.status = status;
            }
        } else if name == "x-upstream-header"
            && let Some((n, v)) = value.split_once(':')
        {
            reply
                .headers
                .push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    reply
}
