//! The state the transport handle and every receive, accept and connection task share, and
//! how an established stream connection is driven.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sbc_proto::net::{Peer, Side, TransportKind};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::UdpSocket,
    sync::{mpsc, watch},
    task::AbortHandle,
};

use super::{
    admission::Admission,
    connections::{Connections, Registration},
    counters::Counters,
    settings::TransportConfig,
    stream::{self, StreamCtx},
    tls::TlsContext,
};
use crate::metrics::Metrics;

/// A bound UDP socket of one side.
#[derive(Debug)]
pub(super) struct UdpEndpoint {
    pub(super) side: Side,
    pub(super) local: SocketAddr,
    pub(super) socket: Arc<UdpSocket>,
}

/// State shared by the handle and every task.
/// (Here, not in `handle.rs`, so the receive loops in `udp.rs` and `tcp.rs` and the handle that
/// starts them do not import each other.)
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) connections: Arc<Connections>,
    /// Who may connect and get stateless replies (updated by the signaling side).
    pub(crate) admission: Arc<Admission>,
    pub(crate) tls: Option<TlsContext>,
    /// Every signaling shard's inbound channel (a message goes to its shard's).
    pub(crate) inbound: crate::signaling::Router,
    pub(super) metrics: Metrics,
    pub(super) counters: [[Counters; 3]; 2],
    pub(super) udp: Vec<UdpEndpoint>,
    /// Bound stream listeners: (side, transport, address).
    pub(super) listeners: Vec<(Side, TransportKind, SocketAddr)>,
    pub(super) tls_names: RwLock<HashMap<SocketAddr, String>>,
    pub(super) tasks: Mutex<Vec<AbortHandle>>,
    pub(super) shutdown: watch::Sender<bool>,
    /// Where every message in and out is offered (traces, HEP), once set.
    pub(crate) tracer: std::sync::OnceLock<crate::trace::Tracer>,
}

impl Shared {
    /// The local address a stream message to `to` is taken to leave from, for traces: the
    /// address the peer reached (`to.local`), else the side's listener of that transport and
    /// family (an outbound connection's ephemeral port is not known here).
    pub(super) fn stream_source(&self, to: &Peer) -> SocketAddr {
        to.local
            .or_else(|| {
                self.listeners
                    .iter()
                    .find(|(s, k, a)| {
                        *s == to.side && *k == to.transport && a.is_ipv4() == to.addr.is_ipv4()
                    })
                    .map(|(_, _, a)| *a)
            })
            .or_else(|| self.source_address(to.side, to.addr))
            .unwrap_or_else(|| SocketAddr::new(to.addr.ip(), 0))
    }

    /// Offers a received message to the tracer, if one is set.
    pub(crate) fn trace_in(&self, m: &super::Inbound, local: std::net::SocketAddr, data: &Bytes) {
        if let Some(t) = self.tracer.get() {
            t.capture_received(
                m.peer.side,
                m.peer.transport,
                (m.peer.addr, local),
                &m.message,
                data.clone(),
            );
        }
    }

    /// The counters of one side and transport.
    pub(crate) fn counters(&self, side: Side, transport: TransportKind) -> &Counters {
        let s = match side {
            Side::Inside => 0,
            Side::Outside => 1,
        };
        let k = match transport {
            TransportKind::Udp => 0,
            TransportKind::Tcp => 1,
            TransportKind::Tls => 2,
        };
        &self.counters[s][k]
    }

    /// Registers an accepted connection and drives it. `local` is the connection's own
    /// address and the address of the listener that accepted it.
    pub(crate) async fn run_accepted<S>(
        self: &Arc<Self>,
        io: S,
        side: Side,
        kind: TransportKind,
        addr: SocketAddr,
        local: (SocketAddr, SocketAddr),
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (local, listener) = local;
        let (tx, rx) = mpsc::channel(self.config.stream.send_queue.max(1));
        // The peer names the listener it reached, as a UDP peer names its socket: the core
        // then answers with that listener's Contact (`;transport=tls` on 5061), not the side's
        // default (UDP), which would move the dialog's ACK, BYE and re-INVITEs (with their
        // SDES keys) to cleartext UDP.
        let peer = Peer {
            side,
            transport: kind,
            addr,
            conn: None,
            local: Some(listener),
        };
        let registration = self.connections.register(peer, tx.clone(), true);
        self.run_connection(io, registration, local, tx, rx).await;
    }

    /// Drives an established, registered stream until it closes or the transport shuts down;
    /// the registration is dropped (unregistering it) at the end.
    pub(super) async fn run_connection<S>(
        &self,
        io: S,
        registration: Registration,
        local: SocketAddr,
        tx: mpsc::Sender<Bytes>,
        rx: mpsc::Receiver<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let peer = registration.peer();
        let counters = self.counters(peer.side, peer.transport).clone();
        counters.connections.inc();
        let accepted = registration.close_signal();
        let ctx = StreamCtx {
            peer,
            local,
            limits: self.config.limits.clone(),
            stream: self.config.stream,
            counters: counters.clone(),
            inbound: self.inbound.clone(),
            // Outbound connections go to peers the SBC chose; only accepted ones must prove
            // themselves with a first message.
            first_message: registration
                .accepted()
                .then_some(self.config.stream.first_message_timeout),
            admission: self.admission.clone(),
            tracer: self.tracer.get().cloned(),
        };
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            () = stream::drive(io, ctx, tx, rx) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
            // A ban or an ACL change (counted by whoever closed it).
            () = accepted.notified() => {}
        }
        counters.connections.dec();
        drop(registration);
    }
}
