//! The userspace relay: one tokio task per relay socket, draining it in batches and forwarding
//! through the paired socket on the other side. It is a complete relay on its own; the XDP fast
//! path only takes over established (latched) RTP and hands everything else up to it.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use parking_lot::Mutex;
use sbc_proto::media::{Direction, Leg, SessionId, StreamDesc};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    latch::{Allowed, Latch, Rules, Verdict},
    rtp::{self, ReceptionReport, RtpStats},
};
use crate::metrics::MediaMetrics;

/// Datagrams drained per wake-up before yielding to other tasks (bounds one stream's share).
const BATCH: usize = 64;
/// Largest datagram relayed; larger ones are truncated by the kernel and dropped here.
const MAX_DATAGRAM: usize = 2048;

/// Index of a leg in per-leg arrays.
pub(crate) const fn leg_idx(leg: Leg) -> usize {
    match leg {
        Leg::Inside => 0,
        Leg::Outside => 1,
    }
}

/// The RTP or the RTCP port of a relay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    Rtp = 0,
    Rtcp = 1,
}

/// What the relay knows about the peer on one leg of a stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerState {
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
    /// The last packet refused by the latch: its source and why (one-way-audio diagnosis).
    pub refused: Option<(SocketAddr, super::latch::DropReason)>,
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

/// State of one stream shared by its four socket tasks and the manager.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub session: SessionId,
    pub index: usize,
    pub rules: Rules,
    /// `[leg][port]`.
    pub sockets: [[Arc<UdpSocket>; 2]; 2],
    /// `[leg]`, indexed by [`leg_idx`].
    pub peers: Mutex<[PeerState; 2]>,
    pub latched_tx: mpsc::UnboundedSender<(SessionId, usize)>,
    pub metrics: MediaMetrics,
    /// Per-leg SRTP contexts (`srtp.rs`); plain RTP when none is set.
    pub srtp: Mutex<super::srtp::StreamSrtp>,
}

impl StreamShared {
    /// Handles one datagram `buf[..len]` from `src` that arrived on `leg`'s `port`, at `now`;
    /// `buf` has SRTP headroom behind the datagram.
    fn forward(
        &self,
        leg: Leg,
        port: Port,
        buf: &mut [u8],
        len: usize,
        src: SocketAddr,
        now: Instant,
    ) {
        let is_rtcp = port == Port::Rtcp || rtp::is_rtcp(&buf[..len]);
        // SRTP is authenticated before anything else, latching included.
        let Some(len) = self.srtp_step(leg, true, is_rtcp, buf, len) else {
            return;
        };
        let packet = &buf[..len];
        let from = leg_idx(leg);
        let to = leg_idx(leg.other());
        let (verdict, target, out_port) = {
            let mut peers = self.peers.lock();
            let p = &mut peers[from];
            let verdict = p.latch[port as usize].on_packet(src, now, &p.allowed, self.rules);
            if let Verdict::Drop(reason) = verdict {
                p.dropped += 1;
                p.refused = Some((src, reason));
                drop(peers);
                self.metrics
                    .dropped
                    .with_label_values(&[reason.label()])
                    .inc();
                return;
            }
            let p = &mut peers[from];
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
            let dst = &peers[to];
            // RTCP goes to the peer's RTCP port, or its RTP port when it multiplexes.
            let (target, out_port) = if is_rtcp && !dst.mux {
                (dst.latch[1].target(), Port::Rtcp)
            } else {
                (dst.latch[0].target(), Port::Rtp)
            };
            (verdict, target, out_port)
        };
        if let Verdict::Latched { previous } = verdict {
            if previous.is_some() {
                self.metrics.relatched.inc();
            }
            tracing::debug!(
                session = %self.session, stream = self.index, side = leg.as_str(),
                port = ?port, ?previous, latched = %src, "latched peer"
            );
            // The manager installs or updates the fast-path mapping; a closed channel means the
            // manager is shutting down, which needs no mapping.
            let _ = self.latched_tx.send((self.session, self.index));
        }
        let Some(target) = target else {
            self.drop_packet(leg, "no_destination");
            return;
        };
        let Some(len) = self.srtp_step(leg.other(), false, is_rtcp, buf, len) else {
            return;
        };
        let packet = &buf[..len];
        let socket = &self.sockets[to][out_port as usize];
        match socket.try_send_to(packet, target) {
            Ok(_) => {
                self.metrics.user_packets.inc();
                self.metrics.user_bytes.inc_by(packet.len() as u64);
            }
            Err(_) => self.drop_packet(leg, "send_failed"),
        }
    }

    /// Unprotects (`inbound`, packet from `leg`) or protects (packet to `leg`) in place when
    /// that leg is encrypted; a failure drops the packet and counts it against the leg it came
    /// from. Returns the new length.
    fn srtp_step(
        &self,
        leg: Leg,
        inbound: bool,
        rtcp: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let mut srtp = self.srtp.lock();
        let result = if inbound {
            srtp.inbound(leg, rtcp, buf, len)
        } else {
            srtp.outbound(leg, rtcp, buf, len)
        };
        drop(srtp);
        match result {
            Ok(n) => Some(n),
            Err(e) => {
                if e == sbc_proto::srtp::SrtpError::AuthFailed {
                    self.metrics.srtp_auth_failures.inc();
                }
                let from = if inbound { leg } else { leg.other() };
                self.drop_packet(from, super::srtp::drop_reason(e));
                None
            }
        }
    }

    fn drop_packet(&self, leg: Leg, reason: &'static str) {
        self.peers.lock()[leg_idx(leg)].dropped += 1;
        self.metrics.dropped.with_label_values(&[reason]).inc();
    }
}

/// Receives on `leg`'s `port` socket until the task is aborted (stream released).
pub(crate) async fn socket_loop(stream: Arc<StreamShared>, leg: Leg, port: Port) {
    let socket = stream.sockets[leg_idx(leg)][port as usize].clone();
    // Room behind the largest datagram for the SRTP trailer protect appends.
    let mut buf = vec![0u8; MAX_DATAGRAM + super::srtp::HEADROOM];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let now = Instant::now();
        let mut drained = false;
        for _ in 0..BATCH {
            match socket.try_recv_from(&mut buf[..MAX_DATAGRAM]) {
                Ok((n, src)) => stream.forward(leg, port, &mut buf, n, src, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // ICMP-induced errors on an unconnected socket concern one earlier send only.
                Err(_) => break,
            }
        }
        if !drained {
            // A full batch: let the other streams' tasks run before draining more.
            tokio::task::yield_now().await;
        }
    }
}

/// Binds a non-blocking UDP relay socket (for tokio) on `addr:port`.
pub(crate) fn bind(addr: IpAddr, port: u16) -> io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts of many streams arrive between wake-ups; a larger queue avoids loss there.
    let _ = s.set_recv_buffer_size(1 << 20);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(addr, port).into())?;
    Ok(s.into())
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
