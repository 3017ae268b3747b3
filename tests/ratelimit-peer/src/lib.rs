//! A real Envoy rate limit service for stakeguard's end-to-end tests: the RLS v3 gRPC API
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) served over h2c with
//! tonic, counting with Limitador (the `limitador` crate, the library inside Kuadrant's
//! limitador-server) in Redis. Several Envoys pointed at it share their counts, as a fleet
//! of sidecars pointed at a deployed Limitador or envoyproxy/ratelimit would.
//!
//! - [`rls`]: the RLS v3 messages, declared by hand for prost (no `protoc`);
//! - [`counting`]: what a call does to the counters (limits from the request or from a
//!   limits file, hits, statuses);
//! - [`service`]: the tonic service around it;
//! - [`limits_file`]: reading limitador-server's limits YAML.
//!
//! The binary (`ratelimit-peer`) wires them to a listener; `stakeguard_tests::ratelimit_peer`
//! starts and stops it for the tests.

pub mod counting;
pub mod limits_file;
pub mod rls;
pub mod service;
