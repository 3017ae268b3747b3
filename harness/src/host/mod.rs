//! The proxy-wasm host: every `proxy_*` import of ABI 0.2.1 (and 0.2.0) and the WASI
//! preview1 calls Envoy offers, registered on a wasmtime `Linker`.
//!
//! One function per import, grouped by subject in the files below; each reaches its
//! VM's state through `Caller::data()` and every guest pointer through [`memory`]. This
//! file registers them and checks a module's imports against what is registered, so a
//! missing import is a load error naming the module and the field.

pub mod buffers;
pub mod callouts;
pub mod calls;
pub mod headers;
pub mod memory;
pub mod metrics;
pub mod properties;
pub mod runtime;
pub mod shared;
pub mod state;
pub mod stream;
pub mod wasi;

use std::collections::BTreeSet;

use wasmtime::{ExternType, IntoFunc, Linker, Module};

use crate::abi::Status;
use crate::error::LoadError;
use memory::MemoryError;
use state::HostState;

/// What a `proxy_*` host function returns: a status for the guest, or a trap.
pub type HostResult = wasmtime::Result<u32>;

/// The status the guest gets for a memory error; an allocator trap goes on up.
pub fn mem_status(error: MemoryError) -> HostResult {
    match error {
        MemoryError::Trap(trap) => Err(trap),
        _ => Ok(Status::InvalidMemoryAccess.code()),
    }
}

/// Unwraps a memory result or returns the guest-visible status (or the trap) from the
/// host function.
macro_rules! mem {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(error) => return $crate::host::mem_status(error),
        }
    };
}
pub(crate) use mem;

/// Returns `Ok(status)` from the host function when the result is an `Err(status)`.
macro_rules! status {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(status) => return Ok($crate::abi::Status::code(status)),
        }
    };
}
pub(crate) use status;

/// Imports that exist only in ABI 0.2.1.
const ONLY_0_2_1: &[&str] = &["proxy_get_log_level"];

/// Imports of ABI 0.1.0 this host does not offer.
const ONLY_0_1_0: &[&str] = &[
    "proxy_get_configuration",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_clear_route_cache",
];

/// The two module names WASI functions are offered under.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// Registers functions on a linker and remembers their names.
pub struct Registrar<'a> {
    linker: &'a mut Linker<HostState>,
    names: BTreeSet<(String, String)>,
}

impl<'a> Registrar<'a> {
    /// Adds `env.<name>`.
    pub fn proxy<Params, Args>(
        &mut self,
        name: &str,
        func: impl IntoFunc<HostState, Params, Args>,
    ) -> Result<(), LoadError> {
        self.linker
            .func_wrap("env", name, func)
            .map_err(|e| LoadError::Engine(format!("registering env.{name}: {e}")))?;
        self.names.insert(("env".to_string(), name.to_string()));
        Ok(())
    }

    /// Adds `<name>` under both WASI module names.
    pub fn wasi<Params, Args, F>(&mut self, name: &str, func: F) -> Result<(), LoadError>
    where
        F: IntoFunc<HostState, Params, Args> + Clone,
    {
        for module in WASI_MODULES {
            self.linker
                .func_wrap(module, name, func.clone())
                .map_err(|e| LoadError::Engine(format!("registering {module}.{name}: {e}")))?;
            self.names.insert((module.to_string(), name.to_string()));
        }
        Ok(())
    }
}

/// Names of host functions: (module, field).
pub type ImportNames = BTreeSet<(String, String)>;

/// A linker with every host function, and the names it defines.
pub type HostLinker = (Linker<HostState>, ImportNames);

/// The linker with every host function, and the names it defines.
pub fn linker(engine: &wasmtime::Engine) -> Result<HostLinker, LoadError> {
    let mut linker = Linker::new(engine);
    let names = {
        let mut r = Registrar {
            linker: &mut linker,
            names: BTreeSet::new(),
        };
        runtime::register(&mut r)?;
        headers::register(&mut r)?;
        buffers::register(&mut r)?;
        properties::register(&mut r)?;
        shared::register(&mut r)?;
        callouts::register(&mut r)?;
        metrics::register(&mut r)?;
        stream::register(&mut r)?;
        wasi::register(&mut r)?;
        r.names
    };
    Ok((linker, names))
}

/// Checks every import of `module` against the host, naming the first one missing.
pub fn check_imports(
    module: &Module,
    names: &ImportNames,
    abi_0_2_0: bool,
) -> Result<(), LoadError> {
    for import in module.imports() {
        let (m, f) = (import.module(), import.name());
        let missing = |hint: &str| LoadError::MissingImport {
            module: m.to_string(),
            field: f.to_string(),
            hint: hint.to_string(),
        };
        let ExternType::Func(_) = import.ty() else {
            return Err(missing("; the host provides functions only"));
        };
        if abi_0_2_0 && m == "env" && ONLY_0_2_1.contains(&f) {
            return Err(missing(
                "; it belongs to ABI 0.2.1 and the module declares proxy_abi_version_0_2_0",
            ));
        }
        if !names.contains(&(m.to_string(), f.to_string())) {
            if m == "env" && ONLY_0_1_0.contains(&f) {
                return Err(missing(
                    "; it belongs to ABI 0.1.0, which the harness does not speak",
                ));
            }
            return Err(missing(""));
        }
    }
    Ok(())
}
