//! The real [`MediaTable`] with its commands executed without I/O, for simulations, the B2BUA
//! fuzz target and the workload benchmark (behind `cfg(test)` or the `sim-media` feature): what
//! the daemon's `MediaManager` does around the table, with the table's commands executed in
//! memory.
//!
//! [`SimMedia`] runs the table the daemon runs: port pools drawn with a seeded [`Rng`] (runs
//! are reproducible), quotas, latching, SRTP contexts, payload maps, DTMF termination,
//! fast-path mappings and the media timeout. After each verb it executes the table's commands
//! the way the runtime's executor does (`sbc/src/media/executor.rs`, `run_commands`), except
//! that nothing touches a socket or a map:
//!
//! - [`MediaCommand::Bind`] succeeds unless the test [`occupy`](SimMedia::occupy)'d the port
//!   (another program holds it); then the table is told
//!   ([`MediaTable::handle_bind_failed`]) and tries another pair, as in the runtime;
//!   With [`lose_relay_threads`](SimMedia::lose_relay_threads) a stream whose two legs are
//!   bound finds no relay thread, and the table is told ([`MediaTable::handle_unrelayable`]);
//! - [`MediaCommand::Prebind`] binds a warm pair ahead ([`SimMedia::set_warm_pairs`]; none
//!   by default) unless the port is occupied, and answers the table; a `Bind` of it takes it,
//!   [`MediaCommand::Unbind`] gives it up;
//! - [`MediaCommand::Close`] forgets the stream's sockets;
//! - XDP map writes (`Install`, `Update`, `Policy`, `Remove`) are applied to an in-memory map
//!   ([`SimMedia::mappings`]), so the leak check sees a mapping left behind;
//! - [`MediaCommand::ReadCounters`] answers with the counters the test
//!   [`set`](SimMedia::set_counter) (zero otherwise);
//! - [`MediaCommand::Wake`] is counted (nothing relays generated packets here).
//!
//! Failures go back to the table as in the runtime: a bind of a port the call layer was told
//! that fails ends the call ([`MediaEvent::Failed`]), since the endpoints a verb returns are
//! final.
//!
//! The call layer gets the table for each input through [`SimMedia::drive`], which executes
//! the commands the input caused afterwards, as the daemon's driver does.
//!
//! Time: [`SimMedia::tick`] runs the table's timers (media timeout, strict fast paths, DTMF
//! flush); a simulation calls it as its clock advances. Media reaches the table through
//! [`SimMedia::receive`], a datagram arriving at a relay socket.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use super::{
    Allocation, FastPath, MediaCommand, MediaError, MediaEvent, MediaPeers, MediaTable,
    PacketAction, RelaySettings, SessionId, Side, SideAddress, StreamDesc, StreamKey,
    StreamPayloadMaps, StreamRelay, dtmf,
    path::{Arrival, RelayPort},
    policy::MediaPolicy,
};
use crate::{ids::Rng, srtp::StreamKeys};

/// The seed of the table's port draws: every simulation draws the same ports.
const SEED: u64 = 0x5eed;

/// The real media table, its commands executed in memory. See the module docs.
#[derive(Debug)]
pub struct SimMedia {
    table: MediaTable,
    /// Relay ports another program holds: binding them fails.
    occupied: HashSet<SocketAddr>,
    /// The bound relay sockets (RTP port) of each stream's legs.
    bound: HashMap<(StreamKey, Side), SocketAddr>,
    /// Pairs bound ahead ([`MediaCommand::Prebind`]) and not yet taken by a stream.
    warm: HashSet<SocketAddr>,
    /// The fast-path map as the commands left it, by ingress.
    mappings: HashMap<SocketAddr, FastPath>,
    /// The latch policies of socketless mappings, by ingress.
    policies: HashMap<SocketAddr, FastPath>,
    /// What `ReadCounters` answers per stream.
    counters: HashMap<StreamKey, u64>,
    /// Binds that failed because the port was occupied.
    busy_binds: usize,
    /// No relay thread runs or can be started ([`SimMedia::lose_relay_threads`]).
    no_relay_threads: bool,
    /// `Wake` commands seen.
    wakes: usize,
}

/// What a simulation can check of one session, read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSession {
    /// Relay endpoints per stream.
    pub streams: Vec<StreamRelay>,
    /// The inside peer of each stream.
    pub inside: Vec<SimPeer>,
    /// The outside peer of each stream.
    pub outside: Vec<SimPeer>,
    /// Whether an answer was committed.
    pub committed: bool,
    /// The call's peers as last told.
    pub peers: MediaPeers,
    /// SRTP keys per leg (`[inside, outside]`) in force, per stream.
    pub crypto: [Vec<Option<StreamKeys>>; 2],
    /// Payload-type rewrites in force, per stream.
    pub payload_maps: Vec<StreamPayloadMaps>,
    /// DTMF termination in force, per stream.
    pub dtmf: Vec<dtmf::StreamDtmf>,
    /// Per leg (`[inside, outside]`), per stream: awaiting SRTP keys.
    pub expected: [Vec<bool>; 2],
    /// Outside relay ports counted against the trunk's quota.
    pub quota_ports: usize,
}

/// What the table holds of the peer on one leg of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPeer {
    /// Where its SDP said it receives RTP (`None`: not described yet, a disabled stream, or a
    /// hold address such as 0.0.0.0, which is no destination).
    pub sdp: Option<SocketAddr>,
    /// Where its SDP said it receives RTCP.
    pub rtcp: Option<SocketAddr>,
    /// It asked for rtcp-mux.
    pub mux: bool,
    /// The direction of its last SDP.
    pub direction: super::Direction,
    /// Where its RTP latched (the first packet from an allowed source).
    pub latched: Option<SocketAddr>,
}

impl SimMedia {
    /// Settings like the daemon's defaults on one relay address per side, ports
    /// `port_min..=port_max` on each: strict-source latching, a 2 s re-latch window, no media
    /// timeout (a simulation that wants one sets it, see [`SimMedia::with_settings`]).
    pub fn settings(
        inside: IpAddr,
        outside: IpAddr,
        port_min: u16,
        port_max: u16,
    ) -> RelaySettings {
        let side = |ip| SideAddress {
            bind: ip,
            advertised: ip,
        };
        RelaySettings {
            inside: side(inside).into(),
            outside: side(outside).into(),
            port_min,
            port_max,
            strict_source: true,
            relatch_window: Duration::from_secs(2),
            max_streams: 16,
            timeout: None,
            hold_timeout: None,
            dtmf_queue: 16,
        }
    }

    /// A table with [`SimMedia::settings`].
    pub fn new(inside: IpAddr, outside: IpAddr, port_min: u16, port_max: u16) -> Self {
        Self::with_settings(Self::settings(inside, outside, port_min, port_max))
    }

    /// A table with `settings`, no media networks or quotas, and the fast path on (as with
    /// XDP attached: mappings are asked for and kept in [`SimMedia::mappings`]).
    pub fn with_settings(settings: RelaySettings) -> Self {
        let slots = settings.fast_path_mappings();
        Self {
            table: MediaTable::new(
                settings,
                MediaPolicy::default(),
                true,
                slots,
                Rng::from_test_seed(SEED),
            ),
            occupied: HashSet::new(),
            bound: HashMap::new(),
            warm: HashSet::new(),
            mappings: HashMap::new(),
            policies: HashMap::new(),
            counters: HashMap::new(),
            busy_binds: 0,
            no_relay_threads: false,
            wakes: 0,
        }
    }

    /// The table, for what the views below do not show.
    pub fn table(&self) -> &MediaTable {
        &self.table
    }

    /// The table, to change what a test needs (policy, kernel latching).
    pub fn table_mut(&mut self) -> &mut MediaTable {
        &mut self.table
    }

    /// Another program holds relay port `addr` (RTP or RTCP): binding its pair fails.
    pub fn occupy(&mut self, addr: SocketAddr) {
        self.occupied.insert(addr);
    }

    /// From now on no relay thread can be started, as when the daemon's executor fails to
    /// spawn one (out of threads or descriptors): a stream whose sockets are bound cannot be
    /// relayed, and the table is told ([`MediaTable::handle_unrelayable`]).
    pub fn lose_relay_threads(&mut self) {
        self.no_relay_threads = true;
    }

    /// Keeps `pairs` pairs per relay address bound ahead, as the daemon does with
    /// `media.warm_pairs` (none by default here).
    pub fn set_warm_pairs(&mut self, now: Instant, pairs: usize) {
        self.table.set_warm_pairs(pairs);
        self.run(now);
    }

    /// The pairs bound ahead and not taken yet (RTP addresses, sorted).
    pub fn warm(&self) -> Vec<SocketAddr> {
        let mut w: Vec<SocketAddr> = self.warm.iter().copied().collect();
        w.sort_unstable();
        w
    }

    /// Pairs that could not be bound ahead so far (the table's count).
    pub fn warm_failures(&self) -> u64 {
        self.table.warm_misses_and_failures().1
    }

    /// Binds that failed on an [`occupy`](Self::occupy)'d port so far.
    pub fn busy_binds(&self) -> usize {
        self.busy_binds
    }

    /// `Wake` commands executed so far (generated DTMF to send).
    pub fn wakes(&self) -> usize {
        self.wakes
    }

    /// The packets the fast path counted for `stream` (answers `ReadCounters`).
    pub fn set_counter(&mut self, stream: StreamKey, packets: u64) {
        self.counters.insert(stream, packets);
    }

    /// The fast-path map as the executed commands left it.
    pub fn mappings(&self) -> &HashMap<SocketAddr, FastPath> {
        &self.mappings
    }

    /// The relay sockets bound for `stream`'s legs (RTP port), inside and outside.
    pub fn bound(&self, stream: StreamKey) -> [Option<SocketAddr>; 2] {
        [Side::Inside, Side::Outside].map(|leg| self.bound.get(&(stream, leg)).copied())
    }

    /// Snapshots the call layer took so far (how often it built a call's record).
    pub fn snapshots(&self) -> u64 {
        self.table.snapshots_taken()
    }

    /// Hands the table to `f` (the call layer's turn at `now`), then executes the commands it
    /// queued, as the daemon's driver does after each input.
    pub fn drive<R>(&mut self, now: Instant, f: impl FnOnce(&mut MediaTable) -> R) -> R {
        let r = f(&mut self.table);
        self.run(now);
        r
    }

    /// Executes the commands queued in the table (a test that called the table directly).
    pub fn settle(&mut self, now: Instant) {
        self.run(now);
    }

    /// Live session ids, in order.
    pub fn ids(&self) -> Vec<SessionId> {
        self.table.sessions().map(|(id, _)| id).collect()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// What the table holds of session `id`.
    pub fn session(&self, id: SessionId) -> Option<SimSession> {
        let s = self.table.session(id)?;
        let legs = [Side::Inside, Side::Outside];
        let paths: Vec<_> = s.streams.iter().map(|st| st.path.lock()).collect();
        let peers = |leg: Side| {
            paths
                .iter()
                .map(|p| {
                    let p = &p.peers[leg.index()];
                    SimPeer {
                        sdp: p.latch[0].sdp(),
                        rtcp: p.latch[1].sdp(),
                        mux: p.mux,
                        direction: p.direction,
                        latched: p.latch[0].latched(),
                    }
                })
                .collect()
        };
        Some(SimSession {
            streams: s.streams.iter().map(|st| st.relay).collect(),
            inside: peers(Side::Inside),
            outside: peers(Side::Outside),
            committed: s.committed,
            peers: s.peers.clone(),
            crypto: legs.map(|leg| paths.iter().map(|p| p.srtp.keys(leg).cloned()).collect()),
            payload_maps: paths.iter().map(|p| p.payload.clone()).collect(),
            dtmf: paths.iter().map(|p| p.dtmf.config()).collect(),
            expected: legs.map(|leg| paths.iter().map(|p| p.srtp.awaiting(leg)).collect()),
            quota_ports: s.quota_ports,
        })
    }

    /// Every live session, by id.
    pub fn sessions(&self) -> BTreeMap<SessionId, SimSession> {
        self.ids()
            .into_iter()
            .filter_map(|id| Some((id, self.session(id)?)))
            .collect()
    }

    /// The id of the oldest live session (most simulations run one call).
    pub fn first_id(&self) -> Option<SessionId> {
        self.table.sessions().next().map(|(id, _)| id)
    }

    /// The oldest live session.
    pub fn first(&self) -> Option<SimSession> {
        self.session(self.first_id()?)
    }

    /// Whether nothing is held, in the table or in what its commands did: no session, every
    /// port pair, statistics slot and quota free, no socket bound, no mapping or policy left.
    pub fn holds_nothing(&self) -> bool {
        self.table.holds_nothing()
            && self.bound.is_empty()
            && self.mappings.is_empty()
            && self.policies.is_empty()
    }

    /// Time passed: the table's timers (what the runtime's tick task does every
    /// [`TICK`](super::table::TICK)).
    pub fn tick(&mut self, now: Instant) {
        self.table.handle_timeout(now);
        self.run(now);
    }

    /// A datagram of `len` bytes of `buf` from `src` arrives at `stream`'s `leg` relay socket
    /// (`port`): the table decides it, and the commands it caused are executed.
    pub fn receive(
        &mut self,
        now: Instant,
        stream: StreamKey,
        leg: Side,
        port: RelayPort,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> PacketAction {
        let len = buf.len();
        let arrival = Arrival {
            stream,
            leg,
            port,
            src,
        };
        let action = self.table.handle_packet(now, arrival, buf, len);
        self.run(now);
        action
    }

    /// An RTP packet (payload type 0, `seq`) from `src` arrives at the RTP socket of
    /// `stream`'s `leg`: latches the leg if `src` may send there.
    pub fn send_rtp(
        &mut self,
        now: Instant,
        stream: StreamKey,
        leg: Side,
        src: SocketAddr,
        seq: u16,
    ) -> PacketAction {
        let mut packet = rtp_header(0, seq, u32::from(seq) * 160);
        packet.extend_from_slice(&[0xd5; 160]);
        self.receive(now, stream, leg, RelayPort::Rtp, src, &mut packet)
    }

    /// A telephone-event (RFC 4733) packet with `payload_type` from `src` at `stream`'s
    /// `leg`, carrying `event` (8 kHz clock; one event starts at timestamp 8000).
    pub fn send_event(
        &mut self,
        now: Instant,
        stream: StreamKey,
        leg: Side,
        src: SocketAddr,
        payload_type: u8,
        event: crate::dtmf::Event,
    ) -> PacketAction {
        // Every packet of one event carries the timestamp of its start; one packet per 20 ms.
        let mut packet = rtp_header(payload_type, event.duration / 160, 8_000);
        packet.extend_from_slice(&event.to_bytes());
        self.receive(now, stream, leg, RelayPort::Rtp, src, &mut packet)
    }

    /// Executes the table's commands (the runtime's `executor::execute`). Failures go back
    /// to the table, which tells the call layer (`MediaEvent::Failed`).
    fn run(&mut self, now: Instant) {
        while let Some(cmd) = self.table.poll_command() {
            match cmd {
                MediaCommand::Bind { stream, leg, addr } => {
                    let rtcp = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
                    if self.occupied.contains(&addr) || self.occupied.contains(&rtcp) {
                        self.busy_binds += 1;
                        let _ = self.table.handle_bind_failed(stream, leg);
                    } else if self.table.path(stream).is_some() {
                        // A warm pair's sockets are taken, as the runtime's executor does.
                        self.warm.remove(&addr);
                        self.bound.insert((stream, leg), addr);
                        // With both legs bound the runtime hands the stream to a relay thread.
                        let both = self.bound.contains_key(&(stream, leg.other()));
                        if both && self.no_relay_threads {
                            // Its sockets go back to the idle cache (nothing of the table's).
                            self.bound.retain(|(s, _), _| *s != stream);
                            let _ = self
                                .table
                                .handle_unrelayable(stream, "no relay worker could be started");
                        }
                    }
                    // Released before its bind ran: the runtime keeps the sockets idle, which
                    // holds nothing of the table's.
                }
                MediaCommand::Prebind { addr } => {
                    let rtcp = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
                    let free = !self.occupied.contains(&addr) && !self.occupied.contains(&rtcp);
                    if free {
                        self.warm.insert(addr);
                    }
                    self.table.handle_prebound(addr, free);
                }
                MediaCommand::Unbind { addr } => {
                    self.warm.remove(&addr);
                }
                MediaCommand::Close { stream } => {
                    self.bound.retain(|(s, _), _| *s != stream);
                }
                MediaCommand::Install(m) | MediaCommand::Update(m) => {
                    self.mappings.insert(m.ingress, m);
                }
                MediaCommand::Policy(m) => {
                    self.policies.insert(m.ingress, m);
                }
                MediaCommand::Remove { ingress, policy } => {
                    self.mappings.remove(&ingress);
                    if policy {
                        self.policies.remove(&ingress);
                    }
                }
                MediaCommand::Wake { .. } => self.wakes += 1,
                MediaCommand::ReadCounters { stream, .. } => {
                    let packets = self.counters.get(&stream).copied().unwrap_or(0);
                    self.table.handle_fast_path_packets(now, stream, packets);
                }
            }
        }
    }
}

/// An RTP header (version 2, no CSRC, SSRC 0x5157) with `payload_type`, `seq` and
/// `timestamp`.
fn rtp_header(payload_type: u8, seq: u16, timestamp: u32) -> Vec<u8> {
    let mut h = vec![0x80, payload_type & 0x7f];
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&timestamp.to_be_bytes());
    h.extend_from_slice(&0x5157_u32.to_be_bytes());
    h
}

/// The verbs one at a time, each executed at once (for tests of the table's own behaviour).
impl SimMedia {
    /// [`MediaTable::allocate`], executed.
    pub fn allocate(
        &mut self,
        now: Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        self.drive(now, |t| t.allocate(now, from, streams, peers))
    }

    /// [`MediaTable::commit`], executed.
    pub fn commit(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.drive(now, |t| t.commit(now, session, from, streams))
    }

    /// [`MediaTable::update`], executed.
    pub fn update(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.drive(now, |t| t.update(now, session, from, streams))
    }

    /// [`MediaTable::release`], executed.
    pub fn release(&mut self, now: Instant, session: SessionId) {
        self.drive(now, |t| t.release(session));
    }

    /// [`MediaTable::poll_event`].
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.table.poll_event()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::media::test_origin;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn offer(m: &mut SimMedia, now: Instant, port: u16) -> Result<Allocation, MediaError> {
        m.allocate(
            now,
            Side::Inside,
            &[StreamDesc::new(ip(10), port)],
            &MediaPeers::default(),
        )
    }

    #[test]
    fn a_call_binds_its_ports_and_gives_everything_back() {
        // Two pairs per side.
        let mut m = SimMedia::new(ip(1), ip(2), 10_000, 10_003);
        let now = test_origin();
        let a = offer(&mut m, now, 4000).expect("ports available");
        let key = StreamKey {
            session: a.session,
            index: 0,
        };
        let r = a.streams[0];
        assert_eq!(
            m.bound(key),
            [
                Some(SocketAddr::new(ip(1), r.inside.rtp_port)),
                Some(SocketAddr::new(ip(2), r.outside.rtp_port)),
            ]
        );
        m.commit(
            now,
            a.session,
            Side::Outside,
            &[StreamDesc::new(ip(20), 5000)],
        )
        .expect("answer");
        let s = m.session(a.session).expect("live");
        assert!(s.committed);
        assert_eq!(s.outside[0].sdp, Some(SocketAddr::new(ip(20), 5000)));
        assert_eq!(s.outside[0].rtcp, Some(SocketAddr::new(ip(20), 5001)));
        // The offerer's first packet latches its leg.
        let action = m.send_rtp(now, key, Side::Inside, SocketAddr::new(ip(10), 4000), 1);
        assert!(matches!(action, PacketAction::Forward { .. }), "{action:?}");
        let s = m.session(a.session).expect("live");
        assert_eq!(s.inside[0].latched, Some(SocketAddr::new(ip(10), 4000)));
        assert_eq!(m.poll_event(), Some(MediaEvent::Latched(a.session)));
        // Two pairs: one more call fits, a third gets 503.
        let b = offer(&mut m, now, 4002).expect("second call");
        assert_eq!(
            offer(&mut m, now, 4004).map_err(|e| e.status_code()),
            Err(503)
        );
        m.release(now, a.session);
        m.release(now, b.session);
        assert!(m.holds_nothing(), "{m:?}");
    }

    #[test]
    fn a_busy_port_is_reported_to_the_call_layer() {
        let mut m = SimMedia::new(ip(1), ip(2), 10_000, 10_003);
        let now = test_origin();
        // The pool's first draw out of two pairs is the older one: 10000 (RTCP 10001).
        m.occupy(SocketAddr::new(ip(1), 10_001));
        let a = offer(&mut m, now, 4000).expect("the endpoints are returned at once");
        assert_eq!(a.streams[0].inside.rtp_port, 10_000);
        assert_eq!(m.busy_binds(), 1);
        assert_eq!(m.poll_event(), Some(MediaEvent::Failed(a.session)));
        m.release(now, a.session);
        assert!(m.holds_nothing(), "{m:?}");
    }

    #[test]
    fn the_media_timeout_fires_after_the_counters_stay_still() {
        let mut s = SimMedia::settings(ip(1), ip(2), 10_000, 10_099);
        s.timeout = Some(Duration::from_secs(20));
        let mut m = SimMedia::with_settings(s);
        let now = test_origin();
        let a = offer(&mut m, now, 4000).expect("offer");
        m.commit(
            now,
            a.session,
            Side::Outside,
            &[StreamDesc::new(ip(20), 5000)],
        )
        .expect("answer");
        m.tick(now + Duration::from_secs(19));
        assert_eq!(m.poll_event(), None);
        m.tick(now + Duration::from_secs(21));
        assert_eq!(m.poll_event(), Some(MediaEvent::Timeout(a.session)));
        m.release(now, a.session);
        assert!(m.holds_nothing());
    }
}
