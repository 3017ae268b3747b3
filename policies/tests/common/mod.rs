//! A small stand-in host for engine tests: a policy, a shared in-memory store and a
//! clock the test moves by hand.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::cell::Cell;
use std::rc::Rc;

use stakeguard_policies::{
    Clock, Event, EventKind, HeaderChange, LocalReply, MemoryStore, Outcome, Policy, Request,
    Response, Stream, Verdict,
};

/// One worker: its own compiled policy, with the store and the clock it may share with
/// other workers of the same proxy ([`Host::worker_beside`]).
pub struct Host {
    pub policy: Policy,
    pub store: Rc<MemoryStore>,
    pub now: Rc<Cell<u64>>,
}

impl Clock for Host {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
}

/// 2026-11-29T00:00:00Z: the start of every test's clock.
pub const START: u64 = 1_795_910_400_000;

pub fn example(name: &str) -> String {
    let path = format!("{}/examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl Host {
    pub fn new(policy_json: &str) -> Host {
        let policy =
            Policy::from_json(policy_json).unwrap_or_else(|e| panic!("policy refused:\n{e}"));
        Host::with(policy)
    }

    pub fn with(policy: Policy) -> Host {
        let store = MemoryStore::new();
        for key in policy.state_keys() {
            stakeguard_policies::CounterStore::set(&store, &key, b"", None).unwrap();
        }
        Host {
            policy,
            store: Rc::new(store),
            now: Rc::new(Cell::new(START)),
        }
    }

    /// Another worker of the same proxy: the same policy compiled again (as each of
    /// Envoy's worker VMs does), the same shared store and clock.
    pub fn worker_beside(&self, policy_json: &str) -> Host {
        Host {
            policy: Policy::from_json(policy_json).unwrap(),
            store: Rc::clone(&self.store),
            now: Rc::clone(&self.now),
        }
    }

    pub fn advance(&self, millis: u64) {
        self.now.set(self.now.get() + millis);
    }

    pub fn send(&self, req: &Req) -> Exchange {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let request = Request {
            method: &req.method,
            authority: &req.authority,
            path: &req.path,
            headers: &headers,
            source_address: Some(&req.source),
            peer_uri_san: req.uri_san.as_deref(),
            reference: "ref-test",
        };
        let (mut stream, mut verdict) = self.policy.on_request(&request, self, &*self.store);
        if verdict == Verdict::ReadBody {
            let limit = stream.body_limit();
            let complete = req.body.len() <= limit;
            let body = &req.body[..req.body.len().min(limit)];
            verdict = self
                .policy
                .on_request_body(&mut stream, body, complete, self, &*self.store);
        }
        Exchange { stream, verdict }
    }

    /// Sends a request and, when it goes upstream, answers it with `status` and
    /// `headers`; returns the request verdict and the response header changes.
    pub fn exchange(
        &self,
        req: &Req,
        status: u16,
        headers: &[(&str, &str)],
    ) -> (Exchange, Vec<HeaderChange>) {
        let mut exchange = self.send(req);
        let changes = match exchange.verdict {
            Verdict::Continue | Verdict::Delay(_) if exchange.stream.wants_response() => {
                let response = Response {
                    status,
                    headers: &headers,
                };
                let mut changes = Vec::new();
                // As the filter does: the headers are read only when the engine needs them.
                let read = exchange
                    .stream
                    .needs_response_headers()
                    .then_some(&response);
                self.policy.on_response(
                    &mut exchange.stream,
                    read,
                    self,
                    &*self.store,
                    &mut changes,
                );
                changes
            }
            _ => Vec::new(),
        };
        (exchange, changes)
    }
}

/// A host running the bank example.
pub fn bank() -> Host {
    Host::new(&example("bank"))
}

/// A host running the bank example with one JSON value set by JSON pointer (the parent
/// must exist; an array element is replaced, an object field set).
pub fn bank_with(pointer: &str, value: serde_json::Value) -> Host {
    example_with("bank", pointer, value)
}

/// [`bank_with`] for any example.
pub fn example_with(name: &str, pointer: &str, value: serde_json::Value) -> Host {
    let mut doc: serde_json::Value = serde_json::from_str(&example(name)).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => other[key] = value,
    }
    Host::new(&doc.to_string())
}

pub struct Exchange {
    pub stream: Stream,
    pub verdict: Verdict,
}

impl Exchange {
    pub fn reply(&self) -> &LocalReply {
        match &self.verdict {
            Verdict::Reply(reply) => reply,
            other => panic!("expected a local reply, got {other:?}"),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.verdict {
            Verdict::Reply(reply) => Some(reply.status),
            _ => None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.reply()
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn events(&mut self) -> Vec<Event> {
        self.stream.take_events()
    }

    pub fn outcome_of(&mut self, kind: EventKind) -> Option<Outcome> {
        self.events()
            .into_iter()
            .find(|e| e.kind == kind)
            .map(|e| e.outcome)
    }
}

#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub source: String,
    pub uri_san: Option<String>,
    pub body: Vec<u8>,
}

pub fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.into(),
        authority: "bank.example.com".into(),
        path: path.into(),
        headers: vec![],
        source: "192.0.2.10:40000".into(),
        uri_san: None,
        body: vec![],
    }
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn host(mut self, authority: &str) -> Req {
        self.authority = authority.into();
        self
    }
    pub fn from(mut self, source: &str) -> Req {
        self.source = source.into();
        self
    }
    pub fn uri_san(mut self, san: &str) -> Req {
        self.uri_san = Some(san.into());
        self
    }
    pub fn json(self, body: &str) -> Req {
        self.body("application/json", body)
    }
    pub fn form(self, body: &str) -> Req {
        self.body("application/x-www-form-urlencoded", body)
    }
    pub fn body(mut self, content_type: &str, body: &str) -> Req {
        self.body = body.as_bytes().to_vec();
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.headers
            .push(("content-length".into(), body.len().to_string()));
        self
    }
    /// An authenticated bank customer who owns accounts 1, 7, 42 and 1234 and may make
    /// transfers.
    pub fn user(self, user: &str) -> Req {
        let claims = format!(
            r#"{{"sub":"{user}","accounts":["1","7","42","1234"],"scope":"accounts:read transfers:write"}}"#
        );
        self.token(&claims).header("x-user-id", user)
    }

    /// A bearer token (unsigned, as `jwt_authn` would have verified it) with these claims.
    pub fn token(self, claims_json: &str) -> Req {
        let token = format!(
            "{}.{}.sig",
            base64url(br#"{"alg":"none"}"#),
            base64url(claims_json.as_bytes())
        );
        self.header("authorization", &format!("Bearer {token}"))
    }
}

/// Unpadded base64url, as JWT segments are written.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
