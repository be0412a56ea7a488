//! Calls in progress counted across every shard's B2BUA (`crate::shard`), so a trunk's
//! `max_calls` and the global `max_calls` hold for the whole SBC and not per shard.
//!
//! The counts are atomics behind one `Arc` that every shard's B2BUA holds: the per-message
//! path takes no lock. Admission takes a place with a compare-and-increment (never past the
//! limit, whatever the other shards do at the same moment) and holds it while the new call is
//! set up; the call then counts itself like any call (`count_call`), and the held place is
//! given back at the end of that message (`release_held`), so two shards can never both
//! take the last place. A trunk's count is looked up by the trunk's name once per
//! configuration (behind a mutex, off the per-message path): shards that apply a reload at
//! slightly different times still count a kept trunk's calls in the same place.
//!
//! One B2BUA alone gets a private `SharedCalls`; then the counts equal its own.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use super::{B2bua, TrunkId};

/// Call counts shared by a set of B2BUAs (clone it into each).
#[derive(Debug, Clone, Default)]
pub struct SharedCalls(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    total: Arc<AtomicU32>,
    /// Trunk name → its count. Entries are never removed (a handful of trunk names).
    trunks: Mutex<HashMap<String, Arc<AtomicU32>>>,
}

impl SharedCalls {
    /// Calls in progress in every B2BUA sharing these counts.
    pub fn total(&self) -> u32 {
        self.0.total.load(Ordering::Acquire)
    }

    /// Calls in progress on the trunk named `name`, in every B2BUA sharing these counts.
    pub fn trunk(&self, name: &str) -> u32 {
        self.slot(name).load(Ordering::Acquire)
    }

    /// The count of trunk `name` (configuration time only: it takes the mutex).
    fn slot(&self, name: &str) -> Arc<AtomicU32> {
        // A poisoned mutex only means another shard panicked mid-insert; the map is still whole.
        let mut trunks = self
            .0
            .trunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(trunks.entry(name.to_owned()).or_default())
    }

    /// Every configured trunk's count, in configuration order.
    pub(super) fn slots<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<Arc<AtomicU32>> {
        names.map(|n| self.slot(n)).collect()
    }
}

/// Takes one of at most `max` places in `count`; false when all are taken.
fn try_take(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then(|| n + 1)
        })
        .is_ok()
}

fn add(count: &AtomicU32) {
    count.fetch_add(1, Ordering::AcqRel);
}

fn sub(count: &AtomicU32) {
    // Never below zero, even if a bug gave back more than was taken.
    let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

impl B2bua {
    /// Counts calls together with every other B2BUA given the same `shared` (the signaling
    /// shards of one process). Calls already in progress move to the shared counts.
    pub fn share_calls(&mut self, shared: SharedCalls) {
        let calls: Vec<Option<TrunkId>> = self.calls.values().map(|c| c.trunk).collect();
        for &t in &calls {
            self.uncount_shared(t);
        }
        self.trunk_slots = shared.slots(self.cfg.trunks.iter().map(|t| t.name.as_str()));
        self.shared = shared;
        for &t in &calls {
            self.count_shared(t);
        }
    }

    /// The counts this B2BUA shares.
    pub fn shared_calls(&self) -> &SharedCalls {
        &self.shared
    }

    /// Global concurrency admission: takes a place under `max_calls` (held until
    /// [`B2bua::release_held`]); false when the SBC is full.
    pub(super) fn take_call_place(&mut self) -> bool {
        let Some(max) = self.cfg.limits.max_calls else {
            return true;
        };
        let total = Arc::clone(&self.shared.0.total);
        self.take_held(total, max)
    }

    /// Trunk concurrency admission: takes a place under the trunk's `max_calls`.
    pub(super) fn take_trunk_place(&mut self, t: TrunkId, max: Option<u32>) -> bool {
        let (Some(max), Some(slot)) = (max, self.trunk_slots.get(t.index())) else {
            return true;
        };
        let slot = Arc::clone(slot);
        self.take_held(slot, max)
    }

    fn take_held(&mut self, count: Arc<AtomicU32>, max: u32) -> bool {
        if !try_take(&count, max) {
            return false;
        }
        self.held.push(count);
        true
    }

    /// Gives back the trunk place the last admission step took (its CPS refused the call).
    pub(super) fn release_trunk_place(&mut self, t: TrunkId) {
        if let Some(slot) = self.trunk_slots.get(t.index())
            && let Some(pos) = self.held.iter().rposition(|h| Arc::ptr_eq(h, slot))
        {
            sub(&self.held.swap_remove(pos));
        }
    }

    /// Gives back every place admission held (the call, if set up, counts itself by now).
    pub(super) fn release_held(&mut self) {
        for h in self.held.drain(..) {
            sub(&h);
        }
    }

    /// A call on `trunk` starts (or is restored): counted locally and in the shared counts.
    pub(super) fn count_call(&mut self, trunk: Option<TrunkId>) {
        if let Some(n) = trunk.and_then(|t| self.trunk_active.get_mut(t.index())) {
            *n += 1;
        }
        self.count_shared(trunk);
    }

    /// A call on `trunk` ended.
    pub(super) fn uncount_call(&mut self, trunk: Option<TrunkId>) {
        if let Some(n) = trunk.and_then(|t| self.trunk_active.get_mut(t.index())) {
            *n = n.saturating_sub(1);
        }
        self.uncount_shared(trunk);
    }

    /// A call failed over from trunk `from` to `to`.
    pub(super) fn move_call(&mut self, from: Option<TrunkId>, to: TrunkId) {
        if from == Some(to) {
            return;
        }
        if let Some(n) = from.and_then(|f| self.trunk_active.get_mut(f.index())) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.trunk_active.get_mut(to.index()) {
            *n += 1;
        }
        if let Some(slot) = from.and_then(|f| self.trunk_slots.get(f.index())) {
            sub(slot);
        }
        if let Some(slot) = self.trunk_slots.get(to.index()) {
            add(slot);
        }
    }

    fn count_shared(&self, trunk: Option<TrunkId>) {
        add(&self.shared.0.total);
        if let Some(slot) = trunk.and_then(|t| self.trunk_slots.get(t.index())) {
            add(slot);
        }
    }

    fn uncount_shared(&self, trunk: Option<TrunkId>) {
        sub(&self.shared.0.total);
        if let Some(slot) = trunk.and_then(|t| self.trunk_slots.get(t.index())) {
            sub(slot);
        }
    }

    /// Before a new configuration: the calls leave their trunks' shared counts (the total
    /// stays); [`B2bua::recount_shared_trunks`] puts them back under the new trunks.
    pub(super) fn uncount_shared_trunks(&self) {
        for c in self.calls.values() {
            if let Some(slot) = c.trunk.and_then(|t| self.trunk_slots.get(t.index())) {
                sub(slot);
            }
        }
    }

    /// After a new configuration: the trunks' counts by name, and the calls back in them.
    pub(super) fn recount_shared_trunks(&mut self) {
        self.trunk_slots = self
            .shared
            .slots(self.cfg.trunks.iter().map(|t| t.name.as_str()));
        for c in self.calls.values() {
            if let Some(slot) = c.trunk.and_then(|t| self.trunk_slots.get(t.index())) {
                add(slot);
            }
        }
    }
}
