//! One proxy-wasm VM: a wasmtime instance with its [`HostState`], the module's exported
//! callbacks looked up once, and a wrapper that runs a callback for a context with a
//! time budget (see [`deadline`]) and turns a trap into a [`Trapped`] report with the
//! wasm backtrace.
//!
//! [`Plugin`] holds what is built once per module: the engine, the compiled module and
//! the pre-linked `InstancePre`; a [`Vm`] is cheap to make from it.

use std::collections::BTreeSet;
use std::sync::Arc;

mod deadline;

use wasmtime::{
    Config, Engine, Instance, InstancePre, Module, OptLevel, Store, StoreLimitsBuilder, Trap,
    TypedFunc, WasmBacktrace, WasmBacktraceDetails, WasmParams, WasmResults,
};

use crate::error::LoadError;
use crate::host::state::{HostState, Phase, RecentEntries, Rng, SharedHandle, VmConfig};

/// Memory a VM may grow to.
const MAX_MEMORY: usize = 1 << 30;

/// A compiled module ready to be instantiated.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    pre: InstancePre<HostState>,
    abi_0_2_0: bool,
}

impl Plugin {
    /// Compiles and links `bytes` (wasm or wat).
    pub fn load(bytes: &[u8]) -> Result<Plugin, LoadError> {
        let mut config = Config::new();
        config.wasm_backtrace_details(WasmBacktraceDetails::Enable);
        config.cranelift_opt_level(OptLevel::Speed);
        config.epoch_interruption(true);
        if std::env::var_os("STAKEGUARD_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        deadline::register(&engine)?;
        let module =
            Module::new(&engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let exports: BTreeSet<String> = module.exports().map(|e| e.name().to_string()).collect();
        let abi_0_2_0 = if exports.contains("proxy_abi_version_0_2_1") {
            false
        } else if exports.contains("proxy_abi_version_0_2_0") {
            true
        } else {
            let found: Vec<&String> = exports
                .iter()
                .filter(|e| e.starts_with("proxy_abi_version"))
                .collect();
            return Err(LoadError::Abi {
                found: if found.is_empty() {
                    "none".to_string()
                } else {
                    found
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        };
        if !exports.contains("malloc") && !exports.contains("proxy_on_memory_allocate") {
            return Err(LoadError::MissingAllocator);
        }
        let (linker, names) = crate::host::linker(&engine)?;
        crate::host::check_imports(&module, &names, abi_0_2_0)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::BadSignature {
                name: "import".to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(Plugin {
            engine,
            pre,
            abi_0_2_0,
        })
    }

    /// Whether the module declares ABI 0.2.0 (rather than 0.2.1).
    pub fn abi_0_2_0(&self) -> bool {
        self.abi_0_2_0
    }
}

/// A trap (or an exhausted budget) in a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trapped {
    /// The callback that trapped.
    pub callback: String,
    /// The trap and the wasm backtrace.
    pub message: String,
}

/// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
type HttpCallResponseFn = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The module's exports, looked up once.
struct Exports {
    on_context_create: Option<TypedFunc<(u32, u32), ()>>,
    on_vm_start: Option<TypedFunc<(u32, u32), u32>>,
    on_configure: Option<TypedFunc<(u32, u32), u32>>,
    on_tick: Option<TypedFunc<u32, ()>>,
    on_queue_ready: Option<TypedFunc<(u32, u32), ()>>,
    on_request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_http_call_response: Option<HttpCallResponseFn>,
    on_grpc_receive_initial_metadata: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_receive: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_receive_trailing_metadata: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_close: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_done: Option<TypedFunc<u32, u32>>,
    on_log: Option<TypedFunc<u32, ()>>,
    on_delete: Option<TypedFunc<u32, ()>>,
}

fn export<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, LoadError> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| LoadError::BadSignature {
                name: name.to_string(),
                message: format!("{e:#}"),
            }),
    }
}

/// Formats a trap with its backtrace.
pub fn describe_trap(error: &wasmtime::Error, host_trap: Option<String>) -> String {
    let mut message = match (host_trap, error.downcast_ref::<Trap>()) {
        (Some(host), _) => host,
        (None, Some(Trap::Interrupt)) => {
            "the callback ran out of fuel (its time budget, about a millisecond per million units); \
             an infinite loop? (raise --fuel for heavy modules)"
                .to_string()
        }
        (None, Some(trap)) => trap.to_string(),
        (None, None) => format!("{}", error.root_cause()),
    };
    if let Some(bt) = error.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .map(|f| {
                let name = f
                    .func_name()
                    .map_or_else(|| format!("<func {}>", f.func_index()), |n| n.to_string());
                format!("  {name}")
            })
            .collect();
        if !frames.is_empty() {
            message.push_str("\nwasm backtrace:\n");
            message.push_str(&frames.join("\n"));
        }
    }
    message
}

/// A running VM.
pub struct Vm {
    store: Store<HostState>,
    exports: Exports,
    next_context: u32,
    /// The epoch deadline of each callback, in ticks.
    budget_ticks: u64,
    /// The VM trapped; Envoy marks it failed.
    pub failed: bool,
}

/// What a VM needs to start.
pub struct VmSetup {
    /// Shared configuration.
    pub config: Arc<VmConfig>,
    /// Shared state.
    pub shared: SharedHandle,
    /// Worker index.
    pub worker: usize,
    /// Virtual time at start, in nanoseconds.
    pub now_ns: u64,
    /// Fuel per callback (turned into a time budget by [`deadline::ticks_for`]).
    pub fuel: u64,
    /// How many times this worker's VM was started before (seeds differ per start).
    pub generation: u64,
}

impl Vm {
    /// Instantiates the plugin and runs its start functions. The root context is not
    /// created yet (see [`Vm::start_root`]).
    pub fn new(plugin: &Plugin, setup: VmSetup) -> Result<Vm, LoadError> {
        let seed = setup.config.seed
            ^ (setup.worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ setup.generation.wrapping_mul(0xd6e8_feb8_6659_fd93);
        let state = HostState {
            config: setup.config,
            shared: setup.shared,
            worker: setup.worker,
            abi_0_2_0: plugin.abi_0_2_0,
            now_ns: setup.now_ns,
            start_ns: setup.now_ns,
            memory: None,
            allocator: None,
            root_context: 0,
            current: 0,
            effective: None,
            phase: Phase::Other,
            streams: Default::default(),
            callout_answer: None,
            tick_period_ms: 0,
            tick_changed: false,
            actions: Vec::new(),
            new_callouts: Vec::new(),
            open_callouts: Default::default(),
            open_grpc: Default::default(),
            cancelled_grpc: Vec::new(),
            call_status: (0, String::new()),
            next_http_token: 1,
            next_grpc_token: 1,
            logs: Vec::new(),
            queued: false,
            metric_ids: Default::default(),
            next_metric_id: [0, 1, 2],
            rng: Rng::new(seed),
            pending_done: Default::default(),
            done_called: Default::default(),
            recent_entries: RecentEntries::default(),
            property_bytes: Vec::new(),
            host_trap: None,
            limits: StoreLimitsBuilder::new().memory_size(MAX_MEMORY).build(),
            calls: None,
        };
        let mut store = Store::new(&plugin.engine, state);
        store.limiter(|s| &mut s.limits);
        let budget_ticks = deadline::ticks_for(setup.fuel);
        store.set_epoch_deadline(budget_ticks);
        let instance = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(describe_trap(&e, None)))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(LoadError::MissingMemory)?;
        let allocator = match export::<u32, u32>(&instance, &mut store, "malloc")? {
            Some(f) => f,
            None => export::<u32, u32>(&instance, &mut store, "proxy_on_memory_allocate")?
                .ok_or(LoadError::MissingAllocator)?,
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().allocator = Some(Arc::new(allocator));
        let exports = Exports {
            on_context_create: export(&instance, &mut store, "proxy_on_context_create")?,
            on_vm_start: export(&instance, &mut store, "proxy_on_vm_start")?,
            on_configure: export(&instance, &mut store, "proxy_on_configure")?,
            on_tick: export(&instance, &mut store, "proxy_on_tick")?,
            on_queue_ready: export(&instance, &mut store, "proxy_on_queue_ready")?,
            on_request_headers: export(&instance, &mut store, "proxy_on_request_headers")?,
            on_request_body: export(&instance, &mut store, "proxy_on_request_body")?,
            on_request_trailers: export(&instance, &mut store, "proxy_on_request_trailers")?,
            on_response_headers: export(&instance, &mut store, "proxy_on_response_headers")?,
            on_response_body: export(&instance, &mut store, "proxy_on_response_body")?,
            on_response_trailers: export(&instance, &mut store, "proxy_on_response_trailers")?,
            on_http_call_response: export(&instance, &mut store, "proxy_on_http_call_response")?,
            on_grpc_receive_initial_metadata: export(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            on_grpc_receive: export(&instance, &mut store, "proxy_on_grpc_receive")?,
            on_grpc_receive_trailing_metadata: export(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            on_grpc_close: export(&instance, &mut store, "proxy_on_grpc_close")?,
            on_done: export(&instance, &mut store, "proxy_on_done")?,
            on_log: export(&instance, &mut store, "proxy_on_log")?,
            on_delete: export(&instance, &mut store, "proxy_on_delete")?,
        };
        // Envoy: `_initialize` then `main` (or `__main_void`), else `_start`.
        let initialize = export::<(), ()>(&instance, &mut store, "_initialize")?;
        let run = |store: &mut Store<HostState>, name: &str, r: wasmtime::Result<()>| {
            r.map_err(|e| {
                let host = store.data_mut().host_trap.take();
                LoadError::Start {
                    function: name.to_string(),
                    message: describe_trap(&e, host),
                }
            })
        };
        if let Some(init) = initialize {
            let r = init.call(&mut store, ());
            run(&mut store, "_initialize", r)?;
            if let Some(main) = export::<(u32, u32), u32>(&instance, &mut store, "main")? {
                let r = main.call(&mut store, (0, 0)).map(|_| ());
                run(&mut store, "main", r)?;
            } else if let Some(main) = export::<(), u32>(&instance, &mut store, "__main_void")? {
                let r = main.call(&mut store, ()).map(|_| ());
                run(&mut store, "__main_void", r)?;
            }
        } else if let Some(start) = export::<(), ()>(&instance, &mut store, "_start")? {
            let r = start.call(&mut store, ());
            run(&mut store, "_start", r)?;
        }
        Ok(Vm {
            store,
            exports,
            next_context: 1,
            budget_ticks,
            failed: false,
        })
    }

    /// The VM's host state.
    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// The size of the VM's linear memory in bytes (it only grows).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// The VM's host state, mutably.
    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// A fresh context id.
    pub fn alloc_context(&mut self) -> u32 {
        let id = self.next_context;
        self.next_context = self.next_context.wrapping_add(1);
        id
    }

    /// Runs the callback `func` picks from the exports, if the module has it.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        func: fn(&Exports) -> Option<&TypedFunc<P, R>>,
        context: u32,
        phase: Phase,
        params: P,
    ) -> Result<Option<R>, Trapped> {
        // Borrowed, not cloned: a `TypedFunc` clone copies its type's reference counts.
        let Some(func) = func(&self.exports) else {
            return Ok(None);
        };
        if self.failed {
            return Ok(None);
        }
        {
            let s = self.store.data_mut();
            s.current = context;
            s.effective = None;
            s.phase = phase;
            if let Some(calls) = s.calls.as_deref_mut() {
                calls.enter(name);
            }
        }
        self.store.set_epoch_deadline(self.budget_ticks);
        let result = func.call(&mut self.store, params);
        let s = self.store.data_mut();
        s.phase = Phase::Other;
        s.effective = None;
        if let Some(calls) = s.calls.as_deref_mut() {
            calls.leave();
        }
        match result {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                let host = s.host_trap.take();
                self.failed = true;
                Err(Trapped {
                    callback: name.to_string(),
                    message: describe_trap(&e, host),
                })
            }
        }
    }

    /// `proxy_on_context_create(context, parent)`.
    pub fn on_context_create(&mut self, context: u32, parent: u32) -> Result<(), Trapped> {
        self.call(
            "proxy_on_context_create",
            |e| e.on_context_create.as_ref(),
            context,
            Phase::Other,
            (context, parent),
        )
        .map(|_| ())
    }

    /// Creates the root context: `proxy_on_context_create(root, 0)`.
    pub fn start_root(&mut self) -> Result<u32, Trapped> {
        let root = self.alloc_context();
        self.state_mut().root_context = root;
        self.on_context_create(root, 0)?;
        Ok(root)
    }

    /// `proxy_on_vm_start(root, vm_configuration_size)`; true when absent.
    pub fn on_vm_start(&mut self) -> Result<bool, Trapped> {
        let root = self.state().root_context;
        let size = self.state().config.vm_configuration.len() as u32;
        Ok(self
            .call(
                "proxy_on_vm_start",
                |e| e.on_vm_start.as_ref(),
                root,
                Phase::VmStart,
                (root, size),
            )?
            .is_none_or(|r| r != 0))
    }

    /// `proxy_on_configure(root, plugin_configuration_size)`; true when absent.
    pub fn on_configure(&mut self) -> Result<bool, Trapped> {
        let root = self.state().root_context;
        let size = self.state().config.plugin_configuration.len() as u32;
        Ok(self
            .call(
                "proxy_on_configure",
                |e| e.on_configure.as_ref(),
                root,
                Phase::Configure,
                (root, size),
            )?
            .is_none_or(|r| r != 0))
    }

    /// `proxy_on_tick(root)`.
    pub fn on_tick(&mut self) -> Result<(), Trapped> {
        let root = self.state().root_context;
        self.call(
            "proxy_on_tick",
            |e| e.on_tick.as_ref(),
            root,
            Phase::Other,
            root,
        )
        .map(|_| ())
    }

    /// `proxy_on_queue_ready(root, token)`.
    pub fn on_queue_ready(&mut self, root: u32, token: u32) -> Result<(), Trapped> {
        self.call(
            "proxy_on_queue_ready",
            |e| e.on_queue_ready.as_ref(),
            root,
            Phase::Other,
            (root, token),
        )
        .map(|_| ())
    }

    /// `proxy_on_request_headers(ctx, n, eos)`; 0 (Continue) when absent.
    pub fn on_request_headers(&mut self, ctx: u32, n: u32, eos: bool) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_request_headers",
                |e| e.on_request_headers.as_ref(),
                ctx,
                Phase::Other,
                (ctx, n, u32::from(eos)),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_request_body(ctx, size, eos)`.
    pub fn on_request_body(&mut self, ctx: u32, size: u32, eos: bool) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_request_body",
                |e| e.on_request_body.as_ref(),
                ctx,
                Phase::Other,
                (ctx, size, u32::from(eos)),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_request_trailers(ctx, n)`.
    pub fn on_request_trailers(&mut self, ctx: u32, n: u32) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_request_trailers",
                |e| e.on_request_trailers.as_ref(),
                ctx,
                Phase::Other,
                (ctx, n),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_response_headers(ctx, n, eos)`.
    pub fn on_response_headers(&mut self, ctx: u32, n: u32, eos: bool) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_response_headers",
                |e| e.on_response_headers.as_ref(),
                ctx,
                Phase::Other,
                (ctx, n, u32::from(eos)),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_response_body(ctx, size, eos)`.
    pub fn on_response_body(&mut self, ctx: u32, size: u32, eos: bool) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_response_body",
                |e| e.on_response_body.as_ref(),
                ctx,
                Phase::Other,
                (ctx, size, u32::from(eos)),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_response_trailers(ctx, n)`.
    pub fn on_response_trailers(&mut self, ctx: u32, n: u32) -> Result<u32, Trapped> {
        Ok(self
            .call(
                "proxy_on_response_trailers",
                |e| e.on_response_trailers.as_ref(),
                ctx,
                Phase::Other,
                (ctx, n),
            )?
            .unwrap_or(0))
    }

    /// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
    pub fn on_http_call_response(
        &mut self,
        root: u32,
        token: u32,
        headers: u32,
        body: u32,
        trailers: u32,
    ) -> Result<(), Trapped> {
        self.call(
            "proxy_on_http_call_response",
            |e| e.on_http_call_response.as_ref(),
            root,
            Phase::HttpCallResponse,
            (root, token, headers, body, trailers),
        )
        .map(|_| ())
    }

    /// `proxy_on_grpc_receive_initial_metadata(root, token, n)`.
    pub fn on_grpc_initial_metadata(
        &mut self,
        root: u32,
        token: u32,
        n: u32,
    ) -> Result<(), Trapped> {
        self.call(
            "proxy_on_grpc_receive_initial_metadata",
            |e| e.on_grpc_receive_initial_metadata.as_ref(),
            root,
            Phase::GrpcReceive,
            (root, token, n),
        )
        .map(|_| ())
    }

    /// `proxy_on_grpc_receive(root, token, size)`.
    pub fn on_grpc_receive(&mut self, root: u32, token: u32, size: u32) -> Result<(), Trapped> {
        self.call(
            "proxy_on_grpc_receive",
            |e| e.on_grpc_receive.as_ref(),
            root,
            Phase::GrpcReceive,
            (root, token, size),
        )
        .map(|_| ())
    }

    /// `proxy_on_grpc_receive_trailing_metadata(root, token, n)`.
    pub fn on_grpc_trailing_metadata(
        &mut self,
        root: u32,
        token: u32,
        n: u32,
    ) -> Result<(), Trapped> {
        self.call(
            "proxy_on_grpc_receive_trailing_metadata",
            |e| e.on_grpc_receive_trailing_metadata.as_ref(),
            root,
            Phase::GrpcReceive,
            (root, token, n),
        )
        .map(|_| ())
    }

    /// `proxy_on_grpc_close(root, token, status)`.
    pub fn on_grpc_close(&mut self, root: u32, token: u32, status: u32) -> Result<(), Trapped> {
        self.call(
            "proxy_on_grpc_close",
            |e| e.on_grpc_close.as_ref(),
            root,
            Phase::Other,
            (root, token, status),
        )
        .map(|_| ())
    }

    /// `proxy_on_done(ctx)`; true when absent.
    pub fn on_done(&mut self, ctx: u32) -> Result<bool, Trapped> {
        Ok(self
            .call(
                "proxy_on_done",
                |e| e.on_done.as_ref(),
                ctx,
                Phase::Other,
                ctx,
            )?
            .is_none_or(|r| r != 0))
    }

    /// `proxy_on_log(ctx)`.
    pub fn on_log(&mut self, ctx: u32) -> Result<(), Trapped> {
        self.call("proxy_on_log", |e| e.on_log.as_ref(), ctx, Phase::Log, ctx)
            .map(|_| ())
    }

    /// `proxy_on_delete(ctx)`.
    pub fn on_delete(&mut self, ctx: u32) -> Result<(), Trapped> {
        self.call(
            "proxy_on_delete",
            |e| e.on_delete.as_ref(),
            ctx,
            Phase::Other,
            ctx,
        )
        .map(|_| ())
    }
}
