//! Forking on the callee's side (RFC 3261 §12.1.2, §13.2.2.4): the INVITE the SBC sent may come
//! back with several early dialogs (18x with different To tags), of which the caller sees one
//! at a time — the caller's leg has a single early dialog with the SBC:
//! - each 18x moves the callee leg to the dialog it belongs to (To tag, remote target, route
//!   set, RSeq space), and its SDP goes to the caller as an update of the caller's early dialog
//!   (a new SDP version) with the media relay re-anchored to that dialog's addresses;
//! - the first 2xx confirms its dialog (whichever early dialog it belongs to, or a new one);
//! - a 2xx from any other dialog afterwards is ACKed and then ended with BYE (§13.2.2.4), and
//!   its retransmissions get the same ACK again, never a second BYE.

use std::time::Instant;

use bytes::Bytes;

use super::{
    B2bua, Call, Outgoing, Purpose, Transmit, call::CallId, first_contact, msg, msg::RequestSpec,
};
use crate::{
    media::MediaTable,
    net::Side,
    sip::{HeaderName, Message, Method},
};

/// The early dialogs of one call's callee leg.
#[derive(Debug, Default)]
pub(super) struct Forks {
    /// To tags of every dialog the callee leg has seen, in order of appearance.
    tags: Vec<String>,
    /// Dialogs whose late 2xx was ACKed and BYEd: their To tag and the ACK (resent for the 2xx
    /// retransmissions).
    released: Vec<(String, Bytes)>,
}

impl Call {
    /// Moves the callee leg on `side` to the dialog of `resp` (a 101–299 to the initial
    /// INVITE): the newest early dialog is the one the caller sees. Returns whether it changed.
    pub(super) fn follow_dialog(&mut self, side: Side, resp: &Message) -> bool {
        let Some(tag) = resp.to_tag() else {
            return false;
        };
        let known = self.forks.tags.iter().any(|t| t == tag);
        if !known {
            // One slot at a time: nearly every call has one dialog, and a first push would
            // reserve four (96 bytes held for the call's life instead of 24).
            self.forks.tags.reserve_exact(1);
            self.forks.tags.push(tag.to_owned());
        }
        let leg = self.leg_mut(side);
        let switched = leg.remote_tag() != Some(tag);
        if switched {
            let to = msg::first_value(resp.headers(), HeaderName::To).unwrap_or("");
            leg.set_remote(to.to_owned(), Some(tag));
        }
        if let Some(ct) = first_contact(resp) {
            leg.remote_target = ct;
        }
        // UAC route set: Record-Route in reverse (§12.1.2); a new dialog has its own.
        let rr: Vec<String> = resp
            .record_routes()
            .filter_map(Result::ok)
            .map(|r| format!("<{}>", r.uri_str))
            .collect();
        if switched || !rr.is_empty() {
            leg.route_set = rr.into_iter().rev().collect();
        }
        if switched && self.forks.tags.len() > 1 {
            // Another early dialog: its reliable provisionals have their own RSeq space.
            self.last_callee_rseq = None;
        }
        switched
    }
}

impl B2bua {
    /// A 2xx to the initial INVITE of an answered call from a dialog other than the one that
    /// won: ACK it and end it with BYE (§13.2.2.4). True when `resp` was such a 2xx (handled).
    pub(super) fn late_fork_2xx(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        resp: &Message,
        media: &mut MediaTable,
    ) -> bool {
        let Some(tag) = resp.to_tag() else {
            return false;
        };
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        if c.state != super::CallState::Confirmed || c.leg(side).remote_tag() == Some(tag) {
            return false;
        }
        if let Some((_, ack)) = c.forks.released.iter().find(|(t, _)| t == tag) {
            // A retransmission of a released dialog's 2xx: the same ACK again.
            let (to, data) = (c.leg(side).peer, ack.clone());
            self.transmits.push_back(Transmit { to, data });
            return true;
        }
        let leg = c.leg(side);
        let local = leg.local;
        let to_hdr = msg::first_value(resp.headers(), HeaderName::To)
            .unwrap_or("")
            .to_owned();
        let target = first_contact(resp).unwrap_or_else(|| leg.remote_target.clone());
        let mut routes: Vec<String> = resp
            .record_routes()
            .filter_map(Result::ok)
            .map(|r| format!("<{}>", r.uri_str))
            .collect();
        routes.reverse();
        let (from_hdr, call_id, peer) = (leg.local_hdr.clone(), leg.call_id.clone(), leg.peer);
        let cseq = resp.cseq().seq;
        let spec = |method, branch, cseq| RequestSpec {
            method,
            ruri: &target,
            local,
            branch,
            max_forwards: 70,
            routes: &routes,
            from: &from_hdr,
            to: &to_hdr,
            call_id: &call_id,
            cseq,
            contact: false,
            user_agent: &self.cfg.user_agent,
            content_type: None,
            body: b"",
            extra: &[],
            shaping: None,
        };
        let ack_branch = self.rng.branch();
        let bye_branch = self.rng.branch();
        let mut buf = Vec::new();
        let ack = msg::request(&spec(&Method::Ack, &ack_branch, cseq), None, &[], &mut buf);
        let mut buf = Vec::new();
        let bye_cseq = cseq.saturating_add(1);
        let bye = msg::request(
            &spec(&Method::Bye, &bye_branch, bye_cseq),
            None,
            &[],
            &mut buf,
        );
        if let Some(c) = self.calls.get_mut(&call) {
            c.forks.released.push((tag.to_owned(), ack.clone()));
        }
        self.transmits.push_back(Transmit {
            to: peer,
            data: ack,
        });
        self.send_client(
            now,
            Outgoing {
                bytes: bye,
                peer,
                call: Some(call),
                side,
                purpose: Purpose::Own,
            },
            media,
        );
        true
    }
}
