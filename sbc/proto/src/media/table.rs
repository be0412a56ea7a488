//! The media session table: every call's relay ports, latches, fast-path mappings and media
//! timeout, as plain state with time passed in. It performs no I/O: it emits
//! [`MediaCommand`]s (bind sockets, close them, install or remove XDP mappings, read counters)
//! that the runtime executes, and [`MediaEvent`]s for the call layer.
//!
//! # Drive loop
//! - call layer verbs: [`MediaTable::allocate`], [`MediaTable::commit`],
//!   [`MediaTable::update`], [`MediaTable::set_crypto`], [`MediaTable::set_peers`],
//!   [`MediaTable::release`];
//! - packet path: [`MediaTable::handle_packet`] decides per datagram received on a relay
//!   socket (forward where, or drop why) and updates latches and statistics;
//! - time: [`MediaTable::handle_timeout`] about every [`TICK`];
//! - feedback from executed commands: `handle_bind_failed`, `handle_install_failed`,
//!   `handle_fast_path_packets`.
//!
//! After every call, drain [`MediaTable::poll_command`] (and [`MediaTable::poll_event`]).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use super::{
    Allocation, MediaError, MediaEvent, MediaPeers, RelayEndpoint, SessionId, Side, StreamDesc,
    StreamRelay,
    activity::Activity,
    command::MediaCommand,
    fast_path::{self, FastPath, NO_SLOT, PathMode},
    path::{PathHandle, StreamPath},
    peer::PeerState,
    policy::{MediaPolicy, Quotas},
    pools::RelayPools,
    settings::RelaySettings,
    share::{MediaShare, SharedQuotas},
    slots::Slots,
    warm::WarmPairs,
};
use crate::ids::Rng;

mod adopt;
mod dtmf;
mod feedback;
mod kernel;
mod packet;
mod restore;
mod session;
mod timers;
mod warm;

pub use crate::media::path::{
    Arrival, Generated, PacketAction, PacketDrop, RelayPort, SRTP_DROP_LABELS,
};
pub use crate::media::stream_key::StreamKey;
pub use session::{Session, Stream};

/// How often the runtime should call [`MediaTable::handle_timeout`].
pub const TICK: Duration = Duration::from_millis(500);
/// Events kept for the call layer before the oldest are dropped (it should drain them).
const MAX_EVENTS: usize = 4096;

/// A relay leg's RTP endpoint (bind address, even port) as a map key: 20 bytes where a
/// `SocketAddr` is 32, and one key for the leg's RTP and RTCP ports (the pools hand out even
/// RTP ports with RTCP on the odd one above), so a socketless call costs two entries, not four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LegKey {
    ip: IpAddr,
    port: u16,
}

impl LegKey {
    /// The leg of relay endpoint `addr` (its RTP or RTCP port).
    fn of(addr: SocketAddr) -> Self {
        Self {
            ip: addr.ip(),
            port: addr.port() & !1,
        }
    }
}

/// The table. See the module docs for the drive loop.
#[derive(Debug)]
pub struct MediaTable {
    settings: RelaySettings,
    policy: MediaPolicy,
    /// Whether fast-path mappings are wanted (XDP attached).
    fast_path: bool,
    /// Whether plain streams go socketless: latched and relayed in the kernel, no relay socket
    /// (XDP attached with in-kernel latching; see [`MediaTable::set_kernel_latch`]).
    kernel_latch: bool,
    /// Socketless streams by their legs' relay RTP endpoints: one entry per leg with a kernel
    /// mapping, which a latch event names by its RTP or RTCP port ([`LegKey::of`]).
    kernel_ports: HashMap<LegKey, StreamKey>,
    pools: RelayPools,
    /// Pairs bound ahead for new userspace streams (out of `pools` while held).
    warm: WarmPairs,
    slots: Slots,
    quotas: Quotas,
    /// A trunk's port quota when none is configured: half the outside relay ports of the
    /// whole range (of every shard's table together), in pairs.
    default_quota: usize,
    sessions: BTreeMap<SessionId, Session>,
    next_id: u64,
    rng: Rng,
    commands: VecDeque<MediaCommand>,
    events: VecDeque<MediaEvent>,
    /// The generation of the next installed mapping ([`FastPath::generation`]). Starts at a
    /// random value: the statistics slots may be pinned counters of a previous process,
    /// whose generations a count from zero would meet again.
    generation: u32,
    /// Sessions whose RTP latch moved since the call layer last polled: reported as
    /// [`MediaEvent::Latched`] once each, after the timeouts (a set, so a source that keeps
    /// re-latching costs one event and can never crowd a timeout out of `events`).
    latched: std::collections::BTreeSet<SessionId>,
    /// Offers and descriptions refused, by reason (the runtime's metric reads them).
    rejections: super::rejections::Rejections,
    /// Released sessions kept for [`MediaTable::drain_released`] (the call detail records'
    /// last statistics); `None`: nobody takes them, so none are kept.
    released: Option<Vec<(SessionId, Session)>>,
    /// [`MediaTable::snapshot`]s taken (a diagnostic: see [`MediaTable::snapshots_taken`]).
    snapshots_taken: std::cell::Cell<u64>,
}

impl MediaTable {
    /// An empty table. `fast_path`: XDP is attached and has `slots` statistics slots; `rng`
    /// draws the relay ports (keyed from the OS by the runtime: ports must be unpredictable).
    pub fn new(
        settings: RelaySettings,
        policy: MediaPolicy,
        fast_path: bool,
        slots: u32,
        rng: Rng,
    ) -> Self {
        let slots = Slots::new(slots);
        Self::build(settings, policy, fast_path, slots, rng)
    }

    /// An empty table of one signaling shard's `share` of the relay (`share.rs`): its part of
    /// `whole`'s port range and of the `slots` statistics slots, session ids labelled with the
    /// shard, and trunk quotas checked against `quotas`, the ledger every shard takes from.
    pub fn for_share(
        whole: &RelaySettings,
        policy: MediaPolicy,
        (fast_path, slots): (bool, u32),
        rng: Rng,
        (share, quotas): (MediaShare, SharedQuotas),
    ) -> Self {
        let default_quota = RelayPools::new(whole).capacity(&whole.outside);
        let own = Slots::range(share.slots(whole, slots));
        let mut t = Self::build(share.ports(whole), policy, fast_path, own, rng);
        t.next_id = share.first_session();
        t.quotas = Quotas::shared(quotas);
        t.default_quota = default_quota;
        t
    }

    fn build(
        settings: RelaySettings,
        policy: MediaPolicy,
        fast_path: bool,
        slots: Slots,
        mut rng: Rng,
    ) -> Self {
        let pools = RelayPools::new(&settings);
        Self {
            generation: u32::try_from(rng.next_u64() >> 32).unwrap_or(0),
            default_quota: pools.capacity(&settings.outside),
            pools,
            warm: WarmPairs::new(settings.bind_addresses()),
            settings,
            policy,
            fast_path,
            kernel_latch: false,
            kernel_ports: HashMap::new(),
            slots,
            quotas: Quotas::default(),
            sessions: BTreeMap::new(),
            next_id: 1,
            rng,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            latched: std::collections::BTreeSet::new(),
            rejections: super::rejections::Rejections::default(),
            released: None,
            snapshots_taken: std::cell::Cell::new(0),
        }
    }

    /// Refusals so far, by reason.
    pub fn rejections(&self) -> &super::rejections::Rejections {
        &self.rejections
    }

    /// Keeps every session [`MediaTable::release`] removes until the runtime takes it
    /// ([`MediaTable::drain_released`]), so the call's last statistics can be read before its
    /// mappings go: the runtime takes them after each input, before it executes the
    /// commands.
    pub fn keep_released(&mut self) {
        self.released.get_or_insert_with(Vec::new);
    }

    /// Whether released sessions wait for [`MediaTable::drain_released`] (so the runtime takes
    /// the locks their views need only when there is something to view).
    pub fn has_released(&self) -> bool {
        self.released.as_ref().is_some_and(|kept| !kept.is_empty())
    }

    /// The sessions released since the last call (with [`MediaTable::keep_released`]), taken
    /// out in place: the kept list keeps its room for the next ones (no allocation per
    /// released call).
    pub fn drain_released(&mut self) -> impl Iterator<Item = (SessionId, Session)> + '_ {
        self.released.iter_mut().flat_map(|kept| kept.drain(..))
    }

    /// Turns socketless streams on (the runtime attached XDP with in-kernel latching and owns
    /// the relay port ranges there): a new stream that the program can carry on its own (plain
    /// RTP, no payload-type rewrite, strict source, one address family) gets awaiting-latch
    /// mappings instead of sockets; one that stops qualifying (SRTP, a rewrite, rtcp-mux on one
    /// leg only) is bound then and relayed in userspace. Every socket-bound stream's ports get
    /// pass-through mappings, since the program drops unallocated relay ports. Call before the
    /// first allocation.
    pub fn set_kernel_latch(&mut self, on: bool) {
        self.kernel_latch = on && self.fast_path;
    }

    /// Whether socketless streams are on.
    pub fn kernel_latch(&self) -> bool {
        self.kernel_latch
    }

    /// The settings in force.
    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// Replaces the media networks and trunk quotas for new calls (live configuration).
    pub fn set_policy(&mut self, policy: MediaPolicy) {
        self.policy = policy;
    }

    /// The next command for the runtime.
    pub fn poll_command(&mut self) -> Option<MediaCommand> {
        self.commands.pop_front()
    }

    /// Whether events are waiting for the call layer.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether commands are waiting.
    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// The next event for the call layer.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events
            .pop_front()
            .or_else(|| self.latched.pop_first().map(MediaEvent::Latched))
    }

    /// A number that changes whenever [`Self::snapshot`] of `id` would: the call layer skips
    /// building the snapshot of a call whose state did not change.
    pub fn state_version(&self, id: SessionId) -> Option<u64> {
        self.sessions.get(&id).map(|s| s.version)
    }

    /// A session, for views.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Every session, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, &Session)> {
        self.sessions.iter().map(|(id, s)| (*id, s))
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Fast-path mappings asked of the kernel, over all streams. Visits every stream: for
    /// a periodic gauge or an admin request, not for every call.
    pub fn mappings(&self) -> usize {
        self.sessions
            .values()
            .flat_map(|s| &s.streams)
            .map(Stream::fast_paths)
            .sum()
    }

    /// Free port pairs on `leg`'s side, over all its relay addresses (warm pairs waiting for
    /// a stream included).
    pub fn ports_free(&self, leg: Side) -> usize {
        self.pools.available(self.settings.side(leg)) + self.warm_on(leg)
    }

    /// Port pairs on `leg`'s side, over all its relay addresses.
    pub fn ports_total(&self, leg: Side) -> usize {
        self.pools.capacity(self.settings.side(leg))
    }

    /// Free (warm ones included) and total port pairs of every relay bind address.
    pub fn ports_per_address(&self) -> impl Iterator<Item = (IpAddr, usize, usize)> + '_ {
        self.pools
            .per_address()
            .map(|(ip, free, total)| (ip, free + self.warm.ready(ip), total))
    }

    /// Whether nothing is held: no session, every port pair free (in the pool or held warm),
    /// every statistics slot free, no trunk quota used, no released session kept and not yet
    /// handed over (a leak check for tests).
    pub fn holds_nothing(&self) -> bool {
        self.sessions.is_empty()
            && self.ports_all_back()
            && self.slots.in_use() == 0
            && self.quotas.is_empty()
            && self.released.as_ref().is_none_or(Vec::is_empty)
    }

    /// Offer from `from` with `streams` at `now`: reserves a port pair per enabled stream on
    /// both sides and asks the runtime to bind them.
    pub fn allocate(
        &mut self,
        now: Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        let result = self.open_session(now, from, streams, peers);
        if let Err(e) = &result {
            self.rejections.count(e);
        }
        result
    }

    fn open_session(
        &mut self,
        now: Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        if streams.is_empty() || streams.len() > self.settings.max_streams {
            return Err(MediaError::StreamCount(streams.len()));
        }
        let quota = self.take_quota(peers, streams)?;
        let mut opened: Vec<Stream> = Vec::with_capacity(streams.len());
        for desc in streams {
            match self.open_stream(from, desc, peers) {
                Ok(st) => opened.push(st),
                Err(e) => {
                    for st in &opened {
                        self.free_ports(st);
                    }
                    self.give_quota(peers, quota);
                    return Err(e);
                }
            }
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let relays: Vec<StreamRelay> = opened.iter().map(|s| s.relay).collect();
        self.bind_streams(id, 0, &opened);
        self.sessions.insert(
            id,
            Session {
                streams: opened,
                version: 0,
                committed: false,
                activity: Activity::new(now),
                timed_out: false,
                adopted: false,
                peers: peers.clone(),
                quota_ports: quota,
            },
        );
        for index in 0..relays.len() {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        // After the streams' own commands: the runtime binds them first.
        self.top_up();
        Ok(Allocation {
            session: id,
            streams: relays,
        })
    }

    /// Answer from `from`: records the answerer's addresses, opens the re-latch window and
    /// starts the media timeout.
    pub fn commit(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        let result = self.describe(now, id, from, streams, true);
        // A session ended meanwhile is no refusal of the offer (the call is gone too).
        if let Err(e) = &result
            && !matches!(e, MediaError::UnknownSession(_))
        {
            self.rejections.count(e);
        }
        result
    }

    /// Re-offer from `from`: keeps existing ports, re-latches peers whose SDP address changed,
    /// and opens streams for extra `m=` lines.
    pub fn update(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        let result = self.describe(now, id, from, streams, false);
        // A session ended meanwhile is no refusal of the offer (the call is gone too).
        if let Err(e) = &result
            && !matches!(e, MediaError::UnknownSession(_))
        {
            self.rejections.count(e);
        }
        result
    }

    /// The call's peers changed (failover): new allowed sources; the quota moves along.
    pub fn set_peers(&mut self, id: SessionId, peers: &MediaPeers) {
        let allowed = [Side::Inside, Side::Outside].map(|leg| self.policy.allowed(leg, peers));
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(t) = &s.peers.trunk {
            self.quotas.give(t, s.quota_ports);
        }
        if let Some(t) = &peers.trunk {
            self.quotas.force(t, s.quota_ports);
        }
        for st in &mut s.streams {
            st.path.lock().peers[0].allowed = allowed[0].clone();
            st.path.lock().peers[1].allowed = allowed[1].clone();
        }
        s.peers = peers.clone();
        s.version += 1;
    }

    /// The SRTP keys of `leg`'s streams (by `m=` index; `None`: plain RTP on that leg), set
    /// once an answer settled them and again after every re-negotiation: a key that differs
    /// from the current one gets a new context (re-key), an equal one keeps it (and its ROC).
    /// A stream that became encrypted leaves the fast path (XDP cannot run AES); one that
    /// became plain may take it again.
    pub fn set_crypto(
        &mut self,
        now: Instant,
        id: SessionId,
        leg: Side,
        keys: &[Option<crate::srtp::StreamKeys>],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        for (i, st) in s.streams.iter_mut().enumerate() {
            st.path
                .lock()
                .srtp
                .set(leg, keys.get(i).and_then(Option::as_ref));
        }
        for index in 0..s.streams.len() {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        Ok(())
    }

    /// The payload-type rewrites of the session's streams (by `m=` index; missing entries are
    /// identity). A stream that rewrites leaves the fast path (the XDP program forwards bytes
    /// unchanged); one back to identity may take it again.
    pub fn set_payload_maps(
        &mut self,
        now: Instant,
        id: SessionId,
        maps: &[crate::media::StreamPayloadMaps],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        for (i, st) in s.streams.iter_mut().enumerate() {
            st.path.lock().payload = maps.get(i).cloned().unwrap_or_default();
        }
        for index in 0..s.streams.len() {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        Ok(())
    }

    /// `leg`'s streams (by `m=` index) whose SDP just offered or accepted SRTP: until
    /// [`set_crypto`](Self::set_crypto) settles their keys, such a stream relays nothing and
    /// stays off the fast path (see [`StreamSrtp::expect`]). A `false` releases a stream an
    /// earlier offer left awaiting keys (the call layer's failover to a plain trunk relies on
    /// it); streams beyond `secure` are left as they are.
    ///
    /// [`StreamSrtp::expect`]: crate::media::crypto::StreamSrtp::expect
    pub fn expect_crypto(
        &mut self,
        now: Instant,
        id: SessionId,
        leg: Side,
        secure: &[bool],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        for (st, secure) in s.streams.iter_mut().zip(secure) {
            let srtp = &mut st.path.lock().srtp;
            if *secure {
                srtp.expect(leg);
            } else {
                srtp.unexpect(leg);
            }
        }
        for index in 0..s.streams.len() {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        Ok(())
    }

    /// Call ended: frees the ports and quota, asks to close the sockets and remove the
    /// mappings. Unknown ids are ignored (idempotent).
    pub fn release(&mut self, id: SessionId) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        self.latched.remove(&id);
        self.give_quota(&s.peers, s.quota_ports);
        for (index, st) in s.streams.iter().enumerate() {
            self.close_stream(StreamKey { session: id, index }, st);
        }
        if let Some(kept) = &mut self.released {
            kept.push((id, s));
        }
        // Warm pairs an empty pool could not refill get their ports back now.
        self.top_up();
    }

    /// The endpoint SDP names for `leg`'s ports bound to `bind`.
    fn endpoint(&self, leg: Side, bind: IpAddr, port: u16, mux: bool) -> RelayEndpoint {
        RelayEndpoint {
            addr: self.settings.side(leg).advertised(bind),
            rtp_port: port,
            rtcp_port: if mux || port == 0 { port } else { port + 1 },
        }
    }

    /// Reserves ports for one offered stream (no commands yet: see [`Self::bind_streams`]).
    fn open_stream(
        &mut self,
        from: Side,
        desc: &StreamDesc,
        call: &MediaPeers,
    ) -> Result<Stream, MediaError> {
        let mut peers: [PeerState; 2] = Default::default();
        for leg in [Side::Inside, Side::Outside] {
            peers[leg.index()].allowed = self.policy.allowed(leg, call);
        }
        let firsts = [self.settings.inside.first(), self.settings.outside.first()];
        if desc.rtp_port == 0 {
            return Ok(Stream {
                relay: StreamRelay {
                    inside: self.endpoint(Side::Inside, firsts[0].bind, 0, false),
                    outside: self.endpoint(Side::Outside, firsts[1].bind, 0, false),
                },
                binds: firsts.map(|a| a.bind),
                path: PathHandle::new(StreamPath {
                    peers,
                    ..StreamPath::default()
                }),
                installed: Default::default(),
                xdp_packets: 0,
                kernel: false,
                policies: false,
            });
        }
        if self.settings.side(from).is_ipv4() != desc.addr.is_ipv4() {
            return Err(MediaError::AddressFamily {
                leg: from,
                family: family(desc),
            });
        }
        peers[from.index()].set_desc(desc);
        let kernel = self.kernel_latch
            && self.settings.strict_source
            && fast_path::kernel_capable(&self.settings, &peers);
        let (in_bind, in_port) = self
            .draw(Side::Inside, !kernel)
            .ok_or(MediaError::PortsExhausted(Side::Inside))?;
        let Some((out_bind, out_port)) = self.draw(Side::Outside, !kernel) else {
            let _ = self.pools.free(in_bind, in_port);
            return Err(MediaError::PortsExhausted(Side::Outside));
        };
        let mux = |leg: Side| peers[leg.index()].mux;
        Ok(Stream {
            relay: StreamRelay {
                inside: self.endpoint(Side::Inside, in_bind, in_port, mux(Side::Inside)),
                outside: self.endpoint(Side::Outside, out_bind, out_port, mux(Side::Outside)),
            },
            binds: [in_bind, out_bind],
            path: PathHandle::new(StreamPath {
                peers,
                ..StreamPath::default()
            }),
            installed: Default::default(),
            xdp_packets: 0,
            kernel,
            policies: kernel,
        })
    }

    /// Asks the runtime to bind the sockets of `streams` (the streams of `id` from `first`).
    fn bind_streams(&mut self, id: SessionId, first: usize, streams: &[Stream]) {
        for (i, st) in streams.iter().enumerate() {
            // A socketless stream has no sockets; its mappings come with `sync_fast_path`.
            if !st.enabled() || st.kernel {
                continue;
            }
            let stream = StreamKey {
                session: id,
                index: first + i,
            };
            for (leg, addr) in [Side::Inside, Side::Outside].into_iter().zip(st.bound()) {
                self.commands
                    .push_back(MediaCommand::Bind { stream, leg, addr });
            }
        }
    }

    /// Returns an unbound stream's ports to the pools.
    fn free_ports(&mut self, st: &Stream) {
        if !st.enabled() {
            return;
        }
        for addr in st.bound() {
            // Only ports this table handed out reach here; an error would be a bookkeeping bug
            // (a double free), and the pool refuses it rather than hand a pair out twice.
            let _ = self.pools.free(addr.ip(), addr.port());
        }
    }

    /// Asks to remove the stream's mappings and close its sockets; frees slots and ports.
    fn close_stream(&mut self, key: StreamKey, st: &Stream) {
        st.path.lock().released = true;
        for m in st.installed.iter() {
            self.commands.push_back(MediaCommand::Remove {
                ingress: m.ingress,
                policy: st.policies,
            });
            self.slots.give(m.slot);
            self.kernel_ports.remove(&LegKey::of(m.ingress));
        }
        if st.enabled() && !st.kernel {
            self.commands.push_back(MediaCommand::Close { stream: key });
        }
        // The runtime keeps a closed socket for reuse or closes it; either way no one else
        // can take the port meanwhile, and a bind that finds it busy tries another pair.
        self.free_ports(st);
    }

    fn take_quota(
        &mut self,
        peers: &MediaPeers,
        streams: &[StreamDesc],
    ) -> Result<usize, MediaError> {
        let Some(trunk) = &peers.trunk else {
            return Ok(0);
        };
        // RTP and RTCP port of each enabled stream.
        let ports = 2 * streams.iter().filter(|d| d.rtp_port != 0).count();
        // Default: half the outside relay ports (over all its addresses), so one trunk cannot
        // starve the others.
        let limit = self.policy.quota(trunk, self.default_quota);
        if self.quotas.take(trunk, ports, limit) {
            Ok(ports)
        } else {
            Err(MediaError::QuotaExhausted(trunk.clone()))
        }
    }

    fn give_quota(&mut self, peers: &MediaPeers, ports: usize) {
        if let Some(trunk) = &peers.trunk {
            self.quotas.give(trunk, ports);
        }
    }

    /// Records `streams` from `from` on an existing session; opens new streams for extra
    /// `m=` lines of a re-offer.
    fn describe(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Side,
        streams: &[StreamDesc],
        answer: bool,
    ) -> Result<Vec<StreamRelay>, MediaError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        if answer && streams.len() != s.streams.len() {
            return Err(MediaError::StreamMismatch {
                want: s.streams.len(),
                got: streams.len(),
            });
        }
        s.version += 1;
        let mut resync = Vec::new();
        // An answer or re-offer opens the re-latch window on both legs (NAT rebinding, a media
        // server switch at answer time); the fast path relaxes meanwhile.
        let until = now + self.settings.relatch_window;
        let v4 = self.settings.side(from).is_ipv4();
        let mut result = Ok(());
        for (index, (st, desc)) in s.streams.iter_mut().zip(streams).enumerate() {
            if !st.enabled() {
                continue;
            }
            for p in &mut st.path.lock().peers {
                p.open_window(until);
            }
            let key = StreamKey { session: id, index };
            if !self.settings.relatch_window.is_zero() {
                resync.push(key);
            }
            let p = &mut st.path.lock().peers[from.index()];
            // First description from this leg: check its family like an offer.
            if desc.rtp_port != 0 && p.latch[0].target().is_none() && v4 != desc.addr.is_ipv4() {
                result = Err(MediaError::AddressFamily {
                    leg: from,
                    family: family(desc),
                });
                break;
            }
            if p.set_desc(desc) && !resync.contains(&key) {
                resync.push(key);
            }
            let mux = p.mux;
            let r = match from {
                Side::Inside => &mut st.relay.inside,
                Side::Outside => &mut st.relay.outside,
            };
            r.rtcp_port = if mux { r.rtp_port } else { r.rtp_port + 1 };
        }
        if result.is_ok() && answer && !s.committed {
            s.committed = true;
            s.activity = Activity::new(now);
        }
        let have = s.streams.len();
        let call_peers = s.peers.clone();
        for key in resync {
            self.sync_fast_path(now, key);
        }
        result?;
        if streams.len() > have {
            if streams.len() > self.settings.max_streams {
                return Err(MediaError::StreamCount(streams.len()));
            }
            let extra = &streams[have..];
            let quota = self.take_quota(&call_peers, extra)?;
            let mut opened = Vec::new();
            for desc in extra {
                match self.open_stream(from, desc, &call_peers) {
                    Ok(st) => opened.push(st),
                    Err(e) => {
                        for st in &opened {
                            self.free_ports(st);
                        }
                        self.give_quota(&call_peers, quota);
                        return Err(e);
                    }
                }
            }
            self.bind_streams(id, have, &opened);
            let added = opened.len();
            let s = self
                .sessions
                .get_mut(&id)
                .ok_or(MediaError::UnknownSession(id))?;
            s.streams.extend(opened);
            s.quota_ports += quota;
            for index in have..have + added {
                self.sync_fast_path(now, StreamKey { session: id, index });
            }
            self.top_up();
        }
        let s = self
            .sessions
            .get(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        Ok(s.streams.iter().map(|st| st.relay).collect())
    }

    /// Brings `key`'s fast-path mappings in line with its latches: removes stale ones, installs
    /// new ones, and updates flags in place.
    fn sync_fast_path(&mut self, now: Instant, key: StreamKey) {
        if !self.fast_path {
            return;
        }
        let Some(st) = self
            .sessions
            .get_mut(&key.session)
            .and_then(|s| s.streams.get_mut(key.index))
        else {
            return;
        };
        if !st.enabled() {
            return;
        }
        // Encrypted streams stay in userspace: XDP cannot run AES; nor can it rewrite payload
        // types (no per-mapping table in the program), nor inject or consume DTMF events.
        let plain = st.path.lock().plain();
        if st.kernel && !(plain && fast_path::kernel_capable(&self.settings, &st.path.lock().peers))
        {
            // No longer something the program can carry alone: bind the stream's ports (the
            // latches learned in the kernel carry over) and relay it in userspace. The peers
            // already send to these ports: they cannot move.
            leave_kernel(&mut self.commands, key, st);
        }
        let mut want: Vec<FastPath> = if st.kernel {
            fast_path::kernel(st.bound(), &st.path.lock().peers)
        } else if plain {
            fast_path::desired(&self.settings, st.bound(), &st.path.lock().peers, now)
                .map_or_else(Vec::new, Vec::from)
        } else {
            Vec::new()
        };
        if self.kernel_latch && !st.kernel {
            for p in fast_path::pass(st.bound()) {
                if !want.iter().any(|w| w.ingress == p.ingress) {
                    want.push(p);
                }
            }
        }
        let old = std::mem::take(&mut st.installed);
        for o in old.iter() {
            if !want.iter().any(|w| w.ingress == o.ingress) {
                self.commands.push_back(MediaCommand::Remove {
                    ingress: o.ingress,
                    policy: st.policies,
                });
                self.slots.give(o.slot);
            }
        }
        for w in &want {
            // An installed mapping keeps its slot (and, if only its flags change, its counters).
            let existing = old
                .iter()
                .find(|o| o.ingress == w.ingress && (o.slot == NO_SLOT) == (w.slot == NO_SLOT));
            if let Some(o) = old.iter().find(|o| o.ingress == w.ingress)
                && (o.slot == NO_SLOT) != (w.slot == NO_SLOT)
            {
                self.slots.give(o.slot);
            }
            let slot = if w.slot == NO_SLOT {
                Some(NO_SLOT)
            } else {
                existing.map(|o| o.slot).or_else(|| self.slots.take())
            };
            let Some(slot) = slot else {
                // Out of statistics slots: this direction stays in userspace.
                continue;
            };
            // A new install is a new use of its slot (see `FastPath::generation`).
            let generation = existing.map_or_else(|| next(&mut self.generation), |o| o.generation);
            let m = FastPath {
                slot,
                generation,
                ..*w
            };
            match existing {
                Some(o) if o == m => {}
                // The same slot: changed in place, only in the map(s) whose entry differs (an
                // answer changes the offerer's mappings' destination and the answerer's
                // policies, not both of each), and the counters stay the stream's.
                Some(o) => {
                    // The policy first: it must be in place before a mapping awaits on it.
                    if let Some(p) = m.awaiting_policy()
                        && o.awaiting_policy() != Some(p)
                    {
                        self.commands.push_back(MediaCommand::Policy(m));
                    }
                    if !o.same_mapping(&m) {
                        self.commands.push_back(MediaCommand::Update(m));
                    }
                }
                None => self.commands.push_back(MediaCommand::Install(m)),
            }
            st.installed.push(m);
        }
        index_kernel_legs(&mut self.kernel_ports, key, st);
    }
}

/// Turns socketless stream `st` (the stream `key`) into a socket-bound one: its ports are
/// bound where the peers already send (they cannot move).
fn leave_kernel(commands: &mut VecDeque<MediaCommand>, key: StreamKey, st: &mut Stream) {
    st.kernel = false;
    for (leg, addr) in [Side::Inside, Side::Outside].into_iter().zip(st.bound()) {
        commands.push_back(MediaCommand::Bind {
            stream: key,
            leg,
            addr,
        });
    }
}

/// Keeps `ports` naming `st` (the stream `key`) under exactly those of its legs that have a
/// kernel mapping.
fn index_kernel_legs(ports: &mut HashMap<LegKey, StreamKey>, key: StreamKey, st: &Stream) {
    for relay in st.bound() {
        let leg = LegKey::of(relay);
        let kernel = st
            .installed
            .iter()
            .any(|m| matches!(m.mode, PathMode::Kernel(_)) && LegKey::of(m.ingress) == leg);
        if kernel {
            ports.insert(leg, key);
        } else {
            ports.remove(&leg);
        }
    }
}

/// A mapping generation no installed mapping has had lately (`counter` is the table's; they
/// wrap after 2³² installs).
fn next(counter: &mut u32) -> u32 {
    *counter = counter.wrapping_add(1);
    *counter
}

/// Queues an event for the call layer; the oldest goes when it does not drain them.
fn push_event(events: &mut VecDeque<MediaEvent>, event: MediaEvent) {
    if events.len() >= MAX_EVENTS {
        events.pop_front();
    }
    events.push_back(event);
}

fn family(desc: &StreamDesc) -> &'static str {
    if desc.addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod address_tests;
#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod warm_tests;
