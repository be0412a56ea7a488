//! An index of transactions by a key that lives in their entries: each entry here is the key's
//! hash and the transaction's handle (16 bytes), and a hash match is confirmed by the caller
//! against the entry in its slab. Several transactions may share a key's hash (an INVITE and
//! its CANCEL share a branch; two keys may collide).
//!
//! Why not a map from owned keys: the keys (branches, Call-IDs) are strings from the wire, so
//! a map would hold a second copy of each, and growing it rehashes every key. A rehash reads
//! every key string (a cache miss each) and runs SipHash over it, all within one message's
//! turn: at 1,000 calls/s the indexes of the transactions kept for their 32 s (RFC 3261 Timers
//! J and L) reach ~60,000 keys, and each doubling stalled the signaling turn for milliseconds
//! (`bench/results/signaling-growth-2026-12-05.md`).
//!
//! Why it grows in steps: even moving 16-byte entries is ~1 ms per doubling at 100,000
//! entries. When the table is full, a table twice its size takes the new entries, and every
//! insert moves [`MOVES_PER_INSERT`] of the old table's buckets over, so no turn pays for more
//! than that; lookups and removals look in both until the old one is empty (then freed). The
//! old table is empty long before the new one fills: it has ~8/7 of its capacity in buckets,
//! and the new one takes as many entries again before it is full.

use hashbrown::HashTable;

use super::transactions::TxId;

/// Buckets of the old table moved per insert while a growth is under way.
const MOVES_PER_INSERT: usize = 8;

/// Transactions by the hash of a key their entries hold.
#[derive(Debug, Default)]
pub(super) struct TxIndex {
    table: HashTable<Indexed>,
    /// The table before the last growth, emptied [`MOVES_PER_INSERT`] buckets per insert.
    old: HashTable<Indexed>,
    /// The next bucket of `old` to move.
    cursor: usize,
}

/// One entry: the hash is kept so that the table grows without the keys.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    hash: u64,
    tx: TxId,
}

impl TxIndex {
    /// Adds `tx` under `hash` (beside any others there).
    pub(super) fn insert(&mut self, hash: u64, tx: TxId) {
        self.move_some(MOVES_PER_INSERT);
        if self.table.len() == self.table.capacity() {
            // Full: the next insert would rehash everything at once. (A growth still under
            // way cannot be: see the module docs; finishing it keeps that true regardless.)
            self.move_some(usize::MAX);
            let bigger = HashTable::with_capacity((self.table.capacity() * 2).max(16));
            self.old = std::mem::replace(&mut self.table, bigger);
            self.cursor = 0;
        }
        self.table
            .insert_unique(hash, Indexed { hash, tx }, |e| e.hash);
    }

    /// Moves up to `buckets` of the old table's buckets into the current one.
    fn move_some(&mut self, buckets: usize) {
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
                self.table.insert_unique(e.hash, e, |e| e.hash);
            }
            self.cursor += 1;
        }
        if self.old.is_empty() {
            self.old = HashTable::new();
            self.cursor = 0;
        }
    }

    /// Adds `tx` under `hash`, replacing the transaction there that `same` accepts (as a map
    /// insert replaces its key's value).
    pub(super) fn replace(&mut self, hash: u64, tx: TxId, mut same: impl FnMut(TxId) -> bool) {
        let mut is = |e: &Indexed| e.hash == hash && same(e.tx);
        if let Some(e) = self.table.find_mut(hash, &mut is) {
            e.tx = tx;
        } else if let Some(e) = self.old.find_mut(hash, is) {
            e.tx = tx;
        } else {
            self.insert(hash, tx);
        }
    }

    /// The first transaction under `hash` that `is` accepts (the caller compares the key).
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(TxId) -> bool) -> Option<TxId> {
        self.table
            .iter_hash(hash)
            .chain(self.old.iter_hash(hash))
            .filter(|e| e.hash == hash)
            .map(|e| e.tx)
            .find(|t| is(*t))
    }

    /// Removes `tx`'s entry under `hash`, if it has one.
    pub(super) fn remove(&mut self, hash: u64, tx: TxId) {
        let is = |e: &Indexed| e.hash == hash && e.tx == tx;
        if let Ok(found) = self.table.find_entry(hash, is) {
            found.remove();
        } else if let Ok(found) = self.old.find_entry(hash, is) {
            found.remove();
        }
    }

    /// Bytes of the tables (slots and control bytes), for the size tests.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        let table = |t: &HashTable<Indexed>| match t.num_buckets() {
            0 => 0,
            n => n * (size_of::<Indexed>() + 1) + 16,
        };
        table(&self.table) + table(&self.old)
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Indexed, MOVES_PER_INSERT, TxIndex};
    use crate::b2bua::{slab::Slab, transactions::TxId};

    fn ids(n: usize) -> Vec<TxId> {
        let mut slab = Slab::default();
        (0..n).map(|i| TxId::of(slab.insert(i))).collect()
    }

    #[test]
    fn an_entry_is_a_hash_and_a_handle() {
        assert!(std::mem::size_of::<Indexed>() <= 16);
    }

    #[test]
    fn transactions_sharing_a_hash_are_told_apart_by_the_caller() {
        let t = ids(3);
        let mut index = TxIndex::default();
        index.insert(7, t[0]);
        index.insert(7, t[1]);
        index.insert(9, t[2]);
        assert_eq!(index.find(7, |x| x == t[1]), Some(t[1]));
        assert_eq!(index.find(7, |x| x == t[0]), Some(t[0]));
        // Another hash is never offered, even where the caller would accept it.
        assert_eq!(index.find(7, |x| x == t[2]), None);
        assert_eq!(index.find(8, |_| true), None);
        index.remove(7, t[0]);
        assert_eq!(index.find(7, |_| true), Some(t[1]));
        // Removing what is not there changes nothing.
        index.remove(9, t[1]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn replace_keeps_one_entry_per_key() {
        let t = ids(3);
        let mut index = TxIndex::default();
        index.replace(5, t[0], |_| false);
        index.replace(5, t[1], |x| x == t[0]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.find(5, |_| true), Some(t[1]));
        // Not the same key: a second entry beside it.
        index.replace(5, t[2], |_| false);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_growth_moves_a_few_buckets_per_insert_and_loses_nothing() {
        let t = ids(20_000);
        let mut index = TxIndex::default();
        let mut growths = 0;
        for (i, tx) in t.iter().enumerate() {
            let (room, old) = (index.table.capacity(), index.old.len());
            index.insert((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), *tx);
            if index.table.capacity() != room {
                // A growth: the full table stays as it was, to be moved over later.
                growths += 1;
                assert_eq!(index.old.len(), room, "insert {i}: nothing moved at once");
            } else if old > 0 {
                // During one: at most the buckets moved per insert went over.
                assert!(old - index.old.len() <= MOVES_PER_INSERT, "insert {i}");
            }
            // The current table never grows by itself (that would rehash it all).
            assert!(index.table.len() <= index.table.capacity());
            // Mid-growth, entries in either table are found and removed.
            if i % 997 == 0 {
                let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                assert_eq!(index.find(h, |x| x == *tx), Some(*tx));
            }
        }
        assert!(growths >= 10, "{growths} growths");
        for (i, tx) in t.iter().enumerate() {
            let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(index.find(h, |x| x == *tx), Some(*tx), "entry {i}");
            index.remove(h, *tx);
        }
        assert_eq!(index.len(), 0);
    }
}
