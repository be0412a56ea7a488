//! The fast-path (XDP) mappings a stream *should* have, computed from its latches: the table
//! keeps what it asked the kernel for and emits the difference as commands.

use std::{net::SocketAddr, time::Instant};

use super::{peer::PeerState, settings::RelaySettings};

/// One mapping: packets arriving at the relay endpoint `ingress` from `expect` leave from the
/// other side's relay endpoint `egress` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPath {
    /// Relay endpoint (bind address, RTP port) the packets arrive at: the map key.
    pub ingress: SocketAddr,
    /// The latched peer sending to `ingress`.
    pub expect: SocketAddr,
    /// Relay endpoint on the other side the packets leave from.
    pub egress: SocketAddr,
    /// The latched peer on the other side.
    pub dst: SocketAddr,
    /// Drop other sources in the kernel (strict source, re-latch window closed); otherwise
    /// they go up to userspace, which applies the latching policy.
    pub strict: bool,
    /// The program's statistics slot of this mapping.
    pub slot: u32,
}

impl FastPath {
    /// Whether `other` differs from `self` at most in [`FastPath::strict`] (an in-place update
    /// that keeps the mapping's counters).
    pub fn same_route(&self, other: &FastPath) -> bool {
        FastPath {
            strict: other.strict,
            ..*self
        } == *other
    }
}

/// The RTP mappings (inside → outside and back, slot 0) for a stream whose relay RTP ports are
/// `ports` (inside, outside) and whose peers are `peers`, at `now`: none unless both peers are
/// latched after their SDP was known (a provisional latch stays in userspace) and everything is
/// one address family (XDP cannot change header sizes). RTCP stays in userspace for its
/// reports.
pub fn desired(
    settings: &RelaySettings,
    ports: [u16; 2],
    peers: &[PeerState; 2],
    now: Instant,
) -> Option<[FastPath; 2]> {
    let pbx = peers[0].latch[0].confirmed()?;
    let carrier = peers[1].latch[0].confirmed()?;
    let v4 = settings.inside.bind.is_ipv4();
    if settings.outside.bind.is_ipv4() != v4 || pbx.is_ipv4() != v4 || carrier.is_ipv4() != v4 {
        return None;
    }
    // Inside the re-latch window other sources go up to userspace, which may re-latch (the
    // table's tick makes the mapping strict once the window has closed).
    let strict = |i: usize| settings.strict_source && !peers[i].latch[0].window_open(now);
    let inside = SocketAddr::new(settings.inside.bind, ports[0]);
    let outside = SocketAddr::new(settings.outside.bind, ports[1]);
    Some([
        FastPath {
            ingress: inside,
            expect: pbx,
            egress: outside,
            dst: carrier,
            strict: strict(0),
            slot: 0,
        },
        FastPath {
            ingress: outside,
            expect: carrier,
            egress: inside,
            dst: pbx,
            strict: strict(1),
            slot: 0,
        },
    ])
}
