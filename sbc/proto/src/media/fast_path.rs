//! The fast-path (XDP) mappings a stream *should* have, computed from its latches: the table
//! keeps what it asked the kernel for and emits the difference as commands.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use super::{peer::PeerState, settings::RelaySettings};

/// Statistics slot of a mapping that counts nothing ([`PathMode::Pass`]): it never forwards.
pub const NO_SLOT: u32 = u32::MAX;

/// What the kernel does with a mapping's packets besides forwarding a latched peer's RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMode {
    /// A stream relayed by a userspace task that latched both peers: RTP from the latched peer
    /// is forwarded, RTCP goes up for its reports, other sources go up or are dropped.
    Relay,
    /// A socketless stream (no relay socket, no task): RTP and RTCP are forwarded in the
    /// kernel, and a mapping whose peer is not latched yet latches in the kernel from a source
    /// its [`KernelLatch`] allows (everything else is dropped there).
    Kernel(KernelLatch),
    /// A port of a socket-bound stream in a relay range the program owns: every packet goes up
    /// to its socket (without a mapping the program would drop it as unallocated).
    Pass,
}

/// Who may latch a socketless stream's mapping in the kernel: the latching policy of the
/// userspace relay (`latch.rs`) in the program's fixed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLatch {
    /// The peer is not latched yet: the first allowed packet latches it.
    pub awaiting: bool,
    /// Allowed source prefixes (address, prefix length in bits of its own family), any port:
    /// the peer's SDP address, the leg's signaling peer, one configured media network.
    pub sources: [Option<(IpAddr, u8)>; 3],
    /// The other side's relay endpoint of the same kind: its mapping sends to this peer and
    /// learns the latch in the kernel.
    pub reverse: SocketAddr,
}

/// A mapping's counters in the program's statistics slots: the slot and the generation of its
/// counters there ([`FastPath::generation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSlot {
    /// Index in the program's per-CPU statistics array.
    pub slot: u32,
    /// The mapping's generation: the counters of other generations on the slot are not its.
    pub generation: u32,
}

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
    /// The program's statistics slot of this mapping ([`NO_SLOT`] for [`PathMode::Pass`]).
    pub slot: u32,
    /// Which use of `slot` this mapping is: new at every install, kept while the mapping is
    /// rewritten in place. The program counts a packet into the slot's counters of this
    /// generation (starting them from zero when they are a former mapping's), so a reused
    /// slot needs no zeroing. Given by the table; 0 in the mappings it is computed from.
    pub generation: u32,
    /// Forward-only, latching in the kernel, or pass-through.
    pub mode: PathMode,
}

impl FastPath {
    /// Whether the kernel's value of `other` (the mapping map's entry) is the one of `self`:
    /// they differ at most in the latch policy, which lives in a map of its own.
    pub fn same_mapping(&self, other: &FastPath) -> bool {
        let kind = |m: &FastPath| match m.mode {
            PathMode::Relay => (0, false),
            PathMode::Kernel(k) => (1, k.awaiting),
            PathMode::Pass => (2, false),
        };
        (self.ingress, self.expect, self.egress, self.dst)
            == (other.ingress, other.expect, other.egress, other.dst)
            && (self.strict, self.slot, self.generation, kind(self))
                == (other.strict, other.slot, other.generation, kind(other))
    }

    /// Where the program counts this mapping's packets; `None` for one that counts nothing.
    pub fn stats(&self) -> Option<StatsSlot> {
        (self.slot != NO_SLOT).then_some(StatsSlot {
            slot: self.slot,
            generation: self.generation,
        })
    }

    /// The latch policy the kernel reads for this mapping: that of a socketless mapping
    /// awaiting its latch (the program consults no policy once a mapping has latched).
    pub fn awaiting_policy(&self) -> Option<KernelLatch> {
        match self.mode {
            PathMode::Kernel(k) if k.awaiting => Some(k),
            _ => None,
        }
    }
}

/// The RTP mappings (inside → outside and back, slot 0) for a stream whose relay RTP endpoints
/// are `relay` (inside, outside: bind address and RTP port) and whose peers are `peers`, at `now`: none unless both peers are
/// latched after their SDP was known (a provisional latch stays in userspace) and everything is
/// one address family (XDP cannot change header sizes). RTCP stays in userspace for its
/// reports.
pub fn desired(
    settings: &RelaySettings,
    relay: [SocketAddr; 2],
    peers: &[PeerState; 2],
    now: Instant,
) -> Option<[FastPath; 2]> {
    let pbx = peers[0].latch[0].confirmed()?;
    let carrier = peers[1].latch[0].confirmed()?;
    let v4 = relay[0].is_ipv4();
    if relay[1].is_ipv4() != v4 || pbx.is_ipv4() != v4 || carrier.is_ipv4() != v4 {
        return None;
    }
    // Inside the re-latch window other sources go up to userspace, which may re-latch (the
    // table's tick makes the mapping strict once the window has closed).
    let strict = |i: usize| settings.strict_source && !peers[i].latch[0].window_open(now);
    let [inside, outside] = relay;
    Some([
        FastPath {
            ingress: inside,
            expect: pbx,
            egress: outside,
            dst: carrier,
            strict: strict(0),
            slot: 0,
            generation: 0,
            mode: PathMode::Relay,
        },
        FastPath {
            ingress: outside,
            expect: carrier,
            egress: inside,
            dst: pbx,
            strict: strict(1),
            slot: 0,
            generation: 0,
            mode: PathMode::Relay,
        },
    ])
}

/// Whether a socketless stream's mappings can express its peers: one address family throughout
/// (XDP cannot change header sizes), RTCP on the same kind of port on both legs (the program
/// cannot split rtcp-mux from separate RTCP), and at most one configured media network per leg
/// (the program's policy has one entry for it).
pub fn kernel_capable(settings: &RelaySettings, peers: &[PeerState; 2]) -> bool {
    let v4 = settings.inside.is_ipv4();
    let described = |p: &PeerState| p.latch[0].sdp().is_some();
    settings.outside.is_ipv4() == v4
        && (!described(&peers[0]) || !described(&peers[1]) || peers[0].mux == peers[1].mux)
        && peers.iter().all(|p| p.allowed.networks.len() <= 1)
        && peers
            .iter()
            .flat_map(|p| &p.latch)
            .filter_map(|l| l.latched().or(l.sdp()))
            .all(|a| a.is_ipv4() == v4 || a.port() == 0)
}

/// The mappings of a socketless stream whose relay RTP endpoints are `relay` (inside, outside):
/// RTP both ways, and RTCP both ways on the port above unless both peers use rtcp-mux. A peer
/// not latched yet gets an awaiting mapping with its allowed sources; a latched one a strict
/// mapping to its latch (the kernel makes every latch strict). A peer with neither latch nor
/// SDP is a destination of port 0 (the program drops towards it).
pub fn kernel(relay: [SocketAddr; 2], peers: &[PeerState; 2]) -> Vec<FastPath> {
    let unspecified = SocketAddr::new(
        if relay[0].is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        },
        0,
    );
    let kinds = if peers[0].mux && peers[1].mux { 1 } else { 2 };
    let mut out = Vec::with_capacity(2 * kinds);
    for kind in 0..kinds {
        for i in 0..2 {
            let j = 1 - i;
            let relay =
                |leg: usize| SocketAddr::new(relay[leg].ip(), relay[leg].port() + kind as u16);
            let latch = &peers[i].latch[kind];
            let full = |ip: IpAddr| if ip.is_ipv4() { 32 } else { 128 };
            let allowed = &peers[i].allowed;
            let sources = [
                latch.sdp().map(|a| (a.ip(), full(a.ip()))),
                allowed.signaling.map(|ip| (ip, full(ip))),
                allowed.networks.first().map(|n| (n.addr(), n.prefix_len())),
            ];
            out.push(FastPath {
                ingress: relay(i),
                expect: latch.latched().unwrap_or(unspecified),
                egress: relay(j),
                dst: peers[j].latch[kind].target().unwrap_or(unspecified),
                strict: true,
                slot: 0,
                generation: 0,
                mode: PathMode::Kernel(KernelLatch {
                    awaiting: latch.latched().is_none(),
                    sources,
                    reverse: relay(j),
                }),
            });
        }
    }
    out
}

/// Pass-through mappings for every relay port (RTP and the port above, both sides) of a
/// socket-bound stream whose relay RTP endpoints are `relay`, so that the program's relay-range
/// drop spares them.
pub fn pass(relay: [SocketAddr; 2]) -> [FastPath; 4] {
    let at = |leg: usize, k: u16| {
        let a = SocketAddr::new(relay[leg].ip(), relay[leg].port() + k);
        FastPath {
            ingress: a,
            expect: a,
            egress: a,
            dst: a,
            strict: false,
            slot: NO_SLOT,
            generation: 0,
            mode: PathMode::Pass,
        }
    };
    [at(0, 0), at(1, 0), at(0, 1), at(1, 1)]
}
