//! The services the engine borrows from its host: a clock and a counter store.
//!
//! The engine never talks to proxy-wasm directly. In Envoy the filter implements these
//! traits on top of `proxy_get_current_time_nanoseconds` and shared data; in tests and
//! benchmarks [`MemoryStore`] and a plain number stand in. The store mirrors proxy-wasm
//! shared data exactly (a value plus a compare-and-swap token), so the engine's retry
//! logic is the one that runs in production.

use std::cell::RefCell;
use std::collections::HashMap;

/// Milliseconds since the Unix epoch, as the host's clock tells it.
pub type Millis = u64;

/// Where the engine reads the time. In the harness this is the recording's virtual clock.
pub trait Clock {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

impl Clock for Millis {
    fn now_ms(&self) -> Millis {
        *self
    }
}

/// Why a counter store operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The compare-and-swap token did not match: someone else wrote first. Retry.
    CasMismatch,
    /// The store could not be reached or refused the operation; the tier's `on_error`
    /// decides what the request sees.
    Unavailable,
}

/// A key-value store with compare-and-swap, shaped like proxy-wasm shared data, shared
/// by every worker of one proxy.
pub trait CounterStore {
    /// The value under `key` and its CAS token, or `None` when the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;

    /// Writes `value` under `key`. With `cas` set, the write only happens when the key's
    /// current token equals it (`StoreError::CasMismatch` otherwise); `None` writes
    /// unconditionally. As in Envoy, a key that does not exist yet is created whatever the
    /// token: shared data has no insert-if-absent, which is why the engine's state tables
    /// are created once, before traffic, by [`crate::Policy::state_keys`].
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// An in-process store with shared-data semantics, for tests, benchmarks and native use.
///
/// Tokens come from one counter for the whole store and grow with every write, as in
/// Envoy; a write with a stale token fails with [`StoreError::CasMismatch`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_token: std::cell::Cell<u32>,
    calls: std::cell::Cell<u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys the store holds: the measure of per-key memory in tests.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// How many `get`s and `set`s the store has answered: what a request costs in Envoy
    /// is mostly its store calls, so tests count them.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// Whether the store holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl CounterStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.calls.set(self.calls.get() + 1);
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.calls.set(self.calls.get() + 1);
        let token = self.next_token.get().wrapping_add(1).max(1);
        let mut entries = self.entries.borrow_mut();
        match (entries.get_mut(key), cas) {
            (Some(entry), Some(expected)) if expected != 0 && entry.1 != expected => {
                return Err(StoreError::CasMismatch);
            }
            (Some(entry), _) => *entry = (value.to_vec(), token),
            (None, _) => {
                entries.insert(key.to_owned(), (value.to_vec(), token));
            }
        }
        self.next_token.set(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_token_is_refused() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let (_, token) = store.get("k").unwrap().unwrap();
        store.set("k", b"b", Some(token)).unwrap();
        assert_eq!(
            store.set("k", b"c", Some(token)),
            Err(StoreError::CasMismatch)
        );
        assert_eq!(store.get("k").unwrap().unwrap().0, b"b");
    }

    #[test]
    fn a_missing_key_is_created_whatever_the_token_as_in_envoy() {
        let store = MemoryStore::new();
        store.set("k", b"a", Some(3)).unwrap();
        assert_eq!(store.get("k").unwrap().unwrap().0, b"a");
    }
}
