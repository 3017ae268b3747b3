//! The tiny HTTP/1.1 client the tests talk to Envoy, its admin endpoint and Alertmanager
//! with: the harness's (`stakeguard_harness::envoy::http`), so the tests and
//! `stakeguard replay --envoy` send requests the same way.

pub use stakeguard_harness::envoy::http::{
    Head, Request, Response, get_text, read_body, read_head, send,
};
