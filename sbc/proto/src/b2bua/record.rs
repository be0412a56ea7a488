//! Call detail facts: what a call detail record (CDR) needs from the B2BUA, reported once per
//! call attempt as [`Event::CallRecord`] — when an admitted call is forgotten (answered or not),
//! and when a new INVITE is refused before a call exists (no route, admission).
//!
//! The B2BUA has no clock: times are the `Instant`s it was given; the driver turns them into
//! wall-clock time. Numbers are the user parts as each leg saw them, so the outside leg shows
//! them after the trunk's normalisation rules (`routing.rs`).

use std::time::Instant;

use super::{B2bua, Call, CallId, EndReason, Event, side_index};
use crate::{
    media::SessionId,
    net::Side,
    sip::{Message, NameAddr, Uri},
};

/// Who ended a call attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hangup {
    /// The caller: a BYE or CANCEL from its side.
    Caller,
    /// The callee: a BYE, or a final non-2xx answer to the INVITE.
    Callee,
    /// The SBC itself: a refusal, a timeout, the admin API, a limit.
    Sbc,
}

impl Hangup {
    /// Label for records and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Hangup::Caller => "caller",
            Hangup::Callee => "callee",
            Hangup::Sbc => "sbc",
        }
    }
}

/// One leg of a [`CallRecord`] as that leg saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// The leg's Call-ID.
    pub call_id: String,
    /// The calling number (user part of From).
    pub calling: String,
    /// The called number (user part of the INVITE's Request-URI on this leg).
    pub called: String,
}

/// Everything the B2BUA knows about one finished call attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call handle; `None` for an INVITE refused before a call existed.
    pub call: Option<u64>,
    /// Side of the caller.
    pub from: Side,
    /// The carrier-side trunk (index in the configuration's trunk list), if any.
    pub trunk: Option<usize>,
    /// When the INVITE arrived (`None`: refused at once, "now").
    pub started: Option<Instant>,
    /// When the call was answered.
    pub answered_at: Option<Instant>,
    /// The final status the caller got for its INVITE (200 once answered).
    pub status: u16,
    /// Why the attempt ended.
    pub reason: EndReason,
    /// Who ended it.
    pub hangup: Hangup,
    /// The media session the call had (already released: its last statistics are the
    /// driver's to look up).
    pub media: Option<SessionId>,
    /// The inside leg, then the outside leg (`None` for a leg never set up).
    pub legs: [Option<LegRecord>; 2],
}

/// What a call remembers for its record beyond its dialogs.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// The called number of the caller's INVITE (its Request-URI user).
    called_in: String,
    /// The media session set up with the call (`Call::media` is taken when it is released).
    media: Option<SessionId>,
    /// The side whose BYE, CANCEL or final answer ended the call first.
    ended_by: Option<Side>,
}

impl Facts {
    /// The facts of a call restored after a restart (`restore.rs`).
    pub(super) fn restored(called_in: String, session: Option<SessionId>) -> Self {
        Self {
            called_in,
            media: session,
            ended_by: None,
        }
    }

    /// The called number of the caller's INVITE.
    pub(super) fn called(&self) -> &str {
        &self.called_in
    }

    /// The facts of a call created by `invite` with media `session`.
    pub(super) fn new(invite: &Message, session: Option<SessionId>) -> Self {
        Self {
            called_in: ruri_user(invite),
            media: session,
            ended_by: None,
        }
    }
}

impl B2bua {
    /// Notes that `side` ended `call` (its BYE, CANCEL or final answer); the first one counts.
    pub(super) fn note_hangup(&mut self, call: CallId, side: Side) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.facts.ended_by.get_or_insert(side);
        }
    }

    /// Reports a call being forgotten (called by `finish_call` while the call still exists).
    pub(super) fn record_call(&mut self, call: CallId, reason: EndReason) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let record = call_record(call.raw(), c, reason);
        self.events.push_back(Event::CallRecord(Box::new(record)));
    }

    /// Reports a new INVITE refused with `status` before a call was set up.
    pub(super) fn record_refusal(&mut self, invite: &Message, from: Side, status: u16) {
        let leg = LegRecord {
            call_id: invite.call_id().to_owned(),
            calling: uri_user(&invite.from().uri),
            called: ruri_user(invite),
        };
        let mut legs = [None, None];
        legs[side_index(from)] = Some(leg);
        self.events
            .push_back(Event::CallRecord(Box::new(CallRecord {
                call: None,
                from,
                trunk: None,
                started: None,
                answered_at: None,
                status,
                reason: EndReason::Rejected(status),
                hangup: Hangup::Sbc,
                media: None,
                legs,
            })));
    }
}

fn call_record(id: u64, c: &Call, reason: EndReason) -> CallRecord {
    let answered = c.answered_at.is_some();
    let status = match reason {
        _ if answered => 200,
        EndReason::Rejected(s) => s,
        EndReason::Cancelled => 487,
        EndReason::Timeout => 408,
        EndReason::TransportError => 503,
        // Ends before an answer for any other reason: the SBC answered 487 (`terminate`).
        _ => 487,
    };
    let hangup = match c.facts.ended_by {
        Some(side) if side == c.origin => Hangup::Caller,
        Some(_) => Hangup::Callee,
        None => Hangup::Sbc,
    };
    let legs = [Side::Inside, Side::Outside].map(|side| {
        let leg = c.leg(side);
        // The caller's leg: its From, and the Request-URI it sent. The callee's: our From and
        // To, which carry the numbers after the trunk's rules (`build_invite`).
        let (calling, called) = if side == c.origin {
            (hdr_user(&leg.remote_hdr), c.facts.called_in.clone())
        } else {
            (hdr_user(&leg.local_hdr), hdr_user(&leg.remote_hdr))
        };
        Some(LegRecord {
            call_id: leg.call_id.clone(),
            calling,
            called,
        })
    });
    CallRecord {
        call: Some(id),
        from: c.origin,
        trunk: c.trunk.map(super::TrunkId::index),
        started: Some(c.started),
        answered_at: c.answered_at,
        status,
        reason,
        hangup,
        media: c.facts.media,
        legs,
    }
}

fn uri_user(uri: &Uri<'_>) -> String {
    match uri {
        Uri::Sip(s) => s.user.unwrap_or_default().to_owned(),
        Uri::Tel(t) => t.raw.trim_start_matches("tel:").to_owned(),
        Uri::Other(_) => String::new(),
    }
}

fn ruri_user(msg: &Message) -> String {
    msg.request_uri()
        .map(|u| uri_user(&u))
        .unwrap_or_else(|| uri_user(&msg.to().uri))
}

/// The user part of a From/To value the B2BUA built or accepted (empty if it has none).
fn hdr_user(value: &str) -> String {
    NameAddr::parse(value)
        .map(|n| uri_user(&n.uri))
        .unwrap_or_default()
}
