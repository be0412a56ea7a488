//! Executes the media table's commands: binds relay sockets (reusing those of ended streams),
//! hands streams to the relay workers and takes them back, and applies fast-path mappings to
//! the XDP maps. Failures go back to the table through its `handle_*` methods.

use std::{
    collections::HashMap,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{Arc, Weak},
    time::Instant,
};

use parking_lot::Mutex;
use sbc_ebpf_common::{
    AllowedSource, FLAG_AWAITING_LATCH, FLAG_FORWARD_RTCP, FLAG_IPV4, FLAG_PASS,
    FLAG_STRICT_SOURCE, FLAG_XSK, LATCH_HAS_REVERSE, LATCH_SOURCES, LatchPolicy, Mapping,
    MappingKey, ipv4_mapped,
};
use sbc_proto::media::{
    FastPath, MediaCommand, MediaError, MediaTable, StreamKey,
    fast_path::{KernelLatch, PathMode},
    table::leg_idx,
};
use sbc_proto::net::Side;
use tokio::sync::Notify;

use super::{
    neighbour::{NeighbourPrimer, Primed},
    relay::{self, Sockets},
    worker::{Order, Worker},
    xdp::XdpRelay,
    xsk_relay::{self, XskOrder, XskRelay},
};
use crate::metrics::MediaMetrics;

/// The table and its executor, behind one lock shared by the call layer's adapter, the tick
/// task and the relay workers (which take it once per wake-up, not per packet).
#[derive(Debug)]
pub(crate) struct Core {
    pub table: MediaTable,
    pub exec: Executor,
}

/// The runtime side of the media table: sockets, relay workers, XDP maps.
#[derive(Debug)]
pub(crate) struct Executor {
    xdp: Option<Arc<Mutex<XdpRelay>>>,
    /// Sockets (RTP, RTCP) of ended streams, by the RTP socket's local address, kept bound for
    /// the next stream that draws the port (their ports are free in the table's pool). At most
    /// one entry per pair of the port range.
    idle: HashMap<SocketAddr, [UdpSocket; 2]>,
    /// Streams with one side bound so far.
    pending: HashMap<StreamKey, (Side, [UdpSocket; 2])>,
    /// Relaying streams: the index of their worker in `workers`.
    running: HashMap<StreamKey, usize>,
    /// The relay workers started so far (on demand, up to `max_workers`).
    workers: Vec<Worker>,
    max_workers: usize,
    /// Signalled when the table has events for the call layer (digits a relay worker detected).
    pub events: Arc<Notify>,
    /// Bind failures the caller must act on (release the session or drop new streams).
    failed: Vec<(StreamKey, MediaError)>,
    /// The core itself, for the workers this executor starts.
    core: Weak<Mutex<Core>>,
    metrics: MediaMetrics,
    /// Resolves the next hop toward a fast path's peer when its mapping goes in
    /// (`media.xdp_prime_neighbours`; XDP only).
    neighbours: Option<NeighbourPrimer>,
    /// The AF_XDP relay, when it runs: pass mappings then carry [`FLAG_XSK`] and it learns
    /// every socket-bound stream.
    xsk: Option<XskRelay>,
}

impl Executor {
    /// An executor relaying with at most `max_workers` (at least one) worker threads.
    pub fn new(
        xdp: Option<Arc<Mutex<XdpRelay>>>,
        core: Weak<Mutex<Core>>,
        max_workers: usize,
        metrics: MediaMetrics,
        events: Arc<Notify>,
        prime_neighbours: bool,
    ) -> Self {
        let neighbours = (xdp.is_some() && prime_neighbours)
            .then(|| {
                NeighbourPrimer::new()
                    .inspect_err(|e| tracing::warn!(error = %e, "neighbour priming unavailable"))
                    .ok()
            })
            .flatten();
        Self {
            neighbours,
            events,
            xdp,
            idle: HashMap::new(),
            pending: HashMap::new(),
            running: HashMap::new(),
            workers: Vec::new(),
            max_workers: max_workers.max(1),
            failed: Vec::new(),
            core,
            metrics,
            xsk: None,
        }
    }

    /// Hands socket-bound streams bound from now on to the AF_XDP relay.
    pub fn set_xsk(&mut self, relay: XskRelay) {
        self.xsk = Some(relay);
    }

    /// Takes the bind failures collected since the last call.
    pub fn take_failures(&mut self) -> Vec<(StreamKey, MediaError)> {
        std::mem::take(&mut self.failed)
    }

    /// Sockets kept bound for reuse.
    pub fn idle_sockets(&self) -> usize {
        2 * self.idle.len()
    }

    /// Streams relayed by a worker.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Relay worker threads started.
    #[cfg(test)]
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// A stream's worker let go of its sockets: they become reusable.
    pub fn park(&mut self, sockets: Sockets) {
        for pair in sockets {
            if let Ok(addr) = pair[0].local_addr() {
                self.idle.insert(addr, pair);
            }
        }
    }

    /// The RTP and RTCP sockets of `addr` (RTP port): a parked pair, else freshly bound.
    fn sockets(&mut self, addr: SocketAddr) -> std::io::Result<[UdpSocket; 2]> {
        if let Some(pair) = self.idle.remove(&addr) {
            // Datagrams queued for the previous stream are not the new call's: discard them.
            // (Later strays meet the latching policy, as on a freshly bound port.)
            let mut scratch = [MaybeUninit::<u8>::uninit(); 64];
            for s in &pair {
                let s = socket2::SockRef::from(s);
                while s.recv(&mut scratch).is_ok() {}
            }
            return Ok(pair);
        }
        let rtp = relay::bind(addr.ip(), addr.port())?;
        let rtcp = relay::bind(addr.ip(), addr.port() + 1)?;
        Ok([rtp, rtcp])
    }

    fn bound(&mut self, stream: StreamKey, leg: Side, pair: [UdpSocket; 2]) {
        let Some((other_leg, other)) = self.pending.remove(&stream) else {
            self.pending.insert(stream, (leg, pair));
            return;
        };
        if other_leg == leg {
            // A re-bind of the same side (cannot happen: a failed bind leaves nothing behind).
            self.pending.insert(stream, (leg, pair));
            return;
        }
        let sockets = if leg_idx(leg) == 0 {
            [pair, other]
        } else {
            [other, pair]
        };
        let Some(w) = self.worker() else {
            self.park(sockets);
            self.failed.push((
                stream,
                MediaError::Unavailable("no relay worker could be started".into()),
            ));
            return;
        };
        if let Some(x) = &self.xsk {
            let bound = [&sockets[0][0], &sockets[1][0]].map(|s| s.local_addr());
            match (bound, xsk_relay::dup_sockets(&sockets)) {
                ([Ok(inside), Ok(outside)], Ok(dups)) => x.send(XskOrder::Add {
                    stream,
                    bound: [inside, outside],
                    sockets: dups,
                }),
                // Out of descriptors: the stream's frames meet no entry in the AF_XDP relay
                // and are counted there as dropped; the socket path still works for the rest.
                _ => tracing::warn!("AF_XDP relay: cannot hand a stream over (descriptors)"),
            }
        }
        self.workers[w].streams += 1;
        self.workers[w].send(Order::Add { stream, sockets });
        self.running.insert(stream, w);
    }

    /// The worker for a new stream: a new one while fewer than `max_workers` run, else the
    /// one with the fewest streams. `None` when none runs and none can be started.
    fn worker(&mut self) -> Option<usize> {
        if self.workers.len() < self.max_workers {
            match Worker::spawn(self.workers.len(), self.core.clone(), self.metrics.clone()) {
                Ok(w) => {
                    self.workers.push(w);
                    return Some(self.workers.len() - 1);
                }
                Err(e) => tracing::error!(error = %e, "starting a relay worker failed"),
            }
        }
        self.workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.streams)
            .map(|(i, _)| i)
    }

    /// Resolves the next hop toward `m`'s peer before its first packet needs it (see
    /// [`super::neighbour`]).
    fn prime(&mut self, m: &FastPath) {
        let Some(primer) = &mut self.neighbours else {
            return;
        };
        if m.mode == PathMode::Pass || m.dst.port() == 0 || m.dst.ip().is_unspecified() {
            return;
        }
        let result = match primer.prime(m.dst.ip(), Instant::now()) {
            Ok(Primed::Resolving) => "resolving",
            Ok(Primed::NotNeeded) => "not_needed",
            Ok(Primed::Recent) => "recent",
            Err(e) => {
                tracing::debug!(peer = %m.dst, error = %e, "priming the neighbour failed");
                "failed"
            }
        };
        self.metrics
            .neighbour_primes
            .with_label_values(&[result])
            .inc();
    }

    fn close(&mut self, stream: StreamKey) {
        if let Some((_, pair)) = self.pending.remove(&stream)
            && let Ok(addr) = pair[0].local_addr()
        {
            self.idle.insert(addr, pair);
        }
        if let Some(w) = self.running.remove(&stream)
            && let Some(worker) = self.workers.get_mut(w)
        {
            // The worker parks the sockets when it takes the order.
            worker.streams = worker.streams.saturating_sub(1);
            worker.send(Order::Remove(stream));
        }
        if let Some(x) = &self.xsk {
            x.send(XskOrder::Remove(stream));
        }
    }
}

/// Drains `core`'s table of commands and executes them, at `now`. Bind failures the table
/// cannot repair are collected in [`Executor::take_failures`].
pub(crate) fn execute(core: &mut Core, now: Instant) {
    while let Some(cmd) = core.table.poll_command() {
        match cmd {
            MediaCommand::Bind { stream, leg, addr } => match core.exec.sockets(addr) {
                Ok(pair) => core.exec.bound(stream, leg, pair),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "relay port busy; trying another");
                    if let Err(e) = core.table.handle_bind_failed(stream, leg) {
                        core.exec.failed.push((stream, e));
                    }
                }
            },
            MediaCommand::Close { stream } => core.exec.close(stream),
            MediaCommand::Wake { stream } => {
                // A stream still binding has no worker yet: it reads its deadline when added.
                if let Some(worker) = core
                    .exec
                    .running
                    .get(&stream)
                    .and_then(|&w| core.exec.workers.get(w))
                {
                    worker.send(Order::Wake(stream));
                }
            }
            MediaCommand::Install(m) => {
                let xsk = core.exec.xsk.is_some();
                let Some(xdp) = &core.exec.xdp else { continue };
                let key = mapping_key(m.ingress);
                let mut x = xdp.lock();
                let result = match &m.mode {
                    // Nothing to count: its slot is not one.
                    PathMode::Pass => x.update_mapping(&key, &mapping(&m, xsk)),
                    // The policy first: an awaiting mapping without one drops everything.
                    // A latched one consults none.
                    PathMode::Kernel(k) if k.awaiting => x
                        .insert_policy(&key, &latch_policy(k))
                        .and_then(|()| x.update_mapping(&key, &mapping(&m, xsk))),
                    // A reused statistics slot is not zeroed: the new generation is enough.
                    PathMode::Kernel(_) | PathMode::Relay => {
                        x.update_mapping(&key, &mapping(&m, xsk))
                    }
                };
                drop(x);
                if let Err(e) = result {
                    // The userspace relay keeps forwarding: a full map costs speed, not calls.
                    tracing::warn!(error = %e, "installing XDP mapping failed; stream stays in userspace");
                    core.table.handle_install_failed(m.ingress);
                } else {
                    core.exec.prime(&m);
                    if m.mode == PathMode::Relay {
                        tracing::info!(relay = %m.ingress, peer = %m.expect,
                            "stream latched on both sides; XDP fast path installed");
                    }
                }
            }
            MediaCommand::Update(m) => {
                let xsk = core.exec.xsk.is_some();
                let Some(xdp) = &core.exec.xdp else { continue };
                if let Err(e) = xdp
                    .lock()
                    .update_mapping(&mapping_key(m.ingress), &mapping(&m, xsk))
                {
                    tracing::warn!(error = %e, "updating XDP mapping failed");
                } else {
                    core.exec.prime(&m);
                }
            }
            MediaCommand::Policy(m) => {
                let Some(xdp) = &core.exec.xdp else { continue };
                let PathMode::Kernel(k) = &m.mode else {
                    continue;
                };
                let result = xdp
                    .lock()
                    .insert_policy(&mapping_key(m.ingress), &latch_policy(k));
                if let Err(e) = result {
                    // Never leave the mapping awaiting on sources the call no longer allows:
                    // as for a failed install, it goes and the stream is relayed in userspace.
                    tracing::warn!(error = %e, "updating an XDP latch policy failed");
                    core.table.handle_install_failed(m.ingress);
                }
            }
            MediaCommand::Remove { ingress } => {
                let Some(xdp) = &core.exec.xdp else { continue };
                let key = mapping_key(ingress);
                let mut x = xdp.lock();
                if let Err(e) = x.remove_mapping(&key).and_then(|()| x.remove_policy(&key)) {
                    tracing::warn!(error = %e, "removing XDP mapping failed");
                }
            }
            MediaCommand::ReadCounters { stream, slots } => {
                let Some(xdp) = &core.exec.xdp else { continue };
                let x = xdp.lock();
                let total: u64 = slots
                    .iter()
                    .flatten()
                    .filter_map(|s| x.mapping_stats(s.slot, s.generation).ok())
                    .map(|m| m.packets)
                    .sum();
                drop(x);
                core.table.handle_fast_path_packets(now, stream, total);
            }
        }
    }
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A port in the maps' network byte order.
fn port_be(p: u16) -> u16 {
    u16::from_ne_bytes(p.to_be_bytes())
}

pub(crate) fn port_of(be: u16) -> u16 {
    u16::from_be_bytes(be.to_ne_bytes())
}

pub(crate) fn ip_of(a: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The key of packets arriving at `relay`.
pub fn mapping_key(relay: SocketAddr) -> MappingKey {
    MappingKey {
        addr: addr16(relay.ip()),
        port: port_be(relay.port()),
        pad: 0,
    }
}

/// The XDP map value of a fast path; with `xsk` (the AF_XDP relay runs), pass mappings send
/// their packets to it instead of up the stack.
pub(crate) fn mapping(m: &FastPath, xsk: bool) -> Mapping {
    let mut flags = if m.ingress.is_ipv4() { FLAG_IPV4 } else { 0 };
    if m.strict {
        flags |= FLAG_STRICT_SOURCE;
    }
    match &m.mode {
        PathMode::Relay => {}
        PathMode::Pass => {
            flags |= FLAG_PASS;
            if xsk {
                flags |= FLAG_XSK;
            }
        }
        PathMode::Kernel(k) => {
            flags |= FLAG_FORWARD_RTCP;
            if k.awaiting {
                flags |= FLAG_AWAITING_LATCH;
            }
        }
    }
    Mapping {
        src_addr: addr16(m.egress.ip()),
        dst_addr: addr16(m.dst.ip()),
        expect_addr: addr16(m.expect.ip()),
        src_port: port_be(m.egress.port()),
        dst_port: port_be(m.dst.port()),
        expect_port: port_be(m.expect.port()),
        flags,
        slot: m.slot,
        generation: m.generation,
    }
}

/// The fast path a pinned map entry describes (adoption after a restart).
pub(crate) fn fast_path(key: &MappingKey, m: &Mapping) -> FastPath {
    let sock = |a: &[u8; 16], p: u16| SocketAddr::new(ip_of(a), port_of(p));
    FastPath {
        ingress: sock(&key.addr, key.port),
        expect: sock(&m.expect_addr, m.expect_port),
        egress: sock(&m.src_addr, m.src_port),
        dst: sock(&m.dst_addr, m.dst_port),
        strict: m.flags & FLAG_STRICT_SOURCE != 0,
        slot: m.slot,
        generation: m.generation,
        mode: PathMode::Relay,
    }
}

/// The program's form of a socketless mapping's latching policy.
pub(crate) fn latch_policy(k: &KernelLatch) -> LatchPolicy {
    let mut p = LatchPolicy {
        reverse: mapping_key(k.reverse),
        flags: LATCH_HAS_REVERSE,
        ..LatchPolicy::default()
    };
    for (entry, (ip, len)) in p
        .sources
        .iter_mut()
        .zip(k.sources.iter().flatten())
        .take(LATCH_SOURCES)
    {
        // IPv4 prefixes are matched on the IPv4-mapped form: 96 bits of mapping first.
        let bits = if ip.is_ipv4() {
            96 + u16::from(*len)
        } else {
            u16::from(*len)
        };
        *entry = AllowedSource {
            addr: addr16(*ip),
            port: 0,
            // A /0 would let anyone latch; the program treats 0 as unused, so keep it so.
            prefix_len: if *len == 0 { 0 } else { bits },
        };
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_entries_round_trip_through_fast_paths() {
        let f = FastPath {
            ingress: "198.18.1.1:20000".parse().expect("literal"),
            expect: "198.18.1.2:4000".parse().expect("literal"),
            egress: "198.18.2.1:20002".parse().expect("literal"),
            dst: "198.18.2.2:5000".parse().expect("literal"),
            strict: true,
            slot: 9,
            generation: 4,
            mode: PathMode::Relay,
        };
        let m = mapping(&f, true);
        assert_eq!(m.flags, FLAG_IPV4 | FLAG_STRICT_SOURCE);
        assert_eq!(fast_path(&mapping_key(f.ingress), &m), f);
    }
}
