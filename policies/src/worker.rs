//! What one worker remembers between requests, so that most requests decide without
//! touching the shared counter store: rate-limit hits reserved in advance, and the
//! sessions this worker has seen.
//!
//! In Envoy a shared-data read that finds a value costs about as much as reading the whole
//! request header map (the host calls back into the module to allocate the copy), so a
//! per-request read and write for each counter was most of stakeguard's cost. A policy is
//! compiled once per worker VM, so the tables live in the [`crate::Policy`] and every worker
//! has its own.
//!
//! Both tables are direct-mapped with a fixed number of entries: memory is bounded
//! whatever keys clients send, and a key that loses its entry to another key is simply
//! read from the shared store again (what a reservation had not used is given back there
//! first, see [`crate::engine`]'s rate limit).

use std::cell::RefCell;

use crate::state::Entry;

/// Entries per table per worker: 1,024 × 40 bytes for reservations, × 32 for sessions.
pub(crate) const ENTRIES: usize = 1024;

/// Rate-limit hits a worker took from the shared counter and has not used yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// The key's digest (0: a free entry).
    pub(crate) key: u64,
    /// The window the hits belong to, and its length (the table serves every API).
    pub(crate) window_start: u64,
    pub(crate) per_ms: u64,
    /// Hits left to hand out without asking the store.
    pub(crate) left: u64,
    /// Until when the key is known to be over its limit (requests are refused locally);
    /// never past the end of the window it was refused in.
    pub(crate) refused_until: u64,
}

/// A direct-mapped table of `T`, indexed by key digest.
#[derive(Debug)]
pub(crate) struct Table<T> {
    entries: Vec<T>,
}

impl<T: Copy + Default> Table<T> {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The entry `key` maps to (allocated on first use, so a policy without the control
    /// costs nothing).
    pub(crate) fn slot(&mut self, key: u64) -> Option<&mut T> {
        if self.entries.is_empty() {
            self.entries = vec![T::default(); ENTRIES];
        }
        let index = usize::try_from(key % ENTRIES as u64).unwrap_or(0);
        self.entries.get_mut(index)
    }
}

/// The tables of one worker.
#[derive(Debug)]
pub(crate) struct WorkerState {
    pub(crate) reservations: RefCell<Table<Reservation>>,
    /// Sessions as the store last showed them to this worker (or this worker wrote them).
    pub(crate) sessions: RefCell<Table<Entry>>,
}

impl Default for WorkerState {
    fn default() -> Self {
        Self {
            reservations: RefCell::new(Table::new()),
            sessions: RefCell::new(Table::new()),
        }
    }
}

/// How many hits a worker reserves when the key's window has `remaining` left: an eighth
/// of it, at least one and at most 64. Hits reserved by one worker are refused to the
/// others until they are used or given back, so the share shrinks as the budget does and
/// the last hits of a window are taken one at a time.
pub(crate) fn reservation_size(remaining: u64) -> u64 {
    (remaining / 8).clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_an_eighth_of_what_is_left_within_bounds() {
        assert_eq!(reservation_size(0), 1);
        assert_eq!(reservation_size(7), 1);
        assert_eq!(reservation_size(60), 7);
        assert_eq!(reservation_size(1_000_000), 64);
    }

    #[test]
    fn a_table_maps_every_key_to_one_of_its_entries() {
        let mut table: Table<Reservation> = Table::new();
        for key in [0, 1, 1023, 1024, u64::MAX] {
            assert!(table.slot(key).is_some());
        }
        table.slot(5).unwrap().left = 3;
        assert_eq!(
            table.slot(5 + ENTRIES as u64).unwrap().left,
            3,
            "same entry"
        );
    }
}
