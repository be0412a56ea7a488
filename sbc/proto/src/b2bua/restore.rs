//! Restoring an answered call from its [`CallSnapshot`] after a restart (issue 19): the call
//! gets a new handle, both dialogs are indexed again so in-dialog requests and responses from
//! either side find it, its media session is re-installed through [`MediaTable::restore`],
//! and its call timer (max duration, session timers) is armed.
//!
//! A call that cannot be restored (SRTP keys are not persisted, the relay cannot re-install
//! the media, a record from a broken store) is hung up instead: [`B2bua::hang_up`] restores
//! only its dialogs and ends it with BYE on both legs, so neither the PBX nor the carrier keeps
//! (and bills) a call the SBC forgot.

use std::time::{Duration, Instant};

use super::*;
use codec_policy::CallCodecs;
use snapshot::{CallSnapshot, DialogSnapshot, key_of};

use crate::media::MediaError;

/// How far a restored leg's CSeq jumps ahead of its record. Records are written
/// asynchronously, so the process may have sent requests after the last one that reached the
/// store; the peer refuses a CSeq at or below one it saw (RFC 3261 §12.2.2: 500), never a
/// higher one.
pub(super) const CSEQ_GAP: u32 = 100;

/// Why a snapshot was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// One of its dialogs is already in this B2BUA (restored twice, or a live call).
    #[error("dialog {0} already exists")]
    DialogInUse(String),
    /// A field no message may carry (line breaks in a header value, an empty Call-ID or tag).
    #[error("invalid field in call state: {0}")]
    Invalid(&'static str),
    /// The call runs SRTP terminated by the SBC; its keys are not persisted.
    #[error("SRTP calls are not restorable")]
    Srtp,
    /// The call has a media session the relay did not describe.
    #[error("media session not recorded")]
    MediaMissing,
    /// The relay refused to re-install the media session.
    #[error("media not restored: {0}")]
    Media(#[from] MediaError),
    /// The relay refused the call's payload-type rewrites or DTMF terminations.
    #[error("payload-type rewrites or DTMF terminations not restored")]
    RelayPolicy,
}

/// A text field that goes into SIP messages as it is: no line breaks (no header injection).
fn clean(s: &str, field: &'static str) -> Result<(), RestoreError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(RestoreError::Invalid(field))
    } else {
        Ok(())
    }
}

fn check(d: &DialogSnapshot) -> Result<(), RestoreError> {
    if d.call_id.is_empty() || d.local_tag.is_empty() || d.remote_target.is_empty() {
        return Err(RestoreError::Invalid(
            "call_id, local_tag or remote_target empty",
        ));
    }
    clean(&d.call_id, "call_id")?;
    clean(&d.local_tag, "local_tag")?;
    clean(d.remote_tag.as_deref().unwrap_or(""), "remote_tag")?;
    clean(&d.local_hdr, "local_hdr")?;
    clean(&d.remote_hdr, "remote_hdr")?;
    clean(&d.remote_target, "remote_target")?;
    for r in &d.route_set {
        clean(r, "route_set")?;
    }
    Ok(())
}

/// `now` less `ms`, or `now` when the clock does not reach that far back (just booted).
fn before(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

fn leg(d: &DialogSnapshot, side: Side, now: Instant) -> Leg {
    let mut leg = Leg {
        peer: Peer {
            side,
            transport: d.transport.into(),
            addr: d.peer,
            // Stream connections did not survive the restart: a request goes out on a new one.
            conn: None,
            local: d.bound,
        },
        local: LocalAddr {
            addr: d.local,
            transport: d.local_transport.into(),
        },
        call_id: d.call_id.clone(),
        local_tag: super::call::TagAt::UNSET,
        remote_tag: None,
        local_hdr: String::new(),
        remote_hdr: String::new(),
        local_cseq: d.local_cseq.saturating_add(CSEQ_GAP),
        remote_target: d.remote_target.clone(),
        route_set: d.route_set.clone(),
        origin: sdp::Origin::from_parts(d.sdp_session, d.sdp_version, d.sdp_source.clone()),
        invite_out: None,
        session: d.session_timer.map(|t| session_timer::LegTimer {
            interval: Duration::from_secs(t.interval_s),
            refresher: if t.sbc_refreshes {
                session_timer::Refresher::Sbc
            } else {
                session_timer::Refresher::Peer
            },
            last: before(now, t.since_refresh_ms),
            refreshing: false,
        }),
    };
    leg.set_local(d.local_hdr.clone(), &d.local_tag);
    leg.set_remote(d.remote_hdr.clone(), d.remote_tag.as_deref());
    leg
}

impl B2bua {
    /// Restores an answered call from `snap` (aged to `now` by the caller, see
    /// [`CallSnapshot::aged`]). Returns the call's new handle. Nothing is sent.
    pub fn restore(
        &mut self,
        now: Instant,
        snap: &CallSnapshot,
        media: &mut MediaTable,
    ) -> Result<u64, RestoreError> {
        self.check_restorable(snap)?;
        if snap.srtp {
            return Err(RestoreError::Srtp);
        }
        let session = match (&snap.media_session, &snap.media) {
            (None, _) => None,
            (Some(_), None) => return Err(RestoreError::MediaMissing),
            (Some(_), Some(m)) => Some(media.restore(now, m)?),
        };
        // Before schema v3 not in the record: such a call relays payload types unmapped and
        // takes its DTMF methods from the configuration until its next offer.
        let codecs = snap
            .codecs
            .as_ref()
            .map(CallCodecs::restored)
            .unwrap_or_default();
        // The relay's session comes back without the call's payload-type rewrites and DTMF
        // terminations: hand them over again.
        if super::codec_policy::relay_maps(now, &codecs, media, session).is_err() {
            if let Some(s) = session {
                media.release(s);
            }
            return Err(RestoreError::RelayPolicy);
        }
        Ok(self.install(now, snap, session, codecs).raw())
    }

    /// Ends the call of a snapshot that [`B2bua::restore`] refused: its dialogs are restored
    /// without media and get BYE on both legs. False when even its dialogs are unusable.
    pub fn hang_up(&mut self, now: Instant, snap: &CallSnapshot, media: &mut MediaTable) -> bool {
        if self.check_restorable(snap).is_err() {
            return false;
        }
        let call = self.install(now, snap, None, CallCodecs::default());
        self.terminate(now, call, EndReason::Bye, media);
        true
    }

    fn check_restorable(&self, snap: &CallSnapshot) -> Result<(), RestoreError> {
        for d in &snap.legs {
            check(d)?;
            if self
                .dialogs
                .get(&d.call_id, &d.local_tag, &self.calls)
                .is_some()
            {
                return Err(RestoreError::DialogInUse(d.call_id.clone()));
            }
        }
        Ok(())
    }

    /// Puts a checked snapshot's call into the tables.
    fn install(
        &mut self,
        now: Instant,
        snap: &CallSnapshot,
        session: Option<SessionId>,
        codecs: CallCodecs,
    ) -> CallId {
        let id = self.next_call;
        self.next_call = id.next();
        let trunk = snap
            .trunk
            .as_deref()
            .and_then(|n| self.cfg.trunks.iter().position(|t| t.name == n))
            .map(TrunkId::new);
        let legs = [
            leg(snap.leg(Side::Inside), Side::Inside, now),
            leg(snap.leg(Side::Outside), Side::Outside, now),
        ];
        let mut call = Call {
            origin: snap.from.into(),
            started: before(now, snap.age_ms),
            answered_at: Some(before(now, snap.answered_ms)),
            legs,
            state: CallState::Confirmed,
            media: session,
            // The INVITE transactions ended with the previous process.
            initial_server: None,
            initial_client: None,
            provisional_seen: true,
            cancel_pending: false,
            canceled: false,
            pending_2xx: None,
            caller_100rel: false,
            next_rseq: 1,
            pending_rel: None,
            rseq_map: Vec::new(),
            last_callee_rseq: None,
            acks: [None, None],
            ends_at: snap.ends_in_ms.map(|ms| now + Duration::from_millis(ms)),
            trunk,
            next_trunks: Vec::new(),
            server: if trunk.is_some() { snap.server } else { 0 },
            offer: None,
            relays: Vec::new(),
            redirects: redirect::Tried::default(),
            forks: fork::Forks::default(),
            srtp: srtp_policy::CallSrtp::default(),
            codecs,
            offers: super::offers::Offers::default(),
            facts: record::Facts::restored(snap.called.clone(), session),
            persisted: None,
            state_fp: None,
        };
        debug_assert_eq!(key_of(&call), snap.key, "the key is derived from the tags");
        self.count_call(trunk);
        for side in [Side::Inside, Side::Outside] {
            let l = call.leg(side);
            self.dialogs.insert(&l.call_id, l.local_tag(), id, side);
        }
        if let Some(s) = session {
            self.sessions.insert(s, id);
        }
        // The call timer recomputes max duration and session timers when it fires.
        let next = call
            .legs
            .iter()
            .filter_map(|l| l.session.map(|t| t.next()))
            .chain(call.ends_at)
            .min();
        // Written already: the first change after the restore is reported again.
        call.persisted = Some(0);
        self.calls.insert(id, Box::new(call));
        if let Some(at) = next {
            self.timers.set_earliest(TimerRef::Call(id), at);
        }
        self.account_call(id);
        id
    }
}
