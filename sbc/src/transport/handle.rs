//! The transport layer's handle: starting the listeners, sending (with connection reuse and
//! outbound connects), TLS reload and shutdown.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rustls_pki_types::ServerName;
use sbc_proto::net::{Peer, Side, TransportKind};
use tokio::sync::{mpsc, watch};

use super::{
    AdmissionPolicy, DropReason, SendError, StartError,
    admission::Admission,
    connections::{Connections, Registration},
    counters::Counters,
    settings::TransportConfig,
    shared::{Shared, UdpEndpoint},
    tcp,
    tls::{TlsContext, TlsError},
    udp,
};
use crate::metrics::Metrics;

const SIDES: [Side; 2] = [Side::Inside, Side::Outside];
const KINDS: [TransportKind; 3] = [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls];
/// Largest UDP payload over IPv4 (65535 − 8 − 20).
const MAX_UDP_PAYLOAD: usize = 65_507;

/// A cloneable handle on the running SIP transports. Dropping handles does not stop them;
/// call [`Transport::shutdown`].
#[derive(Debug, Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

impl Transport {
    /// Binds every configured listener and starts receiving; parsed messages go to `inbound`.
    /// Must be called inside a tokio runtime. Binding errors (address in use, no such
    /// address) and unusable TLS files are reported here, not later.
    pub fn start(
        config: TransportConfig,
        metrics: &Metrics,
        inbound: impl Into<crate::signaling::Router>,
    ) -> Result<Self, StartError> {
        let inbound = inbound.into();
        let tls = config.tls.clone().map(TlsContext::load).transpose()?;
        let wants_tls_listener = !config.inside.tls.is_empty() || !config.outside.tls.is_empty();
        if wants_tls_listener && !tls.as_ref().is_some_and(TlsContext::has_certificate) {
            return Err(StartError::TlsNotConfigured);
        }

        let mut udp_sockets = Vec::new();
        let mut stream_listeners = Vec::new();
        for side in SIDES {
            let l = config.side(side);
            for &addr in &l.udp {
                let bind_err = |source| StartError::Bind {
                    side,
                    transport: TransportKind::Udp,
                    addr,
                    source,
                };
                let workers = config.udp.workers.max(1);
                let reuse = workers > 1;
                let first = udp::bind(addr, config.udp.buffer_bytes, reuse).map_err(bind_err)?;
                // With port 0 the later workers must join the port the first one got.
                let local = first.local_addr().map_err(bind_err)?;
                udp_sockets.push(UdpEndpoint {
                    side,
                    local,
                    socket: Arc::new(first),
                });
                for _ in 1..workers {
                    let s = udp::bind(local, config.udp.buffer_bytes, true).map_err(bind_err)?;
                    udp_sockets.push(UdpEndpoint {
                        side,
                        local,
                        socket: Arc::new(s),
                    });
                }
            }
            for (kind, list) in [(TransportKind::Tcp, &l.tcp), (TransportKind::Tls, &l.tls)] {
                for &addr in list {
                    let bind_err = |source| StartError::Bind {
                        side,
                        transport: kind,
                        addr,
                        source,
                    };
                    let listener = tcp::bind(addr).map_err(bind_err)?;
                    let local = listener.local_addr().map_err(bind_err)?;
                    stream_listeners.push((side, kind, local, listener));
                }
            }
        }

        let counters = SIDES.map(|side| KINDS.map(|kind| Counters::new(metrics, side, kind)));
        let shared = Arc::new(Shared {
            connections: Arc::new(Connections::new(config.stream.max_connections)),
            admission: Arc::new(Admission::new(
                config.admission.clone(),
                config.max_bans,
                config.replies,
            )),
            tls_names: RwLock::new(config.tls_names.clone()),
            config,
            tls,
            inbound,
            metrics: metrics.clone(),
            counters,
            listeners: stream_listeners
                .iter()
                .map(|(s, k, a, _)| (*s, *k, *a))
                .collect(),
            udp: udp_sockets,
            tasks: Mutex::new(Vec::new()),
            shutdown: watch::Sender::new(false),
            tracer: std::sync::OnceLock::new(),
        });

        let mut tasks = Vec::new();
        for ep in &shared.udp {
            tracing::info!(side = ep.side.as_str(), addr = %ep.local, "SIP UDP listening");
            let task = tokio::spawn(udp::receive_loop(
                shared.clone(),
                ep.socket.clone(),
                ep.side,
            ));
            tasks.push(task.abort_handle());
        }
        for (side, kind, local, listener) in stream_listeners {
            tracing::info!(
                side = side.as_str(),
                transport = kind.as_str(),
                addr = %local,
                "SIP stream listening"
            );
            let task = tokio::spawn(tcp::accept_loop(shared.clone(), listener, side, kind));
            tasks.push(task.abort_handle());
        }
        if let Some(every) = shared
            .tls
            .as_ref()
            .and_then(|_| shared.config.tls.as_ref()?.reload_check)
        {
            let weak = Arc::downgrade(&shared);
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    if shared.tls.as_ref().is_some_and(TlsContext::files_changed) {
                        tracing::info!("TLS files changed; reloading");
                        let _ = Transport { shared }.reload_tls();
                    }
                }
            });
            tasks.push(task.abort_handle());
        }
        *shared.tasks.lock() = tasks;
        Ok(Self { shared })
    }

    /// Sends `data` (one complete SIP message) to `to`, without blocking:
    /// - UDP: from the socket of `to.side` (so the source address is that side's address);
    /// - TCP/TLS: on `to.conn` while it is open (responses, RFC 3261 §18.2.2), else on an open
    ///   connection to `to.addr` on that side (RFC 3261 §18.1.1 reuse), else on a new
    ///   connection (TLS with SNI from [`Transport::set_tls_server_name`] or the
    ///   configuration, else the IP address). The message is queued; a full queue is an error.
    ///
    /// Every error is also counted in `sbc_sip_send_errors_total`.
    pub fn send(&self, to: &Peer, data: Bytes) -> Result<(), SendError> {
        let result = if *self.shared.shutdown.borrow() {
            Err(SendError::Shutdown)
        } else if to.transport == TransportKind::Udp {
            self.send_udp(to, &data)
        } else {
            self.trace_out(to, self.shared.stream_source(to), &data);
            self.send_stream(to, data)
        };
        if let Err(e) = &result {
            self.shared.counters(to.side, to.transport).send_error(e);
        }
        result
    }

    /// Offers an outgoing message to the tracer. Called just before the message goes out: an
    /// answer to it may be received (and offered) before the send call even returns, and the
    /// trace must see the request first.
    fn trace_out(&self, to: &Peer, from: SocketAddr, data: &Bytes) {
        if let Some(t) = self.shared.tracer.get() {
            t.capture(
                crate::trace::Direction::Out,
                to.side,
                to.transport,
                from,
                to.addr,
                data.clone(),
            );
        }
    }

    /// Offers every message from now on to `tracer` (per-call traces, HEP export). Set once.
    pub fn set_tracer(&self, tracer: crate::trace::Tracer) {
        let _ = self.shared.tracer.set(tracer);
    }

    /// The tracer messages are offered to, if any.
    pub fn tracer(&self) -> Option<&crate::trace::Tracer> {
        self.shared.tracer.get()
    }

    fn send_udp(&self, to: &Peer, data: &Bytes) -> Result<(), SendError> {
        if data.len() > MAX_UDP_PAYLOAD {
            return Err(SendError::TooLarge { len: data.len() });
        }
        let eps = &self.shared.udp;
        let ep = to
            .local
            .and_then(|l| eps.iter().find(|ep| ep.side == to.side && ep.local == l))
            .or_else(|| {
                eps.iter()
                    .find(|ep| ep.side == to.side && ep.local.is_ipv4() == to.addr.is_ipv4())
            })
            .ok_or(SendError::NoSocket {
                side: to.side,
                transport: to.transport,
                addr: to.addr,
            })?;
        self.trace_out(to, ep.local, data);
        // A plain non-blocking send, not tokio's try_send_to: that one answers WouldBlock
        // until the reactor has seen the socket writable once, which a send right after start
        // (or after another thread's send drained the readiness) would hit spuriously. A UDP
        // send only blocks when the kernel buffer is full, which is then a real WouldBlock.
        match socket2::SockRef::from(&*ep.socket).send_to(data, &to.addr.into()) {
            Ok(_) => {
                self.shared.counters(to.side, to.transport).sent(data.len());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(SendError::WouldBlock(to.addr))
            }
            Err(source) => Err(SendError::Io {
                addr: to.addr,
                source,
            }),
        }
    }

    fn send_stream(&self, to: &Peer, data: Bytes) -> Result<(), SendError> {
        let conns = &self.shared.connections;
        let mut data = data;
        if let Some((_, queue)) = to.conn.and_then(|id| conns.by_id(id)) {
            match queue.try_send(data) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(SendError::QueueFull(to.addr));
                }
                // Closed since the lookup: fall back to reuse or a new connection.
                Err(mpsc::error::TrySendError::Closed(d)) => data = d,
            }
        }
        if let Some((_, queue)) = conns.by_peer(to.side, to.transport, to.addr) {
            match queue.try_send(data) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(SendError::QueueFull(to.addr));
                }
                Err(mpsc::error::TrySendError::Closed(d)) => data = d,
            }
        }
        let queue = self
            .shared
            .clone()
            .connect(to.side, to.transport, to.addr, to.local)?;
        queue
            .try_send(data)
            .map_err(|_| SendError::QueueFull(to.addr))
    }

    /// Sets the TLS server name (SNI, and the name verified in the certificate) used for new
    /// connections to `addr`. Returns `false` if `name` is not a valid DNS name or IP address.
    pub fn set_tls_server_name(&self, addr: SocketAddr, name: &str) -> bool {
        if ServerName::try_from(name).is_err() {
            return false;
        }
        self.shared.tls_names.write().insert(addr, name.to_owned());
        true
    }

    /// Re-reads the TLS certificate, key and CA files (call on SIGHUP). On error the running
    /// configuration is kept, the reason logged and returned. `Ok(false)`: TLS is not
    /// configured.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        let Some(tls) = &self.shared.tls else {
            return Ok(false);
        };
        let result = tls.reload();
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .tls_reloads
            .with_label_values(&[label])
            .inc();
        match result {
            Ok(()) => {
                tracing::info!("TLS certificates reloaded");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS reload failed; keeping the previous certificates");
                Err(e)
            }
        }
    }

    /// Local addresses bound on `side` for `transport` (the actual ports when 0 was asked).
    pub fn local_addrs(&self, side: Side, transport: TransportKind) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = match transport {
            TransportKind::Udp => self
                .shared
                .udp
                .iter()
                .filter(|ep| ep.side == side)
                .map(|ep| ep.local)
                .collect(),
            _ => self
                .shared
                .listeners
                .iter()
                .filter(|(s, k, _)| *s == side && *k == transport)
                .map(|(_, _, a)| *a)
                .collect(),
        };
        out.dedup();
        out
    }

    /// Replaces who may connect (the signaling ACL after a live change or a DNS update).
    /// Accepted connections from sources the new policy refuses are closed at once (counted
    /// under that reason). Consulted at accept only; nothing per message reads it.
    pub fn set_admission(&self, policy: AdmissionPolicy) {
        if *self.shared.admission.policy() == policy {
            return;
        }
        self.shared.admission.set_policy(policy);
        let policy = self.shared.admission.policy();
        let closed = self
            .shared
            .connections
            .close_accepted(|p| policy.refusal(p.side, p.addr.ip()).is_some());
        for p in closed {
            if let Some(reason) = policy.refusal(p.side, p.addr.ip()) {
                self.shared.counters(p.side, p.transport).dropped(reason);
            }
        }
    }

    /// Bans `ip` on `side` for `length` at the transport: new connections from it are
    /// refused at accept and its open accepted connections are closed now. Returns how many
    /// were closed.
    pub fn ban(&self, side: Side, ip: std::net::IpAddr, length: std::time::Duration) -> usize {
        let now = std::time::Instant::now();
        self.shared.admission.ban(side, ip, now, length);
        let ip = ip.to_canonical();
        let closed = self
            .shared
            .connections
            .close_accepted(|p| p.side == side && p.addr.ip().to_canonical() == ip);
        for p in &closed {
            self.shared
                .counters(p.side, p.transport)
                .dropped(DropReason::Banned);
        }
        closed.len()
    }

    /// Lifts a ban at the transport.
    pub fn unban(&self, side: Side, ip: std::net::IpAddr) {
        self.shared.admission.unban(side, ip);
    }

    /// Open stream connections (accepted and outbound, including ones still connecting).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.len()
    }

    /// Stops listening, closes every connection and makes further sends fail.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        for t in self.shared.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl Shared {
    /// Opens a connection to `addr` (client side) and returns its write queue at once: the
    /// connection is registered immediately, so messages sent while it is being established
    /// queue on it instead of opening more connections.
    /// `local`, when given, picks the source address (its IP; the port is the kernel's), e.g.
    /// a trunk's own outside address.
    fn connect(
        self: Arc<Self>,
        side: Side,
        kind: TransportKind,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<mpsc::Sender<Bytes>, SendError> {
        let tls = match kind {
            TransportKind::Tls => {
                let ctx = self.tls.as_ref().ok_or(SendError::TlsUnavailable {
                    addr,
                    why: "TLS is not configured",
                })?;
                let name = match self.tls_names.read().get(&addr) {
                    Some(n) => {
                        ServerName::try_from(n.clone()).map_err(|_| SendError::TlsUnavailable {
                            addr,
                            why: "invalid TLS server name",
                        })?
                    }
                    None => ServerName::IpAddress(addr.ip().into()),
                };
                Some((ctx.connector(), name))
            }
            _ => None,
        };
        let permit = self
            .connections
            .try_slot()
            .ok_or(SendError::ConnectionLimit(addr))?;
        let (tx, rx) = mpsc::channel(self.config.stream.send_queue.max(1));
        let peer = Peer {
            side,
            transport: kind,
            addr,
            conn: None,
            local: None,
        };
        let registration = self.connections.register(peer, tx.clone(), false);
        let source = local
            .filter(|l| l.is_ipv4() == addr.is_ipv4() && !l.ip().is_unspecified())
            .map(|l| SocketAddr::new(l.ip(), 0))
            .or_else(|| self.source_address(side, addr));
        let timeout = self.config.stream.connect_timeout;
        let mut shutdown = self.shutdown.subscribe();
        let queue = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let counters = self.counters(side, kind).clone();
            let established = async {
                let tcp = tcp::connect(addr, source).await?;
                let local = tcp.local_addr()?;
                Ok::<_, std::io::Error>((tcp, local))
            };
            let connecting = async {
                let (tcp, local) = established.await?;
                match tls {
                    Some((connector, name)) => {
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>((Conn::Tls(Box::new(tls)), local))
                    }
                    None => Ok((Conn::Tcp(tcp), local)),
                }
            };
            let result = tokio::select! {
                r = tokio::time::timeout(timeout, connecting) => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match result {
                Ok(Ok((Conn::Tcp(s), local))) => {
                    self.run_connection(s, registration, local, tx, rx).await;
                }
                Ok(Ok((Conn::Tls(s), local))) => {
                    self.run_connection(*s, registration, local, tx, rx).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "SIP connect failed");
                    fail_queued(&counters, registration, rx);
                }
                Err(_) => {
                    tracing::debug!(%addr, "SIP connect timed out");
                    fail_queued(&counters, registration, rx);
                }
            }
        });
        Ok(queue)
    }

    /// The local address to connect from: the side's first concrete listen address of the
    /// destination's family (so inside and outside traffic leave from their own addresses),
    /// port chosen by the kernel. `None` lets the kernel choose by routing.
    pub(super) fn source_address(&self, side: Side, to: SocketAddr) -> Option<SocketAddr> {
        let l = self.config.side(side);
        l.tcp
            .iter()
            .chain(&l.tls)
            .chain(&l.udp)
            .find(|a| a.is_ipv4() == to.is_ipv4() && !a.ip().is_unspecified())
            .map(|a| SocketAddr::new(a.ip(), 0))
    }
}

/// An outbound connection, plain or TLS.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// Unregisters a connection that never came up and counts every message queued on it as a
/// failed send (the message that triggered the connect is one of them).
fn fail_queued(counters: &Counters, registration: Registration, mut rx: mpsc::Receiver<Bytes>) {
    drop(registration);
    rx.close();
    while rx.try_recv().is_ok() {
        counters.send_failure("connect_failed");
    }
}
