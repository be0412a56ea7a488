//! The transaction table: the server and client transactions of one B2BUA in slabs behind
//! `Copy` handles ([`TxId`]), matched by borrowed keys (RFC 3261 §17.1.3, §17.2.3) without
//! building a string per message.
//!
//! The table is bookkeeping only: it drains a transaction's output into the transmit queue,
//! arms or cancels its timer, accounts its bytes and removes it when it terminates. What a
//! failed client transaction means for its call is not decided here: [`Transactions::drain_client`]
//! returns a [`ClientFailure`] and the caller applies policy (`failover.rs`), so nothing in this
//! module calls back into call handling.

use std::{
    collections::VecDeque,
    hash::{BuildHasher, RandomState},
    time::Instant,
};

use bytes::Bytes;

pub(super) use super::tx_id::TxId;
use super::{
    Transmit,
    admission::TrunkId,
    call::CallId,
    caps::Ledger,
    kept_request::KeptRequest,
    slab::Slab,
    timers::{TimerQueue, TimerRef},
    tx_index::TxIndex,
};
use crate::{
    net::{Peer, Side},
    sip::{Host, MAGIC_COOKIE, Message, Method},
    transaction::{InviteClient, InviteServer, NonInviteClient, NonInviteServer, Timer, TxEvent},
};

#[derive(Debug)]
pub(super) enum STx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

/// What a server transaction is matched by (RFC 3261 §17.2.3): the top Via's branch (or, for
/// RFC 2543 peers without the magic cookie, Request-URI, From tag, Call-ID and CSeq), its
/// sent-by, and the method, with ACK matching its INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerKey {
    id: Box<str>,
    host: SentBy,
    port: u16,
    method: Method,
}

impl ServerKey {
    /// The key of request `msg`.
    pub(super) fn of(msg: &Message) -> Self {
        let via = msg.top_sent_by();
        Self {
            id: match_id(msg).into(),
            host: SentBy::of(&via.host),
            port: via.port.unwrap_or(5060),
            method: match_method(msg),
        }
    }
}

/// The host of a Via sent-by, owned (compared exactly, as received).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SentBy {
    Domain(Box<str>),
    Ipv4(std::net::Ipv4Addr),
    Ipv6(std::net::Ipv6Addr),
}

impl SentBy {
    fn of(host: &Host<'_>) -> Self {
        match host {
            Host::Domain(d) => Self::Domain((*d).into()),
            Host::Ipv4(a) => Self::Ipv4(*a),
            Host::Ipv6(a) => Self::Ipv6(*a),
        }
    }

    fn is(&self, host: &Host<'_>) -> bool {
        match (self, host) {
            (Self::Domain(a), Host::Domain(b)) => **a == **b,
            (Self::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Self::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

/// The branch, or the RFC 2543 fallback key (rare: allocated only for such peers).
fn match_id(msg: &Message) -> std::borrow::Cow<'_, str> {
    if let Some(branch) = msg.top_branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
        return branch.into();
    }
    let mut id = String::from("2543|");
    for part in [
        msg.request_uri_str().unwrap_or(""),
        msg.from_tag().unwrap_or(""),
        msg.call_id(),
    ] {
        id.push_str(part);
        id.push('|');
    }
    id.push_str(&msg.cseq().seq.to_string());
    id.into()
}

fn match_method(msg: &Message) -> Method {
    match msg.method() {
        Some(Method::Ack) | None => Method::Invite,
        Some(m) => m.clone(),
    }
}

#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) key: ServerKey,
    pub(super) tx: STx,
    pub(super) peer: Peer,
    /// Whole until the final response was sent (`kept_request.rs`).
    pub(super) request: KeptRequest,
    pub(super) call: Option<CallId>,
    /// Our To tag for responses to this request.
    pub(super) to_tag: Option<String>,
    /// The request relayed for it on the other leg.
    pub(super) relay: Option<TxId>,
    /// Key in the merged-request index (RFC 3261 §8.2.2.2).
    pub(super) merged: Option<MergedKey>,
}

/// (Call-ID, From tag, CSeq number) of an initial request, for merged-request detection.
pub(super) type MergedKey = (String, String, u32);

#[derive(Debug)]
pub(super) enum CTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The INVITE that created the call, on the callee leg.
    Initial,
    /// A request relayed for the server transaction `server` on the other leg.
    Relay { server: TxId },
    /// A request of the SBC's own (BYE on teardown, CANCEL): responses are absorbed.
    Own,
}

#[derive(Debug)]
pub(super) struct ClientEntry {
    /// Our branch (a CANCEL shares its INVITE's).
    pub(super) branch: Box<str>,
    pub(super) cancel: bool,
    pub(super) tx: CTx,
    pub(super) peer: Peer,
    /// Whole until the final response arrived (`kept_request.rs`).
    pub(super) request: KeptRequest,
    /// The call it belongs to; None for relays outside any call (MESSAGE, REGISTER).
    pub(super) call: Option<CallId>,
    pub(super) side: Side,
    pub(super) purpose: Purpose,
    /// How many times this request was already resent with credentials (the retry of a
    /// challenged request inherits the count + 1).
    pub(super) auth_attempts: u8,
    /// The trunk the request went to (its credentials answer a challenge), on the outside.
    pub(super) trunk: Option<TrunkId>,
}

/// A client transaction that ended without a final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientFailure {
    pub(super) call: Option<CallId>,
    pub(super) side: Side,
    pub(super) purpose: Purpose,
    /// The timer that ran out (B, F or C), or None for a transport error.
    pub(super) timer: Option<Timer>,
    /// It was the SBC's own session refresh (RFC 4028 §10: its failure ends the session).
    pub(super) own_refresh: bool,
}

/// Where a drained transaction's output goes.
#[derive(Debug)]
pub(super) struct Sink<'a> {
    pub(super) transmits: &'a mut VecDeque<Transmit>,
    pub(super) timers: &'a mut TimerQueue,
    pub(super) ledger: &'a mut Ledger,
    pub(super) retransmissions_sent: &'a mut u64,
}

/// Every live transaction of one B2BUA.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    server: Slab<ServerEntry>,
    /// Server transactions by branch (or RFC 2543 key); the rest of the key is compared on
    /// the few entries found.
    server_index: TxIndex,
    /// The server transaction of each INVITE's (Call-ID, From tag, CSeq number), for
    /// merged requests (RFC 3261 §8.2.2.2); the key stays in the entry
    /// ([`ServerEntry::merged`]).
    merged: TxIndex,
    client: Slab<ClientEntry>,
    /// Client transactions by our branch (a CANCEL shares its request's); one per branch and
    /// kind (request or CANCEL).
    client_index: TxIndex,
    /// `std`'s keyed SipHash for the three indexes: their keys come from the wire, so an
    /// outsider must not be able to aim them at one bucket.
    hasher: RandomState,
    /// The transaction whose output is a retransmission (set while its timer fires or while
    /// it answers an absorbed retransmission), for `retransmissions_sent`.
    resending: Option<TimerRef>,
}

impl Transactions {
    /// The server transaction request `msg` belongs to (a retransmission, or the INVITE of
    /// an ACK).
    pub(super) fn find_server(&self, msg: &Message) -> Option<TxId> {
        let via = msg.top_sent_by();
        let method = match msg.method() {
            Some(Method::Ack) | None => &Method::Invite,
            Some(m) => m,
        };
        self.find(
            &match_id(msg),
            |h| h.is(&via.host),
            via.port.unwrap_or(5060),
            method,
        )
    }

    /// The INVITE server transaction a CANCEL with `key` cancels (same branch, §9.2).
    pub(super) fn find_invite_of(&self, key: &ServerKey) -> Option<TxId> {
        self.find(&key.id, |h| *h == key.host, key.port, &Method::Invite)
    }

    fn find(
        &self,
        id: &str,
        host: impl Fn(&SentBy) -> bool,
        port: u16,
        method: &Method,
    ) -> Option<TxId> {
        self.server_index.find(self.hasher.hash_one(id), |t| {
            self.server.get(t.0).is_some_and(|e| {
                &*e.key.id == id
                    && host(&e.key.host)
                    && e.key.port == port
                    && e.key.method == *method
            })
        })
    }

    /// Adds a server transaction (and its merged-request entry).
    pub(super) fn insert_server(&mut self, entry: ServerEntry) -> TxId {
        let index = self.hasher.hash_one(&*entry.key.id);
        let merged = entry
            .merged
            .as_ref()
            .map(|(call_id, tag, seq)| self.merged_hash(call_id, tag, *seq));
        let id = TxId(self.server.insert(entry));
        self.server_index.insert(index, id);
        if let Some(hash) = merged {
            // A transaction already indexed under the same key is replaced, as a map insert
            // would.
            let server = &self.server;
            let key = |t: TxId| server.get(t.0).and_then(|e| e.merged.as_ref());
            let mine = key(id);
            self.merged
                .replace(hash, id, |t| t != id && mine.is_some() && key(t) == mine);
        }
        id
    }

    /// The server transaction of an earlier request merged with `key` (same Call-ID, From
    /// tag and CSeq, another branch: RFC 3261 §8.2.2.2).
    pub(super) fn merged_with(&self, call_id: &str, from_tag: &str, seq: u32) -> Option<TxId> {
        let hash = self.merged_hash(call_id, from_tag, seq);
        self.merged.find(hash, |tx| {
            self.server.get(tx.0).is_some_and(|s| {
                s.merged
                    .as_ref()
                    .is_some_and(|(c, t, n)| c == call_id && t == from_tag && *n == seq)
            })
        })
    }

    pub(super) fn server(&self, id: TxId) -> Option<&ServerEntry> {
        self.server.get(id.0)
    }

    pub(super) fn server_mut(&mut self, id: TxId) -> Option<&mut ServerEntry> {
        self.server.get_mut(id.0)
    }

    /// The client transaction a response with top-Via `branch` answers.
    pub(super) fn find_client(&self, branch: &str, cancel: bool) -> Option<TxId> {
        let client = &self.client;
        self.client_index.find(self.hasher.hash_one(branch), |t| {
            client
                .get(t.0)
                .is_some_and(|e| &*e.branch == branch && e.cancel == cancel)
        })
    }

    /// Adds a client transaction; one already indexed with its branch and kind is no longer
    /// found by responses (the newer one answers for that branch).
    pub(super) fn insert_client(&mut self, entry: ClientEntry) -> TxId {
        let hash = self.hasher.hash_one(&*entry.branch);
        let id = TxId(self.client.insert(entry));
        let client = &self.client;
        let mine = client.get(id.0).map(|e| (&e.branch, e.cancel));
        self.client_index.replace(hash, id, |t| {
            t != id && mine.is_some() && client.get(t.0).map(|e| (&e.branch, e.cancel)) == mine
        });
        id
    }

    /// Bytes of the branch indexes (the size test of `tests/caps.rs`).
    #[cfg(test)]
    pub(super) fn index_bytes(&self) -> usize {
        self.server_index.bytes() + self.client_index.bytes()
    }

    /// The merged-request index's hash of (Call-ID, From tag, CSeq number), as a whole.
    fn merged_hash(&self, call_id: &str, from_tag: &str, seq: u32) -> u64 {
        self.hasher.hash_one((call_id, from_tag, seq))
    }

    pub(super) fn client(&self, id: TxId) -> Option<&ClientEntry> {
        self.client.get(id.0)
    }

    pub(super) fn client_mut(&mut self, id: TxId) -> Option<&mut ClientEntry> {
        self.client.get_mut(id.0)
    }

    /// Every client transaction (configuration reload remaps their trunks).
    pub(super) fn clients_mut(&mut self) -> impl Iterator<Item = &mut ClientEntry> {
        self.client.values_mut()
    }

    /// Transactions that still hold their request whole (`kept_request.rs`).
    #[cfg(test)]
    pub(super) fn whole_requests(&self) -> usize {
        self.server
            .values()
            .filter(|e| e.request.message().is_some())
            .count()
            + self
                .client
                .values()
                .filter(|e| e.request.message().is_some())
                .count()
    }

    /// Live server and client transactions.
    pub(super) fn len(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// Client transactions still waiting for a final response (the drain waits for them).
    pub(super) fn awaiting_final(&self) -> usize {
        use crate::transaction::{InviteClientState as Inv, NonInviteClientState as Non};
        self.client
            .values()
            .filter(|e| match &e.tx {
                CTx::Invite(t) => matches!(t.state(), Inv::Calling | Inv::Proceeding),
                CTx::NonInvite(t) => matches!(t.state(), Non::Trying | Non::Proceeding),
            })
            .count()
    }

    /// Marks `owner`'s output, until [`Transactions::resent`], as retransmissions.
    pub(super) fn resending(&mut self, owner: TimerRef) {
        self.resending = Some(owner);
    }

    /// Ends [`Transactions::resending`].
    pub(super) fn resent(&mut self) {
        self.resending = None;
    }

    /// Moves server transaction `id`'s output out, re-arms its timer, re-counts its bytes,
    /// and removes it once it terminated.
    pub(super) fn drain_server(&mut self, id: TxId, sink: Sink<'_>) {
        let owner = TimerRef::Server(id);
        let resend = self.resending == Some(owner);
        let Some(e) = self.server.get_mut(id.0) else {
            return;
        };
        let mut terminated = false;
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            sink.retransmissions_sent,
            sink.transmits,
            |event| terminated |= event == TxEvent::Terminated,
        );
        match deadline {
            Some(at) if !terminated => sink.timers.set(owner, at),
            _ => sink.timers.cancel(&owner),
        }
        if !terminated {
            if e.tx.answered() {
                e.request.release();
            }
            sink.ledger
                .set_server(id, e.request.held_bytes() + e.tx.held_bytes());
            return;
        }
        sink.ledger.remove_server(id);
        if let Some(e) = self.server.remove(id.0) {
            self.server_index
                .remove(self.hasher.hash_one(&*e.key.id), id);
            if let Some((call_id, tag, seq)) = &e.merged {
                let hash = self.merged_hash(call_id, tag, *seq);
                self.merged.remove(hash, id);
            }
        }
    }

    /// Moves client transaction `id`'s output out, re-arms its timer, re-counts its bytes,
    /// and removes it once it terminated. Returns how it failed, if it did: the caller decides
    /// what that means for the call.
    pub(super) fn drain_client(&mut self, id: TxId, sink: Sink<'_>) -> Option<ClientFailure> {
        let owner = TimerRef::Client(id);
        let resend = self.resending == Some(owner);
        let e = self.client.get_mut(id.0)?;
        let mut terminated = false;
        let mut failure = None;
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            sink.retransmissions_sent,
            sink.transmits,
            |event| match event {
                TxEvent::Terminated => terminated = true,
                TxEvent::TimedOut(t) => failure = Some(Some(t)),
                TxEvent::TransportError => failure = Some(None),
            },
        );
        let failure = failure.map(|timer| ClientFailure {
            call: e.call,
            side: e.side,
            purpose: e.purpose,
            timer,
            own_refresh: e.purpose == Purpose::Own && *e.request.method() == Method::Update,
        });
        match deadline {
            Some(at) if !terminated => sink.timers.set(owner, at),
            _ => sink.timers.cancel(&owner),
        }
        if terminated {
            sink.ledger.remove_client(id);
            if let Some(e) = self.client.remove(id.0) {
                self.client_index
                    .remove(self.hasher.hash_one(&*e.branch), id);
            }
        } else {
            if e.tx.answered() {
                e.request.release();
            }
            // The request is shared between the entry and the machine (which lets it go with
            // the final response too): counted once.
            sink.ledger.set_client(id, e.tx.held_bytes());
        }
        failure
    }
}

/// The outputs every transaction machine has, whichever of the four it is.
trait Machine {
    /// Whether the transaction had its final response (sent or received), so that its
    /// request is no longer needed whole.
    fn answered(&self) -> bool;
    fn held_bytes(&self) -> usize;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<TxEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
}

macro_rules! machine_for {
    ($ty:ident) => {
        impl Machine for $ty {
            fn answered(&self) -> bool {
                match self {
                    Self::Invite(t) => t.answered(),
                    Self::NonInvite(t) => t.answered(),
                }
            }
            fn held_bytes(&self) -> usize {
                match self {
                    Self::Invite(t) => t.held_bytes(),
                    Self::NonInvite(t) => t.held_bytes(),
                }
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                match self {
                    Self::Invite(t) => t.poll_transmit(),
                    Self::NonInvite(t) => t.poll_transmit(),
                }
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                match self {
                    Self::Invite(t) => t.poll_event(),
                    Self::NonInvite(t) => t.poll_event(),
                }
            }
            fn poll_timeout(&self) -> Option<Instant> {
                match self {
                    Self::Invite(t) => t.poll_timeout(),
                    Self::NonInvite(t) => t.poll_timeout(),
                }
            }
        }
    };
}

machine_for!(STx);

machine_for!(CTx);

/// Moves everything `tx` has to send to `transmits` (toward `peer`; counted as retransmissions
/// when `resend`), hands each of its events to `on_event`, and returns its next deadline.
fn drain(
    tx: &mut impl Machine,
    peer: Peer,
    resend: bool,
    retransmissions_sent: &mut u64,
    transmits: &mut VecDeque<Transmit>,
    mut on_event: impl FnMut(TxEvent),
) -> Option<Instant> {
    loop {
        let data = tx.poll_transmit();
        let event = tx.poll_event();
        if data.is_none() && event.is_none() {
            break;
        }
        if let Some(data) = data {
            if resend {
                *retransmissions_sent += 1;
            }
            transmits.push_back(Transmit { to: peer, data });
        }
        if let Some(event) = event {
            on_event(event);
        }
    }
    tx.poll_timeout()
}

/// (Call-ID, From tag, CSeq number) of an initial request, for merged-request detection.
pub(super) fn merged_key(msg: &Message) -> Option<MergedKey> {
    Some((
        msg.call_id().to_owned(),
        msg.from_tag()?.to_owned(),
        msg.cseq().seq,
    ))
}

#[cfg(test)]
mod merged_tests {
    use super::Transactions;

    #[test]
    fn a_merged_key_is_hashed_as_a_whole() {
        // Another CSeq or tag is another hash (as a rule: SipHash collisions are confirmed
        // against the entry anyway).
        let t = Transactions::default();
        assert_eq!(t.merged_hash("c@h", "t", 1), t.merged_hash("c@h", "t", 1));
        assert_ne!(t.merged_hash("c@h", "t", 1), t.merged_hash("c@h", "t", 2));
        assert_ne!(t.merged_hash("c@h", "t", 1), t.merged_hash("c@h", "u", 1));
    }
}
