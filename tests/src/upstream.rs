//! The test upstream: the harness's loopback HTTP/1.1 server
//! (`stakeguard_harness::envoy::upstream::Server`) with the answers the feature tests
//! script, on `127.0.0.1:<free port>`.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use stakeguard_harness::envoy::upstream::{Received, Reply};
use stakeguard_harness::envoy::upstream::{Server, lock};

/// The password the upstream accepts on login routes.
pub const GOOD_PASSWORD: &str = "correct-horse";

#[derive(Default)]
struct Script {
    routes: Mutex<Vec<(String, Reply)>>,
    sessions: AtomicU64,
}

/// A running test upstream; stops accepting on drop.
pub struct Upstream {
    server: Server,
    script: Arc<Script>,
}

impl Upstream {
    /// Starts the upstream on a free loopback port.
    pub fn start() -> std::io::Result<Self> {
        let script = Arc::new(Script::default());
        let answers = Arc::clone(&script);
        let server = Server::start(Box::new(move |req: &Received| answer(req, &answers)))?;
        Ok(Self { server, script })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Scripts the reply for requests whose path starts with `prefix` (longest prefix wins).
    pub fn respond(&self, prefix: &str, reply: Reply) {
        let mut routes = lock(&self.script.routes);
        routes.retain(|(p, _)| p != prefix);
        routes.push((prefix.to_owned(), reply));
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// How many received requests had a path starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }
}

fn json_reply(status: u16, body: String) -> Reply {
    Reply {
        body: body.into_bytes(),
        ..Reply::status(status)
    }
    .header("content-type", "application/json")
}

fn answer(req: &Received, script: &Script) -> Reply {
    let scripted = lock(&script.routes)
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
            let n = script.sessions.fetch_add(1, Ordering::Relaxed);
            json_reply(200, "{}".to_owned()).header("set-cookie", &format!("sid=s{n:08x}; Path=/"))
        } else {
            json_reply(401, r#"{"error":"bad credentials"}"#.to_owned())
        }
    } else {
        let echo = serde_json::json!({
            "method": req.method,
            "path": req.path,
            "headers": req.headers,
            "body_len": req.body.len(),
        });
        json_reply(200, echo.to_string())
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
