//! stakeguard's policy engine: the policy document, its validation, route matching and
//! the decisions. No proxy-wasm here: host services come in through [`host`].

pub mod decision;
pub mod engine;
pub mod host;
pub mod request;

pub use decision::*;
pub use engine::{Decision, Stream};
pub use host::{Clock, CounterStore, MemoryStore, Millis, StoreError};
pub use request::{Headers, Request, Response};

/// A validated, compiled policy, ready to decide.
#[derive(Debug)]
pub struct Policy {}
