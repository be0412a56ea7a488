//! T.38 fax (ITU-T T.38 Annex D, RFC 3362 `image/t38`) and the fallback of a refused re-offer.
//!
//! A fax switch is a re-INVITE (or UPDATE) replacing `m=audio` by `m=image <port> udptl t38`
//! with its `a=T38Fax…` attributes. With `t38 = "passthrough"` (default) it crosses like any
//! re-offer: the SDP allowlist keeps the `T38*` attributes, the codec policy leaves `udptl`
//! sections alone, and the relay anchors the UDPTL stream on the stream's ports as plain UDP.
//! With `t38 = "reject"` on either side of the call, the SBC answers 488 itself and the sender
//! stays on audio (G.711 fax).
//!
//! A re-offer refused by the other side (488/606 to a T.38 switch, or any non-2xx) leaves the
//! previous session description in force (RFC 3264 §8; RFC 3261 §14.1): the relay gets back
//! the offerer's streams as they were before the offer, so the call continues on G.711 even
//! when the offer named new ports.

use super::{B2buaConfig, admission::TrunkId, media_policy, media_policy::T38Mode};
use crate::{
    net::Side,
    sdp::{Media, Sdp},
};

/// Whether `m` is an enabled T.38 stream.
fn is_t38(m: &Media<'_, '_>) -> bool {
    m.desc().is_ok_and(|d| {
        d.port != 0
            && d.media.eq_ignore_ascii_case("image")
            && d.proto.to_ascii_lowercase().contains("udptl")
            && d.format_list().any(|f| f.eq_ignore_ascii_case("t38"))
    })
}

/// Whether an offer switches to T.38 on a call whose policy (either side) rejects it.
pub(super) fn refused(cfg: &B2buaConfig, trunk: Option<TrunkId>, offer: &Sdp<'_>) -> bool {
    let trunk = trunk.map(TrunkId::index);
    let reject = [Side::Inside, Side::Outside]
        .iter()
        .any(|s| media_policy::of(cfg, *s, trunk).t38 == T38Mode::Reject);
    reject && offer.media().any(|m| is_t38(&m))
}

impl super::B2bua {
    /// A final non-2xx response from `callee` to the re-offer of `caller` (re-INVITE or
    /// UPDATE) on `call`: the relay gets the caller's previous streams back.
    pub(super) fn fall_back(
        &mut self,
        now: std::time::Instant,
        call: super::call::CallId,
        caller: Side,
        media: &mut crate::media::MediaTable,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let (Some(before), Some(session)) = (c.offers.refused(caller), c.media) else {
            return;
        };
        // The relay already runs the previous streams' ports; an error here means the session
        // is gone, which the call's teardown handles.
        let _ = media.update(now, session, caller, &before);
    }
}
