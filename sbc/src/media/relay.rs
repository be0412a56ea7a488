//! The userspace relay's packet path. The relay workers (`super::worker`) receive datagrams
//! from many streams' sockets with `recvmmsg` into one arena, [`decide`] every one of them
//! under a single hold of the media table's lock ([`forward`], the per-packet seam), and
//! [`send_on`] sends each socket's share with `sendmmsg`. SRTP is terminated on the way, in
//! place in those buffers (the table holds the contexts). Buffers belong to the worker, not
//! the stream, and nothing is allocated per packet. It is a complete relay on its own; the XDP
//! fast path only takes over established (latched) RTP and hands everything else up to it.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::Instant,
};

use parking_lot::Mutex;
use sbc_proto::net::Side;
use sbc_proto::{
    media::{
        Arrival, MediaTable, PacketAction, PacketDrop, RelayPort, StreamKey, crypto::HEADROOM,
        dtmf, table::leg_idx,
    },
    srtp::SrtpError,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::executor::{Core, execute};
use crate::{
    metrics::MediaMetrics,
    sys::udp_batch::{self, Datagram},
};

/// A stream's sockets: `[leg][port]`, indexed by [`leg_idx`] and [`RelayPort`].
pub(crate) type Sockets = [[UdpSocket; 2]; 2];

/// Forwards one packet that arrived on `leg`'s `port` socket of `stream` towards the other
/// leg: the table unprotects it (SRTP from an encrypted leg), applies the latching policy and
/// counts it, and protects it (SRTP toward an encrypted leg), rewriting `pkt.buf` in place
/// (its headroom takes the trailer); this sets `pkt.len`, and `pkt.dst` and `pkt.out` to where
/// it goes and from which socket.
///
/// This is the one place a packet passes between the legs.
pub(crate) fn forward(
    table: &mut MediaTable,
    metrics: &MediaMetrics,
    now: Instant,
    arrival: Arrival,
    pkt: &mut Datagram,
) {
    pkt.dst = None;
    match table.handle_packet(now, arrival, &mut pkt.buf, pkt.len) {
        PacketAction::Forward {
            port: out,
            to,
            relatched,
            len,
        } => {
            if relatched {
                metrics.relatched.inc();
                tracing::debug!(session = %arrival.stream.session, stream = arrival.stream.index,
                    side = arrival.leg.as_str(), latched = %pkt.src, "re-latched peer");
            }
            pkt.len = len;
            pkt.dst = Some(to);
            pkt.out = out as usize;
        }
        PacketAction::Consumed => {
            metrics.dtmf_packets.with_label_values(&["consumed"]).inc();
        }
        PacketAction::Drop(why) => {
            if why == PacketDrop::Srtp(SrtpError::AuthFailed) {
                metrics.srtp_auth_failures.inc();
            }
            metrics.dropped.with_label_values(&[why.label()]).inc();
        }
    }
}

/// Sends `stream`'s generated packets that are due at `now` from its `sockets`; returns when
/// the next one is.
pub(crate) fn send_generated(
    core: &Mutex<Core>,
    metrics: &MediaMetrics,
    now: Instant,
    stream: StreamKey,
    sockets: &Sockets,
) -> Option<Instant> {
    let mut core = core.lock();
    let mut buf = [0u8; dtmf::PACKET_LEN + HEADROOM];
    // Bounded: a stream has at most two events playing, each a handful of packets due.
    while let Some(g) = core.table.poll_generated(now, stream, &mut buf) {
        let socket = &sockets[leg_idx(g.toward)][RelayPort::Rtp as usize];
        // Non-blocking, like the relayed packets: a full send buffer drops it.
        match socket.send_to(&buf[..g.len], g.to) {
            Ok(_) => metrics.dtmf_packets.with_label_values(&["generated"]).inc(),
            Err(_) => {
                metrics.dropped.with_label_values(&["send_failed"]).inc();
                core.table.count_drop(stream, g.toward.other());
            }
        }
    }
    core.table.generated_deadline(stream)
}

/// Datagrams received on one socket in a worker's wake-up: `packets` of the arena, from
/// `stream`'s `leg` socket `port`, relayed with `sockets` (the stream's).
pub(crate) struct Received<'a> {
    /// The stream.
    pub stream: StreamKey,
    /// The side the receiving socket faces.
    pub leg: Side,
    /// Its RTP or RTCP socket.
    pub port: RelayPort,
    /// The stream's sockets.
    pub sockets: &'a Sockets,
    /// The datagrams, decided in place by [`decide`].
    pub packets: &'a mut [Datagram],
}

/// Decides every datagram of `runs` under one hold of the core's lock (the table's per-packet
/// decisions, then the commands a latch produced and the events for the call layer).
pub(crate) fn decide<'r, 'a: 'r>(
    core: &Mutex<Core>,
    metrics: &MediaMetrics,
    now: Instant,
    runs: impl Iterator<Item = &'r mut Received<'a>>,
) {
    let mut core = core.lock();
    let core = &mut *core;
    for run in runs {
        for pkt in run.packets.iter_mut() {
            let arrival = Arrival {
                stream: run.stream,
                leg: run.leg,
                port: run.port,
                src: pkt.src,
            };
            forward(&mut core.table, metrics, now, arrival, pkt);
        }
    }
    // A latch may have changed the fast path the stream should have.
    if core.table.has_commands() {
        execute(core, now);
    }
    // A detected DTMF digit waits for the call layer.
    if core.table.has_events() {
        core.exec.events.notify_one();
    }
}

/// Sends the decided datagrams of `run` on from the other leg's sockets; returns how many
/// could not be sent (the caller counts them against the stream under the lock).
pub(crate) fn send_on(metrics: &MediaMetrics, run: &Received<'_>) -> u64 {
    let out = &run.sockets[leg_idx(run.leg.other())];
    let mut forwarded = 0usize;
    let mut bytes = 0u64;
    let mut failed = 0u64;
    for (o, socket) in out.iter().enumerate() {
        let packets = || run.packets.iter().filter(move |p| p.out == o);
        let want = packets().filter(|p| p.dst.is_some()).count();
        if want == 0 {
            continue;
        }
        // Straight to the non-blocking socket: a full send buffer (EAGAIN) drops the rest
        // of the batch, as it would drop a single datagram; nothing waits for writability.
        let sent = udp_batch::send(socket.as_raw_fd(), packets()).unwrap_or(0);
        forwarded += sent;
        bytes += packets()
            .filter(|p| p.dst.is_some())
            .take(sent)
            .map(|p| p.len as u64)
            .sum::<u64>();
        failed += (want - sent) as u64;
    }
    metrics.user_packets.inc_by(forwarded as u64);
    metrics.user_bytes.inc_by(bytes);
    if failed > 0 {
        metrics
            .dropped
            .with_label_values(&["send_failed"])
            .inc_by(failed);
    }
    failed
}

/// Binds a non-blocking UDP relay socket on `addr:port`.
pub(crate) fn bind(addr: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // Non-blocking from its creation (SOCK_NONBLOCK): two `fcntl` calls fewer per socket, four
    // sockets per userspace stream (`bench/results/socketless-2026-12-04.md` counted them).
    let s = Socket::new(domain, Type::DGRAM.nonblocking(), Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts of many streams arrive between wake-ups; a larger queue avoids loss there.
    let _ = s.set_recv_buffer_size(1 << 20);
    s.bind(&SocketAddr::new(addr, port).into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    /// A relay socket never blocks the worker that drains it (non-blocking from creation).
    #[test]
    fn a_relay_socket_is_born_non_blocking() {
        let s = super::bind(Ipv4Addr::LOCALHOST.into(), 0).expect("bind");
        let mut buf = [0u8; 16];
        let e = s.recv_from(&mut buf).expect_err("nothing queued");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}
