//! The media session table: every call's relay ports, latches, fast-path mappings and media
//! timeout, as plain state with time passed in. It performs no I/O: it emits
//! [`MediaCommand`]s (bind sockets, close them, install or remove XDP mappings, read counters)
//! that the runtime executes, and [`MediaEvent`]s for the call layer.
//!
//! # Drive loop
//! - call layer verbs: [`MediaTable::allocate`], [`MediaTable::commit`],
//!   [`MediaTable::update`], [`MediaTable::set_peers`], [`MediaTable::release`];
//! - packet path: [`MediaTable::handle_packet`] decides per datagram received on a relay
//!   socket (forward where, or drop why) and updates latches and statistics;
//! - time: [`MediaTable::handle_timeout`] about every [`TICK`];
//! - feedback from executed commands: `handle_bind_failed`, `handle_install_failed`,
//!   `handle_fast_path_packets`.
//!
//! After every call, drain [`MediaTable::poll_command`] (and [`MediaTable::poll_event`]).

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{
    Allocation, Leg, MediaError, MediaEvent, MediaPeers, RelayEndpoint, SessionId, StreamDesc,
    StreamRelay,
    activity::Activity,
    command::MediaCommand,
    fast_path::{self, FastPath},
    latch::{DropReason, Verdict},
    peer::PeerState,
    policy::{MediaPolicy, Quotas},
    pool::PortPool,
    rtp,
    settings::RelaySettings,
    slots::Slots,
};
use crate::b2bua::Rng;

/// How often the runtime should call [`MediaTable::handle_timeout`].
pub const TICK: Duration = Duration::from_millis(500);
/// Events kept for the call layer before the oldest are dropped (it should drain them).
const MAX_EVENTS: usize = 4096;
/// Pairs tried per stream side when ports turn out to be held by another program.
const BIND_ATTEMPTS: u8 = 8;

/// One stream of one session (the `index`-th `m=` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The session.
    pub session: SessionId,
    /// The stream's `m=` index.
    pub index: usize,
}

/// The RTP or the RTCP socket of a relay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPort {
    /// The even port.
    Rtp = 0,
    /// The odd port above (unused with rtcp-mux).
    Rtcp = 1,
}

/// What to do with one datagram received on a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketAction {
    /// Send it from the other leg's `port` socket to `to`.
    Forward {
        /// The socket of the other leg to send from.
        port: RelayPort,
        /// The peer on the other leg.
        to: SocketAddr,
        /// The packet moved the latch from another source (NAT rebinding, loose source).
        relatched: bool,
    },
    /// Drop it.
    Drop(PacketDrop),
}

/// Why a packet was dropped (the `reason` label of `sbc_media_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketDrop {
    /// The latching policy refused the source.
    Refused(DropReason),
    /// The other leg has no address yet (no SDP, no latch).
    NoDestination,
    /// The stream is gone (released while the packet was in flight).
    UnknownStream,
}

impl PacketDrop {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            PacketDrop::Refused(r) => r.label(),
            PacketDrop::NoDestination => "no_destination",
            // Counted with the packets no peer can receive.
            PacketDrop::UnknownStream => "no_destination",
        }
    }
}

/// A session (one call).
#[derive(Debug)]
pub struct Session {
    /// Streams in `m=` order.
    pub streams: Vec<Stream>,
    /// An answer was committed (the media timeout runs from then on).
    pub committed: bool,
    /// Last media activity.
    pub activity: Activity,
    /// The media timeout fired.
    pub timed_out: bool,
    /// Recreated from pinned fast-path mappings after a restart.
    pub adopted: bool,
    /// Signaling peers and trunk, as the call layer last said.
    pub peers: MediaPeers,
    /// Outside relay ports counted against `peers.trunk`'s quota.
    pub quota_ports: usize,
}

/// One stream of a [`Session`].
#[derive(Debug)]
pub struct Stream {
    /// The relay endpoints (advertised address); port 0 for a disabled stream.
    pub relay: StreamRelay,
    /// The peers, indexed by [`leg_idx`].
    pub peers: [PeerState; 2],
    /// Fast-path mappings asked of the kernel.
    pub installed: Vec<FastPath>,
    /// Fast-path packets of this stream at the last counter read.
    pub xdp_packets: u64,
    bind_attempts: [u8; 2],
}

impl Stream {
    /// Whether the stream has relay ports (an `m=` line with port 0 has none).
    pub fn enabled(&self) -> bool {
        self.relay.inside.rtp_port != 0
    }

    fn ports(&self) -> [u16; 2] {
        [self.relay.inside.rtp_port, self.relay.outside.rtp_port]
    }
}

/// Index of a leg in per-leg arrays.
pub const fn leg_idx(leg: Leg) -> usize {
    match leg {
        Leg::Inside => 0,
        Leg::Outside => 1,
    }
}

/// The table. See the module docs for the drive loop.
#[derive(Debug)]
pub struct MediaTable {
    settings: RelaySettings,
    policy: MediaPolicy,
    /// Whether fast-path mappings are wanted (XDP attached).
    fast_path: bool,
    pools: [PortPool; 2],
    slots: Slots,
    quotas: Quotas,
    sessions: BTreeMap<SessionId, Session>,
    next_id: u64,
    rng: Rng,
    commands: VecDeque<MediaCommand>,
    events: VecDeque<MediaEvent>,
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
        let pool = || PortPool::new(settings.port_min, settings.port_max);
        Self {
            pools: [pool(), pool()],
            settings,
            policy,
            fast_path,
            slots: Slots::new(slots),
            quotas: Quotas::default(),
            sessions: BTreeMap::new(),
            next_id: 1,
            rng,
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
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

    /// Whether commands are waiting.
    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// The next event for the call layer.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
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

    /// Fast-path mappings asked of the kernel, over all streams.
    pub fn mappings(&self) -> usize {
        self.sessions
            .values()
            .flat_map(|s| &s.streams)
            .map(|st| st.installed.len())
            .sum()
    }

    /// Free port pairs on `leg`'s side.
    pub fn ports_free(&self, leg: Leg) -> usize {
        self.pools[self.settings.pool(leg)].available()
    }

    /// Port pairs per side.
    pub fn ports_total(&self) -> usize {
        self.pools[0].capacity()
    }

    /// Whether nothing is held: no session, every port pair and statistics slot free, no trunk
    /// quota used (a leak check for tests).
    pub fn holds_nothing(&self) -> bool {
        self.sessions.is_empty()
            && self.pools.iter().all(|p| p.available() == p.capacity())
            && self.slots.in_use() == 0
            && self.quotas.is_empty()
    }

    /// Offer from `from` with `streams` at `now`: reserves a port pair per enabled stream on
    /// both sides and asks the runtime to bind them.
    pub fn allocate(
        &mut self,
        now: Instant,
        from: Leg,
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
                committed: false,
                activity: Activity::new(now),
                timed_out: false,
                adopted: false,
                peers: peers.clone(),
                quota_ports: quota,
            },
        );
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
        from: Leg,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.describe(now, id, from, streams, true)
    }

    /// Re-offer from `from`: keeps existing ports, re-latches peers whose SDP address changed,
    /// and opens streams for extra `m=` lines.
    pub fn update(
        &mut self,
        now: Instant,
        id: SessionId,
        from: Leg,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.describe(now, id, from, streams, false)
    }

    /// The call's peers changed (failover): new allowed sources; the quota moves along.
    pub fn set_peers(&mut self, id: SessionId, peers: &MediaPeers) {
        let allowed = [Leg::Inside, Leg::Outside].map(|leg| self.policy.allowed(leg, peers));
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
            st.peers[0].allowed = allowed[0].clone();
            st.peers[1].allowed = allowed[1].clone();
        }
        s.peers = peers.clone();
    }

    /// Call ended: frees the ports and quota, asks to close the sockets and remove the
    /// mappings. Unknown ids are ignored (idempotent).
    pub fn release(&mut self, id: SessionId) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        self.give_quota(&s.peers, s.quota_ports);
        for (index, st) in s.streams.iter().enumerate() {
            self.close_stream(StreamKey { session: id, index }, st);
        }
    }

    /// One datagram from `src` arrived on `stream`'s `leg` relay socket `port` at `now`:
    /// applies the latching policy, counts it, and says where it goes.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        stream: StreamKey,
        leg: Leg,
        port: RelayPort,
        src: SocketAddr,
        packet: &[u8],
    ) -> PacketAction {
        let rules = self.settings.rules();
        let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        else {
            return PacketAction::Drop(PacketDrop::UnknownStream);
        };
        let is_rtcp = port == RelayPort::Rtcp || rtp::is_rtcp(packet);
        let (from, to) = (leg_idx(leg), leg_idx(leg.other()));
        let p = &mut st.peers[from];
        let verdict = p.latch[port as usize].on_packet(src, now, &p.allowed, rules);
        if let Verdict::Drop(reason) = verdict {
            p.dropped += 1;
            return PacketAction::Drop(PacketDrop::Refused(reason));
        }
        p.packets += 1;
        p.bytes += packet.len() as u64;
        p.last_seen = Some(now);
        if is_rtcp {
            if let Some(r) = rtp::parse_report(packet) {
                p.report = Some(r);
            }
        } else {
            p.rtp.on_packet(packet, now);
        }
        let dst = &st.peers[to];
        // RTCP goes to the peer's RTCP port, or its RTP port when it multiplexes.
        let (target, out) = if is_rtcp && !dst.mux {
            (dst.latch[1].target(), RelayPort::Rtcp)
        } else {
            (dst.latch[0].target(), RelayPort::Rtp)
        };
        let relatched = matches!(verdict, Verdict::Latched { previous: Some(_) });
        if matches!(verdict, Verdict::Latched { .. }) && port == RelayPort::Rtp {
            self.sync_fast_path(now, stream);
        }
        match target {
            Some(to) => PacketAction::Forward {
                port: out,
                to,
                relatched,
            },
            None => {
                self.count_drop(stream, leg);
                PacketAction::Drop(PacketDrop::NoDestination)
            }
        }
    }

    /// A packet from `stream`'s `leg` could not be sent on (counted against that peer).
    pub fn count_drop(&mut self, stream: StreamKey, leg: Leg) {
        if let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        {
            st.peers[leg_idx(leg)].dropped += 1;
        }
    }

    /// Time passed: makes fast paths strict once their re-latch window has closed, asks for the
    /// counters of idle fast-path sessions, fires media timeouts (events for the call layer;
    /// adopted sessions, which no call layer knows, are released here). Returns the number of
    /// sessions that timed out.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut fired = Vec::new();
        let mut resync = Vec::new();
        for (id, s) in &mut self.sessions {
            if self.settings.strict_source {
                for (index, st) in s.streams.iter().enumerate() {
                    let lax = st.installed.iter().any(|m| !m.strict);
                    let open = st.peers.iter().any(|p| p.latch[0].window_open(now));
                    if lax && !open {
                        resync.push(StreamKey {
                            session: *id,
                            index,
                        });
                    }
                }
            }
            if !s.committed || s.timed_out {
                continue;
            }
            let mut hold = false;
            for p in s.streams.iter().flat_map(|st| &st.peers) {
                hold |= p.direction.is_hold();
                if let Some(t) = p.last_seen {
                    s.activity.observe(t);
                }
            }
            let limit = if hold {
                self.settings.hold_timeout
            } else {
                self.settings.timeout
            };
            if s.activity.expired(now, limit) {
                s.timed_out = true;
                fired.push((*id, s.adopted));
                continue;
            }
            // Counters cost a syscall per mapping: read them only for a session idle for a
            // quarter of its timeout. Their answer counts at the next tick, so a stream that XDP
            // carries times out between 1 and 1.25 timeouts (plus a tick) after its last packet.
            if let Some(l) = limit
                && s.activity.idle(now) >= l / 4
            {
                for (index, st) in s.streams.iter().enumerate() {
                    if st.installed.is_empty() {
                        continue;
                    }
                    let slot = |i: usize| st.installed.get(i).map(|m| m.slot);
                    self.commands.push_back(MediaCommand::ReadCounters {
                        stream: StreamKey {
                            session: *id,
                            index,
                        },
                        slots: [slot(0), slot(1)],
                    });
                }
            }
        }
        for key in resync {
            self.sync_fast_path(now, key);
        }
        let n = fired.len();
        for (id, adopted) in fired {
            if adopted {
                self.release(id);
                continue;
            }
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(MediaEvent::Timeout(id));
        }
        n
    }

    /// The fast-path counters of `stream` summed to `packets` at `now`: media forwarded by
    /// XDP counts as activity.
    pub fn handle_fast_path_packets(&mut self, now: Instant, stream: StreamKey, packets: u64) {
        let Some(s) = self.sessions.get_mut(&stream.session) else {
            return;
        };
        let Some(st) = s.streams.get_mut(stream.index) else {
            return;
        };
        if packets != st.xdp_packets {
            st.xdp_packets = packets;
            s.activity.observe(now);
        }
    }

    /// A mapping could not be installed (map full): the stream stays in userspace. Forgets the
    /// mapping and asks to remove whatever the kernel may hold under its key.
    pub fn handle_install_failed(&mut self, ingress: SocketAddr) {
        for st in self.sessions.values_mut().flat_map(|s| &mut s.streams) {
            if let Some(i) = st.installed.iter().position(|m| m.ingress == ingress) {
                let m = st.installed.remove(i);
                self.slots.give(m.slot);
                self.commands.push_back(MediaCommand::Remove { ingress });
                return;
            }
        }
    }

    /// `stream`'s `leg` ports could not be bound (another program holds one): tries another
    /// pair (the failed one goes to the back of the pool). Gives up after a few pairs, and for
    /// adopted streams, whose ports are fixed by their mappings; the caller then releases the
    /// session (or drops the new streams of a re-offer, [`MediaTable::drop_streams_from`]).
    pub fn handle_bind_failed(&mut self, stream: StreamKey, leg: Leg) -> Result<(), MediaError> {
        let pool = self.settings.pool(leg);
        let addr = self.settings.side(leg).bind;
        let Some(s) = self.sessions.get_mut(&stream.session) else {
            return Ok(());
        };
        let Some(st) = s.streams.get_mut(stream.index) else {
            return Ok(());
        };
        let i = leg_idx(leg);
        if s.adopted {
            return Err(MediaError::Unavailable(format!(
                "adopted relay port {} cannot be bound",
                st.ports()[i]
            )));
        }
        st.bind_attempts[i] += 1;
        if st.bind_attempts[i] >= BIND_ATTEMPTS {
            return Err(MediaError::Unavailable(format!(
                "no bindable relay port pair on {addr} after {BIND_ATTEMPTS} attempts"
            )));
        }
        let Some(port) = self.pools[pool].allocate(&mut self.rng) else {
            return Err(MediaError::PortsExhausted(leg));
        };
        let endpoint = match leg {
            Leg::Inside => &mut st.relay.inside,
            Leg::Outside => &mut st.relay.outside,
        };
        let old = endpoint.rtp_port;
        let mux = endpoint.rtcp_port == old;
        endpoint.rtp_port = port;
        endpoint.rtcp_port = if mux { port } else { port + 1 };
        // Back of the queue: it may be free again later. Not ours otherwise: a bug, ignored.
        let _ = self.pools[pool].free(old);
        self.commands.push_back(MediaCommand::Bind {
            stream,
            leg,
            addr: SocketAddr::new(addr, port),
        });
        Ok(())
    }

    /// Drops the streams of `id` from `index` on (new streams of a re-offer that could not be
    /// opened): frees their ports and asks to close them.
    pub fn drop_streams_from(&mut self, id: SessionId, index: usize) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if index >= s.streams.len() {
            return;
        }
        let gone: Vec<Stream> = s.streams.drain(index..).collect();
        let ports = 2 * gone.iter().filter(|st| st.enabled()).count();
        s.quota_ports = s.quota_ports.saturating_sub(ports);
        let peers = s.peers.clone();
        self.give_quota(&peers, ports);
        for (i, st) in gone.iter().enumerate() {
            self.close_stream(
                StreamKey {
                    session: id,
                    index: index + i,
                },
                st,
            );
        }
    }

    /// Recreates sessions from fast-path mappings a previous process left installed: each pair
    /// (inside → outside and back) becomes a one-stream, committed, `adopted` session with its
    /// ports and slots reserved and its latches restored. Mappings without a partner, or whose
    /// ports or slots are taken, are removed. Returns the adopted sessions.
    pub fn adopt(&mut self, now: Instant, found: &[FastPath]) -> Vec<SessionId> {
        let (inside, outside) = (self.settings.inside.bind, self.settings.outside.bind);
        let mut used: Vec<SocketAddr> = Vec::new();
        let mut adopted = Vec::new();
        for f in found {
            // With one address on both sides, the partner also looks like an inside mapping.
            if used.contains(&f.ingress) || f.ingress.ip() != inside {
                continue;
            }
            let Some(back) = found
                .iter()
                .find(|b| b.ingress == f.egress && b.ingress.ip() == outside)
            else {
                continue;
            };
            if back.expect != f.dst || back.dst != f.expect || f.expect.port() == 0 {
                continue;
            }
            if let Some(id) = self.adopt_pair(now, *f, *back) {
                used.push(f.ingress);
                used.push(back.ingress);
                adopted.push(id);
            }
        }
        for f in found {
            if !used.contains(&f.ingress) {
                self.commands
                    .push_back(MediaCommand::Remove { ingress: f.ingress });
            }
        }
        adopted
    }

    fn adopt_pair(&mut self, now: Instant, f: FastPath, back: FastPath) -> Option<SessionId> {
        let (pi, po) = (
            self.settings.pool(Leg::Inside),
            self.settings.pool(Leg::Outside),
        );
        let (in_port, out_port) = (f.ingress.port(), back.ingress.port());
        if !self.slots.reserve(f.slot) {
            return None;
        }
        if !self.slots.reserve(back.slot) {
            self.slots.give(f.slot);
            return None;
        }
        if !self.pools[pi].reserve(in_port) {
            self.slots.give(f.slot);
            self.slots.give(back.slot);
            return None;
        }
        if !self.pools[po].reserve(out_port) {
            let _ = self.pools[pi].free(in_port);
            self.slots.give(f.slot);
            self.slots.give(back.slot);
            return None;
        }
        let mut peers: [PeerState; 2] = Default::default();
        // The SDP is gone with the old process: what the mappings say is the latched truth.
        for (p, addr) in peers.iter_mut().zip([f.expect, f.dst]) {
            p.set_desc(&StreamDesc::new(addr.ip(), addr.port()));
            p.latch[0].adopt(addr, now);
        }
        let st = Stream {
            relay: StreamRelay {
                inside: self.endpoint(Leg::Inside, in_port, false),
                outside: self.endpoint(Leg::Outside, out_port, false),
            },
            peers,
            installed: vec![f, back],
            xdp_packets: 0,
            bind_attempts: [0; 2],
        };
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.bind_streams(id, 0, std::slice::from_ref(&st));
        self.sessions.insert(
            id,
            Session {
                streams: vec![st],
                committed: true,
                activity: Activity::new(now),
                timed_out: false,
                adopted: true,
                peers: MediaPeers::default(),
                quota_ports: 0,
            },
        );
        Some(id)
    }

    fn endpoint(&self, leg: Leg, port: u16, mux: bool) -> RelayEndpoint {
        RelayEndpoint {
            addr: self.settings.side(leg).advertised,
            rtp_port: port,
            rtcp_port: if mux || port == 0 { port } else { port + 1 },
        }
    }

    /// Reserves ports for one offered stream (no commands yet: see [`Self::bind_streams`]).
    fn open_stream(
        &mut self,
        from: Leg,
        desc: &StreamDesc,
        call: &MediaPeers,
    ) -> Result<Stream, MediaError> {
        let mut peers: [PeerState; 2] = Default::default();
        for leg in [Leg::Inside, Leg::Outside] {
            peers[leg_idx(leg)].allowed = self.policy.allowed(leg, call);
        }
        if desc.rtp_port == 0 {
            return Ok(Stream {
                relay: StreamRelay {
                    inside: self.endpoint(Leg::Inside, 0, false),
                    outside: self.endpoint(Leg::Outside, 0, false),
                },
                peers,
                installed: Vec::new(),
                xdp_packets: 0,
                bind_attempts: [0; 2],
            });
        }
        if self.settings.side(from).bind.is_ipv4() != desc.addr.is_ipv4() {
            return Err(MediaError::AddressFamily {
                leg: from,
                family: family(desc),
            });
        }
        let (pi, po) = (
            self.settings.pool(Leg::Inside),
            self.settings.pool(Leg::Outside),
        );
        let in_port = self.pools[pi]
            .allocate(&mut self.rng)
            .ok_or(MediaError::PortsExhausted(Leg::Inside))?;
        let Some(out_port) = self.pools[po].allocate(&mut self.rng) else {
            let _ = self.pools[pi].free(in_port);
            return Err(MediaError::PortsExhausted(Leg::Outside));
        };
        peers[leg_idx(from)].set_desc(desc);
        let mux = |leg: Leg| peers[leg_idx(leg)].mux;
        Ok(Stream {
            relay: StreamRelay {
                inside: self.endpoint(Leg::Inside, in_port, mux(Leg::Inside)),
                outside: self.endpoint(Leg::Outside, out_port, mux(Leg::Outside)),
            },
            peers,
            installed: Vec::new(),
            xdp_packets: 0,
            bind_attempts: [0; 2],
        })
    }

    /// Asks the runtime to bind the sockets of `streams` (the streams of `id` from `first`).
    fn bind_streams(&mut self, id: SessionId, first: usize, streams: &[Stream]) {
        for (i, st) in streams.iter().enumerate() {
            if !st.enabled() {
                continue;
            }
            let stream = StreamKey {
                session: id,
                index: first + i,
            };
            for (leg, port) in [Leg::Inside, Leg::Outside].into_iter().zip(st.ports()) {
                self.commands.push_back(MediaCommand::Bind {
                    stream,
                    leg,
                    addr: SocketAddr::new(self.settings.side(leg).bind, port),
                });
            }
        }
    }

    /// Returns an unbound stream's ports to the pools.
    fn free_ports(&mut self, st: &Stream) {
        if !st.enabled() {
            return;
        }
        for (leg, port) in [Leg::Inside, Leg::Outside].into_iter().zip(st.ports()) {
            // Only ports this table handed out reach here; an error would be a bookkeeping bug
            // (a double free), and the pool refuses it rather than hand a pair out twice.
            let _ = self.pools[self.settings.pool(leg)].free(port);
        }
    }

    /// Asks to remove the stream's mappings and close its sockets; frees slots and ports.
    fn close_stream(&mut self, key: StreamKey, st: &Stream) {
        for m in &st.installed {
            self.commands
                .push_back(MediaCommand::Remove { ingress: m.ingress });
            self.slots.give(m.slot);
        }
        if st.enabled() {
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
        // Default: half the range's ports, so one trunk cannot starve the others.
        let default = self.pools[self.settings.pool(Leg::Outside)].capacity();
        let limit = self.policy.quota(trunk, default);
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
        from: Leg,
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
        let mut resync = Vec::new();
        // An answer or re-offer opens the re-latch window on both legs (NAT rebinding, a media
        // server switch at answer time); the fast path relaxes meanwhile.
        let until = now + self.settings.relatch_window;
        let bind = self.settings.side(from).bind;
        let mut result = Ok(());
        for (index, (st, desc)) in s.streams.iter_mut().zip(streams).enumerate() {
            if !st.enabled() {
                continue;
            }
            for p in &mut st.peers {
                p.open_window(until);
            }
            let key = StreamKey { session: id, index };
            if !self.settings.relatch_window.is_zero() {
                resync.push(key);
            }
            let p = &mut st.peers[leg_idx(from)];
            // First description from this leg: check its family like an offer.
            if desc.rtp_port != 0
                && p.latch[0].target().is_none()
                && bind.is_ipv4() != desc.addr.is_ipv4()
            {
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
                Leg::Inside => &mut st.relay.inside,
                Leg::Outside => &mut st.relay.outside,
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
            let s = self
                .sessions
                .get_mut(&id)
                .ok_or(MediaError::UnknownSession(id))?;
            s.streams.extend(opened);
            s.quota_ports += quota;
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
        let want = fast_path::desired(&self.settings, st.ports(), &st.peers, now);
        let want: &[FastPath] = want.as_ref().map_or(&[], |w| w.as_slice());
        let old = std::mem::take(&mut st.installed);
        for o in &old {
            if !want.iter().any(|w| w.ingress == o.ingress) {
                self.commands
                    .push_back(MediaCommand::Remove { ingress: o.ingress });
                self.slots.give(o.slot);
            }
        }
        for w in want {
            // An installed mapping keeps its slot (and, if only its flags change, its counters).
            let existing = old.iter().find(|o| o.ingress == w.ingress);
            let Some(slot) = existing.map(|o| o.slot).or_else(|| self.slots.take()) else {
                // Out of statistics slots: this direction stays in userspace.
                continue;
            };
            let m = FastPath { slot, ..*w };
            match existing {
                Some(o) if *o == m => {}
                Some(o) if o.same_route(&m) => self.commands.push_back(MediaCommand::Update(m)),
                _ => self.commands.push_back(MediaCommand::Install(m)),
            }
            st.installed.push(m);
        }
    }
}

fn family(desc: &StreamDesc) -> &'static str {
    if desc.addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests;
