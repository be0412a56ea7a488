//! The restorable state of an answered call (restart recovery, issue 19): both legs' dialog
//! state, the SDP origin the SBC writes on each leg, session timers, the max-duration deadline
//! and the media session — what [`B2bua::restore`] needs so that in-dialog requests and
//! responses from either side work after a restart.
//!
//! The B2BUA reports a call's snapshot as [`Event::CallState`] whenever it changed after a
//! message or timer touched the call (the answer, a re-INVITE or UPDATE, a refresh, a CSeq
//! step), and [`Event::CallStateEnded`] once a call whose state was reported is over. The
//! driver persists them; nothing here does I/O.
//!
//! There is no clock in the core: times are durations relative to the `now` the snapshot was
//! taken at. A driver restoring later ages the snapshot by the time that passed
//! ([`CallSnapshot::aged`]) first.
//!
//! **Versions.** [`CallSnapshot::VERSION`] is written into every record. A newer SBC reads
//! every older version ([`CallSnapshot::decode`]); fields added by a version carry a serde
//! default so an older record fills them in. History:
//! - 1: the first schema.
//! - 2: `called`, the called number of the caller's INVITE (for the call's detail record).
//!   A version 1 record restores with it empty.
//! - 3: `codecs` (`codec_snapshot.rs`), the codecs each leg declared and the DTMF method of
//!   each side: the restored call's relay maps payload types and terminates DTMF again. An
//!   older record restores without them (payload types unmapped, DTMF methods from the
//!   configuration) until the call's next offer and answer.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::*;
use crate::media::snapshot::MediaSnapshot;

/// The persistent name of a call, stable across restarts (unlike the call handle): the SBC's
/// own tags on the inside and outside legs, which it drew at random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StateKey(String);

impl StateKey {
    /// The key as text (a Redis key suffix, a log field).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One answered call, restorable. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallSnapshot {
    /// Schema version this record was written with.
    pub v: u32,
    /// The call's persistent name.
    pub key: StateKey,
    /// Side of the caller.
    pub from: SideName,
    /// The carrier-side trunk's name (matched by name on restore: indexes change with the
    /// configuration).
    #[serde(default)]
    pub trunk: Option<String>,
    /// Which of the trunk's servers the carrier leg uses (0 = its target).
    #[serde(default)]
    pub server: usize,
    /// How long the call had existed at the snapshot, in ms.
    pub age_ms: u64,
    /// How long it had been answered, in ms.
    pub answered_ms: u64,
    /// Time left until the maximum call duration ends it, in ms.
    #[serde(default)]
    pub ends_in_ms: Option<u64>,
    /// The inside leg, then the outside leg.
    pub legs: [DialogSnapshot; 2],
    /// The media session's id, if the call has one.
    #[serde(default)]
    pub media_session: Option<u64>,
    /// The media session as the relay reported it; `None` with a session: the relay could not
    /// report it, and the call cannot be restored (it is hung up instead).
    #[serde(default)]
    pub media: Option<MediaSnapshot>,
    /// The call runs SRTP the SBC terminates: keys are not persisted, so it cannot be restored.
    #[serde(default)]
    pub srtp: bool,
    /// Version 2: the called number of the caller's INVITE.
    #[serde(default)]
    pub called: String,
    /// Version 3: the negotiated codecs and DTMF methods (None before version 3, or a call
    /// whose SDP was never answered through the codec policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<super::CodecsSnapshot>,
}

/// One leg's dialog (RFC 3261 §12) as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialogSnapshot {
    /// Where requests on this leg go (for NAT'd peers: their observed address).
    pub peer: SocketAddr,
    /// Transport toward the peer.
    pub transport: TransportName,
    /// The SBC's bound address the leg's messages leave from, if pinned.
    #[serde(default)]
    pub bound: Option<SocketAddr>,
    /// The SBC's address on this leg (Via, Contact).
    pub local: SocketAddr,
    /// The transport of that address.
    pub local_transport: TransportName,
    /// The leg's Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: Option<String>,
    /// Our From (UAC leg) or To (UAS leg), with our tag.
    pub local_hdr: String,
    /// The peer's, with its tag.
    pub remote_hdr: String,
    /// The last CSeq the SBC used on this leg.
    pub local_cseq: u32,
    /// The remote target (the peer's Contact).
    pub remote_target: String,
    /// The route set.
    #[serde(default)]
    pub route_set: Vec<String>,
    /// The `o=` session id the SBC writes on this leg.
    pub sdp_session: u64,
    /// The `o=` version last written.
    pub sdp_version: u64,
    /// (session id, version) of the last SDP received from the other leg.
    #[serde(default)]
    pub sdp_source: Option<(String, u64)>,
    /// The leg's session timer (RFC 4028).
    #[serde(default)]
    pub session_timer: Option<TimerSnapshot>,
}

/// A leg's session timer as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerSnapshot {
    /// The negotiated interval, in s.
    pub interval_s: u64,
    /// The SBC refreshes (else the peer does).
    pub sbc_refreshes: bool,
    /// Time since the last refresh, in ms.
    pub since_refresh_ms: u64,
}

/// [`Side`] as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    /// The PBX side.
    Inside,
    /// The carrier side.
    Outside,
}

/// [`crate::net::TransportKind`] as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// Why a persisted record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not JSON, or a field missing or of the wrong type.
    #[error("malformed call state record: {0}")]
    Malformed(String),
    /// Written by a newer SBC than this one.
    #[error("call state record version {0} is newer than this SBC's {max}", max = CallSnapshot::VERSION)]
    TooNew(u32),
}

impl CallSnapshot {
    /// The schema version written now.
    pub const VERSION: u32 = 3;

    /// The record's bytes (JSON: self-describing, so older records stay readable).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record of this or any older version.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let malformed = |e: serde_json::Error| SnapshotError::Malformed(e.to_string());
        let Version { v } = serde_json::from_slice(bytes).map_err(malformed)?;
        if v > Self::VERSION {
            return Err(SnapshotError::TooNew(v));
        }
        // Versions 1..=VERSION differ only by fields with defaults (see the module docs).
        let mut s: Self = serde_json::from_slice(bytes).map_err(malformed)?;
        s.v = Self::VERSION;
        Ok(s)
    }

    /// The snapshot as it stands `elapsed` later (the time between writing and restoring):
    /// the call is older, deadlines are nearer (a past deadline is due at once).
    #[must_use]
    pub fn aged(mut self, elapsed: Duration) -> Self {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.age_ms = self.age_ms.saturating_add(ms);
        self.answered_ms = self.answered_ms.saturating_add(ms);
        self.ends_in_ms = self.ends_in_ms.map(|e| e.saturating_sub(ms));
        for leg in &mut self.legs {
            if let Some(t) = &mut leg.session_timer {
                t.since_refresh_ms = t.since_refresh_ms.saturating_add(ms);
            }
        }
        self
    }

    /// The leg on `side`.
    pub const fn leg(&self, side: Side) -> &DialogSnapshot {
        &self.legs[side_index(side)]
    }

    /// The change-detection digest: everything but the times relative to `now` (those change
    /// on every look; the instants behind them are hashed by the caller).
    fn digest(&self) -> u64 {
        let mut s = self.clone();
        s.age_ms = 0;
        s.answered_ms = 0;
        s.ends_in_ms = None;
        for leg in &mut s.legs {
            if let Some(t) = &mut leg.session_timer {
                t.since_refresh_ms = 0;
            }
        }
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    }
}

impl From<Side> for SideName {
    fn from(s: Side) -> Self {
        match s {
            Side::Inside => Self::Inside,
            Side::Outside => Self::Outside,
        }
    }
}

impl From<SideName> for Side {
    fn from(s: SideName) -> Self {
        match s {
            SideName::Inside => Self::Inside,
            SideName::Outside => Self::Outside,
        }
    }
}

impl From<crate::net::TransportKind> for TransportName {
    fn from(t: crate::net::TransportKind) -> Self {
        use crate::net::TransportKind as K;
        match t {
            K::Udp => Self::Udp,
            K::Tcp => Self::Tcp,
            K::Tls => Self::Tls,
        }
    }
}

impl From<TransportName> for crate::net::TransportKind {
    fn from(t: TransportName) -> Self {
        match t {
            TransportName::Udp => Self::Udp,
            TransportName::Tcp => Self::Tcp,
            TransportName::Tls => Self::Tls,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The persistent name of `c`.
pub(super) fn key_of(c: &Call) -> StateKey {
    let [i, o] = &c.legs;
    StateKey(format!("{}.{}", i.local_tag(), o.local_tag()))
}

/// Everything `c`'s record is built from, hashed where it lies (no snapshot, no allocation):
/// the call's and its legs' fields, and the relay's version of its media session. `None` when
/// the relay keeps no versions (the record is then built and compared every time).
fn fingerprint(c: &Call, media: &MediaTable) -> Option<u64> {
    let media_version = match c.media {
        Some(s) => Some(media.state_version(s)?),
        None => None,
    };
    let mut h = DefaultHasher::new();
    media_version.hash(&mut h);
    std::mem::discriminant(&c.state).hash(&mut h);
    std::mem::discriminant(&c.origin).hash(&mut h);
    c.trunk.map(|t| t.index()).hash(&mut h);
    c.server.hash(&mut h);
    c.started.hash(&mut h);
    c.answered_at.hash(&mut h);
    c.ends_at.hash(&mut h);
    c.media.map(|s| s.0).hash(&mut h);
    c.srtp.keyed().hash(&mut h);
    c.facts.called().hash(&mut h);
    for l in &c.legs {
        l.peer.hash(&mut h);
        l.local.addr.hash(&mut h);
        l.local.transport.hash(&mut h);
        l.call_id.hash(&mut h);
        l.local_tag().hash(&mut h);
        l.remote_tag().hash(&mut h);
        l.local_hdr.hash(&mut h);
        l.remote_hdr.hash(&mut h);
        l.local_cseq.hash(&mut h);
        l.remote_target.hash(&mut h);
        l.route_set.hash(&mut h);
        l.origin.hash(&mut h);
        l.session
            .map(|t| {
                (
                    t.interval,
                    t.refresher == session_timer::Refresher::Sbc,
                    t.last,
                )
            })
            .hash(&mut h);
    }
    Some(h.finish())
}

fn dialog(l: &Leg, now: Instant) -> DialogSnapshot {
    let (sdp_session, sdp_version, sdp_source) = l.origin.parts();
    DialogSnapshot {
        peer: l.peer.addr,
        transport: l.peer.transport.into(),
        bound: l.peer.local,
        local: l.local.addr,
        local_transport: l.local.transport.into(),
        call_id: l.call_id.clone(),
        local_tag: l.local_tag().to_owned(),
        remote_tag: l.remote_tag().map(str::to_owned),
        local_hdr: l.local_hdr.clone(),
        remote_hdr: l.remote_hdr.clone(),
        local_cseq: l.local_cseq,
        remote_target: l.remote_target.clone(),
        route_set: l.route_set.clone(),
        sdp_session,
        sdp_version,
        sdp_source,
        session_timer: l.session.map(|t| TimerSnapshot {
            interval_s: t.interval.as_secs(),
            sbc_refreshes: t.refresher == session_timer::Refresher::Sbc,
            since_refresh_ms: ms(now.saturating_duration_since(t.last)),
        }),
    }
}

impl B2bua {
    /// Notes that a message or timer concerned `call`: its snapshot is compared (and reported
    /// when changed) once the B2BUA is done with the input.
    pub(super) fn touch(&mut self, call: CallId) {
        if self.report_state && !self.touched.contains(&call) {
            self.touched.push(call);
        }
    }

    /// The snapshot of `call` at `now`; `None` before the answer.
    fn snapshot_of(&self, call: CallId, now: Instant, media: &MediaTable) -> Option<CallSnapshot> {
        let c = self.calls.get(&call)?;
        if c.state != CallState::Confirmed {
            return None;
        }
        Some(CallSnapshot {
            v: CallSnapshot::VERSION,
            key: key_of(c),
            from: c.origin.into(),
            trunk: c
                .trunk
                .and_then(|t| self.cfg.trunks.get(t.index()))
                .map(|t| t.name.clone()),
            server: c.server,
            age_ms: ms(now.saturating_duration_since(c.started)),
            answered_ms: ms(c
                .answered_at
                .map_or(Duration::ZERO, |a| now.saturating_duration_since(a))),
            ends_in_ms: c.ends_at.map(|e| ms(e.saturating_duration_since(now))),
            legs: [
                dialog(c.leg(Side::Inside), now),
                dialog(c.leg(Side::Outside), now),
            ],
            media_session: c.media.map(|s| s.0),
            media: c.media.and_then(|s| media.snapshot(s)),
            srtp: c.srtp.keyed(),
            called: c.facts.called().to_owned(),
            codecs: c.codecs.snapshot(),
        })
    }

    /// The digest of `call`'s state: its snapshot's and the instants behind its times.
    fn state_digest(&self, call: CallId, snap: &CallSnapshot) -> u64 {
        let mut h = DefaultHasher::new();
        snap.digest().hash(&mut h);
        if let Some(c) = self.calls.get(&call) {
            c.ends_at.hash(&mut h);
            for l in &c.legs {
                l.session.map(|t| t.last).hash(&mut h);
            }
        }
        h.finish()
    }

    /// Turns the reporting of call state (`Event::CallState`/`CallStateEnded`) on or off; off
    /// by default, on when the runtime has a store for it (`[state]`).
    pub fn report_call_state(&mut self, on: bool) {
        self.report_state = on;
        if !on {
            self.touched.clear();
        }
    }

    /// Reports the snapshot of every touched call whose state changed. A call whose
    /// fingerprint is what it was when its record was last built is not dirty: no snapshot
    /// is built for it (most messages of a call — provisional answers, answers to relayed
    /// requests, retransmitted timers — change nothing the record holds).
    pub(super) fn flush_state(&mut self, now: Instant, media: &MediaTable) {
        for call in std::mem::take(&mut self.touched) {
            let Some(fp) = self.calls.get(&call).map(|c| fingerprint(c, media)) else {
                continue;
            };
            if fp.is_some() && self.calls.get(&call).is_some_and(|c| c.state_fp == fp) {
                continue;
            }
            let Some(snap) = self.snapshot_of(call, now, media) else {
                continue;
            };
            let digest = self.state_digest(call, &snap);
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            c.state_fp = fp;
            if c.persisted != Some(digest) {
                c.persisted = Some(digest);
                self.events.push_back(Event::CallState(Box::new(snap)));
            }
        }
    }

    /// The snapshots of every answered call at `now` (a full resync after the store was lost).
    pub fn snapshots(&self, now: Instant, media: &MediaTable) -> Vec<CallSnapshot> {
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.snapshot_of(id, now, media))
            .collect()
    }

    /// Reports that a call whose state was reported is over (from `finish_call`).
    pub(super) fn state_ended(&mut self, c: &Call) {
        if c.persisted.is_some() {
            self.events
                .push_back(Event::CallStateEnded { key: key_of(c) });
        }
    }
}
