//! Per-key counters in fixed slot tables on the host's counter store.
//!
//! Memory is bounded whatever keys clients invent: each table has a fixed number of
//! slots (one store key each, created before traffic), a key hashes to one slot, and a
//! slot holds two entries. A new key takes a free or expired entry; when both entries
//! are live with other keys, the table's [`Collision`] rule decides. For lockouts and rate
//! limits the newcomer shares the busier entry's counter, which errs toward protection
//! (an attacker can never push a victim's counter out by flooding keys); for sessions the
//! least recently used entry is evicted, which errs toward letting a session live. The
//! `collisions` counter tells operators when `state.slots` is too small.
//!
//! Every change is a read, a modification and a compare-and-swap write, retried a few
//! times when another worker wrote first, as proxy-wasm shared data requires.

use crate::host::{CounterStore, StoreError};
use crate::path::little_endian;

/// A counter table; one per kind of per-key state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Failed logins by username.
    LoginUser,
    /// Failed logins by client IP.
    LoginIp,
    /// Rate-limit windows.
    Rate,
    /// Session activity.
    Session,
    /// Business-flow quotas.
    Quota,
    /// Distinct usernames failing per client (password spraying).
    Spray,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::LoginUser => "login-user",
            Table::LoginIp => "login-ip",
            Table::Rate => "rate",
            Table::Session => "session",
            Table::Quota => "quota",
            Table::Spray => "spray",
        }
    }

    /// The store key of one slot.
    pub(crate) fn key(self, namespace: &str, slot: u32) -> String {
        format!("{namespace}/{}/{slot}", self.name())
    }

    fn collision(self) -> Collision {
        match self {
            Table::Session => Collision::EvictOldest,
            _ => Collision::ShareBusiest,
        }
    }
}

/// What happens when a key finds both entries of its slot live with other keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collision {
    /// Count the newcomer in the entry with the larger `count`.
    ShareBusiest,
    /// Replace the entry with the oldest `stamp`.
    EvictOldest,
}

/// One key's state. The meaning of the fields is the control's; by convention `count`
/// is what [`Collision::ShareBusiest`] compares, `stamp` what [`Collision::EvictOldest`]
/// compares and `until` when the entry stops mattering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: u64,
    pub(crate) count: u64,
    pub(crate) stamp: u64,
    pub(crate) until: u64,
}

const ENTRY_BYTES: usize = 32;
const WAYS: usize = 2;
const MAX_ATTEMPTS: u32 = 8;

impl Entry {
    fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut words = bytes.chunks_exact(8).map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_le_bytes(word)
        });
        let entry = Entry {
            key: words.next()?,
            count: words.next()?,
            stamp: words.next()?,
            until: words.next()?,
        };
        (entry != Entry::default()).then_some(entry)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for word in [self.key, self.count, self.stamp, self.until] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
}

/// Where a table lives and how big it is.
pub(crate) struct Slots<'a> {
    pub(crate) store: &'a dyn CounterStore,
    pub(crate) namespace: &'a str,
    pub(crate) slots: u32,
}

/// The outcome of an update.
pub(crate) struct Updated {
    /// The entry as written.
    pub(crate) entry: Entry,
    /// Whether the key had to share or evict because its slot was full.
    pub(crate) collided: bool,
}

impl Slots<'_> {
    fn slot_key(&self, table: Table, key: u64) -> String {
        let slot = u32::try_from(key % u64::from(self.slots.max(1))).unwrap_or(0);
        table.key(self.namespace, slot)
    }

    /// The entry a key would update now, or `None` when it has no live entry. `live`
    /// says whether an entry still matters at `now`.
    pub(crate) fn read(
        &self,
        table: Table,
        key: u64,
        live: impl Fn(&Entry) -> bool,
    ) -> Result<Option<Entry>, StoreError> {
        let value = self.store.get(&self.slot_key(table, key))?;
        let ways = decode_ways(value.as_ref().map(|(bytes, _)| bytes.as_slice()));
        Ok(match choose(table, &ways, key, &live) {
            Choice::Own(i) | Choice::Shared(i) => ways.get(i).copied().flatten(),
            Choice::Fresh(_) | Choice::Evict(_) => None,
        })
    }

    /// Applies `change` to the key's entry (`None` when it has no live one) and writes
    /// the result with compare-and-swap, retrying when another worker wrote first.
    pub(crate) fn update(
        &self,
        table: Table,
        key: u64,
        live: impl Fn(&Entry) -> bool,
        mut change: impl FnMut(Option<Entry>) -> Entry,
    ) -> Result<Updated, StoreError> {
        let slot_key = self.slot_key(table, key);
        let mut last_error = StoreError::CasMismatch;
        for _ in 0..MAX_ATTEMPTS {
            let current = self.store.get(&slot_key)?;
            let token = current.as_ref().map(|(_, token)| *token);
            let mut ways = decode_ways(current.as_ref().map(|(bytes, _)| bytes.as_slice()));
            let choice = choose(table, &ways, key, &live);
            let (index, existing, collided) = match choice {
                Choice::Own(i) => (i, ways.get(i).copied().flatten(), false),
                Choice::Shared(i) => (i, ways.get(i).copied().flatten(), true),
                Choice::Fresh(i) => (i, None, false),
                Choice::Evict(i) => (i, None, true),
            };
            let mut entry = change(existing);
            if choice_keeps_owner(choice) {
                if let Some(owner) = existing {
                    entry.key = owner.key;
                }
            } else {
                entry.key = key;
            }
            if let Some(way) = ways.get_mut(index) {
                *way = Some(entry);
            }
            let mut bytes = Vec::with_capacity(ENTRY_BYTES * WAYS);
            for way in &ways {
                way.unwrap_or_default().encode(&mut bytes);
            }
            match self.store.set(&slot_key, &bytes, token) {
                Ok(()) => return Ok(Updated { entry, collided }),
                Err(StoreError::CasMismatch) => last_error = StoreError::CasMismatch,
                Err(other) => return Err(other),
            }
        }
        Err(last_error)
    }
}

#[derive(Debug, Clone, Copy)]
enum Choice {
    /// The key's own entry.
    Own(usize),
    /// Another key's entry, counted together (slot full).
    Shared(usize),
    /// A free or expired entry.
    Fresh(usize),
    /// Another key's live entry, replaced (slot full).
    Evict(usize),
}

fn choice_keeps_owner(choice: Choice) -> bool {
    matches!(choice, Choice::Shared(_))
}

fn decode_ways(bytes: Option<&[u8]>) -> [Option<Entry>; WAYS] {
    let mut ways = [None; WAYS];
    if let Some(bytes) = bytes {
        for (way, chunk) in ways.iter_mut().zip(bytes.chunks_exact(ENTRY_BYTES)) {
            *way = Entry::decode(chunk);
        }
    }
    ways
}

fn choose(
    table: Table,
    ways: &[Option<Entry>; WAYS],
    key: u64,
    live: &impl Fn(&Entry) -> bool,
) -> Choice {
    let live_at = |i: usize| ways.get(i).copied().flatten().filter(|e| live(e));
    if let Some(i) = (0..WAYS).find(|&i| live_at(i).is_some_and(|e| e.key == key)) {
        return Choice::Own(i);
    }
    if let Some(i) = (0..WAYS).find(|&i| live_at(i).is_none()) {
        return Choice::Fresh(i);
    }
    let pick = |better: fn(&Entry, &Entry) -> bool| {
        (1..WAYS).fold(0, |best, i| match (live_at(i), live_at(best)) {
            (Some(candidate), Some(current)) if better(&candidate, &current) => i,
            _ => best,
        })
    };
    match table.collision() {
        Collision::ShareBusiest => Choice::Shared(pick(|a, b| a.count > b.count)),
        Collision::EvictOldest => Choice::Evict(pick(|a, b| a.stamp < b.stamp)),
    }
}

/// Mixes a small number (an API, a quota) into a key's digest, so that the same client
/// counts separately under each.
pub(crate) fn salted(key: u64, salt: usize) -> u64 {
    let salt = u64::try_from(salt).unwrap_or(u64::MAX).wrapping_add(1);
    (key ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .rotate_left(17)
        .max(1)
}

/// A 64-bit digest of a key, salted by what it is, so that the same text used as a
/// username and as a session id lands in unrelated slots. Eight bytes go in per multiply:
/// FNV-1a's multiply per byte was a sixth of a request's decision (every request hashes
/// its client).
pub(crate) fn key_hash(salt: &str, key: &[u8]) -> u64 {
    let hash = absorb(absorb(0x243f_6a88_85a3_08d3, salt.as_bytes()), key);
    // A final avalanche spreads every bit over the slot index (`key % slots`).
    let hash = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    // 0 marks a free entry; no key may hash to it.
    (hash ^ (hash >> 33)).max(1)
}

/// `bytes` mixed into `hash`, a word at a time, the last word padded with zeros and
/// carrying the length: where the salt ends and the key starts counts, and so do
/// trailing zero bytes.
fn absorb(hash: u64, bytes: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |hash: u64, word: u64| (hash ^ word).wrapping_mul(MULTIPLIER).rotate_left(31);
    let (words, rest) = bytes.as_chunks::<8>();
    let hash = words
        .iter()
        .fold(hash, |hash, word| step(hash, u64::from_le_bytes(*word)));
    // The tail is gathered in a register: bytes stored one by one and read back as a
    // word stall on the way through memory.
    let tail = little_endian(rest);
    let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    step(hash, tail ^ length.rotate_right(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;

    fn slots(store: &MemoryStore, slots: u32) -> Slots<'_> {
        Slots {
            store,
            namespace: "t",
            slots,
        }
    }

    fn bump(entry: Option<Entry>) -> Entry {
        let mut e = entry.unwrap_or_default();
        e.count += 1;
        e.until = 100;
        e
    }

    #[test]
    fn a_key_counts_in_its_own_entry() {
        let store = MemoryStore::new();
        let table = slots(&store, 16);
        for _ in 0..3 {
            table
                .update(Table::Rate, 42, |e| e.until > 0, bump)
                .unwrap();
        }
        let entry = table
            .read(Table::Rate, 42, |e| e.until > 0)
            .unwrap()
            .unwrap();
        assert_eq!(entry.count, 3);
        assert_eq!(entry.key, 42);
    }

    #[test]
    fn a_third_key_in_a_full_slot_shares_the_busier_counter() {
        let store = MemoryStore::new();
        let table = slots(&store, 1);
        table.update(Table::LoginUser, 1, |_| true, bump).unwrap();
        table.update(Table::LoginUser, 2, |_| true, bump).unwrap();
        table.update(Table::LoginUser, 2, |_| true, bump).unwrap();
        let third = table.update(Table::LoginUser, 3, |_| true, bump).unwrap();
        assert!(third.collided);
        assert_eq!(third.entry.count, 3, "counted with key 2, the busier one");
        assert_eq!(third.entry.key, 2);
    }

    #[test]
    fn a_full_session_slot_evicts_the_least_recently_used_entry() {
        let store = MemoryStore::new();
        let table = slots(&store, 1);
        let stamp = |s: u64| {
            move |_: Option<Entry>| Entry {
                key: 0,
                count: 1,
                stamp: s,
                until: 1,
            }
        };
        table
            .update(Table::Session, 1, |_| true, stamp(10))
            .unwrap();
        table.update(Table::Session, 2, |_| true, stamp(5)).unwrap();
        let third = table
            .update(Table::Session, 3, |_| true, stamp(20))
            .unwrap();
        assert!(third.collided);
        assert!(table.read(Table::Session, 2, |_| true).unwrap().is_none());
        assert!(table.read(Table::Session, 1, |_| true).unwrap().is_some());
        assert_eq!(
            table
                .read(Table::Session, 3, |_| true)
                .unwrap()
                .unwrap()
                .stamp,
            20
        );
    }

    #[test]
    fn expired_entries_are_reused() {
        let store = MemoryStore::new();
        let table = slots(&store, 1);
        table.update(Table::Rate, 1, |_| true, bump).unwrap();
        table.update(Table::Rate, 2, |_| true, bump).unwrap();
        let third = table.update(Table::Rate, 3, |e| e.key != 1, bump).unwrap();
        assert!(!third.collided);
        assert_eq!(third.entry.count, 1);
    }

    /// A store whose every other write loses a race, as under two busy workers.
    struct Contended {
        inner: MemoryStore,
        writes: std::cell::Cell<u32>,
    }

    impl CounterStore for Contended {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let n = self.writes.get() + 1;
            self.writes.set(n);
            if n % 2 == 1 {
                // Someone else got there first: their write bumps the token.
                let (bytes, _) = self.inner.get(key)?.unwrap_or_default();
                self.inner.set(key, &bytes, None)?;
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_lost_race_is_retried_and_nothing_is_lost() {
        let store = Contended {
            inner: MemoryStore::new(),
            writes: Default::default(),
        };
        // As in the filter, slots exist before traffic, so every write is a real CAS.
        for slot in 0..4 {
            store
                .inner
                .set(&Table::Rate.key("t", slot), b"", None)
                .unwrap();
        }
        let table = Slots {
            store: &store,
            namespace: "t",
            slots: 4,
        };
        for _ in 0..5 {
            table.update(Table::Rate, 7, |_| true, bump).unwrap();
        }
        assert_eq!(
            table.read(Table::Rate, 7, |_| true).unwrap().unwrap().count,
            5
        );
        assert_eq!(
            store.writes.get(),
            10,
            "every update needed a second attempt"
        );
    }

    #[test]
    fn memory_is_bounded_under_a_hundred_thousand_keys() {
        let store = MemoryStore::new();
        let table = slots(&store, 256);
        for key in 0..100_000u64 {
            table
                .update(
                    Table::Rate,
                    key_hash("user", &key.to_le_bytes()),
                    |_| true,
                    bump,
                )
                .unwrap();
        }
        assert_eq!(store.len(), 256);
    }

    #[test]
    fn no_key_hashes_to_the_free_marker() {
        assert_ne!(key_hash("", b""), 0);
        assert_ne!(key_hash("user", b"alice"), key_hash("session", b"alice"));
        // Where the salt ends, trailing zeros and every byte of a long key count.
        assert_ne!(key_hash("ab", b"c"), key_hash("a", b"bc"));
        assert_ne!(key_hash("user", b"a"), key_hash("user", b"a\0"));
        let long = b"198.51.100.7-and-some-more-bytes";
        let mut seen = std::collections::HashSet::new();
        for i in 0..long.len() {
            let mut flipped = *long;
            flipped[i] ^= 1;
            assert!(seen.insert(key_hash("client_ip", &flipped)), "byte {i}");
        }
        assert!(seen.insert(key_hash("client_ip", long)));
    }
}
