//! UDP SIP sockets (RFC 3261 §18.1/§18.2 over UDP): socket2 for buffer sizes and
//! SO_REUSEPORT, a receive loop that drains the socket in batches, and stateless answers to
//! malformed requests.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sockopt};

use bytes::Bytes;
use sbc_proto::net::{Peer, Side, TransportKind};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{io::Interest, net::UdpSocket, sync::mpsc::error::TrySendError};

use super::{
    DropReason,
    inbound::{Intake, examine},
    shared::Shared,
};

/// Datagrams handled per wake-up before yielding to other tasks: a burst is drained with one
/// readiness wait, but one busy socket cannot starve the runtime.
const BATCH: usize = 64;

/// Binds a non-blocking UDP socket with large buffers; `reuse_port` lets several sockets
/// share the address so the kernel spreads datagrams over them (one per worker).
pub(crate) fn bind(addr: SocketAddr, buffer: usize, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    // Best effort: arrival timestamps only feed `sbc_sip_receive_wait_seconds`.
    let _ = nix::sys::socket::setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// One datagram's length, source and kernel arrival time (`SO_TIMESTAMPNS`, `None` when the
/// kernel gave none).
type Stamped = (usize, SocketAddr, Option<SystemTime>);

/// Receives one datagram into `buf` with its arrival timestamp; `cmsg` is the reused
/// control-message buffer ([`stamp_space`]). `WouldBlock` when none is queued.
fn recv_stamped(socket: &UdpSocket, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Stamped> {
    socket.try_io(Interest::READABLE, || {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg =
            recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())
                .map_err(io::Error::from)?;
        let source = msg
            .address
            .as_ref()
            .and_then(socket_addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no source address"))?;
        let arrival = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let secs = u64::try_from(ts.tv_sec()).ok()?;
                    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
                    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
                }
                _ => None,
            })
        });
        Ok((msg.bytes, source, arrival))
    })
}

/// A control-message buffer that holds one arrival timestamp.
fn stamp_space() -> Vec<u8> {
    nix::cmsg_space!(nix::sys::time::TimeSpec)
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Receives until the task is aborted.
pub(crate) async fn receive_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, side: Side) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "UDP socket has no local address; not receiving");
            return;
        }
    };
    let max = shared.config.limits.max_message;
    // One byte more than the limit tells an oversize datagram from one that fits exactly.
    let mut buf = vec![0u8; max + 1];
    let counters = shared.counters(side, TransportKind::Udp);
    let mut cmsg = stamp_space();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(error = %e, %local, "UDP socket failed; not receiving");
            return;
        }
        for _ in 0..BATCH {
            let (n, source, kernel_wait) = match recv_stamped(&socket, &mut buf, &mut cmsg) {
                Ok((n, source, arrival)) => {
                    let wait = arrival.and_then(|a| SystemTime::now().duration_since(a).ok());
                    if let Some(wait) = wait {
                        counters.receive_wait.observe(wait.as_secs_f64());
                    }
                    (n, source, wait)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors surface as ECONNREFUSED on Linux; none is fatal.
                    tracing::debug!(error = %e, %local, "UDP receive error");
                    continue;
                }
            };
            counters.received.inc();
            counters.received_bytes.inc_by(n as u64);
            let Some(data) = buf.get(..n) else { continue };
            if n > max {
                counters.dropped(DropReason::Oversize);
                continue;
            }
            if data
                .iter()
                .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
            {
                // CRLF (or NUL) keep-alives that UAs send over UDP to keep NAT bindings
                // open: nothing to answer (RFC 5626 uses STUN on UDP).
                counters.keepalives.inc();
                continue;
            }
            let peer = Peer {
                side,
                transport: TransportKind::Udp,
                addr: source,
                conn: None,
                // Answers and requests in the dialogs it starts leave from this same socket
                // (a multi-homed SBC must not answer from another address).
                local: Some(local),
            };
            let data = Bytes::copy_from_slice(data);
            match examine(data.clone(), peer, &shared.config.limits) {
                Intake::Deliver(mut m) => {
                    if let Some(at) = kernel_wait.and_then(|w| m.received.checked_sub(w)) {
                        m.arrived = at;
                    }
                    shared.trace_in(&m, local, &data);
                    match shared.inbound.try_send(m) {
                        Ok(()) => {}
                        // Dropping is right for UDP: the sender's transaction retransmits.
                        Err(TrySendError::Full(_)) => counters.dropped(DropReason::CoreBusy),
                        Err(TrySendError::Closed(_)) => return,
                    }
                }
                Intake::Reject(r) => {
                    // Only admitted sources get an answer, and only so many per second: an
                    // unknown source learns nothing, and spoofed sources cannot turn the SBC
                    // into a reflector.
                    let now = std::time::Instant::now();
                    if let Err(reason) = shared.admission.may_reply(side, source.ip(), now) {
                        counters.dropped(reason);
                        continue;
                    }
                    counters.rejected(r.code);
                    match socket.try_send_to(&r.bytes, r.to) {
                        Ok(_) => counters.sent(r.bytes.len()),
                        Err(_) => counters.send_failure("would_block"),
                    }
                }
                Intake::Drop(reason) => counters.dropped(reason),
            }
        }
        tokio::task::yield_now().await;
    }
}
