//! Neighbour priming for the XDP fast path. The program forwards a packet only when
//! `bpf_fib_lookup` finds the next hop's link-layer address; for a peer whose ARP/ND entry is
//! cold it gets `NO_NEIGH` and passes the packet up, where no socket takes it (socketless
//! streams): the first packets toward a new media peer are lost until something resolves it.
//! Nothing in the kernel does, since the relayed packets never reach the neighbour layer.
//!
//! So when a mapping that forwards toward a peer is installed, the SBC asks the kernel to
//! resolve that peer's next hop: an `RTM_GETROUTE` for the peer gives the egress interface and
//! gateway (if any), then an `RTM_NEWNEIGH` with `NTF_USE` (and `NLM_F_CREATE`) creates the
//! entry if needed and triggers resolution exactly as a transmitted packet would
//! (`neigh_event_send`: a fresh entry goes INCOMPLETE and is probed, a stale one is
//! re-confirmed, a reachable one is left alone). No datagram is sent to the peer, and no entry
//! is pinned: the kernel's timers age it like any other.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
        setsockopt, socket, sockopt,
    },
    time::TimeVal,
};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NDA_LLADDR: u16 = 2;
/// Neighbour states whose link-layer address is usable: REACHABLE, STALE, DELAY, PROBE, NOARP,
/// PERMANENT (`include/uapi/linux/neighbour.h`); not INCOMPLETE, FAILED or NONE.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTN_UNICAST: u8 = 1;
const NDA_DST: u16 = 1;
const NTF_USE: u8 = 0x1;
/// Header sizes: `nlmsghdr`, `rtmsg`, `ndmsg`.
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;
const NDMSG: usize = 12;
/// The kernel answers a route lookup at once; a reply that takes longer is not coming.
const REPLY_TIMEOUT: Duration = Duration::from_millis(100);
/// Peers primed this recently are not primed again (a call installs up to four mappings
/// toward two peers, and a burst of calls often shares a media gateway).
const RECENT: Duration = Duration::from_secs(1);
/// How many recently primed peers are remembered for [`RECENT`].
const RECENT_PEERS: usize = 16;

/// Why a peer could not be primed. The fast path still works once the neighbour resolves by
/// other means; only the first packets may be lost.
#[derive(Debug, thiserror::Error)]
pub enum PrimeError {
    /// The netlink socket failed.
    #[error("netlink: {0}")]
    Netlink(#[from] nix::Error),
    /// The kernel refused a request (errno).
    #[error("netlink request refused: errno {0}")]
    Refused(i32),
    /// The kernel's answer could not be read.
    #[error("malformed netlink reply")]
    Malformed,
}

/// What priming did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primed {
    /// The next hop's resolution was triggered (or it was already resolved).
    Resolving,
    /// Nothing to resolve: the peer is local, unreachable, a broadcast or multipath route.
    NotNeeded,
    /// Primed within the last [`RECENT`]; not asked again.
    Recent,
}

/// A netlink route socket for priming neighbours.
#[derive(Debug)]
pub struct NeighbourPrimer {
    fd: OwnedFd,
    seq: u32,
    recent: Vec<(IpAddr, Instant)>,
}

impl NeighbourPrimer {
    /// Opens the socket.
    pub fn new() -> Result<Self, PrimeError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        let timeout = TimeVal::new(0, REPLY_TIMEOUT.as_micros() as _);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
        Ok(Self {
            fd,
            seq: 0,
            recent: Vec::with_capacity(RECENT_PEERS),
        })
    }

    /// Triggers resolution of the next hop toward `peer`, at `now`.
    pub fn prime(&mut self, peer: IpAddr, now: Instant) -> Result<Primed, PrimeError> {
        let peer = peer.to_canonical();
        if peer.is_unspecified() || peer.is_multicast() || peer.is_loopback() {
            return Ok(Primed::NotNeeded);
        }
        self.recent
            .retain(|(_, at)| now.saturating_duration_since(*at) < RECENT);
        if self.recent.iter().any(|(ip, _)| *ip == peer) {
            return Ok(Primed::Recent);
        }
        let Some((ifindex, next_hop)) = self.route(peer)? else {
            return Ok(Primed::NotNeeded);
        };
        self.use_neighbour(ifindex, next_hop)?;
        if self.recent.len() >= RECENT_PEERS {
            self.recent.remove(0);
        }
        self.recent.push((peer, now));
        Ok(Primed::Resolving)
    }

    /// The egress interface and the next hop's link-layer address toward `peer`, if the
    /// route is unicast and the neighbour entry holds a usable address (the AF_XDP relay
    /// writes frames itself). `None` otherwise: the caller sends through a socket, which also
    /// makes the kernel resolve the neighbour.
    pub fn next_hop_mac(&mut self, peer: IpAddr) -> Result<Option<(u32, [u8; 6])>, PrimeError> {
        let peer = peer.to_canonical();
        let Some((ifindex, next_hop)) = self.route(peer)? else {
            return Ok(None);
        };
        let (family, _) = family(next_hop);
        let mut body = vec![0u8; NDMSG];
        body[0] = family;
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        attr(&mut body, NDA_DST, &octets(next_hop));
        let seq = self.request(RTM_GETNEIGH, NLM_F_REQUEST, &body)?;
        let payload = match self.reply(seq)? {
            Reply::Message(RTM_NEWNEIGH, payload) => payload,
            // No entry (ENOENT) or another answer: not resolved.
            _ => return Ok(None),
        };
        let state = payload
            .get(8..10)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or(PrimeError::Malformed)?;
        if state & NUD_USABLE == 0 {
            return Ok(None);
        }
        let mac = attrs(payload.get(NDMSG..).unwrap_or(&[]))
            .find(|(kind, _)| *kind == NDA_LLADDR)
            .and_then(|(_, v)| <[u8; 6]>::try_from(v).ok());
        Ok(mac.map(|m| (ifindex, m)))
    }

    /// The egress interface and next hop (gateway or the peer itself) of a unicast route to
    /// `peer`; `None` for local, unreachable or multipath routes.
    fn route(&mut self, peer: IpAddr) -> Result<Option<(u32, IpAddr)>, PrimeError> {
        let (family, bits) = family(peer);
        let mut body = vec![0u8; RTMSG];
        body[0] = family;
        body[1] = bits;
        attr(&mut body, RTA_DST, &octets(peer));
        let seq = self.request(RTM_GETROUTE, NLM_F_REQUEST, &body)?;
        let (kind, payload) = match self.reply(seq)? {
            Reply::Message(kind, payload) => (kind, payload),
            // No route: nothing to resolve.
            Reply::Error(_) => return Ok(None),
            Reply::Ack => return Err(PrimeError::Malformed),
        };
        if kind != RTM_NEWROUTE || payload.len() < RTMSG || payload[7] != RTN_UNICAST {
            return Ok(None);
        }
        let (mut oif, mut gateway) = (None, None);
        for (kind, value) in attrs(&payload[RTMSG..]) {
            match kind {
                RTA_OIF => oif = value.try_into().ok().map(u32::from_ne_bytes),
                RTA_GATEWAY => gateway = ip_from(value),
                _ => {}
            }
        }
        Ok(oif.map(|oif| (oif, gateway.unwrap_or(peer))))
    }

    /// `RTM_NEWNEIGH` with `NTF_USE`: create the entry if missing and resolve it.
    fn use_neighbour(&mut self, ifindex: u32, next_hop: IpAddr) -> Result<(), PrimeError> {
        let (family, _) = family(next_hop);
        let mut body = vec![0u8; NDMSG];
        body[0] = family;
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        // ndm_state 0 (NUD_NONE): with NTF_USE the state is not written, only resolution run.
        body[10] = NTF_USE;
        attr(&mut body, NDA_DST, &octets(next_hop));
        let seq = self.request(
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            &body,
        )?;
        match self.reply(seq)? {
            Reply::Ack => Ok(()),
            Reply::Error(errno) => Err(PrimeError::Refused(errno)),
            Reply::Message(..) => Err(PrimeError::Malformed),
        }
    }

    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> Result<u32, PrimeError> {
        self.seq = self.seq.wrapping_add(1);
        let len = u32::try_from(NLMSG_HDR + body.len()).map_err(|_| PrimeError::Malformed)?;
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        Ok(self.seq)
    }

    /// The kernel's reply to request `seq` (older replies, e.g. of a timed-out request, are
    /// skipped).
    fn reply(&mut self, seq: u32) -> Result<Reply, PrimeError> {
        let mut buf = [0u8; 4096];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let data = buf.get(..n).ok_or(PrimeError::Malformed)?;
            if data.len() < NLMSG_HDR {
                return Err(PrimeError::Malformed);
            }
            let field = |at: usize| data.get(at..at + 4).and_then(|b| b.try_into().ok());
            let len = field(0)
                .map(u32::from_ne_bytes)
                .ok_or(PrimeError::Malformed)? as usize;
            let kind = u16::from_ne_bytes([data[4], data[5]]);
            let got = field(8)
                .map(u32::from_ne_bytes)
                .ok_or(PrimeError::Malformed)?;
            let payload = data
                .get(NLMSG_HDR..len.min(data.len()))
                .ok_or(PrimeError::Malformed)?;
            if got != seq {
                continue;
            }
            if kind == NLMSG_ERROR {
                let errno = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .ok_or(PrimeError::Malformed)?;
                return Ok(if errno == 0 {
                    Reply::Ack
                } else {
                    Reply::Error(-errno)
                });
            }
            return Ok(Reply::Message(kind, payload.to_vec()));
        }
    }
}

enum Reply {
    Ack,
    Error(i32),
    Message(u16, Vec<u8>),
}

fn family(ip: IpAddr) -> (u8, u8) {
    match ip {
        IpAddr::V4(_) => (libc::AF_INET as u8, 32),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, 128),
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Appends a route attribute (4-byte aligned).
fn attr(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = (4 + value.len()) as u16;
    body.extend_from_slice(&len.to_ne_bytes());
    body.extend_from_slice(&kind.to_ne_bytes());
    body.extend_from_slice(value);
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
}

/// The attributes of a reply, as (type, value); a truncated one ends the list.
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(data.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(data.get(2..4)?.try_into().ok()?);
        let value = data.get(4..len)?;
        data = data.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind & 0x3fff, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding() {
        let mut body = Vec::new();
        attr(&mut body, RTA_DST, &[198, 18, 2, 77]);
        attr(&mut body, 9, &[1, 2, 3]);
        attr(&mut body, RTA_OIF, &7u32.to_ne_bytes());
        let got: Vec<_> = attrs(&body).collect();
        assert_eq!(
            got,
            vec![
                (RTA_DST, &[198u8, 18, 2, 77][..]),
                (9, &[1, 2, 3][..]),
                (RTA_OIF, &7u32.to_ne_bytes()[..])
            ]
        );
        // A truncated attribute ends the walk instead of reading past the buffer.
        assert_eq!(attrs(&body[..body.len() - 2]).count(), 2);
    }
}
