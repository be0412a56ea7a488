//! Graceful drain, the call layer's part: while draining, new calls from either side and
//! out-of-dialog OPTIONS are answered 503 with the drain's Retry-After (RFC 3261 §21.5.4: the
//! peer fails over to another node and keeps away for that long), while every call in progress
//! goes on; at the end the SBC core ([`crate::sbc`]) ends what is left with BYE on both legs
//! ([`B2bua::end_all`]) and waits for the answers ([`B2bua::requests_in_flight`]).

use super::*;

impl B2bua {
    /// Starts refusing new calls and OPTIONS with 503 and `Retry-After: retry_after_s`
    /// (`Some`), or accepts them again (`None`). Calls in progress are not touched.
    pub fn set_draining(&mut self, retry_after_s: Option<u32>) {
        self.draining = retry_after_s;
    }

    /// Whether new calls are refused because the SBC is draining.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Ends every call (BYE on both legs once answered, CANCEL/487 before, like
    /// [`B2bua::end_call`]) with [`EndReason::Drain`]. Returns how many calls it ended.
    pub fn end_all(&mut self, now: Instant, media: &mut MediaTable) -> usize {
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        // Oldest first, so the order on the wire does not depend on the hash map.
        ids.sort_unstable();
        for &call in &ids {
            self.terminate(now, call, EndReason::Drain, media);
        }
        self.drain_media(now, media);
        ids.len()
    }

    /// Requests the SBC sent (its own BYEs and CANCELs, relayed requests) that have no final
    /// answer yet: while any is left, leaving would make a peer retransmit into the void.
    pub fn requests_in_flight(&self) -> usize {
        self.tx.awaiting_final()
    }

    /// The drain's answer to a new call: a stateless 503 with the drain's Retry-After, counted
    /// like an admission refusal (`limit = "draining"`) and recorded for the CDRs. False when
    /// not draining (the call goes on to admission).
    pub(super) fn refuse_new_call_draining(&mut self, peer: Peer, msg: &Message) -> bool {
        let Some(retry) = self.draining else {
            return false;
        };
        self.events.push_back(Event::AdmissionRejected {
            from: peer.side,
            limit: "draining",
        });
        self.record_refusal(msg, peer.side, Refusal::ServiceUnavailable.code());
        self.stateless_503(peer, msg, Some(retry));
        true
    }
}
