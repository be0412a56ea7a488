//! The userspace relay: one tokio task per stream drives the stream's four sockets (RTP and
//! RTCP on each side). It drains a ready socket with `recvmmsg`, decides every datagram under
//! one lock of the media table ([`forward`], the per-packet seam), and sends the batch on with
//! `sendmmsg`. SRTP is terminated on the way, in place in those buffers (the table holds the
//! contexts). Buffers belong to the worker thread, not the stream, and nothing is allocated
//! per packet. It is a complete relay on its own; the XDP fast path only takes over established
//! (latched) RTP and hands everything else up to it.

use std::{
    cell::RefCell,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd as _,
    sync::Arc,
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
use tokio::{
    io::Interest,
    net::UdpSocket,
    sync::{Notify, oneshot},
};

use super::executor::{Core, execute};
use crate::{
    metrics::MediaMetrics,
    sys::udp_batch::{self, Batch, Datagram},
};

/// Batches drained from one socket per wake-up before the task yields (bounds one stream's
/// share of a worker thread).
const BATCHES_PER_WAKE: usize = 4;

/// A stream's sockets: `[leg][port]`, indexed by [`leg_idx`] and [`RelayPort`].
pub(crate) type Sockets = [[UdpSocket; 2]; 2];

thread_local! {
    /// The worker thread's datagram buffers (a task never holds them across an await).
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

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

/// What a stream's relay task runs with.
pub(crate) struct Task {
    /// The table and executor.
    pub core: Arc<Mutex<Core>>,
    /// The stream relayed.
    pub stream: StreamKey,
    /// Fires (or is dropped) when the stream ends.
    pub stop: oneshot::Receiver<()>,
    /// Notified when the stream has packets of its own to send ([`MediaCommand::Wake`]).
    ///
    /// [`MediaCommand::Wake`]: sbc_proto::media::MediaCommand::Wake
    pub wake: Arc<Notify>,
    /// Relay metrics.
    pub metrics: MediaMetrics,
}

/// Relays the task's stream until `stop` fires (or its sender is dropped), then hands the
/// sockets back to the executor for reuse. Between packets it sends the stream's generated
/// DTMF when due.
pub(crate) async fn run(task: Task, sockets: Sockets) {
    let Task {
        core,
        stream,
        mut stop,
        wake,
        metrics,
    } = task;
    // When the next generated packet is due: read at start (a digit may have been queued
    // while the sockets were bound), after a wake-up and after each send — nothing else
    // changes it, so the packet path takes no extra lock.
    let mut due = core.lock().table.generated_deadline(stream);
    loop {
        let timer = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        // Unbiased: a busy socket must not starve the stream's other three.
        let (leg, port) = tokio::select! {
            _ = &mut stop => break,
            () = wake.notified() => {
                due = core.lock().table.generated_deadline(stream);
                continue;
            }
            () = timer => {
                due = send_generated(&core, &metrics, stream, &sockets);
                continue;
            }
            r = sockets[0][0].readable() => (r.map(|()| Side::Inside), RelayPort::Rtp),
            r = sockets[0][1].readable() => (r.map(|()| Side::Inside), RelayPort::Rtcp),
            r = sockets[1][0].readable() => (r.map(|()| Side::Outside), RelayPort::Rtp),
            r = sockets[1][1].readable() => (r.map(|()| Side::Outside), RelayPort::Rtcp),
        };
        let Ok(leg) = leg else { break };
        let mut drained = false;
        for _ in 0..BATCHES_PER_WAKE {
            if !relay_batch(&core, &metrics, stream, &sockets, leg, port) {
                drained = true;
                break;
            }
        }
        if !drained {
            // A busy socket: let the other streams' tasks run before draining more.
            tokio::task::yield_now().await;
        }
    }
    core.lock().exec.park(sockets);
}

/// Sends `stream`'s generated packets that are due; returns when the next one is.
fn send_generated(
    core: &Arc<Mutex<Core>>,
    metrics: &MediaMetrics,
    stream: StreamKey,
    sockets: &Sockets,
) -> Option<Instant> {
    let now = Instant::now();
    let mut core = core.lock();
    let mut buf = [0u8; dtmf::PACKET_LEN + HEADROOM];
    // Bounded: a stream has at most two events playing, each a handful of packets due.
    while let Some(g) = core.table.poll_generated(now, stream, &mut buf) {
        let socket = &sockets[leg_idx(g.toward)][RelayPort::Rtp as usize];
        // Non-blocking, like the relayed packets: a full send buffer drops it.
        match socket.try_send_to(&buf[..g.len], g.to) {
            Ok(_) => metrics.dtmf_packets.with_label_values(&["generated"]).inc(),
            Err(_) => {
                metrics.dropped.with_label_values(&["send_failed"]).inc();
                core.table.count_drop(stream, g.toward.other());
            }
        }
    }
    core.table.generated_deadline(stream)
}

/// Receives one batch on `leg`'s `port` socket, forwards it; returns whether a full batch came
/// (more may be queued).
fn relay_batch(
    core: &Arc<Mutex<Core>>,
    metrics: &MediaMetrics,
    stream: StreamKey,
    sockets: &Sockets,
    leg: Side,
    port: RelayPort,
) -> bool {
    BATCH.with_borrow_mut(|batch| {
        let socket = &sockets[leg_idx(leg)][port as usize];
        let mut n = 0;
        // A short batch emptied the queue: reporting WouldBlock makes tokio clear the
        // readiness now (unless a new datagram's wake-up came meanwhile), which saves the
        // recvmmsg that would only find EAGAIN, a third of the system calls per packet when
        // each stream's packets arrive one per wake-up.
        // Errors other than WouldBlock (ICMP-induced, on an unconnected socket) concern one
        // earlier send only.
        let more = socket
            .try_io(Interest::READABLE, || {
                n = udp_batch::recv(socket.as_raw_fd(), batch)?;
                if batch.drained {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            })
            .is_ok();
        if n == 0 {
            // Nothing, or only truncated datagrams (then more may be queued).
            return more;
        }
        let now = Instant::now();
        {
            let mut core = core.lock();
            let core = &mut *core;
            for pkt in &mut batch.packets[..n] {
                let arrival = Arrival {
                    stream,
                    leg,
                    port,
                    src: pkt.src,
                };
                forward(&mut core.table, metrics, now, arrival, pkt);
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
        let out = &sockets[leg_idx(leg.other())];
        let mut forwarded = 0usize;
        let mut bytes = 0u64;
        let mut failed = 0u64;
        for (o, socket) in out.iter().enumerate() {
            let packets = || batch.packets[..n].iter().filter(move |p| p.out == o);
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
            let mut core = core.lock();
            for _ in 0..failed {
                core.table.count_drop(stream, leg);
            }
        }
        more
    })
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
