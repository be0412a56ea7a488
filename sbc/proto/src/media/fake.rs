//! An in-memory [`MediaControl`] for deterministic call-flow tests and the B2BUA fuzz
//! target (behind `cfg(test)` or the `fake-media` feature): ports from a range without
//! sockets, what it was told recorded, events injected by the test.

use std::net::IpAddr;

use super::{
    Allocation, MediaControl, MediaError, MediaEvent, MediaPeers, RelayEndpoint, SessionId, Side,
    StreamDesc, StreamPayloadMaps, StreamRelay, dtmf,
};

/// An in-memory [`MediaControl`] for deterministic call-flow tests: hands out ports from a
/// range without sockets, records what it was told, and lets the test inject events.
#[derive(Debug, Clone)]
pub struct FakeMedia {
    /// Relay address used on the inside.
    pub inside_addr: IpAddr,
    /// Relay address used on the outside.
    pub outside_addr: IpAddr,
    next_port: u16,
    max_port: u16,
    free: Vec<u16>,
    next_id: u64,
    /// Live sessions: the relays and the last descriptions seen from each leg.
    pub sessions: std::collections::BTreeMap<SessionId, FakeSession>,
    events: std::collections::VecDeque<MediaEvent>,
    /// Bumped by every change a snapshot shows (any session: coarser than the real relay,
    /// which counts per session, and still correct).
    version: u64,
    /// Snapshots taken so far (how often the call layer built a call's record).
    pub snapshots: std::cell::Cell<u64>,
}

/// What [`FakeMedia`] remembers about a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeSession {
    /// Relay endpoints per stream.
    pub streams: Vec<StreamRelay>,
    /// Last streams described by the inside leg.
    pub inside: Vec<StreamDesc>,
    /// Last streams described by the outside leg.
    pub outside: Vec<StreamDesc>,
    /// Whether an answer was committed.
    pub committed: bool,
    /// The call's peers as last told.
    pub peers: MediaPeers,
    /// SRTP keys per leg (`[inside, outside]`) as last set, per stream.
    pub crypto: [Vec<Option<crate::srtp::StreamKeys>>; 2],
    /// Payload-type rewrites as last set, per stream.
    pub payload_maps: Vec<StreamPayloadMaps>,
    /// DTMF termination as last set, per stream.
    pub dtmf: Vec<dtmf::StreamDtmf>,
    /// Streams per leg (`[inside, outside]`) last marked as awaiting SRTP keys.
    pub expected: [Vec<bool>; 2],
    /// Where each leg (`[inside, outside]`) of the first stream was latched.
    pub latched: [Option<std::net::SocketAddr>; 2],
}

impl FakeMedia {
    /// A fake with ports `port_min..=port_max` (pairs, even RTP) on each side.
    pub fn new(inside_addr: IpAddr, outside_addr: IpAddr, port_min: u16, port_max: u16) -> Self {
        Self {
            inside_addr,
            outside_addr,
            next_port: port_min & !1,
            max_port: port_max,
            free: Vec::new(),
            next_id: 1,
            sessions: std::collections::BTreeMap::new(),
            events: std::collections::VecDeque::new(),
            version: 0,
            snapshots: std::cell::Cell::new(0),
        }
    }

    /// Queues an event as if the relay had reported it (e.g. a media timeout).
    pub fn inject(&mut self, event: MediaEvent) {
        self.events.push_back(event);
    }

    /// `leg` of the first stream latches to `src`, as a relay would on a packet (reported
    /// with [`MediaEvent::Latched`]).
    pub fn latch(&mut self, session: SessionId, leg: Side, src: std::net::SocketAddr) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.latched[usize::from(leg == Side::Outside)] = Some(src);
            self.version += 1;
            self.events.push_back(MediaEvent::Latched(session));
        }
    }

    fn take_pair(&mut self) -> Option<u16> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let p = self.next_port;
        if p == 0 || u32::from(p) + 1 > u32::from(self.max_port) {
            return None;
        }
        self.next_port = p.checked_add(2).unwrap_or(0);
        Some(p)
    }

    fn relay_for(&mut self, desc: &StreamDesc) -> Result<StreamRelay, MediaError> {
        let endpoint = |addr, port: u16| RelayEndpoint {
            addr,
            rtp_port: port,
            rtcp_port: if desc.rtcp_mux || port == 0 {
                port
            } else {
                port + 1
            },
        };
        if desc.rtp_port == 0 {
            return Ok(StreamRelay {
                inside: endpoint(self.inside_addr, 0),
                outside: endpoint(self.outside_addr, 0),
            });
        }
        let inside = self
            .take_pair()
            .ok_or(MediaError::PortsExhausted(Side::Inside))?;
        let Some(outside) = self.take_pair() else {
            self.free.push(inside);
            return Err(MediaError::PortsExhausted(Side::Outside));
        };
        Ok(StreamRelay {
            inside: endpoint(self.inside_addr, inside),
            outside: endpoint(self.outside_addr, outside),
        })
    }

    fn give_back(&mut self, relays: &[StreamRelay]) {
        for r in relays {
            for p in [r.inside.rtp_port, r.outside.rtp_port] {
                if p != 0 {
                    self.free.push(p);
                }
            }
        }
    }
}

impl MediaControl for FakeMedia {
    fn state_version(&self, session: SessionId) -> Option<u64> {
        self.sessions.contains_key(&session).then_some(self.version)
    }

    fn snapshot(&self, session: SessionId) -> Option<crate::media::snapshot::MediaSnapshot> {
        use crate::media::snapshot::{MediaSnapshot, StreamSnapshot};
        self.snapshots.set(self.snapshots.get() + 1);
        let s = self.sessions.get(&session)?;
        let streams = s
            .streams
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut st = StreamSnapshot::new(r, s.inside.get(i), s.outside.get(i));
                if i == 0 {
                    [st.latched_inside, st.latched_outside] = s.latched;
                }
                st
            })
            .collect();
        Some(MediaSnapshot::new(session, streams, &s.peers))
    }

    fn restore(
        &mut self,
        _now: std::time::Instant,
        snap: &crate::media::snapshot::MediaSnapshot,
    ) -> Result<SessionId, MediaError> {
        self.version += 1;
        let id = snap.id();
        if self.sessions.contains_key(&id) {
            return Err(MediaError::Unavailable(format!("session {id} exists")));
        }
        let streams: Vec<StreamRelay> = snap.streams.iter().map(|s| s.relay()).collect();
        let descs = |leg| snap.streams.iter().filter_map(|s| s.sdp(leg)).collect();
        self.sessions.insert(
            id,
            FakeSession {
                streams,
                inside: descs(Side::Inside),
                outside: descs(Side::Outside),
                committed: true,
                peers: snap.peers(),
                crypto: [Vec::new(), Vec::new()],
                expected: [Vec::new(), Vec::new()],
                payload_maps: Vec::new(),
                latched: snap
                    .streams
                    .first()
                    .map_or([None, None], |s| [s.latched_inside, s.latched_outside]),
                dtmf: Vec::new(),
            },
        );
        // New sessions after the restart never reuse a restored id.
        self.next_id = self.next_id.max(snap.session.saturating_add(1));
        Ok(id)
    }

    fn set_payload_maps(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        maps: &[StreamPayloadMaps],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        s.payload_maps = maps.to_vec();
        Ok(())
    }

    fn set_dtmf(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        dtmf: &[dtmf::StreamDtmf],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        s.dtmf = dtmf.to_vec();
        Ok(())
    }

    fn expect_crypto(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        leg: Side,
        secure: &[bool],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        s.expected[usize::from(leg == Side::Outside)] = secure.to_vec();
        Ok(())
    }

    fn set_crypto(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        leg: Side,
        keys: &[Option<crate::srtp::StreamKeys>],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        s.crypto[usize::from(leg == Side::Outside)] = keys.to_vec();
        Ok(())
    }

    fn allocate(
        &mut self,
        _now: std::time::Instant,
        from: Side,
        streams: &[StreamDesc],
        peers: &MediaPeers,
    ) -> Result<Allocation, MediaError> {
        self.version += 1;
        if streams.is_empty() || streams.len() > 16 {
            return Err(MediaError::StreamCount(streams.len()));
        }
        let mut relays = Vec::with_capacity(streams.len());
        for s in streams {
            match self.relay_for(s) {
                Ok(r) => relays.push(r),
                Err(e) => {
                    self.give_back(&relays);
                    return Err(e);
                }
            }
        }
        let session = SessionId(self.next_id);
        self.next_id += 1;
        let mut fs = FakeSession {
            streams: relays.clone(),
            peers: peers.clone(),
            ..FakeSession::default()
        };
        match from {
            Side::Inside => fs.inside = streams.to_vec(),
            Side::Outside => fs.outside = streams.to_vec(),
        }
        self.sessions.insert(session, fs);
        Ok(Allocation {
            session,
            streams: relays,
        })
    }

    fn commit(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.version += 1;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        if streams.len() != s.streams.len() {
            return Err(MediaError::StreamMismatch {
                want: s.streams.len(),
                got: streams.len(),
            });
        }
        match from {
            Side::Inside => s.inside = streams.to_vec(),
            Side::Outside => s.outside = streams.to_vec(),
        }
        s.committed = true;
        Ok(s.streams.clone())
    }

    fn update(
        &mut self,
        _now: std::time::Instant,
        session: SessionId,
        from: Side,
        streams: &[StreamDesc],
    ) -> Result<Vec<StreamRelay>, MediaError> {
        self.version += 1;
        let have = self
            .sessions
            .get(&session)
            .ok_or(MediaError::UnknownSession(session))?
            .streams
            .len();
        let mut extra = Vec::new();
        for s in streams.iter().skip(have) {
            match self.relay_for(s) {
                Ok(r) => extra.push(r),
                Err(e) => {
                    self.give_back(&extra);
                    return Err(e);
                }
            }
        }
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        s.streams.extend(extra);
        match from {
            Side::Inside => s.inside = streams.to_vec(),
            Side::Outside => s.outside = streams.to_vec(),
        }
        Ok(s.streams.clone())
    }

    fn set_peers(&mut self, session: SessionId, peers: &MediaPeers) {
        self.version += 1;
        if let Some(s) = self.sessions.get_mut(&session) {
            s.peers = peers.clone();
        }
    }

    fn release(&mut self, _now: std::time::Instant, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            self.give_back(&s.streams);
        }
    }

    fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
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

    #[test]
    fn fake_allocates_commits_and_releases() {
        let mut m = FakeMedia::new(ip(1), ip(2), 10_000, 10_007);
        let now = test_origin();
        let a = m
            .allocate(
                now,
                Side::Inside,
                &[StreamDesc::new(ip(10), 4000)],
                &MediaPeers::default(),
            )
            .expect("ports available");
        let r = a.streams[0];
        assert_eq!(r.inside.rtp_port % 2, 0);
        assert_eq!(r.outside.rtcp_port, r.outside.rtp_port + 1);
        assert_eq!(r.facing(Side::Outside).addr, ip(2));
        m.commit(
            now,
            a.session,
            Side::Outside,
            &[StreamDesc::new(ip(20), 5000)],
        )
        .expect("commit");
        assert!(m.sessions[&a.session].committed);
        // Two pairs left: one more call fits, a third does not (503).
        let b = m
            .allocate(
                now,
                Side::Inside,
                &[StreamDesc::new(ip(10), 4002)],
                &MediaPeers::default(),
            )
            .expect("second call");
        let err = m
            .allocate(
                now,
                Side::Inside,
                &[StreamDesc::new(ip(10), 4004)],
                &MediaPeers::default(),
            )
            .expect_err("exhausted");
        assert_eq!(err.status_code(), 503);
        m.release(now, b.session);
        m.allocate(
            now,
            Side::Inside,
            &[StreamDesc::new(ip(10), 4004)],
            &MediaPeers::default(),
        )
        .expect("ports reused after release");
    }

    #[test]
    fn fake_reports_injected_events() {
        let mut m = FakeMedia::new(ip(1), ip(2), 10_000, 10_100);
        assert_eq!(m.poll_event(), None);
        m.inject(MediaEvent::Timeout(SessionId(7)));
        assert_eq!(m.poll_event(), Some(MediaEvent::Timeout(SessionId(7))));
    }
}
