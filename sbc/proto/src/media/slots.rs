//! The XDP program's per-mapping statistics slots: a free stack, so the slots in use stay
//! compact (good locality for the program's per-CPU counters).

/// Statistics slots `0..n` of the fast path, each owned by at most one installed mapping.
#[derive(Debug, Clone)]
pub struct Slots {
    free: Vec<u32>,
    used: Vec<bool>,
}

impl Slots {
    /// `n` free slots.
    pub fn new(n: u32) -> Self {
        Self {
            free: (0..n).rev().collect(),
            used: vec![false; n as usize],
        }
    }

    /// Takes the lowest recently freed (or never used) slot; `None` when all are in use.
    pub fn take(&mut self) -> Option<u32> {
        let s = self.free.pop()?;
        self.used[s as usize] = true;
        Some(s)
    }

    /// Gives a slot back; a slot that is not in use is ignored.
    pub fn give(&mut self, s: u32) {
        if let Some(u) = self.used.get_mut(s as usize)
            && *u
        {
            *u = false;
            self.free.push(s);
        }
    }

    /// Takes a specific slot (adoption after a restart); false if it is out of range or in use.
    pub fn reserve(&mut self, s: u32) -> bool {
        match self.used.get_mut(s as usize) {
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
}
