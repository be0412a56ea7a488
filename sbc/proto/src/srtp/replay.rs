//! The replay list (RFC 3711 §3.3.2): a sliding window of the last [`WINDOW`] indices behind
//! the highest one accepted.

/// Indices remembered behind the highest (RFC 3711 §3.3.2 asks for at least 64; 128 as
/// libsrtp's default tolerates more reordering on jittery trunks).
pub const WINDOW: u64 = 128;

/// A sliding replay window over 48-bit (SRTP) or 31-bit (SRTCP) indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest index accepted; meaningful once `started`.
    highest: u64,
    /// Bit n set: index `highest - n` was accepted.
    seen: u128,
    started: bool,
}

impl ReplayWindow {
    /// Whether `index` may be accepted: newer than the highest, or inside the window and not
    /// yet seen. Changes nothing (the packet still has to authenticate).
    pub fn check(&self, index: u64) -> Result<(), super::SrtpError> {
        if !self.started || index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= WINDOW || self.seen & (1u128 << behind) != 0 {
            return Err(super::SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated `index`.
    pub fn accept(&mut self, index: u64) {
        if !self.started {
            *self = Self {
                highest: index,
                seen: 1,
                started: true,
            };
        } else if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.highest = index;
        } else {
            let behind = self.highest - index;
            if behind < WINDOW {
                self.seen |= 1u128 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpError;

    #[test]
    fn duplicates_and_old_indices_are_refused() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(1000), Ok(()));
        w.accept(1000);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed));
        assert_eq!(w.check(999), Ok(()), "late but new");
        w.accept(999);
        assert_eq!(w.check(999), Err(SrtpError::Replayed));
        w.accept(1200);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed), "behind the window");
        assert_eq!(w.check(1200 - WINDOW + 1), Ok(()));
        assert_eq!(w.check(1200 - WINDOW), Err(SrtpError::Replayed));
        assert_eq!(w.check(1201), Ok(()));
    }
}
