//! Offer/answer across the B2BUA (RFC 3264), all four paths an SDP body takes, each over one
//! parse of the body ([`Description`]): the media layer gets the streams of that parse and
//! the other leg gets that parse rewritten (relay addresses, the leg's own origin, only what
//! the SDP policy allows, and the SBC's own `a=crypto` for that leg: `srtp_policy.rs`).
//!
//! 1. [`B2bua::read_offer`] and [`B2bua::anchor_offer`]: the offer in a new call's INVITE
//!    (allocate).
//! 2. [`B2bua::reoffer`]: an offer in a re-INVITE or UPDATE (update, or allocate when the call
//!    had no media yet).
//! 3. [`B2bua::answer`]: the answer in a response, or the offer in the 2xx to an offer-less
//!    INVITE (commit, or allocate).
//! 4. [`B2bua::late_answer`]: the answer in the ACK of a late-offer call (commit).

use super::*;
use crate::{
    media::{Allocation, MediaPeers, StreamRelay},
    sdp::Sdp,
};

use super::{admission::TrunkId, codec_policy, t38};

/// An SDP body parsed once, with the streams the media layer needs from it.
#[derive(Debug)]
pub(super) struct Description<'a> {
    parsed: Sdp<'a>,
    streams: Vec<crate::media::StreamDesc>,
    /// The codec policy's edits per `m=` line (`codec_policy.rs`).
    formats: Vec<codec_policy::FormatEdit>,
}

impl<'a> Description<'a> {
    /// Parses `body` and reads its streams (refusing addresses the relay must not send to).
    pub(super) fn parse(
        body: &'a [u8],
        policy: &crate::sdp::SdpPolicy,
    ) -> Result<Self, SdpProblem> {
        let parsed = Sdp::parse(body)?;
        let streams = sdp::streams(&parsed, policy)?;
        Ok(Self {
            parsed,
            streams,
            formats: Vec::new(),
        })
    }

    /// Runs the codec policy over the body as an offer (`answer` false) or an answer from
    /// `from`, remembering the edits for [`rewrite`](Self::rewrite).
    pub(super) fn apply_codecs(
        &mut self,
        codecs: &mut codec_policy::CallCodecs,
        cfg: &B2buaConfig,
        trunk: Option<TrunkId>,
        from: Side,
        answer: bool,
    ) -> Result<(), SdpProblem> {
        let trunk = trunk.map(TrunkId::index);
        let edits = if answer {
            codecs.answer(cfg, trunk, from, &self.parsed)
        } else {
            codecs.offer(cfg, trunk, from, &self.parsed)
        };
        self.formats = edits.map_err(|e| SdpProblem::NoCommonCodec(e.index))?;
        Ok(())
    }

    /// The parsed body.
    pub(super) fn parsed(&self) -> &Sdp<'a> {
        &self.parsed
    }

    /// The streams the relay gets from it.
    pub(super) fn streams(&self) -> &[crate::media::StreamDesc] {
        &self.streams
    }

    /// Writes the body for leg `to`, with `relays` facing it and `origin` as its `o=` line.
    pub(super) fn rewrite(
        &self,
        relays: &[StreamRelay],
        to: Side,
        origin: &mut sdp::Origin,
        policy: &crate::sdp::SdpPolicy,
        out: &mut Vec<u8>,
    ) -> Result<(), SdpProblem> {
        sdp::rewrite(&self.parsed, relays, to, origin, policy, &self.formats, out)
    }
}

impl B2bua {
    /// Path 1: the offer in a new call's INVITE from `from`, read and run through the codec
    /// policy (an unusable body is counted at the border and refused with 488), then anchored
    /// at a new media session by [`anchor_offer`](Self::anchor_offer).
    pub(super) fn read_offer<'a>(
        &mut self,
        body: &'a [u8],
        from: Side,
        trunk: Option<TrunkId>,
        codecs: &mut codec_policy::CallCodecs,
    ) -> Result<Description<'a>, Refusal> {
        let desc = Description::parse(body, &self.cfg.sdp).and_then(|mut d| {
            d.apply_codecs(codecs, &self.cfg, trunk, from, false)?;
            Ok(d)
        });
        desc.map_err(|p| {
            self.border_refusal(p.as_str());
            Refusal::NotAcceptableHere
        })
    }

    /// Path 1, continued: the offer's streams get relay ports on both sides; a refusal of
    /// the media layer maps to its answer (503 when out of ports).
    pub(super) fn anchor_offer(
        now: Instant,
        from: Side,
        desc: &Description<'_>,
        peers: &MediaPeers,
        media: &mut MediaTable,
    ) -> Result<Allocation, Refusal> {
        media
            .allocate(now, from, &desc.streams, peers)
            .map_err(|e| Refusal::from(&e))
    }

    /// Path 2: an offer in a re-INVITE or UPDATE from `from` on `call`: the call's session is
    /// updated (or one allocated if it had none) and the body for the other leg written to
    /// `out`.
    pub(super) fn reoffer(
        &mut self,
        now: Instant,
        call: CallId,
        from: Side,
        body: &[u8],
        media: &mut MediaTable,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let to = from.other();
        let peers = self.call_media_peers(call);
        let mut desc = match Description::parse(body, &self.cfg.sdp) {
            Ok(d) => d,
            Err(p) => {
                self.border_refusal(p.as_str());
                return Err(Refusal::NotAcceptableHere);
            }
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(Refusal::CallDoesNotExist);
        };
        if t38::refused(&self.cfg, c.trunk, desc.parsed()) {
            self.border_refusal("t38_rejected");
            return Err(Refusal::NotAcceptableHere);
        }
        if let Err(p) = desc.apply_codecs(&mut c.codecs, &self.cfg, c.trunk, from, false) {
            self.border_refusal(p.as_str());
            return Err(Refusal::NotAcceptableHere);
        }
        c.offers.reoffer(from, &desc.streams);
        let relays = match c.media {
            Some(s) => media
                .update(now, s, from, &desc.streams)
                .map_err(|e| Refusal::from(&e))?,
            None => {
                let a = media
                    .allocate(now, from, &desc.streams, &peers)
                    .map_err(|e| Refusal::from(&e))?;
                c.media = Some(a.session);
                self.sessions.insert(a.session, call);
                a.streams
            }
        };
        let leg = c.leg_mut(to);
        let crossing = srtp_policy::Crossing {
            now,
            role: srtp_policy::SdpRole::Offer,
            from,
            to,
            body,
        };
        let written = desc
            .rewrite(&relays, to, &mut leg.origin, &self.cfg.sdp, out)
            .and_then(|()| {
                srtp_policy::negotiate(
                    &self.cfg,
                    &mut self.rng,
                    &mut c.srtp,
                    c.trunk,
                    crossing,
                    out,
                    Some((&mut *media, c.media)),
                )
            });
        if let Err(p) = written {
            self.border_refusal(p.as_str());
            return Err(Refusal::NotAcceptableHere);
        }
        Ok(())
    }

    /// Path 3: the SDP in a response from `callee` on `call` (an answer, or the offer of a 2xx
    /// to an offer-less INVITE): committed to the call's session (or a session allocated),
    /// and the body for the caller written to `out`.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        call: CallId,
        callee: Side,
        body: &[u8],
        media: &mut MediaTable,
        out: &mut Vec<u8>,
    ) -> Result<(), SdpProblem> {
        let caller = callee.other();
        let peers = self.call_media_peers(call);
        let mut desc = Description::parse(body, &self.cfg.sdp)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        let is_answer = c.codecs.is_answer_from(callee);
        desc.apply_codecs(&mut c.codecs, &self.cfg, c.trunk, callee, is_answer)?;
        let relays = match c.media {
            Some(s) => media.commit(now, s, callee, &desc.streams),
            None => media.allocate(now, callee, &desc.streams, &peers).map(|a| {
                c.media = Some(a.session);
                self.sessions.insert(a.session, call);
                a.streams
            }),
        }
        .map_err(|_| SdpProblem::Unanchored {
            sections: desc.streams.len(),
            relays: 0,
        })?;
        c.offers.described(callee, &desc.streams);
        if is_answer {
            c.offers.answered();
            codec_policy::relay_maps(now, &c.codecs, media, c.media)?;
        }
        let leg = c.leg_mut(caller);
        desc.rewrite(&relays, caller, &mut leg.origin, &self.cfg.sdp, out)?;
        let crossing = srtp_policy::Crossing {
            now,
            role: srtp_policy::response_role(&c.srtp, callee),
            from: callee,
            to: caller,
            body,
        };
        srtp_policy::negotiate(
            &self.cfg,
            &mut self.rng,
            &mut c.srtp,
            c.trunk,
            crossing,
            out,
            Some((media, c.media)),
        )
    }

    /// Path 4: the answer in the ACK from `side` of a late-offer call, committed to the call's
    /// session; the body for the other leg (its ACK) written to `out`. Err is the border
    /// metric label of why it cannot be anchored.
    pub(super) fn late_answer(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        body: &[u8],
        media: &mut MediaTable,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let other = side.other();
        let mut desc = Description::parse(body, &self.cfg.sdp).map_err(|p| p.as_str())?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err("sdp_unanchored");
        };
        desc.apply_codecs(&mut c.codecs, &self.cfg, c.trunk, side, true)
            .map_err(|p| p.as_str())?;
        let relays = match c.media {
            Some(s) => media
                .commit(now, s, side, &desc.streams)
                .map_err(|_| "sdp_unanchored")?,
            None => return Err("sdp_unanchored"),
        };
        c.offers.described(side, &desc.streams);
        c.offers.answered();
        codec_policy::relay_maps(now, &c.codecs, media, c.media).map_err(|p| p.as_str())?;
        let leg = c.leg_mut(other);
        let crossing = srtp_policy::Crossing {
            now,
            role: srtp_policy::SdpRole::Answer,
            from: side,
            to: other,
            body,
        };
        desc.rewrite(&relays, other, &mut leg.origin, &self.cfg.sdp, out)
            .and_then(|()| {
                srtp_policy::negotiate(
                    &self.cfg,
                    &mut self.rng,
                    &mut c.srtp,
                    c.trunk,
                    crossing,
                    out,
                    Some((media, c.media)),
                )
            })
            .map_err(|p| p.as_str())
    }
}
