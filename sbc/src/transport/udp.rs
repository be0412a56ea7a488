//! UDP SIP listeners (socket2 for buffer sizes and address reuse).

use std::{io, net::SocketAddr, sync::Arc};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Side;
use crate::metrics::Metrics;

/// Kernel socket buffer size asked for SIP sockets: absorbs bursts of retransmissions.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a non-blocking UDP socket with large buffers.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Receives datagrams until the task is dropped, counting them; oversize datagrams are
/// dropped and counted.
pub async fn receive_loop(
    socket: Arc<UdpSocket>,
    side: Side,
    max_message_size: usize,
    metrics: Metrics,
) {
    // One byte more than the limit tells an oversize datagram from one that fits exactly.
    let mut buf = vec![0u8; max_message_size + 1];
    let received = metrics
        .sip_received
        .with_label_values(&[side.as_str(), "udp"]);
    let bytes = metrics
        .sip_received_bytes
        .with_label_values(&[side.as_str(), "udp"]);
    let oversize = metrics
        .sip_dropped
        .with_label_values(&[side.as_str(), "oversize"]);
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, _peer)) => {
                if n > max_message_size {
                    oversize.inc();
                    continue;
                }
                received.inc();
                bytes.inc_by(n as u64);
            }
            Err(e) => {
                // ICMP errors surface as ECONNREFUSED on Linux; none is fatal to a listener.
                tracing::debug!(side = side.as_str(), error = %e, "udp receive error");
            }
        }
    }
}
