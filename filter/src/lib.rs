//! The stakeguard proxy-wasm filter: a thin adapter between Envoy and the policy engine
//! (`stakeguard-policies`). All decisions stay in the engine; this crate reads what the
//! engine needs from the host, carries out its verdicts and reports its events.
//!
//! - [`root`]: configuration lifecycle, tick, paused streams, per-worker state;
//! - [`http`]: stream callbacks;
//! - [`store`]: the engine's counter store on shared data;
//! - [`metrics`], [`events`] (logs, published decision, reference), [`alerts`];
//! - [`headers`]: header maps read in place and written in the host's encoding;
//! - [`host`]: every host call, checked; the only `unsafe`.

pub mod alerts;
pub mod events;
pub mod headers;
pub mod host;
pub mod http;
pub mod metrics;
pub mod root;
pub mod store;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("stakeguard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(root::Root::new(context_id)) });
}}
