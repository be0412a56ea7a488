//! The relay port pool of one side: RTP on even ports, RTCP on the odd port above, O(1)
//! allocate and free.
//!
//! A pair is drawn at random (the caller's CSPRNG, keyed from the OS by the runtime) from the older half of the free pairs: the
//! next call's ports cannot be predicted from the last ones (an outsider who could would aim at
//! them before the call is set up), and freed pairs, which go to the back, are still reused
//! late, so stray packets of a finished call (retransmissions, a slow peer) rarely land in the
//! next call that gets them.

use std::collections::VecDeque;

use crate::ids::Rng;

/// A pool of even/odd port pairs in `[min, max]`.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    /// Indexed by `(port - min) / 2`: whether the pair is currently allocated. Catches double
    /// frees and frees of foreign ports, which would otherwise hand one pair to two calls.
    in_use: Vec<bool>,
    min: u16,
    capacity: usize,
}

/// Errors of [`PortPool::free`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The port is not an RTP port of this pool.
    #[error("port {0} does not belong to this pool")]
    Foreign(u16),
    /// The pair was not allocated.
    #[error("port {0} freed twice")]
    DoubleFree(u16),
}

impl PortPool {
    /// A pool of every pair `(p, p + 1)` with `p` even and `min <= p`, `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> Self {
        let first = min.saturating_add(min % 2);
        let free: VecDeque<u16> = (first..max)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|odd| odd <= max))
            .collect();
        let capacity = free.len();
        Self {
            free,
            in_use: vec![false; capacity],
            min: first,
            capacity,
        }
    }

    /// Takes a free pair drawn with `rng`; returns its (even) RTP port, or `None` when
    /// exhausted.
    pub fn allocate(&mut self, rng: &mut Rng) -> Option<u16> {
        // Uniform over the older half (at least one pair), then O(1): swap it to the front.
        let window = self.free.len().div_ceil(2);
        if window == 0 {
            return None;
        }
        // The window holds at most 32,768 pairs: the modulo bias over 64 bits is < 2^-48.
        let pick = usize::try_from(rng.next_u64() % window as u64).unwrap_or(0);
        self.free.swap(0, pick);
        let p = self.free.pop_front()?;
        if let Some(slot) = self.slot(p) {
            self.in_use[slot] = true;
        }
        Some(p)
    }

    /// Returns a pair to the pool.
    pub fn free(&mut self, rtp_port: u16) -> Result<(), PoolError> {
        let slot = self.slot(rtp_port).ok_or(PoolError::Foreign(rtp_port))?;
        if !self.in_use[slot] {
            return Err(PoolError::DoubleFree(rtp_port));
        }
        self.in_use[slot] = false;
        self.free.push_back(rtp_port);
        Ok(())
    }

    /// Marks a specific pair as allocated (used when adopting mappings after a restart).
    /// Returns false if it is not a free pair of this pool.
    pub fn reserve(&mut self, rtp_port: u16) -> bool {
        let Some(slot) = self.slot(rtp_port) else {
            return false;
        };
        if self.in_use[slot] {
            return false;
        }
        // O(n), but only on adoption at start-up.
        self.free.retain(|&p| p != rtp_port);
        self.in_use[slot] = true;
        true
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pairs in total.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn slot(&self, port: u16) -> Option<usize> {
        if port < self.min || !port.is_multiple_of(2) {
            return None;
        }
        let slot = usize::from((port - self.min) / 2);
        (slot < self.capacity).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> Rng {
        Rng::from_test_seed(7)
    }

    #[test]
    fn pairs_are_even_and_within_range() {
        let mut r = rng();
        let mut p = PortPool::new(10_000, 10_005);
        assert_eq!(p.capacity(), 3);
        let mut got: Vec<u16> = std::iter::from_fn(|| p.allocate(&mut r)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![10_000, 10_002, 10_004]);
        // An odd minimum starts at the next even port; the max must leave room for RTCP.
        let p = PortPool::new(10_001, 10_004);
        assert_eq!(p.capacity(), 1);
    }

    #[test]
    fn exhaustion_returns_none_and_free_makes_room() {
        let mut r = rng();
        let mut p = PortPool::new(20_000, 20_003);
        let a = p.allocate(&mut r).expect("first");
        let b = p.allocate(&mut r).expect("second");
        assert_eq!(p.allocate(&mut r), None);
        assert_eq!(p.available(), 0);
        p.free(a).expect("free a");
        assert_eq!(p.allocate(&mut r), Some(a));
        p.free(b).expect("free b");
        assert_eq!(p.available(), 1);
    }

    #[test]
    fn freed_ports_are_not_reused_at_once() {
        let mut r = rng();
        let mut p = PortPool::new(30_000, 30_019);
        let a = p.allocate(&mut r).expect("a");
        p.free(a).expect("free");
        // `a` sits in the younger half: the next few allocations never return it.
        let next: Vec<u16> = (0..4).filter_map(|_| p.allocate(&mut r)).collect();
        assert!(!next.contains(&a), "{next:?}");
    }

    #[test]
    fn allocation_order_is_unpredictable() {
        // Two pools draw different sequences (FIFO order would give 10000, 10002, ... twice),
        // and the ports spread over the range instead of counting up.
        let draw = |seed| {
            let mut r = Rng::from_test_seed(seed);
            let mut p = PortPool::new(10_000, 20_000);
            (0..16)
                .filter_map(|_| p.allocate(&mut r))
                .collect::<Vec<u16>>()
        };
        let (a, b) = (draw(1), draw(2));
        assert_ne!(a, b);
        let sequential = a.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(sequential < 4, "{a:?}");
    }

    #[test]
    fn double_and_foreign_frees_are_refused() {
        let mut r = rng();
        let mut p = PortPool::new(40_000, 40_010);
        let a = p.allocate(&mut r).expect("a");
        p.free(a).expect("free");
        assert_eq!(p.free(a), Err(PoolError::DoubleFree(a)));
        assert_eq!(p.free(40_001), Err(PoolError::Foreign(40_001)));
        assert_eq!(p.free(50_000), Err(PoolError::Foreign(50_000)));
        assert_eq!(p.available(), p.capacity());
    }

    #[test]
    fn reserve_takes_a_specific_pair() {
        let mut r = rng();
        let mut p = PortPool::new(10_000, 10_009);
        assert!(p.reserve(10_004));
        assert!(!p.reserve(10_004));
        let all: Vec<u16> = std::iter::from_fn(|| p.allocate(&mut r)).collect();
        assert!(!all.contains(&10_004));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn full_default_range() {
        let mut r = rng();
        let mut p = PortPool::new(10_000, 20_000);
        assert_eq!(p.capacity(), 5_000);
        let mut n = 0;
        while p.allocate(&mut r).is_some() {
            n += 1;
        }
        assert_eq!(n, 5_000);
    }
}
