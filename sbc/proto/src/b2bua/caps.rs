//! Hard caps on the state a B2BUA holds: live transactions and the bytes of SIP messages kept
//! for retransmission and matching. Concurrent calls are capped by the admission limits
//! (`CallLimits::max_calls`, which the runtime always sets).
//!
//! Every new request costs a server transaction (its request and its last response kept for
//! 32 s on UDP) and usually a client transaction; a flood of distinct new requests from an
//! allowed peer would otherwise grow both without bound. What happens at the caps:
//!
//! - A new call (INVITE without To tag) is refused once either count reaches 7/8 of its cap:
//!   503 with Retry-After, answered statelessly (nothing is kept for it; calls refused by the
//!   admission limits are answered the same way), counted as
//!   [`Event::AdmissionRejected`] with limit `max_transactions` or `max_stored_bytes`. The
//!   last eighth stays for requests inside calls already up, so a flood of new calls cannot
//!   keep a BYE from ending a call.
//! - Any other request that would open a transaction is dropped at the full cap, counted as
//!   [`Event::Dropped`] with the same reason (UDP peers retransmit; it gets through once load
//!   drains).
//! - Requests the SBC makes itself to end calls (BYE, CANCEL) are never refused: ending calls
//!   is how state drains.

use super::step_table::IdStepMap;

use super::{B2bua, Event, Refusal, ResponseSpec, Transmit, call::CallId, msg, tx_id::TxId};
use crate::{
    net::Peer,
    sip::{Message, Method},
};

/// Hard caps of one B2BUA instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most live transactions, server and client together.
    pub max_transactions: usize,
    /// Most bytes of SIP messages held: requests and last responses of transactions,
    /// 2xx and reliable provisionals awaiting ACK/PRACK, ACKs kept for 2xx retransmissions
    /// and offers kept for failover.
    pub max_stored_bytes: usize,
}

impl Default for Caps {
    /// 20,000 transactions and 64 MiB: a few thousand concurrent calls with room for their
    /// re-INVITEs and BYEs, and a worst case of a few hundred MB of process memory.
    fn default() -> Self {
        Self {
            max_transactions: 20_000,
            max_stored_bytes: 64 << 20,
        }
    }
}

/// Which cap a request ran into (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    Transactions,
    StoredBytes,
}

impl Full {
    const fn label(self) -> &'static str {
        match self {
            Full::Transactions => "max_transactions",
            Full::StoredBytes => "max_stored_bytes",
        }
    }
}

/// Bytes held per transaction and per call, and their sum. Entries are replaced whenever their
/// owner is drained, and removed with it, so the sum cannot drift.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    // They grow in steps (`step_table.rs`): an entry per live transaction.
    server: IdStepMap<TxId, usize>,
    client: IdStepMap<TxId, usize>,
    calls: IdStepMap<CallId, usize>,
    total: usize,
}

impl Ledger {
    fn put<K: std::hash::Hash + Eq>(
        map: &mut IdStepMap<K, usize>,
        total: &mut usize,
        key: K,
        bytes: usize,
    ) {
        let old = map.insert(key, bytes).unwrap_or(0);
        *total = total.saturating_sub(old).saturating_add(bytes);
    }

    fn take<K: std::hash::Hash + Eq>(map: &mut IdStepMap<K, usize>, total: &mut usize, key: &K) {
        if let Some(old) = map.remove(key) {
            *total = total.saturating_sub(old);
        }
    }

    /// Server transaction `id` now holds `bytes`.
    pub(super) fn set_server(&mut self, id: TxId, bytes: usize) {
        Self::put(&mut self.server, &mut self.total, id, bytes);
    }

    /// Client transaction `id` now holds `bytes`.
    pub(super) fn set_client(&mut self, id: TxId, bytes: usize) {
        Self::put(&mut self.client, &mut self.total, id, bytes);
    }

    /// Call `id` now holds `bytes`.
    pub(super) fn set_call(&mut self, id: CallId, bytes: usize) {
        Self::put(&mut self.calls, &mut self.total, id, bytes);
    }

    /// Server transaction `id` is gone.
    pub(super) fn remove_server(&mut self, id: TxId) {
        Self::take(&mut self.server, &mut self.total, &id);
    }

    /// Client transaction `id` is gone.
    pub(super) fn remove_client(&mut self, id: TxId) {
        Self::take(&mut self.client, &mut self.total, &id);
    }

    /// Call `id` is gone.
    pub(super) fn remove_call(&mut self, id: CallId) {
        Self::take(&mut self.calls, &mut self.total, &id);
    }

    /// Bytes held in all.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Owners with an entry (for leak checks: zero when nothing is live).
    pub(super) fn entries(&self) -> usize {
        self.server.len() + self.client.len() + self.calls.len()
    }
}

impl B2bua {
    /// The cap a new request would exceed: `eighths` eighths of each cap are usable (7 for
    /// new calls, 8 for everything else).
    fn cap_reached(&self, eighths: usize) -> Option<Full> {
        let share = |cap: usize| cap / 8 * eighths + cap % 8 * eighths / 8;
        let (server, client) = self.tx.len();
        if server + client >= share(self.cfg.caps.max_transactions) {
            return Some(Full::Transactions);
        }
        if self.ledger.total() >= share(self.cfg.caps.max_stored_bytes) {
            return Some(Full::StoredBytes);
        }
        None
    }

    /// Refuses a request that would open a transaction above the caps: a new call gets a
    /// stateless 503 + Retry-After, anything else is dropped. True when it was refused.
    pub(super) fn refuse_over_caps(&mut self, peer: Peer, msg: &Message) -> bool {
        let new_call = msg.method() == Some(&Method::Invite) && msg.to_tag().is_none();
        let Some(full) = self.cap_reached(if new_call { 7 } else { 8 }) else {
            return false;
        };
        if !new_call {
            self.events.push_back(Event::Dropped {
                reason: full.label(),
            });
            return true;
        }
        self.events.push_back(Event::AdmissionRejected {
            from: peer.side,
            limit: full.label(),
        });
        self.refuse_statelessly(peer, msg);
        true
    }

    /// Answers a new call with 503 + Retry-After without keeping anything (RFC 3261 §8.2.6
    /// allows a stateless answer): a flood of refused INVITEs costs no memory. A retransmitted
    /// INVITE (the 503 was lost) is judged again like a new one; its ACK is a stray ACK.
    pub(super) fn refuse_statelessly(&mut self, peer: Peer, msg: &Message) {
        self.stateless_503(peer, msg, Some(self.cfg.retry_after_s));
    }

    /// Refuses `msg` if it is a new call (an INVITE without To tag that is not a
    /// retransmission of one already taken up) while the shard is overloaded (`overload.rs`):
    /// a stateless 503 without Retry-After, counted as [`Event::AdmissionRejected`] with limit
    /// `queue_delay` and recorded for the CDRs. False for anything else, which goes on as
    /// usual: a retransmission is absorbed by its transaction, a CANCEL reaches its INVITE.
    pub fn shed_new_call(&mut self, peer: Peer, msg: &Message) -> bool {
        if msg.method() != Some(&Method::Invite)
            || msg.to_tag().is_some()
            || self.tx.find_server(msg).is_some()
        {
            return false;
        }
        self.events.push_back(Event::AdmissionRejected {
            from: peer.side,
            limit: "queue_delay",
        });
        self.record_refusal(msg, peer.side, Refusal::ServiceUnavailable.code());
        self.stateless_503(peer, msg, None);
        true
    }

    /// A stateless 503 to `msg`, with `Retry-After: retry_after_s` when given.
    pub(super) fn stateless_503(&mut self, peer: Peer, msg: &Message, retry_after_s: Option<u32>) {
        let tag = self.rng.token();
        let retry = retry_after_s.map(|s| s.to_string());
        let retry_header = retry.as_deref().map(|r| ("Retry-After", r));
        let data = msg::response(
            msg,
            &ResponseSpec {
                status: Refusal::ServiceUnavailable.code(),
                reason: Refusal::ServiceUnavailable.reason(),
                to_tag: Some(&tag),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: retry_header.as_slice(),
            },
            None,
            &[],
            &mut self.buf,
        );
        self.transmits.push_back(Transmit { to: peer, data });
    }

    /// Re-counts the bytes call `id` holds outside its transactions.
    pub(super) fn account_call(&mut self, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            self.ledger.remove_call(id);
            return;
        };
        let held = c.pending_2xx.as_ref().map_or(0, |p| p.response.len())
            + c.pending_rel.as_ref().map_or(0, |p| p.response.len())
            + c.acks.iter().flatten().map(|k| k.ack.len()).sum::<usize>()
            + c.offer.as_ref().map_or(0, bytes::Bytes::len);
        self.ledger.set_call(id, held);
    }

    /// Bytes of SIP messages held now.
    pub fn stored_bytes(&self) -> usize {
        self.ledger.total()
    }
}
