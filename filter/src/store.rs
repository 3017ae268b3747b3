//! The engine's [`CounterStore`] on Envoy's shared data: one key-value store per proxy,
//! shared by every worker's VM, with compare-and-swap tokens.
//!
//! The engine runs the retry loop; this only maps statuses: `CasMismatch` becomes
//! [`StoreError::CasMismatch`], anything else [`StoreError::Unavailable`] (and the tier's
//! `on_error` decides). Conflicts and failures are counted for the metrics.

use std::cell::Cell;

use proxy_wasm::types::LogLevel;
use stakeguard_policies::{CounterStore, Policy, StoreError};

use crate::host::{self, HostError};

/// Shared data, with counts of what went wrong since the last [`SharedData::take_counts`].
#[derive(Debug, Default)]
pub struct SharedData {
    conflicts: Cell<u64>,
    failures: Cell<u64>,
}

impl SharedData {
    /// `(conflicts, failures)` since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (self.conflicts.take(), self.failures.take())
    }

    fn failed(&self, op: &str, key: &str, error: HostError) -> StoreError {
        self.failures.set(self.failures.get().saturating_add(1));
        host::log(
            LogLevel::Warn,
            &format!("stakeguard: shared data {op} {key}: status {}", error.0),
        );
        StoreError::Unavailable
    }
}

impl CounterStore for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        host::get_shared_data(key).map_err(|e| self.failed("get", key, e))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match host::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(HostError::CAS_MISMATCH) => {
                self.conflicts.set(self.conflicts.get().saturating_add(1));
                Err(StoreError::CasMismatch)
            }
            Err(e) => Err(self.failed("set", key, e)),
        }
    }
}

/// Creates every state key of `policy` that does not exist yet, with an empty value, so
/// that every later update is a real compare-and-swap. Keys already there (from a previous
/// revision, or created by another worker) are left alone: counters survive a policy swap.
/// Returns `(created, failed)`.
pub fn create_state_keys(policy: &Policy) -> (usize, usize) {
    let (mut created, mut failed) = (0, 0);
    for key in policy.state_keys() {
        match host::get_shared_data(&key) {
            Ok(Some(_)) => {}
            Ok(None) => match host::set_shared_data(&key, &[], 0) {
                Ok(()) => created += 1,
                // Another worker created it between our get and set: fine.
                Err(HostError::CAS_MISMATCH) => {}
                Err(_) => failed += 1,
            },
            Err(_) => failed += 1,
        }
    }
    (created, failed)
}
