//! What the transport delivers to the SIP core, and the decision taken for every received
//! datagram or framed stream message: deliver, answer statelessly, or drop.

use std::time::Instant;

use bytes::Bytes;
use sbc_proto::{
    net::Peer,
    sip::{Limits, Message, ParseError, Reaction},
};

use super::{
    DropReason,
    reject::{Rejection, rejection},
};

/// A parsed SIP message received from a peer.
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it: side, transport, the observed source address (what RFC 3581 NAT handling
    /// trusts) and, on streams, the connection to answer on (RFC 3261 §18.2.2).
    pub peer: Peer,
    /// The message.
    pub message: Message,
    /// When the transport had its bytes (before parsing): the start of the time the SBC
    /// spends on it (`sbc_sip_handling_seconds`).
    pub received: Instant,
    /// When it arrived: the kernel's arrival time where the socket gives one (UDP), else
    /// `received`. The wait since then, in the kernel's queue and in the shard's, is the
    /// overload signal (`sbc_proto::overload`): when the SBC falls behind, the backlog may
    /// build up in either.
    pub arrived: Instant,
}

/// The decision for one received unit.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per message and consumed at once; boxing the common variant would add an allocation per message"
)]
pub(crate) enum Intake {
    /// A valid message for the core.
    Deliver(Inbound),
    /// A malformed request, answered with this response.
    Reject(Rejection),
    /// Discarded.
    Drop(DropReason),
}

/// Parses `data` and decides what happens to it.
pub(crate) fn examine(data: Bytes, peer: Peer, limits: &Limits) -> Intake {
    let received = Instant::now();
    let error = match Message::parse(data, limits) {
        Ok(message) => {
            return Intake::Deliver(Inbound {
                peer,
                message,
                received,
                arrived: received,
            });
        }
        Err(e) => e,
    };
    // Debug only: attackers control how often this runs.
    tracing::debug!(%peer, error = %error, "bad SIP input");
    match (error.reaction(), &error) {
        (Reaction::Respond { code, reason }, ParseError::Rejected { headers, .. }) => {
            Intake::Reject(rejection(headers, code, reason, peer.addr))
        }
        (_, ParseError::NotSip) => Intake::Drop(DropReason::NotSip),
        _ => Intake::Drop(DropReason::Unanswerable),
    }
}
