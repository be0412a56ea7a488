//! One signaling shard's part of the relay: with `[general] signaling_shards` above one, each
//! shard runs its own [`super::MediaTable`], so that no table is shared (and locked) between
//! shards on the per-message path. What the tables must never both hand out is split here,
//! by arithmetic alone, so that anyone holding a port or a session id knows its owner without
//! a lookup:
//! - the relay port pairs of every address: shard `k` of `n` gets pairs
//!   `⌊k·P/n⌋ .. ⌊(k+1)·P/n⌋` of the `P` pairs of the range ([`MediaShare::ports`],
//!   [`owner_of_port`]: the kernel's latch events and adopted mappings go to the owner by port);
//! - the XDP statistics slots, two per pair and address, in the same proportion
//!   ([`MediaShare::slots`]), so the sub-ranges never meet;
//! - session ids, which carry the shard in their top 16 bits ([`MediaShare::first_session`],
//!   [`owner_of_session`]), as call handles do;
//! - the trunks' port quotas, which stay whole: one atomic count per trunk all shards take
//!   from ([`SharedQuotas`]).
//!
//! One shard ([`MediaShare::WHOLE`]) owns everything, exactly as before there were shards.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{SessionId, settings::RelaySettings};

/// Where a session id's shard is (the same bits as a call handle's).
const SESSION_SHARD_SHIFT: u32 = 48;

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaShare {
    index: u16,
    count: u16,
}

impl MediaShare {
    /// The only shard: the whole range, every slot, unlabelled session ids.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` when `index >= count`.
    pub const fn new(index: u16, count: u16) -> Option<Self> {
        if index < count {
            Some(Self { index, count })
        } else {
            None
        }
    }

    /// This shard's position.
    pub const fn index(self) -> u16 {
        self.index
    }

    /// Shards in all.
    pub const fn count(self) -> u16 {
        self.count
    }

    /// The pair indexes (of `pairs`) this shard owns.
    fn pairs(self, pairs: u32) -> Range<u32> {
        let at = |k: u16| {
            let k = u64::from(k);
            u32::try_from(k * u64::from(pairs) / u64::from(self.count)).unwrap_or(pairs)
        };
        at(self.index)..at(self.index + 1)
    }

    /// The relay settings of this shard: `whole` with the port range narrowed to its pairs.
    /// A shard without a pair (a range smaller than the shard count, which validation refuses)
    /// gets an empty range.
    pub fn ports(self, whole: &RelaySettings) -> RelaySettings {
        let mut s = whole.clone();
        if self.count == 1 {
            return s;
        }
        let first = first_port(whole);
        let pairs = self.pairs(whole.pairs_per_address());
        let port = |pair: u32| u16::try_from(first + 2 * pair).unwrap_or(u16::MAX);
        s.port_min = port(pairs.start);
        s.port_max = if pairs.is_empty() {
            s.port_min
        } else {
            port(pairs.end).saturating_sub(1)
        };
        s
    }

    /// The fast path's statistics slots this shard takes from, out of `total` (the whole
    /// range's [`RelaySettings::fast_path_mappings`]): two per pair and relay address.
    pub fn slots(self, whole: &RelaySettings, total: u32) -> Range<u32> {
        if self.count == 1 {
            return 0..total;
        }
        let addresses = u32::try_from(whole.bind_addresses().len()).unwrap_or(u32::MAX);
        let per_pair = addresses.saturating_mul(2);
        let pairs = self.pairs(whole.pairs_per_address());
        let at = |p: u32| p.saturating_mul(per_pair).min(total);
        at(pairs.start)..at(pairs.end)
    }

    /// The first session id this shard mints (its index in the top bits; 1 for the only one).
    pub const fn first_session(self) -> u64 {
        if self.count == 1 {
            1
        } else {
            ((self.index as u64) << SESSION_SHARD_SHIFT) | 1
        }
    }
}

/// The first even port of the range (RTP ports are even).
fn first_port(s: &RelaySettings) -> u32 {
    u32::from(s.port_min) + u32::from(s.port_min % 2)
}

/// The shard of `count` that owns relay `port` (RTP or RTCP) of `whole`'s range; `None` for a
/// port outside it.
pub fn owner_of_port(whole: &RelaySettings, count: u16, port: u16) -> Option<u16> {
    let first = first_port(whole);
    let pairs = whole.pairs_per_address();
    let pair = u32::from(port).checked_sub(first)? / 2;
    if pair >= pairs {
        return None;
    }
    if count <= 1 {
        return Some(0);
    }
    // ⌊pair·n/P⌋ is within one of the owner; step to it.
    let n = u64::from(count);
    let start = |k: u64| k * u64::from(pairs) / n;
    let mut k = (u64::from(pair) * n / u64::from(pairs)).min(n - 1);
    while k + 1 < n && start(k + 1) <= u64::from(pair) {
        k += 1;
    }
    while k > 0 && start(k) > u64::from(pair) {
        k -= 1;
    }
    u16::try_from(k).ok()
}

/// The shard of `count` whose table minted `id` (ids of one shard carry none: shard 0).
pub fn owner_of_session(id: SessionId, count: u16) -> u16 {
    let k = u16::try_from(id.0 >> SESSION_SHARD_SHIFT).unwrap_or(u16::MAX);
    if count == 0 { 0 } else { k % count }
}

/// The relay ports every trunk's calls hold, over all shards' tables: a trunk's
/// `max_ports` is one limit for the whole SBC, not one per shard. Each trunk's count is an
/// atomic that a table finds by the trunk's name once (under this ledger's lock, off the
/// per-message path: [`TrunkPorts`] keeps it) and then takes from and gives back to with a
/// compare-and-swap, so two shards can never both take the last ports.
#[derive(Debug, Clone, Default)]
pub struct SharedQuotas(Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>>);

impl SharedQuotas {
    /// The count of `trunk` (made at zero on first use; entries are never removed: a handful
    /// of trunk names).
    pub fn counter(&self, trunk: &str) -> Arc<AtomicUsize> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(trunk.to_owned()).or_default().clone()
    }

    /// Ports `trunk`'s calls hold over every shard.
    pub fn held(&self, trunk: &str) -> usize {
        self.counter(trunk).load(Ordering::Acquire)
    }
}

/// One trunk's shared port count as a table holds it.
#[derive(Debug, Clone)]
pub struct TrunkPorts(Arc<AtomicUsize>);

impl TrunkPorts {
    /// The count `counter` ([`SharedQuotas::counter`]).
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        Self(counter)
    }

    /// Takes `ports` if that keeps the whole SBC within `limit`.
    pub fn take(&self, ports: usize, limit: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(ports).filter(|&n| n <= limit)
            })
            .is_ok()
    }

    /// Takes `ports` whatever the limit (a failover moving an existing call).
    pub fn force(&self, ports: usize) {
        self.0.fetch_add(ports, Ordering::AcqRel);
    }

    /// Gives `ports` back.
    pub fn give(&self, ports: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(ports))
            });
    }
}

#[cfg(test)]
mod tests;
