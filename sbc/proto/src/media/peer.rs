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
    /// RTP sequence/jitter statistics of what this peer sends.
    pub rtp: RtpStats,
    /// The last RTCP reception report this peer sent (about the stream it receives).
    pub report: Option<ReceptionReport>,
    /// The last packet the latch refused: its source and why (one-way-audio diagnosis).
    pub refused: Option<(SocketAddr, DropReason)>,
}

impl PeerState {
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
}
