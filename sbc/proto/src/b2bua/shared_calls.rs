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
//! The CPS limits too, once shared: each is one atomic "theoretical arrival time" (the
//! generic cell rate algorithm, equivalent to the token bucket of `limit.rs` with a burst of
//! one second's worth) that every shard's admission advances with a compare-and-swap. A B2BUA
//! alone keeps its own token buckets, as before shards.
//!
//! One B2BUA alone gets a private `SharedCalls`; then the counts equal its own.
//!
//! Across SBC nodes (`[state.cluster]`, docs/scaling.md) a trunk's `max_calls` is split by
//! grants from Redis: the driver's cluster task reads each trunk's calls and limit
//! ([`SharedCalls::trunk_shares`]) and caps this node's calls on the trunk at its grant
//! ([`SharedCalls::set_trunk_cap`]). Admission only reads the cap (one atomic load): the
//! per-message path never waits for Redis.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use super::{B2bua, TrunkId};
use crate::limit::CallLimits;

/// Call counts shared by a set of B2BUAs (clone it into each).
#[derive(Debug, Clone, Default)]
pub struct SharedCalls(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Every call, and the global CPS limit.
    total: Arc<Scope>,
    /// Trunk name → its count. Entries are never removed (a handful of trunk names).
    trunks: Mutex<HashMap<String, Arc<Scope>>>,
    /// The origin of the rate limits' clock: the first `now` any shard admitted a call at.
    epoch: OnceLock<Instant>,
}

/// The shared state of one admission scope (a trunk, or the whole SBC).
#[derive(Debug)]
pub(super) struct Scope {
    calls: AtomicU32,
    /// The configured `max_calls` (`u32::MAX`: none), for the cluster task.
    limit: AtomicU32,
    /// This node's cluster grant (`u32::MAX`: no cap): admission also stays below it.
    cap: AtomicU32,
    /// The configured `max_cps` (`u32::MAX`: none), for the cluster task.
    cps_limit: AtomicU32,
    /// New calls this node may still admit in the cluster's current second (`u32::MAX`: no
    /// cluster rate); each admitted call takes one.
    cps_left: AtomicU32,
    /// The calls-per-second limit the arrival time below is for.
    rate: AtomicU32,
    /// When the next call conforms at the earliest, ns after the epoch, plus one interval
    /// per call taken since (GCRA's theoretical arrival time).
    tat: AtomicU64,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            calls: AtomicU32::new(0),
            limit: AtomicU32::new(u32::MAX),
            cap: AtomicU32::new(u32::MAX),
            cps_limit: AtomicU32::new(u32::MAX),
            cps_left: AtomicU32::new(u32::MAX),
            rate: AtomicU32::new(0),
            tat: AtomicU64::new(0),
        }
    }
}

/// One trunk's calls on this node and its limit, as the cluster task reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkShare {
    /// The trunk's name (the cluster counts by name).
    pub name: String,
    /// Calls in progress on the trunk here (every shard).
    pub calls: u32,
    /// The trunk's configured `max_calls`; `None`: unlimited (nothing to share).
    pub max_calls: Option<u32>,
    /// The trunk's configured `max_cps`; `None`: unlimited.
    pub max_cps: Option<u32>,
    /// Calls this node may still admit in the cluster's current second (`None`: no
    /// cluster rate set).
    pub cps_left: Option<u32>,
}

impl Scope {
    /// Takes a CPS token at `at` (ns after the epoch) under `rate` calls per second with a
    /// burst of `rate` (`limit::CallLimits::bucket`); false when over the rate.
    fn try_rate(&self, at: u64, rate: u32) -> bool {
        // A changed limit starts afresh, as the B2BUA's own bucket does.
        if self.rate.swap(rate, Ordering::AcqRel) != rate {
            self.tat.store(0, Ordering::Release);
        }
        // Rate 0: one call, then never again (the token bucket's "never refills").
        let interval = 1_000_000_000u64
            .checked_div(u64::from(rate))
            .unwrap_or(u64::MAX / 4);
        let tolerance = interval.saturating_mul(u64::from(rate.saturating_sub(1)));
        self.tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                (tat.saturating_sub(tolerance) <= at).then(|| tat.max(at).saturating_add(interval))
            })
            .is_ok()
    }
}

impl SharedCalls {
    /// Calls in progress in every B2BUA sharing these counts.
    pub fn total(&self) -> u32 {
        self.0.total.calls.load(Ordering::Acquire)
    }

    /// Calls in progress on the trunk named `name`, in every B2BUA sharing these counts.
    pub fn trunk(&self, name: &str) -> u32 {
        self.slot(name).calls.load(Ordering::Acquire)
    }

    /// `now` on the rate limits' clock.
    fn at(&self, now: Instant) -> u64 {
        let epoch = *self.0.epoch.get_or_init(|| now);
        u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The scope of trunk `name` (configuration time only: it takes the mutex).
    fn slot(&self, name: &str) -> Arc<Scope> {
        // A poisoned mutex only means another shard panicked mid-insert; the map is still whole.
        let mut trunks = self
            .0
            .trunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(trunks.entry(name.to_owned()).or_default())
    }

    /// Every configured trunk's count (name, `max_calls`), in configuration order; the
    /// limits are recorded for the cluster task.
    pub(super) fn slots<'a>(
        &self,
        trunks: impl Iterator<Item = (&'a str, CallLimits)>,
    ) -> Vec<Arc<Scope>> {
        trunks
            .map(|(n, l)| {
                let s = self.slot(n);
                s.limit
                    .store(l.max_calls.unwrap_or(u32::MAX), Ordering::Release);
                s.cps_limit
                    .store(l.max_cps.unwrap_or(u32::MAX), Ordering::Release);
                s
            })
            .collect()
    }

    /// Every trunk ever configured: its calls here and its limit (takes the mutex: for the
    /// cluster task, a few times a second, never for a message).
    pub fn trunk_shares(&self) -> Vec<TrunkShare> {
        let trunks = self
            .0
            .trunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        trunks
            .iter()
            .map(|(name, s)| TrunkShare {
                name: name.clone(),
                calls: s.calls.load(Ordering::Acquire),
                max_calls: Some(s.limit.load(Ordering::Acquire)).filter(|&m| m != u32::MAX),
                max_cps: Some(s.cps_limit.load(Ordering::Acquire)).filter(|&m| m != u32::MAX),
                cps_left: Some(s.cps_left.load(Ordering::Acquire)).filter(|&m| m != u32::MAX),
            })
            .collect()
    }

    /// Sets the new calls this node may admit on trunk `name` until the next grant (`None`:
    /// no cluster rate, only the trunk's own `max_cps`).
    pub fn set_trunk_cps_left(&self, name: &str, left: Option<u32>) {
        self.slot(name)
            .cps_left
            .store(left.unwrap_or(u32::MAX), Ordering::Release);
    }

    /// Adds `more` to what this node may still admit on trunk `name` in the cluster's current
    /// second (while admission takes from it); no-op while no cluster rate is set.
    pub fn add_trunk_cps_left(&self, name: &str, more: u32) {
        let _ = self
            .slot(name)
            .cps_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != u32::MAX).then(|| n.saturating_add(more).min(u32::MAX - 1))
            });
    }

    /// Caps this node's calls on trunk `name` at `cap` (the cluster's grant; `None`: only
    /// the trunk's own `max_calls`). A cap below the calls in progress ends none of them; it
    /// only refuses new ones until they drop below it.
    pub fn set_trunk_cap(&self, name: &str, cap: Option<u32>) {
        self.slot(name)
            .cap
            .store(cap.unwrap_or(u32::MAX), Ordering::Release);
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
        self.trunk_slots = shared.slots(self.trunk_limits());
        self.shared = shared;
        self.shared_rates = true;
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

    /// Global CPS admission once shared; `None` while this B2BUA uses its own bucket.
    pub(super) fn take_shared_rate(&self, now: Instant) -> Option<bool> {
        if !self.shared_rates {
            return None;
        }
        Some(self.cfg.limits.max_cps.is_none_or(|rate| {
            let at = self.shared.at(now);
            self.shared.0.total.try_rate(at, rate)
        }))
    }

    /// Trunk CPS admission once shared; `None` while this B2BUA uses its own buckets.
    pub(super) fn take_shared_trunk_rate(
        &self,
        now: Instant,
        t: TrunkId,
        max_cps: Option<u32>,
    ) -> Option<bool> {
        if !self.shared_rates {
            return None;
        }
        let (Some(rate), Some(slot)) = (max_cps, self.trunk_slots.get(t.index())) else {
            return Some(true);
        };
        Some(slot.try_rate(self.shared.at(now), rate))
    }

    /// Trunk concurrency admission: takes a place under the trunk's `max_calls`.
    pub(super) fn take_trunk_place(&mut self, t: TrunkId, max: Option<u32>) -> bool {
        let (Some(max), Some(slot)) = (max, self.trunk_slots.get(t.index())) else {
            return true;
        };
        let slot = Arc::clone(slot);
        let cap = slot.cap.load(Ordering::Acquire);
        self.take_held(slot, max.min(cap))
    }

    /// Takes one of the new calls the cluster lets this node admit on trunk `t` this second;
    /// true without a cluster rate.
    pub(super) fn take_cluster_rate(&self, t: TrunkId) -> bool {
        let Some(slot) = self.trunk_slots.get(t.index()) else {
            return true;
        };
        slot.cps_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n == u32::MAX {
                    Some(n)
                } else {
                    n.checked_sub(1)
                }
            })
            .is_ok()
    }

    fn take_held(&mut self, scope: Arc<Scope>, max: u32) -> bool {
        if !try_take(&scope.calls, max) {
            return false;
        }
        self.held.push(scope);
        true
    }

    /// Gives back the trunk place the last admission step took (its CPS refused the call).
    pub(super) fn release_trunk_place(&mut self, t: TrunkId) {
        if let Some(slot) = self.trunk_slots.get(t.index())
            && let Some(pos) = self.held.iter().rposition(|h| Arc::ptr_eq(h, slot))
        {
            sub(&self.held.swap_remove(pos).calls);
        }
    }

    /// Gives back every place admission held (the call, if set up, counts itself by now).
    pub(super) fn release_held(&mut self) {
        for h in self.held.drain(..) {
            sub(&h.calls);
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
            sub(&slot.calls);
        }
        if let Some(slot) = self.trunk_slots.get(to.index()) {
            add(&slot.calls);
        }
    }

    /// Each configured trunk's name and limits.
    pub(super) fn trunk_limits(&self) -> impl Iterator<Item = (&str, CallLimits)> {
        self.cfg.trunks.iter().map(|t| (t.name.as_str(), t.limits))
    }

    fn count_shared(&self, trunk: Option<TrunkId>) {
        add(&self.shared.0.total.calls);
        if let Some(slot) = trunk.and_then(|t| self.trunk_slots.get(t.index())) {
            add(&slot.calls);
        }
    }

    fn uncount_shared(&self, trunk: Option<TrunkId>) {
        sub(&self.shared.0.total.calls);
        if let Some(slot) = trunk.and_then(|t| self.trunk_slots.get(t.index())) {
            sub(&slot.calls);
        }
    }

    /// Before a new configuration: the calls leave their trunks' shared counts (the total
    /// stays); [`B2bua::recount_shared_trunks`] puts them back under the new trunks.
    pub(super) fn uncount_shared_trunks(&self) {
        for c in self.calls.values() {
            if let Some(slot) = c.trunk.and_then(|t| self.trunk_slots.get(t.index())) {
                sub(&slot.calls);
            }
        }
    }

    /// After a new configuration: the trunks' counts by name, and the calls back in them.
    pub(super) fn recount_shared_trunks(&mut self) {
        self.trunk_slots = self.shared.slots(self.trunk_limits());
        for c in self.calls.values() {
            if let Some(slot) = c.trunk.and_then(|t| self.trunk_slots.get(t.index())) {
                add(&slot.calls);
            }
        }
    }
}
