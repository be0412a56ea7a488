//! Dialogs and transactions bound to their peer.
//!
//! Knowing a dialog's Call-ID and the SBC's tag must not be enough to act in it: those travel
//! in every message of the dialog and in logs. So, on top of the RFC 3261 §12.2.2 match:
//!
//! - an in-dialog request (and the ACK of a 2xx) must carry the leg's remote tag in From, and
//!   come from the leg's peer: the address the dialog was made with, or, on the carrier side,
//!   any address of the call's trunk (its proxy, its other servers, the addresses its DNS name
//!   resolved to — `set_trunk_sources`). Anything else gets 481 (a mismatched ACK is dropped);
//! - such a request re-points the leg (NAT rebinding: a new port) only when it comes from the
//!   leg's own address; a request from another of the trunk's addresses is answered there
//!   but does not move where the leg's requests go;
//! - a response must come from the side the request went to and from its peer (the same
//!   address, or on the carrier side another address of the same trunk), else it is dropped.
//!
//! Each mismatch is an [`Event::PeerMismatch`] (the runtime's
//! `sbc_sip_peer_mismatch_total{side,kind}`).

use std::net::IpAddr;

use super::{B2bua, Call, ClientEntry, Event, Leg, admission::TrunkId, call::CallId};
use crate::{
    net::{Peer, Side},
    sip::Message,
};

/// What did not match (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMismatch {
    /// An in-dialog request (or ACK) from an address that is not the leg's peer.
    RequestSource,
    /// An in-dialog request whose From tag is not the leg's remote tag.
    RequestTag,
    /// A response from a side or address the request was not sent to.
    Response,
}

impl PeerMismatch {
    /// Label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerMismatch::RequestSource => "request_source",
            PeerMismatch::RequestTag => "request_tag",
            PeerMismatch::Response => "response",
        }
    }
}

impl B2bua {
    /// Whether trunk `t` has address `ip` (proxy, other servers, other sources).
    fn trunk_has(&self, t: Option<TrunkId>, ip: IpAddr) -> bool {
        let Some(trunk) = t.and_then(|t| self.cfg.trunks.get(t.index())) else {
            return false;
        };
        std::iter::once(&trunk.target)
            .chain(&trunk.alternates)
            .any(|s| s.addr.ip().to_canonical() == ip)
            || trunk.sources.contains(&ip)
    }

    /// Whether a message from `ip` on `side` may speak for leg `side` of call `c`.
    fn leg_peer_is(&self, c: &Call, side: Side, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        c.leg(side).peer.addr.ip().to_canonical() == ip
            || (side == Side::Outside && self.trunk_has(c.trunk, ip))
    }

    /// Checks an in-dialog request (or 2xx ACK) from `peer` against leg `side` of `call`;
    /// counts and returns the mismatch, if any.
    pub(super) fn check_in_dialog(
        &mut self,
        peer: &Peer,
        msg: &Message,
        call: CallId,
        side: Side,
    ) -> Result<(), PeerMismatch> {
        let verdict = match self.calls.get(&call) {
            None => Ok(()),
            Some(c) if !self.leg_peer_is(c, side, peer.addr.ip()) => {
                Err(PeerMismatch::RequestSource)
            }
            Some(c) if c.leg(side).remote_tag() != msg.from_tag() => Err(PeerMismatch::RequestTag),
            Some(_) => Ok(()),
        };
        if let Err(kind) = verdict {
            self.events.push_back(Event::PeerMismatch { side, kind });
        }
        verdict
    }

    /// Whether `peer` is where client transaction `e` sent its request (same side; same
    /// address, or another address of the same trunk).
    pub(super) fn response_from_peer(&self, e: &ClientEntry, peer: &Peer) -> bool {
        let ip = peer.addr.ip().to_canonical();
        peer.side == e.side
            && (e.peer.addr.ip().to_canonical() == ip
                || (e.side == Side::Outside && self.trunk_has(e.trunk, ip)))
    }
}

/// Points `leg` at `peer` after an accepted in-dialog request, but only when it is the leg's
/// own address with a new port or connection (NAT rebinding, a new TCP connection); never at
/// another address, even another one of the same trunk.
pub(super) fn repoint(leg: &mut Leg, peer: &Peer) {
    if leg.peer.addr.ip().to_canonical() == peer.addr.ip().to_canonical() {
        leg.peer.addr = peer.addr;
        leg.peer.conn = peer.conn;
    }
}
