//! What the relay knows about the peer on one leg of a stream: its latches, who may send for
//! it, its SDP attributes and what userspace saw from it.

use std::{net::SocketAddr, time::Instant};

use super::{
    Direction, StreamDesc,
    latch::{Allowed, DropReason, Latch},
    rtp::{ReceptionReport, RtpStats},
};

/// The peer on one leg of a stream.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    /// Latch per relay port (RTP, RTCP).
    pub latch: [Latch; 2],
    /// Who besides the SDP address may send on this leg.
    pub allowed: Allowed,
    /// The peer asked for rtcp-mux: send its RTCP to its RTP address.
    pub mux: bool,
    /// Direction from the peer's last SDP.
    pub direction: Direction,
    /// Packets received from this peer (and forwarded) by userspace.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Packets from this peer dropped (strict source, no destination yet, send failure).
    pub dropped: u64,
    /// When the last packet from this peer reached userspace.
    pub last_seen: Option<Instant>,
    /// What userspace made of this peer's packets; boxed on the first one, so that a
    /// socketless stream (whose packets userspace never sees) does not carry 128 bytes per peer
    /// for nothing (issue 16).
    seen: Option<Box<Seen>>,
}

/// What userspace saw of a peer's packets, once it saw one.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// RTP sequence/jitter statistics of what this peer sends.
    rtp: RtpStats,
    /// The last RTCP reception report this peer sent (about the stream it receives).
    report: Option<ReceptionReport>,
    /// The last packet the latch refused: its source and why (one-way-audio diagnosis).
    refused: Option<(SocketAddr, DropReason)>,
}

impl PeerState {
    /// RTP sequence/jitter statistics of what this peer sends; `None` before userspace saw
    /// any of its packets.
    pub fn rtp(&self) -> Option<&RtpStats> {
        self.seen.as_ref().map(|s| &s.rtp)
    }

    /// The last RTCP reception report this peer sent (about the stream it receives).
    pub fn report(&self) -> Option<ReceptionReport> {
        self.seen.as_ref().and_then(|s| s.report)
    }

    /// The last packet the latch refused: its source and why (one-way-audio diagnosis).
    pub fn refused(&self) -> Option<(SocketAddr, DropReason)> {
        self.seen.as_ref().and_then(|s| s.refused)
    }

    /// Records a packet the latch refused.
    pub fn note_refused(&mut self, src: SocketAddr, reason: DropReason) {
        self.seen_mut().refused = Some((src, reason));
    }

    /// Records an RTCP reception report the peer sent.
    pub fn note_report(&mut self, report: ReceptionReport) {
        self.seen_mut().report = Some(report);
    }

    /// Accounts an RTP packet from the peer in its statistics.
    pub fn note_rtp(&mut self, packet: &[u8], now: Instant) {
        self.seen_mut().rtp.on_packet(packet, now);
    }

    fn seen_mut(&mut self) -> &mut Seen {
        self.seen.get_or_insert_with(Box::default)
    }

    /// Records the peer's SDP; returns whether a latch was dropped (re-latch needed).
    pub fn set_desc(&mut self, desc: &StreamDesc) -> bool {
        self.mux = desc.rtcp_mux;
        self.direction = desc.direction;
        // 0.0.0.0/:: is a hold (RFC 3264 §8.4), not a destination: the kernel would deliver
        // there to the SBC host itself. Media goes to the peer only once it latches.
        if desc.rtp_port == 0 || desc.addr.is_unspecified() {
            let a = self.latch[0].set_sdp(None);
            let b = self.latch[1].set_sdp(None);
            return a || b;
        }
        let a = self.latch[0].set_sdp(Some(SocketAddr::new(desc.addr, desc.rtp_port)));
        let b = self.latch[1].set_sdp(Some(SocketAddr::new(desc.addr, desc.rtcp())));
        a || b
    }

    /// Opens the re-latch window of both ports until `until`.
    pub fn open_window(&mut self, until: Instant) {
        for l in &mut self.latch {
            l.open_window(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_sdp_address_is_no_destination() {
        for held in ["0.0.0.0", "::"] {
            let mut p = PeerState::default();
            p.set_desc(&StreamDesc::new(held.parse().expect("literal"), 40_000));
            assert_eq!(p.latch[0].target(), None, "{held}: never sent to");
            assert_eq!(p.latch[1].target(), None, "{held}: RTCP neither");
        }
        let mut p = PeerState::default();
        p.set_desc(&StreamDesc::new(
            "192.0.2.1".parse().expect("literal"),
            40_000,
        ));
        assert_eq!(p.latch[0].target().map(|a| a.port()), Some(40_000));
    }

    /// Every concurrent call holds two peers per stream: what only userspace-relayed packets
    /// fill in is boxed (416 bytes a peer with it inline).
    #[test]
    fn a_peer_is_small_until_userspace_sees_its_packets() {
        let size = std::mem::size_of::<PeerState>();
        assert!(size <= 304, "a PeerState is {size} bytes");
        let mut p = PeerState::default();
        assert!(p.rtp().is_none() && p.report().is_none() && p.refused().is_none());
        let src = "192.0.2.1:4000".parse().expect("literal");
        p.note_refused(src, DropReason::NotAllowed);
        assert_eq!(p.refused(), Some((src, DropReason::NotAllowed)));
        assert_eq!(p.rtp().map(RtpStats::lost), Some(0));
    }
}
