//! Executes the media table's commands: binds relay sockets (reusing those of ended streams),
//! hands streams to the relay workers and takes them back, and applies fast-path mappings to
//! the XDP maps. Failures go back to the table through its `handle_*` methods.

use std::{
    collections::HashMap,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{Arc, Weak},
    time::{Duration, Instant},
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
    latch::Rules,
    path::PathHandle,
};
use sbc_proto::net::Side;
use tokio::sync::Notify;

use super::{
    neighbour::{NeighbourPrimer, Primed},
    relay::{self, Sockets},
    worker::{Order, Worker},
    xdp::XdpRelay,
    xdp_maps::XdpMaps,
    xsk_relay::{self, XskHub, XskOrder},
};
use crate::metrics::MediaMetrics;

/// One signaling shard's table and its executor, behind one lock shared by that shard's call
/// layer, the tick task and the shard's relay threads (which decide packets on the streams'
/// paths and take this lock only for the news a batch brings: latches, digits; and to park
/// sockets). No other shard takes it on its per-message path.
#[derive(Debug)]
pub(crate) struct Core {
    pub table: MediaTable,
    pub exec: Executor,
    /// Last views of the sessions this table released, for the call detail records.
    pub finals: super::finals::Finals,
    /// What this table last added to the shared gauges and counters.
    pub reported: super::reported::Reported,
}

impl relay::Control for Mutex<Core> {
    /// Under one hold of the core's lock: the table learns each verdict, the commands they
    /// produced run (a latch may change the fast path) and the call layer is woken for the
    /// events (latches to persist, digits to send as INFO).
    fn learn(&self, news: &mut relay::News, now: Instant) {
        let mut core = self.lock();
        let core = &mut *core;
        for (stream, leg, verdict) in news.drain() {
            core.table.learn(now, stream, leg, verdict);
        }
        if core.table.has_commands() {
            execute(core, now);
        }
        if core.table.has_events() {
            core.exec.events.notify_one();
        }
    }

    fn park(&self, sockets: Sockets) {
        self.lock().exec.park(sockets);
    }
}

/// The runtime side of the media table: sockets, relay workers, XDP maps.
#[derive(Debug)]
pub(crate) struct Executor {
    /// The XDP program (to start the AF_XDP relay on it); `None`: not attached.
    xdp: Option<Arc<Mutex<XdpRelay>>>,
    /// This shard's own handles on the program's per-call maps, written and read without the
    /// relay's lock (`Some` exactly when `xdp` is).
    maps: Option<XdpMaps>,
    /// Sockets (RTP, RTCP) of ended streams, by the RTP socket's local address, kept bound for
    /// the next stream that draws the port (their ports are free in the table's pool). At most
    /// one entry per pair of the port range, and at most `idle_limit` entries.
    idle: HashMap<SocketAddr, [UdpSocket; 2]>,
    /// Most pairs in `idle` (`media.relay_idle_sockets` / 2). Each socket is a descriptor:
    /// without a bound, every port pair ever used stays open, and a port range larger than
    /// the descriptor limit exhausts it (new streams then fail to bind, and so does every
    /// other descriptor the process needs, the admin API's connections included).
    idle_limit: usize,
    /// Pairs bound ahead for the table's next userspace streams (`MediaCommand::Prebind`),
    /// by RTP address. Never shed for descriptors: the table counts on them being bound.
    warm: HashMap<SocketAddr, [UdpSocket; 2]>,
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
    /// `neighbour_primes` by result (resolving, not_needed, recent, failed), on first use.
    prime_counters: Option<[prometheus::IntCounter; 4]>,
    /// The AF_XDP relay, one for every shard's executor (`None`: off): when it runs, pass
    /// mappings carry [`FLAG_XSK`] and it learns every socket-bound stream.
    xsk: Option<Arc<XskHub>>,
    /// XDP map writes of the commands being executed, made in batches.
    writes: Writes,
    /// The latching policy's rules, for the relay threads (fixed at start).
    rules: Rules,
    /// The relay workers' interrupt moderation (`media.relay_poll_us`).
    poll: Duration,
    /// The signaling shard this executor serves (its relay threads' names).
    shard: u16,
    /// The idle sockets this executor last added to the shared gauge.
    idle_reported: i64,
}

/// How the executor's relay threads run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayThreads {
    /// Most relay worker threads (`media.relay_workers`; at least one runs).
    pub workers: usize,
    /// Most relay sockets of ended streams kept bound (`media.relay_idle_sockets`).
    pub idle_sockets: usize,
    /// The latching policy's rules, which every stream's packet path applies.
    pub rules: Rules,
    /// While media flows, a worker takes what arrived every this often instead of waking
    /// per packet (`media.relay_poll_us`; zero: event-driven).
    pub poll: Duration,
    /// The signaling shard served.
    pub shard: u16,
}

impl Executor {
    /// An executor relaying with the relay threads `threads` describes.
    pub fn new(
        (xdp, maps): (Option<Arc<Mutex<XdpRelay>>>, Option<XdpMaps>),
        core: Weak<Mutex<Core>>,
        threads: RelayThreads,
        metrics: MediaMetrics,
        events: Arc<Notify>,
        prime_neighbours: bool,
    ) -> Self {
        let RelayThreads {
            workers: max_workers,
            idle_sockets,
            rules,
            poll,
            shard,
        } = threads;
        let xdp_is_some = xdp.is_some();
        let neighbours = (xdp.is_some() && prime_neighbours)
            .then(|| {
                NeighbourPrimer::new()
                    .inspect_err(|e| tracing::warn!(error = %e, "neighbour priming unavailable"))
                    .ok()
            })
            .flatten();
        Self {
            neighbours,
            prime_counters: None,
            events,
            // Map handles without the program (or the reverse) would leave the table's fast
            // paths half done: both or neither.
            xdp: if maps.is_some() { xdp } else { None },
            maps: if xdp_is_some { maps } else { None },
            idle: HashMap::new(),
            idle_limit: idle_sockets / 2,
            warm: HashMap::new(),
            pending: HashMap::new(),
            running: HashMap::new(),
            workers: Vec::new(),
            max_workers: max_workers.max(1),
            failed: Vec::new(),
            core,
            metrics,
            xsk: None,
            writes: Writes::default(),
            rules,
            poll,
            shard,
            idle_reported: 0,
        }
    }

    /// Hands every socket-bound stream to the AF_XDP relay `hub` from now on (started when
    /// the first stream needs its sockets bound, see [`xsk_relay::XskPlan`]).
    pub fn set_xsk(&mut self, hub: Arc<XskHub>) {
        self.xsk = Some(hub);
    }

    /// Whether the AF_XDP relay runs, started now if it is planned and not yet running (a
    /// stream is about to be bound). A relay that cannot start is not tried again: the
    /// reason is logged once and the relay sockets carry every userspace stream, as with
    /// `media.xsk = "off"`.
    fn start_xsk(&mut self) -> bool {
        match (&self.xsk, &self.xdp) {
            (Some(hub), Some(xdp)) => hub.start(xdp, self.rules),
            _ => false,
        }
    }

    /// Whether the AF_XDP relay runs.
    fn xsk_running(&self) -> bool {
        self.xsk.as_ref().is_some_and(|h| h.running())
    }

    /// Hands `order` to the AF_XDP relay if it runs.
    fn xsk_send(&self, order: XskOrder) {
        if let Some(hub) = &self.xsk {
            hub.send(order);
        }
    }

    /// This shard's handles on the XDP per-call maps (views read the counters there).
    pub fn maps(&self) -> Option<&XdpMaps> {
        self.maps.as_ref()
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
            self.keep_idle(pair);
        }
    }

    /// Keeps an ended stream's pair bound for reuse, or closes it when the cache is full.
    ///
    /// When full, the arriving pair is the one closed, not an older one: the port pool hands
    /// out pairs from the older half of its free list, so the pairs freed longest ago are the
    /// ones the next streams are likely to draw, and the one just freed is the least likely.
    fn keep_idle(&mut self, pair: [UdpSocket; 2]) {
        let Ok(addr) = pair[0].local_addr() else {
            return;
        };
        if self.idle.len() >= self.idle_limit && !self.idle.contains_key(&addr) {
            self.metrics
                .idle_closed
                .with_label_values(&["full"])
                .inc_by(2);
            return;
        }
        self.idle.insert(addr, pair);
        self.report_idle();
    }

    /// Adds what the idle sockets changed since the last report to the gauge every shard's
    /// executor adds to.
    fn report_idle(&mut self) {
        let now = gauge(2 * self.idle.len());
        self.metrics.idle_sockets.add(now - self.idle_reported);
        self.idle_reported = now;
    }

    /// Closes every idle pair (descriptors are short); returns how many sockets closed.
    fn shed_idle(&mut self) -> usize {
        let n = 2 * self.idle.len();
        self.idle.clear();
        self.report_idle();
        self.metrics
            .idle_closed
            .with_label_values(&["descriptors"])
            .inc_by(n as u64);
        n
    }

    /// The RTP and RTCP sockets of `addr` (RTP port): a parked pair, else freshly bound. Out
    /// of descriptors, the idle pairs are closed and the bind is tried once more: a cache
    /// must never cost a call its media.
    fn sockets(&mut self, addr: SocketAddr) -> std::io::Result<[UdpSocket; 2]> {
        match self.take_or_bind(addr) {
            Err(e) if out_of_descriptors(&e) && self.shed_idle() > 0 => {
                tracing::warn!(error = %e, "out of descriptors: closed the idle relay sockets");
                self.take_or_bind(addr)
            }
            r => r,
        }
    }

    fn take_or_bind(&mut self, addr: SocketAddr) -> std::io::Result<[UdpSocket; 2]> {
        // A pair bound ahead has listened since then, a parked one since its last call:
        // whatever is queued reached the port before this stream had it (a spray of the
        // range, the previous call's peer), and would otherwise be the first packet the
        // latching policy sees. Discarded, so that the pair starts as empty as one bound now.
        let taken = match self.warm.remove(&addr) {
            Some(pair) => Some(pair),
            None => {
                let parked = self.idle.remove(&addr);
                if parked.is_some() {
                    self.report_idle();
                }
                parked
            }
        };
        if let Some(pair) = taken {
            let stale = discard_queued(&pair);
            if stale > 0 {
                self.metrics
                    .dropped
                    .with_label_values(&[crate::metrics::DROP_UNALLOCATED])
                    .inc_by(stale);
            }
            return Ok(pair);
        }
        let rtp = relay::bind(addr.ip(), addr.port())?;
        let rtcp = relay::bind(addr.ip(), addr.port() + 1)?;
        Ok([rtp, rtcp])
    }

    /// `stream`'s `leg` sockets are bound; with both legs', hands the stream to a worker.
    /// `Err`: no worker runs and none could be started (the sockets are parked).
    fn bound(
        &mut self,
        stream: StreamKey,
        leg: Side,
        pair: [UdpSocket; 2],
        path: PathHandle,
    ) -> Result<(), &'static str> {
        let Some((other_leg, other)) = self.pending.remove(&stream) else {
            self.pending.insert(stream, (leg, pair));
            return Ok(());
        };
        if other_leg == leg {
            // A re-bind of the same side (cannot happen: a failed bind leaves nothing behind).
            self.pending.insert(stream, (leg, pair));
            return Ok(());
        }
        let sockets = if leg.index() == 0 {
            [pair, other]
        } else {
            [other, pair]
        };
        let Some(w) = self.worker() else {
            self.park(sockets);
            return Err("no relay worker could be started");
        };
        if self.xsk_running() {
            let bound = [&sockets[0][0], &sockets[1][0]].map(|s| s.local_addr());
            match (bound, xsk_relay::dup_sockets(&sockets)) {
                ([Ok(inside), Ok(outside)], Ok(dups)) => self.xsk_send(XskOrder::Add {
                    stream,
                    path: path.clone(),
                    bound: [inside, outside],
                    sockets: dups,
                }),
                // Out of descriptors: the stream's frames meet no entry in the AF_XDP relay
                // and are counted there as dropped; the socket path still works for the rest.
                _ => tracing::warn!("AF_XDP relay: cannot hand a stream over (descriptors)"),
            }
        }
        // A worker the executor already gave streams takes this one at its next wake-up.
        let busy = self.workers[w].streams > 0;
        self.workers[w].streams += 1;
        self.workers[w].add(
            Order::Add {
                stream,
                path,
                sockets,
            },
            busy,
        );
        self.running.insert(stream, w);
        Ok(())
    }

    /// The worker for a new stream: a new one while fewer than `max_workers` run, else the
    /// one with the fewest streams. `None` when none runs and none can be started.
    fn worker(&mut self) -> Option<usize> {
        if self.workers.len() < self.max_workers {
            match Worker::spawn(
                (self.shard, self.workers.len()),
                self.core.clone(),
                self.rules,
                self.poll,
                self.metrics.clone(),
            ) {
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
            Ok(Primed::Resolving) => 0,
            Ok(Primed::NotNeeded) => 1,
            Ok(Primed::Recent) => 2,
            Err(e) => {
                tracing::debug!(peer = %m.dst, error = %e, "priming the neighbour failed");
                3
            }
        };
        // Resolved once: this runs for every fast path installed.
        let counters = self.prime_counters.get_or_insert_with(|| {
            ["resolving", "not_needed", "recent", "failed"]
                .map(|r| self.metrics.neighbour_primes.with_label_values(&[r]))
        });
        counters[result].inc();
    }

    fn close(&mut self, stream: StreamKey) {
        if let Some((_, pair)) = self.pending.remove(&stream) {
            self.keep_idle(pair);
        }
        if let Some(w) = self.running.remove(&stream)
            && let Some(worker) = self.workers.get_mut(w)
        {
            // The worker parks the sockets when it takes the order.
            worker.streams = worker.streams.saturating_sub(1);
            worker.send(Order::Remove(stream));
        }
        self.xsk_send(XskOrder::Remove(stream));
    }
}

/// Whether `e` says the process or the system has no descriptor left.
/// Reads and drops every datagram queued on `pair` (without blocking); how many there were.
fn discard_queued(pair: &[UdpSocket; 2]) -> u64 {
    let mut scratch = [MaybeUninit::<u8>::uninit(); 64];
    let mut n = 0;
    for s in pair {
        let s = socket2::SockRef::from(s);
        while s.recv(&mut scratch).is_ok() {
            n += 1;
        }
    }
    n
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A count as a gauge value.
fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Drains `core`'s table of commands and executes them, at `now`. Bind failures the table
/// cannot repair are collected in [`Executor::take_failures`].
pub(crate) fn execute(core: &mut Core, now: Instant) {
    loop {
        run_commands(core, now);
        if core.exec.writes.is_empty() {
            return;
        }
        // Their failures go back to the table, which may answer with more commands.
        flush_writes(core);
    }
}

/// Executes the commands queued in the table; XDP map writes are collected in
/// [`Executor::writes`] for [`flush_writes`].
fn run_commands(core: &mut Core, now: Instant) {
    let mut xsk = core.exec.xsk_running();
    while let Some(cmd) = core.table.poll_command() {
        if core.exec.xdp.is_none() && Writes::of(&cmd).is_some() {
            continue;
        }
        // Each key's writes keep their order: a remove after a pending write of its key, or a
        // write after its pending remove, waits for the batch before it.
        if core.exec.writes.conflicts(&cmd) {
            flush_writes(core);
        }
        match cmd {
            MediaCommand::Bind { stream, leg, addr } => {
                // The stream's pass mappings come after its binds (the table queues them in
                // that order), so they carry the flag of a relay started here.
                if !xsk {
                    xsk = core.exec.start_xsk();
                }
                match (core.exec.sockets(addr), core.table.path(stream)) {
                    (Ok(pair), Some(path)) => {
                        if let Err(why) = core.exec.bound(stream, leg, pair, path) {
                            let e = core.table.handle_unrelayable(stream, why);
                            core.exec.failed.push((stream, e));
                        }
                    }
                    // Released before its bind ran: nothing to relay.
                    (Ok(pair), None) => core.exec.keep_idle(pair),
                    (Err(e), _) => {
                        tracing::debug!(%addr, error = %e, "relay port busy; trying another");
                        if let Err(e) = core.table.handle_bind_failed(stream, leg) {
                            core.exec.failed.push((stream, e));
                        }
                    }
                }
            }
            MediaCommand::Prebind { addr } => {
                // Already held (a pair the table gave back while its sockets stayed here).
                let bound = core.exec.warm.contains_key(&addr)
                    || match core.exec.sockets(addr) {
                        Ok(pair) => {
                            core.exec.warm.insert(addr, pair);
                            true
                        }
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "relay port busy; not bound ahead");
                            false
                        }
                    };
                core.table.handle_prebound(addr, bound);
            }
            MediaCommand::Unbind { addr } => drop(core.exec.warm.remove(&addr)),
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
            MediaCommand::Install(m) => core.exec.writes.install(m, xsk),
            MediaCommand::Update(m) => core.exec.writes.update(m, xsk),
            MediaCommand::Policy(m) => core.exec.writes.policy(m),
            MediaCommand::Remove { ingress, policy } => core.exec.writes.remove(ingress, policy),
            MediaCommand::ReadCounters { stream, slots } => {
                let Some(x) = &core.exec.maps else { continue };
                let total: u64 = slots
                    .iter()
                    .flatten()
                    .filter_map(|s| x.mapping_stats(s.slot, s.generation).ok())
                    .map(|m| m.packets)
                    .sum();
                core.table.handle_fast_path_packets(now, stream, total);
            }
        }
    }
}

/// Entries of each [`Writes`] vector kept allocated between batches: a few calls' worth (a
/// socketless call writes at most four mappings and four policies at a time).
const KEPT_WRITES: usize = 64;

/// XDP map writes collected while the table's commands run, made in one batch per map and
/// kind ([`XdpRelay::update_mappings`] …): a socketless call's four mappings and their latch
/// policies cost one `bpf(2)` call per map instead of one per entry. The vectors are kept
/// between batches (no allocation per call).
#[derive(Debug, Default)]
pub(crate) struct Writes {
    policy_keys: Vec<MappingKey>,
    policies: Vec<LatchPolicy>,
    /// The relay endpoint of each policy (for the table's feedback).
    policy_of: Vec<SocketAddr>,
    mapping_keys: Vec<MappingKey>,
    mappings: Vec<Mapping>,
    /// The fast path of each mapping and whether it is new (`Install`) or rewritten.
    mapping_of: Vec<(FastPath, bool)>,
    removes: Vec<MappingKey>,
    /// The removed keys that may have a latch policy (a subset of `removes`).
    policy_removes: Vec<MappingKey>,
}

impl Writes {
    /// The map key a command writes, if it writes one.
    fn of(cmd: &MediaCommand) -> Option<SocketAddr> {
        match cmd {
            MediaCommand::Install(m) | MediaCommand::Update(m) | MediaCommand::Policy(m) => {
                Some(m.ingress)
            }
            MediaCommand::Remove { ingress, .. } => Some(*ingress),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.policy_keys.is_empty() && self.mapping_keys.is_empty() && self.removes.is_empty()
    }

    /// Whether `cmd` must wait for the pending writes: it removes a key they write, or writes
    /// a key they remove.
    fn conflicts(&self, cmd: &MediaCommand) -> bool {
        let Some(ingress) = Self::of(cmd) else {
            return false;
        };
        let key = mapping_key(ingress);
        if matches!(cmd, MediaCommand::Remove { .. }) {
            self.policy_keys.contains(&key) || self.mapping_keys.contains(&key)
        } else {
            self.removes.contains(&key)
        }
    }

    /// Empties the batch. Room for [`KEPT_WRITES`] entries per vector is kept for the next
    /// one; a larger batch's (adoption of every pinned mapping at start) is given back.
    fn clear(&mut self) {
        fn reset<T>(v: &mut Vec<T>) {
            v.clear();
            v.shrink_to(KEPT_WRITES);
        }
        reset(&mut self.policy_keys);
        reset(&mut self.policies);
        reset(&mut self.policy_of);
        reset(&mut self.mapping_keys);
        reset(&mut self.mappings);
        reset(&mut self.mapping_of);
        reset(&mut self.removes);
        reset(&mut self.policy_removes);
    }

    /// A new mapping: its latch policy first if it awaits its latch (an awaiting mapping
    /// without one drops everything; a latched one consults none). A reused statistics slot
    /// needs no zeroing: the mapping's generation is new.
    fn install(&mut self, m: FastPath, xsk: bool) {
        if m.awaiting_policy().is_some() {
            self.policy(m);
        }
        self.put(m, xsk, true);
    }

    /// An installed mapping rewritten in place (counters kept).
    fn update(&mut self, m: FastPath, xsk: bool) {
        self.put(m, xsk, false);
    }

    fn put(&mut self, m: FastPath, xsk: bool, new: bool) {
        self.mapping_keys.push(mapping_key(m.ingress));
        self.mappings.push(mapping(&m, xsk));
        self.mapping_of.push((m, new));
    }

    /// The latch policy of a socketless mapping (written before any mapping of the batch).
    fn policy(&mut self, m: FastPath) {
        let PathMode::Kernel(k) = &m.mode else {
            return;
        };
        self.policy_keys.push(mapping_key(m.ingress));
        self.policies.push(latch_policy(k));
        self.policy_of.push(m.ingress);
    }

    /// A mapping to remove, with its latch policy if it may have one (a key without one would
    /// stop the batch at `ENOENT` and cost a call of its own).
    fn remove(&mut self, ingress: SocketAddr, policy: bool) {
        let key = mapping_key(ingress);
        self.removes.push(key);
        if policy {
            self.policy_removes.push(key);
        }
    }
}

/// Makes the collected map writes: latch policies, then mappings (a mapping whose policy the
/// kernel refused stays out: it must not await on another policy), then removals (mapping
/// before policy). Refused entries go back to the table (`handle_install_failed`: the stream
/// stays in or returns to userspace); installed paths get their neighbour primed.
fn flush_writes(core: &mut Core) {
    let mut w = std::mem::take(&mut core.exec.writes);
    let Some(x) = core.exec.maps.as_mut() else {
        w.clear();
        core.exec.writes = w;
        return;
    };
    // Rare: allocated only when the kernel refuses something.
    let mut failed: Vec<SocketAddr> = Vec::new();
    x.insert_policies(&w.policy_keys, &w.policies, &mut |i, e| {
        tracing::warn!(error = %e, "setting an XDP latch policy failed; stream goes to userspace");
        failed.push(w.policy_of[i]);
    });
    if !failed.is_empty() {
        // Keep the others in their order; drop those whose policy is not in place.
        let kept: Vec<usize> = (0..w.mapping_of.len())
            .filter(|&i| !failed.contains(&w.mapping_of[i].0.ingress))
            .collect();
        w.mapping_keys = kept.iter().map(|&i| w.mapping_keys[i]).collect();
        w.mappings = kept.iter().map(|&i| w.mappings[i]).collect();
        w.mapping_of = kept.iter().map(|&i| w.mapping_of[i]).collect();
    }
    let mut refused: Vec<usize> = Vec::new();
    x.update_mappings(&w.mapping_keys, &w.mappings, &mut |i, e| {
        if w.mapping_of[i].1 {
            // The userspace relay keeps forwarding: a full map costs speed, not calls.
            tracing::warn!(error = %e, "installing XDP mapping failed; stream stays in userspace");
        } else {
            tracing::warn!(error = %e, "updating XDP mapping failed");
        }
        refused.push(i);
    });
    x.remove_all(&w.removes, &w.policy_removes);
    for (i, (m, new)) in w.mapping_of.iter().enumerate() {
        if refused.contains(&i) {
            if *new {
                failed.push(m.ingress);
            }
            continue;
        }
        core.exec.prime(m);
        if *new && m.mode == PathMode::Relay {
            tracing::info!(relay = %m.ingress, peer = %m.expect,
                "stream latched on both sides; XDP fast path installed");
        }
    }
    w.clear();
    core.exec.writes = w;
    for ingress in failed {
        core.table.handle_install_failed(ingress);
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
