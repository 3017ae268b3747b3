//! stakeguard's policy engine: the policy document, its validation, route matching and
//! the decisions, in plain Rust.
//!
//! No proxy-wasm here: the clock and the counter store come in through the traits of
//! [`host`], so the same engine runs inside `stakeguard.wasm` on Envoy's shared data and
//! natively in tests and benchmarks on [`MemoryStore`].
//!
//! ```
//! use stakeguard_policies::{MemoryStore, Policy, Request, Verdict};
//!
//! let policy = Policy::from_json(r#"{
//!     "revision": "1",
//!     "tiers": { "low": { "mode": "monitor" } },
//!     "apis": [ { "name": "bills", "version": "v1", "owner": "team-billing", "tier": "low",
//!                 "routes": [ { "path": "/api/v1/bills/**" } ] } ]
//! }"#).unwrap();
//! let headers: Vec<(&str, &str)> = vec![];
//! let request = Request {
//!     method: "GET", authority: "shop.example.com", path: "/api/v1/bills/42",
//!     headers: &headers, source_address: Some("10.0.0.7:4711"), peer_uri_san: None,
//!     reference: "ref-1",
//! };
//! let (stream, verdict) = policy.on_request(&request, &1_000u64, &MemoryStore::new());
//! assert_eq!(verdict, Verdict::Continue);
//! assert_eq!(policy.api(stream.api().unwrap()).unwrap().owner, "team-billing");
//! ```

mod compile;
pub mod decision;
mod engine;
mod error;
pub mod explain;
pub mod host;
mod identity;
pub mod json;
pub mod model;
pub mod path;
mod policy;
pub mod posture;
mod read;
pub mod request;
pub mod rls;
pub mod routes;
mod state;
pub mod units;
mod worker;

pub use decision::*;
pub use engine::{Decision, ServiceLimit, Stream};
pub use error::{PolicyError, PolicyErrors};
pub use host::{Clock, CounterStore, MemoryStore, Millis, StoreError};
pub use policy::{ApiInfo, CounterService, Notify, Policy, RouteOf};
pub use request::{Headers, Request, Response};
