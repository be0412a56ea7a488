//! TCP listeners and outbound TCP connections (also the layer under TLS): bounded connection
//! counts, per-connection tasks, and the source address chosen per side.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use sbc_proto::net::{Side, TransportKind};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Semaphore,
};

use super::{DropReason, shared::Shared};

/// Kernel TCP keep-alive: detects peers that vanished without a FIN (half-open connections)
/// even when the SIP idle timeout is long.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Binds a listening TCP socket.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
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

/// Socket options for every SIP stream.
pub(crate) fn tune(stream: &TcpStream) {
    // SIP messages are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let _ = SockRef::from(stream).set_tcp_keepalive(&TcpKeepalive::new().with_time(TCP_KEEPALIVE));
}

/// Accepts connections (TCP, or TCP under TLS) until the task is aborted. Admission comes
/// first, before any byte is read and before any TLS handshake: the denylist, the side's ACL,
/// bans, then the per-source and the global connection limits. A refused connection is reset
/// at once (no TIME_WAIT kept for it) and counted under its reason.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    side: Side,
    kind: TransportKind,
) {
    let per_listener = Arc::new(Semaphore::new(shared.config.stream.max_per_listener));
    let counters = shared.counters(side, kind);
    // The listener's own address names the listener the core answers from (its Contact),
    // also when it is a wildcard the accepted socket's address would not match.
    let listening = listener.local_addr().ok();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!(side = side.as_str(), error = %e, "accept error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(reason) = shared
            .admission
            .refusal(side, addr.ip(), std::time::Instant::now())
        {
            counters.dropped(reason);
            refuse(stream);
            continue;
        }
        let Some(source_slot) = shared.connections.try_source_slot(
            side,
            addr.ip(),
            shared.config.stream.max_per_source,
        ) else {
            counters.dropped(DropReason::SourceConnectionLimit);
            refuse(stream);
            continue;
        };
        let slots = per_listener
            .clone()
            .try_acquire_owned()
            .ok()
            .zip(shared.connections.try_slot());
        let Some(permits) = slots else {
            counters.dropped(DropReason::ConnectionLimit);
            refuse(stream);
            continue;
        };
        tune(&stream);
        let shared2 = shared.clone();
        tokio::spawn(async move {
            let _permits = (permits, source_slot);
            let local = stream.local_addr().ok();
            let Some(local) = local else { return };
            let local = (local, listening.unwrap_or(local));
            match kind {
                TransportKind::Tls => {
                    let Some(acceptor) = shared2.tls.as_ref().and_then(|t| t.acceptor()) else {
                        return;
                    };
                    let timeout = shared2.config.stream.connect_timeout;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            shared2.run_accepted(tls, side, kind, addr, local).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "TLS handshake failed");
                            shared2
                                .counters(side, kind)
                                .dropped(DropReason::TlsHandshake);
                        }
                        Err(_) => shared2
                            .counters(side, kind)
                            .dropped(DropReason::TlsHandshake),
                    }
                }
                _ => {
                    shared2.run_accepted(stream, side, kind, addr, local).await;
                }
            }
        });
    }
}

/// Closes a refused connection with a reset: nothing is sent but the RST, and the socket is
/// gone at once instead of lingering in TIME_WAIT (a flood of refused connections must not
/// hold kernel state).
fn refuse(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Connects to `addr`, from `source` when the side has a concrete address of that family (the
/// SBC is multi-homed: the inside and outside use different addresses).
pub(crate) async fn connect(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        socket.bind(src)?;
    }
    let stream = socket.connect(addr).await?;
    tune(&stream);
    Ok(stream)
}
