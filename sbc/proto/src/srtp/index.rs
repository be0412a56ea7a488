//! The packet index: rollover counter (ROC) and highest sequence number per SSRC, and the
//! estimate of a received packet's index (RFC 3711 §3.3.1 and Appendix A).

/// What one side knows of an SSRC's sequence: the highest index accepted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloverState {
    /// Rollover counter: how many times the 16-bit sequence number has wrapped.
    pub roc: u32,
    /// Highest sequence number accepted with `roc` (s_l in the RFC).
    pub highest_seq: u16,
}

impl RolloverState {
    /// The state after the first packet of an SSRC: ROC 0 (RFC 3711 §3.3.1: "the ROC ...
    /// MUST be set to zero" for a new SSRC unless signalled otherwise).
    pub fn first(seq: u16) -> Self {
        Self {
            roc: 0,
            highest_seq: seq,
        }
    }

    /// The highest 48-bit index accepted.
    pub fn highest_index(self) -> u64 {
        index(self.roc, self.highest_seq)
    }

    /// The ROC a packet with `seq` most likely belongs to: the one putting it closest to the
    /// highest sequence seen (RFC 3711 §3.3.1's estimate v). Saturates at ROC 0 rather than
    /// wrapping below it: an index before the first packet is simply old.
    pub fn estimate(self, seq: u16) -> u32 {
        let s_l = self.highest_seq;
        if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                self.roc.saturating_sub(1)
            } else {
                self.roc
            }
        } else if s_l - 0x8000 > seq {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        }
    }

    /// Records an accepted packet (call only once it authenticated): moves the highest index
    /// forward when the packet is newer.
    pub fn accept(&mut self, roc: u32, seq: u16) {
        if index(roc, seq) > self.highest_index() {
            self.roc = roc;
            self.highest_seq = seq;
        }
    }
}

/// The 48-bit packet index `i = 2^16 · ROC + SEQ` (RFC 3711 §3.3.1).
pub fn index(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_the_rfc_cases() {
        // In the first half: a much larger seq belongs to the previous ROC.
        let s = RolloverState {
            roc: 5,
            highest_seq: 10,
        };
        assert_eq!(s.estimate(11), 5);
        assert_eq!(s.estimate(65_000), 4);
        // In the second half: a much smaller seq is after the wrap.
        let s = RolloverState {
            roc: 5,
            highest_seq: 65_530,
        };
        assert_eq!(s.estimate(3), 6);
        assert_eq!(s.estimate(65_000), 5);
        // No ROC below 0.
        assert_eq!(RolloverState::first(3).estimate(65_000), 0);
    }

    #[test]
    fn accept_only_moves_forward() {
        let mut s = RolloverState::first(65_535);
        s.accept(1, 0);
        assert_eq!(s.highest_index(), 65_536);
        s.accept(0, 65_534);
        assert_eq!(s.highest_index(), 65_536);
    }
}
