//! The packet path: what the table decides about each datagram a relay socket receives.

use super::*;

/// The RTP or the RTCP socket of a relay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPort {
    /// The even port.
    Rtp = 0,
    /// The odd port above (unused with rtcp-mux).
    Rtcp = 1,
}

/// What to do with one datagram received on a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketAction {
    /// Send it from the other leg's `port` socket to `to`.
    Forward {
        /// The socket of the other leg to send from.
        port: RelayPort,
        /// The peer on the other leg.
        to: SocketAddr,
        /// The packet moved the latch from another source (NAT rebinding, loose source).
        relatched: bool,
    },
    /// Drop it.
    Drop(PacketDrop),
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
}

impl PacketDrop {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            PacketDrop::Refused(r) => r.label(),
            PacketDrop::NoDestination => "no_destination",
            // Counted with the packets no peer can receive.
            PacketDrop::UnknownStream => "no_destination",
        }
    }
}

impl MediaTable {
    /// One datagram from `src` arrived on `stream`'s `leg` relay socket `port` at `now`:
    /// applies the latching policy, counts it, and says where it goes.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        stream: StreamKey,
        leg: Leg,
        port: RelayPort,
        src: SocketAddr,
        packet: &[u8],
    ) -> PacketAction {
        let rules = self.settings.rules();
        let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        else {
            return PacketAction::Drop(PacketDrop::UnknownStream);
        };
        let is_rtcp = port == RelayPort::Rtcp || rtp::is_rtcp(packet);
        let (from, to) = (leg_idx(leg), leg_idx(leg.other()));
        let p = &mut st.peers[from];
        let verdict = p.latch[port as usize].on_packet(src, now, &p.allowed, rules);
        if let Verdict::Drop(reason) = verdict {
            p.dropped += 1;
            return PacketAction::Drop(PacketDrop::Refused(reason));
        }
        p.packets += 1;
        p.bytes += packet.len() as u64;
        p.last_seen = Some(now);
        if is_rtcp {
            if let Some(r) = rtp::parse_report(packet) {
                p.report = Some(r);
            }
        } else {
            p.rtp.on_packet(packet, now);
        }
        let dst = &st.peers[to];
        // RTCP goes to the peer's RTCP port, or its RTP port when it multiplexes.
        let (target, out) = if is_rtcp && !dst.mux {
            (dst.latch[1].target(), RelayPort::Rtcp)
        } else {
            (dst.latch[0].target(), RelayPort::Rtp)
        };
        let relatched = matches!(verdict, Verdict::Latched { previous: Some(_) });
        if matches!(verdict, Verdict::Latched { .. }) && port == RelayPort::Rtp {
            self.sync_fast_path(now, stream);
        }
        match target {
            Some(to) => PacketAction::Forward {
                port: out,
                to,
                relatched,
            },
            None => {
                self.count_drop(stream, leg);
                PacketAction::Drop(PacketDrop::NoDestination)
            }
        }
    }

    /// A packet from `stream`'s `leg` could not be sent on (counted against that peer).
    pub fn count_drop(&mut self, stream: StreamKey, leg: Leg) {
        if let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        {
            st.peers[leg_idx(leg)].dropped += 1;
        }
    }
}
