//! Polling with a deadline, instead of fixed sleeps: the harness's
//! (`stakeguard_harness::envoy::wait`).

pub use stakeguard_harness::envoy::wait::{eventually, poll};
