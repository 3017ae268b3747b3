//! `check`: start a module with a configuration (`proxy_on_vm_start`, then
//! `proxy_on_configure`) and tell whether it took it, with the module's own log lines.

use std::sync::{Arc, Mutex};

use crate::error::LoadError;
use crate::host::state::Shared;
use crate::replay::{DEFAULT_START_NS, Harness};

/// What starting the module said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// `proxy_on_vm_start` returned true (or is absent).
    pub vm_start: bool,
    /// `proxy_on_configure` returned true (or is absent).
    pub configure: bool,
    /// The module's log lines, `level: message`.
    pub logs: Vec<String>,
    /// A trap during start, with its backtrace.
    pub trap: Option<String>,
}

impl CheckResult {
    /// Whether the configuration was accepted.
    pub fn ok(&self) -> bool {
        self.refusal().is_none()
    }

    /// Why the module did not take its configuration, or `None` when it did.
    pub fn refusal(&self) -> Option<String> {
        match (&self.trap, self.vm_start, self.configure) {
            (Some(trap), _, _) => Some(format!("trapped: {trap}")),
            (None, false, _) => Some("proxy_on_vm_start returned false".to_owned()),
            (None, true, false) => Some("proxy_on_configure returned false".to_owned()),
            (None, true, true) => None,
        }
    }
}

/// Starts one VM of `harness` and delivers its configuration.
pub fn check(harness: &Harness) -> Result<CheckResult, LoadError> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut vm = harness.start_vm(shared, 0, DEFAULT_START_NS as u64, 0)?;
    let mut result = CheckResult {
        vm_start: false,
        configure: false,
        logs: Vec::new(),
        trap: None,
    };
    let outcome = vm.start_root().and_then(|_| {
        result.vm_start = vm.on_vm_start()?;
        if result.vm_start {
            result.configure = vm.on_configure()?;
        }
        Ok(())
    });
    if let Err(t) = outcome {
        result.trap = Some(format!("{}: {}", t.callback, t.message));
    }
    let min = harness.config().log_level;
    result.logs = vm
        .state_mut()
        .logs
        .drain(..)
        .filter(|l| l.level >= min)
        .map(|l| format!("{}: {}", l.level.name(), l.message))
        .collect();
    Ok(result)
}

/// Checks a module file's bytes with a configuration.
pub fn check_module(module: &[u8], configuration: Vec<u8>) -> Result<CheckResult, LoadError> {
    let harness = Harness::new(
        module,
        crate::replay::HarnessConfig {
            plugin_configuration: configuration,
            workers: 1,
            ..Default::default()
        },
    )?;
    check(&harness)
}
