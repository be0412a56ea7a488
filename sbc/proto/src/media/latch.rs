//! Latching (symmetric RTP, RFC 4961 behaviour expected of NAT'd peers): which source a relay
//! port accepts and where the relay sends to. Plain state with injected time.
//!
//! An outsider who sprays packets at the relay ports must never win a latch, so a source is
//! considered at all only when it is **allowed** for the leg ([`Allowed`]): the IP address the
//! peer's own SDP names, the leg's signaling peer (a NAT'd PBX sends media from the address it
//! signals from), or a network configured for the side or trunk (`media_networks`). Everything
//! else is dropped (`not_allowed`). Among allowed sources:
//! - Before the first packet, the relay sends to the address from the peer's SDP.
//! - The first allowed packet latches its source: from then on the relay sends there.
//! - A latch made while the peer's SDP is still unknown is **provisional**: when the SDP
//!   arrives it is kept only if its address is the SDP's, otherwise it is dropped and the next
//!   allowed packet latches again. No fast path is installed for a provisional latch.
//! - A different allowed source takes over the latch only inside the **re-latch window**
//!   that an answer or re-offer opens (NAT rebinding, a media server switch at answer time).
//! - Outside the window: strict source drops it (`strict_source`); not strict forwards it and
//!   lets it take over once the latched peer has been silent for [`RELATCH_AFTER`].
//! - A re-offer that changes the peer's SDP address or port drops the latch (re-learned from the
//!   next allowed packet); a re-offer with the same address keeps it.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;

/// Silence of the latched peer after which another allowed source may take the latch (not
/// strict, outside the re-latch window).
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

/// The sources a leg's media may come from, besides the peer's SDP address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// The leg's signaling peer (the PBX's observed source, the trunk's proxy).
    pub signaling: Option<IpAddr>,
    /// Networks configured for the side or trunk.
    pub networks: Arc<[IpNet]>,
}

impl Allowed {
    /// Whether `ip` may send on this leg, given the SDP address `sdp` (if known).
    pub fn permits(&self, ip: IpAddr, sdp: Option<IpAddr>) -> bool {
        let ip = canonical(ip);
        sdp.map(canonical) == Some(ip)
            || self.signaling.map(canonical) == Some(ip)
            || self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4 (a dual-stack socket may report either).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The latching rules in force (from `[media]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Drop other sources once latched (outside the re-latch window).
    pub strict: bool,
    /// How long after an answer or re-offer a different allowed source may take the latch.
    pub relatch_window: Duration,
}

/// Why a packet was dropped (the `reason` label of `sbc_media_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The source is not allowed for the leg at all.
    NotAllowed,
    /// An allowed source, but another one is latched and strict source is on.
    StrictSource,
}

impl DropReason {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::NotAllowed => "not_allowed",
            DropReason::StrictSource => "strict_source",
        }
    }
}

/// Latch state of one relay port (one peer, one of RTP or RTCP).
#[derive(Debug, Clone, Default)]
pub struct Latch {
    sdp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    provisional: bool,
    last_from_latched: Option<Instant>,
    window_until: Option<Instant>,
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
    /// Drop.
    Drop(DropReason),
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
    pub fn on_packet(
        &mut self,
        src: SocketAddr,
        now: Instant,
        allowed: &Allowed,
        rules: Rules,
    ) -> Verdict {
        if self.latched == Some(src) {
            self.last_from_latched = Some(now);
            return Verdict::Forward;
        }
        if !allowed.permits(src.ip(), self.sdp.map(|s| s.ip())) {
            return Verdict::Drop(DropReason::NotAllowed);
        }
        let Some(previous) = self.latched else {
            self.latch(src, now);
            return Verdict::Latched { previous: None };
        };
        if self.window_open(now) {
            self.latch(src, now);
            return Verdict::Latched {
                previous: Some(previous),
            };
        }
        if rules.strict {
            return Verdict::Drop(DropReason::StrictSource);
        }
        let silent = self
            .last_from_latched
            .is_none_or(|t| now.saturating_duration_since(t) >= RELATCH_AFTER);
        if silent {
            self.latch(src, now);
            Verdict::Latched {
                previous: Some(previous),
            }
        } else {
            Verdict::Forward
        }
    }

    fn latch(&mut self, src: SocketAddr, now: Instant) {
        self.latched = Some(src);
        self.last_from_latched = Some(now);
        // Without the peer's SDP the relay cannot tell its media from another allowed source.
        self.provisional = self.sdp.is_none();
    }

    /// Records the address from a (re-)offer or answer; returns whether a latch was dropped.
    /// A changed address drops the latch; a provisional latch is kept only if it matches the
    /// new SDP address (then it is confirmed).
    pub fn set_sdp(&mut self, sdp: Option<SocketAddr>) -> bool {
        let changed = self.sdp.is_some() && self.sdp != sdp;
        let unconfirmed = self.provisional
            && sdp.is_some()
            && self.latched.map(|l| canonical(l.ip())) != sdp.map(|s| canonical(s.ip()));
        self.sdp = sdp;
        if sdp.is_some() {
            self.provisional = false;
        }
        if (changed || unconfirmed) && self.latched.is_some() {
            self.latched = None;
            self.last_from_latched = None;
            return true;
        }
        false
    }

    /// Opens the re-latch window until `until` (an answer or re-offer was just processed).
    pub fn open_window(&mut self, until: Instant) {
        self.window_until = Some(until);
    }

    /// Whether a different allowed source may take the latch at `now`.
    pub fn window_open(&self, now: Instant) -> bool {
        self.window_until.is_some_and(|u| now < u)
    }

    /// Where packets for this peer go: the latched address, else the SDP address.
    pub fn target(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp)
    }

    /// The address from the peer's SDP, if known.
    pub fn sdp(&self) -> Option<SocketAddr> {
        self.sdp
    }

    /// The latched address, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The latched address, if latched after the peer's SDP was known (fast-path worthy).
    pub fn confirmed(&self) -> Option<SocketAddr> {
        self.latched.filter(|_| !self.provisional)
    }

    /// Records a latch made elsewhere (by the XDP program, which applied the same policy) at
    /// `now`: like a latch by a packet, provisional while the peer's SDP is unknown.
    pub fn learn(&mut self, addr: SocketAddr, now: Instant) {
        self.latch(addr, now);
    }

    /// Adopts a latch learned by a previous process (restart), without a packet.
    pub fn adopt(&mut self, addr: SocketAddr, now: Instant) {
        self.latched = Some(addr);
        self.last_from_latched = Some(now);
        self.provisional = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    const STRICT: Rules = Rules {
        strict: true,
        relatch_window: Duration::from_secs(2),
    };

    fn none() -> Allowed {
        Allowed::default()
    }

    #[test]
    fn outsider_before_sdp_is_dropped_and_does_not_latch() {
        let t0 = crate::media::test_origin();
        // The carrier's answer is not there yet: only its trunk network may latch.
        let allowed = Allowed {
            signaling: None,
            networks: vec!["198.51.100.0/24".parse().expect("net")].into(),
        };
        let mut l = Latch::new(None);
        assert_eq!(
            l.on_packet(a("203.0.113.66:40000"), t0, &allowed, STRICT),
            Verdict::Drop(DropReason::NotAllowed)
        );
        assert_eq!(l.latched(), None);
        assert_eq!(l.target(), None, "nothing to send the PBX's audio to");
        // And with no network configured, nobody latches before the SDP.
        let mut l = Latch::new(None);
        assert_eq!(
            l.on_packet(a("198.51.100.7:4000"), t0, &none(), STRICT),
            Verdict::Drop(DropReason::NotAllowed)
        );
    }

    #[test]
    fn provisional_latch_is_replaced_when_the_sdp_names_another_address() {
        let t0 = crate::media::test_origin();
        let allowed = Allowed {
            signaling: None,
            networks: vec!["198.51.100.0/24".parse().expect("net")].into(),
        };
        let mut l = Latch::new(None);
        let v = l.on_packet(a("198.51.100.7:4000"), t0, &allowed, STRICT);
        assert_eq!(v, Verdict::Latched { previous: None });
        assert_eq!(l.confirmed(), None, "provisional: no fast path");
        // The answer names another media server of the trunk: the provisional latch goes.
        assert!(l.set_sdp(Some(a("198.51.100.9:5000"))));
        assert_eq!(l.latched(), None);
        assert_eq!(l.target(), Some(a("198.51.100.9:5000")));
        let v = l.on_packet(a("198.51.100.9:5000"), t0, &allowed, STRICT);
        assert_eq!(v, Verdict::Latched { previous: None });
        assert_eq!(l.confirmed(), Some(a("198.51.100.9:5000")));
        // A provisional latch from the SDP's own address is confirmed instead.
        let mut l = Latch::new(None);
        l.on_packet(a("198.51.100.7:4000"), t0, &allowed, STRICT);
        assert!(!l.set_sdp(Some(a("198.51.100.7:4000"))));
        assert_eq!(l.confirmed(), Some(a("198.51.100.7:4000")));
    }

    #[test]
    fn outsider_after_latch_is_dropped_as_not_allowed() {
        let t0 = crate::media::test_origin();
        let mut l = Latch::new(Some(a("198.51.100.1:5000")));
        assert_eq!(
            l.on_packet(a("198.51.100.1:5000"), t0, &none(), STRICT),
            Verdict::Latched { previous: None }
        );
        // Even inside the re-latch window and even when not strict, an outsider never wins.
        l.open_window(t0 + Duration::from_secs(2));
        let loose = Rules {
            strict: false,
            ..STRICT
        };
        for rules in [STRICT, loose] {
            assert_eq!(
                l.on_packet(a("203.0.113.66:5000"), t0, &none(), rules),
                Verdict::Drop(DropReason::NotAllowed)
            );
        }
        assert_eq!(
            l.on_packet(
                a("203.0.113.66:5000"),
                t0 + Duration::from_secs(60),
                &none(),
                loose
            ),
            Verdict::Drop(DropReason::NotAllowed)
        );
        assert_eq!(l.latched(), Some(a("198.51.100.1:5000")));
    }

    #[test]
    fn nat_rebinding_relatches_inside_the_window_only() {
        let t0 = crate::media::test_origin();
        // A NAT'd PBX: private SDP, media from its public (signaling) address.
        let allowed = Allowed {
            signaling: Some("203.0.113.9".parse().expect("ip")),
            networks: Arc::from([]),
        };
        let mut l = Latch::new(Some(a("10.0.0.5:4000")));
        assert_eq!(
            l.on_packet(a("203.0.113.9:61000"), t0, &allowed, STRICT),
            Verdict::Latched { previous: None }
        );
        assert_eq!(l.target(), Some(a("203.0.113.9:61000")));
        // A re-INVITE opens the window: the rebound NAT port takes the latch.
        let t1 = t0 + Duration::from_secs(30);
        l.open_window(t1 + STRICT.relatch_window);
        let v = l.on_packet(
            a("203.0.113.9:62000"),
            t1 + Duration::from_millis(500),
            &allowed,
            STRICT,
        );
        assert_eq!(
            v,
            Verdict::Latched {
                previous: Some(a("203.0.113.9:61000"))
            }
        );
        // After the window, another port of the same address is refused (strict).
        let late = t1 + Duration::from_secs(3);
        assert_eq!(
            l.on_packet(a("203.0.113.9:63000"), late, &allowed, STRICT),
            Verdict::Drop(DropReason::StrictSource)
        );
        assert_eq!(l.latched(), Some(a("203.0.113.9:62000")));
    }

    #[test]
    fn configured_network_is_allowed() {
        let t0 = crate::media::test_origin();
        let allowed = Allowed {
            signaling: None,
            networks: vec!["192.0.2.0/28".parse().expect("net")].into(),
        };
        // The SDP names the carrier's SBC; its media gateway in the trunk network sends.
        let mut l = Latch::new(Some(a("198.51.100.1:5000")));
        assert_eq!(
            l.on_packet(a("192.0.2.14:30000"), t0, &allowed, STRICT),
            Verdict::Latched { previous: None }
        );
        assert_eq!(l.confirmed(), Some(a("192.0.2.14:30000")));
        let mut l = Latch::new(Some(a("198.51.100.1:5000")));
        assert_eq!(
            l.on_packet(a("192.0.2.16:30000"), t0, &allowed, STRICT),
            Verdict::Drop(DropReason::NotAllowed),
            "just outside the /28"
        );
        assert!(allowed.permits("::ffff:192.0.2.3".parse().expect("ip"), None));
    }

    #[test]
    fn loose_source_relatches_only_after_silence() {
        let t0 = crate::media::test_origin();
        let loose = Rules {
            strict: false,
            relatch_window: Duration::ZERO,
        };
        let allowed = Allowed {
            signaling: None,
            networks: vec!["198.51.100.0/24".parse().expect("net")].into(),
        };
        let mut l = Latch::new(Some(a("198.51.100.1:5000")));
        l.on_packet(a("198.51.100.1:5000"), t0, &allowed, loose);
        // An interleaved allowed source is forwarded but does not steal the latch.
        assert_eq!(
            l.on_packet(
                a("198.51.100.2:5000"),
                t0 + Duration::from_millis(20),
                &allowed,
                loose
            ),
            Verdict::Forward
        );
        assert_eq!(l.latched(), Some(a("198.51.100.1:5000")));
        let v = l.on_packet(
            a("198.51.100.2:5002"),
            t0 + Duration::from_secs(3),
            &allowed,
            loose,
        );
        assert_eq!(
            v,
            Verdict::Latched {
                previous: Some(a("198.51.100.1:5000"))
            }
        );
    }

    #[test]
    fn reoffer_with_new_address_unlatches_same_address_keeps() {
        let t0 = crate::media::test_origin();
        let allowed = Allowed {
            signaling: Some("203.0.113.9".parse().expect("ip")),
            networks: Arc::from([]),
        };
        let mut l = Latch::new(Some(a("10.0.0.5:4000")));
        l.on_packet(a("203.0.113.9:61000"), t0, &allowed, STRICT);
        assert!(!l.set_sdp(Some(a("10.0.0.5:4000"))));
        assert_eq!(l.latched(), Some(a("203.0.113.9:61000")));
        assert!(l.set_sdp(Some(a("10.0.0.7:4000"))));
        assert_eq!(l.target(), Some(a("10.0.0.7:4000")));
        assert_eq!(
            l.on_packet(a("203.0.113.9:62000"), t0, &allowed, STRICT),
            Verdict::Latched { previous: None }
        );
    }
}
