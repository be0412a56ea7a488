//! The handle of a transaction in the B2BUA's transaction table (`transactions.rs`), on its
//! own so that the timers, the index and the caps name transactions without depending on the
//! table.

use super::slab::Key;

/// A transaction in the table (server and client transactions live in separate slabs; a
/// handle is only ever looked up in the one it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TxId(pub(super) Key);

impl TxId {
    /// The handle of slab key `key` (the index's tests make their own).
    #[cfg(test)]
    pub(super) fn of(key: Key) -> Self {
        Self(key)
    }
}
