//! A real Envoy for tests: the harness's Envoy runner (`stakeguard_harness::envoy`:
//! generated bootstrap, readiness on admin `/ready`, log capture, kill on drop), started
//! with the test Envoy binary ([`crate::envoy_binary`]), plus what only tests want: a
//! `send` that fails the test with Envoy's log, and Prometheus samples.
//!
//! [`EnvoyConfig`] covers the usual shape (one listener routing everything to the test
//! upstream, optionally through stakeguard.wasm, with an `alertmanager` cluster); a test
//! that needs another shape edits the [`serde_json::Value`] that
//! [`EnvoyConfig::bootstrap`] returns and calls [`Envoy::start_bootstrap`].

use std::path::Path;

use serde_json::Value;

pub use stakeguard_harness::envoy::bootstrap::{
    EnvoyConfig, MtlsListener, Paths, WasmFilter, access_log_format, cluster, socket, stats_config,
};
pub use stakeguard_harness::envoy::process::StartError;

use crate::client;
use crate::stats::{self, Sample};

/// A running Envoy (the harness's, which it dereferences to); killed on drop.
pub struct Envoy {
    inner: stakeguard_harness::envoy::Envoy,
}

impl std::ops::Deref for Envoy {
    type Target = stakeguard_harness::envoy::Envoy;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Envoy {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

fn binary() -> Result<std::path::PathBuf, StartError> {
    crate::envoy_binary().map_err(|message| StartError {
        message,
        log: String::new(),
    })
}

impl Envoy {
    /// Starts Envoy with the usual bootstrap.
    pub fn start(config: &EnvoyConfig) -> Result<Self, StartError> {
        let inner = stakeguard_harness::envoy::Envoy::start(&binary()?, config)?;
        Ok(Self { inner })
    }

    /// Starts Envoy with a bootstrap built from the run's paths.
    pub fn start_with(
        bootstrap: impl FnOnce(&Paths) -> Value,
        concurrency: u32,
        extra_args: &[String],
    ) -> Result<Self, StartError> {
        let inner = stakeguard_harness::envoy::Envoy::start_with(
            &binary()?,
            bootstrap,
            concurrency,
            extra_args,
        )?;
        Ok(Self { inner })
    }

    /// Starts Envoy with a complete bootstrap.
    pub fn start_bootstrap(bootstrap: Value, concurrency: u32) -> Result<Self, StartError> {
        Self::start_with(|_| bootstrap, concurrency, &[])
    }

    /// The samples of `/stats/prometheus`.
    pub fn prometheus(&self) -> Vec<Sample> {
        self.admin_get("/stats/prometheus")
            .map(|t| stats::parse(&t))
            .unwrap_or_default()
    }

    /// Sends a request to the listener; a failure fails the test with Envoy's log.
    pub fn send(&self, req: &client::Request) -> client::Response {
        match req.send(self.port()) {
            Ok(resp) => resp,
            Err(e) => fail_with_log(self, &format!("{} {}: {e}", req.method, req.path)),
        }
    }
}

/// Panics with a message and Envoy's log (for test failures that need context).
pub fn fail_with_log(envoy: &Envoy, message: &str) -> ! {
    #[expect(clippy::panic, reason = "a test support helper that fails the test")]
    {
        panic!(
            "{message}\n--- last lines of envoy log ---\n{}",
            envoy.log_tail(60)
        )
    }
}

/// Runs `envoy --mode validate` on a config file from the repository root (relative
/// paths in it are taken from there); returns whether it passed and what it printed.
pub fn validate(config: &Path) -> Result<(bool, String), String> {
    stakeguard_harness::envoy::process::validate(
        &crate::envoy_binary()?,
        config,
        &crate::repo_root(),
    )
}
