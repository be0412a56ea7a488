//! The media manager: implements [`MediaControl`] for the call layer (and the admin API). It
//! owns the port pools, opens the relay sockets of each stream, installs XDP mappings once a
//! stream is latched on both sides, and runs the media-timeout bookkeeping.
//!
//! Locking order: `sessions` → a stream's `peers` → `xdp`. Socket tasks only take `peers`.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use sbc_ebpf_common::{FLAG_IPV4, FLAG_STRICT_SOURCE, Mapping, MappingKey, ipv4_mapped};
use sbc_proto::media::{
    Allocation, Leg, MediaControl, MediaError, MediaEvent, MediaPeers, RelayEndpoint, SessionId,
    StreamDesc, StreamRelay,
};
use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle};

use super::{
    latch::{Allowed, Rules},
    policy::{MediaPolicy, Quotas},
    pool::PortPool,
    relay::{self, PeerState, Port, StreamShared, leg_idx},
    xdp::XdpRelay,
};
use crate::{config::Config, metrics::MediaMetrics};

/// Events kept for the call layer before the oldest are dropped (it should drain them).
const MAX_EVENTS: usize = 4096;
/// How often activity and timeouts are checked.
pub const TICK: Duration = Duration::from_millis(500);
/// Attempts to find a pair whose ports can be bound before giving up on a stream.
const BIND_ATTEMPTS: usize = 8;

/// One side's relay address: bound locally, and written into SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideAddress {
    /// Address the relay sockets bind to (and XDP rewrites to).
    pub bind: IpAddr,
    /// Address put into SDP (differs from `bind` behind 1:1 NAT).
    pub advertised: IpAddr,
}

/// What the manager needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Inside relay address.
    pub inside: SideAddress,
    /// Outside relay address.
    pub outside: SideAddress,
    /// Lowest relay port.
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Strict-source latching.
    pub strict_source: bool,
    /// How long after an answer or re-offer another allowed source may take a latch.
    pub relatch_window: Duration,
    /// Most `m=` lines in one offer (488 beyond).
    pub max_streams: usize,
    /// Networks and trunk quotas at start (a live change replaces them, see
    /// [`MediaManager::set_policy`]).
    pub policy: MediaPolicy,
    /// Media timeout; `None` disables it.
    pub timeout: Option<Duration>,
    /// Media timeout while on hold; `None` disables it.
    pub hold_timeout: Option<Duration>,
}

impl MediaSettings {
    /// Settings from `[inside]`, `[outside]` and `[media]`.
    pub fn from_config(c: &Config) -> Self {
        let side = |s: &crate::config::Side| SideAddress {
            bind: s.media_address,
            advertised: s.advertised_address.unwrap_or(s.media_address),
        };
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            inside: side(&c.inside),
            outside: side(&c.outside),
            port_min: c.media.port_min,
            port_max: c.media.port_max,
            strict_source: c.media.strict_source,
            relatch_window: Duration::from_millis(c.media.relatch_window_ms),
            max_streams: c.media.max_streams,
            policy: MediaPolicy::from_config(c),
            timeout: secs(c.media.timeout_s),
            hold_timeout: secs(c.media.hold_timeout_s),
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            strict: self.strict_source,
            relatch_window: self.relatch_window,
        }
    }

    fn side(&self, leg: Leg) -> SideAddress {
        match leg {
            Leg::Inside => self.inside,
            Leg::Outside => self.outside,
        }
    }

    /// Index of `leg`'s pool: both sides share one when they bind the same address (as on the
    /// loopback default), since a port can only be bound once per address.
    fn pool(&self, leg: Leg) -> usize {
        if leg == Leg::Outside && self.outside.bind != self.inside.bind {
            1
        } else {
            0
        }
    }
}

/// Last activity of a session, for the media timeout. Plain state with injected time.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    last: Instant,
}

impl Activity {
    /// Activity starting at `now` (a fresh call gets the full timeout).
    pub fn new(now: Instant) -> Self {
        Self { last: now }
    }

    /// Records a packet seen at `at` (ignores older times).
    pub fn observe(&mut self, at: Instant) {
        if at > self.last {
            self.last = at;
        }
    }

    /// Whether `limit` has passed without activity at `now`.
    pub fn expired(&self, now: Instant, limit: Option<Duration>) -> bool {
        limit.is_some_and(|l| now.saturating_duration_since(self.last) >= l)
    }

    /// Time since the last activity.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last)
    }
}

/// A handle to the media manager; cheap to clone, shared by the call layer and the admin API.
#[derive(Debug, Clone)]
pub struct MediaManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: MediaSettings,
    /// Shared with the reaper tasks that return ports once their sockets are closed.
    pools: Arc<Mutex<[PortPool; 2]>>,
    /// Statistics slots of the XDP program, one per installed mapping.
    slots: Mutex<Slots>,
    sessions: Mutex<HashMap<SessionId, Session>>,
    /// Networks and quotas for new calls (replaced by a live configuration change).
    policy: Mutex<Arc<MediaPolicy>>,
    /// Relay ports held per trunk.
    quotas: Mutex<Quotas>,
    next_id: AtomicU64,
    xdp: Option<Arc<Mutex<XdpRelay>>>,
    events: Mutex<VecDeque<MediaEvent>>,
    /// Last views of released sessions, for the call detail records.
    finals: Mutex<super::finals::Finals>,
    /// Signalled when an event is queued, so the call layer's driver can wait for events.
    events_ready: tokio::sync::Notify,
    metrics: MediaMetrics,
    latched_tx: mpsc::UnboundedSender<(SessionId, usize)>,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug)]
struct Session {
    streams: Vec<Stream>,
    committed: bool,
    activity: Activity,
    timed_out: bool,
    /// Recreated from pinned XDP mappings after a restart.
    adopted: bool,
    /// Signaling peers and trunk, as the call layer last said.
    peers: MediaPeers,
    /// Outside relay ports counted against `peers.trunk`'s quota.
    quota_ports: usize,
}

#[derive(Debug)]
struct Stream {
    relay: StreamRelay,
    /// `None` for a disabled stream (port 0).
    shared: Option<Arc<StreamShared>>,
    tasks: Vec<JoinHandle<()>>,
    /// Installed mappings (key, statistics slot, value).
    installed: Vec<(MappingKey, u32, Mapping)>,
    /// XDP packets forwarded for this stream at the last tick.
    xdp_packets: u64,
}

impl MediaManager {
    /// Creates the manager and spawns its background task (latch notifications and the
    /// timeout tick) on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(
        settings: MediaSettings,
        xdp: Option<Arc<Mutex<XdpRelay>>>,
        metrics: MediaMetrics,
    ) -> Self {
        let (latched_tx, mut latched_rx) = mpsc::unbounded_channel();
        let pools = [
            PortPool::new(settings.port_min, settings.port_max),
            PortPool::new(settings.port_min, settings.port_max),
        ];
        let policy = Mutex::new(Arc::new(settings.policy.clone()));
        let inner = Arc::new(Inner {
            settings,
            policy,
            quotas: Mutex::new(Quotas::default()),
            pools: Arc::new(Mutex::new(pools)),
            slots: Mutex::new(Slots::new(sbc_ebpf_common::MAX_MAPPINGS)),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            xdp,
            events: Mutex::new(VecDeque::new()),
            finals: Mutex::new(super::finals::Finals::default()),
            events_ready: tokio::sync::Notify::new(),
            metrics,
            latched_tx,
            runtime: tokio::runtime::Handle::current(),
        });
        inner.update_gauges();
        let weak = Arc::downgrade(&inner);
        inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = latched_rx.recv() => {
                        let Some((id, idx)) = msg else { return };
                        let Some(inner) = weak.upgrade() else { return };
                        inner.sync_mappings(id, idx);
                    }
                    _ = tick.tick() => {
                        let Some(inner) = weak.upgrade() else { return };
                        inner.tick(Instant::now());
                    }
                }
            }
        });
        Self { inner }
    }

    /// Completes when an event may be waiting for [`MediaControl::poll_event`] (the call
    /// layer's driver selects on this, then drains `poll_event`).
    pub async fn event_ready(&self) {
        self.inner.events_ready.notified().await;
    }

    /// The settings in force.
    pub fn settings(&self) -> &MediaSettings {
        &self.inner.settings
    }

    /// Replaces the media networks and trunk quotas for new calls (live configuration).
    pub fn set_policy(&self, policy: MediaPolicy) {
        *self.inner.policy.lock() = Arc::new(policy);
    }

    /// Runs the activity/timeout check for `now` (the background task does this every
    /// [`TICK`]; tests call it with a simulated time).
    pub fn tick(&self, now: Instant) {
        self.inner.tick(now);
    }

    /// A snapshot of one session for the admin API.
    pub fn session_view(&self, id: SessionId) -> Option<SessionView> {
        let sessions = self.inner.sessions.lock();
        let s = sessions.get(&id)?;
        Some(self.inner.view(id, s, Instant::now()))
    }

    /// The last view of a released session (once; see `finals.rs`).
    pub fn take_final(&self, id: SessionId) -> Option<SessionView> {
        self.inner.finals.lock().take(id)
    }

    /// Ids of every live session.
    pub fn session_ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.inner.sessions.lock().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Totals for `/api/v1/media`.
    pub fn overview(&self) -> Overview {
        let (sessions, streams, mappings) = {
            let s = self.inner.sessions.lock();
            (
                s.len(),
                s.values().map(|x| x.streams.len()).sum(),
                s.values()
                    .flat_map(|x| &x.streams)
                    .map(|st| st.installed.len())
                    .sum(),
            )
        };
        let pools = self.inner.pools.lock();
        Overview {
            sessions,
            streams,
            xdp_mappings: mappings,
            ports_free_inside: pools[self.inner.settings.pool(Leg::Inside)].available(),
            ports_free_outside: pools[self.inner.settings.pool(Leg::Outside)].available(),
            ports_total: pools[0].capacity(),
            userspace_packets: self.inner.metrics.user_packets.get(),
            userspace_bytes: self.inner.metrics.user_bytes.get(),
            timeouts: self.inner.metrics.timeouts.get(),
        }
    }

    /// Recreates sessions from mappings a previous process left in the pinned XDP maps, so
    /// established media keeps its ports and its fast path. Each pair of mappings (inside →
    /// outside and back) becomes a one-stream session marked `adopted`; it ends like any other
    /// (release, or the media timeout once its packets stop). Mappings without a partner are
    /// removed. Returns the adopted session ids.
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
        let s = &self.inner.settings;
        let by_key: HashMap<MappingKey, Mapping> = found.iter().copied().collect();
        let mut adopted = Vec::new();
        let mut used: Vec<MappingKey> = Vec::new();
        for (key, m) in &found {
            // With one address on both sides, the partner key also looks like an inside one.
            if used.contains(key) {
                continue;
            }
            let Some(in_port) = endpoint_port(key, s.inside.bind) else {
                continue;
            };
            let back_key = mapping_key(SocketAddr::new(s.outside.bind, port_of(m.src_port)));
            let Some(back) = by_key.get(&back_key) else {
                continue;
            };
            let (Some(pbx), Some(carrier)) = (
                sock_of(&m.expect_addr, m.expect_port),
                sock_of(&m.dst_addr, m.dst_port),
            ) else {
                continue;
            };
            if back.expect_addr != m.dst_addr || back.expect_port != m.dst_port {
                continue;
            }
            let out_port = port_of(m.src_port);
            {
                let mut slots = self.inner.slots.lock();
                if !slots.reserve(m.slot) {
                    continue;
                }
                if !slots.reserve(back.slot) {
                    slots.give(m.slot);
                    continue;
                }
            }
            let installed = vec![(*key, m.slot, *m), (back_key, back.slot, *back)];
            match self
                .inner
                .adopt_stream(in_port, out_port, pbx, carrier, installed)
            {
                Ok(id) => {
                    used.push(*key);
                    used.push(back_key);
                    adopted.push(id);
                    tracing::info!(session = %id, inside_port = in_port, outside_port = out_port,
                        "adopted pinned XDP mappings");
                }
                Err(e) => {
                    let mut slots = self.inner.slots.lock();
                    slots.give(m.slot);
                    slots.give(back.slot);
                    tracing::warn!(error = %e, inside_port = in_port, "cannot adopt mapping");
                }
            }
        }
        let mut x = xdp.lock();
        for (key, _) in &found {
            if !used.contains(key) {
                tracing::info!(port = port_of(key.port), "removing unpaired pinned mapping");
                if let Err(e) = x.remove_mapping(key) {
                    tracing::warn!(error = %e, "removing stale mapping failed");
                }
            }
        }
        drop(x);
        self.inner.update_gauges();
        adopted
    }
}

/// The XDP program's per-mapping statistics slots (`Mapping::slot`): a free stack, so the
/// slots in use stay compact (good locality for the program's counters).
#[derive(Debug)]
struct Slots {
    free: Vec<u32>,
    used: Vec<bool>,
}

impl Slots {
    fn new(n: u32) -> Self {
        Self {
            free: (0..n).rev().collect(),
            used: vec![false; n as usize],
        }
    }

    fn take(&mut self) -> Option<u32> {
        let s = self.free.pop()?;
        self.used[s as usize] = true;
        Some(s)
    }

    fn give(&mut self, s: u32) {
        if let Some(u) = self.used.get_mut(s as usize)
            && *u
        {
            *u = false;
            self.free.push(s);
        }
    }

    /// Takes a specific slot (adoption); false if it is out of range or in use.
    fn reserve(&mut self, s: u32) -> bool {
        match self.used.get_mut(s as usize) {
            Some(u) if !*u => {
                *u = true;
                self.free.retain(|&x| x != s);
                true
            }
            _ => false,
        }
    }
}

/// Totals shown at `/api/v1/media`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    /// Live sessions.
    pub sessions: usize,
    /// Streams in them.
    pub streams: usize,
    /// XDP mappings installed.
    pub xdp_mappings: usize,
    /// Free port pairs inside.
    pub ports_free_inside: usize,
    /// Free port pairs outside.
    pub ports_free_outside: usize,
    /// Pairs per side.
    pub ports_total: usize,
    /// Packets forwarded by the userspace relay.
    pub userspace_packets: u64,
    /// Bytes forwarded by the userspace relay.
    pub userspace_bytes: u64,
    /// Sessions timed out.
    pub timeouts: u64,
}

/// A session as shown by `GET /api/v1/media/sessions/{id}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Id.
    pub id: u64,
    /// An answer was committed.
    pub committed: bool,
    /// The media timeout fired (the call layer was told).
    pub timed_out: bool,
    /// Recreated from pinned mappings after a restart.
    pub adopted: bool,
    /// Milliseconds since the last packet in either direction (userspace or XDP).
    pub idle_ms: u64,
    /// Streams in `m=` order.
    pub streams: Vec<StreamView>,
}

/// One stream of a [`SessionView`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamView {
    /// Relay endpoint facing the PBX.
    pub inside: EndpointView,
    /// Relay endpoint facing the carrier.
    pub outside: EndpointView,
    /// XDP mappings installed for the stream.
    pub xdp_mappings: usize,
    /// SRTP suite per leg (`null`: plain RTP). Keys are never shown.
    pub srtp: SrtpView,
}

/// The SRTP suite of each leg of a stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SrtpView {
    /// Suite toward the PBX.
    pub inside: Option<&'static str>,
    /// Suite toward the carrier.
    pub outside: Option<&'static str>,
}

/// One leg of a [`StreamView`]: the relay endpoint and the peer behind it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointView {
    /// Relay address (as advertised) and ports.
    pub relay: String,
    /// RTP port.
    pub rtp_port: u16,
    /// RTCP port.
    pub rtcp_port: u16,
    /// Latched peer RTP address, once a packet came.
    pub latched: Option<String>,
    /// Where the relay sends RTP to this peer (latched, else SDP).
    pub target: Option<String>,
    /// Packets from this peer forwarded by userspace.
    pub userspace_packets: u64,
    /// Bytes of those.
    pub userspace_bytes: u64,
    /// Packets from this peer forwarded by XDP.
    pub xdp_packets: u64,
    /// Bytes of those.
    pub xdp_bytes: u64,
    /// Packets from this peer dropped.
    pub dropped: u64,
    /// Milliseconds since this peer's last packet reached userspace.
    pub last_seen_ms: Option<u64>,
    /// RTP packets lost (from sequence numbers seen in userspace).
    pub rtp_lost: i64,
    /// Interarrival jitter in ms (userspace-seen RTP, static payload types only).
    pub rtp_jitter_ms: Option<f64>,
    /// The last RTCP reception report from this peer (about what it receives from us).
    pub rtcp_report: Option<super::rtp::ReceptionReport>,
    /// The peer's RTP address from its SDP.
    pub sdp: Option<String>,
    /// The direction attribute of the peer's SDP.
    pub sdp_direction: &'static str,
    /// Source of the last packet the latch refused, and why (`not_allowed`, `strict_source`).
    pub refused_from: Option<String>,
    /// See `refused_from`.
    pub refused_reason: Option<&'static str>,
    /// Milliseconds since the fast path last forwarded a packet from this peer.
    pub xdp_idle_ms: Option<u64>,
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
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

fn port_of(be: u16) -> u16 {
    u16::from_be_bytes(be.to_ne_bytes())
}

fn ip_of(a: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn sock_of(a: &[u8; 16], port: u16) -> Option<SocketAddr> {
    let p = port_of(port);
    (p != 0).then(|| SocketAddr::new(ip_of(a), p))
}

/// The key of packets arriving at `relay`.
pub fn mapping_key(relay: SocketAddr) -> MappingKey {
    MappingKey {
        addr: addr16(relay.ip()),
        port: port_be(relay.port()),
        pad: 0,
    }
}

fn endpoint_port(key: &MappingKey, bind: IpAddr) -> Option<u16> {
    (key.addr == addr16(bind)).then(|| port_of(key.port))
}

impl Inner {
    fn update_gauges(&self) {
        let (n, maps) = {
            let s = self.sessions.lock();
            (
                s.len(),
                s.values()
                    .flat_map(|x| &x.streams)
                    .map(|st| st.installed.len())
                    .sum::<usize>(),
            )
        };
        self.metrics
            .sessions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.metrics
            .xdp_mappings
            .set(i64::try_from(maps).unwrap_or(i64::MAX));
        let pools = self.pools.lock();
        for leg in [Leg::Inside, Leg::Outside] {
            let pool = &pools[self.settings.pool(leg)];
            self.metrics
                .ports_free
                .with_label_values(&[leg.as_str()])
                .set(i64::try_from(pool.available()).unwrap_or(i64::MAX));
        }
    }

    fn reject(&self, e: MediaError) -> MediaError {
        let reason = match &e {
            MediaError::PortsExhausted(_) => "ports_exhausted",
            MediaError::QuotaExhausted(_) => "trunk_quota",
            MediaError::StreamCount(_) => "stream_count",
            MediaError::AddressFamily { .. } => "address_family",
            MediaError::StreamMismatch { .. } => "stream_mismatch",
            MediaError::UnknownSession(_) => "unknown_session",
            _ => "unavailable",
        };
        self.metrics.rejected.with_label_values(&[reason]).inc();
        tracing::info!(error = %e, sip_status = e.status_code(), "media offer rejected");
        e
    }

    /// Takes a pair on `leg` and binds its RTP and RTCP sockets, skipping pairs something else
    /// on the host holds.
    fn take_bound_pair(&self, leg: Leg) -> Result<(u16, [Arc<UdpSocket>; 2]), MediaError> {
        let addr = self.settings.side(leg).bind;
        for _ in 0..BIND_ATTEMPTS {
            let Some(port) = self.pools.lock()[self.settings.pool(leg)].allocate() else {
                return Err(MediaError::PortsExhausted(leg));
            };
            match self.bind_pair(addr, port) {
                Ok(s) => return Ok((port, s)),
                Err(e) => {
                    tracing::debug!(%addr, port, error = %e, "relay port busy; trying another");
                    // Back to the end of the queue: it may be free again later.
                    let _ = self.pools.lock()[self.settings.pool(leg)].free(port);
                }
            }
        }
        Err(MediaError::Unavailable(format!(
            "no bindable relay port pair on {addr} after {BIND_ATTEMPTS} attempts"
        )))
    }

    fn bind_pair(&self, addr: IpAddr, port: u16) -> std::io::Result<[Arc<UdpSocket>; 2]> {
        let _rt = self.runtime.enter();
        let rtp = UdpSocket::from_std(relay::bind(addr, port)?)?;
        let rtcp = UdpSocket::from_std(relay::bind(addr, port + 1)?)?;
        Ok([Arc::new(rtp), Arc::new(rtcp)])
    }

    fn free_port(&self, leg: Leg, port: u16) {
        if port == 0 {
            return;
        }
        if let Err(e) = self.pools.lock()[self.settings.pool(leg)].free(port) {
            // A bookkeeping bug, never input-driven: log it rather than take the SBC down.
            tracing::error!(error = %e, side = leg.as_str(), "port pool inconsistency");
        }
    }

    fn endpoint(&self, leg: Leg, port: u16, mux: bool) -> RelayEndpoint {
        RelayEndpoint {
            addr: self.settings.side(leg).advertised,
            rtp_port: port,
            rtcp_port: if mux || port == 0 { port } else { port + 1 },
        }
    }

    /// Opens one stream: a pair from each side's pool, four sockets, four tasks.
    fn open_stream(
        &self,
        id: SessionId,
        index: usize,
        from: Leg,
        desc: &StreamDesc,
        allowed: &[Allowed; 2],
    ) -> Result<Stream, MediaError> {
        if desc.rtp_port == 0 {
            return Ok(Stream {
                relay: StreamRelay {
                    inside: self.endpoint(Leg::Inside, 0, false),
                    outside: self.endpoint(Leg::Outside, 0, false),
                },
                shared: None,
                tasks: Vec::new(),
                installed: Vec::new(),
                xdp_packets: 0,
            });
        }
        let side = self.settings.side(from);
        if side.bind.is_ipv4() != desc.addr.is_ipv4() {
            return Err(MediaError::AddressFamily {
                leg: from,
                family: family(desc.addr),
            });
        }
        let (in_port, in_socks) = self.take_bound_pair(Leg::Inside)?;
        let (out_port, out_socks) = match self.take_bound_pair(Leg::Outside) {
            Ok(x) => x,
            Err(e) => {
                drop(in_socks);
                self.free_port(Leg::Inside, in_port);
                return Err(e);
            }
        };
        let mut peers: [PeerState; 2] = Default::default();
        peers[0].allowed = allowed[0].clone();
        peers[1].allowed = allowed[1].clone();
        peers[leg_idx(from)].set_desc(desc);
        Ok(self.start_stream(id, index, in_port, in_socks, out_port, out_socks, peers))
    }

    #[expect(clippy::too_many_arguments, reason = "both sides' ports and sockets")]
    fn start_stream(
        &self,
        id: SessionId,
        index: usize,
        in_port: u16,
        in_socks: [Arc<UdpSocket>; 2],
        out_port: u16,
        out_socks: [Arc<UdpSocket>; 2],
        peers: [PeerState; 2],
    ) -> Stream {
        let mux_in = peers[0].mux;
        let mux_out = peers[1].mux;
        let shared = Arc::new(StreamShared {
            session: id,
            index,
            rules: self.settings.rules(),
            sockets: [in_socks, out_socks],
            peers: Mutex::new(peers),
            latched_tx: self.latched_tx.clone(),
            metrics: self.metrics.clone(),
            srtp: Mutex::new(super::srtp::StreamSrtp::default()),
        });
        let mut tasks = Vec::with_capacity(4);
        for leg in [Leg::Inside, Leg::Outside] {
            for port in [Port::Rtp, Port::Rtcp] {
                tasks.push(
                    self.runtime
                        .spawn(relay::socket_loop(shared.clone(), leg, port)),
                );
            }
        }
        Stream {
            relay: StreamRelay {
                inside: self.endpoint(Leg::Inside, in_port, mux_in),
                outside: self.endpoint(Leg::Outside, out_port, mux_out),
            },
            shared: Some(shared),
            tasks,
            installed: Vec::new(),
            xdp_packets: 0,
        }
    }

    fn close_stream(&self, stream: &mut Stream) {
        for t in &stream.tasks {
            t.abort();
        }
        if !stream.installed.is_empty()
            && let Some(xdp) = &self.xdp
        {
            let mut x = xdp.lock();
            let mut slots = self.slots.lock();
            for (key, slot, _) in stream.installed.drain(..) {
                if let Err(e) = x.remove_mapping(&key) {
                    tracing::warn!(error = %e, "removing XDP mapping failed");
                }
                slots.give(slot);
            }
        }
        // A port goes back to the pool only once its socket is closed, i.e. once the aborted
        // tasks (which hold the sockets) are gone; otherwise the next call could fail to bind.
        let tasks = std::mem::take(&mut stream.tasks);
        let shared = stream.shared.take();
        let pools = self.pools.clone();
        let ports = [
            (
                self.settings.pool(Leg::Inside),
                stream.relay.inside.rtp_port,
            ),
            (
                self.settings.pool(Leg::Outside),
                stream.relay.outside.rtp_port,
            ),
        ];
        self.runtime.spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
            drop(shared);
            let mut pools = pools.lock();
            for (pool, port) in ports {
                if port != 0
                    && let Err(e) = pools[pool].free(port)
                {
                    // A bookkeeping bug, never input-driven: log it, do not take the SBC down.
                    tracing::error!(error = %e, "port pool inconsistency");
                }
            }
        });
    }

    fn adopt_stream(
        &self,
        in_port: u16,
        out_port: u16,
        pbx: SocketAddr,
        carrier: SocketAddr,
        installed: Vec<(MappingKey, u32, Mapping)>,
    ) -> Result<SessionId, MediaError> {
        {
            let mut pools = self.pools.lock();
            let (pi, po) = (
                self.settings.pool(Leg::Inside),
                self.settings.pool(Leg::Outside),
            );
            if !pools[pi].reserve(in_port) {
                return Err(MediaError::Unavailable(format!(
                    "inside port {in_port} not free"
                )));
            }
            if !pools[po].reserve(out_port) {
                let _ = pools[pi].free(in_port);
                return Err(MediaError::Unavailable(format!(
                    "outside port {out_port} not free"
                )));
            }
        }
        let socks = self
            .bind_pair(self.settings.inside.bind, in_port)
            .and_then(|i| Ok((i, self.bind_pair(self.settings.outside.bind, out_port)?)));
        let (in_socks, out_socks) = match socks {
            Ok(s) => s,
            Err(e) => {
                self.free_port(Leg::Inside, in_port);
                self.free_port(Leg::Outside, out_port);
                return Err(MediaError::Unavailable(e.to_string()));
            }
        };
        let now = Instant::now();
        let mut peers: [PeerState; 2] = Default::default();
        // The SDP is gone with the old process: what the mappings say is the latched truth.
        peers[0].set_desc(&StreamDesc::new(pbx.ip(), pbx.port()));
        peers[0].latch[0].adopt(pbx, now);
        peers[1].set_desc(&StreamDesc::new(carrier.ip(), carrier.port()));
        peers[1].latch[0].adopt(carrier, now);
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut stream = self.start_stream(id, 0, in_port, in_socks, out_port, out_socks, peers);
        stream.installed = installed;
        self.sessions.lock().insert(
            id,
            Session {
                streams: vec![stream],
                committed: true,
                activity: Activity::new(now),
                timed_out: false,
                adopted: true,
                peers: MediaPeers::default(),
                quota_ports: 0,
            },
        );
        Ok(id)
    }

    /// Installs, updates or removes the XDP mappings of a stream to match its latches.
    fn sync_mappings(&self, id: SessionId, index: usize) {
        let Some(xdp) = &self.xdp else { return };
        let mut sessions = self.sessions.lock();
        let Some(stream) = sessions.get_mut(&id).and_then(|s| s.streams.get_mut(index)) else {
            return;
        };
        let want = self.desired_mappings(stream);
        let mut x = xdp.lock();
        let mut slots = self.slots.lock();
        let old = std::mem::take(&mut stream.installed);
        let mut changed = false;
        for (key, slot, _) in &old {
            if !want.iter().any(|(k, _)| k == key) {
                if let Err(e) = x.remove_mapping(key) {
                    tracing::warn!(error = %e, "removing XDP mapping failed");
                }
                slots.give(*slot);
                changed = true;
            }
        }
        for (key, m) in want {
            // An installed mapping keeps its slot (and, if unchanged, its counters).
            let existing = old.iter().find(|(k, _, _)| *k == key);
            let slot = match existing.map(|(_, s, _)| *s).or_else(|| slots.take()) {
                Some(s) => s,
                None => {
                    tracing::warn!("XDP statistics slots exhausted; stream stays in userspace");
                    continue;
                }
            };
            let m = Mapping { slot, ..m };
            if existing.is_some_and(|(_, _, v)| *v == m) {
                stream.installed.push((key, slot, m));
                continue;
            }
            // Same peers and slot, other flags: keep the stream's counters.
            let same_peers = existing.is_some_and(|(_, _, v)| {
                Mapping {
                    flags: m.flags,
                    ..*v
                } == m
            });
            let put = if same_peers {
                x.update_mapping(&key, &m)
            } else {
                x.insert_mapping(&key, &m)
            };
            match put {
                Ok(()) => {
                    stream.installed.push((key, slot, m));
                    changed = true;
                }
                // The userspace relay keeps forwarding: a full map costs speed, not calls.
                Err(e) => {
                    // The kernel still holds the previous value, if any: keep tracking it.
                    match existing {
                        Some(prev) => stream.installed.push(*prev),
                        None => slots.give(slot),
                    }
                    tracing::warn!(error = %e, "installing XDP mapping failed");
                }
            }
        }
        drop(slots);
        drop(x);
        if changed && !stream.installed.is_empty() {
            tracing::info!(session = %id, stream = index, mappings = stream.installed.len(),
                "stream latched on both sides; XDP fast path installed");
        }
        drop(sessions);
        self.update_gauges();
    }

    /// The RTP mappings for a stream latched on both sides (RTCP stays in userspace for its
    /// reports). Different address families on the two sides stay in userspace too.
    fn desired_mappings(&self, stream: &Stream) -> Vec<(MappingKey, Mapping)> {
        let Some(shared) = &stream.shared else {
            return Vec::new();
        };
        // XDP cannot run AES: encrypted streams stay in userspace.
        if shared.srtp.lock().active() {
            return Vec::new();
        }
        // Provisional latches (made before the peer's SDP was known) stay in userspace.
        let now = Instant::now();
        let (pbx, carrier, open) = {
            let peers = shared.peers.lock();
            (
                peers[0].latch[0].confirmed(),
                peers[1].latch[0].confirmed(),
                [0, 1].map(|i| peers[i].latch[0].window_open(now)),
            )
        };
        let (Some(pbx), Some(carrier)) = (pbx, carrier) else {
            return Vec::new();
        };
        let s = &self.settings;
        let v4 = s.inside.bind.is_ipv4();
        if s.outside.bind.is_ipv4() != v4 || pbx.is_ipv4() != v4 || carrier.is_ipv4() != v4 {
            return Vec::new();
        }
        // Inside the re-latch window other sources go up to userspace, which may re-latch
        // (the tick sets the strict flag once the window has closed).
        let flags = |ingress: usize| {
            let mut f = if v4 { FLAG_IPV4 } else { 0 };
            if s.strict_source && !open[ingress] {
                f |= FLAG_STRICT_SOURCE;
            }
            f
        };
        let in_relay = SocketAddr::new(s.inside.bind, stream.relay.inside.rtp_port);
        let out_relay = SocketAddr::new(s.outside.bind, stream.relay.outside.rtp_port);
        let mapping =
            |from_peer: SocketAddr, via: SocketAddr, to_peer: SocketAddr, flags| Mapping {
                src_addr: addr16(via.ip()),
                dst_addr: addr16(to_peer.ip()),
                expect_addr: addr16(from_peer.ip()),
                src_port: port_be(via.port()),
                dst_port: port_be(to_peer.port()),
                expect_port: port_be(from_peer.port()),
                flags,
                // Assigned by `sync_mappings`.
                slot: 0,
            };
        vec![
            (
                mapping_key(in_relay),
                mapping(pbx, out_relay, carrier, flags(0)),
            ),
            (
                mapping_key(out_relay),
                mapping(carrier, in_relay, pbx, flags(1)),
            ),
        ]
    }

    fn tick(&self, now: Instant) {
        self.update_gauges();
        let mut fired = Vec::new();
        let mut resync = Vec::new();
        {
            let mut sessions = self.sessions.lock();
            let xdp = self.xdp.as_ref().map(|x| x.lock());
            for (id, s) in sessions.iter_mut() {
                // A re-latch window closed on a fast-path stream: make its mappings strict.
                if self.settings.strict_source {
                    for (i, st) in s.streams.iter().enumerate() {
                        let lax = st
                            .installed
                            .iter()
                            .any(|(_, _, m)| m.flags & FLAG_STRICT_SOURCE == 0);
                        let open = st.shared.as_ref().is_some_and(|sh| {
                            sh.peers.lock().iter().any(|p| p.latch[0].window_open(now))
                        });
                        if lax && !open {
                            resync.push((*id, i));
                        }
                    }
                }
                if !s.committed || s.timed_out {
                    continue;
                }
                let mut hold = false;
                for st in &s.streams {
                    let Some(shared) = &st.shared else { continue };
                    let peers = shared.peers.lock();
                    for p in peers.iter() {
                        hold |= p.direction.is_hold();
                        if let Some(t) = p.last_seen {
                            s.activity.observe(t);
                        }
                    }
                }
                let limit = if hold {
                    self.settings.hold_timeout
                } else {
                    self.settings.timeout
                };
                // XDP counters cost a syscall per mapping: read them only for a session idle
                // for a quarter of its timeout, not for every stream every tick. A stream that
                // XDP carries therefore times out between 1 and 1.25 timeouts after its last
                // packet.
                if let (Some(x), Some(l)) = (&xdp, limit)
                    && s.activity.idle(now) >= l / 4
                {
                    for st in &mut s.streams {
                        let total: u64 = st
                            .installed
                            .iter()
                            .filter_map(|(_, slot, _)| x.mapping_stats(*slot).ok())
                            .map(|m| m.packets)
                            .sum();
                        if total != st.xdp_packets {
                            st.xdp_packets = total;
                            s.activity.observe(now);
                        }
                    }
                }
                if s.activity.expired(now, limit) {
                    s.timed_out = true;
                    fired.push((*id, s.adopted));
                }
            }
        }
        for (id, i) in resync {
            self.sync_mappings(id, i);
        }
        for (id, adopted) in fired {
            self.metrics.timeouts.inc();
            if adopted {
                // No call layer knows an adopted session (its dialog died with the old
                // process): the media layer ends it itself.
                tracing::info!(session = %id, "media timeout of an adopted session; releasing");
                self.release(id);
                continue;
            }
            tracing::info!(session = %id, "media timeout; asking the call layer to end the call");
            let mut ev = self.events.lock();
            if ev.len() >= MAX_EVENTS {
                ev.pop_front();
            }
            ev.push_back(MediaEvent::Timeout(id));
            drop(ev);
            self.events_ready.notify_one();
        }
    }

    fn release(&self, id: SessionId) {
        let Some(mut s) = self.sessions.lock().remove(&id) else {
            return;
        };
        if let Some(t) = &s.peers.trunk {
            self.quotas.lock().give(t, s.quota_ports);
        }
        let last = self.view(id, &s, Instant::now());
        self.finals.lock().put(id, last);
        for st in &mut s.streams {
            self.close_stream(st);
        }
        tracing::debug!(session = %id, "media session released");
        self.update_gauges();
    }

    fn view(&self, id: SessionId, s: &Session, now: Instant) -> SessionView {
        let xdp = self.xdp.as_ref().map(|x| x.lock());
        let streams = s
            .streams
            .iter()
            .map(|st| {
                let peers = st
                    .shared
                    .as_ref()
                    .map(|sh| sh.peers.lock().clone())
                    .unwrap_or_default();
                let ep = |leg: Leg| {
                    let r = st.relay.facing(leg);
                    let p = &peers[leg_idx(leg)];
                    let key =
                        mapping_key(SocketAddr::new(self.settings.side(leg).bind, r.rtp_port));
                    let slot = st.installed.iter().find(|(k, _, _)| *k == key).map(|i| i.1);
                    let xs = xdp
                        .as_ref()
                        .zip(slot)
                        .and_then(|(x, slot)| x.mapping_stats(slot).ok())
                        .unwrap_or_default();
                    EndpointView {
                        relay: r.addr.to_string(),
                        rtp_port: r.rtp_port,
                        rtcp_port: r.rtcp_port,
                        latched: p.latch[0].latched().map(|a| a.to_string()),
                        target: p.latch[0].target().map(|a| a.to_string()),
                        userspace_packets: p.packets,
                        userspace_bytes: p.bytes,
                        xdp_packets: xs.packets,
                        xdp_bytes: xs.bytes,
                        dropped: p.dropped,
                        last_seen_ms: p.last_seen.map(|t| {
                            u64::try_from(now.saturating_duration_since(t).as_millis())
                                .unwrap_or(u64::MAX)
                        }),
                        rtp_lost: p.rtp.lost(),
                        rtp_jitter_ms: p.rtp.jitter_ms(),
                        rtcp_report: p.report,
                        sdp: p.latch[0].sdp().map(|a| a.to_string()),
                        sdp_direction: super::diagnosis::direction_str(p.direction),
                        refused_from: p.refused.map(|(a, _)| a.to_string()),
                        refused_reason: p.refused.map(|(_, r)| r.label()),
                        xdp_idle_ms: super::diagnosis::since_monotonic_ns(xs.last_seen_ns),
                    }
                };
                let srtp = st.shared.as_ref().map(|sh| {
                    let s = sh.srtp.lock();
                    (s.suite(Leg::Inside), s.suite(Leg::Outside))
                });
                let (inside, outside) = srtp.unwrap_or_default();
                StreamView {
                    inside: ep(Leg::Inside),
                    outside: ep(Leg::Outside),
                    xdp_mappings: st.installed.len(),
                    srtp: SrtpView { inside, outside },
                }
            })
            .collect();
        SessionView {
            id: id.0,
            committed: s.committed,
            timed_out: s.timed_out,
            adopted: s.adopted,
            idle_ms: u64::try_from(s.activity.idle(now).as_millis()).unwrap_or(u64::MAX),
            streams,
        }
    }

    /// The sources allowed on each leg of a call with `peers`, under the current policy.
    fn allowed(&self, peers: &MediaPeers) -> [Allowed; 2] {
        let policy = self.policy.lock().clone();
        [Leg::Inside, Leg::Outside].map(|leg| policy.allowed(leg, peers))
    }

    /// Counts the outside relay ports of `streams` against the call's trunk quota; returns the
    /// ports taken (0 without a trunk), or the refusal.
    fn take_quota(&self, peers: &MediaPeers, streams: &[StreamDesc]) -> Result<usize, MediaError> {
        let Some(trunk) = &peers.trunk else {
            return Ok(0);
        };
        // RTP and RTCP port of each enabled stream.
        let ports = 2 * streams.iter().filter(|d| d.rtp_port != 0).count();
        // Default: half the range's ports, so one trunk cannot starve the others.
        let default = self.pools.lock()[self.settings.pool(Leg::Outside)].capacity();
        let limit = self.policy.lock().quota(trunk, default);
        if self.quotas.lock().take(trunk, ports, limit) {
            Ok(ports)
        } else {
            Err(self.reject(MediaError::QuotaExhausted(trunk.clone())))
        }
    }

    fn give_quota(&self, peers: &MediaPeers, ports: usize) {
        if let Some(trunk) = &peers.trunk {
            self.quotas.lock().give(trunk, ports);
        }
    }

    /// The call's peers changed (failover): new allowed sources, the quota moves along.
    fn set_peers(&self, id: SessionId, peers: &MediaPeers) {
        let allowed = self.allowed(peers);
        let mut sessions = self.sessions.lock();
        let Some(s) = sessions.get_mut(&id) else {
            return;
        };
        {
            let mut q = self.quotas.lock();
            if let Some(t) = &s.peers.trunk {
                q.give(t, s.quota_ports);
            }
            if let Some(t) = &peers.trunk {
                q.force(t, s.quota_ports);
            }
        }
        for st in &s.streams {
            if let Some(shared) = &st.shared {
                let mut p = shared.peers.lock();
                p[0].allowed = allowed[0].clone();
                p[1].allowed = allowed[1].clone();
            }
        }
        s.peers = peers.clone();
    }

    /// Records `streams` from `from` on an existing session; opens new streams for extra
    /// `m=` lines when `grow`.
    fn describe(
        &self,
        id: SessionId,
        from: Leg,
        streams: &[StreamDesc],
        answer: bool,
    ) -> Result<Vec<StreamRelay>, MediaError> {
        let (have, relatch, call_peers) = {
            let mut sessions = self.sessions.lock();
            let s = sessions
                .get_mut(&id)
                .ok_or(MediaError::UnknownSession(id))?;
            if answer && streams.len() != s.streams.len() {
                return Err(MediaError::StreamMismatch {
                    want: s.streams.len(),
                    got: streams.len(),
                });
            }
            let mut relatch = Vec::new();
            // An answer or re-offer opens the re-latch window on both legs (NAT rebinding, a
            // media server switch at answer time); the fast path relaxes meanwhile.
            let until = Instant::now() + self.settings.relatch_window;
            for (i, (st, desc)) in s.streams.iter_mut().zip(streams).enumerate() {
                let Some(shared) = &st.shared else { continue };
                let mut peers = shared.peers.lock();
                for p in peers.iter_mut() {
                    p.open_window(until);
                }
                if !self.settings.relatch_window.is_zero() {
                    relatch.push(i);
                }
                let p = &mut peers[leg_idx(from)];
                if desc.rtp_port != 0 && p.latch[0].target().is_none() {
                    // First description from this leg: check its family like an offer.
                    if self.settings.side(from).bind.is_ipv4() != desc.addr.is_ipv4() {
                        return Err(MediaError::AddressFamily {
                            leg: from,
                            family: family(desc.addr),
                        });
                    }
                }
                if p.set_desc(desc) {
                    tracing::info!(session = %id, stream = i, side = from.as_str(),
                        "peer's SDP address changed (or a provisional latch was not confirmed); \
                        re-latching on its next allowed packet");
                    if !relatch.contains(&i) {
                        relatch.push(i);
                    }
                }
                let mux = p.mux;
                drop(peers);
                let r = if from == Leg::Inside {
                    &mut st.relay.inside
                } else {
                    &mut st.relay.outside
                };
                if r.rtp_port != 0 {
                    r.rtcp_port = if mux { r.rtp_port } else { r.rtp_port + 1 };
                }
            }
            if answer && !s.committed {
                s.committed = true;
                s.activity = Activity::new(Instant::now());
            }
            (s.streams.len(), relatch, s.peers.clone())
        };
        for i in relatch {
            self.sync_mappings(id, i);
        }
        if streams.len() > have {
            if streams.len() > self.settings.max_streams {
                return Err(self.reject(MediaError::StreamCount(streams.len())));
            }
            let extra = &streams[have..];
            let quota = self.take_quota(&call_peers, extra)?;
            let allowed = self.allowed(&call_peers);
            let mut opened = Vec::new();
            for (i, desc) in streams.iter().enumerate().skip(have) {
                match self.open_stream(id, i, from, desc, &allowed) {
                    Ok(st) => opened.push(st),
                    Err(e) => {
                        for mut st in opened {
                            self.close_stream(&mut st);
                        }
                        self.give_quota(&call_peers, quota);
                        return Err(self.reject(e));
                    }
                }
            }
            let mut sessions = self.sessions.lock();
            let Some(s) = sessions.get_mut(&id) else {
                drop(sessions);
                for mut st in opened {
                    self.close_stream(&mut st);
                }
                self.give_quota(&call_peers, quota);
                return Err(MediaError::UnknownSession(id));
            };
            s.streams.extend(opened);
            s.quota_ports += quota;
        }
        let sessions = self.sessions.lock();
        let s = sessions.get(&id).ok_or(MediaError::UnknownSession(id))?;
        Ok(s.streams.iter().map(|st| st.relay).collect())
    }
}

impl MediaControl for MediaManager {
    fn allocate(
        &mut self,
        from: Leg,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        let inner = &self.inner;
        if streams.is_empty() || streams.len() > inner.settings.max_streams {
            return Err(inner.reject(MediaError::StreamCount(streams.len())));
        }
        let quota = inner.take_quota(peers, streams)?;
        let allowed = inner.allowed(peers);
        let id = SessionId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut opened: Vec<Stream> = Vec::with_capacity(streams.len());
        for (i, desc) in streams.iter().enumerate() {
            match inner.open_stream(id, i, from, desc, &allowed) {
                Ok(st) => opened.push(st),
                Err(e) => {
                    for mut st in opened {
                        inner.close_stream(&mut st);
                    }
                    inner.give_quota(peers, quota);
                    return Err(inner.reject(e));
                }
            }
        }
        let relays: Vec<StreamRelay> = opened.iter().map(|s| s.relay).collect();
        inner.sessions.lock().insert(
            id,
            Session {
                streams: opened,
                committed: false,
                activity: Activity::new(Instant::now()),
                timed_out: false,
                adopted: false,
                peers: peers.clone(),
                quota_ports: quota,
            },
        );
        inner.update_gauges();
        tracing::debug!(session = %id, side = from.as_str(), streams = relays.len(), "media allocated");
        Ok(Allocation {
            session: id,
            streams: relays,
        })
    }

    fn commit(
        &mut self,
        session: SessionId,
        from: Leg,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.inner.describe(session, from, streams, true)
    }

    fn set_crypto(
        &mut self,
        session: SessionId,
        leg: Leg,
        keys: &[Option<sbc_proto::srtp::StreamKeys>],
    ) -> Result<(), MediaError> {
        let count = {
            let sessions = self.inner.sessions.lock();
            let s = sessions
                .get(&session)
                .ok_or(MediaError::UnknownSession(session))?;
            for (i, st) in s.streams.iter().enumerate() {
                if let Some(shared) = &st.shared {
                    shared
                        .srtp
                        .lock()
                        .set(leg, keys.get(i).and_then(Option::as_ref));
                }
            }
            s.streams.len()
        };
        // A stream that became encrypted leaves the fast path (and a plain one may use it).
        for i in 0..count {
            self.inner.sync_mappings(session, i);
        }
        Ok(())
    }

    fn update(
        &mut self,
        session: SessionId,
        from: Leg,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.inner.describe(session, from, streams, false)
    }

    fn set_peers(&mut self, session: SessionId, peers: &MediaPeers) {
        self.inner.set_peers(session, peers);
    }

    fn release(&mut self, session: SessionId) {
        self.inner.release(session);
    }

    fn poll_event(&mut self) -> Option<MediaEvent> {
        self.inner.events.lock().pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::metrics::Metrics;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn settings(min: u16, max: u16) -> MediaSettings {
        let side = SideAddress {
            bind: LO,
            advertised: LO,
        };
        MediaSettings {
            inside: side,
            outside: side,
            port_min: min,
            port_max: max,
            strict_source: false,
            relatch_window: Duration::from_secs(2),
            max_streams: 4,
            policy: MediaPolicy::default(),
            timeout: Some(Duration::from_secs(60)),
            hold_timeout: Some(Duration::from_secs(3600)),
        }
    }

    fn manager(min: u16, max: u16) -> MediaManager {
        let m = Metrics::new().expect("metrics");
        MediaManager::new(settings(min, max), None, m.media)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strict_source_drops_strangers_in_userspace() {
        let mut s = settings(41_500, 41_599);
        s.strict_source = true;
        // No re-latch window: the stranger (same address as the SDP, so allowed) comes right
        // after the answer, when a window would let it take the latch.
        s.relatch_window = Duration::ZERO;
        let metrics = Metrics::new().expect("metrics");
        let mut m = MediaManager::new(s, None, metrics.media.clone());
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("stranger");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        carrier
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let pbx_addr = pbx.local_addr().expect("addr");
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, pbx_addr.port())],
                &MediaPeers::default(),
            )
            .expect("offer");
        let carrier_port = carrier.local_addr().expect("addr").port();
        m.commit(
            a.session,
            Leg::Outside,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outsider_never_latches_before_or_after_the_peers() {
        let mut s = settings(41_700, 41_799);
        s.strict_source = true;
        let metrics = Metrics::new().expect("metrics");
        let mut m = MediaManager::new(s, None, metrics.media.clone());
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
                Leg::Inside,
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
            a.session,
            Leg::Outside,
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
        let mut m = MediaManager::new(s, None, metrics.media.clone());
        let peers = MediaPeers {
            trunk: Some("carrier".into()),
            ..MediaPeers::default()
        };
        let one = [StreamDesc::new(LO, 4000)];
        let a = m.allocate(Leg::Inside, &one, &peers).expect("2 of 4 ports");
        m.allocate(Leg::Inside, &one, &peers).expect("4 of 4 ports");
        let err = m.allocate(Leg::Inside, &one, &peers).expect_err("quota");
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
        m.allocate(Leg::Inside, &one, &MediaPeers::default())
            .expect("no trunk, no quota");
        m.release(a.session);
        m.allocate(Leg::Inside, &one, &peers).expect("freed");
    }

    #[tokio::test]
    async fn more_m_lines_than_max_streams_get_488() {
        let mut m = manager(41_900, 41_999);
        let five = [StreamDesc::new(LO, 4000); 5];
        let err = m
            .allocate(Leg::Inside, &five, &MediaPeers::default())
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
        m.allocate(Leg::Inside, &five[..4], &MediaPeers::default())
            .expect("four streams");
    }

    #[tokio::test]
    async fn event_ready_wakes_on_timeout() {
        let mut m = manager(41_600, 41_699);
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        m.commit(a.session, Leg::Outside, &[StreamDesc::new(LO, 6000)])
            .expect("answer");
        m.tick(Instant::now() + Duration::from_secs(61));
        tokio::time::timeout(Duration::from_secs(1), m.event_ready())
            .await
            .expect("woken");
        assert_eq!(m.poll_event(), Some(MediaEvent::Timeout(a.session)));
    }

    #[test]
    fn stats_slots_are_compact_and_reserved_on_adoption() {
        let mut s = Slots::new(8);
        assert_eq!((s.take(), s.take()), (Some(0), Some(1)));
        assert!(s.reserve(5));
        assert!(!s.reserve(5), "in use");
        assert!(!s.reserve(8), "out of range");
        s.give(0);
        s.give(0); // double give is ignored
        assert_eq!(s.take(), Some(0), "freed slots are reused first");
        let rest: Vec<u32> = std::iter::from_fn(|| s.take()).collect();
        assert_eq!(rest, vec![2, 3, 4, 6, 7]);
    }

    #[tokio::test]
    async fn exhaustion_rejects_with_503_and_release_frees() {
        // Both sides share 127.0.0.1 and so one pool: a stream takes two of its four pairs.
        let mut m = manager(41_000, 41_007);
        let peer = StreamDesc::new(LO, 4000);
        let a = m
            .allocate(Leg::Inside, &[peer], &MediaPeers::default())
            .expect("first call");
        let b = m
            .allocate(Leg::Inside, &[peer], &MediaPeers::default())
            .expect("second call");
        let err = m
            .allocate(Leg::Inside, &[peer], &MediaPeers::default())
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
        m.release(a.session);
        m.release(b.session);
        m.release(b.session); // idempotent
        // Ports return once the sockets are closed (the aborted tasks are reaped).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = m
            .allocate(Leg::Inside, &[peer], &MediaPeers::default())
            .expect("ports reused after release");
        assert_eq!(c.streams.len(), 1);
        assert_eq!(m.overview().sessions, 1);
    }

    #[tokio::test]
    async fn bad_offers_get_488() {
        let mut m = manager(41_100, 41_199);
        assert_eq!(
            m.allocate(Leg::Inside, &[], &MediaPeers::default())
                .expect_err("empty")
                .status_code(),
            488
        );
        let v6 = StreamDesc::new("2001:db8::1".parse().expect("literal"), 4000);
        assert_eq!(
            m.allocate(Leg::Inside, &[v6], &MediaPeers::default())
                .expect_err("family")
                .status_code(),
            488
        );
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let two = [StreamDesc::new(LO, 5000), StreamDesc::new(LO, 5002)];
        assert_eq!(
            m.commit(a.session, Leg::Outside, &two)
                .expect_err("mismatch")
                .status_code(),
            488
        );
        // Nothing leaked: the failed offers hold no ports.
        assert_eq!(m.overview().ports_free_inside, 50 - 2);
    }

    #[tokio::test]
    async fn disabled_stream_gets_port_zero_and_update_keeps_ports() {
        let mut m = manager(41_200, 41_299);
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 4000), StreamDesc::new(LO, 0)],
                &MediaPeers::default(),
            )
            .expect("offer");
        assert_eq!(a.streams[1].outside.rtp_port, 0);
        let committed = m
            .commit(
                a.session,
                Leg::Outside,
                &[StreamDesc::new(LO, 6000), StreamDesc::new(LO, 0)],
            )
            .expect("answer");
        assert_eq!(committed, a.streams);
        let mut reoffer = vec![StreamDesc::new(LO, 4100), StreamDesc::new(LO, 0)];
        reoffer[0].rtcp_mux = true;
        reoffer.push(StreamDesc::new(LO, 4200));
        let updated = m
            .update(a.session, Leg::Inside, &reoffer)
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
        let mut m = manager(41_300, 41_399);
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 4000)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let t0 = Instant::now();
        // Not committed yet: no timeout however long it rings.
        m.tick(t0 + Duration::from_secs(120));
        assert_eq!(m.poll_event(), None);
        m.commit(a.session, Leg::Outside, &[StreamDesc::new(LO, 6000)])
            .expect("answer");
        let t1 = Instant::now();
        m.tick(t1 + Duration::from_secs(59));
        assert_eq!(m.poll_event(), None);
        m.tick(t1 + Duration::from_secs(61));
        assert_eq!(m.poll_event(), Some(MediaEvent::Timeout(a.session)));
        m.tick(t1 + Duration::from_secs(62));
        assert_eq!(m.poll_event(), None, "reported once");

        // On hold (sendonly), the hold timeout applies instead.
        let b = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 4002)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let mut held = StreamDesc::new(LO, 6002);
        held.direction = sbc_proto::media::Direction::SendOnly;
        m.commit(b.session, Leg::Outside, &[held]).expect("answer");
        let t2 = Instant::now();
        m.tick(t2 + Duration::from_secs(61));
        assert_eq!(m.poll_event(), None);
        m.tick(t2 + Duration::from_secs(3601));
        assert_eq!(m.poll_event(), Some(MediaEvent::Timeout(b.session)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_both_directions_and_latches_nat_source() {
        let mut m = manager(41_400, 41_499);
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        for s in [&pbx, &carrier] {
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        // The PBX's SDP names a private address the relay cannot reach: only latching helps.
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, 9)],
                &MediaPeers::default(),
            )
            .expect("offer");
        let carrier_port = carrier.local_addr().expect("addr").port();
        m.commit(
            a.session,
            Leg::Outside,
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
            .update(a.session, Leg::Inside, &[StreamDesc::new(LO, 9)])
            .expect("re-offer");
        assert_eq!(again, a.streams);
        let v = m.session_view(a.session).expect("view");
        assert!(v.streams[0].inside.latched.is_some(), "kept: {v:?}");
        // ...a changed one drops it: the relay sends to the new SDP address until the peer's
        // next packet latches again.
        m.update(a.session, Leg::Inside, &[StreamDesc::new(LO, 4444)])
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
}
