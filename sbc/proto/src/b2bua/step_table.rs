//! A hash table that grows in steps, and a map keyed by the B2BUA's own handles built on it.
//!
//! A hash table that is full doubles, and the insert that fills it moves every entry into the
//! new one: within one message's turn, ~1 ms per doubling at 100,000 entries even when the
//! entries hash cheaply. The per-transaction tables grow all through the first 32 s of any new
//! load (RFC 3261 keeps transactions that long after their final response), so those turns
//! stalled the signaling shard (`bench/results/signaling-growth-2026-12-05.md`).
//!
//! Here a full table is replaced by one twice its size that takes the new entries, and every
//! insert moves [`MOVES_PER_INSERT`] of the old table's buckets over; lookups and removals
//! look in both until the old one is empty (then freed). The old table is empty long before
//! the new one fills: it has ~8/7 of its capacity in buckets, and the new one takes as many
//! entries again before it is full.

use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use hashbrown::HashTable;

use super::id_map::IdHasher;

/// Buckets of the old table moved per insert while a growth is under way.
pub(super) const MOVES_PER_INSERT: usize = 8;

/// Entries of `T`, found by a hash the caller computes (`hasher` gives an entry's).
#[derive(Debug)]
pub(super) struct StepTable<T> {
    table: HashTable<T>,
    /// The table before the last growth, emptied [`MOVES_PER_INSERT`] buckets per insert.
    old: HashTable<T>,
    /// The next bucket of `old` to move.
    cursor: usize,
}

impl<T> Default for StepTable<T> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            old: HashTable::new(),
            cursor: 0,
        }
    }
}

impl<T> StepTable<T> {
    /// Adds `value` under `hash` (beside any others there).
    pub(super) fn insert(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        self.move_some(MOVES_PER_INSERT, &hasher);
        if self.table.len() == self.table.capacity() {
            // Full: the next insert would move everything at once. (A growth still under way
            // cannot be: see the module docs; finishing it keeps that true regardless.)
            self.move_some(usize::MAX, &hasher);
            let bigger = HashTable::with_capacity((self.table.capacity() * 2).max(16));
            self.old = std::mem::replace(&mut self.table, bigger);
            self.cursor = 0;
        }
        self.table.insert_unique(hash, value, hasher);
    }

    /// Moves up to `buckets` of the old table's buckets into the current one.
    fn move_some(&mut self, buckets: usize, hasher: &impl Fn(&T) -> u64) {
        if self.old.is_empty() {
            return;
        }
        let end = self
            .old
            .num_buckets()
            .min(self.cursor.saturating_add(buckets));
        while self.cursor < end {
            if let Ok(found) = self.old.get_bucket_entry(self.cursor) {
                let (e, _) = found.remove();
                self.table.insert_unique(hasher(&e), e, hasher);
            }
            self.cursor += 1;
        }
        if self.old.is_empty() {
            self.old = HashTable::new();
            self.cursor = 0;
        }
    }

    /// The entries under `hash` (the caller compares whatever else it must).
    pub(super) fn iter_hash(&self, hash: u64) -> impl Iterator<Item = &T> {
        self.table.iter_hash(hash).chain(self.old.iter_hash(hash))
    }

    /// The first entry under `hash` that `is` accepts.
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<&T> {
        self.iter_hash(hash).find(|e| is(e))
    }

    /// The first entry under `hash` that `is` accepts, mutably.
    pub(super) fn find_mut(&mut self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<&mut T> {
        match self.table.find_mut(hash, &mut is) {
            Some(e) => Some(e),
            None => self.old.find_mut(hash, is),
        }
    }

    /// Takes out the first entry under `hash` that `is` accepts.
    pub(super) fn remove(&mut self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<T> {
        if let Ok(found) = self.table.find_entry(hash, &mut is) {
            return Some(found.remove().0);
        }
        self.old
            .find_entry(hash, is)
            .ok()
            .map(|found| found.remove().0)
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }

    /// Bytes of the tables (slots and control bytes), for the size tests.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        let table = |t: &HashTable<T>| match t.num_buckets() {
            0 => 0,
            n => n * (size_of::<T>() + 1) + 16,
        };
        table(&self.table) + table(&self.old)
    }

    /// Entries the current table holds before it grows, and entries left in the old one.
    #[cfg(test)]
    pub(super) fn room(&self) -> (usize, usize) {
        (self.table.capacity(), self.old.len())
    }
}

/// A map keyed by an internal handle (never by text from the wire: the hash is
/// [`IdHasher`]'s, see `id_map.rs`), growing in steps.
#[derive(Debug)]
pub(super) struct IdStepMap<K, V> {
    entries: StepTable<(K, V)>,
}

impl<K, V> Default for IdStepMap<K, V> {
    fn default() -> Self {
        Self {
            entries: StepTable::default(),
        }
    }
}

fn id_hash<K: Hash>(key: &K) -> u64 {
    BuildHasherDefault::<IdHasher>::default().hash_one(key)
}

impl<K: Hash + Eq, V> IdStepMap<K, V> {
    /// Sets `key` to `value`; returns the value it had.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = id_hash(&key);
        if let Some(e) = self.entries.find_mut(hash, |e| e.0 == key) {
            return Some(std::mem::replace(&mut e.1, value));
        }
        self.entries.insert(hash, (key, value), |e| id_hash(&e.0));
        None
    }

    /// `key`'s value.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .find(id_hash(key), |e| e.0 == *key)
            .map(|e| &e.1)
    }

    /// Takes `key`'s value out.
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        self.entries
            .remove(id_hash(key), |e| e.0 == *key)
            .map(|e| e.1)
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{IdStepMap, MOVES_PER_INSERT, StepTable};

    #[test]
    fn a_growth_moves_a_few_buckets_per_insert_and_loses_nothing() {
        let hash = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut t = StepTable::default();
        let mut growths = 0;
        for i in 0..20_000u64 {
            let (room, old) = t.room();
            t.insert(hash(i), i, |e| hash(*e));
            let (now_room, now_old) = t.room();
            if now_room != room {
                // A growth: the full table stays as it was, to be moved over later.
                growths += 1;
                assert_eq!(now_old, room, "insert {i}: nothing moved at once");
            } else if old > 0 {
                // During one: at most the buckets moved per insert went over.
                assert!(old - now_old <= MOVES_PER_INSERT, "insert {i}");
            }
            if i % 997 == 0 {
                assert_eq!(t.find(hash(i), |e| *e == i), Some(&i));
            }
        }
        assert!(growths >= 10, "{growths} growths");
        for i in 0..20_000u64 {
            assert_eq!(t.remove(hash(i), |e| *e == i), Some(i), "entry {i}");
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_map_keeps_one_value_per_key_across_growths() {
        let mut m = IdStepMap::default();
        for i in 0..5_000u32 {
            assert_eq!(m.insert(i, i), None);
        }
        for i in 0..5_000u32 {
            assert_eq!(m.insert(i, i + 1), Some(i), "replaced, not added");
        }
        assert_eq!(m.len(), 5_000);
        assert_eq!(m.get(&4_999), Some(&5_000));
        for i in 0..5_000u32 {
            assert_eq!(m.remove(&i), Some(i + 1));
        }
        assert_eq!(m.len(), 0);
        assert_eq!(m.remove(&1), None);
    }
}
