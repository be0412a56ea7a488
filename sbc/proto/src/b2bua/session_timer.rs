//! Session timers (RFC 4028), negotiated and run on each leg on its own.
//!
//! The SBC is the UAS of the caller's leg and the UAC of the callee's leg; each leg gets its own
//! interval and refresher from its own INVITE/2xx exchange, so a carrier that insists on
//! refreshing every 90 s and a PBX that knows nothing of session timers can both be served:
//! - caller leg (SBC = UAS, §9): a `Session-Expires` below the SBC's `Min-SE` gets 422 with
//!   `Min-SE`; otherwise the interval is the caller's, lowered to the SBC's own when larger
//!   (never below either Min-SE); the refresher is the caller's choice, else the caller when it
//!   supports `timer`, else the SBC;
//! - callee leg (SBC = UAC, §7): the INVITE asks for the SBC's interval with `Supported: timer`;
//!   the 2xx's `Session-Expires` (refresher as it says, `uac` when absent) sets the leg's timer;
//!   no `Session-Expires` in the 2xx means no session timer on that leg (§7.4).
//!
//! Where the SBC is the refresher it sends a body-less UPDATE at half the interval (§10); where
//! the peer is, any INVITE or UPDATE on that leg answered 2xx counts as a refresh. A leg that
//! sees no refresh by `expiry − min(32 s, interval/3)` (§10) ends the call: BYE on both legs.
//! Everything is computed from the `now` passed in; nothing here reads a clock.

use std::time::{Duration, Instant};

use super::{
    B2bua, CallState, EndReason, Outgoing, Purpose, STx, ServerEntry, ServerKey, TimerRef,
    call::CallId,
    extensions, first_contact,
    msg::{self, RequestSpec, ResponseSpec},
};
use crate::{
    media::MediaTable,
    net::{Peer, Side},
    sip::{Message, Method, StatusCode},
    text::{Text, concat},
    transaction::NonInviteServer,
};

/// RFC 4028 §4: the smallest Min-SE there is.
pub const MIN_SE_FLOOR: Duration = Duration::from_secs(90);

/// Session timer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// Session timers on (offered, negotiated, refreshed and supervised); off, the SBC neither
    /// supports `timer` (a `Require: timer` gets 420) nor supervises sessions.
    pub enabled: bool,
    /// The interval the SBC asks for on the legs it starts, and the longest it grants.
    pub session_expires: Duration,
    /// The shortest interval the SBC accepts (its `Min-SE`; at least 90 s).
    pub min_se: Duration,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_expires: Duration::from_secs(1800),
            min_se: MIN_SE_FLOOR,
        }
    }
}

/// Who refreshes a leg's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    /// The SBC sends the refreshes on this leg.
    Sbc,
    /// The peer on this leg does; the SBC only supervises.
    Peer,
}

/// One leg's running session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LegTimer {
    /// The negotiated session interval.
    pub interval: Duration,
    /// Who refreshes.
    pub refresher: Refresher,
    /// The last successful refresh (or the 2xx that set the timer).
    pub last: Instant,
    /// A refresh of ours is outstanding (not sent again meanwhile).
    pub refreshing: bool,
}

impl LegTimer {
    /// When the SBC sends its next refresh (refresher only): half the interval (§10).
    pub fn refresh_at(&self) -> Option<Instant> {
        (self.refresher == Refresher::Sbc && !self.refreshing)
            .then(|| self.last + self.interval / 2)
    }

    /// When the session counts as expired on this leg (§10: the interval less
    /// min(32 s, interval/3), so a refresh in flight has time to arrive).
    pub fn expires_at(&self) -> Instant {
        let guard = Duration::from_secs(32).min(self.interval / 3);
        self.last + self.interval.saturating_sub(guard)
    }

    /// The earliest instant this leg needs attention.
    pub fn next(&self) -> Instant {
        self.refresh_at()
            .map_or(self.expires_at(), |r| r.min(self.expires_at()))
    }

    /// `Session-Expires` value for a request the SBC sends on this leg: the SBC is the UAC of
    /// that transaction, so refresher `uac` means the SBC.
    pub fn request_value(&self) -> String {
        let who = match self.refresher {
            Refresher::Sbc => "uac",
            Refresher::Peer => "uas",
        };
        concat(&[&Text::decimal(self.interval.as_secs()), ";refresher=", who])
    }
}

impl SessionTimerConfig {
    /// The shortest interval accepted, never below the RFC's 90 s.
    fn floor(&self) -> Duration {
        self.min_se.max(MIN_SE_FLOOR)
    }

    /// The `Min-SE` to answer 422 with when the request's `Session-Expires` is below what the
    /// SBC accepts (§5, §9); None when the request may go on. Session timers off: never.
    pub(super) fn too_brief(&self, req: &Message) -> Option<u32> {
        if !self.enabled {
            return None;
        }
        let se = req.headers().session_expires().ok().flatten()?;
        let floor = self.floor().as_secs();
        (u64::from(se.seconds) < floor).then(|| u32::try_from(floor).unwrap_or(u32::MAX))
    }

    /// Headers of an INVITE or UPDATE the SBC sends on a leg (§7.1): what it asks for there.
    /// `current` is the leg's running timer, kept as it is when there is one.
    pub(super) fn request_headers(
        &self,
        current: Option<&LegTimer>,
    ) -> Vec<(&'static str, String)> {
        if !self.enabled {
            return Vec::new();
        }
        let se = current.map_or_else(
            || {
                Text::decimal(self.session_expires.max(self.floor()).as_secs())
                    .as_str()
                    .to_owned()
            },
            LegTimer::request_value,
        );
        vec![
            ("Session-Expires", se),
            (
                "Min-SE",
                Text::decimal(self.floor().as_secs()).as_str().to_owned(),
            ),
        ]
    }

    /// The SBC as UAS answers `req` (an INVITE or UPDATE, initial or refresh) with a 2xx on a
    /// leg (§9): the leg's timer from now, and the headers for the 2xx. None: no session timer
    /// on that leg (timers off).
    pub(super) fn answer(
        &self,
        now: Instant,
        req: &Message,
    ) -> Option<(LegTimer, Vec<(&'static str, String)>)> {
        if !self.enabled {
            return None;
        }
        let se = req.headers().session_expires().ok().flatten();
        let peer_min = req
            .headers()
            .min_se()
            .ok()
            .flatten()
            .map_or(Duration::ZERO, |s| Duration::from_secs(s.into()));
        let lowest = self.floor().max(peer_min);
        let asked = se.map_or(self.session_expires, |s| {
            Duration::from_secs(s.seconds.into())
        });
        let interval = asked.min(self.session_expires).max(lowest);
        let peer_timer = extensions::offers(req, "timer");
        // §9: the caller's choice stands; without one, a caller that supports timers refreshes.
        let refresher = match se.and_then(|s| s.refresher()) {
            Some(r) if r.eq_ignore_ascii_case("uac") => Refresher::Peer,
            Some(r) if r.eq_ignore_ascii_case("uas") => Refresher::Sbc,
            _ if peer_timer => Refresher::Peer,
            _ => Refresher::Sbc,
        };
        let who = match refresher {
            Refresher::Peer => "uac",
            Refresher::Sbc => "uas",
        };
        let mut headers = vec![(
            "Session-Expires",
            concat(&[&Text::decimal(interval.as_secs()), ";refresher=", who]),
        )];
        if peer_timer {
            // §9: Require: timer only toward a peer that supports it.
            headers.push(("Require", "timer".to_owned()));
        }
        let timer = LegTimer {
            interval,
            refresher,
            last: now,
            refreshing: false,
        };
        Some((timer, headers))
    }

    /// The SBC as UAC got a 2xx to an INVITE or UPDATE it sent on a leg (§7.4): the leg's timer
    /// from now, or None when the 2xx has no `Session-Expires` (no timer on that leg).
    pub(super) fn answered(&self, now: Instant, resp: &Message) -> Option<LegTimer> {
        if !self.enabled {
            return None;
        }
        let se = resp.headers().session_expires().ok().flatten()?;
        let refresher = match se.refresher() {
            Some(r) if r.eq_ignore_ascii_case("uas") => Refresher::Peer,
            _ => Refresher::Sbc,
        };
        Some(LegTimer {
            interval: Duration::from_secs(se.seconds.into()).max(MIN_SE_FLOOR),
            refresher,
            last: now,
            refreshing: false,
        })
    }
}

/// A leg's session expired and the call was ended.
#[derive(Debug)]
pub(super) struct Expired;

impl B2bua {
    /// Sets (or clears) the session timer of `side` on `call` and wakes the call for it.
    pub(super) fn set_leg_timer(&mut self, call: CallId, side: Side, timer: Option<LegTimer>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.leg_mut(side).session = timer;
        if let Some(t) = timer {
            self.timers.set_earliest(TimerRef::Call(call), t.next());
        }
    }

    /// The session timer duty of `call` at `now`: a leg past its expiry ends the call (BYE on
    /// both legs), a refresh due on a leg the SBC refreshes is sent. Returns when the call
    /// needs attention next for its session timers.
    pub(super) fn session_timers(
        &mut self,
        now: Instant,
        call: CallId,
        media: &mut MediaTable,
    ) -> Result<Option<Instant>, Expired> {
        let Some(c) = self.calls.get(&call) else {
            return Ok(None);
        };
        if c.state != CallState::Confirmed {
            return Ok(None);
        }
        let legs = [Side::Inside, Side::Outside].map(|s| (s, c.leg(s).session));
        if legs
            .iter()
            .any(|(_, t)| t.is_some_and(|t| t.expires_at() <= now))
        {
            self.terminate(now, call, EndReason::SessionExpired, media);
            return Err(Expired);
        }
        for (side, t) in legs {
            if t.and_then(|t| t.refresh_at()).is_some_and(|at| at <= now) {
                self.send_refresh(now, call, side, media);
            }
        }
        let Some(c) = self.calls.get(&call) else {
            return Ok(None);
        };
        Ok([Side::Inside, Side::Outside]
            .iter()
            .filter_map(|s| c.leg(*s).session.map(|t| t.next()))
            .min())
    }

    /// Refreshes the session on `side` (the SBC is its refresher): a body-less UPDATE (RFC
    /// 4028 §7.4 recommends UPDATE: no offer/answer, so no media change), keeping the SBC the
    /// refresher.
    fn send_refresh(&mut self, now: Instant, call: CallId, side: Side, media: &mut MediaTable) {
        let branch = self.rng.branch();
        let st = self.cfg.session_timer;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        let Some(t) = leg.session.as_mut() else {
            return;
        };
        t.refreshing = true;
        let headers = st.request_headers(Some(t));
        let supported = extensions::supported_value(st.enabled);
        let mut extra: Vec<(&str, &str)> = vec![("Supported", supported.as_str())];
        extra.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
        leg.local_cseq += 1;
        let update = msg::request(
            &RequestSpec {
                contact: true,
                extra: &extra,
                ..leg.request(
                    &Method::Update,
                    local,
                    &branch,
                    leg.local_cseq,
                    &self.cfg.user_agent,
                )
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        self.send_client(
            now,
            Outgoing {
                bytes: update,
                peer,
                call: Some(call),
                side,
                purpose: Purpose::Own,
            },
            media,
        );
    }

    /// The answer to one of the SBC's refreshes on `side`: 2xx restarts the leg's interval
    /// (as the 2xx states it); 408/481 end the session (§10); any other refusal (a peer that
    /// takes no UPDATE) stops supervising that leg rather than end a working call.
    pub(super) fn refresh_answered(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        status: u16,
        resp: &Message,
        media: &mut MediaTable,
    ) {
        if status < 200 {
            return;
        }
        let Some(old) = self.calls.get(&call).and_then(|c| c.leg(side).session) else {
            return;
        };
        match status {
            200..=299 => {
                let renewed = LegTimer {
                    last: now,
                    refreshing: false,
                    ..old
                };
                let t = self
                    .cfg
                    .session_timer
                    .answered(now, resp)
                    .unwrap_or(renewed);
                self.set_leg_timer(call, side, Some(t));
            }
            408 | 481 => self.terminate(now, call, EndReason::SessionExpired, media),
            _ => self.set_leg_timer(call, side, None),
        }
    }

    /// Answers a body-less UPDATE from a peer on its own leg: a session refresh (and maybe a
    /// target refresh) that concerns only that leg, so it is not relayed (the other leg keeps
    /// its own timer and may not even take UPDATE).
    pub(super) fn answer_refresh(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        call: CallId,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let leg = c.leg_mut(peer.side);
        if let Some(ct) = first_contact(&msg) {
            leg.remote_target = ct;
        }
        leg.peer.addr = peer.addr;
        leg.peer.conn = peer.conn;
        let local = leg.local;
        let confirmed = c.state == CallState::Confirmed;
        let (own, timer) = self.answer_extensions(now, &msg, 200, &msg);
        let extra: Vec<(&str, &str)> = own.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = msg::response(
            &msg,
            &ResponseSpec {
                status: StatusCode::OK.as_u16(),
                reason: StatusCode::OK.standard_phrase(),
                to_tag: None,
                contact: Some(local),
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &extra,
            },
            None,
            &[],
            &mut self.buf,
        );
        let mut t = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        t.send_response(now, StatusCode::OK.as_u16(), resp);
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::NonInvite(t),
            peer,
            request: super::KeptRequest::new(msg),
            call: Some(call),
            to_tag: None,
            relay: None,
            merged: None,
        });
        self.after_server(key);
        if confirmed && timer.is_some() {
            self.set_leg_timer(call, peer.side, timer);
        }
    }
}

impl B2bua {
    /// The SBC's own extension headers on a response it sends for `request` (relayed or
    /// answered): `Supported` and the leg's session timer on a 2xx to INVITE/UPDATE (with the
    /// timer the leg gets from it), `Min-SE` on a 422 (mandatory, RFC 4028 §6: the larger of
    /// the callee's and the SBC's own).
    pub(super) fn answer_extensions(
        &self,
        now: Instant,
        request: &Message,
        status: u16,
        resp: &Message,
    ) -> (Vec<(&'static str, String)>, Option<LegTimer>) {
        let st = &self.cfg.session_timer;
        let mut out = Vec::new();
        let mut timer = None;
        let session = matches!(request.method(), Some(Method::Invite | Method::Update));
        if (200..300).contains(&status) && session {
            out.push(("Supported", extensions::supported_value(st.enabled)));
            if let Some((t, headers)) = st.answer(now, request) {
                out.extend(headers);
                timer = Some(t);
            }
        }
        if status == 422 {
            let theirs = resp.headers().min_se().ok().flatten().unwrap_or(0);
            let ours = st.min_se.as_secs();
            out.push(("Min-SE", u64::from(theirs).max(ours).to_string()));
        }
        (out, timer)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx\r\n\
             From: <sip:b@192.0.2.2>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("valid test message")
    }

    fn cfg() -> SessionTimerConfig {
        SessionTimerConfig {
            enabled: true,
            session_expires: Duration::from_secs(600),
            min_se: Duration::from_secs(120),
        }
    }

    #[test]
    fn below_min_se_is_too_brief_and_off_never_is() {
        assert_eq!(
            cfg().too_brief(&invite("Session-Expires: 100\r\n")),
            Some(120)
        );
        assert_eq!(cfg().too_brief(&invite("Session-Expires: 120\r\n")), None);
        assert_eq!(cfg().too_brief(&invite("")), None);
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        assert_eq!(off.too_brief(&invite("Session-Expires: 30\r\n")), None);
    }
}
