//! Replaying recorded traffic through a proxy-wasm module, the way Envoy's worker threads
//! run a filter: [`Harness`] holds what is built once per module (engine, compiled
//! module, `InstancePre`) and the configuration; a [`Session`] holds running worker VMs
//! and replays records through them on a virtual clock.
//!
//! Before a record at time t is delivered, every tick and callout answer due up to t
//! fires. Each request is a stream on the worker owning its connection (new connections
//! go round-robin): context creation, request headers, body chunks and trailers, then
//! the recorded response (or the module's local reply) through the response callbacks,
//! then `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`. A callback that pauses
//! parks the stream until the module calls `proxy_continue_stream`, from any later
//! callback; after the last record the clock runs on (ticks and callouts only) while a
//! stream is paused, up to `HarnessConfig::idle_horizon_ms`, and what is still paused
//! then is reported as stalled. A trap fails the VM: its streams follow the fail-open or
//! fail-closed policy, and the worker gets a fresh VM for its next stream.
//!
//! The work is split by responsibility: `prepared` (records made ready for replay once:
//! the maps and facts every replay shares), [`session`] (workers and the record loop),
//! `clock` (the virtual clock, ticks, deferred work), `stream` (starting and driving a
//! stream), `steps` (the header, body and trailer callbacks of both directions),
//! `control` (what the module asks of a stream: continue, local reply, reset),
//! `callouts` (scheduling and delivering callout answers), `failure` (traps, the fail
//! policy, stalls) and `finish` (the end of a stream and the report).

mod callouts;
mod clock;
mod control;
mod failure;
mod finish;
mod prepared;
pub mod session;
mod steps;
mod stream;

use std::sync::Arc;

use crate::abi::LogLevel;
use crate::callouts::CalloutConfig;
use crate::error::{HarnessError, LoadError};
use crate::host::state::{SharedHandle, VmConfig};
use crate::report::Report;
use crate::traffic::Record;
use crate::vm::{Plugin, Vm, VmSetup};

pub use prepared::PreparedRecords;
pub use session::Session;

/// The virtual time used when the traffic carries none: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_NS: i64 = 1_767_225_600_000_000_000;

/// How to run a module.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Plugin configuration (`proxy_on_configure`).
    pub plugin_configuration: Vec<u8>,
    /// VM configuration (`proxy_on_vm_start`).
    pub vm_configuration: Vec<u8>,
    /// `root_id`.
    pub root_id: String,
    /// `vm_id`.
    pub vm_id: String,
    /// Plugin name.
    pub plugin_name: String,
    /// Worker VMs.
    pub workers: usize,
    /// What streams meet once a VM has failed (a trap).
    pub failure_policy: FailurePolicy,
    /// Split bodies into chunks of this size (None: one chunk).
    pub chunk_size: Option<usize>,
    /// Callout stubs.
    pub callouts: CalloutConfig,
    /// Seed of WASI `random_get`.
    pub seed: u64,
    /// Host log level (lines below it are dropped; `proxy_get_log_level` answers it).
    pub log_level: LogLevel,
    /// The VM's environment (WASI `environ_*`).
    pub env: Vec<(String, String)>,
    /// Fuel (roughly, wasm instructions) per callback before it is stopped as a hang.
    pub fuel: u64,
    /// How long the clock may run after the last record to resume paused streams.
    pub idle_horizon_ms: u64,
    /// Report the text of bodies the module rewrote, not only their length and digest.
    pub show_bodies: bool,
}

/// What streams meet once the VM they run on has failed (a callback trapped): Envoy's
/// `failure_policy` of the Wasm filter, one setting for the harness and for the Envoy that
/// `replay --envoy` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The failing stream and every later one on that worker answer 503
    /// (`wasm_fail_stream`): the VM stays failed (Envoy's default).
    FailClosed,
    /// The failing stream and every later one go on without the filter; the VM stays
    /// failed.
    FailOpen,
    /// The failing stream answers 503; the worker's next stream gets a fresh VM (the
    /// harness's default, so one trap does not turn the rest of a replay into 503s).
    FailReload,
}

impl FailurePolicy {
    /// The names, as `--failure-policy` takes them.
    pub const NAMES: [&'static str; 3] = ["fail-closed", "fail-open", "fail-reload"];

    /// The policy a `--failure-policy` name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fail-closed" => Some(Self::FailClosed),
            "fail-open" => Some(Self::FailOpen),
            "fail-reload" => Some(Self::FailReload),
            _ => None,
        }
    }

    /// The value of Envoy's `PluginConfig.failure_policy`.
    pub fn envoy_name(self) -> &'static str {
        match self {
            Self::FailClosed => "FAIL_CLOSED",
            Self::FailOpen => "FAIL_OPEN",
            Self::FailReload => "FAIL_RELOAD",
        }
    }

    /// Whether a stream on a failed VM goes on without the filter.
    pub fn fails_open(self) -> bool {
        self == Self::FailOpen
    }

    /// Whether a failed VM is replaced for the worker's next stream.
    pub fn reloads(self) -> bool {
        self == Self::FailReload
    }
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            plugin_configuration: Vec::new(),
            vm_configuration: Vec::new(),
            root_id: "stakeguard".to_string(),
            vm_id: "stakeguard".to_string(),
            plugin_name: "stakeguard".to_string(),
            workers: 2,
            failure_policy: FailurePolicy::FailReload,
            chunk_size: None,
            callouts: CalloutConfig::default(),
            seed: 0,
            log_level: LogLevel::Info,
            env: Vec::new(),
            fuel: 2_000_000_000,
            idle_horizon_ms: 60_000,
            show_bodies: false,
        }
    }
}

fn vm_config(config: &HarnessConfig) -> VmConfig {
    VmConfig {
        root_id: config.root_id.clone(),
        vm_id: config.vm_id.clone(),
        plugin_name: config.plugin_name.clone(),
        vm_configuration: config.vm_configuration.clone(),
        plugin_configuration: config.plugin_configuration.clone(),
        env: config.env.clone(),
        log_level: config.log_level,
        callouts: Arc::new(config.callouts.clone()),
        seed: config.seed,
        node_id: "stakeguard-harness".to_string(),
        node_cluster: "stakeguard".to_string(),
    }
}

/// A module loaded for replays: compiled once; each [`Session`] instantiates it once
/// per worker and keeps those VMs for all its replays.
pub struct Harness {
    plugin: Plugin,
    config: HarnessConfig,
    vm_config: Arc<VmConfig>,
}

impl Harness {
    /// Compiles and links a module (wasm or wat bytes).
    pub fn new(module: &[u8], config: HarnessConfig) -> Result<Harness, LoadError> {
        let plugin = Plugin::load(module)?;
        let vm_config = Arc::new(vm_config(&config));
        Ok(Harness {
            plugin,
            config,
            vm_config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HarnessConfig {
        &self.config
    }

    /// This module (already compiled and linked) with another configuration.
    pub fn reconfigure(&self, config: HarnessConfig) -> Harness {
        Harness {
            plugin: self.plugin.clone(),
            vm_config: Arc::new(vm_config(&config)),
            config,
        }
    }

    /// A copy of this harness with another plugin configuration (same compiled module).
    pub fn with_plugin_configuration(&self, configuration: Vec<u8>) -> Result<Harness, LoadError> {
        let mut config = self.config.clone();
        config.plugin_configuration = configuration;
        Ok(self.reconfigure(config))
    }

    /// Instantiates one VM (its start functions run; the root context is not created).
    pub(crate) fn start_vm(
        &self,
        shared: SharedHandle,
        worker: usize,
        now_ns: u64,
        generation: u64,
    ) -> Result<Vm, LoadError> {
        Vm::new(
            &self.plugin,
            VmSetup {
                config: self.vm_config.clone(),
                shared,
                worker,
                now_ns,
                fuel: self.config.fuel,
                generation,
            },
        )
    }

    /// Starts the worker VMs (root context, `on_vm_start`, `on_configure`) with the
    /// virtual clock at `start_ns`, for any number of replays.
    pub fn session(&self, start_ns: u64) -> Result<Session<'_>, HarnessError> {
        Session::new(self, start_ns)
    }

    /// `records` made ready for any number of replays on this harness's sessions
    /// ([`Session::replay_prepared`]).
    pub fn prepare(&self, records: &[Record]) -> PreparedRecords {
        PreparedRecords::new(records, self.config.chunk_size)
    }

    /// Replays `records` with fresh VMs and shared state.
    pub fn replay(&self, records: &[Record]) -> Result<Report, HarnessError> {
        self.replay_with_progress(records, &mut |_| {})
    }

    /// Replays `records` with fresh VMs, calling `progress` with the number of records
    /// started so far.
    pub fn replay_with_progress(
        &self,
        records: &[Record],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Report, HarnessError> {
        self.replay_prepared(&self.prepare(records), progress)
    }

    /// [`Harness::replay_with_progress`] of records this harness prepared, which can be
    /// replayed again (by this harness or one [reconfigured](Harness::reconfigure) from
    /// it with the same chunk size).
    pub fn replay_prepared(
        &self,
        records: &PreparedRecords,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Report, HarnessError> {
        let mut session = self.session(records.start_ns())?;
        Ok(session.replay_prepared(records, 0, progress))
    }
}

/// The virtual time a replay of `records` starts at: the first recorded time, or
/// [`DEFAULT_START_NS`].
pub fn first_time_ns(records: &[Record]) -> u64 {
    start_ns(records.iter().map(|r| r.time_ns))
}

/// The first of recorded `times`, or [`DEFAULT_START_NS`].
fn start_ns(times: impl Iterator<Item = Option<i64>>) -> u64 {
    let start = times.flatten().next().unwrap_or(DEFAULT_START_NS);
    u64::try_from(start).unwrap_or(0)
}
