//! The contract between the call layer (B2BUA) and the media relay.
//!
//! The B2BUA drives media through the sans-I/O [`MediaTable`] it is handed for each input
//! (one session per call, one stream per SDP `m=` line, in order). Its verbs change the table
//! and return values; what they need done outside (bind or close relay sockets, write XDP
//! mappings, read counters) they queue as [`MediaCommand`]s, which the driver executes after
//! the input, before anything the input produced is sent. No callback reaches out of the core.
//!
//! 1. **Offer** arrives from one leg: [`MediaTable::allocate`] reserves relay ports on both
//!    sides and returns, per stream, the SBC's relay endpoints. The B2BUA writes the endpoint of
//!    the *other* leg into the SDP it forwards (an offer from [`Side::Inside`] goes to the carrier
//!    with the [`StreamRelay::outside`] address and ports).
//! 2. **Answer** arrives from the other leg: [`MediaTable::commit`] records the answerer's
//!    addresses; media flows (and is latched, see below).
//! 3. **Re-offer** (re-INVITE / UPDATE): [`MediaTable::update`] keeps the allocated ports,
//!    records the new addresses, and drops a latch when the peer's SDP address changed.
//!    The answer to a re-offer is committed with [`MediaTable::commit`] again. Extra `m=`
//!    lines in a re-offer get new ports.
//! 4. **End** (BYE, CANCEL, failure): [`MediaTable::release`] frees the ports.
//!
//! Errors carry the SIP reaction ([`MediaError::status_code`]): the call (or the re-offer) is
//! rejected with that status, never panicked on. The endpoints a verb returns are final: the
//! peers are told them before the commands run. A port that then cannot be bound (another
//! program holds it) cannot move, so the table reports [`MediaEvent::Failed`] and the call
//! ends; warm pairs ([`warm`]) are how a userspace stream gets ports already known to be bound.
//!
//! **Latching** (symmetric RTP): SDP addresses of NAT'd peers are often private, so the relay
//! sends to the SDP address only until the peer's first packet arrives; from then on it sends to
//! the address that packet came from. Only an *allowed* source may latch a leg: the address the
//! leg's SDP names, the leg's signaling peer ([`MediaPeers`], e.g. a NAT'd PBX's public
//! address), or a network the media layer has configured for the side or trunk. The call layer
//! therefore tells [`MediaTable::allocate`] who the call's peers are, and
//! [`MediaTable::set_peers`] when that changes (failover to another trunk).
//!
//! The media layer reports back through [`MediaTable::poll_event`] (drain it after every input
//! and whenever the runtime signals new events): [`MediaEvent::Timeout`] means no media flowed in
//! either direction for the configured time, and the B2BUA should end the call (BYE both legs).
//!
//! **The relay's state** lives in [`MediaTable`] (in [`table`]), without I/O: the sessions, the
//! port pools ([`pool`]), the latching policy ([`latch`], [`policy`]), the fast-path statistics
//! slots ([`slots`]), the media timeout ([`activity`]) and the XDP mappings each stream should
//! have ([`fast_path`]). What every packet touches is each stream's [`path::StreamPath`]: the
//! peers' latches and counters, the SRTP contexts ([`crypto`]), the payload-type rewrites and
//! terminated DTMF. It takes `now` as an argument everywhere. The runtime
//! (`sbc::media::manager`) hands the table to the signaling core for each input and executes
//! the commands afterwards, feeding failures back through the table's `handle_*` methods.
//!
//! **For tests** (`cfg(test)` or the `sim-media` feature): `SimMedia` (`sim.rs`) holds the real
//! table and executes its commands in memory the way the runtime's executor does; the B2BUA
//! simulations, the B2BUA fuzz target and the workload benchmark run on it.

pub mod activity;
pub mod command;
pub mod crypto;
pub mod dtmf;
pub mod fast_path;
pub mod frame;
pub mod installed;
pub mod latch;
pub mod path;
pub mod payload;
pub mod peer;
pub mod policy;
pub mod pool;
pub mod pools;
pub mod rejections;
pub mod rtp;
pub mod settings;
pub mod share;
pub mod slots;
pub mod snapshot;
pub mod stream_key;
pub mod table;
pub mod warm;

use std::net::IpAddr;

/// The origin of simulated time in this module's tests (an `Instant` cannot be made otherwise).
#[cfg(test)]
pub(crate) fn test_origin() -> std::time::Instant {
    #[allow(
        clippy::disallowed_methods,
        reason = "test origin only; time is simulated"
    )]
    std::time::Instant::now()
}

pub use command::MediaCommand;

/// Media legs are named by the side of the SBC they face, as signaling is.
use crate::net::Side;
pub use crypto::StreamSrtp;
pub use fast_path::FastPath;
pub use payload::StreamPayloadMaps;
pub use settings::{RelaySettings, SideAddress, SideAddresses};
pub use share::{MediaShare, SharedQuotas, TrunkPorts};
pub use stream_key::StreamKey;
pub use table::{Arrival, MediaTable, PacketAction, PacketDrop, RelayPort};

/// Media direction attribute of a stream (RFC 8866 §6.7), from the sender's point of view:
/// the SDP layer's own type, so the relay and the offer/answer code speak of one thing.
pub use crate::sdp::Direction;

/// One `m=` line of a peer's SDP, as far as the relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamDesc {
    /// Connection address (`c=`, media-level or session-level).
    pub addr: IpAddr,
    /// RTP port from `m=`; 0 means the stream is disabled (no ports are allocated for it).
    pub rtp_port: u16,
    /// RTCP port from `a=rtcp` if present; otherwise `rtp_port + 1` is implied.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux`: RTCP shares the RTP port.
    pub rtcp_mux: bool,
    /// Direction attribute.
    pub direction: Direction,
}

impl StreamDesc {
    /// A send-receive stream at `addr:rtp_port` with RTCP on the next port.
    pub const fn new(addr: IpAddr, rtp_port: u16) -> Self {
        Self {
            addr,
            rtp_port,
            rtcp_port: None,
            rtcp_mux: false,
            direction: Direction::SendRecv,
        }
    }

    /// The port the peer receives RTCP on.
    pub fn rtcp(&self) -> u16 {
        if self.rtcp_mux {
            self.rtp_port
        } else {
            self.rtcp_port
                .unwrap_or_else(|| self.rtp_port.saturating_add(1))
        }
    }
}

/// One of the SBC's relay endpoints: what goes into SDP sent to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayEndpoint {
    /// Address to write into `c=`.
    pub addr: IpAddr,
    /// Port to write into `m=` (even; 0 for a disabled stream).
    pub rtp_port: u16,
    /// RTCP port (`rtp_port + 1`, or `rtp_port` with rtcp-mux). Write `a=rtcp` only if the
    /// offer had it.
    pub rtcp_port: u16,
}

/// The relay endpoints of one stream on both legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRelay {
    /// Endpoint facing the PBX (put into SDP sent inside).
    pub inside: RelayEndpoint,
    /// Endpoint facing the carrier (put into SDP sent outside).
    pub outside: RelayEndpoint,
}

impl StreamRelay {
    /// The endpoint facing `leg`.
    pub const fn facing(&self, leg: Side) -> RelayEndpoint {
        match leg {
            Side::Inside => self.inside,
            Side::Outside => self.outside,
        }
    }
}

/// Identifies a media session (one call). Opaque, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who a call's legs talk to besides their SDP: the media layer's latching policy allows
/// media from a leg's signaling peer, and a trunk's calls draw from its port quota and may send
/// from its configured media networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaPeers {
    /// The inside leg's signaling peer: where the PBX's request came from, or where the call
    /// to the PBX goes (a NAT'd PBX sends its media from there).
    pub inside: Option<IpAddr>,
    /// The outside leg's signaling peer (the trunk's proxy).
    pub outside: Option<IpAddr>,
    /// Name of the carrier-side trunk; None when the carrier is no configured trunk.
    pub trunk: Option<String>,
}

impl MediaPeers {
    /// The signaling peer of `leg`.
    pub const fn of(&self, leg: Side) -> Option<IpAddr> {
        match leg {
            Side::Inside => self.inside,
            Side::Outside => self.outside,
        }
    }
}

/// The result of [`MediaTable::allocate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The new session.
    pub session: SessionId,
    /// One entry per offered stream, in `m=` order.
    pub streams: Vec<StreamRelay>,
}

/// Why the media layer refused; each maps to the SIP status the call (or re-offer) gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// No relay ports left on a side: 503 Service Unavailable.
    #[error("relay ports exhausted on the {} side", .0.as_str())]
    PortsExhausted(Side),
    /// The trunk's calls already hold its relay port quota: 503 Service Unavailable.
    #[error("relay port quota of trunk {0} exhausted")]
    QuotaExhausted(String),
    /// The offer has no streams or more than the relay accepts: 488 Not Acceptable Here.
    #[error("unacceptable number of streams: {0}")]
    StreamCount(usize),
    /// An address family the relay has no address for on the far side: 488.
    #[error("no {family} relay address on the {} side", leg.as_str())]
    AddressFamily {
        /// The side lacking the address.
        leg: Side,
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
    },
    /// An answer with a different number of streams than the offer (RFC 3264 §6): 488.
    #[error("answer has {got} streams, offer had {want}")]
    StreamMismatch {
        /// Streams in the offer.
        want: usize,
        /// Streams in the answer.
        got: usize,
    },
    /// The session does not exist (already released or never allocated): 481-like; the B2BUA
    /// answers 500 since the dialog itself exists.
    #[error("unknown media session {0}")]
    UnknownSession(SessionId),
    /// The relay could not open its sockets for another reason: 503.
    #[error("relay unavailable: {0}")]
    Unavailable(String),
}

impl MediaError {
    /// The SIP status code to reject the offer with.
    pub const fn status_code(&self) -> u16 {
        match self {
            MediaError::PortsExhausted(_)
            | MediaError::QuotaExhausted(_)
            | MediaError::Unavailable(_) => 503,
            MediaError::StreamCount(_)
            | MediaError::AddressFamily { .. }
            | MediaError::StreamMismatch { .. } => 488,
            MediaError::UnknownSession(_) => 500,
        }
    }
}

/// What the media layer tells the call layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// No media in either direction for the configured time (the hold value while on hold):
    /// end the call (BYE both legs), then [`MediaTable::release`] it.
    Timeout(SessionId),
    /// A leg's RTP latch moved (its first packet, or a re-latch): where the relay sends is
    /// part of the call's persisted state, which changed without a SIP message.
    Latched(SessionId),
    /// The relay lost a stream of the session: ports the peers were already told could not be
    /// bound (another program took one while the stream was socketless, or after a restart).
    /// Media to them goes nowhere: end the call (BYE both legs), then
    /// [`MediaTable::release`] it.
    Failed(SessionId),
    /// A DTMF digit ended in the telephone-events `leg` sent on a stream whose DTMF the relay
    /// terminates (`dtmf.rs`): the call layer sends it as SIP INFO to the other side
    /// (`B2bua::dtmf_detected`). `Digit`'s `Debug` hides the value.
    Dtmf {
        /// The session.
        session: SessionId,
        /// The leg the events came from.
        leg: Side,
        /// The digit.
        digit: crate::dtmf::Digit,
        /// Its duration in milliseconds.
        duration_ms: u32,
    },
}

#[cfg(any(test, feature = "sim-media"))]
mod sim;
#[cfg(any(test, feature = "sim-media"))]
pub use sim::{SimMedia, SimSession};

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn errors_map_to_sip_status() {
        assert_eq!(MediaError::StreamCount(0).status_code(), 488);
        assert_eq!(
            MediaError::StreamMismatch { want: 1, got: 2 }.status_code(),
            488
        );
        assert_eq!(MediaError::PortsExhausted(Side::Outside).status_code(), 503);
        assert_eq!(MediaError::QuotaExhausted("c".into()).status_code(), 503);
    }

    #[test]
    fn rtcp_port_rules() {
        let mut d = StreamDesc::new(ip(1), 4000);
        assert_eq!(d.rtcp(), 4001);
        d.rtcp_port = Some(5000);
        assert_eq!(d.rtcp(), 5000);
        d.rtcp_mux = true;
        assert_eq!(d.rtcp(), 4000);
        assert!(Direction::SendOnly.is_hold());
        assert!(!Direction::RecvOnly.is_hold());
    }
}
