//! The dialog index: the call and side that a (Call-ID, our tag) pair names, for in-dialog
//! requests and 2xx ACKs. It keeps no copy of either string: an entry is the pair's hash with
//! the call and side, and a lookup confirms a hash match against the call's leg, which holds
//! the strings anyway (issue 16: two owned pairs a call were ~300 bytes of ~10 KB; the lookups
//! no longer copy the request's pair either).
//!
//! The hash is `std`'s keyed SipHash (`RandomState`): the pair comes from the wire, so a peer
//! must not be able to aim many of them at one bucket.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::{
    call::{Call, CallId},
    id_map::IdMap,
};
use crate::net::Side;

/// The index. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Dialogs {
    hasher: RandomState,
    table: HashTable<Entry>,
}

/// One dialog: its pair's hash (kept for the table to grow without the strings) and where
/// the pair lives.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    call: CallId,
    side: Side,
}

impl Dialogs {
    /// Indexes `call`'s `side` leg, whose Call-ID and our tag are `call_id` and `tag`.
    pub(super) fn insert(&mut self, call_id: &str, tag: &str, call: CallId, side: Side) {
        let hash = self.hash(call_id, tag);
        self.table
            .insert_unique(hash, Entry { hash, call, side }, |e| e.hash);
    }

    /// The call and side whose leg has Call-ID `call_id` and our tag `tag`, among `calls`.
    pub(super) fn get(
        &self,
        call_id: &str,
        tag: &str,
        calls: &IdMap<CallId, Box<Call>>,
    ) -> Option<(CallId, Side)> {
        let hash = self.hash(call_id, tag);
        self.table
            .find(hash, |e| {
                e.hash == hash
                    && calls.get(&e.call).is_some_and(|c| {
                        let leg = c.leg(e.side);
                        leg.call_id == call_id && leg.local_tag() == tag
                    })
            })
            .map(|e| (e.call, e.side))
    }

    /// Forgets `call`'s `side` leg, indexed under `call_id` and `tag` (the call itself may be
    /// gone already: the entry is found by its call and side).
    pub(super) fn remove(&mut self, call_id: &str, tag: &str, call: CallId, side: Side) {
        let hash = self.hash(call_id, tag);
        if let Ok(e) = self
            .table
            .find_entry(hash, |e| e.call == call && e.side == side)
        {
            e.remove();
        }
    }

    /// Dialogs indexed.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    fn hash(&self, call_id: &str, tag: &str) -> u64 {
        self.hasher.hash_one((call_id, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two entries a concurrent call: they must stay small.
    #[test]
    fn an_entry_is_a_hash_and_a_handle() {
        assert!(std::mem::size_of::<Entry>() <= 24);
    }
}
