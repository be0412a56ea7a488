//! Restart recovery: the restorable state of a session ([`MediaSnapshot`], persisted with its
//! call) and its re-installation in a new process. A stream whose pair the fast path still
//! holds is taken over from the session [`MediaTable::adopt`] made of its mappings (same id,
//! mappings kept, no packet lost); any other stream gets its recorded ports bound again.

use super::*;
use crate::media::snapshot::{MediaSnapshot, StreamSnapshot};

impl MediaTable {
    /// Snapshots taken so far: how often the call layer built a call's record (it skips the
    /// calls whose [`MediaTable::state_version`] did not move).
    pub fn snapshots_taken(&self) -> u64 {
        self.snapshots_taken.get()
    }

    /// The restorable state of session `id`.
    pub fn snapshot(&self, id: SessionId) -> Option<MediaSnapshot> {
        let s = self.sessions.get(&id)?;
        self.snapshots_taken
            .set(self.snapshots_taken.get().wrapping_add(1));
        let streams = s
            .streams
            .iter()
            .map(|st| {
                let desc = |leg: Side| {
                    let p = &st.path.lock().peers[leg.index()];
                    let rtp = p.latch[0].sdp()?;
                    Some(StreamDesc {
                        addr: rtp.ip(),
                        rtp_port: rtp.port(),
                        rtcp_port: p.latch[1].sdp().map(|a| a.port()),
                        rtcp_mux: p.mux,
                        direction: p.direction,
                    })
                };
                let (i, o) = (desc(Side::Inside), desc(Side::Outside));
                let mut snap = StreamSnapshot::new(&st.relay, i.as_ref(), o.as_ref());
                if st.enabled() {
                    snap.relay_inside.bind = Some(st.binds[0]);
                    snap.relay_outside.bind = Some(st.binds[1]);
                }
                snap.latched_inside = st.path.lock().peers[0].latch[0].latched();
                snap.latched_outside = st.path.lock().peers[1].latch[0].latched();
                snap
            })
            .collect();
        Some(MediaSnapshot::new(id, streams, &s.peers))
    }

    /// Re-installs a session from `snap` at `now` with its recorded ports; returns its id
    /// (that of the adopted session it took over, or a new one). Refused (nothing held) when
    /// a recorded port is taken or the stream count is out of bounds.
    pub fn restore(&mut self, now: Instant, snap: &MediaSnapshot) -> Result<SessionId, MediaError> {
        if snap.streams.is_empty() || snap.streams.len() > self.settings.max_streams {
            return Err(MediaError::StreamCount(snap.streams.len()));
        }
        let peers = snap.peers();
        let first = self.recorded(&snap.streams[0]);
        let adopted = self
            .sessions
            .iter()
            .find(|(_, s)| s.adopted && s.streams.len() == 1 && s.streams[0].bound() == first)
            .map(|(id, _)| *id);
        let allowed = [Side::Inside, Side::Outside].map(|leg| self.policy.allowed(leg, &peers));
        let mut opened: Vec<Stream> = Vec::with_capacity(snap.streams.len());
        let taken_over = adopted.and_then(|id| self.sessions.remove(&id).map(|s| (id, s)));
        let skip = usize::from(taken_over.is_some());
        for ss in &snap.streams[skip..] {
            match self.reopen(now, ss, &allowed) {
                Ok(st) => opened.push(st),
                Err(e) => {
                    for st in &opened {
                        self.free_ports(st);
                    }
                    if let Some((id, s)) = taken_over {
                        self.sessions.insert(id, s);
                    }
                    return Err(e);
                }
            }
        }
        let (id, mut streams) = match taken_over {
            Some((id, mut s)) => {
                // The mappings' latches are the truth; the SDP and the policy come back.
                let st = s.streams.remove(0);
                for leg in [Side::Inside, Side::Outside] {
                    let mut path = st.path.lock();
                    let p = &mut path.peers[leg.index()];
                    let latched = p.latch[0].latched();
                    if let Some(d) = snap.streams[0].sdp(leg) {
                        p.set_desc(&d);
                    }
                    if let Some(l) = latched {
                        p.latch[0].adopt(l, now);
                    }
                    p.allowed = allowed[leg.index()].clone();
                }
                (id, vec![st])
            }
            None => {
                let id = SessionId(self.next_id);
                self.next_id += 1;
                (id, Vec::new())
            }
        };
        let from = streams.len();
        self.bind_streams(id, from, &opened);
        streams.extend(opened);
        let quota: usize = 2 * streams.iter().filter(|st| st.enabled()).count();
        if let Some(t) = &peers.trunk {
            // Counted as it was before the restart, even beyond a lowered quota.
            self.quotas.force(t, quota);
        }
        let count = streams.len();
        let quota_ports = if peers.trunk.is_some() { quota } else { 0 };
        self.sessions.insert(
            id,
            Session {
                streams,
                version: 0,
                committed: true,
                activity: Activity::new(now),
                timed_out: false,
                adopted: false,
                peers,
                quota_ports,
            },
        );
        for index in 0..count {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        Ok(id)
    }

    /// The relay RTP endpoints (bind address, port) `ss` recorded, inside and outside. A record
    /// without the bind address (written before a side could have several) names it by its
    /// advertised address; one whose address is no longer configured falls back to the side's
    /// first (as when a side had only one).
    fn recorded(&self, ss: &StreamSnapshot) -> [SocketAddr; 2] {
        [
            (Side::Inside, ss.relay_inside),
            (Side::Outside, ss.relay_outside),
        ]
        .map(|(leg, ep)| {
            let side = self.settings.side(leg);
            let bind = ep
                .bind
                .filter(|b| side.binds(*b))
                .or_else(|| side.by_advertised(ep.addr))
                .unwrap_or(side.first().bind);
            SocketAddr::new(bind, ep.rtp)
        })
    }

    /// A stream of a snapshot on its recorded ports (reserved, bind asked by the caller).
    fn reopen(
        &mut self,
        now: Instant,
        ss: &StreamSnapshot,
        allowed: &[crate::media::latch::Allowed; 2],
    ) -> Result<Stream, MediaError> {
        let bound = self.recorded(ss);
        let binds = bound.map(|a| a.ip());
        let mut peers: [PeerState; 2] = Default::default();
        for leg in [Side::Inside, Side::Outside] {
            let p = &mut peers[leg.index()];
            p.allowed = allowed[leg.index()].clone();
            if let Some(d) = ss.sdp(leg) {
                p.set_desc(&d);
            }
            if let Some(l) = ss.latched(leg) {
                p.latch[0].adopt(l, now);
            }
        }
        let st = Stream {
            relay: StreamRelay {
                inside: self.endpoint(Side::Inside, binds[0], bound[0].port(), peers[0].mux),
                outside: self.endpoint(Side::Outside, binds[1], bound[1].port(), peers[1].mux),
            },
            binds,
            // Only the peers are in the record: a restored stream has no SRTP until the call
            // layer sets it again, relays payload types and telephone-events as they come.
            path: PathHandle::new(StreamPath {
                peers,
                ..StreamPath::default()
            }),
            installed: Default::default(),
            xdp_packets: 0,
            // The peers' SDP names these ports: a restored stream cannot move to another pair,
            // so its first bind failure is final.
            kernel: false,
            policies: false,
        };
        if !st.enabled() {
            return Ok(st);
        }
        let [inside, outside] = bound;
        let Some(first) = self.claim(inside.ip(), inside.port()) else {
            return Err(MediaError::Unavailable(format!(
                "relay port {inside} taken"
            )));
        };
        if self.claim(outside.ip(), outside.port()).is_none() {
            self.unclaim(inside.ip(), inside.port(), first);
            return Err(MediaError::Unavailable(format!(
                "relay port {outside} taken"
            )));
        }
        Ok(st)
    }
}
