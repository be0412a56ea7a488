//! TCP SIP listeners: bounded connection count, bounded buffers, idle timeout.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::Side;
use crate::metrics::Metrics;

/// Most simultaneous TCP connections per listener; more are refused at accept.
pub const MAX_CONNECTIONS: usize = 4096;
/// A connection with no bytes for this long is closed (defeats idle and slowloris peers).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Binds a listening TCP socket.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    side: Side,
    max_message_size: usize,
    metrics: Metrics,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(side = side.as_str(), error = %e, "tcp accept error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .sip_dropped
                .with_label_values(&[side.as_str(), "tcp_connection_limit"])
                .inc();
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let gauge = metrics.tcp_connections.with_label_values(&[side.as_str()]);
            gauge.inc();
            connection(stream, peer, side, max_message_size, &metrics).await;
            gauge.dec();
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    side: Side,
    max_message_size: usize,
    metrics: &Metrics,
) {
    let mut buf = vec![0u8; max_message_size.min(64 * 1024)];
    let received = metrics
        .sip_received
        .with_label_values(&[side.as_str(), "tcp"]);
    let bytes = metrics
        .sip_received_bytes
        .with_label_values(&[side.as_str(), "tcp"]);
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                received.inc();
                bytes.inc_by(n as u64);
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "tcp read error");
                return;
            }
            Err(_) => {
                metrics
                    .sip_dropped
                    .with_label_values(&[side.as_str(), "tcp_idle"])
                    .inc();
                return;
            }
        }
    }
}
