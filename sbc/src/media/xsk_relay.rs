//! The AF_XDP relay (`media.xsk`): streams userspace must transform (SRTP) without the kernel's
//! UDP path. The XDP program redirects the frames of socket-bound streams' pass mappings
//! (`FLAG_XSK`) to an AF_XDP socket per interface queue (`sys::xsk`); one thread here takes them
//! off the RX rings, decides and transforms every payload of a batch with the same per-packet
//! seam as the socket relay ([`relay::forward`], under one hold of the table's lock), writes
//! the outgoing frame (headers, fresh checksums) into the egress interface's TX ring and kicks
//! each socket once per batch (while polling, the sleep that follows sends the last batch). That skips, per packet, the veth's skb build, IP/UDP receive,
//! socket queueing and wake-up on the way in, and routing, neighbour lookup and the UDP/IP
//! output path on the way out.
//!
//! Next hops come from the kernel's route and neighbour tables over netlink, cached per peer
//! address for [`HOP_TTL`]. A peer without a resolved neighbour gets its packets through the
//! stream's relay socket instead (a duplicate descriptor of it), which also makes the kernel
//! resolve the neighbour; so do frames toward an interface without an AF_XDP socket.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsFd as _,
    sync::{Arc, Weak},
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::{
    errno::Errno,
    sys::{
        epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
        eventfd::EventFd,
    },
};
use parking_lot::Mutex;
use sbc_proto::{
    media::{
        RelayPort, StreamKey,
        frame::{self, Macs},
        latch::Rules,
        path::PathHandle,
    },
    net::Side,
};

use super::{
    mailbox::Mailbox,
    neighbour::NeighbourPrimer,
    relay::{self, Control, Sockets},
    xdp::XdpRelay,
};
use crate::{
    metrics::MediaMetrics,
    sys::{
        udp_batch::Datagram,
        xsk::{self, Rx, Xsk},
    },
};

/// Frames taken off one socket's RX ring per pass (and decided under one lock).
const BATCH: usize = 64;
/// Batches per socket and wake-up: one RX ring's worth.
const ROUNDS: usize = (xsk::FRAMES as usize / 2) / BATCH;
/// Longest polling interval accepted (`media.xsk_poll_us`): more would be audible delay.
pub(crate) const MAX_POLL: Duration = Duration::from_millis(5);
/// How long a resolved next hop is used before it is looked up again.
const HOP_TTL: Duration = Duration::from_secs(1);
/// How long an unresolved next hop sends through the socket before it is looked up again.
const MISS_TTL: Duration = Duration::from_millis(100);
/// The eventfd's token (sockets use their index).
const BELL: u64 = u64::MAX;

/// What the executor tells the AF_XDP relay.
#[derive(Debug)]
pub(crate) enum XskOrder {
    /// `stream` is socket-bound on `bound` (inside, outside RTP endpoints); `sockets` are
    /// duplicates of its relay sockets for packets toward unresolved next hops.
    Add {
        /// The stream.
        stream: StreamKey,
        /// Its packet path, shared with the table and the socket relay's worker.
        path: PathHandle,
        /// Its relay RTP endpoints, inside and outside.
        bound: [SocketAddr; 2],
        /// Duplicates of its sockets.
        sockets: Box<Sockets>,
    },
    /// The stream ended.
    Remove(StreamKey),
}

/// The executor's handle on the AF_XDP relay thread; dropping it ends the thread (which closes
/// the sockets; the XDP program then passes their streams up to the relay sockets again).
#[derive(Debug)]
pub(crate) struct XskRelay {
    mailbox: Mailbox<XskOrder>,
}

/// The one AF_XDP relay of every signaling shard's executor: its sockets are per interface
/// and RX queue, so it cannot be per shard. The first executor to bind a stream starts it;
/// the news its packets bring goes to the stream's own table through `control` (the shards'
/// tables, `super::tables`). Once it runs, handing it a stream takes no lock: the relay is
/// set once and its mailbox is a channel; the plan's lock is taken only to start it.
#[derive(Debug)]
pub(crate) struct XskHub {
    /// The plan until the relay starts or fails to (`None` then).
    plan: Mutex<Option<XskPlan>>,
    relay: std::sync::OnceLock<XskRelay>,
    /// It could not start: not tried again.
    failed: std::sync::atomic::AtomicBool,
    control: Weak<dyn Control>,
    metrics: MediaMetrics,
}

impl XskHub {
    /// A relay planned from `plan`, handing what its packets change to `control`.
    pub fn new(plan: XskPlan, control: Weak<dyn Control>, metrics: MediaMetrics) -> Self {
        Self {
            plan: Mutex::new(Some(plan)),
            relay: std::sync::OnceLock::new(),
            failed: std::sync::atomic::AtomicBool::new(false),
            control,
            metrics,
        }
    }

    /// Whether the relay runs, started now if it is planned (a stream is about to be bound).
    /// A relay that cannot start is not tried again: the reason is logged once.
    pub fn start(&self, xdp: &Mutex<XdpRelay>, rules: Rules) -> bool {
        if self.running() {
            return true;
        }
        if self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let mut plan = self.plan.lock();
        // Another shard's executor may have started it meanwhile.
        let Some(p) = plan.take() else {
            return self.running();
        };
        match p.start(xdp, self.control.clone(), rules, self.metrics.clone()) {
            Ok(relay) => {
                self.metrics.xsk_active.set(1);
                tracing::info!(
                    interfaces = ?p.interfaces,
                    "AF_XDP relay on: SRTP streams bypass the kernel's UDP path"
                );
                let _ = self.relay.set(relay);
                true
            }
            Err(reason) => {
                tracing::warn!(%reason, "AF_XDP relay unavailable; SRTP streams use the relay sockets");
                self.failed
                    .store(true, std::sync::atomic::Ordering::Release);
                false
            }
        }
    }

    /// Whether the relay runs.
    pub fn running(&self) -> bool {
        self.relay.get().is_some()
    }

    /// Hands `order` to the relay if it runs.
    pub fn send(&self, order: XskOrder) {
        if let Some(relay) = self.relay.get() {
            relay.send(order);
        }
    }
}

/// An AF_XDP relay configured but not started. Each socket's UMEM is pinned as soon as it is
/// registered (4 MiB per interface and RX queue, resident whether a frame ever arrives or
/// not), and only socket-bound streams (SRTP, payload rewrites, DTMF interworking) use it: a
/// daemon whose calls all stay in the kernel's fast path would hold it for nothing. So the
/// executor starts the relay when the first stream needs its sockets bound
/// ([`super::executor::Executor`]).
#[derive(Debug, Clone)]
pub(crate) struct XskPlan {
    /// `media.interfaces` (not empty).
    pub interfaces: Vec<String>,
    /// `media.xsk_poll_us`.
    pub poll: Duration,
    /// `media.xsk_busy_poll_budget` when busy polling is on.
    pub busy_poll: Option<u16>,
}

impl XskPlan {
    /// Checks what can be checked without opening a socket (each interface exists and has a
    /// MAC), so that a wrong `media.interfaces` is reported at start-up, not at the first SRTP
    /// call.
    pub fn check(&self) -> Result<(), String> {
        if self.interfaces.is_empty() {
            return Err("media.interfaces is empty".into());
        }
        for name in &self.interfaces {
            let ifindex = xsk::ifindex(name).map_err(|e| format!("interface {name}: {e}"))?;
            xsk::hw_addr(ifindex).map_err(|e| format!("MAC of {name}: {e}"))?;
        }
        Ok(())
    }

    /// Opens the sockets and starts the relay thread ([`XskRelay::start`]).
    pub fn start(
        &self,
        xdp: &Mutex<XdpRelay>,
        core: Weak<dyn Control>,
        rules: Rules,
        metrics: MediaMetrics,
    ) -> Result<XskRelay, String> {
        XskRelay::start(
            &self.interfaces,
            (self.poll, self.busy_poll),
            xdp,
            (core, rules),
            metrics,
        )
    }
}

impl XskRelay {
    /// Opens an AF_XDP socket on every RX queue of `interfaces`, registers them with the XDP
    /// program and starts the relay thread, which polls every `poll` while frames flow, with
    /// preferred busy polling of NAPI budget `busy_poll` when given (`media.xsk_busy_poll`).
    /// An error says why AF_XDP cannot be used (the socket relay then carries every userspace
    /// stream).
    pub fn start(
        interfaces: &[String],
        (poll, busy_poll): (Duration, Option<u16>),
        xdp: &Mutex<XdpRelay>,
        (core, rules): (Weak<dyn Control>, Rules),
        metrics: MediaMetrics,
    ) -> Result<Self, String> {
        if interfaces.is_empty() {
            return Err("media.interfaces is empty".into());
        }
        let mut sockets = Vec::new();
        let mut busy = Vec::new();
        let mut macs = HashMap::new();
        let mut base = 0u32;
        let mut x = xdp.lock();
        for name in interfaces {
            let ifindex = xsk::ifindex(name).map_err(|e| format!("interface {name}: {e}"))?;
            let mac = xsk::hw_addr(ifindex).map_err(|e| format!("MAC of {name}: {e}"))?;
            macs.insert(ifindex, mac);
            let queues = xsk::rx_queues(name);
            for queue in 0..queues {
                let s = Xsk::open(ifindex, queue)
                    .map_err(|e| format!("AF_XDP socket on {name} queue {queue}: {e}"))?;
                let labels = [name.as_str(), &queue.to_string()];
                let gauge = metrics.xsk_busy_poll.with_label_values(&labels);
                let napi_id = metrics.xsk_napi_id.with_label_values(&labels);
                if let Some(budget) = busy_poll {
                    // Without it the relay still works, woken as without busy polling; the
                    // gauge stays 0 and says so.
                    if let Err(e) = s.set_busy_poll(budget) {
                        tracing::warn!(interface = %name, queue, error = %e,
                            "AF_XDP busy polling unavailable on this socket");
                    }
                }
                let set = s.busy_poll().is_ok_and(|b| b.prefer && b.usecs > 0);
                gauge.set(i64::from(set));
                busy.push(Busy {
                    on: busy_poll.is_some(),
                    checked: false,
                    napi_id,
                });
                x.register_xsk(ifindex, base, queue, s.as_fd())
                    .map_err(|e| format!("registering the AF_XDP socket of {name}: {e}"))?;
                sockets.push(s);
            }
            base += queues;
        }
        drop(x);
        if busy_poll.is_some() {
            log_napi_knobs(interfaces);
        }
        let (mailbox, inbox) = Mailbox::new().map_err(|e| e.to_string())?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| e.to_string())?;
        epoll
            .add(
                inbox.bell.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, BELL),
            )
            .map_err(|e| e.to_string())?;
        for (i, s) in sockets.iter().enumerate() {
            epoll
                .add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .map_err(|e| e.to_string())?;
        }
        let neighbours = NeighbourPrimer::new().map_err(|e| format!("netlink: {e}"))?;
        let via_xsk = metrics.xsk_packets.with_label_values(&["xsk"]);
        let via_socket = metrics.xsk_packets.with_label_values(&["socket"]);
        let mut state = State {
            poll: poll.min(MAX_POLL),
            noted_kicks: false,
            via_xsk,
            via_socket,
            epoll,
            bell: inbox.bell,
            orders: inbox.orders,
            core,
            rules,
            metrics,
            sockets,
            busy,
            macs,
            streams: HashMap::new(),
            by_addr: HashMap::new(),
            hops: HashMap::new(),
            neighbours,
            rx: vec![Rx::default(); BATCH],
            arena: vec![Datagram::default(); BATCH].into_boxed_slice(),
            meta: Vec::with_capacity(BATCH),
            events: vec![EpollEvent::empty(); 64],
        };
        thread::Builder::new()
            .name("sbc-xsk".into())
            .spawn(move || state.run())
            .map_err(|e| e.to_string())?;
        Ok(Self { mailbox })
    }

    /// Hands `order` to the thread and wakes it. (A thread that is gone has closed its
    /// sockets: the socket relay carries everything.)
    pub fn send(&self, order: XskOrder) {
        self.mailbox.send(order);
    }
}

/// A stream the AF_XDP relay knows.
struct Entry {
    path: PathHandle,
    bound: [SocketAddr; 2],
    sockets: Box<Sockets>,
}

/// A socket's preferred busy polling (`media.xsk_busy_poll`).
struct Busy {
    /// Configured on: the relay polls the socket's NAPI context before reading its ring.
    on: bool,
    /// The kernel's view was read after frames arrived (the NAPI id comes with the first
    /// frame, so that reading is final).
    checked: bool,
    /// `sbc_media_xsk_napi_id{interface, queue}`.
    napi_id: prometheus::IntGauge,
}

/// A resolved (or not) next hop toward a peer address.
#[derive(Clone, Copy)]
struct Hop {
    at: Instant,
    /// Egress ifindex and the next hop's MAC.
    found: Option<(u32, [u8; 6])>,
}

/// Where a frame of the batch came from.
#[derive(Clone, Copy)]
struct Meta {
    stream: StreamKey,
    leg: Side,
}

struct State {
    epoll: Epoll,
    bell: Arc<EventFd>,
    orders: Receiver<XskOrder>,
    core: Weak<dyn Control>,
    /// The latching policy's rules (fixed at start).
    rules: Rules,
    metrics: MediaMetrics,
    sockets: Vec<Xsk>,
    /// Busy-polling state per socket (same index).
    busy: Vec<Busy>,
    /// Our MAC per interface with a socket.
    macs: HashMap<u32, [u8; 6]>,
    streams: HashMap<StreamKey, Entry>,
    /// Relay endpoint (RTP and RTCP port of each side) → stream, side, port.
    by_addr: HashMap<SocketAddr, (StreamKey, Side, RelayPort)>,
    hops: HashMap<IpAddr, Hop>,
    neighbours: NeighbourPrimer,
    rx: Vec<Rx>,
    arena: Box<[Datagram]>,
    meta: Vec<Meta>,
    events: Vec<EpollEvent>,
    /// Polling interval while frames keep arriving (0: a wake-up per ready ring).
    poll: Duration,
    /// A sleep's poll has left frames behind once (logged once: the kernel's TX batch is
    /// smaller than [`xsk::POLL_SENDS`], or its poll does not send).
    noted_kicks: bool,
    /// `xsk_packets` by path, resolved once.
    via_xsk: prometheus::IntCounter,
    via_socket: prometheus::IntCounter,
}

impl State {
    fn run(&mut self) {
        // After a wake-up that found frames, the thread sleeps `poll` and then looks at every
        // RX ring instead of waiting for the next frame's wake-up (interrupt moderation, as
        // NAPI does): while media flows, one wake-up serves every frame of the interval, the
        // kernel's data-ready callback finds no waiter to wake, and the sleep's own `ppoll`
        // sends them all (`xsk::sleep_sending`: no `sendto`, and the NAPI thread the send
        // wakes does not preempt this one). The cost is up to `poll` of added delay. An interval that finds nothing goes
        // back to blocking in epoll, so an idle relay sleeps.
        let mut polling = false;
        loop {
            let n = if polling {
                // The frames the last pass queued leave on the way into the sleep.
                match xsk::sleep_sending(&mut self.sockets, self.poll) {
                    Ok(0) => {}
                    Ok(kicked) => {
                        if !self.noted_kicks {
                            self.noted_kicks = true;
                            tracing::debug!(
                                kicked,
                                "AF_XDP relay: frames left after the sleep's poll were kicked"
                            );
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "AF_XDP transmit kick failed"),
                }
                0
            } else {
                match self.epoll.wait(&mut self.events, EpollTimeout::NONE) {
                    Ok(n) => n,
                    Err(Errno::EINTR) => 0,
                    Err(e) => {
                        tracing::error!(error = %e, "AF_XDP relay: epoll_wait failed; relay ends");
                        return;
                    }
                }
            };
            if self.events[..n].iter().any(|e| e.data() == BELL) {
                let _ = self.bell.read();
            }
            if !self.take_orders() {
                return;
            }
            let Some(core) = self.core.upgrade() else {
                return;
            };
            let mut got = 0;
            if polling {
                for i in 0..self.sockets.len() {
                    self.poll_napi(i);
                    let n = self.drain(&*core, i);
                    if n > 0 {
                        self.check_busy(i);
                    }
                    got += n;
                }
            } else {
                // By index: `drain` needs `self` mutably while the events are read.
                let mut e = 0;
                while e < n {
                    let token = self.events[e].data();
                    e += 1;
                    if token != BELL
                        && let Ok(i) = usize::try_from(token)
                    {
                        let n = self.drain(&*core, i);
                        if n > 0 {
                            self.check_busy(i);
                        }
                        got += n;
                    }
                }
            }
            polling = got > 0 && !self.poll.is_zero();
        }
    }

    /// With busy polling on socket `i`, runs its NAPI poll here (the frames waiting in the
    /// device reach the RX ring without a NAPI thread's wake-up). Only in polling mode: a relay
    /// that then blocks in epoll leaves the queue to the kernel's `gro_flush_timeout` timer
    /// (validation requires `xsk_poll_us` > 0).
    fn poll_napi(&self, i: usize) {
        let (Some(sock), Some(busy)) = (self.sockets.get(i), self.busy.get(i)) else {
            return;
        };
        if !busy.on {
            return;
        }
        if let Err(e) = sock.poll_napi() {
            tracing::debug!(error = %e, "AF_XDP busy poll failed");
        }
    }

    /// Sets socket `i`'s NAPI id gauge from the kernel's view, once frames have arrived on it
    /// (before the first frame the socket has no NAPI id).
    fn check_busy(&mut self, i: usize) {
        let (Some(sock), Some(busy)) = (self.sockets.get(i), self.busy.get_mut(i)) else {
            return;
        };
        if !busy.on || busy.checked {
            return;
        }
        busy.checked = true;
        match sock.busy_poll() {
            Ok(state) => {
                busy.napi_id.set(i64::from(state.napi_id));
                if state.engaged() {
                    tracing::info!(
                        ifindex = sock.ifindex(),
                        queue = sock.queue(),
                        ?state,
                        "AF_XDP busy polling engaged"
                    );
                } else {
                    tracing::warn!(
                        ifindex = sock.ifindex(),
                        queue = sock.queue(),
                        ?state,
                        "AF_XDP busy polling cannot engage: the kernel reports no NAPI id for \
                         this socket (veth does not, as of Linux 6.18)"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading AF_XDP busy-poll options failed"),
        }
    }

    fn take_orders(&mut self) -> bool {
        loop {
            match self.orders.try_recv() {
                Ok(XskOrder::Add {
                    stream,
                    path,
                    bound,
                    sockets,
                }) => {
                    for (leg, addr) in [Side::Inside, Side::Outside].into_iter().zip(bound) {
                        for port in [RelayPort::Rtp, RelayPort::Rtcp] {
                            let a = SocketAddr::new(addr.ip(), addr.port() + port as u16);
                            self.by_addr.insert(a, (stream, leg, port));
                        }
                    }
                    self.streams.insert(
                        stream,
                        Entry {
                            path,
                            bound,
                            sockets,
                        },
                    );
                }
                Ok(XskOrder::Remove(stream)) => {
                    if let Some(e) = self.streams.remove(&stream) {
                        for addr in e.bound {
                            for k in 0..2 {
                                let a = SocketAddr::new(addr.ip(), addr.port() + k);
                                if self.by_addr.get(&a).is_some_and(|(s, ..)| *s == stream) {
                                    self.by_addr.remove(&a);
                                }
                            }
                        }
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Relays what socket `i` has received, a batch at a time, until its RX ring is empty
    /// (bounded: at most one ring's worth per wake-up, then the others get their turn).
    /// Returns how many frames it took.
    fn drain(&mut self, core: &dyn Control, i: usize) -> usize {
        let mut total = 0;
        for _ in 0..ROUNDS {
            let Some(sock) = self.sockets.get_mut(i) else {
                return total;
            };
            let got = sock.receive(&mut self.rx);
            total += got;
            if got == 0 {
                return total;
            }
            // Copy each payload out of the UMEM (the transform needs the headroom behind it
            // and the frame goes back to the kernel at once).
            self.meta.clear();
            for rx in &self.rx[..got] {
                let bytes = sock.frame(*rx);
                let parsed = frame::parse_udp(bytes);
                let known = parsed.and_then(|f| self.by_addr.get(&f.dst).map(|k| (f, *k)));
                let Some((f, (stream, leg, port))) = known else {
                    self.metrics
                        .dropped
                        .with_label_values(&["xsk_unknown"])
                        .inc();
                    continue;
                };
                let k = self.meta.len();
                let pkt = &mut self.arena[k];
                let Some(payload) = bytes.get(f.payload..f.payload + f.len) else {
                    continue;
                };
                let Some(room) = pkt.buf.get_mut(..payload.len()) else {
                    continue;
                };
                room.copy_from_slice(payload);
                pkt.len = payload.len();
                pkt.src = f.src;
                pkt.out = port as usize;
                self.meta.push(Meta { stream, leg });
            }
            // Copied out: the frames go back to the kernel.
            for rx in &self.rx[..got] {
                sock.recycle(*rx);
            }
            sock.refill();
            if !self.meta.is_empty() {
                self.relay(core);
            }
            if got < BATCH {
                return total;
            }
        }
        total
    }

    /// Decides the batch in the arena under one lock, then sends it on.
    fn relay(&mut self, core: &dyn Control) {
        let now = Instant::now();
        let mut news = relay::News::default();
        for (pkt, m) in self.arena.iter_mut().zip(&self.meta) {
            let port = if pkt.out == 0 {
                RelayPort::Rtp
            } else {
                RelayPort::Rtcp
            };
            let Some(entry) = self.streams.get(&m.stream) else {
                pkt.dst = None;
                continue;
            };
            let v = relay::forward(
                &mut entry.path.lock(),
                self.rules,
                &self.metrics,
                now,
                (m.stream, m.leg, port),
                pkt,
            );
            news.note(m.stream, m.leg, v);
        }
        news.deliver(core, now);
        let mut failed: Vec<Meta> = Vec::new();
        let (mut via_xsk, mut via_socket) = (0u64, 0u64);
        for k in 0..self.meta.len() {
            let m = self.meta[k];
            let pkt = &self.arena[k];
            let Some(to) = pkt.dst else { continue };
            let Some(entry) = self.streams.get(&m.stream) else {
                continue;
            };
            let out = m.leg.other().index();
            let from = SocketAddr::new(
                entry.bound[out].ip(),
                entry.bound[out].port() + u16::from(pkt.out == 1),
            );
            let hop = hop(&mut self.hops, &mut self.neighbours, to.ip(), now);
            let sent = match hop.and_then(|(ifindex, dst)| {
                let src = *self.macs.get(&ifindex)?;
                let s = self.sockets.iter().position(|s| s.ifindex() == ifindex)?;
                Some((s, Macs { dst, src }))
            }) {
                Some((s, macs)) => {
                    let payload = &pkt.buf[..pkt.len];
                    let ok = self.sockets[s].transmit(|buf| {
                        let h = frame::header_len(&from);
                        buf.get_mut(h..h + payload.len())?.copy_from_slice(payload);
                        frame::write_udp(buf, macs, from, to, payload.len())
                    });
                    via_xsk += u64::from(ok);
                    ok
                }
                None => {
                    let socket: &UdpSocket = &entry.sockets[out][pkt.out.min(1)];
                    let ok = socket.send_to(&pkt.buf[..pkt.len], to).is_ok();
                    via_socket += u64::from(ok);
                    ok
                }
            };
            if !sent {
                failed.push(m);
            }
        }
        // While polling, the next pass of `run` sleeps in `xsk::sleep_sending`, which sends
        // the last batch of each socket; without polling everything goes now.
        let keep = if self.poll.is_zero() {
            0
        } else {
            xsk::POLL_SENDS
        };
        for s in &mut self.sockets {
            if let Err(e) = s.kick_beyond(keep) {
                tracing::debug!(error = %e, "AF_XDP transmit kick failed");
            }
        }
        self.via_xsk.inc_by(via_xsk);
        self.via_socket.inc_by(via_socket);
        if !failed.is_empty() {
            self.metrics
                .dropped
                .with_label_values(&["send_failed"])
                .inc_by(failed.len() as u64);
            for m in failed {
                if let Some(e) = self.streams.get(&m.stream) {
                    e.path.lock().count_drop(m.leg);
                }
            }
        }
    }
}

/// The cached next hop toward `ip`, looked up again when stale.
fn hop(
    hops: &mut HashMap<IpAddr, Hop>,
    neighbours: &mut NeighbourPrimer,
    ip: IpAddr,
    now: Instant,
) -> Option<(u32, [u8; 6])> {
    if let Some(h) = hops.get(&ip) {
        let ttl = if h.found.is_some() { HOP_TTL } else { MISS_TTL };
        if now.saturating_duration_since(h.at) < ttl {
            return h.found;
        }
    }
    let found = neighbours.next_hop_mac(ip).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "AF_XDP relay: next-hop lookup failed");
        None
    });
    hops.insert(ip, Hop { at: now, found });
    found
}

/// Logs the NAPI knobs of `interfaces` that preferred busy polling relies on, warning when
/// they are off (then every packet still schedules NAPI, and busy polling only adds polls).
/// sysfs shows the interfaces of the namespace it was mounted in, so they may not be visible.
fn log_napi_knobs(interfaces: &[String]) {
    for name in interfaces {
        let read = |knob: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/{knob}"))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        match (read("napi_defer_hard_irqs"), read("gro_flush_timeout")) {
            (Some(defer), Some(timeout)) if defer > 0 && timeout > 0 => {
                tracing::info!(interface = %name, napi_defer_hard_irqs = defer,
                    gro_flush_timeout_ns = timeout, "AF_XDP busy polling: NAPI deferral set");
            }
            (Some(defer), Some(timeout)) => {
                tracing::warn!(interface = %name, napi_defer_hard_irqs = defer,
                    gro_flush_timeout_ns = timeout,
                    "AF_XDP busy polling needs napi_defer_hard_irqs and gro_flush_timeout set \
                     on the interface (docs/media.md); without them NAPI still runs per packet");
            }
            _ => tracing::info!(interface = %name,
                "AF_XDP busy polling: the interface's NAPI knobs are not visible here \
                 (sysfs of another network namespace)"),
        }
    }
}

/// Duplicates a stream's sockets for the AF_XDP relay's fallback sends.
pub(crate) fn dup_sockets(s: &Sockets) -> io::Result<Box<Sockets>> {
    Ok(Box::new([
        [s[0][0].try_clone()?, s[0][1].try_clone()?],
        [s[1][0].try_clone()?, s[1][1].try_clone()?],
    ]))
}
