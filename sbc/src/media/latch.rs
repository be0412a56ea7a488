//! Latching (symmetric RTP, RFC 4961 behaviour expected of NAT'd peers): which source a relay
//! port accepts and where the relay sends to. Plain state with injected time.
//!
//! Rules:
//! - Before the first packet, the relay sends to the address from the peer's SDP.
//! - The first packet latches its source: from then on the relay sends there.
//! - Strict source: once latched, packets from any other source are dropped.
//! - Not strict: packets from other sources are still forwarded, and the latch moves to a new
//!   source only when the latched peer has been silent for [`RELATCH_AFTER`] (a NAT rebinding
//!   or a media server switch, not an interleaving attacker).
//! - A re-offer that changes the peer's SDP address or port drops the latch (re-learned from the
//!   next packet); a re-offer with the same address keeps it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

/// Silence of the latched peer after which another source may take the latch (not strict).
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

/// Latch state of one relay port (one peer, one of RTP or RTCP).
#[derive(Debug, Clone, Default)]
pub struct Latch {
    sdp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    last_from_latched: Option<Instant>,
}

/// What to do with a packet, and whether the latch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward; the latch did not change.
    Forward,
    /// Forward; the packet's source is now latched (`previous` is the old latch, if any).
    Latched {
        /// The previously latched address.
        previous: Option<SocketAddr>,
    },
    /// Drop: strict source and not from the latched peer.
    Drop,
}

impl Latch {
    /// A latch that sends to `sdp` until the first packet arrives.
    pub fn new(sdp: Option<SocketAddr>) -> Self {
        Self {
            sdp,
            ..Self::default()
        }
    }

    /// Decides about a packet from `src` at `now`.
    pub fn on_packet(&mut self, src: SocketAddr, now: Instant, strict: bool) -> Verdict {
        match self.latched {
            None => {
                self.latched = Some(src);
                self.last_from_latched = Some(now);
                Verdict::Latched { previous: None }
            }
            Some(l) if l == src => {
                self.last_from_latched = Some(now);
                Verdict::Forward
            }
            Some(_) if strict => Verdict::Drop,
            Some(l) => {
                let silent = self
                    .last_from_latched
                    .is_none_or(|t| now.saturating_duration_since(t) >= RELATCH_AFTER);
                if silent {
                    self.latched = Some(src);
                    self.last_from_latched = Some(now);
                    Verdict::Latched { previous: Some(l) }
                } else {
                    Verdict::Forward
                }
            }
        }
    }

    /// Records the address from a (re-)offer or answer. A changed address drops the latch;
    /// returns whether it did.
    pub fn set_sdp(&mut self, sdp: Option<SocketAddr>) -> bool {
        let changed = self.sdp.is_some() && self.sdp != sdp;
        self.sdp = sdp;
        if changed && self.latched.is_some() {
            self.latched = None;
            self.last_from_latched = None;
            return true;
        }
        false
    }

    /// Where packets for this peer go: the latched address, else the SDP address.
    pub fn target(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp)
    }

    /// The latched address, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Adopts a latch learned by a previous process (restart), without a packet.
    pub fn adopt(&mut self, addr: SocketAddr, now: Instant) {
        self.latched = Some(addr);
        self.last_from_latched = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn first_packet_latches_over_private_sdp_address() {
        let t0 = Instant::now();
        let mut l = Latch::new(Some(a("10.0.0.5:4000")));
        assert_eq!(l.target(), Some(a("10.0.0.5:4000")));
        // The NAT'd peer's packets come from its public mapping.
        let v = l.on_packet(a("203.0.113.9:61000"), t0, false);
        assert_eq!(v, Verdict::Latched { previous: None });
        assert_eq!(l.target(), Some(a("203.0.113.9:61000")));
        assert_eq!(
            l.on_packet(a("203.0.113.9:61000"), t0, false),
            Verdict::Forward
        );
    }

    #[test]
    fn strict_source_drops_other_sources() {
        let t0 = Instant::now();
        let mut l = Latch::new(None);
        l.on_packet(a("198.51.100.1:5000"), t0, true);
        assert_eq!(
            l.on_packet(a("198.51.100.66:5000"), t0 + Duration::from_secs(60), true),
            Verdict::Drop
        );
        assert_eq!(l.latched(), Some(a("198.51.100.1:5000")));
    }

    #[test]
    fn loose_source_relatches_only_after_silence() {
        let t0 = Instant::now();
        let mut l = Latch::new(None);
        l.on_packet(a("198.51.100.1:5000"), t0, false);
        // An interleaved stranger is forwarded but does not steal the latch.
        assert_eq!(
            l.on_packet(
                a("198.51.100.2:5000"),
                t0 + Duration::from_millis(20),
                false
            ),
            Verdict::Forward
        );
        assert_eq!(l.latched(), Some(a("198.51.100.1:5000")));
        // After the latched peer went silent (NAT rebinding), the new source takes over.
        let v = l.on_packet(a("198.51.100.2:5002"), t0 + Duration::from_secs(3), false);
        assert_eq!(
            v,
            Verdict::Latched {
                previous: Some(a("198.51.100.1:5000"))
            }
        );
    }

    #[test]
    fn reoffer_with_new_address_unlatches_same_address_keeps() {
        let t0 = Instant::now();
        let mut l = Latch::new(Some(a("10.0.0.5:4000")));
        l.on_packet(a("203.0.113.9:61000"), t0, true);
        assert!(!l.set_sdp(Some(a("10.0.0.5:4000"))));
        assert_eq!(l.latched(), Some(a("203.0.113.9:61000")));
        assert!(l.set_sdp(Some(a("10.0.0.7:4000"))));
        assert_eq!(l.target(), Some(a("10.0.0.7:4000")));
        assert_eq!(
            l.on_packet(a("203.0.113.9:62000"), t0, true),
            Verdict::Latched { previous: None }
        );
    }
}
