//! UDP SIP sockets (RFC 3261 §18.1/§18.2 over UDP): socket2 for buffer sizes and
//! SO_REUSEPORT, a receive loop that drains the socket in batches (`recvmmsg`, one system
//! call per burst), and stateless answers to malformed requests.

use std::{io, net::SocketAddr, os::fd::AsRawFd as _, sync::Arc, time::SystemTime};

use nix::sys::socket::sockopt;

use bytes::Bytes;
use sbc_proto::net::{Peer, Side, TransportKind};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{io::Interest, net::UdpSocket, sync::mpsc::error::TrySendError};

use crate::sys::stamped_batch::{self, Stamped, StampedBatch};

use super::{
    DropReason,
    counters::Counters,
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
    let mut batch = StampedBatch::new(max + 1);
    let counters = shared.counters(side, TransportKind::Udp);
    let fd = socket.as_raw_fd();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(error = %e, %local, "UDP socket failed; not receiving");
            return;
        }
        let mut taken = 0;
        while taken < BATCH {
            // Not called when tokio saw no readiness: nothing of an earlier batch may remain.
            batch.clear();
            // A batch that emptied the queue reports `WouldBlock`, so tokio clears the
            // readiness it saw before the call (a datagram that arrived meanwhile sets it
            // anew) and the next wait is for new datagrams: no system call only to find the
            // queue empty.
            let more = match socket.try_io(Interest::READABLE, || {
                stamped_batch::recv(fd, &mut batch)?;
                if batch.drained {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            }) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) => {
                    // ICMP errors surface as ECONNREFUSED on Linux; none is fatal.
                    tracing::debug!(error = %e, %local, "UDP receive error");
                    true
                }
            };
            for i in 0..batch.len() {
                let Some((d, data)) = batch.get(i) else { break };
                if !take(&shared, &socket, side, local, counters, d, data) {
                    return;
                }
            }
            taken += batch.len().max(1);
            if !more {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Handles one received datagram: delivered to the core, answered statelessly or dropped.
/// False when the core is gone (the loop ends).
fn take(
    shared: &Shared,
    socket: &UdpSocket,
    side: Side,
    local: SocketAddr,
    counters: &Counters,
    d: Stamped,
    data: &[u8],
) -> bool {
    let max = shared.config.limits.max_message;
    let kernel_wait = d
        .arrival
        .and_then(|a| SystemTime::now().duration_since(a).ok());
    if let Some(wait) = kernel_wait {
        counters.receive_wait.observe(wait.as_secs_f64());
    }
    counters.received.inc();
    counters.received_bytes.inc_by(d.len as u64);
    if d.len > max {
        counters.dropped(DropReason::Oversize);
        return true;
    }
    if data
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
    {
        // CRLF (or NUL) keep-alives that UAs send over UDP to keep NAT bindings open: nothing
        // to answer (RFC 5626 uses STUN on UDP).
        counters.keepalives.inc();
        return true;
    }
    let source = d.source;
    let peer = Peer {
        side,
        transport: TransportKind::Udp,
        addr: source,
        conn: None,
        // Answers and requests in the dialogs it starts leave from this same socket (a
        // multi-homed SBC must not answer from another address).
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
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        Intake::Reject(r) => {
            // Only admitted sources get an answer, and only so many per second: an unknown
            // source learns nothing, and spoofed sources cannot turn the SBC into a reflector.
            let now = std::time::Instant::now();
            if let Err(reason) = shared.admission.may_reply(side, source.ip(), now) {
                counters.dropped(reason);
                return true;
            }
            counters.rejected(r.code);
            match socket.try_send_to(&r.bytes, r.to) {
                Ok(_) => counters.sent(r.bytes.len()),
                Err(_) => counters.send_failure("would_block"),
            }
        }
        Intake::Drop(reason) => counters.dropped(reason),
    }
    true
}
