//! The XDP program's per-mapping statistics slots: a free stack, so the slots in use stay
//! compact (good locality for the program's per-CPU counters).

/// Statistics slots `base..base + n` of the fast path, each owned by at most one installed
/// mapping. A signaling shard's table owns a sub-range (`share.rs`), so two tables never
/// count into one slot.
#[derive(Debug, Clone)]
pub struct Slots {
    free: Vec<u32>,
    used: Vec<bool>,
    base: u32,
}

impl Slots {
    /// `n` free slots from 0.
    pub fn new(n: u32) -> Self {
        Self::range(0..n)
    }

    /// The free slots of `range`.
    pub fn range(range: std::ops::Range<u32>) -> Self {
        Self {
            used: vec![false; range.len()],
            base: range.start,
            free: range.rev().collect(),
        }
    }

    /// Takes the lowest recently freed (or never used) slot; `None` when all are in use.
    pub fn take(&mut self) -> Option<u32> {
        let s = self.free.pop()?;
        if let Some(u) = self.index(s).and_then(|i| self.used.get_mut(i)) {
            *u = true;
        }
        Some(s)
    }

    /// The place of slot `s` in `used` (`None`: not one of ours).
    fn index(&self, s: u32) -> Option<usize> {
        s.checked_sub(self.base).map(|i| i as usize)
    }

    /// Gives a slot back; a slot that is not in use (or not ours) is ignored.
    pub fn give(&mut self, s: u32) {
        if let Some(u) = self.index(s).and_then(|i| self.used.get_mut(i))
            && *u
        {
            *u = false;
            self.free.push(s);
        }
    }

    /// Takes a specific slot (adoption after a restart); false if it is out of range or in use.
    pub fn reserve(&mut self, s: u32) -> bool {
        match self.index(s).and_then(|i| self.used.get_mut(i)) {
            Some(u) if !*u => {
                *u = true;
                // O(n), but only on adoption at start-up.
                self.free.retain(|&x| x != s);
                true
            }
            _ => false,
        }
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.used.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_slots_are_compact_and_reserved_on_adoption() {
        let mut s = Slots::new(8);
        assert_eq!((s.take(), s.take()), (Some(0), Some(1)));
        assert!(s.reserve(5));
        assert!(!s.reserve(5), "in use");
        assert!(!s.reserve(8), "out of range");
        s.give(0);
        s.give(0); // double give is ignored
        assert_eq!(s.take(), Some(0), "freed slots are reused first");
        let rest: Vec<u32> = std::iter::from_fn(|| s.take()).collect();
        assert_eq!(rest, vec![2, 3, 4, 6, 7]);
        assert_eq!(s.in_use(), 8);
    }

    #[test]
    fn a_sub_range_hands_out_and_takes_back_only_its_own_slots() {
        let mut s = Slots::range(10..13);
        assert!(!s.reserve(9), "below the range");
        assert!(!s.reserve(13), "above the range");
        s.give(2); // not ours: ignored
        let all: Vec<u32> = std::iter::from_fn(|| s.take()).collect();
        assert_eq!(all, vec![10, 11, 12]);
        s.give(11);
        assert_eq!(s.take(), Some(11));
        assert_eq!(s.in_use(), 3);
    }
}
