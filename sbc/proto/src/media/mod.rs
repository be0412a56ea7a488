//! The contract between the call layer (B2BUA) and the media relay.
//!
//! The B2BUA drives media through [`MediaControl`], one session per call, one stream per SDP
//! `m=` line (in order):
//!
//! 1. **Offer** arrives from one leg: [`MediaControl::allocate`] reserves relay ports on both
//!    sides and returns, per stream, the SBC's relay endpoints. The B2BUA writes the endpoint of
//!    the *other* leg into the SDP it forwards (an offer from [`Side::Inside`] goes to the carrier
//!    with the [`StreamRelay::outside`] address and ports).
//! 2. **Answer** arrives from the other leg: [`MediaControl::commit`] records the answerer's
//!    addresses; media flows (and is latched, see below).
//! 3. **Re-offer** (re-INVITE / UPDATE): [`MediaControl::update`] keeps the allocated ports,
//!    records the new addresses, and drops a latch when the peer's SDP address changed.
//!    The answer to a re-offer is committed with [`MediaControl::commit`] again. Extra `m=`
//!    lines in a re-offer get new ports.
//! 4. **End** (BYE, CANCEL, failure): [`MediaControl::release`] frees the ports.
//!
//! Errors carry the SIP reaction ([`MediaError::status_code`]): the call (or the re-offer) is
//! rejected with that status, never panicked on.
//!
//! **Latching** (symmetric RTP): SDP addresses of NAT'd peers are often private, so the relay
//! sends to the SDP address only until the peer's first packet arrives; from then on it sends to
//! the address that packet came from. Only an *allowed* source may latch a leg: the address the
//! leg's SDP names, the leg's signaling peer ([`MediaPeers`], e.g. a NAT'd PBX's public
//! address), or a network the media layer has configured for the side or trunk. The call layer
//! therefore tells [`MediaControl::allocate`] who the call's peers are, and
//! [`MediaControl::set_peers`] when that changes (failover to another trunk).
//!
//! The media layer reports back through [`MediaControl::poll_event`] (drain it after every call
//! and whenever the runtime signals new events): [`MediaEvent::Timeout`] means no media flowed in
//! either direction for the configured time, and the B2BUA should end the call (BYE both legs).
//!
//! **The relay's state** lives here too, without I/O: [`MediaTable`] (in [`table`]) holds the
//! sessions, the port pools ([`pool`]), the latching policy ([`latch`], [`policy`]), the fast-path
//! statistics slots ([`slots`]), the media timeout ([`activity`]) and the XDP mappings each
//! stream should have ([`fast_path`]). What every packet touches is each stream's
//! [`path::StreamPath`]: the peers' latches and counters, the SRTP contexts ([`crypto`]), the
//! payload-type rewrites and terminated DTMF. It takes `now` as an argument everywhere and emits
//! [`MediaCommand`]s that the runtime (`sbc::media::manager`) executes: bind or close relay
//! sockets, install, update or remove mappings, read counters. The runtime's `MediaManager`
//! implements [`MediaControl`] over it, so the call layer is unchanged.
//!
//! **For tests** (`cfg(test)` or the `sim-media` feature): `SimMedia` (`sim.rs`) is the real
//! table behind [`MediaControl`] with its commands executed in memory and `MediaManager`'s
//! failure handling, which the B2BUA simulations, the B2BUA fuzz target and the workload
//! benchmark run on.

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
pub mod rtp;
pub mod settings;
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

/// The result of [`MediaControl::allocate`].
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
    /// end the call (BYE both legs), then [`MediaControl::release`] it.
    Timeout(SessionId),
    /// A leg's RTP latch moved (its first packet, or a re-latch): where the relay sends is
    /// part of the call's persisted state, which changed without a SIP message.
    Latched(SessionId),
    /// The relay lost a stream of the session: ports the peers were already told could not be
    /// bound (another program took one while the stream was socketless, or after a restart).
    /// Media to them goes nowhere: end the call (BYE both legs), then
    /// [`MediaControl::release`] it.
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

/// The four verbs the call layer uses, plus the event drain. See the module docs for the order.
///
/// Every method that changes a session takes `now`, the core's time for the current turn
/// (the driver reads the clock once per turn): latch windows, activity and timeouts are
/// measured on the same clock as the signaling timers, and simulations drive both.
pub trait MediaControl {
    /// Offer from `from` with `streams`: reserves relay ports on both sides for each stream.
    /// `peers` names the call's signaling peers and trunk (latching policy, port quota).
    fn allocate(
        &mut self,
        now: std::time::Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError>;

    /// The call's peers changed (failover to another trunk or server): later latches follow
    /// the new peers, and the ports count against the new trunk's quota from now on.
    fn set_peers(&mut self, session: SessionId, peers: &MediaPeers);

    /// Answer from `from`: records the answerer's addresses. Returns the relay endpoints again
    /// (unchanged) for convenience.
    fn commit(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError>;

    /// Re-offer from `from`: keeps the ports of existing streams, allocates for new ones,
    /// records the new addresses and re-latches a peer whose SDP address or port changed.
    fn update(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError>;

    /// Call ended: frees the ports and removes fast-path mappings. Unknown ids are ignored
    /// (release is idempotent).
    fn release(&mut self, now: std::time::Instant, session: SessionId);

    /// The next event for the call layer, if any.
    fn poll_event(&mut self) -> Option<MediaEvent>;

    /// `leg`'s streams (by `m=` index) for which SRTP was just offered or accepted: they relay
    /// nothing until [`set_crypto`](Self::set_crypto) settles their keys (a plain packet must
    /// not reach an SRTP link in clear). A relay without SRTP accepts only `false`s.
    fn expect_crypto(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        leg: Side,
        secure: &[bool],
    ) -> Result<(), MediaError> {
        let _ = (now, session, leg);
        if secure.iter().any(|s| *s) {
            Err(MediaError::Unavailable("no SRTP in this relay".into()))
        } else {
            Ok(())
        }
    }

    /// The SRTP keys of `leg`'s streams (by `m=` index; `None`: plain RTP on that leg), set
    /// once an answer settled them and again after every re-negotiation: a key that differs
    /// from the current one gets a new crypto context (re-key), an equal one keeps it (and its
    /// ROC). A relay without SRTP accepts only `None`s.
    fn set_crypto(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        leg: Side,
        keys: &[Option<crate::srtp::StreamKeys>],
    ) -> Result<(), MediaError> {
        let _ = (now, session, leg);
        if keys.iter().all(Option::is_none) {
            Ok(())
        } else {
            Err(MediaError::Unavailable("no SRTP in this relay".into()))
        }
    }

    /// A number that changes whenever [`snapshot`](Self::snapshot) of `session` would: the
    /// call layer skips building the snapshot of a call whose state did not change. `None`:
    /// not tracked (the snapshot is built and compared every time).
    fn state_version(&self, session: SessionId) -> Option<u64> {
        let _ = session;
        None
    }

    /// The session as it would be restored after a restart (`media/snapshot.rs`); `None`: this
    /// relay cannot restore sessions (the call is then not restorable).
    fn snapshot(&self, session: SessionId) -> Option<crate::media::snapshot::MediaSnapshot> {
        let _ = session;
        None
    }

    /// Re-installs a session from its snapshot with the same relay ports (after a restart);
    /// returns its id now (a relay may give it another, e.g. that of the session it adopted
    /// from the fast path). Refused when this relay cannot restore or a port is taken: the
    /// call is then ended on both legs.
    fn restore(
        &mut self,
        now: std::time::Instant,
        snapshot: &crate::media::snapshot::MediaSnapshot,
    ) -> Result<SessionId, MediaError> {
        let _ = (now, snapshot);
        Err(MediaError::Unavailable(
            "this relay restores no sessions".into(),
        ))
    }

    /// The legs whose DTMF the relay terminates, per stream (by `m=` index), set after every
    /// answer (`dtmf.rs`: generated toward them, detected from them). A relay that cannot
    /// accepts only streams that terminate none.
    fn set_dtmf(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        dtmf: &[dtmf::StreamDtmf],
    ) -> Result<(), MediaError> {
        let _ = (now, session);
        if dtmf.iter().all(dtmf::StreamDtmf::is_none) {
            Ok(())
        } else {
            Err(MediaError::Unavailable(
                "no DTMF interworking in this relay".into(),
            ))
        }
    }

    /// The payload-type rewrites of the session's streams (by `m=` index), set after every
    /// answer (`payload.rs`). A relay that cannot rewrite accepts only identity maps.
    fn set_payload_maps(
        &mut self,
        now: std::time::Instant,
        session: SessionId,
        maps: &[StreamPayloadMaps],
    ) -> Result<(), MediaError> {
        let _ = (now, session);
        if maps.iter().all(StreamPayloadMaps::is_identity) {
            Ok(())
        } else {
            Err(MediaError::Unavailable(
                "no payload-type rewriting in this relay".into(),
            ))
        }
    }
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
