//! A [`Session`]: worker VMs started once (instantiate, root context, `on_vm_start`,
//! `on_configure`) and the shared state they share, replaying any number of record
//! sets through the same VMs on one virtual clock that only moves forward.
//!
//! This file holds the workers, the record loop and the collection of what a callback
//! left behind; the stream machinery lives in the sibling modules.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};

use super::Harness;
use super::callouts::Event;
use super::clock::Work;
use super::prepared::PreparedRecords;
use super::stream::Streams;
use crate::error::{HarnessError, LoadError};
use crate::host::calls::HostCalls;
use crate::host::state::{Action, Shared, SharedHandle, lock};
use crate::report::{Entry, Report, Summary};
use crate::traffic::Record;
use crate::vm::Vm;

/// One worker thread's VM and its timer.
pub(super) struct Worker {
    pub(super) vm: Option<Vm>,
    /// How many times the VM was (re)started; callout answers of an older VM are dropped.
    pub(super) generation: u64,
    pub(super) next_tick: Option<u64>,
    pub(super) tick_period_ns: u64,
    pub(super) needs_restart: bool,
}

/// Why a worker's VM did not start.
pub(super) enum StartError {
    /// The module could not be instantiated or its start functions trapped.
    Load(LoadError),
    /// The root context trapped or refused its VM or plugin configuration: why, and
    /// the module's log lines of the start.
    Plugin {
        /// A trap's message, or which callback returned false.
        reason: String,
        /// `level: message`, as `check` prints them.
        logs: Vec<String>,
    },
}

/// Running worker VMs, ready to replay records.
pub struct Session<'h> {
    pub(super) h: &'h Harness,
    pub(super) shared: SharedHandle,
    pub(super) workers: Vec<Worker>,
    /// The virtual clock, in nanoseconds since the epoch.
    pub(super) now: u64,
    /// Streams in flight by (worker, context).
    pub(super) streams: Streams,
    /// The entries of the replay in progress, by record index: each record's from the
    /// start of its stream (streams start in record order, so each is pushed at its
    /// index), filled in as the stream runs.
    pub(super) entries: Vec<Entry>,
    /// Callout answers due, by (time, sequence).
    pub(super) events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    pub(super) seq: u64,
    /// Continues and queue notifications to run once the current callback is done.
    pub(super) work: VecDeque<Work>,
    /// Connections of the replay in progress, by their number in the prepared records:
    /// worker and connection id, once opened.
    connections: Vec<Option<(usize, u64)>>,
    /// Connections opened over the session's life (connection ids keep growing).
    opened: u64,
    next_worker: usize,
    /// What happened since the last report (the first one includes the VMs' start).
    pub(super) summary: Summary,
    /// Host calls are being counted ([`Session::count_host_calls`]).
    counting: bool,
    /// The rate limit service of clusters stubbed with `ratelimit_service`, one for
    /// every worker as one serves a fleet.
    pub(super) ratelimit: crate::ratelimit::RateLimitService,
}

/// The limits a policy's service-counted controls need in their service, for requests
/// that carry none (`counters.service.limits: config`); none for a configuration that
/// is no policy (the module says why when it starts).
fn configured_limits(configuration: &[u8]) -> Vec<crate::ratelimit::ConfiguredLimit> {
    let Ok(policy) =
        stakeguard_policies::Policy::from_json(&String::from_utf8_lossy(configuration))
    else {
        return Vec::new();
    };
    policy
        .service_limits()
        .into_iter()
        .map(|l| crate::ratelimit::ConfiguredLimit {
            domain: l.domain,
            api: l.api,
            control: l.control,
            requests: l.requests,
            window_ms: l.window_ms,
        })
        .collect()
}

impl<'h> Session<'h> {
    /// Starts every worker VM with the clock at `start_ns`.
    pub(super) fn new(h: &'h Harness, start_ns: u64) -> Result<Session<'h>, HarnessError> {
        let mut session = Session {
            h,
            shared: Arc::new(Mutex::new(Shared::default())),
            workers: Vec::new(),
            now: start_ns,
            streams: Streams::default(),
            entries: Vec::new(),
            events: BinaryHeap::new(),
            seq: 0,
            work: VecDeque::new(),
            connections: Vec::new(),
            opened: 0,
            next_worker: 0,
            summary: Summary::default(),
            counting: false,
            ratelimit: crate::ratelimit::RateLimitService::new(configured_limits(
                &h.config.plugin_configuration,
            )),
        };
        for w in 0..h.config.workers.max(1) {
            session.workers.push(Worker {
                vm: None,
                generation: 0,
                next_tick: None,
                tick_period_ns: 0,
                needs_restart: true,
            });
            session.start_worker(w).map_err(|e| match e {
                StartError::Load(e) => HarnessError::Load(e),
                StartError::Plugin { reason, logs } => HarnessError::PluginStart {
                    worker: w,
                    reason,
                    logs,
                },
            })?;
        }
        Ok(session)
    }

    /// Replays `records` through this session's VMs, with every recorded time moved
    /// `shift_ns` later, and reports on them (the summary covers what happened since the
    /// previous report). Counters, shared data and metrics carry over from earlier
    /// replays, as they would in a proxy that keeps running. To replay the same records
    /// more than once, prepare them once and use [`Session::replay_prepared`].
    pub fn replay(
        &mut self,
        records: &[Record],
        shift_ns: u64,
        progress: &mut dyn FnMut(usize),
    ) -> Report {
        let prepared = self.h.prepare(records);
        self.replay_prepared(&prepared, shift_ns, progress)
    }

    /// [`Session::replay`] of records prepared by this session's harness.
    pub fn replay_prepared(
        &mut self,
        records: &PreparedRecords,
        shift_ns: u64,
        progress: &mut dyn FnMut(usize),
    ) -> Report {
        self.entries.clear();
        self.entries.reserve(records.len());
        self.connections.clear();
        self.connections.resize(records.connections, None);
        let mut last = self.now;
        for (i, record) in records.records.iter().enumerate() {
            let t = record
                .time_ns
                .and_then(|t| u64::try_from(t).ok())
                .map_or(last, |t| t.saturating_add(shift_ns))
                .max(last);
            last = t;
            self.advance_to(t);
            self.start_stream(i, record);
            self.run_work();
            if i % 256 == 255 {
                progress(i + 1);
            }
        }
        progress(records.len());
        self.settle(last);
        self.report()
    }

    /// (Re)starts a worker's VM: instantiate, root context, `on_vm_start`, `on_configure`.
    /// When the plugin refuses to start the worker is left without a VM.
    pub(super) fn start_worker(&mut self, w: usize) -> Result<(), StartError> {
        let mut vm = self
            .h
            .start_vm(
                self.shared.clone(),
                w,
                self.now,
                self.workers.get(w).map_or(0, |wk| wk.generation),
            )
            .map_err(StartError::Load)?;
        let counting = self.counting;
        let Some(worker) = self.workers.get_mut(w) else {
            return Ok(());
        };
        // A restarted VM goes on counting where the one it replaces stopped.
        let calls = worker
            .vm
            .take()
            .and_then(|mut old| old.state_mut().calls.take())
            .or_else(|| counting.then(|| Box::new(HostCalls::new())));
        vm.state_mut().calls = calls;
        worker.vm = Some(vm);
        worker.needs_restart = false;
        worker.next_tick = None;
        worker.tick_period_ns = 0;
        let result = (|| {
            let vm = self.vm(w).ok_or("no vm")?;
            vm.start_root().map_err(|t| t.message)?;
            if !vm.on_vm_start().map_err(|t| t.message)? {
                return Err("proxy_on_vm_start returned false".to_string());
            }
            if !vm.on_configure().map_err(|t| t.message)? {
                return Err("proxy_on_configure returned false".to_string());
            }
            Ok::<(), String>(())
        })();
        let logged_before = self.summary.root_logs.len();
        self.after_call(w);
        self.run_work();
        let Err(reason) = result else {
            return Ok(());
        };
        if let Some(worker) = self.workers.get_mut(w) {
            worker.vm = None;
        }
        let prefix = format!("worker {w}: ");
        let logs = self
            .summary
            .root_logs
            .get(logged_before..)
            .unwrap_or_default()
            .iter()
            .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        Err(StartError::Plugin { reason, logs })
    }

    /// Counts every worker's host calls from now on, per callback and kind, until
    /// [`Session::take_host_calls`]; counts taken before are dropped. Off by default: a
    /// session that does not count pays one branch per host call.
    pub fn count_host_calls(&mut self) {
        self.counting = true;
        for worker in &mut self.workers {
            if let Some(vm) = worker.vm.as_mut() {
                vm.state_mut().calls = Some(Box::new(HostCalls::new()));
            }
        }
    }

    /// The host calls counted since [`Session::count_host_calls`] or the previous take,
    /// summed over the workers; counting goes on from zero.
    pub fn take_host_calls(&mut self) -> HostCalls {
        let mut sum = HostCalls::new();
        for worker in &mut self.workers {
            let calls = worker
                .vm
                .as_mut()
                .and_then(|vm| vm.state_mut().calls.as_mut());
            if let Some(calls) = calls {
                sum.merge(calls);
                **calls = HostCalls::new();
            }
        }
        sum
    }

    /// The linear memory of each worker's VM, in bytes (0 for a worker without one).
    pub fn memory_bytes(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.vm.as_ref().map_or(0, Vm::memory_bytes))
            .collect()
    }

    /// The shared data every VM of the session sees: how many keys, and their keys and
    /// values in bytes (what the module keeps in Envoy's process-wide store).
    pub fn shared_data_size(&self) -> (usize, usize) {
        let shared = lock(&self.shared);
        let maps = shared.data.values();
        maps.flat_map(|m| m.iter())
            .fold((0, 0), |(keys, bytes), (k, (v, _))| {
                (keys + 1, bytes + k.len() + v.len())
            })
    }

    /// The worker's VM, unless it failed.
    pub(super) fn vm(&mut self, w: usize) -> Option<&mut Vm> {
        self.workers.get_mut(w)?.vm.as_mut().filter(|vm| !vm.failed)
    }

    /// The worker's VM, failed or not (its host state outlives a trap).
    pub(super) fn any_vm(&mut self, w: usize) -> Option<&mut Vm> {
        self.workers.get_mut(w)?.vm.as_mut()
    }

    /// The worker and connection id of a record's connection: the ones it got when it
    /// opened, or a new connection on the next worker round-robin.
    pub(super) fn assign_worker(&mut self, connection: usize) -> (usize, u64) {
        if let Some(Some(found)) = self.connections.get(connection) {
            return *found;
        }
        let w = self.next_worker % self.workers.len().max(1);
        self.next_worker += 1;
        self.opened += 1;
        let assigned = (w, self.opened);
        if let Some(slot) = self.connections.get_mut(connection) {
            *slot = Some(assigned);
        }
        assigned
    }

    /// Collects what the VM did during a callback and schedules its effects.
    pub(super) fn after_call(&mut self, w: usize) {
        let Some(vm) = self.any_vm(w) else {
            return;
        };
        let state = vm.state_mut();
        // Cancelled gRPC calls need nothing here: their tokens left `open_grpc`, so a
        // later answer is dropped on delivery.
        state.cancelled_grpc.clear();
        let nothing_left = state.logs.is_empty()
            && state.new_callouts.is_empty()
            && state.actions.is_empty()
            && !state.tick_changed
            && !state.queued;
        if nothing_left {
            // Most callbacks: nothing to take, and no lock on the shared state.
            return;
        }
        let logs = std::mem::take(&mut state.logs);
        let callouts = std::mem::take(&mut state.new_callouts);
        let actions = std::mem::take(&mut state.actions);
        let tick = std::mem::take(&mut state.tick_changed).then_some(state.tick_period_ms);
        let queued = std::mem::take(&mut state.queued);
        let min_level = state.config.log_level;
        for line in logs {
            if line.level < min_level {
                continue;
            }
            let level = line.level.name();
            *self.summary.logs.entry(level.to_string()).or_default() += 1;
            let text = format!("{level}: {}", line.message);
            match self.entry_mut(w, line.context) {
                Some(entry) => entry.logs.push(text),
                None => self.summary.root_logs.push(format!("worker {w}: {text}")),
            }
        }
        if let Some(period) = tick {
            self.set_tick(w, period);
        }
        for c in callouts {
            self.schedule_callout(w, c);
        }
        for action in actions {
            match action {
                Action::Continue { context, stream } => self.resume(w, context, stream),
                Action::Close { context, .. } => self.reset(w, context),
                Action::LocalReply { context, reply } => self.local_reply(w, context, reply),
            }
        }
        if queued {
            let ready = std::mem::take(&mut lock(&self.shared).ready);
            for (qw, root, token) in ready {
                self.work.push_back(Work::QueueReady(qw, root, token));
            }
        }
    }
}
