//! The media manager: the runtime around the sans-I/O [`MediaTable`]. The signaling driver
//! hands the table to the core for each input ([`MediaManager::drive`], `now` read once per
//! turn), and the manager executes the commands the turn queued ([`super::executor`]); the
//! admin API's verbs do the same one at a time; a background task ticks the table's timers.
//!
//! Locking order: the core (table + executor) → the XDP relay. A stream's packet path is a
//! leaf: nothing else is taken while one is held (a relay thread lets go of its path before
//! it takes the core).

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use sbc_proto::media::{
    Allocation, MediaError, MediaPeers, MediaShare, MediaTable, RelaySettings, SessionId,
    SharedQuotas, SideAddress, SideAddresses, StreamDesc, StreamRelay, rejections::REASONS,
    table::TICK,
};
use sbc_proto::net::Side;

use super::{
    executor::{self, Core, Executor},
    policy::{self, MediaPolicy},
    reported,
    tables::Tables,
    view::{Overview, SessionView},
    xdp::XdpRelay,
    xsk_relay::XskHub,
};
use crate::{config::Config, metrics::MediaMetrics};

mod dtmf;

/// What the manager needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Addresses, ports, latching rules, limits and timeouts.
    pub relay: RelaySettings,
    /// Networks and trunk quotas at start (a live change replaces them, see
    /// [`MediaManager::set_policy`]).
    pub policy: MediaPolicy,
    /// Socketless streams where XDP is attached (`media.xdp_latch`).
    pub kernel_latch: bool,
    /// Resolve fast-path peers' next hops when their mappings go in
    /// (`media.xdp_prime_neighbours`).
    pub prime_neighbours: bool,
    /// Userspace relay worker threads (`media.relay_workers`, resolved: at least 1).
    pub relay_workers: usize,
    /// The relay workers' interrupt moderation while media flows (`media.relay_poll_us`).
    pub relay_poll: Duration,
    /// Most relay sockets of ended streams kept bound for reuse (`media.relay_idle_sockets`).
    pub relay_idle_sockets: usize,
    /// Port pairs per relay address bound ahead for new userspace streams
    /// (`media.warm_pairs`).
    pub warm_pairs: usize,
    /// The interfaces of the AF_XDP relay (`media.interfaces`), empty when `media.xsk` is
    /// off.
    pub xsk_interfaces: Vec<String>,
    /// The AF_XDP relay's polling interval while media flows (`media.xsk_poll_us`).
    pub xsk_poll: Duration,
    /// The AF_XDP sockets' busy-poll budget when `media.xsk_busy_poll` is on.
    pub xsk_busy_poll: Option<u16>,
}

impl MediaSettings {
    /// Settings from `[inside]`, `[outside]` and `[media]`.
    pub fn from_config(c: &Config) -> Self {
        let side = |s: &crate::config::Side| {
            let list = s
                .relay_addresses()
                .into_iter()
                .map(|(bind, advertised)| SideAddress { bind, advertised })
                .collect();
            // Validation refuses a side without a relay address; loopback keeps a
            // configuration that skipped it from panicking.
            SideAddresses::new(list).unwrap_or_else(|| {
                SideAddress {
                    bind: std::net::Ipv4Addr::LOCALHOST.into(),
                    advertised: std::net::Ipv4Addr::LOCALHOST.into(),
                }
                .into()
            })
        };
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            relay: RelaySettings {
                inside: side(&c.inside),
                outside: side(&c.outside),
                port_min: c.media.port_min,
                port_max: c.media.port_max,
                strict_source: c.media.strict_source,
                relatch_window: Duration::from_millis(c.media.relatch_window_ms),
                max_streams: c.media.max_streams,
                dtmf_queue: c.media.dtmf_queue,
                timeout: secs(c.media.timeout_s),
                hold_timeout: secs(c.media.hold_timeout_s),
            },
            policy: policy::from_config(c),
            kernel_latch: c.media.xdp_latch,
            prime_neighbours: c.media.xdp_prime_neighbours,
            relay_workers: match c.media.relay_workers {
                0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                n => n,
            },
            relay_poll: Duration::from_micros(c.media.relay_poll_us),
            relay_idle_sockets: idle_socket_budget(
                c.media.relay_idle_sockets,
                crate::sys::descriptor_limit(),
                c.sip.max_connections,
            ),
            warm_pairs: c.media.warm_pairs,
            xsk_interfaces: match c.media.xsk {
                crate::config::XskMode::Auto => c.media.interfaces.clone(),
                crate::config::XskMode::Off => Vec::new(),
            },
            xsk_poll: Duration::from_micros(c.media.xsk_poll_us),
            xsk_busy_poll: (c.media.xsk_busy_poll == crate::config::XskBusyPoll::On)
                .then_some(c.media.xsk_busy_poll_budget),
        }
    }
}

/// Descriptors the idle relay sockets never take: the process's own (listeners, the admin
/// API's connections, logs, the XDP objects) on top of the SIP connections.
const DESCRIPTOR_RESERVE: u64 = 1_024;

/// `media.relay_idle_sockets`, lowered to half of the descriptors left under `limit` (the
/// soft RLIMIT_NOFILE) after `DESCRIPTOR_RESERVE` and `sip_connections`: the other half stays
/// for live streams. A cache that may take every descriptor starves what must not fail (new
/// calls' sockets, the admin API); see `Executor::keep_idle`.
fn idle_socket_budget(configured: usize, limit: Option<u64>, sip_connections: usize) -> usize {
    let Some(limit) = limit else {
        return configured;
    };
    let reserve = DESCRIPTOR_RESERVE.saturating_add(sip_connections as u64);
    let budget = usize::try_from(limit.saturating_sub(reserve) / 2).unwrap_or(usize::MAX);
    if budget < configured {
        tracing::warn!(
            configured,
            kept = budget,
            descriptor_limit = limit,
            "media.relay_idle_sockets lowered to half the descriptors left for media"
        );
    }
    configured.min(budget)
}

/// The XDP relay and `shards` sets of handles on its per-call maps, one per shard's executor
/// (all `None` without XDP). If a set cannot be made (out of descriptors at start), the
/// media runs without the fast path rather than with a shard that cannot install one.
fn shard_maps(
    xdp: Option<Arc<Mutex<XdpRelay>>>,
    shards: u16,
) -> (
    Option<Arc<Mutex<XdpRelay>>>,
    impl Iterator<Item = Option<super::xdp_maps::XdpMaps>>,
) {
    let none = || (0..shards).map(|_| None).collect::<Vec<_>>();
    let Some(x) = xdp else {
        return (None, none().into_iter());
    };
    let made: Result<Vec<_>, _> = (0..shards)
        .map(|_| super::xdp_maps::XdpMaps::of(&x.lock()).map(Some))
        .collect();
    match made {
        Ok(m) => (Some(x), m.into_iter()),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the XDP maps for the media tables; \
                media is relayed without the fast path");
            (None, none().into_iter())
        }
    }
}

/// A handle to the media manager; cheap to clone, shared by the call layer and the admin API.
/// With signaling shards, each shard's handle ([`MediaManager::for_shard`]) drives its own
/// table; the admin API's handle reaches every table (sessions by the shard in their id).
#[derive(Debug, Clone)]
pub struct MediaManager {
    inner: Arc<Inner>,
    /// The shard whose table this handle drives.
    home: usize,
    /// The handle is not a shard's (the admin API's): its own sessions
    /// ([`Self::allocate`]) go to the tables in turn.
    spread: bool,
}

#[derive(Debug)]
struct Inner {
    /// One table (and executor) per signaling shard.
    tables: Arc<Tables>,
    /// The table the admin API's next session goes to (in turn).
    next_admin: std::sync::atomic::AtomicUsize,
    xdp: Option<Arc<Mutex<XdpRelay>>>,
    metrics: MediaMetrics,
    /// The port gauges' children, resolved once: [`Inner::update_gauges`] runs three times
    /// per call, and each `with_label_values` hashes its labels under the family's lock (and
    /// the address label was a new `String` each time).
    port_gauges: PortGauges,
}

/// `sbc_media_ports_free` by side and `sbc_media_address_ports_free` by relay address.
#[derive(Debug)]
struct PortGauges {
    sides: [prometheus::IntGauge; 2],
    /// The relay addresses the pools had at start; others (none today) resolve per update.
    addresses: Vec<(IpAddr, prometheus::IntGauge)>,
}

impl PortGauges {
    fn new(metrics: &MediaMetrics, table: &MediaTable) -> Self {
        let side = |s: Side| metrics.ports_free.with_label_values(&[s.as_str()]);
        Self {
            sides: [side(Side::Inside), side(Side::Outside)],
            addresses: table
                .ports_per_address()
                .map(|(ip, _, _)| {
                    let g = metrics
                        .address_ports_free
                        .with_label_values(&[&ip.to_string()]);
                    (ip, g)
                })
                .collect(),
        }
    }
}

impl MediaManager {
    /// Creates the manager with one table and spawns its timer task on the current tokio
    /// runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(
        settings: MediaSettings,
        xdp: Option<Arc<Mutex<XdpRelay>>>,
        metrics: MediaMetrics,
    ) -> Self {
        Self::with_shards(settings, xdp, metrics, 1)
    }

    /// Creates the manager with one table per signaling shard (`shards`, at least one), each
    /// over its share of the relay ports and statistics slots, and spawns their timer task
    /// on the current tokio runtime. The relay worker threads are split between the shards
    /// (at least one each, started on demand).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn with_shards(
        settings: MediaSettings,
        xdp: Option<Arc<Mutex<XdpRelay>>>,
        metrics: MediaMetrics,
        shards: u16,
    ) -> Self {
        let shards = shards.max(1);
        let runtime = tokio::runtime::Handle::current();
        // Each shard's own handles on the per-call maps, so no shard takes the relay's lock
        // to install a call's fast path (`xdp_maps.rs`). Without them for every shard the
        // media runs without XDP, which then passes every packet up as if detached.
        let (xdp, mut maps) = shard_maps(xdp, shards);
        let events = match (&xdp, settings.kernel_latch) {
            (Some(x), true) => super::latch_events::prepare(&mut x.lock(), &settings.relay),
            _ => None,
        };
        let kernel_latch = events.is_some();
        let mappings = settings.relay.fast_path_mappings();
        let rules = settings.relay.rules();
        metrics.xdp_mappings_capacity.set(i64::from(mappings));
        let quotas = SharedQuotas::default();
        let mut root = crate::entropy::rng();
        // The relay threads, the idle-socket cache and the warm pairs are the whole SBC's
        // figures: each shard's executor and table takes its part (threads at least one).
        let n = usize::from(shards);
        let workers = settings.relay_workers.div_ceil(n).max(1);
        let idle_sockets = settings.relay_idle_sockets / n;
        let warm_pairs = settings.warm_pairs.div_ceil(n);
        let cores = (0..shards)
            .map(|k| {
                let share = MediaShare::new(k, shards).unwrap_or(MediaShare::WHOLE);
                let table = if shards == 1 {
                    MediaTable::new(
                        settings.relay.clone(),
                        settings.policy.clone(),
                        xdp.is_some(),
                        mappings,
                        root.fork(),
                    )
                } else {
                    MediaTable::for_share(
                        &settings.relay,
                        settings.policy.clone(),
                        (xdp.is_some(), mappings),
                        root.fork(),
                        (share, quotas.clone()),
                    )
                };
                let ready = Arc::new(tokio::sync::Notify::new());
                let core = Arc::new_cyclic(|weak| {
                    Mutex::new(Core {
                        table,
                        exec: Executor::new(
                            (xdp.clone(), maps.next().flatten()),
                            weak.clone(),
                            executor::RelayThreads {
                                workers,
                                idle_sockets,
                                rules,
                                poll: settings.relay_poll,
                                shard: k,
                            },
                            metrics.clone(),
                            ready.clone(),
                            settings.prime_neighbours,
                        ),
                        finals: super::finals::Finals::default(),
                        reported: super::reported::Reported::default(),
                    })
                });
                (core, ready)
            })
            .collect();
        let tables = Arc::new(Tables::new(cores, settings.relay.clone()));
        let port_gauges = PortGauges::new(&metrics, &tables.core(0).lock().table);
        let inner = Arc::new(Inner {
            port_gauges,
            tables,
            next_admin: std::sync::atomic::AtomicUsize::new(0),
            xdp,
            metrics,
        });
        if let Some(ring) = events {
            for (_, core) in inner.tables.all() {
                core.lock().table.set_kernel_latch(true);
            }
            let weak = Arc::downgrade(&inner);
            let spawned = runtime.spawn(super::latch_events::run(ring, move |latches| {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                inner.kernel_latches(latches);
                true
            }));
            drop(spawned);
        }
        inner.start_xsk(&settings, kernel_latch);
        for (_, core) in inner.tables.all() {
            let mut core = core.lock();
            // Socketless streams leave the relay range unbound; the few that turn
            // socket-bound (SRTP, a rewrite) bind then, without a warm pool.
            let warm = if core.table.kernel_latch() {
                0
            } else {
                warm_pairs
            };
            core.table.set_warm_pairs(warm);
            inner.run(&mut core, Instant::now());
            inner.update_gauges(&mut core);
        }
        let weak = Arc::downgrade(&inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.tick(Instant::now());
            }
        });
        Self {
            inner,
            home: 0,
            spread: true,
        }
    }

    /// The handle of signaling shard `shard`: its [`Self::drive`], [`Self::read`] and
    /// [`Self::event_ready`] are of that shard's table.
    pub fn for_shard(&self, shard: usize) -> Self {
        Self {
            inner: self.inner.clone(),
            home: shard.min(usize::from(self.inner.tables.count()) - 1),
            spread: false,
        }
    }

    /// This handle's table.
    fn home(&self) -> &Arc<Mutex<Core>> {
        self.inner.tables.core(self.home)
    }

    /// The table of session `id`.
    fn owner(&self, id: SessionId) -> &Arc<Mutex<Core>> {
        self.inner.tables.core(self.inner.tables.of_session(id))
    }

    /// Completes when an event may be waiting for [`MediaTable::poll_event`] in this handle's
    /// table (its shard's driver selects on this, then drains `poll_event`).
    pub async fn event_ready(&self) {
        self.inner.tables.events(self.home).notified().await;
    }

    /// The relay settings in force (the whole port range).
    pub fn settings(&self) -> RelaySettings {
        self.inner.tables.whole().clone()
    }

    /// Replaces the media networks and trunk quotas for new calls in this handle's table (live
    /// configuration: every shard is told).
    pub fn set_policy(&self, policy: MediaPolicy) {
        self.home().lock().table.set_policy(policy);
    }

    /// Runs the tables' timers for `now` (the background task does this every [`TICK`];
    /// tests call it with a simulated time).
    pub fn tick(&self, now: Instant) {
        self.inner.tick(now);
    }

    /// A snapshot of one session for the admin API.
    pub fn session_view(&self, id: SessionId) -> Option<SessionView> {
        let core = self.owner(id).lock();
        self.inner.view(&core, id, Instant::now())
    }

    /// Keeps each released session's last view for [`Self::take_final`] from now on (the
    /// call detail records' media statistics); without it none is made.
    pub fn keep_final_views(&self) {
        for (_, core) in self.inner.tables.all() {
            core.lock().table.keep_released();
        }
    }

    /// The last view of a released session (once; see `finals.rs`).
    pub fn take_final(&self, id: SessionId) -> Option<SessionView> {
        self.owner(id).lock().finals.take(id)
    }

    /// Ids of every live session.
    pub fn session_ids(&self) -> Vec<SessionId> {
        let mut ids = Vec::new();
        for (_, core) in self.inner.tables.all() {
            ids.extend(core.lock().table.sessions().map(|(id, _)| id));
        }
        ids
    }

    /// Totals for `/api/v1/media`, over every shard's table.
    pub fn overview(&self) -> Overview {
        let mut o = Overview {
            userspace_packets: self.inner.metrics.user_packets.get(),
            userspace_bytes: self.inner.metrics.user_bytes.get(),
            timeouts: self.inner.metrics.timeouts.get(),
            ..Overview::default()
        };
        for (_, core) in self.inner.tables.all() {
            let core = core.lock();
            let t = &core.table;
            o.sessions += t.len();
            o.streams += t.sessions().map(|(_, s)| s.streams.len()).sum::<usize>();
            o.xdp_mappings += t.mappings();
            o.ports_free_inside += t.ports_free(Side::Inside);
            o.ports_free_outside += t.ports_free(Side::Outside);
            o.ports_total_inside += t.ports_total(Side::Inside);
            o.ports_total_outside += t.ports_total(Side::Outside);
            for (ip, free, total) in t.ports_per_address() {
                let address = ip.to_string();
                match o.addresses.iter_mut().find(|a| a.address == address) {
                    Some(a) => {
                        a.ports_free += free;
                        a.ports_total += total;
                    }
                    None => o.addresses.push(super::view::AddressView {
                        address,
                        ports_free: free,
                        ports_total: total,
                    }),
                }
            }
            o.idle_sockets += core.exec.idle_sockets();
            o.warm_pairs += t.warm_ready();
        }
        o.ports_total = o.ports_total_inside;
        o
    }

    /// Recreates sessions from mappings a previous process left in the pinned XDP maps, so
    /// established media keeps its ports and its fast path (see
    /// [`MediaTable::adopt`]); each mapping goes to the shard that owns its port. Returns
    /// the adopted session ids.
    pub fn adopt(&self) -> Vec<SessionId> {
        let Some(xdp) = &self.inner.xdp else {
            return Vec::new();
        };
        let found = match xdp.lock().mappings() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "reading pinned mappings failed; nothing adopted");
                return Vec::new();
            }
        };
        let tables = &self.inner.tables;
        let mut per_shard: Vec<Vec<_>> = tables.all().map(|_| Vec::new()).collect();
        for (k, m) in &found {
            let f = executor::fast_path(k, m);
            // Outside the range (another configuration's): shard 0 removes it.
            let shard = tables.of_port(f.ingress.port()).unwrap_or(0);
            if let Some(list) = per_shard.get_mut(shard) {
                list.push(f);
            }
        }
        let now = Instant::now();
        let mut ids = Vec::new();
        for ((_, core), found) in tables.all().zip(per_shard) {
            let mut core = core.lock();
            let mut adopted = core.table.adopt(now, &found);
            let failed = self.inner.run(&mut core, now);
            for (stream, e) in failed {
                tracing::warn!(error = %e, session = %stream.session, "cannot adopt mapping");
                core.table.release(stream.session);
                adopted.retain(|id| *id != stream.session);
            }
            self.inner.run(&mut core, now);
            self.inner.update_gauges(&mut core);
            ids.extend(adopted);
        }
        for id in &ids {
            tracing::info!(session = %id, "adopted pinned XDP mappings");
        }
        ids
    }
}

impl Inner {
    /// The view of session `id` at `now` (its fast-path counters read through the shard's
    /// own map handles).
    fn view(&self, core: &Core, id: SessionId, now: Instant) -> Option<SessionView> {
        let s = core.table.session(id)?;
        Some(super::view::session_view(id, s, core.exec.maps(), now))
    }

    /// Executes the table's commands; returns the bind failures it could not repair.
    fn run(&self, core: &mut Core, now: Instant) -> Vec<(sbc_proto::media::StreamKey, MediaError)> {
        executor::execute(core, now);
        core.exec.take_failures()
    }

    /// After a turn of the table: the last views of the sessions it released (before their
    /// mappings and counters go), then its commands executed and the gauges set. `ran`: the
    /// caller executed commands of the turn already (the gauges are due even if none is
    /// left).
    fn settle(&self, core: &mut Core, now: Instant, ran: bool) {
        if core.table.has_released() {
            let Core {
                table,
                finals,
                exec,
                ..
            } = core;
            for (id, s) in table.drain_released() {
                finals.put(id, super::view::session_view(id, &s, exec.maps(), now));
            }
        }
        // Most inputs (a provisional, an ACK, a BYE's answer) change nothing of the table's:
        // nothing to execute, no gauge to set.
        let refused = core.table.rejections().total();
        if !ran && !core.table.has_commands() && refused == core.reported.rejections_total {
            return;
        }
        // A failure here is in the table's events already (`MediaEvent::Failed`).
        for (stream, e) in self.run(core, now) {
            tracing::warn!(error = %e, session = %stream.session, "relay socket failure");
        }
        self.update_gauges(core);
    }

    /// The gauges that cost little to set (after every change to the table): this table's
    /// change since its last report is added to each ([`super::reported`]).
    fn update_gauges(&self, core: &mut Core) {
        let Core {
            table: t,
            reported: r,
            ..
        } = core;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let m = &self.metrics;
        reported::gauge(&m.sessions, &mut r.sessions, gauge(t.len()));
        reported::gauge(&m.warm_pairs, &mut r.warm_pairs, gauge(t.warm_ready()));
        // The table counts; the counters follow it (only this adds to them).
        let (misses, failures) = t.warm_misses_and_failures();
        reported::counter(&m.warm_misses, &mut r.warm_misses, misses);
        reported::counter(&m.warm_failures, &mut r.warm_failures, failures);
        let refused = t.rejections();
        if refused.total() != r.rejections_total {
            r.rejections_total = refused.total();
            r.rejections.resize(REASONS.len(), 0);
            for ((reason, n), last) in REASONS
                .iter()
                .zip(refused.counts())
                .zip(r.rejections.iter_mut())
            {
                reported::counter(&m.rejected.with_label_values(&[reason]), last, n);
            }
        }
        for leg in [Side::Inside, Side::Outside] {
            let g = &self.port_gauges.sides[leg.index()];
            reported::gauge(g, &mut r.ports_free[leg.index()], gauge(t.ports_free(leg)));
        }
        for (ip, free, _) in t.ports_per_address() {
            let last = reported::address(&mut r.addresses, ip);
            match self.port_gauges.addresses.iter().find(|(a, _)| *a == ip) {
                Some((_, g)) => reported::gauge(g, last, gauge(free)),
                None => {
                    let g = m.address_ports_free.with_label_values(&[&ip.to_string()]);
                    reported::gauge(&g, last, gauge(free));
                }
            }
        }
    }

    /// Plans the AF_XDP relay on `media.interfaces` (empty: `media.xsk = "off"`) if it can
    /// run, logging once why not otherwise; the first executor to bind a stream starts it,
    /// and every shard's executor hands it their socket-bound streams.
    fn start_xsk(&self, settings: &MediaSettings, kernel_latch: bool) {
        let interfaces = &settings.xsk_interfaces;
        if interfaces.is_empty() {
            return;
        }
        if self.xdp.is_none() {
            tracing::info!(
                "AF_XDP relay off: XDP is not attached; SRTP streams use the relay sockets"
            );
            return;
        }
        if !kernel_latch {
            // Without in-kernel latching the table installs no pass mappings for socket-bound
            // streams, so there is nothing to carry the AF_XDP flag.
            tracing::info!(
                "AF_XDP relay off: it needs media.xdp_latch; SRTP streams use the relay sockets"
            );
            return;
        }
        // Its sockets open with the first stream bound (`XskPlan`): until an SRTP call comes,
        // the UMEMs would be pinned memory for nothing.
        let plan = super::xsk_relay::XskPlan {
            interfaces: interfaces.clone(),
            poll: settings.xsk_poll,
            busy_poll: settings.xsk_busy_poll,
        };
        match plan.check() {
            Ok(()) => {
                let tables = Arc::downgrade(&self.tables);
                let hub = Arc::new(XskHub::new(plan, tables, self.metrics.clone()));
                for (_, core) in self.tables.all() {
                    core.lock().exec.set_xsk(hub.clone());
                }
                tracing::info!(
                    ?interfaces,
                    "AF_XDP relay ready: its sockets open with the first SRTP stream"
                );
            }
            Err(reason) => {
                tracing::warn!(%reason, "AF_XDP relay unavailable; SRTP streams use the relay sockets");
            }
        }
    }

    /// Latches the XDP program made (from the ring buffer reader): into the table of the
    /// shard that owns each relay port, and the commands that follow executed.
    fn kernel_latches(&self, latches: &[(std::net::SocketAddr, std::net::SocketAddr)]) {
        let now = Instant::now();
        for (k, core) in self.tables.all() {
            // A port outside the range (none the program reports) goes to shard 0, which
            // finds no stream for it.
            let mut mine = latches
                .iter()
                .filter(|(ingress, _)| self.tables.of_port(ingress.port()).unwrap_or(0) == k)
                .peekable();
            if mine.peek().is_none() {
                continue;
            }
            let mut core = core.lock();
            for (ingress, peer) in mine {
                if core.table.handle_kernel_latch(now, *ingress, *peer) {
                    self.metrics.xdp_latches.inc();
                    tracing::debug!(relay = %ingress, %peer, shard = k, "latched in XDP");
                } else {
                    // A stream released meanwhile: its mapping is gone or going.
                    tracing::debug!(relay = %ingress, %peer, "XDP latch for no stream");
                }
            }
            for (stream, e) in self.run(&mut core, now) {
                tracing::warn!(error = %e, session = %stream.session, "relay socket failure");
            }
            drop(core);
            // The call layer persists latches (`MediaEvent::Latched`).
            self.tables.events(k).notify_one();
        }
    }

    fn tick(&self, now: Instant) {
        let mut mappings = 0usize;
        for (k, core) in self.tables.all() {
            let mut core = core.lock();
            let fired = core.table.handle_timeout(now);
            for (stream, e) in self.run(&mut core, now) {
                tracing::warn!(error = %e, session = %stream.session, "relay socket failure");
            }
            self.update_gauges(&mut core);
            // Counting the mappings visits every stream: on the tick, not per call. Per call
            // (three times) it made the SBC's work per call grow with the calls up: at 5,000
            // calls/s with 7,000 up, counting took 75 % of the signaling thread and the SBC
            // fell to a tenth of its rate (the "overload collapse" of the signaling benchmark).
            mappings += core.table.mappings();
            // Timeouts, and digits of events whose end never came (`flush_dtmf`).
            let events = core.table.has_events();
            drop(core);
            if events || fired > 0 {
                self.tables.events(k).notify_one();
            }
            if fired > 0 {
                self.metrics.timeouts.inc_by(fired as u64);
                tracing::info!(
                    sessions = fired,
                    shard = k,
                    "media timeout; asking the call layer to end the calls"
                );
            }
        }
        self.metrics
            .xdp_mappings
            .set(i64::try_from(mappings).unwrap_or(i64::MAX));
    }
}

impl MediaManager {
    /// Hands this handle's table to `f` (the signaling core's turn at `now`: one input, or
    /// the timers), then executes the commands it queued, before anything the turn produced
    /// is sent: the sockets and mappings its SDP names exist by then. What went wrong
    /// executing them the table reports as events ([`MediaEvent::Failed`]); the driver is
    /// woken for them.
    pub fn drive<R>(&self, now: Instant, f: impl FnOnce(&mut MediaTable) -> R) -> R {
        let inner = &self.inner;
        let mut core = self.home().lock();
        let r = f(&mut core.table);
        inner.settle(&mut core, now, false);
        let events = core.table.has_events();
        drop(core);
        if events {
            inner.tables.events(self.home).notify_one();
        }
        r
    }

    /// Reads this handle's table (the call records' media snapshots).
    pub fn read<R>(&self, f: impl FnOnce(&MediaTable) -> R) -> R {
        f(&self.home().lock().table)
    }

    /// [`MediaTable::allocate`] for the admin API: a session of its own, refused whole when a
    /// port cannot be bound (there is no call layer to end it later). A shard's handle
    /// allocates in its table; the admin API's handle in each table in turn, so that its
    /// sessions spread as calls do.
    pub fn allocate(
        &self,
        now: Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        let inner = &self.inner;
        let table = if self.spread {
            let turn = inner
                .next_admin
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            inner.tables.core(turn % usize::from(inner.tables.count()))
        } else {
            self.home()
        };
        let mut core = table.lock();
        let mut result = core.table.allocate(now, from, streams, peers);
        if let Ok(a) = &result
            && let Some((_, e)) = inner
                .run(&mut core, now)
                .into_iter()
                .find(|(s, _)| s.session == a.session)
        {
            core.table.release(a.session);
            result = Err(e);
        }
        inner.settle(&mut core, now, true);
        drop(core);
        match &result {
            Ok(a) => tracing::debug!(session = %a.session, side = from.as_str(),
                streams = a.streams.len(), "media allocated"),
            Err(e) => tracing::info!(error = %e, sip_status = e.status_code(),
                "media offer rejected"),
        }
        result
    }

    /// [`MediaTable::commit`] for the admin API.
    pub fn commit(
        &self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.describe(now, id, from, streams, true)
    }

    /// [`MediaTable::update`] for the admin API.
    pub fn update(
        &self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.describe(now, id, from, streams, false)
    }

    /// [`MediaTable::commit`] (`answer`) or [`MediaTable::update`] for the admin API, in the
    /// session's table; new streams of a re-offer that cannot be bound are dropped again and
    /// the verb refused.
    fn describe(
        &self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
        answer: bool,
    ) -> Result<Vec<StreamRelay>, MediaError> {
        let inner = &self.inner;
        let mut core = self.owner(id).lock();
        let have = core.table.session(id).map_or(0, |s| s.streams.len());
        let mut result = if answer {
            core.table.commit(now, id, from, streams)
        } else {
            core.table.update(now, id, from, streams)
        };
        if let Some((_, e)) = inner.run(&mut core, now).into_iter().next() {
            core.table.drop_streams_from(id, have);
            result = Err(e);
        }
        inner.settle(&mut core, now, true);
        result
    }

    /// [`MediaTable::release`] for the admin API, in the session's table.
    pub fn release(&self, now: Instant, id: SessionId) {
        self.for_shard(self.inner.tables.of_session(id))
            .drive(now, |t| t.release(id));
        tracing::debug!(session = %id, "media session released");
    }
}

#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::metrics::Metrics;
    use sbc_proto::media::MediaEvent;

    pub(super) const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    pub(super) fn settings(min: u16, max: u16) -> MediaSettings {
        let side = SideAddress {
            bind: LO,
            advertised: LO,
        };
        MediaSettings {
            relay: RelaySettings {
                inside: side.into(),
                outside: side.into(),
                port_min: min,
                port_max: max,
                strict_source: false,
                relatch_window: Duration::from_secs(2),
                max_streams: 4,
                dtmf_queue: 16,
                timeout: Some(Duration::from_secs(60)),
                hold_timeout: Some(Duration::from_secs(3600)),
            },
            policy: MediaPolicy::default(),
            kernel_latch: false,
            prime_neighbours: false,
            relay_workers: 2,
            relay_poll: Duration::ZERO,
            relay_idle_sockets: 4_096,
            warm_pairs: 2,
            xsk_interfaces: Vec::new(),
            xsk_poll: Duration::ZERO,
            xsk_busy_poll: None,
        }
    }

    /// A PBX and a carrier socket on loopback (reads time out after `timeout`) and a session
    /// offered from the PBX's address and answered from the carrier's.
    pub(super) fn answered_call(
        m: &mut MediaManager,
        timeout: Duration,
    ) -> (std::net::UdpSocket, std::net::UdpSocket, Allocation) {
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        for s in [&pbx, &carrier] {
            s.set_read_timeout(Some(timeout)).expect("timeout");
        }
        let pbx_port = pbx.local_addr().expect("addr").port();
        let carrier_port = carrier.local_addr().expect("addr").port();
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, pbx_port)],
                &MediaPeers::default(),
            )
            .expect("offer");
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, carrier_port)],
        )
        .expect("answer");
        (pbx, carrier, a)
    }

    fn manager(min: u16, max: u16) -> MediaManager {
        let m = Metrics::new().expect("metrics");
        MediaManager::new(settings(min, max), None, m.media)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strict_source_drops_strangers_in_userspace() {
        let mut s = settings(41_500, 41_599);
        s.relay.strict_source = true;
        // No re-latch window: the stranger (same address as the SDP, so allowed) comes right
        // after the answer, when a window would let it take the latch.
        s.relay.relatch_window = Duration::ZERO;
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(s, None, metrics.media.clone());
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("stranger");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        carrier
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let pbx_addr = pbx.local_addr().expect("addr");
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, pbx_addr.port())],
                &MediaPeers::default(),
            )
            .expect("offer");
        let carrier_port = carrier.local_addr().expect("addr").port();
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, carrier_port)],
        )
        .expect("answer");
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let mut buf = [0u8; 64];
        pbx.send_to(&[0x80; 20], in_relay).expect("send");
        carrier.recv_from(&mut buf).expect("latched peer relayed");
        stranger.send_to(&[0x80; 20], in_relay).expect("send");
        assert!(carrier.recv_from(&mut buf).is_err(), "stranger relayed");
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].inside.dropped, 1);
        // The one-way-audio diagnosis sees who was refused and why, and the SDP address.
        let stranger_addr = stranger.local_addr().expect("addr").to_string();
        assert_eq!(
            v.streams[0].inside.refused_from.as_deref(),
            Some(stranger_addr.as_str())
        );
        assert_eq!(v.streams[0].inside.refused_reason, Some("strict_source"));
        assert_eq!(
            v.streams[0].inside.sdp.as_deref(),
            Some(pbx_addr.to_string().as_str())
        );
        assert_eq!(v.streams[0].inside.sdp_direction, "sendrecv");
        assert_eq!(
            v.streams[0].inside.latched.as_deref(),
            Some(pbx_addr.to_string().as_str())
        );
        assert_eq!(
            metrics
                .media
                .dropped
                .with_label_values(&["strict_source"])
                .get(),
            1
        );
    }

    /// Through the real relay on loopback: plain RTP from the PBX leaves toward the carrier
    /// encrypted with the SBC's outside key, the carrier's SRTP reaches the PBX plain, and
    /// packets with a corrupted tag are dropped and counted, not forwarded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_terminates_srtp_and_drops_forged_packets() {
        use sbc_proto::{
            b2bua::Rng,
            srtp::{KeySpec, MasterKey, SrtpContext, StreamKeys, Suite},
        };
        let keys = |seed: u64, suite: Suite| {
            let mut rng = Rng::from_test_seed(seed);
            let mut spec = || KeySpec {
                suite,
                key: MasterKey::generate(suite, &mut rng),
                lifetime: None,
            };
            StreamKeys {
                rx: spec(),
                tx: spec(),
            }
        };
        let context = |spec: &KeySpec| SrtpContext::new(spec.suite, &spec.key, spec.lifetime);
        let rtp = |seq: u16| {
            let mut b = [0u8; 64];
            b[0] = 0x80;
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            b[8..12].copy_from_slice(&7u32.to_be_bytes());
            b[12..32].copy_from_slice(&[0x55; 20]);
            (b, 32)
        };
        let metrics = Metrics::new().expect("metrics");
        let mut m = MediaManager::new(settings(42_000, 42_099), None, metrics.media.clone());
        let (pbx, carrier, a) = answered_call(&mut m, Duration::from_millis(500));
        let outside = keys(11, Suite::AesCm128HmacSha1_80);
        let now = Instant::now();
        m.drive(now, |t| {
            t.set_crypto(now, a.session, Side::Outside, &[Some(outside.clone())])
        })
        .expect("keys");
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let out_relay = SocketAddr::new(LO, a.streams[0].outside.rtp_port);
        let mut buf = [0u8; 256];

        // PBX → carrier: encrypted on the wire, decrypts with the SBC's outside tx key.
        let (plain, n) = rtp(1);
        pbx.send_to(&plain[..n], in_relay).expect("send");
        let (got, _) = carrier.recv_from(&mut buf).expect("carrier receives");
        assert_eq!(got, n + 10, "80-bit tag appended");
        assert_ne!(
            buf[12..n],
            plain[12..n],
            "no clear payload toward the carrier"
        );
        let len = context(&outside.tx)
            .unprotect_rtp(&mut buf[..got])
            .expect("SBC's key");
        assert_eq!(buf[..len], plain[..n]);

        // Carrier → PBX: its SRTP arrives plain.
        let mut carrier_ctx = context(&outside.rx);
        let (mut p, n) = rtp(500);
        let sn = carrier_ctx.protect_rtp(&mut p, n).expect("protect");
        carrier.send_to(&p[..sn], out_relay).expect("send");
        let (got, _) = pbx.recv_from(&mut buf).expect("pbx receives");
        assert_eq!(buf[..got], rtp(500).0[..n]);

        // A corrupted tag: dropped, counted, nothing reaches the PBX.
        let (mut p, n) = rtp(501);
        let sn = carrier_ctx.protect_rtp(&mut p, n).expect("protect");
        p[sn - 1] ^= 0xff;
        carrier.send_to(&p[..sn], out_relay).expect("send");
        assert!(
            pbx.recv_from(&mut buf).is_err(),
            "forged packet not forwarded"
        );
        assert_eq!(metrics.media.srtp_auth_failures.get(), 1);
        assert_eq!(
            metrics
                .media
                .dropped
                .with_label_values(&["srtp_auth_failed"])
                .get(),
            1
        );
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].srtp.outside, Some("AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(v.streams[0].srtp.inside, None);
        assert_eq!(v.streams[0].outside.dropped, 1);
        assert!(!format!("{v:?}").contains(&outside.tx.key.to_inline()));
        m.keep_final_views();
        m.release(Instant::now(), a.session);
        // The released session's last view is kept once for its call detail record.
        let last = m.take_final(a.session).expect("final view");
        assert_eq!(last.streams[0].inside.userspace_packets, 1);
        assert_eq!(last.streams[0].outside.userspace_packets, 1);
        assert!(m.take_final(a.session).is_none(), "taken once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outsider_never_latches_before_or_after_the_peers() {
        let mut s = settings(41_700, 41_799);
        s.relay.strict_source = true;
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(s, None, metrics.media.clone());
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        // Another loopback address: neither SDP names it nor is it a signaling peer.
        let outsider = std::net::UdpSocket::bind("127.0.0.2:0").expect("outsider");
        for sock in [&pbx, &carrier, &outsider] {
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
        }
        let pbx_addr = pbx.local_addr().expect("addr");
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, pbx_addr.port())],
                &MediaPeers::default(),
            )
            .expect("offer");
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let out_relay = SocketAddr::new(LO, a.streams[0].outside.rtp_port);
        let mut buf = [0u8; 64];
        // Before the carrier's answer: the outsider sprays the outside port, then the PBX
        // talks. Nothing reaches the outsider, and it did not latch the carrier leg.
        outsider.send_to(&[0x80; 12], out_relay).expect("send");
        outsider.send_to(&[0x80; 12], in_relay).expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        pbx.send_to(&[0x80; 20], in_relay).expect("send");
        assert!(outsider.recv_from(&mut buf).is_err(), "outsider got media");
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].outside.latched, None, "{v:?}");
        assert_eq!(
            v.streams[0].inside.latched.as_deref(),
            Some(pbx_addr.to_string().as_str())
        );
        // After the answer: the carrier is reached, the outsider still is not.
        let carrier_port = carrier.local_addr().expect("addr").port();
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, carrier_port)],
        )
        .expect("answer");
        pbx.send_to(&[0x80; 20], in_relay).expect("send");
        carrier.recv_from(&mut buf).expect("carrier receives");
        carrier.send_to(&[0x80; 20], out_relay).expect("send");
        pbx.recv_from(&mut buf).expect("pbx receives");
        outsider.send_to(&[0x80; 12], out_relay).expect("send");
        assert!(pbx.recv_from(&mut buf).is_err(), "outsider relayed");
        assert!(outsider.recv_from(&mut buf).is_err(), "outsider got media");
        assert_eq!(
            metrics
                .media
                .dropped
                .with_label_values(&["not_allowed"])
                .get(),
            3
        );
    }

    #[tokio::test]
    async fn trunk_port_quota_refuses_with_503_and_frees_on_release() {
        let mut s = settings(41_800, 41_899);
        s.policy.trunks.insert(
            "carrier".into(),
            super::super::policy::TrunkMedia {
                networks: Arc::from([]),
                max_ports: Some(4),
            },
        );
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(s, None, metrics.media.clone());
        let peers = MediaPeers {
            trunk: Some("carrier".into()),
            ..MediaPeers::default()
        };
        let one = [StreamDesc::new(LO, 4000)];
        let a = m
            .allocate(Instant::now(), Side::Inside, &one, &peers)
            .expect("2 of 4 ports");
        m.allocate(Instant::now(), Side::Inside, &one, &peers)
            .expect("4 of 4 ports");
        let err = m
            .allocate(Instant::now(), Side::Inside, &one, &peers)
            .expect_err("quota");
        assert_eq!(err, MediaError::QuotaExhausted("carrier".into()));
        assert_eq!(err.status_code(), 503);
        assert_eq!(
            metrics
                .media
                .rejected
                .with_label_values(&["trunk_quota"])
                .get(),
            1
        );
        // Other calls are not affected; a released call gives its ports back.
        m.allocate(Instant::now(), Side::Inside, &one, &MediaPeers::default())
            .expect("no trunk, no quota");
        m.release(Instant::now(), a.session);
        m.allocate(Instant::now(), Side::Inside, &one, &peers)
            .expect("freed");
    }

    /// The call layer's turn: the endpoints `allocate` returns are in the SDP before the
    /// binds run, so a pair another program holds is not swapped behind the call's back: the
    /// table reports the session failed and the driver is woken to end the call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_port_after_the_turn_fails_the_session_and_wakes_the_driver() {
        // Two pairs on one address, no warm pairs: the call's two legs take both, and another
        // program holds the RTCP port of one.
        let mut s = settings(43_310, 43_313);
        s.warm_pairs = 0;
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(s, None, metrics.media.clone());
        let _other = std::net::UdpSocket::bind((LO, 43_313)).expect("another program's port");
        let now = Instant::now();
        let one = [StreamDesc::new(LO, 4000)];
        let a = m
            .drive(now, |t| {
                t.allocate(now, Side::Inside, &one, &MediaPeers::default())
            })
            .expect("the endpoints are returned before any bind");
        let told = [a.streams[0].inside.rtp_port, a.streams[0].outside.rtp_port];
        assert!(told.contains(&43_312), "both pairs are told: {told:?}");
        tokio::time::timeout(Duration::from_secs(2), m.event_ready())
            .await
            .expect("the driver is woken");
        assert_eq!(
            m.drive(now, MediaTable::poll_event),
            Some(MediaEvent::Failed(a.session))
        );
        let view = m.session_view(a.session).expect("live until the call ends");
        assert_eq!(view.streams.len(), 1);
        m.release(now, a.session);
        assert!(m.drive(now, |t| t.holds_nothing()));
    }

    /// Offers the call layer's turn refuses count like the admin API's.
    #[tokio::test]
    async fn refusals_in_a_turn_are_counted_by_reason() {
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(settings(43_320, 43_329), None, metrics.media.clone());
        let now = Instant::now();
        let five = [StreamDesc::new(LO, 4000); 5];
        let e = m
            .drive(now, |t| {
                t.allocate(now, Side::Inside, &five, &MediaPeers::default())
            })
            .expect_err("more streams than max_streams");
        assert_eq!(e.status_code(), 488);
        let counted = |reason: &str| metrics.media.rejected.with_label_values(&[reason]).get();
        assert_eq!(counted("stream_count"), 1);
        assert_eq!(counted("ports_exhausted"), 0);
    }

    #[tokio::test]
    async fn more_m_lines_than_max_streams_get_488() {
        let m = manager(41_900, 41_999);
        let five = [StreamDesc::new(LO, 4000); 5];
        let err = m
            .allocate(Instant::now(), Side::Inside, &five, &MediaPeers::default())
            .expect_err("five streams");
        assert_eq!(err.status_code(), 488);
        assert_eq!(
            m.inner
                .metrics
                .rejected
                .with_label_values(&["stream_count"])
                .get(),
            1
        );
        m.allocate(
            Instant::now(),
            Side::Inside,
            &five[..4],
            &MediaPeers::default(),
        )
        .expect("four streams");
    }

    #[tokio::test]
    async fn event_ready_wakes_on_timeout() {
        let m = manager(41_600, 41_699);
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, 6000)],
        )
        .expect("answer");
        m.tick(Instant::now() + Duration::from_secs(61));
        tokio::time::timeout(Duration::from_secs(1), m.event_ready())
            .await
            .expect("woken");
        assert_eq!(
            m.drive(Instant::now(), MediaTable::poll_event),
            Some(MediaEvent::Timeout(a.session))
        );
    }

    #[tokio::test]
    async fn exhaustion_rejects_with_503_and_release_frees() {
        // Both sides share 127.0.0.1 and so one pool: a stream takes two of its four pairs.
        let m = manager(41_000, 41_007);
        let peer = StreamDesc::new(LO, 4000);
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[peer],
                &MediaPeers::default(),
            )
            .expect("first call");
        let b = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[peer],
                &MediaPeers::default(),
            )
            .expect("second call");
        let err = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[peer],
                &MediaPeers::default(),
            )
            .expect_err("no ports left");
        assert_eq!(err.status_code(), 503);
        assert_eq!(
            m.inner
                .metrics
                .rejected
                .with_label_values(&["ports_exhausted"])
                .get(),
            1
        );
        m.release(Instant::now(), a.session);
        m.release(Instant::now(), b.session);
        m.release(Instant::now(), b.session); // idempotent
        // Ports return once the sockets are closed (the aborted tasks are reaped).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[peer],
                &MediaPeers::default(),
            )
            .expect("ports reused after release");
        assert_eq!(c.streams.len(), 1);
        assert_eq!(m.overview().sessions, 1);
    }

    /// Ports another program holds are found while binding ahead, not when a call's SDP is
    /// written: every call takes a pair already bound (no miss), none of the held ports
    /// reaches an SDP, and the failures are counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_ports_are_found_ahead_and_calls_take_bound_pairs() {
        // Eight pairs, one pool for both sides (loopback): at most two held warm.
        let (min, max) = (41_700, 41_715);
        let held: Vec<std::net::UdpSocket> = (min..max)
            .step_by(4)
            .map(|p| std::net::UdpSocket::bind((LO, p)).expect("hold a relay port"))
            .collect();
        let busy: Vec<u16> = held
            .iter()
            .map(|s| s.local_addr().expect("addr").port())
            .collect();
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(settings(min, max), None, metrics.media.clone());
        let warm = || metrics.media.warm_pairs.get();
        let settle = |m: &MediaManager| {
            for _ in 0..64 {
                if warm() == 2 {
                    break;
                }
                m.tick(Instant::now());
            }
        };
        let mut sdp_ports = Vec::new();
        for n in 0..2 {
            settle(&m);
            assert_eq!(warm(), 2, "call {n}: two pairs bound ahead");
            let a = m
                .allocate(
                    Instant::now(),
                    Side::Inside,
                    &[StreamDesc::new(LO, 9)],
                    &MediaPeers::default(),
                )
                .expect("offer");
            let r = a.streams[0];
            sdp_ports.extend([r.inside.rtp_port, r.outside.rtp_port]);
        }
        assert_eq!(
            metrics.media.warm_misses.get(),
            0,
            "no bind on a call's path"
        );
        assert!(
            sdp_ports.iter().all(|p| !busy.contains(p)),
            "{sdp_ports:?} {busy:?}"
        );
        // The four free pairs are in calls: topping up met only the held ports.
        assert!(metrics.media.warm_failures.get() >= 2);
        assert_eq!(warm(), 0);
        drop(held);
    }

    /// A pair bound ahead listens before any call has it. Whoever sprays the relay range then
    /// (here from the very address both peers' SDP will name, so the latching policy allows
    /// it) must find nothing queued for the call that takes the pair: its datagrams neither
    /// latch a leg nor draw the call's audio, as on a port bound at the offer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn datagrams_sprayed_at_warm_pairs_before_the_call_are_not_its_media() {
        let (min, max) = (42_200, 42_215);
        let metrics = Metrics::new().expect("metrics");
        let mut s = settings(min, max);
        s.relay.strict_source = true;
        s.relay.relatch_window = Duration::ZERO;
        let mut m = MediaManager::new(s, None, metrics.media.clone());
        for _ in 0..64 {
            if metrics.media.warm_pairs.get() == 2 {
                break;
            }
            m.tick(Instant::now());
        }
        assert_eq!(metrics.media.warm_pairs.get(), 2, "two pairs bound ahead");
        let sprayer = std::net::UdpSocket::bind("127.0.0.1:0").expect("sprayer");
        sprayer
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        for port in min..=max {
            for _ in 0..3 {
                sprayer.send_to(&[0x80; 20], (LO, port)).expect("spray");
            }
        }
        let (pbx, carrier, a) = answered_call(&mut m, Duration::from_millis(500));
        assert_eq!(
            metrics.media.warm_misses.get(),
            0,
            "the call took warm pairs"
        );
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let out_relay = SocketAddr::new(LO, a.streams[0].outside.rtp_port);
        let mut buf = [0u8; 64];
        pbx.send_to(&[0x80; 20], in_relay).expect("send");
        carrier
            .recv_from(&mut buf)
            .expect("the carrier hears the PBX");
        carrier.send_to(&[0x80; 20], out_relay).expect("send");
        pbx.recv_from(&mut buf).expect("the PBX hears the carrier");
        assert!(
            sprayer.recv_from(&mut buf).is_err(),
            "the sprayer got the call's audio"
        );
        let v = m.session_view(a.session).expect("view");
        let latched = |s: &std::net::UdpSocket| Some(s.local_addr().expect("addr").to_string());
        assert_eq!(v.streams[0].inside.latched, latched(&pbx), "{v:?}");
        assert_eq!(v.streams[0].outside.latched, latched(&carrier), "{v:?}");
        // The four sockets held 3 datagrams each (RTP and RTCP), all discarded and counted.
        assert_eq!(
            metrics
                .media
                .dropped
                .with_label_values(&["unallocated"])
                .get(),
            12
        );
        m.release(Instant::now(), a.session);
    }

    /// A worker that already relays a stream is handed the next one without a wake-up; it
    /// takes it at its next bounded sleep, so the new call's first packet still crosses (and
    /// quickly: within the worker's longest sleep, not at some unrelated wake-up).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_handed_to_a_busy_worker_quietly_relays_within_its_longest_sleep() {
        let mut s = settings(41_800, 41_899);
        s.relay_workers = 1;
        let metrics = Metrics::new().expect("metrics");
        let mut m = MediaManager::new(s, None, metrics.media.clone());
        let (_pbx1, _carrier1, first) = answered_call(&mut m, Duration::from_secs(2));
        let (pbx, carrier, second) = answered_call(&mut m, Duration::from_secs(2));
        assert_eq!(m.home().lock().exec.workers(), 1, "one worker for both");
        let mut p = [0u8; 172];
        p[0] = 0x80;
        let in_relay = SocketAddr::new(LO, second.streams[0].inside.rtp_port);
        let sent = Instant::now();
        pbx.send_to(&p, in_relay).expect("send");
        let mut buf = [0u8; 256];
        let (n, _) = carrier.recv_from(&mut buf).expect("relayed");
        assert_eq!(n, 172);
        // Scheduling noise aside, within the longest sleep; without it, never.
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{:?}",
            sent.elapsed()
        );
        m.release(Instant::now(), first.session);
        m.release(Instant::now(), second.session);
    }

    /// Interrupt moderation: while packets come faster than the interval, one wake-up takes
    /// what arrived during it, so 200 packets 100 µs apart cost a few dozen wake-ups instead
    /// of one each; every packet is still relayed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_worker_takes_an_interval_of_packets_per_wake_up() {
        let mut s = settings(42_300, 42_399);
        s.relay_workers = 1;
        s.relay_poll = Duration::from_millis(2);
        let metrics = Metrics::new().expect("metrics");
        let mut m = MediaManager::new(s, None, metrics.media.clone());
        let (pbx, carrier, a) = answered_call(&mut m, Duration::from_secs(2));
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let mut p = [0u8; 172];
        p[0] = 0x80;
        let before = metrics.media.relay_wakeups.get();
        const PACKETS: usize = 200;
        for _ in 0..PACKETS {
            pbx.send_to(&p, in_relay).expect("send");
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut buf = [0u8; 256];
        for n in 0..PACKETS {
            carrier
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("packet {n} relayed: {e}"));
        }
        let wakeups = metrics.media.relay_wakeups.get() - before;
        // At least 20 ms of sending in 2 ms intervals: ~10-20 wake-ups (each interval's, and
        // the first of a burst); event-driven it would be close to one per packet.
        assert!(wakeups <= PACKETS as u64 / 4, "{wakeups} wake-ups");
        m.release(Instant::now(), a.session);
    }

    #[tokio::test]
    async fn bad_offers_get_488() {
        let m = manager(41_100, 41_199);
        assert_eq!(
            m.allocate(Instant::now(), Side::Inside, &[], &MediaPeers::default())
                .expect_err("empty")
                .status_code(),
            488
        );
        let v6 = StreamDesc::new("2001:db8::1".parse().expect("literal"), 4000);
        assert_eq!(
            m.allocate(Instant::now(), Side::Inside, &[v6], &MediaPeers::default())
                .expect_err("family")
                .status_code(),
            488
        );
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let two = [StreamDesc::new(LO, 5000), StreamDesc::new(LO, 5002)];
        assert_eq!(
            m.commit(Instant::now(), a.session, Side::Outside, &two)
                .expect_err("mismatch")
                .status_code(),
            488
        );
        // Nothing leaked: the failed offers hold no ports.
        assert_eq!(m.overview().ports_free_inside, 50 - 2);
    }

    #[tokio::test]
    async fn disabled_stream_gets_port_zero_and_update_keeps_ports() {
        let m = manager(41_200, 41_299);
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 4000), StreamDesc::new(LO, 0)],
                &MediaPeers::default(),
            )
            .expect("offer");
        assert_eq!(a.streams[1].outside.rtp_port, 0);
        let committed = m
            .commit(
                Instant::now(),
                a.session,
                Side::Outside,
                &[StreamDesc::new(LO, 6000), StreamDesc::new(LO, 0)],
            )
            .expect("answer");
        assert_eq!(committed, a.streams);
        let mut reoffer = vec![StreamDesc::new(LO, 4100), StreamDesc::new(LO, 0)];
        reoffer[0].rtcp_mux = true;
        reoffer.push(StreamDesc::new(LO, 4200));
        let updated = m
            .update(Instant::now(), a.session, Side::Inside, &reoffer)
            .expect("re-offer");
        assert_eq!(updated[0].inside.rtp_port, a.streams[0].inside.rtp_port);
        assert_eq!(
            updated[0].inside.rtcp_port, updated[0].inside.rtp_port,
            "rtcp-mux"
        );
        assert_eq!(updated.len(), 3);
        assert_ne!(updated[2].inside.rtp_port, 0);
    }

    #[tokio::test]
    async fn media_timeout_fires_once_and_uses_hold_value() {
        let m = manager(41_300, 41_399);
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let t0 = Instant::now();
        // Not committed yet: no timeout however long it rings.
        m.tick(t0 + Duration::from_secs(120));
        assert_eq!(m.drive(Instant::now(), MediaTable::poll_event), None);
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, 6000)],
        )
        .expect("answer");
        let t1 = Instant::now();
        m.tick(t1 + Duration::from_secs(59));
        assert_eq!(m.drive(Instant::now(), MediaTable::poll_event), None);
        m.tick(t1 + Duration::from_secs(61));
        assert_eq!(
            m.drive(Instant::now(), MediaTable::poll_event),
            Some(MediaEvent::Timeout(a.session))
        );
        m.tick(t1 + Duration::from_secs(62));
        assert_eq!(
            m.drive(Instant::now(), MediaTable::poll_event),
            None,
            "reported once"
        );

        // On hold (sendonly), the hold timeout applies instead.
        let b = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 4002)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let mut held = StreamDesc::new(LO, 6002);
        held.direction = sbc_proto::media::Direction::SendOnly;
        m.commit(Instant::now(), b.session, Side::Outside, &[held])
            .expect("answer");
        let t2 = Instant::now();
        m.tick(t2 + Duration::from_secs(61));
        assert_eq!(m.drive(Instant::now(), MediaTable::poll_event), None);
        m.tick(t2 + Duration::from_secs(3601));
        assert_eq!(
            m.drive(Instant::now(), MediaTable::poll_event),
            Some(MediaEvent::Timeout(b.session))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    /// The data plane decides an established stream's packets holding only its packet path:
    /// media keeps flowing while the table is held (by the call layer, the tick, an admin
    /// view). Before the split, every relay wake-up took the table's lock.
    async fn an_established_stream_relays_while_the_table_is_held() {
        let mut m = manager(41_500, 41_599);
        let (pbx, carrier, a) = answered_call(&mut m, Duration::from_secs(2));
        let r = a.streams[0];
        let (in_relay, out_relay) = (
            SocketAddr::new(LO, r.inside.rtp_port),
            SocketAddr::new(LO, r.outside.rtp_port),
        );
        let mut buf = [0u8; 256];
        let mut pkt = [0u8; 172];
        pkt[0] = 0x80;
        // Both legs latch first: a latch is news the table must learn (under its lock).
        pbx.send_to(&pkt, in_relay).expect("send");
        carrier.recv_from(&mut buf).expect("carrier receives");
        carrier.send_to(&pkt, out_relay).expect("send");
        pbx.recv_from(&mut buf).expect("pbx receives");
        let held = m.home().lock();
        for seq in 2u16..12 {
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pbx.send_to(&pkt, in_relay).expect("send");
            let (n, from) = carrier
                .recv_from(&mut buf)
                .expect("relayed while the table is held");
            assert_eq!(
                (n, from, &buf[2..4]),
                (172, out_relay, &seq.to_be_bytes()[..])
            );
            carrier.send_to(&pkt, out_relay).expect("send");
            pbx.recv_from(&mut buf)
                .expect("relayed back while the table is held");
        }
        drop(held);
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].inside.userspace_packets, 11);
        assert_eq!(v.streams[0].outside.userspace_packets, 11);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_both_directions_and_latches_nat_source() {
        let m = manager(41_400, 41_499);
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        for s in [&pbx, &carrier] {
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        // The PBX's SDP names a private address the relay cannot reach: only latching helps.
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, 9)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let carrier_port = carrier.local_addr().expect("addr").port();
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, carrier_port)],
        )
        .expect("answer");
        let r = a.streams[0];
        let mut buf = [0u8; 256];
        let pkt = |seq: u16| {
            let mut p = [0u8; 172];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p
        };
        let in_relay = SocketAddr::new(LO, r.inside.rtp_port);
        let out_relay = SocketAddr::new(LO, r.outside.rtp_port);
        pbx.send_to(&pkt(1), in_relay).expect("send");
        let (n, from) = carrier.recv_from(&mut buf).expect("carrier receives");
        assert_eq!((n, from), (172, out_relay));
        carrier.send_to(&pkt(7), out_relay).expect("send back");
        let (n, from) = pbx.recv_from(&mut buf).expect("pbx receives via latch");
        assert_eq!((n, from), (172, in_relay));
        assert_eq!(&buf[2..4], &7u16.to_be_bytes());
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].inside.userspace_packets, 1);
        assert_eq!(
            v.streams[0].inside.latched.as_deref(),
            Some(pbx.local_addr().expect("addr").to_string().as_str())
        );

        // A re-offer with the same SDP address keeps the latch and the ports...
        let again = m
            .update(
                Instant::now(),
                a.session,
                Side::Inside,
                &[StreamDesc::new(LO, 9)],
            )
            .expect("re-offer");
        assert_eq!(again, a.streams);
        let v = m.session_view(a.session).expect("view");
        assert!(v.streams[0].inside.latched.is_some(), "kept: {v:?}");
        // ...a changed one drops it: the relay sends to the new SDP address until the peer's
        // next packet latches again.
        m.update(
            Instant::now(),
            a.session,
            Side::Inside,
            &[StreamDesc::new(LO, 4444)],
        )
        .expect("re-offer");
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].inside.latched, None);
        assert_eq!(
            v.streams[0].inside.target.as_deref(),
            Some("127.0.0.1:4444")
        );
        pbx.send_to(&pkt(2), in_relay).expect("send");
        carrier.recv_from(&mut buf).expect("carrier receives");
        let v = m.session_view(a.session).expect("view");
        assert!(v.streams[0].inside.latched.is_some(), "re-latched: {v:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_worker_per_stream_and_sockets_reused_without_stale_packets() {
        // Two pairs in the shared loopback pool: every call gets the same two pairs back.
        let m = manager(41_010, 41_013);
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        carrier
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let offer = [StreamDesc::new(LO, pbx.local_addr().expect("addr").port())];
        let answer = [StreamDesc::new(
            LO,
            carrier.local_addr().expect("addr").port(),
        )];
        let a = m
            .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
            .expect("offer");
        assert_eq!(m.home().lock().exec.running(), 1, "one stream, not four");
        m.release(Instant::now(), a.session);
        // The worker parks its four sockets for reuse.
        for _ in 0..100 {
            if m.overview().idle_sockets == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(m.overview().idle_sockets, 4);
        assert_eq!(m.home().lock().exec.running(), 0);
        // A stray packet of the ended call waits in a parked socket...
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        pbx.send_to(&[0x80, 0, 0, 1], in_relay).expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = m
            .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
            .expect("offer");
        assert_eq!(m.overview().idle_sockets, 0, "parked sockets reused");
        let mut ports = [b.streams[0].inside.rtp_port, b.streams[0].outside.rtp_port];
        let mut old = [a.streams[0].inside.rtp_port, a.streams[0].outside.rtp_port];
        ports.sort_unstable();
        old.sort_unstable();
        assert_eq!(ports, old);
        m.commit(Instant::now(), b.session, Side::Outside, &answer)
            .expect("answer");
        // ...and is not relayed to the next call's peer; the next call's own media is.
        let in_relay = SocketAddr::new(LO, b.streams[0].inside.rtp_port);
        let mut buf = [0u8; 64];
        let stale = carrier.recv_from(&mut buf);
        assert!(stale.is_err(), "stale packet relayed: {stale:?}");
        pbx.send_to(&[0x80, 0, 0, 2], in_relay).expect("send");
        let (n, _) = carrier.recv_from(&mut buf).expect("relayed");
        assert_eq!(&buf[..n], &[0x80, 0, 0, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_sockets_are_capped_and_the_excess_closed() {
        // Room for one idle pair (RTP + RTCP); a call's stream holds two pairs (one per side).
        let mut s = settings(41_020, 41_099);
        s.relay_idle_sockets = 2;
        let metrics = Metrics::new().expect("metrics");
        let closed = metrics.media.idle_closed.with_label_values(&["full"]);
        let m = MediaManager::new(s, None, metrics.media.clone());
        let offer = [StreamDesc::new(LO, 4_000)];
        for _ in 0..3 {
            let a = m
                .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
                .expect("offer");
            m.release(Instant::now(), a.session);
        }
        // The workers hand the sockets back asynchronously.
        for _ in 0..100 {
            if m.home().lock().exec.running() == 0 && closed.get() >= 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(m.overview().idle_sockets, 2, "one pair kept");
        assert_eq!(metrics.media.idle_sockets.get(), 2);
        // Three calls parked 12 sockets (fewer when one reused the kept pair): all but the
        // kept pair were closed, none kept beyond the cap.
        assert!(closed.get() >= 8, "closed: {}", closed.get());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_views_are_made_only_for_a_taker() {
        let m = manager(41_100, 41_199);
        let offer = [StreamDesc::new(LO, 4_000)];
        let a = m
            .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
            .expect("offer");
        m.release(Instant::now(), a.session);
        assert!(m.take_final(a.session).is_none(), "no CDR sink, no view");
        m.keep_final_views();
        let b = m
            .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
            .expect("offer");
        m.release(Instant::now(), b.session);
        assert!(m.take_final(b.session).is_some());
    }

    #[test]
    fn the_idle_socket_budget_leaves_half_the_descriptors_to_live_streams() {
        assert_eq!(idle_socket_budget(4_096, Some(1 << 20), 1_000), 4_096);
        // 20,000 descriptors, 1,024 + 1,000 reserved: half of the 17,976 left.
        assert_eq!(idle_socket_budget(100_000, Some(20_000), 1_000), 8_988);
        assert_eq!(idle_socket_budget(4_096, Some(1_024), 1_000), 0);
        assert_eq!(idle_socket_budget(4_096, None, 1_000), 4_096);
    }

    /// Streams whose packets arrive together are served by one wake-up of their worker: its
    /// first wake-up takes what is ready and then waits for the table's lock (held here), so
    /// the other streams' packets queue meanwhile and the next wake-up finds them all ready.
    /// A relay that serves one socket per wake-up needs one per stream.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_wakeup_serves_many_streams() {
        const STREAMS: usize = 20;
        let mut s = settings(41_600, 41_699);
        s.relay_workers = 1;
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(s, None, metrics.media.clone());
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        carrier
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let offer = [StreamDesc::new(LO, pbx.local_addr().expect("addr").port())];
        let answer = [StreamDesc::new(
            LO,
            carrier.local_addr().expect("addr").port(),
        )];
        let mut relays = Vec::new();
        for _ in 0..STREAMS {
            let a = m
                .allocate(Instant::now(), Side::Inside, &offer, &MediaPeers::default())
                .expect("offer");
            m.commit(Instant::now(), a.session, Side::Outside, &answer)
                .expect("answer");
            relays.push(SocketAddr::new(LO, a.streams[0].inside.rtp_port));
        }
        assert_eq!(m.home().lock().exec.workers(), 1);
        // The worker takes its orders.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = metrics.media.relay_wakeups.get();
        {
            let held = m.home().lock();
            for r in &relays {
                pbx.send_to(&[0x80, 0, 0, 1], r).expect("send");
            }
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        }
        let mut buf = [0u8; 64];
        let mut from = std::collections::HashSet::new();
        for _ in 0..STREAMS {
            let (n, src) = carrier.recv_from(&mut buf).expect("relayed");
            assert_eq!(&buf[..n], &[0x80, 0, 0, 1]);
            from.insert(src);
        }
        assert_eq!(from.len(), STREAMS, "each stream relayed from its own port");
        let wakeups = metrics.media.relay_wakeups.get() - before;
        assert!(
            wakeups <= 3,
            "{wakeups} wake-ups for {STREAMS} packets on {STREAMS} streams"
        );
        // The worker counts a run after sending it, so the last count may trail the last
        // datagram the carrier read.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while metrics.media.user_packets.get() < STREAMS as u64
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(metrics.media.user_packets.get(), STREAMS as u64);
    }
}
