//! The userspace relay's packet path. The relay workers (`super::worker`) receive datagrams
//! from many streams' sockets with `recvmmsg` into one arena, [`decide`] every one of them
//! holding only its stream's packet path ([`forward`], the per-packet seam), and [`send_on`]
//! sends each socket's share with `sendmmsg`. The media table's lock is taken only when a
//! packet changed something the table must learn ([`News`]). SRTP is terminated on the way,
//! in place in those buffers (the path holds the contexts). Buffers belong to the worker, not
//! the stream, and nothing is allocated per packet. It is a complete relay on its own; the XDP
//! fast path only takes over established (latched) RTP and hands everything else up to it.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::Instant,
};

use sbc_proto::net::Side;
use sbc_proto::{
    b2bua::Rng,
    media::{
        PacketAction, PacketDrop, RelayPort, StreamKey,
        crypto::HEADROOM,
        dtmf,
        latch::Rules,
        path::{PathHandle, PathVerdict, StreamPath},
    },
    srtp::SrtpError,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    metrics::MediaMetrics,
    sys::udp_batch::{self, Datagram},
};

/// A stream's sockets: `[leg][port]`, indexed by [`Side::index`] and [`RelayPort`].
pub(crate) type Sockets = [[UdpSocket; 2]; 2];

/// Forwards one packet that arrived on `leg`'s `port` socket of a stream towards the other
/// leg: the stream's path unprotects it (SRTP from an encrypted leg), applies the latching
/// policy under `rules` and counts it, and protects it (SRTP toward an encrypted leg),
/// rewriting `pkt.buf` in place (its headroom takes the trailer); this sets `pkt.len`, and
/// `pkt.dst` and `pkt.out` to where it goes and from which socket. Returns the path's verdict,
/// whose news (a moved latch, ended digits) the caller hands to the table.
///
/// This is the one place a packet passes between the legs.
pub(crate) fn forward(
    path: &mut StreamPath,
    rules: Rules,
    metrics: &MediaMetrics,
    now: Instant,
    (stream, leg, port): (StreamKey, Side, RelayPort),
    pkt: &mut Datagram,
) -> PathVerdict {
    pkt.dst = None;
    let verdict = path.handle(now, rules, (leg, port, pkt.src), &mut pkt.buf, pkt.len);
    match verdict.action {
        PacketAction::Forward {
            port: out,
            to,
            relatched,
            len,
        } => {
            if relatched {
                metrics.relatched.inc();
                tracing::debug!(session = %stream.session, stream = stream.index,
                    side = leg.as_str(), latched = %pkt.src, "re-latched peer");
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
    verdict
}

/// The control plane as the relay threads see it: where what their packets changed goes,
/// and where the sockets of removed streams go back. The executor implements it over the
/// media table; the relay threads know nothing else of it.
pub(crate) trait Control: Send + Sync {
    /// Hands `news` to the table (emptying it), executes the commands it produced and wakes
    /// the call layer for the events.
    fn learn(&self, news: &mut News, now: Instant);
    /// Takes back the sockets of a removed stream (kept bound for reuse, or closed).
    fn park(&self, sockets: Sockets);
}

/// What a batch's packets changed that the table must learn (`MediaTable::learn`): rare
/// (a stream's first packets, re-latches, ended digits), so the control plane is called only
/// when there is some.
#[derive(Default)]
pub(crate) struct News(Vec<(StreamKey, Side, PathVerdict)>);

impl News {
    /// Keeps `verdict` if it changed something.
    pub fn note(&mut self, stream: StreamKey, leg: Side, verdict: PathVerdict) {
        if verdict.has_news() {
            self.0.push((stream, leg, verdict));
        }
    }

    /// Takes the news out, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = (StreamKey, Side, PathVerdict)> + '_ {
        self.0.drain(..)
    }

    /// Hands the news, if any, to `control`.
    pub fn deliver(&mut self, control: &dyn Control, now: Instant) {
        if !self.0.is_empty() {
            control.learn(self, now);
        }
    }
}

/// Sends `path`'s generated packets that are due at `now` from its stream's `sockets`
/// (drawing random numbers from `rng`); returns when the next one is.
pub(crate) fn send_generated(
    path: &PathHandle,
    rng: &mut Rng,
    metrics: &MediaMetrics,
    now: Instant,
    sockets: &Sockets,
) -> Option<Instant> {
    let mut path = path.lock();
    let mut buf = [0u8; dtmf::PACKET_LEN + HEADROOM];
    let mut draw = || rng.next_u64() as u32;
    // Bounded: a stream has at most two events playing, each a handful of packets due.
    while let Some(g) = path.poll_generated(now, &mut draw, &mut buf) {
        let socket = &sockets[g.toward.index()][RelayPort::Rtp as usize];
        // Non-blocking, like the relayed packets: a full send buffer drops it.
        match socket.send_to(&buf[..g.len], g.to) {
            Ok(_) => metrics.dtmf_packets.with_label_values(&["generated"]).inc(),
            Err(_) => {
                metrics.dropped.with_label_values(&["send_failed"]).inc();
                path.count_drop(g.toward.other());
            }
        }
    }
    path.dtmf.deadline()
}

/// Datagrams received on one socket in a worker's wake-up: `packets` of the arena, from
/// `stream`'s `leg` socket `port`, relayed with `sockets` (the stream's).
pub(crate) struct Received<'a> {
    /// The stream.
    pub stream: StreamKey,
    /// Its packet path.
    pub path: &'a PathHandle,
    /// The side the receiving socket faces.
    pub leg: Side,
    /// Its RTP or RTCP socket.
    pub port: RelayPort,
    /// The stream's sockets.
    pub sockets: &'a Sockets,
    /// The datagrams, decided in place by [`decide`].
    pub packets: &'a mut [Datagram],
}

/// Decides every datagram of `runs`, each run holding only its stream's path (never the
/// table), then hands what the packets changed to the table ([`News`]).
pub(crate) fn decide<'r, 'a: 'r>(
    control: &dyn Control,
    rules: Rules,
    metrics: &MediaMetrics,
    now: Instant,
    runs: impl Iterator<Item = &'r mut Received<'a>>,
) {
    let mut news = News::default();
    for run in runs {
        let mut path = run.path.lock();
        for pkt in run.packets.iter_mut() {
            let v = forward(
                &mut path,
                rules,
                metrics,
                now,
                (run.stream, run.leg, run.port),
                pkt,
            );
            news.note(run.stream, run.leg, v);
        }
    }
    news.deliver(control, now);
}

/// Sends the decided datagrams of `run` on from the other leg's sockets; returns how many
/// could not be sent (the caller counts them against the stream under the lock).
pub(crate) fn send_on(metrics: &MediaMetrics, run: &Received<'_>) -> u64 {
    let out = &run.sockets[run.leg.other().index()];
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
