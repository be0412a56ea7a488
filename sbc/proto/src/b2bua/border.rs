//! Refusals at the border: what the B2BUA does when a body may not cross (415) or when SDP
//! cannot be anchored on the relay (488). Nothing is ever passed on as it came instead.

use std::time::Instant;

use super::{
    B2bua, EndReason, Event, Refusal, ResponseSpec, body,
    call::CallId,
    msg,
    transactions::{ServerKey, TxId},
};
use crate::{
    media::MediaTable,
    net::{Peer, Side},
    sip::{Message, Method},
};

impl B2bua {
    /// Counts a refusal (`reason` is a metric label).
    pub(super) fn border_refusal(&mut self, reason: &'static str) {
        self.events.push_back(Event::BorderRefusal { reason });
    }

    /// Answers the request of server transaction `key` with 415 and the `Accept` of its
    /// method (RFC 3261 §21.4.13): its body is of no type the SBC relays.
    pub(super) fn refuse_body(
        &mut self,
        now: Instant,
        key: TxId,
        method: &Method,
        refusal: body::BodyRefusal,
    ) {
        self.border_refusal(refusal.as_str());
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
                status: Refusal::UnsupportedMediaType.code(),
                reason: Refusal::UnsupportedMediaType.reason(),
                to_tag: e.to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[("Accept", body::accept(method))],
            },
            None,
            &[],
            &mut self.buf,
        );
        self.send_on_server(now, key, 415, resp);
    }

    /// The same for a request that has no server transaction yet (outside a dialog).
    pub(super) fn refuse_new_body(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        refusal: body::BodyRefusal,
    ) {
        self.border_refusal(refusal.as_str());
        let accept = msg.method().map_or("", body::accept);
        self.reject_with(
            now,
            peer,
            key,
            msg,
            Refusal::UnsupportedMediaType,
            &[("Accept", accept)],
        );
    }

    /// A 2xx from the callee leg whose SDP cannot be anchored: the caller's INVITE (server
    /// transaction `key`) gets 488 instead of an answer the relay does not carry, and the
    /// callee's 2xx is ACKed and its dialog ended with BYE. After a re-INVITE both legs are
    /// ended: the callee now uses the refused SDP.
    pub(super) fn refuse_answer(
        &mut self,
        now: Instant,
        call: CallId,
        caller: Side,
        key: TxId,
        resp: &Message,
        media: &mut MediaTable,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let initial = c.initial_server == Some(key);
        let callee = caller.other();
        self.send_ack(now, call, callee, resp.cseq().seq, b"");
        self.final_on_server(now, key, Refusal::NotAcceptableHere);
        if initial {
            self.send_bye(now, call, callee, media);
            self.finish_call(call, EndReason::Rejected(488), media);
        } else {
            self.terminate(now, call, EndReason::Rejected(488), media);
        }
    }
}
