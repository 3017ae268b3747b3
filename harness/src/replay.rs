//! The replay driver: runs recorded requests through worker VMs on a virtual clock, the
//! way Envoy's worker threads run a proxy-wasm filter.
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use crate::abi::{DATA_STOP_AND_BUFFER, FILTER_CONTINUE, LogLevel, StreamType};
use crate::callouts::{CalloutConfig, StubAnswer};
use crate::error::{HarnessError, LoadError};
use crate::host::state::{
    Action, CalloutAnswerState, CalloutKind, CalloutRequest, HeaderMap, LocalReply, Shared,
    SharedHandle, StreamState, VmConfig, lock,
};
use crate::properties::{StreamInfo, Value};
use crate::report::{
    CalloutReport, Entry, LocalReplyReport, MetricReport, Outcome, Report, Summary, header_changes,
};
use crate::traffic::Record;
use crate::traffic::time::format_rfc3339;
use crate::vm::{Plugin, Trapped, Vm, VmSetup};

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
    /// After a trap, let streams through (true) or answer 503 (false).
    pub fail_open: bool,
    /// Give a trapped worker a fresh VM for its next stream (false: it stays failed).
    pub restart_after_trap: bool,
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
            fail_open: false,
            restart_after_trap: true,
            chunk_size: None,
            callouts: CalloutConfig::default(),
            seed: 0,
            log_level: LogLevel::Info,
            env: Vec::new(),
            fuel: 2_000_000_000,
            idle_horizon_ms: 60_000,
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

/// A module loaded for replays: compiled once, instantiated per worker per replay.
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
        let mut vm_config = (*self.vm_config).clone();
        vm_config.plugin_configuration = configuration.clone();
        let mut config = self.config.clone();
        config.plugin_configuration = configuration;
        Ok(Harness {
            plugin: self.plugin.clone(),
            config,
            vm_config: Arc::new(vm_config),
        })
    }

    /// Starts one VM and its root context (`on_vm_start`, `on_configure`) for `check`.
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

    /// Replays `records` with fresh VMs and shared state.
    pub fn replay(&self, records: &[Record]) -> Result<Report, HarnessError> {
        self.replay_with_progress(records, &mut |_| {})
    }

    /// Replays `records`, calling `progress` with the number of records started so far.
    pub fn replay_with_progress(
        &self,
        records: &[Record],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Report, HarnessError> {
        let mut run = Run::new(self, records)?;
        run.run(records, progress);
        Ok(run.into_report())
    }
}

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    RequestHeaders,
    RequestBody(usize),
    RequestTrailers,
    ResponseHeaders,
    ResponseBody(usize),
    ResponseTrailers,
    Finish,
}

/// The response a stream is sending back.
#[derive(Debug, Clone, Default)]
struct ResponseSource {
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    trailers: Vec<(String, String)>,
}

/// A stream in flight.
struct StreamRun {
    index: usize,
    context: u32,
    step: Step,
    waiting: Option<StreamType>,
    continue_pending: [bool; 2],
    request_headers: Vec<(String, String)>,
    request_chunks: Vec<Vec<u8>>,
    request_trailers: Vec<(String, String)>,
    request_buffer: Vec<u8>,
    forwarded_request_headers: Option<Vec<(String, String)>>,
    forwarded_request_body: Vec<u8>,
    response: ResponseSource,
    original_response_headers: Vec<(String, String)>,
    original_response_body: Vec<u8>,
    response_buffer: Vec<u8>,
    final_response_headers: Option<Vec<(String, String)>>,
    final_response_body: Vec<u8>,
    final_response_trailers: Vec<(String, String)>,
    local_reply: Option<LocalReply>,
    reset: bool,
    failed: bool,
    entry: Entry,
}

/// Something scheduled on the virtual clock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Callout {
        worker: usize,
        generation: u64,
        token: u32,
        grpc: bool,
        stream: bool,
        answer: Answer,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Response {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
        grpc_status: u32,
    },
    Timeout,
    Reset,
}

struct Worker {
    vm: Option<Vm>,
    generation: u64,
    next_tick: Option<u64>,
    tick_period_ns: u64,
    needs_restart: bool,
    started_once: bool,
}

enum Work {
    Resume(usize, u32),
    QueueReady(usize, u32, u32),
}

struct Run<'h> {
    h: &'h Harness,
    shared: SharedHandle,
    workers: Vec<Worker>,
    now: u64,
    streams: BTreeMap<(usize, u32), StreamRun>,
    entries: Vec<Option<Entry>>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    work: VecDeque<Work>,
    connections: HashMap<String, (usize, u64)>,
    next_worker: usize,
    summary: Summary,
    last_record_ns: u64,
}

fn chunks(body: &[u8], size: Option<usize>) -> Vec<Vec<u8>> {
    if body.is_empty() {
        return Vec::new();
    }
    match size {
        Some(n) if n > 0 => body.chunks(n).map(<[u8]>::to_vec).collect(),
        _ => vec![body.to_vec()],
    }
}

fn lossy(bytes: &[u8], max: usize) -> String {
    let cut = bytes.get(..bytes.len().min(max)).unwrap_or(&[]);
    String::from_utf8_lossy(cut).into_owned()
}

impl<'h> Run<'h> {
    fn new(h: &'h Harness, records: &[Record]) -> Result<Run<'h>, HarnessError> {
        let start = records
            .iter()
            .find_map(|r| r.time_ns)
            .unwrap_or(DEFAULT_START_NS);
        let now = u64::try_from(start).unwrap_or(0);
        let shared: SharedHandle = Arc::new(std::sync::Mutex::new(Shared::default()));
        let mut run = Run {
            h,
            shared,
            workers: Vec::new(),
            now,
            streams: BTreeMap::new(),
            entries: vec![None; records.len()],
            events: BinaryHeap::new(),
            seq: 0,
            work: VecDeque::new(),
            connections: HashMap::new(),
            next_worker: 0,
            summary: Summary::default(),
            last_record_ns: now,
        };
        for w in 0..h.config.workers.max(1) {
            run.workers.push(Worker {
                vm: None,
                generation: 0,
                next_tick: None,
                tick_period_ns: 0,
                needs_restart: true,
                started_once: false,
            });
            run.start_worker(w)?;
        }
        Ok(run)
    }

    /// (Re)starts a worker's VM: instantiate, root context, `on_vm_start`, `on_configure`.
    fn start_worker(&mut self, w: usize) -> Result<(), HarnessError> {
        let Some(worker) = self.workers.get_mut(w) else {
            return Ok(());
        };
        let generation = worker.generation;
        let vm = self
            .h
            .start_vm(self.shared.clone(), w, self.now, generation)?;
        worker.vm = Some(vm);
        worker.needs_restart = false;
        worker.next_tick = None;
        worker.tick_period_ns = 0;
        let first = !worker.started_once;
        worker.started_once = true;
        let result = (|| {
            let vm = self.vm(w).ok_or("no vm")?;
            vm.start_root().map_err(|t| t.message)?;
            let ok = vm.on_vm_start().map_err(|t| t.message)?;
            if !ok {
                return Err("proxy_on_vm_start returned false".to_string());
            }
            let ok = vm.on_configure().map_err(|t| t.message)?;
            if !ok {
                return Err("proxy_on_configure returned false".to_string());
            }
            Ok::<(), String>(())
        })();
        self.after_call(w);
        self.run_work();
        match result {
            Ok(()) => Ok(()),
            Err(message) if first => Err(HarnessError::PluginStart { worker: w, message }),
            Err(message) => {
                self.summary
                    .root_traps
                    .push(format!("worker {w}: restart failed: {message}"));
                if let Some(worker) = self.workers.get_mut(w) {
                    worker.vm = None;
                }
                Ok(())
            }
        }
    }

    fn vm(&mut self, w: usize) -> Option<&mut Vm> {
        self.workers.get_mut(w)?.vm.as_mut().filter(|vm| !vm.failed)
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn next_due(&self) -> Option<u64> {
        let tick = self.workers.iter().filter_map(|w| w.next_tick).min();
        let event = self.events.peek().map(|Reverse((t, _, _))| *t);
        match (tick, event) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due up to `t` in time order, then sets the clock to `t`.
    fn advance_to(&mut self, t: u64) {
        while let Some(due) = self.next_due() {
            if due > t {
                break;
            }
            self.fire_next(due);
        }
        self.now = self.now.max(t);
    }

    fn fire_next(&mut self, due: u64) {
        self.now = self.now.max(due);
        let event_due = self.events.peek().map(|Reverse((t, _, _))| *t);
        if event_due == Some(due) {
            if let Some(Reverse((_, _, event))) = self.events.pop() {
                self.deliver(event);
            }
        } else if let Some(w) = self.workers.iter().position(|w| w.next_tick == Some(due)) {
            self.tick(w);
        }
        self.run_work();
    }

    fn set_clock(&mut self, w: usize) {
        let now = self.now;
        if let Some(vm) = self.workers.get_mut(w).and_then(|w| w.vm.as_mut()) {
            vm.state_mut().now_ns = now;
        }
    }

    fn tick(&mut self, w: usize) {
        let Some(worker) = self.workers.get_mut(w) else {
            return;
        };
        worker.next_tick = worker.next_tick.map(|t| t + worker.tick_period_ns.max(1));
        self.summary.ticks += 1;
        self.set_clock(w);
        let result = match self.vm(w) {
            Some(vm) => vm.on_tick(),
            None => Ok(()),
        };
        self.after_call(w);
        if let Err(t) = result {
            self.trap(w, None, t);
        }
    }

    fn run(&mut self, records: &[Record], progress: &mut dyn FnMut(usize)) {
        let mut last = self.now;
        for (i, record) in records.iter().enumerate() {
            let t = record
                .time_ns
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(last)
                .max(last);
            last = t;
            self.last_record_ns = t;
            self.advance_to(t);
            self.start_stream(i, record);
            self.run_work();
            if i % 256 == 255 {
                progress(i + 1);
            }
        }
        progress(records.len());
        // Let paused streams be resumed by ticks and callouts, up to the horizon.
        let horizon = self.last_record_ns + self.h.config.idle_horizon_ms * 1_000_000;
        loop {
            let waiting = self.streams.values().any(|s| s.waiting.is_some());
            let event_due = self.events.peek().map(|Reverse((t, _, _))| *t);
            let due = if waiting { self.next_due() } else { event_due };
            match due {
                Some(d) if d <= horizon => self.fire_next(d),
                _ => break,
            }
        }
        let stalled: Vec<(usize, u32)> = self.streams.keys().copied().collect();
        for key in stalled {
            if let Some(mut s) = self.streams.remove(&key) {
                s.entry.outcome = Outcome::Stalled;
                s.entry.status = 0;
                let what = match s.waiting {
                    Some(StreamType::Response) => "response",
                    _ => "request",
                };
                s.entry.notes.push(format!(
                    "paused in the {what} path and never resumed (nothing left that could continue it)"
                ));
                self.summary.stalled += 1;
                if let Some(vm) = self.workers.get_mut(key.0).and_then(|w| w.vm.as_mut()) {
                    vm.state_mut().streams.remove(&key.1);
                }
                let index = s.index;
                if let Some(slot) = self.entries.get_mut(index) {
                    *slot = Some(s.entry);
                }
            }
        }
    }

    fn assign_worker(&mut self, record: &Record) -> (usize, u64) {
        let n = self.workers.len().max(1);
        let new = |run: &mut Run<'_>| {
            let w = run.next_worker % n;
            run.next_worker += 1;
            (w, run.connections.len() as u64 + 1)
        };
        match &record.connection {
            Some(c) => {
                if let Some(found) = self.connections.get(c) {
                    return *found;
                }
                let assigned = new(self);
                self.connections.insert(c.clone(), assigned);
                assigned
            }
            None => {
                let assigned = new(self);
                self.connections.insert(
                    format!("\u{0}anonymous-{}", self.connections.len()),
                    assigned,
                );
                assigned
            }
        }
    }

    fn start_stream(&mut self, index: usize, record: &Record) {
        let (w, connection_id) = self.assign_worker(record);
        let mut notes = Vec::new();
        let restart = self
            .workers
            .get(w)
            .is_some_and(|wk| wk.needs_restart && self.h.config.restart_after_trap);
        if restart {
            if let Some(wk) = self.workers.get_mut(w) {
                wk.generation += 1;
            }
            self.summary.vm_restarts += 1;
            notes.push(format!("worker {w} got a fresh VM after a trap"));
            let _ = self.start_worker(w);
        }
        let req = &record.request;
        let request_headers = req.header_pairs();
        let response = match &record.response {
            Some(r) => {
                let mut headers = vec![(":status".to_string(), r.status.to_string())];
                headers.extend(r.headers.iter().cloned());
                ResponseSource {
                    headers,
                    chunks: chunks(&r.body, self.h.config.chunk_size),
                    trailers: r.trailers.clone(),
                }
            }
            None => {
                notes.push("no recorded response; upstream answered 200 with no body".to_string());
                ResponseSource {
                    headers: vec![(":status".to_string(), "200".to_string())],
                    chunks: Vec::new(),
                    trailers: Vec::new(),
                }
            }
        };
        let entry = Entry {
            index,
            time: format_rfc3339(i64::try_from(self.now).unwrap_or(i64::MAX)),
            worker: w,
            method: req.method.clone(),
            authority: req.authority.clone(),
            path: req.path.clone(),
            outcome: Outcome::Forwarded,
            status: 0,
            request_header_changes: Vec::new(),
            response_header_changes: Vec::new(),
            request_body_changed: false,
            response_body_changed: false,
            local_reply: None,
            properties: BTreeMap::new(),
            decision: None,
            callouts: Vec::new(),
            logs: Vec::new(),
            trap: None,
            notes,
        };
        let original_response_headers = response.headers.clone();
        let original_response_body = record
            .response
            .as_ref()
            .map(|r| r.body.clone())
            .unwrap_or_default();
        let mut stream = StreamRun {
            index,
            context: 0,
            step: Step::RequestHeaders,
            waiting: None,
            continue_pending: [false; 2],
            request_headers: request_headers.clone(),
            request_chunks: chunks(&req.body, self.h.config.chunk_size),
            request_trailers: req.trailers.clone(),
            request_buffer: Vec::new(),
            forwarded_request_headers: None,
            forwarded_request_body: Vec::new(),
            response,
            original_response_headers,
            original_response_body,
            response_buffer: Vec::new(),
            final_response_headers: None,
            final_response_body: Vec::new(),
            final_response_trailers: Vec::new(),
            local_reply: None,
            reset: false,
            failed: false,
            entry,
        };
        let info = StreamInfo {
            start_ns: i64::try_from(self.now).unwrap_or(i64::MAX),
            request_id: req
                .headers
                .iter()
                .find(|(k, _)| k == "x-request-id")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| format!("harness-{index}")),
            protocol: "HTTP/1.1".to_string(),
            source: record.source.clone(),
            destination: record.destination.clone(),
            peer_uri_san: record.peer_uri_san.clone(),
            connection_id,
            sni: Some(req.authority.split(':').next().unwrap_or("").to_string()),
            route_name: String::new(),
            cluster_name: String::new(),
            request_headers: HeaderMap::from_pairs(request_headers),
            overrides: record
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v)))
                .collect(),
        };
        self.set_clock(w);
        let Some(vm) = self.vm(w) else {
            // The worker's VM is failed (and not restarted): the fail policy decides.
            stream.entry.notes.push(format!("worker {w} VM is failed"));
            stream.failed = true;
            self.streams.insert((w, u32::MAX - index as u32), stream);
            self.apply_fail_policy(w, u32::MAX - index as u32, None);
            return;
        };
        let ctx = vm.alloc_context();
        let root = vm.state().root_context;
        vm.state_mut().streams.insert(
            ctx,
            StreamState {
                info: Arc::new(info),
                ..StreamState::default()
            },
        );
        stream.context = ctx;
        self.streams.insert((w, ctx), stream);
        let result = self.vm(w).map(|vm| vm.on_context_create(ctx, root));
        self.after_call(w);
        if let Some(Err(t)) = result {
            self.trap(w, Some(ctx), t);
            return;
        }
        self.drive(w, ctx);
    }

    /// Runs a stream forward until it pauses or ends.
    fn drive(&mut self, w: usize, ctx: u32) {
        loop {
            let Some(s) = self.streams.get(&(w, ctx)) else {
                return;
            };
            if s.waiting.is_some() {
                return;
            }
            if s.failed {
                self.apply_fail_policy(w, ctx, None);
                return;
            }
            let step = s.step;
            self.set_clock(w);
            let outcome = match step {
                Step::RequestHeaders => self.request_headers(w, ctx),
                Step::RequestBody(i) => self.request_body(w, ctx, i),
                Step::RequestTrailers => self.request_trailers(w, ctx),
                Step::ResponseHeaders => self.response_headers(w, ctx),
                Step::ResponseBody(i) => self.response_body(w, ctx, i),
                Step::ResponseTrailers => self.response_trailers(w, ctx),
                Step::Finish => {
                    self.finish(w, ctx);
                    return;
                }
            };
            if let Err(t) = outcome {
                self.trap(w, Some(ctx), t);
                return;
            }
        }
    }

    fn stream_state(&mut self, w: usize, ctx: u32) -> Option<&mut StreamState> {
        self.workers
            .get_mut(w)?
            .vm
            .as_mut()?
            .state_mut()
            .streams
            .get_mut(&ctx)
    }

    /// Marks the stream paused in `dir` unless a continue already came.
    fn pause(&mut self, w: usize, ctx: u32, dir: StreamType) -> bool {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return false;
        };
        let slot = if dir == StreamType::Request { 0 } else { 1 };
        if s.continue_pending.get(slot).copied().unwrap_or(false) {
            if let Some(p) = s.continue_pending.get_mut(slot) {
                *p = false;
            }
            return false;
        }
        s.waiting = Some(dir);
        true
    }

    fn after_request_step(s: &mut StreamRun, from: Step) {
        let next = match from {
            Step::RequestHeaders if !s.request_chunks.is_empty() => Step::RequestBody(0),
            Step::RequestHeaders | Step::RequestBody(_) => {
                if let Step::RequestBody(i) = from
                    && i + 1 < s.request_chunks.len()
                {
                    s.step = Step::RequestBody(i + 1);
                    return;
                }
                if s.request_trailers.is_empty() {
                    Step::ResponseHeaders
                } else {
                    Step::RequestTrailers
                }
            }
            _ => Step::ResponseHeaders,
        };
        s.step = next;
    }

    fn after_response_step(s: &mut StreamRun, from: Step) {
        s.step = match from {
            Step::ResponseHeaders if !s.response.chunks.is_empty() => Step::ResponseBody(0),
            Step::ResponseBody(i) if i + 1 < s.response.chunks.len() => Step::ResponseBody(i + 1),
            Step::ResponseHeaders | Step::ResponseBody(_) if !s.response.trailers.is_empty() => {
                Step::ResponseTrailers
            }
            _ => Step::Finish,
        };
    }

    /// Handles what a stream callback left behind; true when the stream was taken over
    /// (local reply, reset, failure) and the step's own result must be ignored.
    fn taken_over(&mut self, w: usize, ctx: u32, step: Step) -> bool {
        match self.streams.get(&(w, ctx)) {
            None => true,
            Some(s) => s.failed || s.reset || s.step != step || s.waiting.is_some(),
        }
    }

    fn request_headers(&mut self, w: usize, ctx: u32) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let headers = s.request_headers.clone();
        let eos = s.request_chunks.is_empty() && s.request_trailers.is_empty();
        let n = headers.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.request_headers = Some(HeaderMap::from_pairs(headers));
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_request_headers(ctx, n, eos),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::RequestHeaders) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, StreamType::Request) {
            self.forward_request_headers(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_request_step(s, Step::RequestHeaders);
            }
        }
        Ok(())
    }

    fn forward_request_headers(&mut self, w: usize, ctx: u32) {
        let headers = self
            .stream_state(w, ctx)
            .and_then(|st| st.request_headers.take())
            .map(|m| m.entries);
        if let Some(s) = self.streams.get_mut(&(w, ctx))
            && s.forwarded_request_headers.is_none()
        {
            s.forwarded_request_headers = headers.or_else(|| Some(s.request_headers.clone()));
        }
    }

    fn request_body(&mut self, w: usize, ctx: u32, i: usize) -> Result<(), Trapped> {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return Ok(());
        };
        let chunk = s.request_chunks.get(i).cloned().unwrap_or_default();
        let eos = i + 1 >= s.request_chunks.len() && s.request_trailers.is_empty();
        s.request_buffer.extend_from_slice(&chunk);
        let buffer = s.request_buffer.clone();
        let size = buffer.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.request_body = Some(buffer);
            st.request_body_total += chunk.len() as u64;
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_request_body(ctx, size, eos),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::RequestBody(i)) {
            return Ok(());
        }
        if r == FILTER_CONTINUE {
            self.forward_request_body(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_request_step(s, Step::RequestBody(i));
            }
        } else if r == DATA_STOP_AND_BUFFER && !eos {
            let kept = self
                .stream_state(w, ctx)
                .and_then(|st| st.request_body.clone());
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                s.request_buffer = kept.unwrap_or_default();
                Self::after_request_step(s, Step::RequestBody(i));
            }
        } else if !self.pause(w, ctx, StreamType::Request) {
            self.forward_request_body(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_request_step(s, Step::RequestBody(i));
            }
        }
        Ok(())
    }

    fn forward_request_body(&mut self, w: usize, ctx: u32) {
        let body = self
            .stream_state(w, ctx)
            .and_then(|st| st.request_body.take());
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            let body = body.unwrap_or_else(|| s.request_buffer.clone());
            s.forwarded_request_body.extend_from_slice(&body);
            s.request_buffer.clear();
        }
    }

    fn request_trailers(&mut self, w: usize, ctx: u32) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let trailers = s.request_trailers.clone();
        let n = trailers.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.request_trailers = Some(HeaderMap::from_pairs(trailers));
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_request_trailers(ctx, n),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::RequestTrailers) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, StreamType::Request) {
            if let Some(st) = self.stream_state(w, ctx) {
                st.request_trailers = None;
            }
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                s.step = Step::ResponseHeaders;
            }
        }
        Ok(())
    }

    fn response_headers(&mut self, w: usize, ctx: u32) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let headers = s.response.headers.clone();
        let eos = s.response.chunks.is_empty() && s.response.trailers.is_empty();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok());
        let details = match &s.local_reply {
            Some(l) => l.details.clone(),
            None => "via_upstream".to_string(),
        };
        let n = headers.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.response_headers = Some(HeaderMap::from_pairs(headers));
            st.response_status = status;
            st.response_details = details;
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_response_headers(ctx, n, eos),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::ResponseHeaders) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, StreamType::Response) {
            self.forward_response_headers(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_response_step(s, Step::ResponseHeaders);
            }
        }
        Ok(())
    }

    fn forward_response_headers(&mut self, w: usize, ctx: u32) {
        let headers = self
            .stream_state(w, ctx)
            .and_then(|st| st.response_headers.take())
            .map(|m| m.entries);
        if let Some(s) = self.streams.get_mut(&(w, ctx))
            && s.final_response_headers.is_none()
        {
            s.final_response_headers = headers.or_else(|| Some(s.response.headers.clone()));
        }
    }

    fn response_body(&mut self, w: usize, ctx: u32, i: usize) -> Result<(), Trapped> {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return Ok(());
        };
        let chunk = s.response.chunks.get(i).cloned().unwrap_or_default();
        let eos = i + 1 >= s.response.chunks.len() && s.response.trailers.is_empty();
        s.response_buffer.extend_from_slice(&chunk);
        let buffer = s.response_buffer.clone();
        let size = buffer.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.response_body = Some(buffer);
            st.response_body_total += chunk.len() as u64;
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_response_body(ctx, size, eos),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::ResponseBody(i)) {
            return Ok(());
        }
        if r == FILTER_CONTINUE {
            self.forward_response_body(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_response_step(s, Step::ResponseBody(i));
            }
        } else if r == DATA_STOP_AND_BUFFER && !eos {
            let kept = self
                .stream_state(w, ctx)
                .and_then(|st| st.response_body.clone());
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                s.response_buffer = kept.unwrap_or_default();
                Self::after_response_step(s, Step::ResponseBody(i));
            }
        } else if !self.pause(w, ctx, StreamType::Response) {
            self.forward_response_body(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                Self::after_response_step(s, Step::ResponseBody(i));
            }
        }
        Ok(())
    }

    fn forward_response_body(&mut self, w: usize, ctx: u32) {
        let body = self
            .stream_state(w, ctx)
            .and_then(|st| st.response_body.take());
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            let body = body.unwrap_or_else(|| s.response_buffer.clone());
            s.final_response_body.extend_from_slice(&body);
            s.response_buffer.clear();
        }
    }

    fn response_trailers(&mut self, w: usize, ctx: u32) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let trailers = s.response.trailers.clone();
        let n = trailers.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            st.response_trailers = Some(HeaderMap::from_pairs(trailers));
        }
        let r = match self.vm(w) {
            Some(vm) => vm.on_response_trailers(ctx, n),
            None => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        if self.taken_over(w, ctx, Step::ResponseTrailers) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, StreamType::Response) {
            self.forward_response_trailers(w, ctx);
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                s.step = Step::Finish;
            }
        }
        Ok(())
    }

    fn forward_response_trailers(&mut self, w: usize, ctx: u32) {
        let t = self
            .stream_state(w, ctx)
            .and_then(|st| st.response_trailers.take())
            .map(|m| m.entries);
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            s.final_response_trailers = t.unwrap_or_else(|| s.response.trailers.clone());
        }
    }

    /// `proxy_continue_stream` took effect.
    fn resume(&mut self, w: usize, ctx: u32, dir: StreamType) {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return;
        };
        if s.waiting != Some(dir) {
            let slot = if dir == StreamType::Request { 0 } else { 1 };
            let in_direction = match s.step {
                Step::RequestHeaders | Step::RequestBody(_) | Step::RequestTrailers => {
                    dir == StreamType::Request
                }
                Step::Finish => false,
                _ => dir == StreamType::Response,
            };
            if in_direction && let Some(p) = s.continue_pending.get_mut(slot) {
                *p = true;
            }
            return;
        }
        s.waiting = None;
        let step = s.step;
        match step {
            Step::RequestHeaders => {
                self.forward_request_headers(w, ctx);
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    Self::after_request_step(s, step);
                }
            }
            Step::RequestBody(_) => {
                self.forward_request_headers(w, ctx);
                self.forward_request_body(w, ctx);
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    Self::after_request_step(s, step);
                }
            }
            Step::RequestTrailers => {
                if let Some(st) = self.stream_state(w, ctx) {
                    st.request_trailers = None;
                }
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    s.step = Step::ResponseHeaders;
                }
            }
            Step::ResponseHeaders => {
                self.forward_response_headers(w, ctx);
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    Self::after_response_step(s, step);
                }
            }
            Step::ResponseBody(_) => {
                self.forward_response_body(w, ctx);
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    Self::after_response_step(s, step);
                }
            }
            Step::ResponseTrailers => {
                self.forward_response_trailers(w, ctx);
                if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                    s.step = Step::Finish;
                }
            }
            Step::Finish => {}
        }
        // Envoy drops the request maps on any continue.
        if let Some(st) = self.stream_state(w, ctx)
            && (dir == StreamType::Request || st.request_headers.is_some())
        {
            st.request_headers = None;
            st.request_trailers = None;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }

    fn local_reply(&mut self, w: usize, ctx: u32, reply: LocalReply) {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return;
        };
        if s.local_reply.is_some() {
            s.entry.notes.push(format!(
                "a second local reply ({}) was ignored",
                reply.status
            ));
            return;
        }
        let response_started = matches!(
            s.step,
            Step::ResponseHeaders | Step::ResponseBody(_) | Step::ResponseTrailers | Step::Finish
        );
        let mut headers = vec![(":status".to_string(), reply.status.to_string())];
        if !reply.body.is_empty() {
            headers.push(("content-length".to_string(), reply.body.len().to_string()));
            headers.push(("content-type".to_string(), "text/plain".to_string()));
        }
        headers.extend(
            reply
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        s.entry.local_reply = Some(LocalReplyReport {
            status: reply.status,
            details: reply.details.clone(),
            body: lossy(&reply.body, 256),
        });
        s.response = ResponseSource {
            headers: headers.clone(),
            chunks: if reply.body.is_empty() {
                Vec::new()
            } else {
                vec![reply.body.clone()]
            },
            trailers: Vec::new(),
        };
        s.original_response_headers = headers.clone();
        s.original_response_body = reply.body.clone();
        s.local_reply = Some(reply.clone());
        s.waiting = None;
        s.response_buffer.clear();
        if response_started {
            // Envoy cannot run the local reply through this filter again: it goes out as is.
            s.final_response_headers = Some(headers);
            s.final_response_body = reply.body.clone();
            s.step = Step::Finish;
        } else {
            s.step = Step::ResponseHeaders;
        }
        if let Some(st) = self.stream_state(w, ctx) {
            st.request_headers = None;
            st.request_trailers = None;
            st.request_body = None;
            st.response_headers = None;
            st.response_body = None;
            st.local_reply_sent = true;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }

    /// Collects what the VM did during a callback and schedules its effects.
    fn after_call(&mut self, w: usize) {
        let Some(vm) = self.workers.get_mut(w).and_then(|wk| wk.vm.as_mut()) else {
            return;
        };
        let state = vm.state_mut();
        let logs = std::mem::take(&mut state.logs);
        let callouts = std::mem::take(&mut state.new_callouts);
        let cancelled = std::mem::take(&mut state.cancelled_grpc);
        let actions = std::mem::take(&mut state.actions);
        let tick = if state.tick_changed {
            state.tick_changed = false;
            Some(state.tick_period_ms)
        } else {
            None
        };
        let min_level = state.config.log_level;
        let _ = cancelled;
        for line in logs {
            let level = line.level.name().to_string();
            if line.level < min_level {
                continue;
            }
            *self.summary.logs.entry(level.clone()).or_default() += 1;
            let text = format!("{level}: {}", line.message);
            match self.streams.get_mut(&(w, line.context)) {
                Some(s) => s.entry.logs.push(text),
                None => self.summary.root_logs.push(format!("worker {w}: {text}")),
            }
        }
        if let Some(period) = tick {
            let now = self.now;
            if let Some(wk) = self.workers.get_mut(w) {
                wk.tick_period_ns = u64::from(period) * 1_000_000;
                wk.next_tick = if period == 0 {
                    None
                } else {
                    Some(now + wk.tick_period_ns)
                };
            }
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
        let ready = std::mem::take(&mut lock(&self.shared).ready);
        for (qw, root, token) in ready {
            self.work.push_back(Work::QueueReady(qw, root, token));
        }
    }

    fn reset(&mut self, w: usize, ctx: u32) {
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            s.reset = true;
            s.waiting = None;
            s.step = Step::Finish;
            s.entry.outcome = Outcome::Reset;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }

    fn schedule_callout(&mut self, w: usize, c: CalloutRequest) {
        self.summary.callouts += 1;
        let generation = self.workers.get(w).map_or(0, |wk| wk.generation);
        let stub = self.h.config.callouts.answer(&c.cluster);
        let timeout_ms = u64::from(c.timeout_ms);
        let (answer, after_ms, label) = match stub {
            None => (None, 0, "none".to_string()),
            Some((StubAnswer::Timeout, _)) if timeout_ms > 0 => {
                (Some(Answer::Timeout), timeout_ms, "timeout".to_string())
            }
            Some((StubAnswer::Timeout, _)) => {
                (None, 0, "none (stub times out, no timeout set)".to_string())
            }
            Some((_, latency)) if timeout_ms > 0 && latency > timeout_ms => {
                (Some(Answer::Timeout), timeout_ms, "timeout".to_string())
            }
            Some((StubAnswer::Reset, latency)) => {
                (Some(Answer::Reset), latency, "reset".to_string())
            }
            Some((
                StubAnswer::Response {
                    status,
                    headers,
                    body,
                    trailers,
                    grpc_status,
                },
                latency,
            )) => (
                Some(Answer::Response {
                    headers,
                    body,
                    trailers,
                    grpc_status,
                }),
                latency,
                status.to_string(),
            ),
        };
        let (kind, method, path, grpc, stream) = match &c.kind {
            CalloutKind::Http => {
                let get = |n: &str| {
                    c.headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                ("http", get(":method"), get(":path"), false, false)
            }
            CalloutKind::GrpcCall { service, method } => (
                "grpc",
                format!("{service}/{method}"),
                String::new(),
                true,
                false,
            ),
            CalloutKind::GrpcStream { service, method } => (
                "grpc_stream",
                format!("{service}/{method}"),
                String::new(),
                true,
                true,
            ),
        };
        let report = CalloutReport {
            cluster: c.cluster.clone(),
            kind: kind.to_string(),
            method,
            path,
            body_size: c.body.len(),
            body_preview: lossy(&c.body, 120),
            answer: label,
            after_ms,
        };
        match self.streams.get_mut(&(w, c.from_context)) {
            Some(s) => s.entry.callouts.push(report),
            None => self.summary.root_logs.push(format!(
                "worker {w}: callout {} {} {} -> {}",
                report.cluster, report.method, report.path, report.answer
            )),
        }
        if let Some(answer) = answer {
            let at = self.now + after_ms * 1_000_000;
            self.schedule(
                at,
                Event::Callout {
                    worker: w,
                    generation,
                    token: c.token,
                    grpc,
                    stream,
                    answer,
                },
            );
        }
    }

    fn deliver(&mut self, event: Event) {
        let Event::Callout {
            worker: w,
            generation,
            token,
            grpc,
            stream,
            answer,
        } = event;
        if self
            .workers
            .get(w)
            .is_none_or(|wk| wk.generation != generation)
        {
            return;
        }
        self.set_clock(w);
        let Some(vm) = self.vm(w) else { return };
        let root = vm.state().root_context;
        let result = if grpc {
            if vm.state_mut().open_grpc.remove(&token).is_none() {
                return;
            }
            deliver_grpc(vm, root, token, stream, answer)
        } else {
            if vm.state_mut().open_callouts.remove(&token).is_none() {
                return;
            }
            deliver_http(vm, root, token, answer)
        };
        self.after_call(w);
        if let Err(t) = result {
            self.trap(w, None, t);
        }
    }

    fn run_work(&mut self) {
        let mut guard = 0u64;
        while let Some(work) = self.work.pop_front() {
            guard += 1;
            if guard > 10_000_000 {
                break;
            }
            match work {
                Work::Resume(w, ctx) => self.drive(w, ctx),
                Work::QueueReady(w, root, token) => {
                    self.set_clock(w);
                    let result = match self.vm(w) {
                        Some(vm) if vm.state().root_context == root => {
                            vm.on_queue_ready(root, token)
                        }
                        _ => Ok(()),
                    };
                    self.after_call(w);
                    if let Err(t) = result {
                        self.trap(w, None, t);
                    }
                }
            }
        }
    }

    /// A callback trapped: report it, fail the VM's streams per policy, schedule a restart.
    fn trap(&mut self, w: usize, ctx: Option<u32>, t: Trapped) {
        let text = format!("{}: {}", t.callback, t.message);
        match ctx.and_then(|c| self.streams.get_mut(&(w, c))) {
            Some(s) => s.entry.trap = Some(text.clone()),
            None => self.summary.root_traps.push(format!("worker {w}: {text}")),
        }
        if let Some(wk) = self.workers.get_mut(w) {
            wk.needs_restart = true;
            wk.next_tick = None;
        }
        let keys: Vec<(usize, u32)> = self
            .streams
            .keys()
            .filter(|(sw, _)| *sw == w)
            .copied()
            .collect();
        for (sw, c) in keys {
            if let Some(s) = self.streams.get_mut(&(sw, c)) {
                s.failed = true;
                s.waiting = None;
                if Some(c) != ctx && s.entry.trap.is_none() {
                    s.entry.trap = Some(format!("the VM failed in another callback: {text}"));
                }
            }
            self.apply_fail_policy(sw, c, None);
        }
    }

    /// Ends a stream whose VM failed: 503 (fail closed) or pass-through (fail open).
    fn apply_fail_policy(&mut self, w: usize, ctx: u32, _why: Option<String>) {
        let Some(mut s) = self.streams.remove(&(w, ctx)) else {
            return;
        };
        s.entry.outcome = Outcome::Trapped;
        if s.local_reply.is_some() || s.final_response_headers.is_some() {
            // The client already has its answer.
            s.entry.status = status_of(
                s.final_response_headers
                    .as_deref()
                    .unwrap_or(&s.response.headers),
            );
        } else if self.h.config.fail_open {
            s.entry.status = status_of(&s.response.headers);
            s.entry
                .notes
                .push("fail open: the stream went on without the filter".to_string());
        } else {
            s.entry.status = 503;
            s.entry.local_reply = Some(LocalReplyReport {
                status: 503,
                details: "wasm_fail_stream".to_string(),
                body: String::new(),
            });
        }
        if let Some(vm) = self.workers.get_mut(w).and_then(|wk| wk.vm.as_mut()) {
            vm.state_mut().streams.remove(&ctx);
        }
        let index = s.index;
        if let Some(slot) = self.entries.get_mut(index) {
            *slot = Some(s.entry);
        }
    }

    /// The stream is done: access log, done, delete, then its report entry.
    fn finish(&mut self, w: usize, ctx: u32) {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return;
        };
        let req_final = s
            .forwarded_request_headers
            .clone()
            .unwrap_or_else(|| s.request_headers.clone());
        let resp_final = s
            .final_response_headers
            .clone()
            .unwrap_or_else(|| s.response.headers.clone());
        let trailers = s.final_response_trailers.clone();
        if let Some(st) = self.stream_state(w, ctx) {
            st.log_request_headers = HeaderMap::from_pairs(req_final);
            st.log_response_headers = HeaderMap::from_pairs(resp_final);
            st.log_response_trailers = HeaderMap::from_pairs(trailers);
            st.request_headers = None;
            st.response_headers = None;
            st.request_body = None;
            st.response_body = None;
        }
        self.set_clock(w);
        let mut result = Ok(());
        if let Some(vm) = self.vm(w) {
            result = vm
                .on_log(ctx)
                .and_then(|_| vm.on_done(ctx))
                .and_then(|_| vm.on_delete(ctx));
        }
        self.after_call(w);
        let filter_state = self
            .workers
            .get_mut(w)
            .and_then(|wk| wk.vm.as_mut())
            .and_then(|vm| vm.state_mut().streams.remove(&ctx))
            .map(|st| st.filter_state)
            .unwrap_or_default();
        let Some(mut s) = self.streams.remove(&(w, ctx)) else {
            return;
        };
        for (k, v) in filter_state {
            let key = String::from_utf8_lossy(&k).replace('\0', ".");
            let value = String::from_utf8_lossy(&v).into_owned();
            if key == "stakeguard.decision" {
                s.entry.decision = Some(
                    serde_json::from_str(&value)
                        .unwrap_or(serde_json::Value::String(value.clone())),
                );
            }
            s.entry.properties.insert(key, value);
        }
        let req_final = s.forwarded_request_headers.clone();
        let resp_final = s
            .final_response_headers
            .clone()
            .unwrap_or_else(|| s.response.headers.clone());
        if s.local_reply.is_none() {
            if let Some(req) = &req_final {
                s.entry.request_header_changes = header_changes(&s.request_headers, req);
            }
            s.entry.request_body_changed =
                req_final.is_some() && s.forwarded_request_body != s.request_chunks.concat();
        }
        s.entry.response_header_changes = header_changes(&s.original_response_headers, &resp_final);
        s.entry.response_body_changed = s.final_response_body != s.original_response_body;
        s.entry.status = if s.reset { 0 } else { status_of(&resp_final) };
        if !s.reset {
            s.entry.outcome = if s.local_reply.is_some() {
                Outcome::LocalReply
            } else {
                Outcome::Forwarded
            };
        }
        if let Err(t) = result {
            s.entry.trap = Some(format!("{}: {}", t.callback, t.message));
            s.entry.outcome = Outcome::Trapped;
            if let Some(wk) = self.workers.get_mut(w) {
                wk.needs_restart = true;
                wk.next_tick = None;
            }
            // Other streams of this VM fail with it.
            let index = s.index;
            if let Some(slot) = self.entries.get_mut(index) {
                *slot = Some(s.entry);
            }
            let keys: Vec<(usize, u32)> = self
                .streams
                .keys()
                .filter(|(sw, _)| *sw == w)
                .copied()
                .collect();
            for (sw, c) in keys {
                if let Some(o) = self.streams.get_mut(&(sw, c)) {
                    o.failed = true;
                    o.waiting = None;
                }
                self.apply_fail_policy(sw, c, None);
            }
            return;
        }
        let index = s.index;
        if let Some(slot) = self.entries.get_mut(index) {
            *slot = Some(s.entry);
        }
    }

    fn into_report(self) -> Report {
        let mut summary = self.summary;
        let entries: Vec<Entry> = self.entries.into_iter().flatten().collect();
        summary.requests = entries.len();
        for e in &entries {
            *summary
                .outcomes
                .entry(e.outcome.name().to_string())
                .or_default() += 1;
            if let Some(label) = e.decision_label() {
                *summary.decisions.entry(label).or_default() += 1;
            }
        }
        for (name, m) in &lock(&self.shared).metrics {
            summary.metrics.insert(
                name.clone(),
                MetricReport {
                    kind: m.kind.map_or("unknown", |k| k.name()).to_string(),
                    value: m.value,
                    samples: (m.kind == Some(crate::abi::MetricType::Histogram))
                        .then_some(m.samples),
                },
            );
        }
        Report { entries, summary }
    }
}

fn status_of(headers: &[(String, String)]) -> u32 {
    headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn deliver_http(vm: &mut Vm, root: u32, token: u32, answer: Answer) -> Result<(), Trapped> {
    let (headers, body, trailers) = match answer {
        Answer::Response {
            headers,
            body,
            trailers,
            ..
        } => (headers, body, trailers),
        Answer::Timeout => {
            // Envoy's async client answers a timeout with the router's local reply.
            let body = b"upstream request timeout".to_vec();
            (
                vec![
                    (":status".to_string(), "504".to_string()),
                    ("content-length".to_string(), body.len().to_string()),
                    ("content-type".to_string(), "text/plain".to_string()),
                ],
                body,
                Vec::new(),
            )
        }
        Answer::Reset => {
            let s = vm.state_mut();
            s.call_status = (11, "reset".to_string());
            s.callout_answer = None;
            let r = vm.on_http_call_response(root, token, 0, 0, 0);
            vm.state_mut().call_status.1.clear();
            return r;
        }
    };
    let (nh, nb, nt) = (
        headers.len() as u32,
        body.len() as u32,
        trailers.len() as u32,
    );
    vm.state_mut().callout_answer = Some(CalloutAnswerState {
        headers: HeaderMap::from_pairs(headers),
        body,
        trailers: HeaderMap::from_pairs(trailers),
    });
    let r = vm.on_http_call_response(root, token, nh, nb, nt);
    vm.state_mut().callout_answer = None;
    r
}

fn deliver_grpc(
    vm: &mut Vm,
    root: u32,
    token: u32,
    stream: bool,
    answer: Answer,
) -> Result<(), Trapped> {
    let close = |vm: &mut Vm, status: u32, message: &str| {
        vm.state_mut().call_status = (status, message.to_string());
        let r = vm.on_grpc_close(root, token, status);
        vm.state_mut().call_status.1.clear();
        r
    };
    match answer {
        Answer::Timeout => close(vm, 4, "deadline exceeded"),
        Answer::Reset => close(vm, 14, "upstream reset"),
        Answer::Response {
            headers,
            body,
            trailers,
            grpc_status,
        } => {
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect();
            vm.state_mut().callout_answer = Some(CalloutAnswerState {
                headers: HeaderMap::from_pairs(headers.clone()),
                body: body.clone(),
                trailers: HeaderMap::from_pairs(trailers.clone()),
            });
            let mut r = Ok(());
            if stream && !headers.is_empty() {
                r = vm.on_grpc_initial_metadata(root, token, headers.len() as u32);
            }
            if r.is_ok() && grpc_status == 0 {
                r = vm.on_grpc_receive(root, token, body.len() as u32);
            }
            if r.is_ok() && stream && !trailers.is_empty() {
                r = vm.on_grpc_trailing_metadata(root, token, trailers.len() as u32);
            }
            vm.state_mut().callout_answer = None;
            r?;
            if stream || grpc_status != 0 {
                close(
                    vm,
                    grpc_status,
                    if grpc_status == 0 { "" } else { "stub status" },
                )?;
            }
            Ok(())
        }
    }
}
