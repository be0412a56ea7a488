//! DTMF interworking per side (`dtmf = "rfc4733" | "info" | "inband-passthrough"`): the
//! B2BUA's half of converting between SIP INFO and RFC 4733 telephone-events.
//!
//! - INFO (`application/dtmf-relay` or `application/dtmf`) from a side configured `info`,
//!   toward a side configured `rfc4733`: the SBC answers the INFO 200 itself (it is not
//!   relayed) and emits [`Event::GenerateDtmf`], the media command for the relay to send the
//!   digit as telephone-events on the other leg (with the payload type that leg negotiated;
//!   the offer/answer step adds `telephone-event` toward it when the `info` side offered none) (`dtmf::schedule`: timestamps, volume,
//!   duration, three end packets).
//! - A digit the relay detected in the telephone-events of a side configured `rfc4733`
//!   (`dtmf::Detector`), toward a side configured `info`: [`B2bua::dtmf_detected`] sends it
//!   as an INFO `application/dtmf-relay` on the other leg (the SBC's own request).
//! - Otherwise DTMF crosses as it came: INFO relayed, telephone-events relayed with the
//!   payload-type mapping of `codec_policy.rs`, in-band tones inside the audio.
//!
//! Every digit seen is counted ([`Event::Dtmf`], `sbc_dtmf_events_total{side,method}`); its
//! value is never logged (PINs): [`Digit`]'s `Debug` prints no value.

use std::time::Instant;

use super::{B2bua, Event, ResponseSpec, call::CallId, media_policy, msg, tx_id::TxId};
use crate::{
    dtmf::{Digit, InfoFormat, MAX_DURATION_MS},
    media::{MediaTable, SessionId},
    net::Side,
    sip::{Method, StatusCode},
};

/// How a side sends and receives DTMF (persisted by name in a call's snapshot).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DtmfMode {
    /// RFC 4733 telephone-events in the RTP stream (negotiated in SDP).
    #[default]
    Rfc4733,
    /// SIP INFO requests (`application/dtmf-relay`).
    Info,
    /// Tones inside the audio; nothing converted.
    InbandPassthrough,
}

/// How a digit travelled, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMethod {
    /// A SIP INFO request.
    Info,
    /// RFC 4733 telephone-events.
    Rfc4733,
}

impl DtmfMethod {
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Rfc4733 => "rfc4733",
        }
    }
}

/// Duration given to a digit whose INFO names none (ms): a typical key press.
const DEFAULT_DURATION_MS: u32 = 160;

impl B2bua {
    /// The DTMF method of `side` on `call`: the one its SDP was negotiated with (kept across
    /// configuration changes and restarts), else the configured one.
    fn dtmf_mode(&self, call: CallId, side: Side) -> DtmfMode {
        let Some(c) = self.calls.get(&call) else {
            return media_policy::of(&self.cfg, side, None).dtmf;
        };
        c.codecs.dtmf_mode(side).unwrap_or_else(|| {
            let trunk = c.trunk.map(super::admission::TrunkId::index);
            media_policy::of(&self.cfg, side, trunk).dtmf
        })
    }

    /// An in-dialog INFO from `from` on `call` (server transaction `key`) with a body of type
    /// `content_type`: counted when it carries a digit, and consumed — answered 200 here, the
    /// digit handed to the relay — when `from` sends INFO and the other side takes RFC 4733.
    /// Returns whether it was consumed (else it is relayed as usual).
    pub(super) fn info_dtmf(
        &mut self,
        now: Instant,
        key: TxId,
        call: CallId,
        from: Side,
        content_type: &str,
        body: &[u8],
    ) -> bool {
        let Some(format) = InfoFormat::from_content_type(content_type) else {
            return false;
        };
        let Some(info) = crate::dtmf::parse_info(format, body) else {
            return false;
        };
        self.events.push_back(Event::Dtmf {
            side: from,
            method: DtmfMethod::Info,
        });
        let to = from.other();
        let convert = self.dtmf_mode(call, from) == DtmfMode::Info
            && self.dtmf_mode(call, to) == DtmfMode::Rfc4733;
        if !convert {
            return false;
        }
        // Events go on the stream and payload type the RFC 4733 side negotiated; without one
        // the INFO crosses as it came.
        let Some((session, (stream, payload_type))) = self
            .calls
            .get(&call)
            .and_then(|c| Some((c.media?, c.codecs.event_payload(to)?)))
        else {
            return false;
        };
        self.events.push_back(Event::GenerateDtmf {
            session,
            stream,
            payload_type,
            toward: to,
            digit: info.digit,
            duration_ms: info
                .duration_ms
                .unwrap_or(DEFAULT_DURATION_MS)
                .min(MAX_DURATION_MS),
        });
        self.ok_on_server(now, key);
        true
    }

    /// Answers server transaction `key` with a body-less 200.
    fn ok_on_server(&mut self, now: Instant, key: TxId) {
        let Some(e) = self.tx.server(key) else {
            return;
        };
        // Gone with the final response: nothing more to answer.
        let Some(request) = e.request.message() else {
            return;
        };
        let resp = msg::response(
            request,
            &ResponseSpec {
                status: StatusCode::OK.as_u16(),
                reason: StatusCode::OK.standard_phrase(),
                to_tag: e.to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[],
            },
            None,
            &[],
            &mut self.buf,
        );
        self.send_on_server(now, key, 200, resp);
    }

    /// A digit the relay detected in the telephone-events `from` sent on `session`: counted,
    /// and sent as an INFO on the other leg when that side takes INFO and `from` RFC 4733.
    /// Returns whether an INFO was sent.
    pub fn dtmf_detected(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Side,
        digit: Digit,
        duration_ms: u32,
        media: &mut MediaTable,
    ) -> bool {
        let Some(&call) = self.sessions.get(&session) else {
            return false;
        };
        self.events.push_back(Event::Dtmf {
            side: from,
            method: DtmfMethod::Rfc4733,
        });
        let to = from.other();
        if self.dtmf_mode(call, from) != DtmfMode::Rfc4733
            || self.dtmf_mode(call, to) != DtmfMode::Info
        {
            return false;
        }
        let mut body = Vec::new();
        crate::dtmf::write_info(
            InfoFormat::DtmfRelay,
            digit,
            duration_ms.min(MAX_DURATION_MS),
            &mut body,
        );
        self.send_own_in_dialog(
            now,
            call,
            to,
            &Method::Info,
            Some((InfoFormat::DtmfRelay.content_type(), &body)),
            media,
        )
    }

    /// Sends a request of the SBC's own in `call`'s dialog on `side` (responses absorbed):
    /// the confirmed dialog, or before the answer the early one (a 18x with a To tag; RFC
    /// 6086 §4.2 allows INFO there: digits for an IVR played as early media).
    fn send_own_in_dialog(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        method: &Method,
        body: Option<(&str, &[u8])>,
        media: &mut MediaTable,
    ) -> bool {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let early = c.state == super::CallState::Early && c.leg(side).remote_tag.is_some();
        if c.state != super::CallState::Confirmed && !early {
            return false;
        }
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        leg.local_cseq += 1;
        let (content_type, body) = body.map_or((None, &b""[..]), |(t, b)| (Some(t), b));
        let request = msg::request(
            &super::RequestSpec {
                contact: true,
                content_type,
                body,
                ..leg.request(method, local, &branch, leg.local_cseq, &self.cfg.user_agent)
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        self.send_client(
            now,
            super::Outgoing {
                bytes: request,
                peer,
                call: Some(call),
                side,
                purpose: super::Purpose::Own,
            },
            media,
        );
        true
    }
}
