//! The back-to-back user agent: every call is two independent dialogs — the inside leg
//! (PBX ⇄ SBC) and the outside leg (SBC ⇄ carrier) — each with its own Call-ID, tags, CSeq
//! space, branches, Contact and route set. Nothing crosses from one leg to the other except what
//! policy passes (the header allowlist, the called/calling user parts, the SDP with the relay's
//! addresses and only allowlisted lines, allowlisted body types; `body.rs`, `sdp.rs`,
//! `border.rs`, docs/design.md "Topology hiding").
//!
//! Sans-I/O like the rest of the core: feed [`B2bua::handle_message`] with parsed messages and
//! the time, [`B2bua::handle_timeout`] when [`B2bua::poll_timeout`] is due, then drain
//! [`B2bua::poll_transmit`] and [`B2bua::poll_event`]. Media goes through the [`MediaTable`]
//! the caller passes in for the input (allocate on offer, commit on answer, update on
//! re-offer, release on end); the caller executes the commands it queued afterwards.
//!
//! Flows handled: INVITE with or without SDP (late offer: the answer travels in the ACK);
//! 100 Trying hop-by-hop; 18x with and without SDP; 2xx with end-to-end ACK per leg and 2xx
//! retransmission until the ACK (RFC 3261 §13.3.1.4); non-2xx finals relayed (ACKed hop-by-hop
//! by the transaction); CANCEL (200 on its leg, 487 for the INVITE, CANCEL on the other leg as
//! soon as it had a provisional); BYE, re-INVITE, UPDATE, INFO, MESSAGE, NOTIFY, REFER and
//! in-dialog OPTIONS relayed leg to leg with their responses; 491 on re-INVITE glare; OPTIONS
//! outside a dialog answered by the SBC; 481/482/483/405/501 where RFC 3261 asks for them;
//! Timer B/C/F timeouts (408 to the caller, CANCEL to the callee); a missing ACK and media
//! timeouts end the call with BYE on both legs.
//!
//! Reliable provisionals (RFC 3262) are relayed with RSeq/RAck mapped. New calls are routed
//! (`crate::routing`: routes by called number, inbound DID routes, per-trunk number and header
//! rules, per-trunk admission) and fail over across a trunk's servers and then the route's
//! trunks on timeout, 408 or 5xx.
//!
//! Per leg, the SBC negotiates its own extensions (`extensions.rs`: 420 for what it lacks) and
//! session timers (`session_timer.rs`, RFC 4028); a carrier's 3xx is followed or relayed per
//! trunk (`redirect.rs`) and forked early dialogs reach the caller as one (`fork.rs`).

mod admission;
mod auth_passthrough;
mod body;
mod border;
mod call;
mod caps;
mod codec_policy;
mod codec_snapshot;
mod config;
mod dialogs;
mod dispatch;
mod drain;
mod dtmf_interwork;
mod events;
mod extensions;
mod failover;
mod fork;
mod id_map;

mod in_dialog;
mod kept_request;
mod media_peers;
mod media_policy;
mod msg;
mod new_call;
mod offer_answer;
mod offers;
mod pbx_auth;
mod peer_binding;
mod record;
mod redirect;
mod refusal;
mod register_relay;
mod restore;
mod sdp;
pub(crate) mod sent_request;
mod session_timer;
mod shared_calls;
mod slab;
mod snapshot;
mod srtp_policy;
mod standalone;
mod step_table;
mod t38;
mod teardown;
mod timers;
mod transactions;
mod tx_id;
mod tx_index;
mod uac;
mod uas;

#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

pub use crate::ids::Rng;
pub use crate::media::StreamPayloadMaps;
use admission::{NO_RULES, NotAdmitted, Plan, TrunkId};
use bytes::Bytes;
use call::{Call, CallId, CallState, Leg, Pending2xx, PendingRel, side_index};
pub use call::{CallInfo, LegInfo};
pub use caps::Caps;
pub use codec_snapshot::{CodecRecord, CodecsSnapshot};
pub use config::{
    B2buaConfig, LocalAddr, Manipulation, RegisterPolicy, Target, TrunkAuth, TrunkConfig,
    TrunkLocal,
};
pub use dtmf_interwork::{DtmfMethod, DtmfMode};
pub use events::{Counters, EndReason, Event, Stats};
use failover::{Challenged, Restart};
use id_map::IdMap;
use kept_request::KeptRequest;
pub use media_policy::{MediaPolicy, T38Mode};
use msg::{RequestSpec, ResponseSpec};
use new_call::CalleeInvite;
pub use pbx_auth::{PbxAuthConfig, PbxAuthResult};
pub use peer_binding::PeerMismatch;
pub use record::{CallRecord, Hangup, LegRecord};
pub use redirect::Redirect;
pub use refusal::Refusal;
pub use restore::RestoreError;
pub use sdp::SdpProblem;
use sent_request::SentRequest;
pub use session_timer::SessionTimerConfig;
pub use shared_calls::{SharedCalls, TrunkShare};
pub use snapshot::{
    CallSnapshot, DialogSnapshot, SideName, SnapshotError, StateKey, TimerSnapshot, TransportName,
};
use timers::{TimerQueue, TimerRef};
use transactions::{
    CTx, ClientEntry, ClientFailure, Purpose, STx, ServerEntry, ServerKey, Sink, Transactions,
    TxId, merged_key,
};
use uac::Outgoing;
use uas::ToCaller;

use crate::{
    limit::TokenBucket,
    media::{MediaEvent, MediaTable, SessionId},
    net::{Peer, Side},
    sip::{HeaderName, Limits, Message, Method, StatusCode},
    transaction::{
        Absorbed, InviteClient, InviteServer, InviteServerState, NonInviteClient, NonInviteServer,
        Timer,
    },
};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: Peer,
    /// The bytes of one SIP message.
    pub data: Bytes,
}

/// The B2BUA. One instance owns a set of calls (a shard); it is not shared between threads.
#[derive(Debug)]
pub struct B2bua {
    cfg: B2buaConfig,
    rng: Rng,
    /// Parse limits for the messages the SBC builds itself (not the call admission limits).
    parse_limits: Limits,
    /// Calls boxed: a `Call` is about a kilobyte, and the table keeps up to twice its entries'
    /// worth of empty buckets (and a copy during each resize), which inline calls would fill.
    calls: IdMap<CallId, Box<Call>>,
    next_call: CallId,
    dialogs: dialogs::Dialogs,
    sessions: IdMap<SessionId, CallId>,
    /// Server and client transactions.
    tx: Transactions,
    timers: TimerQueue,
    /// Bytes held per transaction and call.
    ledger: caps::Ledger,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    retransmissions_received: u64,
    retransmissions_sent: u64,
    auth_retries: u64,
    auth_failures: u64,
    /// Trunks marked down by their health check (index as in [`B2bua::set_trunk_usable`]).
    trunk_down: Vec<bool>,
    /// CPS bucket of the global limit, rebuilt when the rate changes.
    cps: Option<TokenBucket>,
    /// CPS bucket per trunk (index as in `cfg.trunks`).
    trunk_cps: Vec<Option<TokenBucket>>,
    /// Calls in progress per trunk (either direction).
    trunk_active: Vec<u32>,
    /// Call counts shared with the other shards' B2BUAs (`shared_calls.rs`).
    shared: SharedCalls,
    /// Each configured trunk's shared count (index as in `cfg.trunks`).
    trunk_slots: Vec<std::sync::Arc<shared_calls::Scope>>,
    /// Admission places taken for the message being handled, given back after it.
    held: Vec<std::sync::Arc<shared_calls::Scope>>,
    /// CPS limits from the shared counts (after [`B2bua::share_calls`]), not `cps` and
    /// `trunk_cps`.
    shared_rates: bool,
    /// The last nonce answered and its use count, so a carrier reusing a nonce sees nc grow
    /// (RFC 7616 §3.4: the server may reject a repeated nonce count as a replay).
    last_nonce: Option<(String, u32)>,
    /// Digest authentication of the PBX: nonce key, replay and failure state.
    pbx_auth: pbx_auth::PbxAuthState,
    /// Relayed challenges awaiting the challenged side's retry (digest pass-through).
    challenges: auth_passthrough::PendingChallenges,
    challenges_relayed: u64,
    auth_relayed_retries: u64,
    /// The PBX's registrations relayed to a trunk.
    registrations: register_relay::Registrations,
    registers_relayed: u64,
    registers_refused: u64,
    /// Calls a message or timer concerned since the last state flush (`snapshot.rs`).
    touched: Vec<CallId>,
    /// Whether call state is reported at all (`Event::CallState`; off unless a store is
    /// configured: the snapshot and its digest cost ~10 % of a call's instructions).
    report_state: bool,
    /// While draining: the Retry-After of the 503 to new calls and OPTIONS (`drain.rs`).
    draining: Option<u32>,
    buf: Vec<u8>,
}

impl B2bua {
    /// A B2BUA with `cfg`, drawing tags, branches and Call-IDs from `rng`.
    pub fn new(cfg: B2buaConfig, rng: Rng) -> Self {
        let cps = cfg.limits.bucket();
        let trunk_cps = cfg.trunks.iter().map(|t| t.limits.bucket()).collect();
        let trunk_active = vec![0; cfg.trunks.len()];
        let shared = SharedCalls::default();
        let trunk_slots = shared.slots(cfg.trunks.iter().map(|t| (t.name.as_str(), t.limits)));
        let next_call = rng
            .shard()
            .map_or(0, |s| (s.index() as u64) << crate::shard::CALL_HANDLE_SHIFT);
        Self {
            cfg,
            rng,
            parse_limits: Limits::default(),
            calls: IdMap::default(),
            // A shard's call handles carry its index in the high bits (the admin API finds
            // the shard of a handle without asking every shard).
            next_call: CallId::from_raw(next_call + 1),
            dialogs: dialogs::Dialogs::default(),
            sessions: IdMap::default(),
            tx: Transactions::default(),
            timers: TimerQueue::default(),
            ledger: caps::Ledger::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmissions_received: 0,
            retransmissions_sent: 0,
            auth_retries: 0,
            auth_failures: 0,
            cps,
            trunk_cps,
            trunk_active,
            shared,
            trunk_slots,
            held: Vec::new(),
            shared_rates: false,
            trunk_down: Vec::new(),
            last_nonce: None,
            pbx_auth: pbx_auth::PbxAuthState::default(),
            challenges: auth_passthrough::PendingChallenges::default(),
            challenges_relayed: 0,
            auth_relayed_retries: 0,
            registrations: register_relay::Registrations::default(),
            registers_relayed: 0,
            registers_refused: 0,
            touched: Vec::new(),
            report_state: false,
            draining: None,
            buf: Vec::with_capacity(2048),
        }
    }

    /// Counters since creation.
    pub fn counters(&self) -> Counters {
        Counters {
            retransmissions_received: self.retransmissions_received,
            retransmissions_sent: self.retransmissions_sent,
            auth_retries: self.auth_retries,
            auth_failures: self.auth_failures,
            challenges_relayed: self.challenges_relayed,
            auth_relayed_retries: self.auth_relayed_retries,
            registers_relayed: self.registers_relayed,
            registers_refused: self.registers_refused,
        }
    }

    /// Live state counts.
    pub fn stats(&self) -> Stats {
        Stats {
            calls: self.calls.len(),
            dialogs: self.dialogs.len(),
            server_transactions: self.tx.len().0,
            client_transactions: self.tx.len().1,
            timers: self.timers.len(),
            stored_bytes: self.ledger.total(),
            stored_entries: self.ledger.entries(),
        }
    }

    /// Replaces the configuration. Calls in progress keep the addresses and targets they
    /// were set up with (they live in each call's legs); new calls use the new values.
    ///
    /// Trunks are matched by name across the change: a call on a trunk that is kept stays
    /// attributed to it (its limits, its credentials for challenges to later requests); a call
    /// on a removed trunk keeps running without one. Health states start over (unknown =
    /// usable) and are re-applied by the caller.
    pub fn set_config(&mut self, cfg: B2buaConfig) {
        // Keep a bucket's state while its rate stays, so a reload does not grant a new burst.
        if self.cps.as_ref().map(TokenBucket::rate) != cfg.limits.max_cps {
            self.cps = cfg.limits.bucket();
        }
        let remap: Vec<Option<TrunkId>> = self
            .cfg
            .trunks
            .iter()
            .map(|old| {
                cfg.trunks
                    .iter()
                    .position(|t| t.name == old.name)
                    .map(TrunkId::new)
            })
            .collect();
        let mut trunk_cps: Vec<Option<TokenBucket>> =
            cfg.trunks.iter().map(|t| t.limits.bucket()).collect();
        for (old, new) in remap.iter().enumerate() {
            if let Some(new) = new.map(TrunkId::index)
                && let Some(Some(b)) = self.trunk_cps.get_mut(old)
                && Some(b.rate()) == cfg.trunks[new].limits.max_cps
            {
                trunk_cps[new] = Some(b.clone());
            }
        }
        self.uncount_shared_trunks();
        let map = |t: Option<TrunkId>| t.and_then(|t| remap.get(t.index()).copied().flatten());
        let mut active = vec![0u32; cfg.trunks.len()];
        for c in self.calls.values_mut() {
            c.trunk = map(c.trunk);
            c.next_trunks = c.next_trunks.iter().filter_map(|t| map(Some(*t))).collect();
            if let Some(t) = c.trunk {
                active[t.index()] += 1;
            }
        }
        for e in self.tx.clients_mut() {
            e.trunk = map(e.trunk);
        }
        self.trunk_cps = trunk_cps;
        self.trunk_active = active;
        self.trunk_down.clear();
        self.cfg = cfg;
        self.recount_shared_trunks();
    }

    /// The current configuration.
    pub fn config(&self) -> &B2buaConfig {
        &self.cfg
    }

    /// A view of every call, ordered by handle (oldest first).
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut out: Vec<CallInfo> = self.calls.iter().map(|(id, c)| c.info(id.raw())).collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// A view of one call.
    pub fn call(&self, id: u64) -> Option<CallInfo> {
        self.calls.get(&CallId::from_raw(id)).map(|c| c.info(id))
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`B2bua::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first()
    }

    /// Handles a message received from `peer` (already parsed and accepted by policy).
    pub fn handle_message(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        media: &mut MediaTable,
    ) {
        if msg.is_request() {
            self.on_request(now, peer, msg, media);
        } else {
            self.on_response(now, peer, msg, media);
        }
        self.drain_media(now, media);
        self.flush_state(now, media);
    }

    /// Fires every timer due at `now`, and handles media events.
    pub fn handle_timeout(&mut self, now: Instant, media: &mut MediaTable) {
        while let Some(which) = self.timers.pop_due(now) {
            match which {
                TimerRef::Server(id) => {
                    if let Some(e) = self.tx.server_mut(id) {
                        match &mut e.tx {
                            STx::Invite(t) => t.handle_timeout(now),
                            STx::NonInvite(t) => t.handle_timeout(now),
                        }
                        self.tx.resending(which);
                        self.after_server(id);
                        self.tx.resent();
                    }
                }
                TimerRef::Client(id) => {
                    if let Some(e) = self.tx.client_mut(id) {
                        if let Some(call) = e.call
                            && self.report_state
                        {
                            // A refresh or BYE timing out changes the call.
                            self.touched.push(call);
                        }
                        match &mut e.tx {
                            CTx::Invite(t) => t.handle_timeout(now),
                            CTx::NonInvite(t) => t.handle_timeout(now),
                        }
                        self.tx.resending(which);
                        self.after_client(now, id, media);
                        self.tx.resent();
                    }
                }
                TimerRef::Call(id) => {
                    self.touch(id);
                    self.call_timer(now, id, media);
                }
            }
        }
        self.drain_media(now, media);
        self.flush_state(now, media);
    }

    /// Ends a call from outside (admin API): BYE on both legs once answered, CANCEL/487 before.
    pub fn end_call(&mut self, now: Instant, call: u64, media: &mut MediaTable) -> bool {
        let call = CallId::from_raw(call);
        if !self.calls.contains_key(&call) {
            return false;
        }
        self.terminate(now, call, EndReason::Bye, media);
        self.flush_state(now, media);
        true
    }
}

/// Max-Forwards of a request relayed for one that arrived with `received` (RFC 3261 §16.6
/// item 3: decremented, never reset, so a loop through B2BUAs ends with 483 where it reaches
/// 0; requests arriving with 0 are refused before they get here).
const fn forwarded_max_forwards(received: u8) -> u8 {
    received.saturating_sub(1)
}

/// The first Contact that can be a remote target: a SIP or SIPS URI (RFC 3261 §8.1.1.8,
/// §12.1.1). Any other scheme is ignored, so a peer cannot make the SBC address in-dialog
/// requests to a URI it would itself refuse (416).
fn first_contact(msg: &Message) -> Option<String> {
    msg.contacts().find_map(|c| {
        let c = c.ok()?;
        let a = c.addr()?;
        matches!(a.uri, crate::sip::Uri::Sip(_)).then(|| a.uri_str.to_owned())
    })
}

fn request_user(msg: &Message) -> Option<&str> {
    // Borrowed from the message: most callers only read it.
    fn from_uri(u: crate::sip::Uri<'_>) -> Option<&str> {
        match u {
            crate::sip::Uri::Sip(s) => s.user,
            crate::sip::Uri::Tel(t) => Some(t.raw.trim_start_matches("tel:")),
            crate::sip::Uri::Other(_) => None,
        }
    }
    msg.request_uri()
        .and_then(from_uri)
        .or_else(|| from_uri(msg.to().uri))
}
