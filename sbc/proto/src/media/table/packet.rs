//! The packet path: what the table decides about each datagram a relay socket receives.

use super::*;
use crate::{
    media::{dtmf::Received, payload},
    srtp::SrtpError,
};

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
    pub stream: StreamKey,
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

impl MediaTable {
    /// One datagram `buf[..len]` arrived (see [`Arrival`]) at `now`: unprotects it if `leg` is encrypted (before the latch sees it), applies the
    /// latching policy, counts it, protects it if the other leg is encrypted, and says where it
    /// goes. The transforms work in place; `buf` should have [`HEADROOM`] bytes behind the
    /// datagram for the SRTP trailer.
    ///
    /// [`HEADROOM`]: crate::media::crypto::HEADROOM
    pub fn handle_packet(
        &mut self,
        now: Instant,
        arrival: Arrival,
        buf: &mut [u8],
        len: usize,
    ) -> PacketAction {
        let Arrival {
            stream,
            leg,
            port,
            src,
        } = arrival;
        let rules = self.settings.rules();
        let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        else {
            return PacketAction::Drop(PacketDrop::UnknownStream);
        };
        let len = len.min(buf.len());
        let (from, to) = (leg_idx(leg), leg_idx(leg.other()));
        // The port tells RTCP from RTP; the bytes only when the sender multiplexes both on one
        // port (RFC 5761 §4). Without rtcp-mux a datagram on the RTP port is the stream's own,
        // whatever it looks like: a UDPTL sequence number of 0x80C8 reads as an RTCP header.
        let is_rtcp = port == RelayPort::Rtcp || (st.peers[from].mux && rtp::is_rtcp(&buf[..len]));
        if st.srtp.awaiting_keys() {
            st.peers[from].dropped += 1;
            return PacketAction::Drop(PacketDrop::SrtpPending);
        }
        // SRTP is authenticated before anything else, latching included.
        let len = match st.srtp.inbound(leg, is_rtcp, buf, len) {
            Ok(n) => n,
            Err(e) => {
                st.peers[from].dropped += 1;
                return PacketAction::Drop(PacketDrop::Srtp(e));
            }
        };
        let p = &mut st.peers[from];
        let verdict = p.latch[port as usize].on_packet(src, now, &p.allowed, rules);
        if let Verdict::Drop(reason) = verdict {
            p.dropped += 1;
            p.note_refused(src, reason);
            return PacketAction::Drop(PacketDrop::Refused(reason));
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
        let dst = &st.peers[to];
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
        if !is_rtcp
            && st.dtmf.active()
            && let Received::Consumed(found) = st.dtmf.receive(now, from, &buf[..len])
        {
            consumed = true;
            for d in found.into_iter().flatten() {
                push_event(
                    &mut self.events,
                    MediaEvent::Dtmf {
                        session: stream.session,
                        leg,
                        digit: d.digit,
                        duration_ms: d.duration_ms,
                    },
                );
            }
        }
        if !consumed && !is_rtcp && target.is_some() {
            // The receiving leg's payload-type numbers (before SRTP protects the header).
            payload::rewrite(st.payload.from_leg(from), &mut buf[..len]);
            // Audio toward a leg that gets generated events waits while one plays, and has
            // its sequence numbers shifted past them.
            if st.dtmf.active() {
                consumed = !st.dtmf.forward(now, to, &mut buf[..len]);
            }
        }
        let action = match target {
            _ if consumed => PacketAction::Consumed,
            Some(to) => match st.srtp.outbound(leg.other(), is_rtcp, buf, len) {
                Ok(len) => PacketAction::Forward {
                    port: out,
                    to,
                    relatched,
                    len,
                },
                Err(e) => {
                    // Counted against the peer it came from, like every drop on the way.
                    st.peers[from].dropped += 1;
                    PacketAction::Drop(PacketDrop::Srtp(e))
                }
            },
            None => {
                st.peers[from].dropped += 1;
                PacketAction::Drop(PacketDrop::NoDestination)
            }
        };
        if matches!(verdict, Verdict::Latched { .. }) && port == RelayPort::Rtp {
            self.sync_fast_path(now, stream);
            self.latched.insert(stream.session);
            if let Some(s) = self.sessions.get_mut(&stream.session) {
                s.version += 1;
            }
        }
        action
    }

    /// A packet from `stream`'s `leg` could not be sent on (counted against that peer).
    pub fn count_drop(&mut self, stream: StreamKey, leg: Side) {
        if let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        {
            st.peers[leg_idx(leg)].dropped += 1;
        }
    }
}
