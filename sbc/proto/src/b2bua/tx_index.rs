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
//! It grows in steps (`step_table.rs`): no insert moves more than a few buckets.

use super::{step_table::StepTable, tx_id::TxId};

/// Transactions by the hash of a key their entries hold.
#[derive(Debug, Default)]
pub(super) struct TxIndex {
    table: StepTable<Indexed>,
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
        self.table.insert(hash, Indexed { hash, tx }, |e| e.hash);
    }

    /// Adds `tx` under `hash`, replacing the transaction there that `same` accepts (as a map
    /// insert replaces its key's value).
    pub(super) fn replace(&mut self, hash: u64, tx: TxId, mut same: impl FnMut(TxId) -> bool) {
        match self.table.find_mut(hash, |e| e.hash == hash && same(e.tx)) {
            Some(e) => e.tx = tx,
            None => self.insert(hash, tx),
        }
    }

    /// The first transaction under `hash` that `is` accepts (the caller compares the key).
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(TxId) -> bool) -> Option<TxId> {
        self.table
            .iter_hash(hash)
            .filter(|e| e.hash == hash)
            .map(|e| e.tx)
            .find(|t| is(*t))
    }

    /// Removes `tx`'s entry under `hash`, if it has one.
    pub(super) fn remove(&mut self, hash: u64, tx: TxId) {
        self.table.remove(hash, |e| e.hash == hash && e.tx == tx);
    }

    /// Bytes of the tables (slots and control bytes), for the size tests.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Indexed, TxIndex};
    use crate::b2bua::{slab::Slab, tx_id::TxId};

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
}
