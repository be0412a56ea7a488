//! One stream's packet path: the state the relay touches for every datagram (the peers'
//! latches and counters, the SRTP contexts, the payload-type rewrites, terminated DTMF) and
//! the decision it makes for each one.
//!
//! This is the data plane's half of a stream. The control half (ports, quotas, fast-path
//! mappings, the media timeout, snapshots) stays in [`MediaTable`](super::MediaTable), which
//! configures a path through its setters and learns what a packet changed from the
//! [`PathVerdict`] it returns: a latch that moved (the fast path follows it, the call layer
//! persists it) and digits that ended (SIP INFO). Nothing here knows other streams, so a relay
//! worker decides a stream's packets holding that stream alone ([`PathHandle`]).

use std::{net::SocketAddr, time::Instant};

use super::{
    Side,
    crypto::StreamSrtp,
    dtmf::Received,
    latch::{DropReason, Rules, Verdict},
    payload,
    peer::PeerState,
    rtp,
};
use crate::{dtmf::Detected, srtp::SrtpError};

/// The RTP or the RTCP socket of a relay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPort {
    /// The even port.
    Rtp = 0,
    /// The odd port above (unused with rtcp-mux).
    Rtcp = 1,
}

/// Where a datagram arrived: from `src` on `stream`'s `leg` relay socket `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The stream the socket belongs to.
    pub stream: super::stream_key::StreamKey,
    /// The side the socket faces.
    pub leg: Side,
    /// RTP or RTCP socket.
    pub port: RelayPort,
    /// The sender.
    pub src: SocketAddr,
}

/// What to do with one datagram received on a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketAction {
    /// Send the first `len` bytes of the (possibly transformed) buffer from the other leg's
    /// `port` socket to `to`.
    Forward {
        /// The socket of the other leg to send from.
        port: RelayPort,
        /// The peer on the other leg.
        to: SocketAddr,
        /// The packet moved the latch from another source (NAT rebinding, loose source).
        relatched: bool,
        /// Bytes to send (SRTP unprotect shortens a packet, protect lengthens it).
        len: usize,
    },
    /// Drop it.
    Drop(PacketDrop),
    /// The relay took it: a telephone-event whose digit goes on as SIP INFO, or audio held
    /// back while a generated event plays (`media/dtmf.rs`). Not a drop: nothing was lost.
    Consumed,
}

/// Why a packet was dropped (the `reason` label of `sbc_media_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketDrop {
    /// The latching policy refused the source.
    Refused(DropReason),
    /// The other leg has no address yet (no SDP, no latch).
    NoDestination,
    /// The stream is gone (released while the packet was in flight).
    UnknownStream,
    /// SRTP unprotect (from an encrypted leg) or protect (toward one) failed.
    Srtp(SrtpError),
    /// A leg of the stream negotiates SRTP and its keys are not settled yet: nothing crosses
    /// (a plain packet would reach an SRTP link in clear).
    SrtpPending,
}

/// Every SRTP drop label (registered at start so the series exist before the first drop).
pub const SRTP_DROP_LABELS: [&str; 5] = [
    "srtp_auth_failed",
    "srtp_replayed",
    "srtp_key_exhausted",
    "srtp_malformed",
    "srtp_pending",
];

impl PacketDrop {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            PacketDrop::Refused(r) => r.label(),
            PacketDrop::NoDestination => "no_destination",
            // Counted with the packets no peer can receive.
            PacketDrop::UnknownStream => "no_destination",
            PacketDrop::Srtp(SrtpError::AuthFailed) => SRTP_DROP_LABELS[0],
            PacketDrop::Srtp(SrtpError::Replayed) => SRTP_DROP_LABELS[1],
            PacketDrop::Srtp(SrtpError::KeyExhausted) => SRTP_DROP_LABELS[2],
            PacketDrop::Srtp(_) => SRTP_DROP_LABELS[3],
            PacketDrop::SrtpPending => SRTP_DROP_LABELS[4],
        }
    }
}

/// What one datagram did: the action for the runtime, and what the control half must learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathVerdict {
    /// Forward, drop or consumed.
    pub action: PacketAction,
    /// The RTP latch of the sending leg moved (its first packet, or a re-latch): the fast
    /// path and the persisted call state follow it.
    pub latched: bool,
    /// Digits whose telephone-events ended with this packet (terminated DTMF).
    pub digits: [Option<Detected>; 2],
}

impl PathVerdict {
    /// Whether the table must learn something from this packet (a moved latch, digits).
    pub fn has_news(&self) -> bool {
        self.latched || self.digits.iter().any(Option::is_some)
    }

    const fn only(action: PacketAction) -> Self {
        Self {
            action,
            latched: false,
            digits: [None; 2],
        }
    }
}

/// A generated packet, in the caller's buffer: send its first `len` bytes from the RTP socket
/// facing `toward` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// The leg it goes to (its relay socket sends it).
    pub toward: Side,
    /// The peer.
    pub to: SocketAddr,
    /// Bytes (SRTP-protected when the leg is encrypted).
    pub len: usize,
}

/// A stream's path as the control half and the data plane share it: the table configures it
/// and reads its latches and counters; the relay thread that holds the stream's sockets
/// decides its packets, taking the lock once per batch of that stream, never the table's.
/// Lock order: the table's holder first, then a path (a relay thread never takes the table
/// while it holds a path).
#[derive(Debug, Clone, Default)]
pub struct PathHandle(std::sync::Arc<parking_lot::Mutex<StreamPath>>);

impl PathHandle {
    /// A handle on a new path.
    pub fn new(path: StreamPath) -> Self {
        Self(std::sync::Arc::new(parking_lot::Mutex::new(path)))
    }

    /// The path, locked.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, StreamPath> {
        self.0.lock()
    }
}

/// The per-packet state of one stream. See the module docs.
#[derive(Debug, Default)]
pub struct StreamPath {
    /// The peers, indexed by [`Side::index`].
    pub peers: [PeerState; 2],
    /// SRTP contexts per leg (plain RTP when none is set).
    pub srtp: StreamSrtp,
    /// Payload-type rewrites per direction (`payload.rs`).
    pub payload: super::StreamPayloadMaps,
    /// DTMF the relay generates and detects on this stream (`media/dtmf.rs`).
    pub dtmf: super::dtmf::StreamDtmfState,
    /// The table released the stream: a relay thread that has not yet taken its sockets
    /// away drops what still arrives (its ports are back in the pool).
    pub released: bool,
}

impl StreamPath {
    /// Whether the path is plain forwarding the XDP program can do: no SRTP, no payload-type
    /// rewrite, no terminated DTMF.
    pub fn plain(&self) -> bool {
        !self.srtp.active() && self.payload.is_identity() && !self.dtmf.active()
    }

    /// One datagram `buf[..len]` arrived on `leg`'s `port` socket from `src` at `now`:
    /// unprotects it if `leg` is encrypted (before the latch sees it), applies the latching
    /// policy under `rules`, counts it, rewrites payload types, terminates DTMF, protects it
    /// if the other leg is encrypted, and says where it goes. The transforms work in place;
    /// `buf` should have [`HEADROOM`] bytes behind the datagram for the SRTP trailer.
    ///
    /// [`HEADROOM`]: crate::media::crypto::HEADROOM
    pub fn handle(
        &mut self,
        now: Instant,
        rules: Rules,
        (leg, port, src): (Side, RelayPort, SocketAddr),
        buf: &mut [u8],
        len: usize,
    ) -> PathVerdict {
        if self.released {
            return PathVerdict::only(PacketAction::Drop(PacketDrop::UnknownStream));
        }
        let len = len.min(buf.len());
        let (from, to) = (leg.index(), leg.other().index());
        // The port tells RTCP from RTP; the bytes only when the sender multiplexes both on one
        // port (RFC 5761 §4). Without rtcp-mux a datagram on the RTP port is the stream's own,
        // whatever it looks like: a UDPTL sequence number of 0x80C8 reads as an RTCP header.
        let is_rtcp =
            port == RelayPort::Rtcp || (self.peers[from].mux && rtp::is_rtcp(&buf[..len]));
        if self.srtp.awaiting_keys() {
            self.peers[from].dropped += 1;
            return PathVerdict::only(PacketAction::Drop(PacketDrop::SrtpPending));
        }
        // SRTP is authenticated before anything else, latching included.
        let len = match self.srtp.inbound(leg, is_rtcp, buf, len) {
            Ok(n) => n,
            Err(e) => {
                self.peers[from].dropped += 1;
                return PathVerdict::only(PacketAction::Drop(PacketDrop::Srtp(e)));
            }
        };
        let p = &mut self.peers[from];
        let verdict = p.latch[port as usize].on_packet(src, now, &p.allowed, rules);
        if let Verdict::Drop(reason) = verdict {
            p.dropped += 1;
            p.note_refused(src, reason);
            return PathVerdict::only(PacketAction::Drop(PacketDrop::Refused(reason)));
        }
        let packet = &buf[..len];
        p.packets += 1;
        p.bytes += len as u64;
        p.last_seen = Some(now);
        if is_rtcp {
            if let Some(r) = rtp::parse_report(packet) {
                p.note_report(r);
            }
        } else {
            p.note_rtp(packet, now);
        }
        let dst = &self.peers[to];
        // RTCP goes to the peer's RTCP port, or its RTP port when it multiplexes.
        let (target, out) = if is_rtcp && !dst.mux {
            (dst.latch[1].target(), RelayPort::Rtcp)
        } else {
            (dst.latch[0].target(), RelayPort::Rtp)
        };
        let relatched = matches!(verdict, Verdict::Latched { previous: Some(_) });
        // DTMF the relay terminates: a telephone-event of a leg that takes RFC 4733 toward an
        // INFO side is read and consumed. Read in the sender's own payload-type numbers, so
        // before the rewrite below (a leg's event type may have another number on the other
        // leg: `fuzzing/media.rs` found events forwarded when both were on).
        let mut consumed = false;
        let mut digits = [None; 2];
        if !is_rtcp
            && self.dtmf.active()
            && let Received::Consumed(found) = self.dtmf.receive(now, from, &buf[..len])
        {
            consumed = true;
            digits = found;
        }
        if !consumed && !is_rtcp && target.is_some() {
            // The receiving leg's payload-type numbers (before SRTP protects the header).
            payload::rewrite(self.payload.from_leg(from), &mut buf[..len]);
            // Audio toward a leg that gets generated events waits while one plays, and has
            // its sequence numbers shifted past them.
            if self.dtmf.active() {
                consumed = !self.dtmf.forward(now, to, &mut buf[..len]);
            }
        }
        let action = match target {
            _ if consumed => PacketAction::Consumed,
            Some(to) => match self.srtp.outbound(leg.other(), is_rtcp, buf, len) {
                Ok(len) => PacketAction::Forward {
                    port: out,
                    to,
                    relatched,
                    len,
                },
                Err(e) => {
                    // Counted against the peer it came from, like every drop on the way.
                    self.peers[from].dropped += 1;
                    PacketAction::Drop(PacketDrop::Srtp(e))
                }
            },
            None => {
                self.peers[from].dropped += 1;
                PacketAction::Drop(PacketDrop::NoDestination)
            }
        };
        PathVerdict {
            action,
            latched: matches!(verdict, Verdict::Latched { .. }) && port == RelayPort::Rtp,
            digits,
        }
    }

    /// A packet from `leg` could not be sent on (counted against that peer).
    pub fn count_drop(&mut self, leg: Side) {
        self.peers[leg.index()].dropped += 1;
    }

    /// The next generated packet due at `now`, written to `buf` (with
    /// [`HEADROOM`](crate::media::crypto::HEADROOM) for an SRTP trailer); `draw` gives the
    /// random numbers a new event needs. Packets toward a leg with no address yet, or that
    /// SRTP cannot protect, are skipped (counted as that leg's drops). Call until None.
    pub fn poll_generated(
        &mut self,
        now: Instant,
        draw: &mut dyn FnMut() -> u32,
        buf: &mut [u8],
    ) -> Option<Generated> {
        if self.released {
            return None;
        }
        loop {
            let (i, len) = self.dtmf.poll(now, draw, buf)?;
            let toward = if i == 0 { Side::Inside } else { Side::Outside };
            let Some(to) = self.peers[i].latch[0].target() else {
                self.peers[i].dropped += 1;
                continue;
            };
            match self.srtp.outbound(toward, false, buf, len) {
                Ok(len) => return Some(Generated { toward, to, len }),
                Err(_) => self.peers[i].dropped += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::{StreamDesc, test_origin};

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    const RULES: Rules = Rules {
        strict: true,
        relatch_window: Duration::ZERO,
    };

    /// A path decides its stream's packets alone and tells the control half what moved: the
    /// first packet from the SDP address latches (once), an outsider is refused and counted,
    /// and nothing goes out before the other leg has an address.
    #[test]
    fn a_path_decides_alone_and_reports_what_moved() {
        let now = test_origin();
        let mut path = StreamPath::default();
        path.peers[0].set_desc(&StreamDesc::new("10.0.0.5".parse().expect("ip"), 4000));
        let mut buf = [0x80u8; 200];
        let first = path.handle(
            now,
            RULES,
            (Side::Inside, RelayPort::Rtp, sa("10.0.0.5:4000")),
            &mut buf,
            172,
        );
        assert_eq!(first.action, PacketAction::Drop(PacketDrop::NoDestination));
        assert!(first.latched, "the first packet latches the inside leg");
        path.peers[1].set_desc(&StreamDesc::new("203.0.113.9".parse().expect("ip"), 5000));
        let second = path.handle(
            now,
            RULES,
            (Side::Inside, RelayPort::Rtp, sa("10.0.0.5:4000")),
            &mut buf,
            172,
        );
        assert!(
            !second.latched,
            "the same source does not move the latch again"
        );
        assert!(matches!(
            second.action,
            PacketAction::Forward { to, port: RelayPort::Rtp, len: 172, relatched: false } if to == sa("203.0.113.9:5000")
        ));
        let stranger = path.handle(
            now,
            RULES,
            (Side::Inside, RelayPort::Rtp, sa("198.51.100.7:4000")),
            &mut buf,
            172,
        );
        assert!(matches!(
            stranger.action,
            PacketAction::Drop(PacketDrop::Refused(_))
        ));
        assert!(!stranger.latched);
        assert_eq!(path.peers[0].packets, 2);
        assert_eq!(
            path.peers[0].dropped, 2,
            "no destination, then the stranger"
        );
        assert_eq!(path.peers[0].latch[0].latched(), Some(sa("10.0.0.5:4000")));
    }
}
