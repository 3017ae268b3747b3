//! stakeguard-harness: a proxy-wasm host on wasmtime that replays recorded HTTP traffic
//! through any proxy-wasm module, as Envoy would run it, and the `stakeguard` CLI.
//!
//! - [`Harness`] loads a module once and replays [`traffic::Record`]s into a [`Report`];
//! - [`traffic`] reads HAR 1.2, Envoy tap traces and stakeguard JSON Lines;
//! - [`check`] starts a module with a configuration and says whether it took it;
//! - [`golden`] compares JSON Lines output with an expected file;
//! - [`bench`] measures replay throughput;
//! - [`inventory`] builds policy inventories from recorded traffic and OpenAPI documents;
//! - [`posture`] renders a policy's posture and what its controls did, for API owners;
//! - [`envoy`] runs the same module in a real Envoy and compares the two.

pub mod abi;
pub mod bench;
pub mod callouts;
pub mod check;
pub mod envoy;
pub mod error;
pub mod golden;
pub mod grpc;
pub mod host;
pub mod inventory;
pub mod posture;
pub mod properties;
pub mod ratelimit;
pub mod replay;
pub mod report;
pub mod traffic;
pub mod vm;

pub use error::{ConfigError, HarnessError, LoadError, TrafficError};
pub use replay::{Harness, HarnessConfig};
pub use report::Report;
