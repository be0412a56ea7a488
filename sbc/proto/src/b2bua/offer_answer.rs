//! Offer/answer across the B2BUA (RFC 3264), all four paths an SDP body takes, each over one
//! parse of the body ([`Description`]): the media layer gets the streams of that parse and
//! the other leg gets that parse rewritten (relay addresses, the leg's own origin, only what
//! the SDP policy allows, and the SBC's own `a=crypto` for that leg: `srtp_policy.rs`).
//!
//! 1. [`B2bua::anchor_offer`]: the offer in a new call's INVITE (allocate).
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

/// An SDP body parsed once, with the streams the media layer needs from it.
#[derive(Debug)]
pub(super) struct Description<'a> {
    parsed: Sdp<'a>,
    streams: Vec<crate::media::StreamDesc>,
}

impl<'a> Description<'a> {
    /// Parses `body` and reads its streams (refusing addresses the relay must not send to).
    pub(super) fn parse(
        body: &'a [u8],
        policy: &crate::sdp::SdpPolicy,
    ) -> Result<Self, SdpProblem> {
        let parsed = Sdp::parse(body)?;
        let streams = sdp::streams(&parsed, policy)?;
        Ok(Self { parsed, streams })
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
        sdp::rewrite(&self.parsed, relays, to, origin, policy, out)
    }
}

impl B2bua {
    /// Path 1: the offer in a new call's INVITE from `from`, anchored at a new media session.
    /// An unusable body is counted at the border and refused with 488; a refusal of the media
    /// layer maps to its answer (503 when out of ports).
    pub(super) fn anchor_offer<'a>(
        &mut self,
        body: &'a [u8],
        from: Side,
        peers: &MediaPeers,
        media: &mut dyn MediaControl,
    ) -> Result<(Description<'a>, Allocation), Refusal> {
        let desc = Description::parse(body, &self.cfg.sdp).map_err(|p| {
            self.border_refusal(p.as_str());
            Refusal::NotAcceptableHere
        })?;
        let allocation = media
            .allocate(sdp::leg(from), &desc.streams, peers)
            .map_err(|e| Refusal::from(&e))?;
        Ok((desc, allocation))
    }

    /// Path 2: an offer in a re-INVITE or UPDATE from `from` on `call`: the call's session is
    /// updated (or one allocated if it had none) and the body for the other leg written to
    /// `out`.
    pub(super) fn reoffer(
        &mut self,
        call: CallId,
        from: Side,
        body: &[u8],
        media: &mut dyn MediaControl,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let to = from.other();
        let peers = self.call_media_peers(call);
        let desc = match Description::parse(body, &self.cfg.sdp) {
            Ok(d) => d,
            Err(p) => {
                self.border_refusal(p.as_str());
                return Err(Refusal::NotAcceptableHere);
            }
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(Refusal::CallDoesNotExist);
        };
        let relays = match c.media {
            Some(s) => media
                .update(s, sdp::leg(from), &desc.streams)
                .map_err(|e| Refusal::from(&e))?,
            None => {
                let a = media
                    .allocate(sdp::leg(from), &desc.streams, &peers)
                    .map_err(|e| Refusal::from(&e))?;
                c.media = Some(a.session);
                self.sessions.insert(a.session, call);
                a.streams
            }
        };
        let leg = c.leg_mut(to);
        let crossing = srtp_policy::Crossing {
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
        call: CallId,
        callee: Side,
        body: &[u8],
        media: &mut dyn MediaControl,
        out: &mut Vec<u8>,
    ) -> Result<(), SdpProblem> {
        let caller = callee.other();
        let peers = self.call_media_peers(call);
        let desc = Description::parse(body, &self.cfg.sdp)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        let relays = match c.media {
            Some(s) => media.commit(s, sdp::leg(callee), &desc.streams),
            None => media
                .allocate(sdp::leg(callee), &desc.streams, &peers)
                .map(|a| {
                    c.media = Some(a.session);
                    self.sessions.insert(a.session, call);
                    a.streams
                }),
        }
        .map_err(|_| SdpProblem::Unanchored {
            sections: desc.streams.len(),
            relays: 0,
        })?;
        let leg = c.leg_mut(caller);
        desc.rewrite(&relays, caller, &mut leg.origin, &self.cfg.sdp, out)?;
        let crossing = srtp_policy::Crossing {
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
        call: CallId,
        side: Side,
        body: &[u8],
        media: &mut dyn MediaControl,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let other = side.other();
        let desc = Description::parse(body, &self.cfg.sdp).map_err(|p| p.as_str())?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err("sdp_unanchored");
        };
        let relays = match c.media {
            Some(s) => media
                .commit(s, sdp::leg(side), &desc.streams)
                .map_err(|_| "sdp_unanchored")?,
            None => return Err("sdp_unanchored"),
        };
        let leg = c.leg_mut(other);
        let crossing = srtp_policy::Crossing {
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
