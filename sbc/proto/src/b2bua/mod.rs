//! The back-to-back user agent: every call is two independent dialogs — the inside leg
//! (PBX ⇄ SBC) and the outside leg (SBC ⇄ carrier) — each with its own Call-ID, tags, CSeq
//! space, branches, Contact and route set. Nothing crosses from one leg to the other except what
//! policy passes (the header allowlist, the called/calling user parts, the SDP with the relay's
//! addresses and only allowlisted lines, allowlisted body types; `body.rs`, `sdp.rs`,
//! `border.rs`, docs/design.md "Topology hiding").
//!
//! Sans-I/O like the rest of the core: feed [`B2bua::handle_message`] with parsed messages and
//! the time, [`B2bua::handle_timeout`] when [`B2bua::poll_timeout`] is due, then drain
//! [`B2bua::poll_transmit`] and [`B2bua::poll_event`]. Media goes through the
//! [`MediaControl`] the caller passes in (allocate on offer, commit on answer, update on
//! re-offer, release on end).
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

mod auth_passthrough;
mod body;
mod border;
mod caps;
mod config;
mod extensions;
mod fork;
mod ids;
mod media_peers;
mod msg;
mod pbx_auth;
mod peer_binding;
mod record;
mod redirect;
mod register_relay;
mod sdp;
mod session_timer;
mod timers;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;
pub use caps::Caps;
pub use config::{
    B2buaConfig, LocalAddr, Manipulation, RegisterPolicy, Target, TrunkAuth, TrunkConfig,
    TrunkLocal,
};
pub use ids::Rng;
use msg::{RequestSpec, ResponseSpec};
pub use pbx_auth::{PbxAuthConfig, PbxAuthResult};
pub use peer_binding::PeerMismatch;
pub use record::{CallRecord, Hangup, LegRecord};
pub use redirect::Redirect;
pub use sdp::SdpProblem;
pub use session_timer::SessionTimerConfig;
use timers::{TimerQueue, TimerRef};

use crate::{
    limit::TokenBucket,
    media::{MediaControl, MediaEvent, SessionId},
    net::{Peer, Side},
    sip::{HeaderName, Limits, Message, Method},
    transaction::{
        Absorbed, InviteClient, InviteServer, InviteServerState, NonInviteClient, NonInviteServer,
        Timer, TxEvent,
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

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A BYE from either side.
    Bye,
    /// The callee (or the SBC) rejected the call with this final status.
    Rejected(u16),
    /// The caller cancelled before the answer.
    Cancelled,
    /// No final response in time (Timer B or C).
    Timeout,
    /// The 2xx was never ACKed.
    NoAck,
    /// No media flowed for the configured time.
    MediaTimeout,
    /// The maximum call duration was reached.
    MaxDuration,
    /// A transport failure.
    TransportError,
    /// A leg's session timer ran out without a refresh (RFC 4028 §10), or a refresh of ours
    /// was answered 408/481 or timed out.
    SessionExpired,
}

impl EndReason {
    /// Label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Bye => "bye",
            EndReason::Rejected(_) => "rejected",
            EndReason::Cancelled => "cancelled",
            EndReason::Timeout => "timeout",
            EndReason::NoAck => "no_ack",
            EndReason::MediaTimeout => "media_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::TransportError => "transport_error",
            EndReason::SessionExpired => "session_expired",
        }
    }
}

/// What happened, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new call arrived from `from`.
    CallStarted {
        /// Call handle.
        call: u64,
        /// Side of the caller.
        from: Side,
        /// The carrier-side trunk (index in the configuration's trunk list), if any.
        trunk: Option<usize>,
    },
    /// The callee sent its first provisional response above 100 (180/183): the end of the
    /// post-dial delay.
    CallProgress {
        /// Call handle.
        call: u64,
    },
    /// The call was answered.
    CallAnswered {
        /// Call handle.
        call: u64,
    },
    /// The call is over; both dialogs and its media are released.
    CallEnded {
        /// Call handle.
        call: u64,
        /// Why.
        reason: EndReason,
    },
    /// A call's INVITE failed on one trunk (timeout, 408, 5xx) and goes to the next one.
    Failover {
        /// Call handle.
        call: u64,
        /// Index of the trunk that failed.
        from: usize,
        /// Index of the trunk tried next.
        to: usize,
        /// The status that caused it (408 for a timeout, 503 for a transport error).
        status: u16,
    },
    /// A new call was refused with 503 by call admission control.
    AdmissionRejected {
        /// Side of the caller.
        from: Side,
        /// Which limit (bounded set, usable as a metric label): `max_calls`, `max_cps`,
        /// `trunk_max_calls` or `trunk_max_cps`.
        limit: &'static str,
    },
    /// A new request from the PBX went through digest authentication (see `pbx_auth.rs`).
    PbxAuth {
        /// What the SBC did with its credentials.
        result: PbxAuthResult,
    },
    /// A new call (or a MESSAGE) was refused with 404: no outbound route takes its called
    /// number.
    NoRoute,
    /// A carrier's 3xx to a call's INVITE on a trunk that recurses (`redirect.rs`).
    Redirect {
        /// Call handle.
        call: u64,
        /// `followed` (the INVITE went to one of its Contacts), `limit` (`max_redirects`
        /// reached) or `no_target` (no usable Contact left); in the last two the 3xx is relayed.
        outcome: &'static str,
    },
    /// A message in a dialog or transaction did not come from its peer (481 or dropped; see
    /// `peer_binding.rs`).
    PeerMismatch {
        /// Side it arrived on (the leg's side).
        side: Side,
        /// What did not match.
        kind: PeerMismatch,
    },
    /// Something stopped at the border (topology hiding, SDP address validation): a body type
    /// refused (415) or dropped, or SDP that cannot be anchored (488). See `body.rs`, `sdp.rs`.
    BorderRefusal {
        /// Why (bounded set, usable as a metric label): `body_*` or `sdp_*`.
        reason: &'static str,
    },
    /// A message was dropped without an answer.
    Dropped {
        /// Why (bounded set, usable as a metric label).
        reason: &'static str,
    },
    /// One call attempt is over: the facts for its detail record (`record.rs`).
    CallRecord(Box<CallRecord>),
}

/// Counts of live state, for leak checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Calls (any state).
    pub calls: usize,
    /// Dialog index entries (two per established call).
    pub dialogs: usize,
    /// Server transactions.
    pub server_transactions: usize,
    /// Client transactions.
    pub client_transactions: usize,
    /// Armed timers (one per transaction or call at most).
    pub timers: usize,
    /// Bytes of SIP messages held (see [`Caps::max_stored_bytes`]).
    pub stored_bytes: usize,
    /// Owners in the stored-bytes ledger (transactions and calls holding messages).
    pub stored_entries: usize,
}

/// Counters since the B2BUA was created, for metrics (unlike [`Stats`], they never go down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Request retransmissions received and absorbed by a server transaction.
    pub retransmissions_received: u64,
    /// Messages sent again: requests and responses resent by a transaction's timer (A, E, G),
    /// responses resent for an absorbed request retransmission, and 2xx resent until the ACK
    /// (RFC 3261 §13.3.1.4).
    pub retransmissions_sent: u64,
    /// Requests resent with credentials after a 401/407 from the trunk.
    pub auth_retries: u64,
    /// Trunk requests whose challenge could not be answered, or whose authenticated retry was
    /// challenged again (turned into 403 toward the caller).
    pub auth_failures: u64,
    /// 401/407 relayed with their challenge to the other side (digest pass-through).
    pub challenges_relayed: u64,
    /// Retries of a challenged INVITE mapped onto the challenged callee dialog.
    pub auth_relayed_retries: u64,
    /// REGISTERs from the PBX relayed to a trunk.
    pub registers_relayed: u64,
    /// REGISTERs from the PBX answered by the SBC itself (405 when rejected by policy, 503
    /// when the bindings are full, 400 without an AOR).
    pub registers_refused: u64,
}

/// A read-only view of one call, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Call handle (stable for the call's life; use it to end the call).
    pub id: u64,
    /// Side of the caller.
    pub from: Side,
    /// Whether the call was answered.
    pub answered: bool,
    /// When the INVITE arrived.
    pub started: Instant,
    /// When it was answered.
    pub answered_at: Option<Instant>,
    /// Media session, if any.
    pub media: Option<SessionId>,
    /// The carrier-side trunk (index in the configuration's trunk list), if any.
    pub trunk: Option<usize>,
    /// The inside leg, then the outside leg.
    pub legs: [LegInfo; 2],
}

/// A read-only view of one leg (dialog) of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegInfo {
    /// Side.
    pub side: Side,
    /// The dialog's Call-ID on this leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Where requests on this leg go.
    pub peer: Peer,
}

#[derive(Debug)]
struct Leg {
    peer: Peer,
    /// The SBC's address on this leg (Via, Contact): the listener the caller used, or the
    /// trunk's configured local address.
    local: LocalAddr,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From (UAC leg) or To (UAS leg) value, with our tag.
    local_hdr: String,
    /// The peer's value, with its tag once known.
    remote_hdr: String,
    local_cseq: u32,
    remote_target: String,
    route_set: Vec<String>,
    origin: sdp::Origin,
    /// Client key of an INVITE we have outstanding on this leg (for 491 glare detection).
    invite_out: Option<String>,
    /// This leg's session timer (RFC 4028), once negotiated.
    session: Option<session_timer::LegTimer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Early,
    Confirmed,
}

/// A 2xx we retransmit to `leg` until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    leg: Side,
    cseq: u32,
    response: Bytes,
    next: Instant,
    interval: Duration,
    deadline: Instant,
    /// Late offer: the other leg's 2xx is ACKed (with the answer) only when this ACK arrives.
    ack_other_cseq: Option<u32>,
}

/// A reliable provisional retransmitted to the caller until PRACKed (RFC 3262 §3).
#[derive(Debug)]
struct PendingRel {
    rseq: u32,
    response: Bytes,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct Call {
    origin: Side,
    started: Instant,
    answered_at: Option<Instant>,
    legs: [Leg; 2],
    state: CallState,
    media: Option<SessionId>,
    initial_server: String,
    initial_client: String,
    provisional_seen: bool,
    cancel_pending: bool,
    canceled: bool,
    pending_2xx: Option<Pending2xx>,
    /// The caller's INVITE supports or requires 100rel (RFC 3262).
    caller_100rel: bool,
    /// RSeq of the next reliable provisional to the caller.
    next_rseq: u32,
    /// A reliable provisional to the caller awaiting its PRACK.
    pending_rel: Option<PendingRel>,
    /// Our RSeq → the callee's RSeq, for mapping the caller's RAck.
    rseq_map: Vec<(u32, u32)>,
    /// Last callee RSeq seen (its retransmissions are not relayed again).
    last_callee_rseq: Option<u32>,
    /// Last 2xx-ACK sent on each leg, resent when that leg retransmits its 2xx.
    acks: [Option<(u32, Bytes)>; 2],
    ends_at: Option<Instant>,
    /// The trunk of the carrier leg (index into `cfg.trunks`); None when the carrier is no
    /// configured trunk.
    trunk: Option<usize>,
    /// Outbound calls: the trunks still to try after `trunk`, in the route's order.
    next_trunks: Vec<usize>,
    /// Which of the trunk's servers the carrier leg uses: 0 = its target, i = alternate i-1.
    server: usize,
    /// Outbound calls: the offer sent to the carrier, reused on failover and redirects.
    offer: Option<Bytes>,
    /// Redirect targets already tried (3xx recursion, `redirect.rs`).
    redirects: redirect::Tried,
    /// The carrier's early dialogs (forking, `fork.rs`).
    forks: fork::Forks,
    /// What the call's detail record needs beyond the dialogs (`record.rs`).
    facts: record::Facts,
}

/// Where a new call goes, decided before anything is set up for it.
#[derive(Debug)]
struct Plan {
    /// The carrier-side trunk: the chosen one (outbound) or the sending one (inbound).
    trunk: Option<usize>,
    /// Outbound: the trunks to try next, in order.
    next_trunks: Vec<usize>,
    /// Where the new leg goes.
    target: Target,
    /// A retry of a challenged INVITE: the callee dialog it continues.
    resume: Option<auth_passthrough::Resume>,
}

/// A callee-leg INVITE and the dialog values it set.
#[derive(Debug)]
struct OutInvite {
    bytes: Bytes,
    ruri: String,
    from_hdr: String,
    to_hdr: String,
}

/// Why a new call is refused before it is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No outbound route takes the called number (404).
    NoRoute,
    /// A call admission limit (503 + Retry-After); the value is the metric label.
    Limit(&'static str),
}

/// No number or header rules (calls whose carrier side is not a configured trunk).
static NO_RULES: Manipulation = Manipulation {
    called: Vec::new(),
    calling: Vec::new(),
    headers: Vec::new(),
};

impl Leg {
    /// An in-dialog request on this leg (RFC 3261 §12.2.1.1): to the remote target through the
    /// route set, our From and the peer's To, the leg's Call-ID. No body, no Contact, no extra
    /// headers, Max-Forwards 70; callers override what differs.
    fn request<'a>(
        &'a self,
        method: &'a Method,
        local: LocalAddr,
        branch: &'a str,
        cseq: u32,
        user_agent: &'a str,
    ) -> RequestSpec<'a> {
        RequestSpec {
            method,
            ruri: &self.remote_target,
            local,
            branch,
            max_forwards: 70,
            routes: &self.route_set,
            from: &self.local_hdr,
            to: &self.remote_hdr,
            call_id: &self.call_id,
            cseq,
            contact: false,
            user_agent,
            content_type: None,
            body: b"",
            extra: &[],
            shaping: None,
        }
    }
}

impl Call {
    /// The side the call came from (the caller's leg).
    fn leg_side_of_caller(&self) -> Side {
        self.origin
    }

    fn leg(&self, side: Side) -> &Leg {
        &self.legs[side_index(side)]
    }

    fn leg_mut(&mut self, side: Side) -> &mut Leg {
        &mut self.legs[side_index(side)]
    }
}

const fn side_index(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}

#[derive(Debug)]
enum STx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

#[derive(Debug)]
struct ServerEntry {
    tx: STx,
    peer: Peer,
    request: Message,
    call: Option<u64>,
    /// Our To tag for responses to this request.
    to_tag: Option<String>,
    /// Client key of the request relayed for it on the other leg.
    relay: Option<String>,
    /// Key in the merged-request index (RFC 3261 §8.2.2.2).
    merged: Option<(String, String, u32)>,
}

#[derive(Debug)]
enum CTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    /// The INVITE that created the call, on the callee leg.
    Initial,
    /// A request relayed for the server transaction `server` on the other leg.
    Relay { server: String },
    /// A request of the SBC's own (BYE on teardown, CANCEL): responses are absorbed.
    Own,
}

#[derive(Debug)]
struct ClientEntry {
    tx: CTx,
    peer: Peer,
    request: Message,
    call: u64,
    side: Side,
    purpose: Purpose,
    /// How many times this request was already resent with credentials (the retry of a
    /// challenged request inherits the count + 1).
    auth_attempts: u8,
    /// The trunk the request went to (its credentials answer a challenge), on the outside.
    trunk: Option<usize>,
}

/// At most this many authenticated retries per request: one for the first challenge, and one
/// more only when the second challenge says `stale=true` (RFC 7616 §3.3: the nonce expired,
/// the credentials were right).
const MAX_AUTH_ATTEMPTS: u8 = 2;

/// The B2BUA. One instance owns a set of calls (a shard); it is not shared between threads.
#[derive(Debug)]
pub struct B2bua {
    cfg: B2buaConfig,
    rng: Rng,
    limits: Limits,
    calls: HashMap<u64, Call>,
    next_call: u64,
    dialogs: HashMap<(String, String), (u64, Side)>,
    sessions: HashMap<SessionId, u64>,
    server: HashMap<String, ServerEntry>,
    merged: HashMap<(String, String, u32), String>,
    client: HashMap<String, ClientEntry>,
    timers: TimerQueue,
    /// Bytes held per transaction and call.
    ledger: caps::Ledger,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    retransmissions_received: u64,
    retransmissions_sent: u64,
    /// Key of the transaction whose output is a retransmission (set while its timer fires or
    /// while it answers an absorbed retransmission), for `retransmissions_sent`.
    resending: Option<String>,
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
    buf: Vec<u8>,
}

impl B2bua {
    /// A B2BUA with `cfg`, drawing tags, branches and Call-IDs from `rng`.
    pub fn new(cfg: B2buaConfig, rng: Rng) -> Self {
        let cps = cfg.limits.bucket();
        let trunk_cps = cfg.trunks.iter().map(|t| t.limits.bucket()).collect();
        let trunk_active = vec![0; cfg.trunks.len()];
        Self {
            cfg,
            rng,
            limits: Limits::default(),
            calls: HashMap::new(),
            next_call: 1,
            dialogs: HashMap::new(),
            sessions: HashMap::new(),
            server: HashMap::new(),
            merged: HashMap::new(),
            client: HashMap::new(),
            timers: TimerQueue::default(),
            ledger: caps::Ledger::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmissions_received: 0,
            retransmissions_sent: 0,
            resending: None,
            auth_retries: 0,
            auth_failures: 0,
            cps,
            trunk_cps,
            trunk_active,
            trunk_down: Vec::new(),
            last_nonce: None,
            pbx_auth: pbx_auth::PbxAuthState::default(),
            challenges: auth_passthrough::PendingChallenges::default(),
            challenges_relayed: 0,
            auth_relayed_retries: 0,
            registrations: register_relay::Registrations::default(),
            registers_relayed: 0,
            registers_refused: 0,
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
            server_transactions: self.server.len(),
            client_transactions: self.client.len(),
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
        let remap: Vec<Option<usize>> = self
            .cfg
            .trunks
            .iter()
            .map(|old| cfg.trunks.iter().position(|t| t.name == old.name))
            .collect();
        let mut trunk_cps: Vec<Option<TokenBucket>> =
            cfg.trunks.iter().map(|t| t.limits.bucket()).collect();
        for (old, new) in remap.iter().enumerate() {
            if let Some(new) = *new
                && let Some(Some(b)) = self.trunk_cps.get_mut(old)
                && Some(b.rate()) == cfg.trunks[new].limits.max_cps
            {
                trunk_cps[new] = Some(b.clone());
            }
        }
        let map = |t: Option<usize>| t.and_then(|t| remap.get(t).copied().flatten());
        let mut active = vec![0u32; cfg.trunks.len()];
        for c in self.calls.values_mut() {
            c.trunk = map(c.trunk);
            c.next_trunks = c.next_trunks.iter().filter_map(|t| map(Some(*t))).collect();
            if let Some(t) = c.trunk {
                active[t] += 1;
            }
        }
        for e in self.client.values_mut() {
            e.trunk = map(e.trunk);
        }
        self.trunk_cps = trunk_cps;
        self.trunk_active = active;
        self.trunk_down.clear();
        self.cfg = cfg;
    }

    /// The current configuration.
    pub fn config(&self) -> &B2buaConfig {
        &self.cfg
    }

    /// A view of every call, ordered by handle (oldest first).
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut out: Vec<CallInfo> = self
            .calls
            .iter()
            .map(|(id, c)| CallInfo {
                id: *id,
                from: c.origin,
                answered: c.state == CallState::Confirmed,
                started: c.started,
                answered_at: c.answered_at,
                media: c.media,
                trunk: c.trunk,
                legs: [Side::Inside, Side::Outside].map(|side| {
                    let l = c.leg(side);
                    LegInfo {
                        side,
                        call_id: l.call_id.clone(),
                        local_tag: l.local_tag.clone(),
                        remote_tag: l.remote_tag.clone(),
                        peer: l.peer,
                    }
                }),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
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
        media: &mut dyn MediaControl,
    ) {
        if msg.is_request() {
            self.on_request(now, peer, msg, media);
        } else {
            self.on_response(now, peer, msg, media);
        }
        self.drain_media(now, media);
    }

    /// Fires every timer due at `now`, and handles media events.
    pub fn handle_timeout(&mut self, now: Instant, media: &mut dyn MediaControl) {
        while let Some(which) = self.timers.pop_due(now) {
            match which {
                TimerRef::Server(k) => {
                    if let Some(e) = self.server.get_mut(&k) {
                        match &mut e.tx {
                            STx::Invite(t) => t.handle_timeout(now),
                            STx::NonInvite(t) => t.handle_timeout(now),
                        }
                        self.resending = Some(k.clone());
                        self.after_server(now, &k, media);
                        self.resending = None;
                    }
                }
                TimerRef::Client(k) => {
                    if let Some(e) = self.client.get_mut(&k) {
                        match &mut e.tx {
                            CTx::Invite(t) => t.handle_timeout(now),
                            CTx::NonInvite(t) => t.handle_timeout(now),
                        }
                        self.resending = Some(k.clone());
                        self.after_client(now, &k, media);
                        self.resending = None;
                    }
                }
                TimerRef::Call(id) => self.call_timer(now, id, media),
            }
        }
        self.drain_media(now, media);
    }

    /// Ends a call from outside (admin API): BYE on both legs once answered, CANCEL/487 before.
    pub fn end_call(&mut self, now: Instant, call: u64, media: &mut dyn MediaControl) -> bool {
        if !self.calls.contains_key(&call) {
            return false;
        }
        self.terminate(now, call, EndReason::Bye, media);
        true
    }

    // ---- requests ---------------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, peer: Peer, msg: Message, media: &mut dyn MediaControl) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let key = server_key(&msg);
        if method == Method::Ack {
            self.on_ack(now, peer, key, msg, media);
            return;
        }
        if let Some(e) = self.server.get_mut(&key) {
            self.retransmissions_received += 1;
            match &mut e.tx {
                STx::Invite(t) => {
                    t.handle_retransmission();
                }
                STx::NonInvite(t) => t.handle_retransmission(),
            }
            self.resending = Some(key.clone());
            self.after_server(now, &key, media);
            self.resending = None;
            return;
        }
        // Everything below opens a transaction: not above the hard caps.
        if self.refuse_over_caps(peer, &msg) {
            return;
        }
        if method == Method::Cancel {
            self.on_cancel(now, peer, key, msg, media);
            return;
        }
        // RFC 3261 §16.3 item 2 / §8.2: Max-Forwards 0 cannot go further. Only an OPTIONS
        // outside a dialog stops here anyway (the SBC answers it itself, §11).
        let answered_here = method == Method::Options && msg.to().tag().is_none();
        if msg.max_forwards() == Some(0) && !answered_here {
            self.reject(now, peer, key, msg, 483, "Too Many Hops", media);
            return;
        }
        // §8.2.2.3: an extension the SBC does not implement on this leg cannot be required.
        let unsupported = extensions::unsupported(&msg, self.cfg.session_timer.enabled);
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.reject_with(
                now,
                peer,
                key,
                msg,
                420,
                "Bad Extension",
                &[("Unsupported", &list)],
                media,
            );
            return;
        }
        let to_tag = msg.to().tag().map(str::to_owned);
        if let Some(tag) = to_tag {
            let dialog = (msg.call_id().to_owned(), tag);
            match self.dialogs.get(&dialog).copied() {
                Some((call, side))
                    if side == peer.side
                        && self.check_in_dialog(&peer, &msg, call, side).is_ok() =>
                {
                    self.in_dialog(now, peer, key, msg, call, media);
                }
                _ => self.reject(
                    now,
                    peer,
                    key,
                    msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    media,
                ),
            }
            return;
        }
        // Digest authentication of the PBX's new requests, before admission control.
        let Some(msg) = self.authenticate_pbx(now, peer, &key, msg, media) else {
            return;
        };
        match method {
            Method::Invite => {
                if let Some(min) = self.cfg.session_timer.too_brief(&msg) {
                    // RFC 4028 §8.1 (as UAS): too short a session interval.
                    let min = min.to_string();
                    self.reject_with(
                        now,
                        peer,
                        key,
                        msg,
                        422,
                        "Session Interval Too Small",
                        &[("Min-SE", &min)],
                        media,
                    );
                    return;
                }
                let merged = merged_key(&msg);
                if let Some(m) = &merged
                    && self.merged.get(m).is_some_and(|k| *k != key)
                {
                    self.reject(now, peer, key, msg, 482, "Loop Detected", media);
                    return;
                }
                // The trunk's limits before the global rate: calls a trunk refuses do not use
                // up the rate every other trunk's calls need.
                let plan = match self.admit_calls() {
                    Some(limit) => Err(Refusal::Limit(limit)),
                    None => match self.resume_plan(now, &peer, &msg) {
                        // An auth retry continues an attempt already admitted.
                        Some(resumed) => Ok(resumed),
                        None => self.plan(now, &peer, &msg).and_then(|plan| {
                            self.admit_rate(now)
                                .map_or(Ok(plan), |l| Err(Refusal::Limit(l)))
                        }),
                    },
                };
                match plan {
                    Ok(plan) => self.new_call(now, peer, key, msg, merged, plan, media),
                    Err(Refusal::Limit(limit)) => {
                        // RFC 3261 §21.5.4: 503 with Retry-After; the caller may try again
                        // later (a PBX typically fails over to another route meanwhile).
                        // Stateless (`caps.rs`): a flood of refused calls holds nothing.
                        self.events.push_back(Event::AdmissionRejected {
                            from: peer.side,
                            limit,
                        });
                        self.record_refusal(&msg, peer.side, 503);
                        self.refuse_statelessly(peer, &msg);
                    }
                    Err(Refusal::NoRoute) => {
                        self.events.push_back(Event::NoRoute);
                        self.record_refusal(&msg, peer.side, 404);
                        self.reject(now, peer, key, msg, 404, "Not Found", media);
                    }
                }
            }
            Method::Options => self.answer_options(now, peer, key, msg, media),
            Method::Bye | Method::Prack | Method::Update | Method::Info | Method::Notify => {
                self.reject(
                    now,
                    peer,
                    key,
                    msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    media,
                );
            }
            Method::Message => self.relay_standalone(now, peer, key, msg, media),
            Method::Register => self.on_register(now, peer, key, msg, media),
            Method::Subscribe | Method::Publish | Method::Refer => {
                self.reject(now, peer, key, msg, 405, "Method Not Allowed", media);
            }
            _ => self.reject(now, peer, key, msg, 501, "Not Implemented", media),
        }
    }

    /// Answers a request with a final response on a new server transaction (so that its
    /// retransmissions get the same answer).
    #[allow(
        clippy::too_many_arguments,
        reason = "internal helper mirroring RFC fields"
    )]
    fn reject(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        status: u16,
        reason: &str,
        media: &mut dyn MediaControl,
    ) {
        let allow = ALLOW;
        let extra: &[(&str, &str)] = if status == 405 {
            &[("Allow", allow)]
        } else {
            &[]
        };
        self.reject_with(now, peer, key, msg, status, reason, extra, media);
    }

    /// Answers a request outside any call with `status` and `extra` headers.
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn reject_with(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
        media: &mut dyn MediaControl,
    ) {
        let tag = self.rng.token();
        let resp = msg::response(
            &msg,
            &ResponseSpec {
                status,
                reason,
                to_tag: Some(&tag),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra,
            },
            None,
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let reliable = peer.transport.is_reliable();
        let tx = if msg.method() == Some(&Method::Invite) {
            let trying = self.trying(&msg);
            let mut t = InviteServer::new(trying, reliable, self.cfg.timers);
            // The 100 is not needed when the final goes out at once; drop it.
            t.poll_transmit();
            t.send_response(now, status, resp);
            STx::Invite(t)
        } else {
            let mut t = NonInviteServer::new(reliable, self.cfg.timers);
            t.send_response(now, status, resp);
            STx::NonInvite(t)
        };
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx,
                peer,
                request: msg,
                call: None,
                to_tag: Some(tag),
                relay: None,
                merged: None,
            },
        );
        self.after_server(now, &key, media);
    }

    /// Global concurrency limit for a new call, checked first (so a refused call does not
    /// use up a CPS token).
    fn admit_calls(&self) -> Option<&'static str> {
        let active = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        self.cfg
            .limits
            .max_calls
            .is_some_and(|m| active >= m)
            .then_some("max_calls")
    }

    /// Global rate limit for a new call, checked last (after the trunk's limits).
    fn admit_rate(&mut self, now: Instant) -> Option<&'static str> {
        self.cps
            .as_mut()
            .is_some_and(|b| !b.try_take(now))
            .then_some("max_cps")
    }

    /// Admission on trunk `t`: the limit a new call on it would exceed, if any (a CPS token
    /// is used when it is admitted).
    fn admit_trunk(&mut self, now: Instant, t: usize) -> Option<&'static str> {
        let limits = self.cfg.trunks.get(t)?.limits;
        let active = self.trunk_active.get(t).copied().unwrap_or(0);
        if limits.max_calls.is_some_and(|m| active >= m) {
            return Some("trunk_max_calls");
        }
        if let Some(Some(b)) = self.trunk_cps.get_mut(t)
            && !b.try_take(now)
        {
            return Some("trunk_max_cps");
        }
        None
    }

    fn trunk_usable(&self, t: usize) -> bool {
        !self.trunk_down.get(t).copied().unwrap_or(false)
    }

    /// The configured trunk whose proxy has address `ip` (calls from the carrier): its
    /// proxy address, else one of its other known sources.
    fn trunk_of(&self, ip: std::net::IpAddr) -> Option<usize> {
        let ip = ip.to_canonical();
        let trunks = &self.cfg.trunks;
        trunks
            .iter()
            .position(|t| t.target.addr.ip().to_canonical() == ip)
            .or_else(|| trunks.iter().position(|t| t.sources.contains(&ip)))
    }

    /// The SBC's address toward `side` for a leg on `trunk`: the trunk's own local address
    /// when it has one (carrier side), else the side's default.
    fn trunk_local(&self, side: Side, trunk: Option<usize>) -> LocalAddr {
        match (side, trunk.and_then(|t| self.cfg.trunks.get(t)?.local)) {
            (Side::Outside, Some(l)) => l.advertised,
            _ => self.cfg.local(side),
        }
    }

    /// The bound address to send from toward `side` on `trunk` (None: the transport's
    /// default socket).
    fn trunk_bound(&self, side: Side, trunk: Option<usize>) -> Option<std::net::SocketAddr> {
        match (side, trunk.and_then(|t| self.cfg.trunks.get(t)?.local)) {
            (Side::Outside, Some(l)) => Some(l.bound),
            _ => None,
        }
    }

    /// The SBC's address as seen by `peer`: the listener its message arrived at (advertised
    /// form), else the side's default.
    fn local_of(&self, peer: &Peer) -> LocalAddr {
        peer.local
            .and_then(|bound| {
                self.cfg
                    .listeners
                    .iter()
                    .find(|(b, l)| *b == bound && l.transport == peer.transport)
                    .map(|(_, l)| *l)
            })
            .unwrap_or_else(|| self.cfg.local(peer.side))
    }

    /// Routing and per-trunk admission of a new call. From the PBX: the first route whose
    /// pattern takes the called number gives the trunk order; the first trunk in it that is
    /// not down and admits the call carries it (all down: the first that admits, better a try
    /// than a certain failure). From a carrier: the sending trunk's limits, then the first
    /// inbound route taking the DID (after the trunk's inbound number rules), else the PBX.
    fn plan(&mut self, now: Instant, peer: &Peer, msg: &Message) -> Result<Plan, Refusal> {
        let called = request_user(msg).unwrap_or_default();
        let digits = called.split(';').next().unwrap_or_default();
        match peer.side {
            Side::Inside => {
                let order = if self.cfg.routes.is_empty() {
                    (0..self.cfg.trunks.len()).collect()
                } else {
                    let route = self
                        .cfg
                        .routes
                        .iter()
                        .find(|r| r.matcher.matches(digits))
                        .ok_or(Refusal::NoRoute)?;
                    route.order(&mut self.rng)
                };
                let any_up = order.iter().any(|t| self.trunk_usable(*t));
                let mut limited = None;
                for (pos, &t) in order.iter().enumerate() {
                    if any_up && !self.trunk_usable(t) {
                        continue;
                    }
                    if let Some(l) = self.admit_trunk(now, t) {
                        limited.get_or_insert(l);
                        continue;
                    }
                    let Some(trunk) = self.cfg.trunks.get(t) else {
                        continue;
                    };
                    return Ok(Plan {
                        trunk: Some(t),
                        next_trunks: order[pos + 1..].to_vec(),
                        target: trunk.target,
                        resume: None,
                    });
                }
                Err(limited.map_or(Refusal::NoRoute, Refusal::Limit))
            }
            Side::Outside => {
                let trunk = self.trunk_of(peer.addr.ip());
                if let Some(t) = trunk
                    && let Some(l) = self.admit_trunk(now, t)
                {
                    return Err(Refusal::Limit(l));
                }
                let rules = trunk
                    .and_then(|t| self.cfg.trunks.get(t))
                    .map_or(&NO_RULES, |t| &t.inbound);
                let did = crate::routing::normalize(&rules.called, digits);
                // A DID route first, then an AOR the PBX registered through the SBC
                // (register_relay.rs), then the PBX.
                let target = self
                    .cfg
                    .inbound
                    .iter()
                    .find(|r| r.matcher.matches(&did))
                    .map(|r| r.target)
                    .or_else(|| self.registered_target(now, digits))
                    .unwrap_or(self.cfg.pbx);
                Ok(Plan {
                    trunk,
                    next_trunks: Vec::new(),
                    target,
                    resume: None,
                })
            }
        }
    }

    fn trying(&mut self, msg: &Message) -> Bytes {
        msg::response(
            msg,
            &ResponseSpec {
                status: 100,
                reason: "Trying",
                to_tag: None,
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[],
            },
            None,
            &[],
            &mut self.buf,
        )
    }

    /// Relays a request outside any dialog (MESSAGE, RFC 3428) to the other side: a new
    /// Call-ID and tags there, the body as it is, and the final response mapped back. No call
    /// or dialog is created; the two transactions are the whole state.
    fn relay_standalone(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        media: &mut dyn MediaControl,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let (content_type, body) = match body::classify(&msg, &method) {
            Ok(body::Body::Other { content_type, body }) => (Some(content_type), body.into_owned()),
            Ok(_) => (None, Vec::new()),
            Err(r) => {
                self.refuse_new_body(now, peer, key, msg, r, media);
                return;
            }
        };
        let Some(user) = request_user(&msg) else {
            self.reject(now, peer, key, msg, 404, "Not Found", media);
            return;
        };
        let to_side = peer.side.other();
        let Some((target, trunk)) = self.standalone_target(&peer, &user) else {
            self.events.push_back(Event::NoRoute);
            self.reject(now, peer, key, msg, 404, "Not Found", media);
            return;
        };
        let local = self.trunk_local(to_side, trunk);
        let from_user = match msg.from().uri {
            crate::sip::Uri::Sip(u) => u.user.unwrap_or("anonymous").to_owned(),
            crate::sip::Uri::Tel(t) => t.raw.trim_start_matches("tel:").to_owned(),
            crate::sip::Uri::Other(_) => "anonymous".to_owned(),
        };
        let target_hp = msg::hostport(target.addr);
        let ruri = format!("sip:{user}@{target_hp}");
        let from = format!(
            "<sip:{from_user}@{}>;tag={}",
            msg::host(local.addr),
            self.rng.token()
        );
        let to = format!("<sip:{user}@{target_hp}>");
        let call_id = format!("{}@{}", self.rng.token(), msg::host(local.addr));
        let branch = self.rng.branch();
        let req = msg::request(
            &RequestSpec {
                method: &method,
                ruri: &ruri,
                local,
                branch: &branch,
                max_forwards: msg.max_forwards().map_or(70, forwarded_max_forwards),
                routes: &[],
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq: 1,
                contact: false,
                user_agent: &self.cfg.user_agent,
                content_type: content_type.as_deref(),
                body: &body,
                extra: &[],
                shaping: None,
            },
            Some(msg.headers()),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let tag = self.rng.token();
        let ck = client_key(&branch, false);
        let bound = self.trunk_bound(to_side, trunk);
        let tx = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx: STx::NonInvite(tx),
                peer,
                request: msg,
                call: None,
                to_tag: Some(tag),
                relay: Some(ck.clone()),
                merged: None,
            },
        );
        let to_peer = Peer {
            side: to_side,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: bound,
        };
        // No call owns this relay: `STANDALONE` is a handle that never names a call.
        self.send_client(
            now,
            ck,
            req,
            to_peer,
            STANDALONE,
            to_side,
            Purpose::Relay { server: key },
            false,
            media,
        );
    }

    /// Where a request outside any call goes: toward the carrier, the first trunk of the
    /// called number's route that is up (the first one if none is); toward the PBX, the
    /// inbound route of the DID. No admission control: these are not calls.
    fn standalone_target(&mut self, peer: &Peer, user: &str) -> Option<(Target, Option<usize>)> {
        let digits = user.split(';').next().unwrap_or_default();
        match peer.side {
            Side::Inside => {
                let order = if self.cfg.routes.is_empty() {
                    (0..self.cfg.trunks.len()).collect()
                } else {
                    let route = self.cfg.routes.iter().find(|r| r.matcher.matches(digits))?;
                    route.order(&mut self.rng)
                };
                let t = order
                    .iter()
                    .copied()
                    .find(|t| self.trunk_usable(*t))
                    .or_else(|| order.first().copied())?;
                self.cfg.trunks.get(t).map(|tr| (tr.target, Some(t)))
            }
            Side::Outside => {
                let rules = self
                    .trunk_of(peer.addr.ip())
                    .and_then(|t| self.cfg.trunks.get(t))
                    .map_or(&NO_RULES, |t| &t.inbound);
                let did = crate::routing::normalize(&rules.called, digits);
                Some((
                    self.cfg
                        .inbound
                        .iter()
                        .find(|r| r.matcher.matches(&did))
                        .map_or(self.cfg.pbx, |r| r.target),
                    None,
                ))
            }
        }
    }

    fn answer_options(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        media: &mut dyn MediaControl,
    ) {
        let tag = self.rng.token();
        let supported = extensions::supported_value(self.cfg.session_timer.enabled);
        let resp = msg::response(
            &msg,
            &ResponseSpec {
                status: 200,
                reason: "OK",
                to_tag: Some(&tag),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[
                    ("Allow", ALLOW),
                    ("Accept", "application/sdp"),
                    ("Supported", &supported),
                ],
            },
            None,
            &[],
            &mut self.buf,
        );
        let mut t = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        t.send_response(now, 200, resp);
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx: STx::NonInvite(t),
                peer,
                request: msg,
                call: None,
                to_tag: Some(tag),
                relay: None,
                merged: None,
            },
        );
        self.after_server(now, &key, media);
    }

    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn new_call(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        merged: Option<(String, String, u32)>,
        plan: Plan,
        media: &mut dyn MediaControl,
    ) {
        let origin = peer.side;
        let to = origin.other();
        let trying = self.trying(&msg);
        let inv = InviteServer::new(trying, peer.transport.is_reliable(), self.cfg.timers);
        let caller_tag = self.rng.token();
        if let Some(m) = &merged {
            self.merged.insert(m.clone(), key.clone());
        }
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx: STx::Invite(inv),
                peer,
                request: msg.clone(),
                call: None,
                to_tag: Some(caller_tag.clone()),
                relay: None,
                merged,
            },
        );
        self.after_server(now, &key, media);

        // The called number: the Request-URI user (the To user if the URI has none).
        if request_user(&msg).is_none() {
            self.final_on_server(now, &key, 404, "Not Found", None, media);
            return;
        }
        let target = plan.target;
        let local_to = self.trunk_local(to, plan.trunk);
        let body = match body::classify(&msg, &Method::Invite) {
            Ok(body::Body::Sdp(sdp)) => sdp,
            Ok(_) => b"",
            Err(r) => {
                self.refuse_body(now, &key, &Method::Invite, r, media);
                return;
            }
        };
        let has_sdp = !body.is_empty();
        let mut session = None;
        let mut relays = Vec::new();
        if has_sdp {
            let streams = match sdp::streams(body, &self.cfg.sdp) {
                Ok(s) => s,
                Err(p) => {
                    self.border_refusal(p.as_str());
                    self.final_on_server(now, &key, 488, "Not Acceptable Here", None, media);
                    return;
                }
            };
            let peers = self.new_media_peers(origin, peer.addr.ip(), target.addr.ip(), plan.trunk);
            match media.allocate(sdp::leg(origin), &streams, &peers) {
                Ok(a) => {
                    session = Some(a.session);
                    relays = a.streams;
                }
                Err(e) => {
                    let code = e.status_code();
                    let reason = if code == 503 {
                        "Service Unavailable"
                    } else {
                        "Not Acceptable Here"
                    };
                    self.final_on_server(now, &key, code, reason, None, media);
                    return;
                }
            }
        }

        let caller_100rel = extensions::offers(&msg, "100rel");
        let id = self.next_call;
        self.next_call += 1;
        let (out_call_id, out_tag) = match &plan.resume {
            Some(r) => (r.call_id.clone(), r.tag.clone()),
            None => (
                format!("{}@{}", self.rng.token(), msg::host(local_to.addr)),
                self.rng.token(),
            ),
        };

        let caller_leg = Leg {
            peer,
            local: self.local_of(&peer),
            call_id: msg.call_id().to_owned(),
            local_tag: caller_tag.clone(),
            remote_tag: msg.from().tag().map(str::to_owned),
            local_hdr: msg::with_tag(
                msg::first_value(msg.headers(), HeaderName::To).unwrap_or(""),
                Some(&caller_tag),
            ),
            remote_hdr: msg::first_value(msg.headers(), HeaderName::From)
                .unwrap_or("")
                .to_owned(),
            local_cseq: self.rng.next_u64() as u32 % 10_000 + 1,
            remote_target: first_contact(&msg).unwrap_or_else(|| msg.from().uri_str.to_owned()),
            route_set: msg
                .record_routes()
                .filter_map(Result::ok)
                .map(|r| format!("<{}>", r.uri_str))
                .collect(),
            origin: sdp::Origin::new(self.rng.next_u64() % 1_000_000_000),
            invite_out: None,
            session: None,
        };
        let mut callee_origin = sdp::Origin::new(self.rng.next_u64() % 1_000_000_000);
        let mut sdp_out = Vec::new();
        if has_sdp
            && let Err(p) = sdp::rewrite(
                body,
                &relays,
                to,
                &mut callee_origin,
                &self.cfg.sdp,
                &mut sdp_out,
            )
        {
            self.border_refusal(p.as_str());
            if let Some(s) = session {
                media.release(s);
            }
            self.final_on_server(now, &key, 488, "Not Acceptable Here", None, media);
            return;
        }
        let branch = self.rng.branch();
        let mut out = self.build_invite(
            &msg,
            to,
            plan.trunk,
            target,
            None,
            &out_call_id,
            &out_tag,
            &branch,
            &sdp_out,
        );
        // A retry of a challenged INVITE continues the challenged dialog: its next CSeq and
        // the caller's credentials for the challenged realms (auth_passthrough.rs).
        let mut out_cseq = 1;
        if let Some(r) = &plan.resume {
            out_cseq = r.cseq.saturating_add(1);
            let creds = auth_passthrough::credential_headers(&msg, Some(&r.realms));
            if let Some(b) =
                auth_passthrough::resumed_invite(&out.bytes, out_cseq, &creds, &self.limits)
            {
                out.bytes = b;
            }
        }
        let callee_peer = Peer {
            side: to,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: self.trunk_bound(to, plan.trunk),
        };
        let callee_leg = Leg {
            peer: callee_peer,
            local: local_to,
            call_id: out_call_id,
            local_tag: out_tag,
            remote_tag: None,
            local_hdr: out.from_hdr,
            remote_hdr: out.to_hdr,
            local_cseq: out_cseq,
            remote_target: out.ruri,
            route_set: Vec::new(),
            origin: callee_origin,
            invite_out: None,
            session: None,
        };
        let legs = match origin {
            Side::Inside => [caller_leg, callee_leg],
            Side::Outside => [callee_leg, caller_leg],
        };
        // Kept for failover and redirect recursion (`redirect.rs`).
        let offer = (to == Side::Outside).then(|| Bytes::from(sdp_out));
        let mut call = Call {
            origin,
            started: now,
            answered_at: None,
            legs,
            state: CallState::Early,
            media: session,
            initial_server: key.clone(),
            initial_client: String::new(),
            provisional_seen: false,
            cancel_pending: false,
            canceled: false,
            pending_2xx: None,
            caller_100rel,
            next_rseq: (self.rng.next_u64() % 1_000_000) as u32 + 1,
            pending_rel: None,
            rseq_map: Vec::new(),
            last_callee_rseq: None,
            acks: [None, None],
            ends_at: self.cfg.max_call_duration.map(|d| now + d),
            trunk: plan.trunk,
            next_trunks: plan.next_trunks,
            server: 0,
            offer,
            redirects: redirect::Tried::default(),
            forks: fork::Forks::default(),
            facts: record::Facts::new(&msg, session),
        };
        if let Some(t) = plan.trunk
            && let Some(n) = self.trunk_active.get_mut(t)
        {
            *n += 1;
        }
        let client_key = client_key(&branch, false);
        call.initial_client = client_key.clone();
        call.leg_mut(to).invite_out = Some(client_key.clone());
        self.dialogs
            .insert((call.leg(origin).call_id.clone(), caller_tag), (id, origin));
        let callee = call.leg(to);
        self.dialogs
            .insert((callee.call_id.clone(), callee.local_tag.clone()), (id, to));
        if let Some(s) = session {
            self.sessions.insert(s, id);
        }
        if let Some(e) = self.server.get_mut(&key) {
            e.call = Some(id);
            e.relay = Some(client_key.clone());
        }
        let ends_at = call.ends_at;
        self.calls.insert(id, call);
        if let Some(at) = ends_at {
            self.timers.set_earliest(TimerRef::Call(id), at);
        }
        self.account_call(id);
        self.events.push_back(Event::CallStarted {
            call: id,
            from: origin,
            trunk: plan.trunk,
        });
        self.send_client(
            now,
            client_key,
            out.bytes,
            callee_peer,
            id,
            to,
            Purpose::Initial,
            true,
            media,
        );
    }

    /// The INVITE that starts the callee leg of a call (also rebuilt for each failover):
    /// Request-URI and To on the target with the called number, From with the calling number
    /// (and the trunk's from_domain toward a carrier), both numbers normalised by the trunk's
    /// rules for this direction, the allowlisted headers of the caller's INVITE, and the
    /// trunk's header rules.
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn build_invite(
        &mut self,
        orig: &Message,
        to: Side,
        trunk: Option<usize>,
        target: Target,
        called: Option<&str>,
        call_id: &str,
        tag: &str,
        branch: &str,
        sdp_body: &[u8],
    ) -> OutInvite {
        let cfg = &self.cfg;
        let trunk_cfg = trunk.and_then(|t| cfg.trunks.get(t));
        let rules = trunk_cfg.map_or(&NO_RULES, |t| match to {
            Side::Outside => &t.outbound,
            Side::Inside => &t.inbound,
        });
        let user = called.map_or_else(|| request_user(orig).unwrap_or_default(), str::to_owned);
        let from_user = match orig.from().uri {
            crate::sip::Uri::Sip(u) => u.user.unwrap_or("anonymous").to_owned(),
            crate::sip::Uri::Tel(t) => t.raw.trim_start_matches("tel:").to_owned(),
            crate::sip::Uri::Other(_) => "anonymous".to_owned(),
        };
        let called = crate::routing::normalize(&rules.called, &user);
        let calling = crate::routing::normalize(&rules.calling, &from_user);
        let local_to = match (to, trunk_cfg.and_then(|t| t.local)) {
            (Side::Outside, Some(l)) => l.advertised,
            _ => cfg.local(to),
        };
        let target_hp = msg::hostport(target.addr);
        let from_host = match (to, trunk_cfg.and_then(|t| t.from_domain.as_deref())) {
            (Side::Outside, Some(d)) => d.to_owned(),
            _ => msg::host(local_to.addr),
        };
        // Digest pass-through: the challenger computes `uri=` over the Request-URI it sees, which
        // must be the one the authenticating side signed (auth_passthrough.rs).
        let passthrough = trunk_cfg.is_some_and(|t| t.auth == TrunkAuth::Passthrough);
        let ruri = match orig.request_uri_str() {
            Some(r) if passthrough => r.to_owned(),
            _ => format!("sip:{called}@{target_hp}"),
        };
        let from_hdr = match orig.from().display_name {
            Some(d) => format!("{d} <sip:{calling}@{from_host}>;tag={tag}"),
            None => format!("<sip:{calling}@{from_host}>;tag={tag}"),
        };
        let to_hdr = if passthrough {
            format!("<{ruri}>")
        } else {
            format!("<sip:{called}@{target_hp}>")
        };

        let requires_100rel = extensions::requires(orig, "100rel");
        // The caller insists on reliable provisionals: so must the callee (RFC 3262 §4).
        let mut added: Vec<(String, String)> = Vec::new();
        if requires_100rel {
            added.push(("Require".into(), "100rel".into()));
        }
        // The SBC's own extensions on this leg (a header rule may still remove Supported).
        if !rules.headers.iter().any(|r| r.suppresses("supported")) {
            let timer = cfg.session_timer.enabled;
            added.push(("Supported".into(), extensions::supported_value(timer)));
        }
        for (n, v) in cfg.session_timer.request_headers(None) {
            added.push((n.into(), v));
        }
        let vars = crate::routing::Vars {
            calling: &calling,
            called: &called,
            trunk: trunk_cfg.map_or("", |t| t.name.as_str()),
            domain: &from_host,
        };
        for r in &rules.headers {
            if r.action != crate::routing::HeaderAction::Remove {
                added.push((r.name.clone(), r.value.render(&vars)));
            }
        }
        let extra: Vec<(&str, &str)> = added
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mf = orig.max_forwards().map_or(70, forwarded_max_forwards);
        let bytes = msg::request(
            &RequestSpec {
                method: &Method::Invite,
                ruri: &ruri,
                local: local_to,
                branch,
                max_forwards: mf,
                routes: &[],
                from: &from_hdr,
                to: &to_hdr,
                call_id,
                cseq: 1,
                contact: true,
                user_agent: &cfg.user_agent,
                content_type: Some("application/sdp"),
                body: sdp_body,
                extra: &extra,
                shaping: Some(&msg::Shaping {
                    headers: &rules.headers,
                    identity: &rules.calling,
                }),
            },
            Some(orig.headers()),
            &cfg.pass_headers,
            &mut self.buf,
        );
        OutInvite {
            bytes,
            ruri,
            from_hdr,
            to_hdr,
        }
    }

    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn send_client(
        &mut self,
        now: Instant,
        key: String,
        bytes: Bytes,
        peer: Peer,
        call: u64,
        side: Side,
        purpose: Purpose,
        invite: bool,
        media: &mut dyn MediaControl,
    ) {
        let Ok(request) = Message::parse(bytes.clone(), &self.limits) else {
            // Our own message failed to parse: a bug in a builder. Do not send garbage.
            self.events.push_back(Event::Dropped {
                reason: "internal_build_error",
            });
            return;
        };
        let reliable = peer.transport.is_reliable();
        let tx = if invite {
            CTx::Invite(InviteClient::new(now, bytes, reliable, self.cfg.timers))
        } else {
            CTx::NonInvite(NonInviteClient::new(now, bytes, reliable, self.cfg.timers))
        };
        let trunk = match side {
            Side::Outside => self.calls.get(&call).and_then(|c| c.trunk),
            Side::Inside => None,
        };
        self.client.insert(
            key.clone(),
            ClientEntry {
                tx,
                peer,
                request,
                call,
                side,
                purpose,
                auth_attempts: 0,
                trunk,
            },
        );
        self.after_client(now, &key, media);
    }

    /// Sends a final response on server transaction `key` (no relayed headers).
    fn final_on_server(
        &mut self,
        now: Instant,
        key: &str,
        status: u16,
        reason: &str,
        extra_reason_hdr: Option<&str>,
        media: &mut dyn MediaControl,
    ) {
        let Some(e) = self.server.get(key) else {
            return;
        };
        let extra_owned;
        // RFC 3261 §21.5.4: a 503 (relay ports or a trunk's port quota exhausted) says when
        // to come back, like the admission limits' 503.
        let retry = self.cfg.retry_after_s.to_string();
        let extra: &[(&str, &str)] = match (extra_reason_hdr, status) {
            (Some(r), _) => {
                extra_owned = [("Reason", r)];
                &extra_owned
            }
            (None, 503) => {
                extra_owned = [("Retry-After", retry.as_str())];
                &extra_owned
            }
            (None, _) => &[],
        };
        let resp = msg::response(
            &e.request,
            &ResponseSpec {
                status,
                reason,
                to_tag: e.to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra,
            },
            None,
            &[],
            &mut self.buf,
        );
        self.send_on_server(now, key, status, resp, media);
    }

    fn send_on_server(
        &mut self,
        now: Instant,
        key: &str,
        status: u16,
        resp: Bytes,
        media: &mut dyn MediaControl,
    ) -> bool {
        let Some(e) = self.server.get_mut(key) else {
            return false;
        };
        let sent = match &mut e.tx {
            STx::Invite(t) => t.send_response(now, status, resp),
            STx::NonInvite(t) => t.send_response(now, status, resp),
        };
        self.after_server(now, key, media);
        sent
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        media: &mut dyn MediaControl,
    ) {
        // The CANCEL matches the INVITE server transaction with the same branch (§9.2).
        let invite_key = key
            .rsplit_once('|')
            .map(|(k, _)| format!("{k}|INVITE"))
            .unwrap_or_default();
        let target = self.server.get(&invite_key).and_then(|e| match &e.tx {
            STx::Invite(t) if t.state() == InviteServerState::Proceeding => Some(e.call),
            _ => None,
        });
        let Some(call) = target else {
            self.reject(
                now,
                peer,
                key,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                media,
            );
            return;
        };
        if let Some(call) = call {
            self.note_hangup(call, peer.side);
        }
        // 200 for the CANCEL on its own transaction, then 487 for the INVITE (§9.2).
        let to_tag = self.server.get(&invite_key).and_then(|e| e.to_tag.clone());
        let ok = msg::response(
            &msg,
            &ResponseSpec {
                status: 200,
                reason: "OK",
                to_tag: to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[],
            },
            None,
            &[],
            &mut self.buf,
        );
        let mut t = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        t.send_response(now, 200, ok);
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx: STx::NonInvite(t),
                peer,
                request: msg,
                call,
                to_tag,
                relay: None,
                merged: None,
            },
        );
        self.after_server(now, &key, media);
        self.final_on_server(now, &invite_key, 487, "Request Terminated", None, media);
        let Some(call_id) = call else { return };
        let relay = self.server.get(&invite_key).and_then(|e| e.relay.clone());
        let initial = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.initial_server == invite_key);
        if initial {
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.canceled = true;
            }
            self.release_media(call_id, media);
            let provisional = self.calls.get(&call_id).is_some_and(|c| c.provisional_seen);
            if provisional {
                self.cancel_client(now, call_id, media);
            } else if let Some(c) = self.calls.get_mut(&call_id) {
                // A CANCEL may only follow a provisional (§9.1); send it when one arrives.
                c.cancel_pending = true;
            }
        } else if let Some(rk) = relay {
            // A cancelled re-INVITE: cancel the relayed one too.
            if let Some(e) = self.client.get(&rk) {
                let cancel = msg::cancel_for(&e.request, &mut self.buf);
                let (peer, side) = (e.peer, e.side);
                let ck = format!("{}|CANCEL", rk.trim_end_matches("|INVITE"));
                if let Some(CTx::Invite(t)) = self.client.get_mut(&rk).map(|e| &mut e.tx) {
                    t.cancel_sent(now);
                }
                self.send_client(
                    now,
                    ck,
                    cancel,
                    peer,
                    call_id,
                    side,
                    Purpose::Own,
                    false,
                    media,
                );
            }
        }
    }

    /// Sends CANCEL for the call's initial INVITE on the callee leg.
    fn cancel_client(&mut self, now: Instant, call: u64, media: &mut dyn MediaControl) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let key = c.initial_client.clone();
        let Some(e) = self.client.get_mut(&key) else {
            return;
        };
        let cancel = msg::cancel_for(&e.request, &mut self.buf);
        if let CTx::Invite(t) = &mut e.tx {
            t.cancel_sent(now);
        }
        let (peer, side) = (e.peer, e.side);
        let ck = format!("{}|CANCEL", key.trim_end_matches("|INVITE"));
        self.send_client(
            now,
            ck,
            cancel,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }

    fn on_ack(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        media: &mut dyn MediaControl,
    ) {
        if let Some(e) = self.server.get_mut(&key)
            && let STx::Invite(t) = &mut e.tx
        {
            let absorbed = t.handle_ack(now);
            self.after_server(now, &key, media);
            if absorbed == Absorbed::Yes {
                return;
            }
        }
        // An ACK for a 2xx: the dialog's business (§13.3.1.4).
        let Some(tag) = msg.to().tag() else {
            self.events.push_back(Event::Dropped {
                reason: "stray_ack",
            });
            return;
        };
        let Some(&(call, side)) = self
            .dialogs
            .get(&(msg.call_id().to_owned(), tag.to_owned()))
        else {
            self.events.push_back(Event::Dropped {
                reason: "stray_ack",
            });
            return;
        };
        // The late-offer answer in an ACK commits media: only from the leg's peer.
        if side != peer.side || self.check_in_dialog(&peer, &msg, call, side).is_err() {
            return;
        }
        let cseq = msg.cseq().seq;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(p) = c
            .pending_2xx
            .as_ref()
            .filter(|p| p.leg == side && p.cseq == cseq)
        else {
            return; // ACK retransmission or late: nothing to do.
        };
        let ack_other = p.ack_other_cseq;
        c.pending_2xx = None;
        let other = side.other();
        if let Some(other_cseq) = ack_other {
            // Late offer: this ACK carries the answer for the other leg's 2xx. An answer that
            // cannot be anchored ends the call (the ACK itself cannot be refused).
            let mut body = Vec::new();
            let answer = match body::classify(&msg, &Method::Ack) {
                Ok(body::Body::Sdp(sdp)) => Ok(sdp),
                Ok(_) => Err("sdp_missing_answer"),
                Err(r) => Err(r.as_str()),
            };
            let result = answer.and_then(|sdp| {
                let streams = sdp::streams(sdp, &self.cfg.sdp).map_err(|p| p.as_str())?;
                let relays = match c.media {
                    Some(s) => media
                        .commit(s, sdp::leg(side), &streams)
                        .map_err(|_| "sdp_unanchored")?,
                    None => return Err("sdp_unanchored"),
                };
                let leg = c.leg_mut(other);
                sdp::rewrite(
                    sdp,
                    &relays,
                    other,
                    &mut leg.origin,
                    &self.cfg.sdp,
                    &mut body,
                )
                .map_err(|p| p.as_str())
            });
            self.send_ack(call, other, other_cseq, &body);
            if let Err(reason) = result {
                self.border_refusal(reason);
                self.terminate(now, call, EndReason::Rejected(488), media);
            }
        }
        self.account_call(call);
    }

    /// Sends the ACK for the 2xx of INVITE `cseq` on `side` (end-to-end, new branch).
    fn send_ack(&mut self, call: u64, side: Side, cseq: u32, body: &[u8]) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg(side);
        let ack = msg::request(
            &RequestSpec {
                content_type: Some("application/sdp"),
                body,
                ..leg.request(&Method::Ack, local, &branch, cseq, &self.cfg.user_agent)
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        c.acks[side_index(side)] = Some((cseq, ack.clone()));
        self.transmits.push_back(Transmit {
            to: peer,
            data: ack,
        });
        self.account_call(call);
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        peer: Peer,
        key: String,
        msg: Message,
        call: u64,
        media: &mut dyn MediaControl,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let from = peer.side;
        let to = from.other();
        let is_invite = method == Method::Invite;
        // A PRACK acknowledges one of our reliable provisionals: stop retransmitting it and
        // PRACK the callee's original (RFC 3262 §4), mapping RAck to the callee's numbers.
        let mut extra_owned: Vec<(&str, String)> = Vec::new();
        if method == Method::Prack {
            let rack = msg.headers().rack().ok().flatten();
            let mapped = self.calls.get_mut(&call).and_then(|c| {
                let rack = rack?;
                let theirs = c.rseq_map.iter().find(|(ours, _)| *ours == rack.rseq)?.1;
                if c.pending_rel.as_ref().is_some_and(|p| p.rseq == rack.rseq) {
                    c.pending_rel = None;
                }
                let invite = self.client.get(&c.initial_client)?;
                Some(format!("{theirs} {} INVITE", invite.request.cseq().seq))
            });
            match mapped {
                Some(v) => extra_owned.push(("RAck", v)),
                None => {
                    self.reject(
                        now,
                        peer,
                        key,
                        msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        media,
                    );
                    return;
                }
            }
        }
        {
            let Some(c) = self.calls.get(&call) else {
                return;
            };
            // RFC 3261 §14.2: a re-INVITE while our own INVITE on this leg is pending → 491.
            if is_invite && c.leg(from).invite_out.is_some() {
                self.reject(now, peer, key, msg, 491, "Request Pending", media);
                return;
            }
            if is_invite && c.state != CallState::Confirmed {
                self.reject(now, peer, key, msg, 491, "Request Pending", media);
                return;
            }
        }
        if matches!(method, Method::Invite | Method::Update)
            && let Some(min) = self.cfg.session_timer.too_brief(&msg)
        {
            let min = min.to_string();
            self.reject_with(
                now,
                peer,
                key,
                msg,
                422,
                "Session Interval Too Small",
                &[("Min-SE", &min)],
                media,
            );
            return;
        }
        if method == Method::Update && msg.body().is_empty() {
            // A session refresh (or target refresh) concerns this leg only: answered here.
            self.answer_refresh(now, peer, key, msg, call, media);
            return;
        }
        let to_tag = msg.to().tag().map(str::to_owned);
        let tx = if is_invite {
            let trying = self.trying(&msg);
            STx::Invite(InviteServer::new(
                trying,
                peer.transport.is_reliable(),
                self.cfg.timers,
            ))
        } else {
            STx::NonInvite(NonInviteServer::new(
                peer.transport.is_reliable(),
                self.cfg.timers,
            ))
        };
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx,
                peer,
                request: msg.clone(),
                call: Some(call),
                to_tag,
                relay: None,
                merged: None,
            },
        );
        self.after_server(now, &key, media);

        // SDP in a re-INVITE or UPDATE is a new offer: update the relay, rewrite for the other leg.
        // Other bodies cross only if allowlisted for the method (`body.rs`).
        let mut body_out = Vec::new();
        let mut content_type = None;
        let classified = match body::classify(&msg, &method) {
            Ok(b) => b,
            Err(r) => {
                self.refuse_body(now, &key, &method, r, media);
                return;
            }
        };
        let offer = match &classified {
            body::Body::Sdp(sdp) => Some(*sdp),
            _ => None,
        };
        let peers = self.call_media_peers(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // Target refresh (§12.2.2): a new Contact becomes the leg's remote target; NAT'd peers
        // are still reached at their observed address (`peer`).
        if matches!(method, Method::Invite | Method::Update)
            && let Some(ct) = first_contact(&msg)
        {
            c.leg_mut(from).remote_target = ct;
        }
        peer_binding::repoint(c.leg_mut(from), &peer);
        if let Some(sdp_body) = offer {
            let relays = match (c.media, sdp::streams(sdp_body, &self.cfg.sdp)) {
                (Some(s), Ok(streams)) => media
                    .update(s, sdp::leg(from), &streams)
                    .map_err(|e| e.status_code()),
                (None, Ok(streams)) => match media.allocate(sdp::leg(from), &streams, &peers) {
                    Ok(a) => {
                        c.media = Some(a.session);
                        self.sessions.insert(a.session, call);
                        Ok(a.streams)
                    }
                    Err(e) => Err(e.status_code()),
                },
                (_, Err(p)) => {
                    self.events
                        .push_back(Event::BorderRefusal { reason: p.as_str() });
                    Err(488)
                }
            };
            match relays {
                Ok(relays) => {
                    let leg = c.leg_mut(to);
                    if let Err(p) = sdp::rewrite(
                        sdp_body,
                        &relays,
                        to,
                        &mut leg.origin,
                        &self.cfg.sdp,
                        &mut body_out,
                    ) {
                        self.border_refusal(p.as_str());
                        self.final_on_server(now, &key, 488, "Not Acceptable Here", None, media);
                        return;
                    }
                    content_type = Some("application/sdp");
                }
                Err(code) => {
                    let reason = if code == 503 {
                        "Service Unavailable"
                    } else {
                        "Not Acceptable Here"
                    };
                    self.final_on_server(now, &key, code, reason, None, media);
                    return;
                }
            }
        } else if let body::Body::Other {
            content_type: ct,
            body,
        } = &classified
        {
            body_out.extend_from_slice(body);
            content_type = Some(ct.as_str());
        }
        // Credentials answering a relayed challenge cross with the request (in-dialog, the
        // Request-URI differs per leg: only for challengers that check the digest alone).
        let passthrough = c
            .trunk
            .and_then(|t| self.cfg.trunks.get(t))
            .is_some_and(|t| t.auth == TrunkAuth::Passthrough);
        if to == Side::Inside || passthrough {
            extra_owned.extend(auth_passthrough::credential_headers(&msg, None));
        }
        let branch = self.rng.branch();
        let local = c.leg(to).local;
        let leg = c.leg_mut(to);
        leg.local_cseq += 1;
        let cseq = leg.local_cseq;
        let target_refresh = matches!(
            method,
            Method::Invite | Method::Update | Method::Refer | Method::Notify
        );
        if matches!(method, Method::Invite | Method::Update) {
            // The SBC's own extensions and session interval on this leg, not the peer's.
            let timer = self.cfg.session_timer.enabled;
            extra_owned.push(("Supported", extensions::supported_value(timer)));
            let current = leg.session.as_ref();
            extra_owned.extend(self.cfg.session_timer.request_headers(current));
        }
        let req = msg::request(
            &RequestSpec {
                method: &method,
                ruri: &leg.remote_target,
                local,
                branch: &branch,
                max_forwards: msg.max_forwards().map_or(70, forwarded_max_forwards),
                routes: &leg.route_set,
                from: &leg.local_hdr,
                to: &leg.remote_hdr,
                call_id: &leg.call_id,
                cseq,
                contact: target_refresh,
                user_agent: &self.cfg.user_agent,
                content_type,
                body: &body_out,
                extra: &extra_owned
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect::<Vec<_>>(),
                shaping: None,
            },
            Some(msg.headers()),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let peer_to = leg.peer;
        let ck = client_key(&branch, false);
        if is_invite {
            leg.invite_out = Some(ck.clone());
        }
        if method == Method::Bye {
            self.note_hangup(call, from);
            // The call is over for both sides whatever the other leg answers.
            self.release_media(call, media);
            // RFC 3261 §15.1.2: a BYE on an early dialog leaves the INVITE pending; it gets
            // 487, else its server transaction (no timer in Proceeding) would stay forever.
            if let Some(c) = self.calls.get(&call)
                && c.state != CallState::Confirmed
            {
                let key = c.initial_server.clone();
                self.final_on_server(now, &key, 487, "Request Terminated", None, media);
            }
        }
        if let Some(e) = self.server.get_mut(&key) {
            e.relay = Some(ck.clone());
        }
        self.send_client(
            now,
            ck,
            req,
            peer_to,
            call,
            to,
            Purpose::Relay { server: key },
            is_invite,
            media,
        );
    }

    // ---- responses --------------------------------------------------------------------------

    fn on_response(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        media: &mut dyn MediaControl,
    ) {
        let Some(status) = msg.status().map(|s| s.as_u16()) else {
            return;
        };
        let via = msg.top_via();
        let Some(branch) = via.branch() else {
            self.events.push_back(Event::Dropped {
                reason: "stray_response",
            });
            return;
        };
        let key = client_key(branch, msg.cseq().method == Method::Cancel);
        let Some(e) = self.client.get(&key) else {
            self.events.push_back(Event::Dropped {
                reason: "stray_response",
            });
            return;
        };
        if !self.response_from_peer(e, &peer) {
            self.events.push_back(Event::PeerMismatch {
                side: e.side,
                kind: PeerMismatch::Response,
            });
            return;
        }
        let Some(e) = self.client.get_mut(&key) else {
            return;
        };
        let pass = match &mut e.tx {
            CTx::Invite(t) => {
                let invite = &e.request;
                let buf = &mut self.buf;
                t.handle_response(now, status, || msg::ack_for_non2xx(invite, &msg, buf))
            }
            CTx::NonInvite(t) => t.handle_response(now, status),
        };
        let (call, side, purpose, is_invite) = (
            e.call,
            e.side,
            e.purpose.clone(),
            matches!(e.tx, CTx::Invite(_)),
        );
        // A challenge from the trunk: keep what the retry is built from before the
        // transaction may be removed.
        let trunk = e.trunk;
        // Challenges of an `auth = sbc` trunk are the SBC's to answer (403 without
        // credentials); the others cross (auth_passthrough.rs).
        let sbc_answers = trunk
            .and_then(|t| self.cfg.trunks.get(t))
            .is_none_or(|t| t.auth == TrunkAuth::Sbc);
        let challenged = (matches!(status, 401 | 407) && side == Side::Outside && sbc_answers)
            .then(|| (e.request.clone(), e.peer, e.auth_attempts));
        self.after_client(now, &key, media);
        if !pass {
            return;
        }
        if let Some((request, peer, attempts)) = challenged {
            let retried = self.retry_with_credentials(
                now, call, trunk, side, &purpose, &request, peer, attempts, status, &msg, media,
            );
            if !retried {
                self.auth_failed(now, call, side, purpose, media);
            }
            return;
        }
        if is_invite
            && (200..300).contains(&status)
            && purpose == Purpose::Initial
            && self.late_fork_2xx(now, call, side, &msg, media)
        {
            return;
        }
        if is_invite && (200..300).contains(&status) {
            // A 2xx retransmission after we ACKed: ACK again (§13.2.2.4).
            if let Some(c) = self.calls.get(&call)
                && let Some((cseq, ack)) = &c.acks[side_index(side)]
                && *cseq == msg.cseq().seq
            {
                let to = c.leg(side).peer;
                self.transmits.push_back(Transmit {
                    to,
                    data: ack.clone(),
                });
                return;
            }
        }
        match purpose {
            Purpose::Own if msg.cseq().method == Method::Update => {
                self.refresh_answered(now, call, side, status, &msg, media);
            }
            Purpose::Own => {}
            Purpose::Initial => self.initial_response(now, call, side, status, &msg, media),
            Purpose::Relay { server } => {
                self.relay_response(now, call, side, &server, status, &msg, media)
            }
        }
    }

    fn initial_response(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) {
        if status == 100 {
            return; // hop-by-hop
        }
        let caller = side.other();
        // Update the callee leg's dialog state first, then act with the borrow released.
        let (server_key, canceled, cancel_pending, late_offer) = {
            let Some(c) = self.calls.get_mut(&call) else {
                // The call is already gone (e.g. cancelled and cleaned up).
                return;
            };
            if (101..300).contains(&status) {
                // The newest early dialog (forking, `fork.rs`) is the one the caller sees.
                c.follow_dialog(side, resp);
            }
            if (101..200).contains(&status) {
                if !c.provisional_seen {
                    self.events.push_back(Event::CallProgress { call });
                }
                c.provisional_seen = true;
            } else {
                c.leg_mut(side).invite_out = None;
                // A final response ends the early dialog's reliable provisionals.
                c.pending_rel = None;
            }
            let cancel_pending = std::mem::take(&mut c.cancel_pending) && status < 200;
            if (200..300).contains(&status) && !c.canceled {
                c.state = CallState::Confirmed;
                c.answered_at.get_or_insert(now);
            }
            let late_offer = self
                .client
                .get(&c.initial_client)
                .is_some_and(|e| e.request.body().is_empty());
            (
                c.initial_server.clone(),
                c.canceled,
                cancel_pending,
                late_offer,
            )
        };
        if (101..200).contains(&status) {
            if cancel_pending {
                self.cancel_client(now, call, media);
            } else if !canceled {
                self.provisional_to_caller(now, call, side, &server_key, status, resp, media);
            }
            return;
        }
        if (200..300).contains(&status) {
            let cseq_callee = resp.cseq().seq;
            if canceled {
                // CANCEL lost the race with the 2xx: the caller got 487; hang up the callee.
                self.send_ack(call, side, cseq_callee, b"");
                self.send_bye(now, call, side, media);
                self.finish_call(call, EndReason::Cancelled, media);
                return;
            }
            self.events.push_back(Event::CallAnswered { call });
            let timer = self.cfg.session_timer.answered(now, resp);
            self.set_leg_timer(call, side, timer);
            let sent =
                self.relay_to_caller(now, call, caller, &server_key, status, resp, None, media);
            if !late_offer {
                self.send_ack(call, side, cseq_callee, b"");
            }
            if let Some(resp_bytes) = sent {
                let ack_other = late_offer.then_some(cseq_callee);
                self.start_2xx_retransmit(now, call, caller, &server_key, resp_bytes, ack_other);
            }
            return;
        }
        if !canceled
            && (300..400).contains(&status)
            && side == Side::Outside
            && self.recurse(now, call, resp, media)
        {
            return;
        }
        // RFC 3261 §16.7 item 6 style serial forking across trunks: a timeout or server
        // error of this carrier says nothing about the callee; 4xx (other than 408) and 6xx
        // do, and end the call.
        if !canceled
            && (status == 408 || (500..600).contains(&status))
            && side == Side::Outside
            && self.failover(now, call, status, media)
        {
            return;
        }
        // 300-699: the transaction ACKed it; relay the final to the caller (unless cancelled).
        if !canceled {
            if matches!(status, 401 | 407) {
                self.remember_challenge(now, call, side, resp);
            }
            self.relay_to_caller(now, call, caller, &server_key, status, resp, None, media);
        }
        let reason = if canceled {
            EndReason::Cancelled
        } else {
            self.note_hangup(call, side);
            EndReason::Rejected(status)
        };
        self.finish_call(call, reason, media);
    }

    /// Relays a provisional from the callee. A reliable one (RFC 3262: `Require: 100rel` with
    /// an RSeq) goes to the caller reliably with our own RSeq if the caller supports 100rel,
    /// and is retransmitted until its PRACK; otherwise the SBC PRACKs the callee itself and
    /// relays the provisional as an ordinary one.
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn provisional_to_caller(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        server_key: &str,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) {
        let caller = side.other();
        let reliable = resp
            .headers()
            .require()
            .filter_map(Result::ok)
            .any(|t| t.trim().eq_ignore_ascii_case("100rel"));
        let rseq = resp.headers().rseq().ok().flatten();
        let (Some(theirs), true) = (rseq, reliable) else {
            self.relay_to_caller(now, call, caller, server_key, status, resp, None, media);
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.last_callee_rseq.is_some_and(|last| theirs <= last) {
            return; // a retransmission: the caller has (or gets) ours already
        }
        c.last_callee_rseq = Some(theirs);
        if !c.caller_100rel {
            let invite_cseq = resp.cseq().seq;
            self.send_prack(now, call, side, theirs, invite_cseq, media);
            self.relay_to_caller(now, call, caller, server_key, status, resp, None, media);
            return;
        }
        let ours = c.next_rseq;
        c.next_rseq = c.next_rseq.wrapping_add(1);
        c.rseq_map.push((ours, theirs));
        let sent = self.relay_to_caller(
            now,
            call,
            caller,
            server_key,
            status,
            resp,
            Some(ours),
            media,
        );
        if let (Some(bytes), Some(c)) = (sent, self.calls.get_mut(&call)) {
            let t1 = self.cfg.timers.t1;
            c.pending_rel = Some(PendingRel {
                rseq: ours,
                response: bytes,
                next: now + t1,
                interval: t1,
                deadline: now + self.cfg.timers.timeout(),
            });
            self.timers.set_earliest(TimerRef::Call(call), now + t1);
            self.account_call(call);
        }
    }

    /// PRACKs a reliable provisional of the callee on the SBC's own behalf.
    fn send_prack(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        rseq: u32,
        invite_cseq: u32,
        media: &mut dyn MediaControl,
    ) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        leg.local_cseq += 1;
        let rack = format!("{rseq} {invite_cseq} INVITE");
        let prack = msg::request(
            &RequestSpec {
                extra: &[("RAck", rack.as_str())],
                shaping: None,
                ..leg.request(
                    &Method::Prack,
                    local,
                    &branch,
                    leg.local_cseq,
                    &self.cfg.user_agent,
                )
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        let key = client_key(&branch, false);
        self.send_client(
            now,
            key,
            prack,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }

    /// Relays a response from the callee leg to the caller's server transaction `key`,
    /// mapping headers and SDP; with `rseq`, as a reliable provisional with that RSeq.
    /// Returns the bytes sent for a 2xx or a reliable provisional (for retransmission).
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn relay_to_caller(
        &mut self,
        now: Instant,
        call: u64,
        caller: Side,
        key: &str,
        status: u16,
        resp: &Message,
        rseq: Option<u32>,
        media: &mut dyn MediaControl,
    ) -> Option<Bytes> {
        let callee = caller.other();
        let mut body = Vec::new();
        let mut content_type = None;
        // Responses carry SDP only (`body.rs`); any other body is dropped.
        let sdp_body = match body::classify(resp, &resp.cseq().method) {
            Ok(body::Body::Sdp(sdp)) if (101..300).contains(&status) => Some(sdp),
            Ok(_) => None,
            Err(r) => {
                self.border_refusal(r.as_str());
                None
            }
        };
        if let Some(sdp_body) = sdp_body {
            let peers = self.call_media_peers(call);
            let c = self.calls.get_mut(&call)?;
            // An answer (or an offer in a 2xx to an offer-less INVITE).
            let result = sdp::streams(sdp_body, &self.cfg.sdp).and_then(|st| {
                let relays = match c.media {
                    Some(s) => media.commit(s, sdp::leg(callee), &st),
                    None => media.allocate(sdp::leg(callee), &st, &peers).map(|a| {
                        c.media = Some(a.session);
                        self.sessions.insert(a.session, call);
                        a.streams
                    }),
                }
                .map_err(|_| sdp::SdpProblem::Unanchored {
                    sections: st.len(),
                    relays: 0,
                })?;
                let leg = c.leg_mut(caller);
                sdp::rewrite(
                    sdp_body,
                    &relays,
                    caller,
                    &mut leg.origin,
                    &self.cfg.sdp,
                    &mut body,
                )
            });
            match result {
                Ok(()) => content_type = Some("application/sdp"),
                Err(p) => {
                    self.border_refusal(p.as_str());
                    body.clear();
                    // No 2xx without an anchored answer; a provisional goes on without SDP.
                    if (200..300).contains(&status) {
                        self.refuse_answer(now, call, caller, key, resp, media);
                        return None;
                    }
                }
            }
        }
        let e = self.server.get(key)?;
        // The standard phrase: the peer's own can name its systems.
        let reason =
            crate::sip::StatusCode::new(status).map_or("", crate::sip::StatusCode::standard_phrase);
        let local = self
            .calls
            .get(&call)
            .map_or_else(|| self.cfg.local(caller), |c| c.leg(caller).local);
        // 3xx: the redirect targets, reduced to their numbers at the SBC (`msg.rs`).
        let contacts: Vec<String> = if (300..400).contains(&status) {
            self.relayed_contacts(call, caller, resp, local)
        } else {
            Vec::new()
        };
        let trunk = self.calls.get(&call).and_then(|c| c.trunk);
        let challenge = if matches!(status, 401 | 407) && self.challenge_crosses(trunk, callee) {
            self.challenges_relayed += 1;
            auth_passthrough::challenge_headers(resp)
        } else {
            Vec::new()
        };
        let mut extra: Vec<(&str, &str)> =
            contacts.iter().map(|c| ("Contact", c.as_str())).collect();
        extra.extend(challenge.iter().map(|(n, v)| (*n, v.as_str())));
        let rseq_text = rseq.map(|r| r.to_string());
        if let Some(r) = &rseq_text {
            extra.push(("Require", "100rel"));
            extra.push(("RSeq", r.as_str()));
        }
        let (own, leg_timer) = self.answer_extensions(now, &e.request, status, resp);
        extra.extend(own.iter().map(|(n, v)| (*n, v.as_str())));
        let out = msg::response(
            &e.request,
            &ResponseSpec {
                status,
                reason,
                to_tag: e.to_tag.as_deref(),
                contact: ((101..300).contains(&status)).then_some(local),
                user_agent: &self.cfg.user_agent,
                content_type,
                body: &body,
                extra: &extra,
            },
            Some((resp.headers(), local)),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let key = key.to_owned();
        self.send_on_server(now, &key, status, out.clone(), media);
        if let Some(t) = leg_timer {
            self.set_leg_timer(call, caller, Some(t));
        }
        ((200..300).contains(&status) || rseq.is_some()).then_some(out)
    }

    fn start_2xx_retransmit(
        &mut self,
        now: Instant,
        call: u64,
        leg: Side,
        _server_key: &str,
        response: Bytes,
        ack_other_cseq: Option<u32>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let cseq = self
            .server
            .get(&c.initial_server)
            .map_or(0, |e| e.request.cseq().seq);
        let t1 = self.cfg.timers.t1;
        let reliable = c.leg(leg).peer.transport.is_reliable();
        c.pending_2xx = Some(Pending2xx {
            leg,
            cseq,
            response,
            // On reliable transports the 2xx is not retransmitted, but the ACK is still awaited.
            next: if reliable {
                now + self.cfg.timers.timeout()
            } else {
                now + t1
            },
            interval: t1,
            deadline: now + self.cfg.timers.timeout(),
            ack_other_cseq,
        });
        self.timers.set_earliest(
            TimerRef::Call(call),
            now + t1.min(self.cfg.timers.timeout()),
        );
        self.account_call(call);
    }

    /// The credentials of trunk `trunk`.
    fn trunk_credentials(&self, trunk: Option<usize>) -> Option<&crate::auth::Credentials> {
        self.cfg.trunks.get(trunk?)?.credentials.as_ref()
    }

    /// Marks trunk `index` (its position in `cfg.trunks`) usable or not (its OPTIONS health):
    /// new calls and failovers skip trunks that are down.
    pub fn set_trunk_usable(&mut self, index: usize, usable: bool) {
        if self.trunk_down.len() <= index {
            self.trunk_down.resize(index + 1, false);
        }
        self.trunk_down[index] = !usable;
    }

    /// Points trunk `index` (as in [`B2bua::set_trunk_usable`]) at a new proxy address, e.g.
    /// after a DNS lookup gave another one. Calls already on the trunk keep their address
    /// (their dialogs are bound to the peer they talk to); new calls and failovers use it.
    pub fn set_trunk_target(&mut self, index: usize, target: Target) {
        if let Some(t) = self.cfg.trunks.get_mut(index) {
            t.target = target;
        }
    }

    /// Points trunk `index` at its servers in order of preference (e.g. its DNS name's SRV
    /// targets): the first is its target, the others are tried in turn before the next trunk
    /// when a call's INVITE fails there. An empty list changes nothing.
    pub fn set_trunk_targets(&mut self, index: usize, targets: Vec<Target>) {
        if let Some(t) = self.cfg.trunks.get_mut(index)
            && let Some((first, rest)) = targets.split_first()
        {
            t.target = *first;
            t.alternates = rest.to_vec();
        }
    }

    /// Sets the addresses trunk `index` sends from besides its proxy address (e.g. every
    /// address its DNS name resolved to): calls from them count as calls from that trunk.
    pub fn set_trunk_sources(&mut self, index: usize, sources: Vec<std::net::IpAddr>) {
        if let Some(t) = self.cfg.trunks.get_mut(index) {
            t.sources = sources.into_iter().map(|ip| ip.to_canonical()).collect();
        }
    }

    /// Calls in progress per trunk (index as in `cfg.trunks`).
    pub fn trunk_calls(&self) -> &[u32] {
        &self.trunk_active
    }

    /// Moves an outbound call whose INVITE failed with `status` to the next trunk of its
    /// route that is up and admits it: a new dialog there (Call-ID, From tag, CSeq 1, numbers
    /// and headers by that trunk's rules) carrying the same offer. The caller sees nothing but
    /// a longer wait. False when no trunk is left.
    fn failover(
        &mut self,
        now: Instant,
        call: u64,
        status: u16,
        media: &mut dyn MediaControl,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let (Some(from), Some(offer)) = (c.trunk, c.offer.clone()) else {
            return false;
        };
        let Some(orig) = self
            .server
            .get(&c.initial_server)
            .map(|e| e.request.clone())
        else {
            return false;
        };
        let mut candidates = c.next_trunks.clone();
        // RFC 3263 §4.3: the trunk's next server first (same trunk: same limits slot, same
        // rules), then the next trunk of the route.
        let next_server = self
            .cfg
            .trunks
            .get(from)
            .and_then(|t| t.alternates.get(c.server))
            .copied();
        let (index, server, target) = if let Some(target) = next_server {
            (from, c.server + 1, target)
        } else {
            let mut chosen = None;
            while !candidates.is_empty() {
                let t = candidates.remove(0);
                if self.trunk_usable(t) && self.admit_trunk(now, t).is_none() {
                    chosen = Some(t);
                    break;
                }
            }
            let Some(index) = chosen else {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.next_trunks.clear();
                }
                return false;
            };
            let Some(target) = self.cfg.trunks.get(index).map(|t| t.target) else {
                return false;
            };
            (index, 0, target)
        };
        if let Some(c) = self.calls.get_mut(&call) {
            c.server = server;
            c.next_trunks = candidates;
        }
        self.events.push_back(Event::Failover {
            call,
            from,
            to: index,
            status,
        });
        self.restart_outside(now, call, index, target, None, &orig, &offer, media)
    }

    /// Starts the call's carrier leg afresh toward `target` on trunk `index` (failover,
    /// redirect): a new dialog there (Call-ID, From tag, CSeq 1) whose INVITE is built by that
    /// trunk's rules from the caller's `orig` (with `called` as the called number when given)
    /// and carries `offer`.
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn restart_outside(
        &mut self,
        now: Instant,
        call: u64,
        index: usize,
        target: Target,
        called: Option<&str>,
        orig: &Message,
        offer: &[u8],
        media: &mut dyn MediaControl,
    ) -> bool {
        let from = self.calls.get(&call).and_then(|c| c.trunk);
        let local = self.trunk_local(Side::Outside, Some(index));
        let call_id = format!("{}@{}", self.rng.token(), msg::host(local.addr));
        let tag = self.rng.token();
        let branch = self.rng.branch();
        let out = self.build_invite(
            orig,
            Side::Outside,
            Some(index),
            target,
            called,
            &call_id,
            &tag,
            &branch,
            offer,
        );
        let peer = Peer {
            side: Side::Outside,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: self.trunk_bound(Side::Outside, Some(index)),
        };
        let ck = client_key(&branch, false);
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let leg = c.leg_mut(Side::Outside);
        let old_dialog = (leg.call_id.clone(), leg.local_tag.clone());
        leg.peer = peer;
        leg.local = local;
        leg.call_id = call_id.clone();
        leg.local_tag = tag.clone();
        leg.local_hdr = out.from_hdr;
        leg.remote_tag = None;
        leg.remote_hdr = out.to_hdr;
        leg.local_cseq = 1;
        leg.remote_target = out.ruri;
        leg.route_set = Vec::new();
        leg.invite_out = Some(ck.clone());
        c.trunk = Some(index);
        c.initial_client = ck.clone();
        c.acks[side_index(Side::Outside)] = None;
        let server = c.initial_server.clone();
        if from != Some(index) {
            if let Some(n) = from.and_then(|f| self.trunk_active.get_mut(f)) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = self.trunk_active.get_mut(index) {
                *n += 1;
            }
        }
        self.dialogs.remove(&old_dialog);
        self.dialogs.insert((call_id, tag), (call, Side::Outside));
        if let Some(e) = self.server.get_mut(&server) {
            e.relay = Some(ck.clone());
        }
        // The media layer follows: the new server's address, the new trunk's networks and quota.
        if let Some(s) = self.calls.get(&call).and_then(|c| c.media) {
            let peers = self.call_media_peers(call);
            media.set_peers(s, &peers);
        }
        self.send_client(
            now,
            ck,
            out.bytes,
            peer,
            call,
            Side::Outside,
            Purpose::Initial,
            true,
            media,
        );
        true
    }

    /// Resends a challenged trunk request with credentials (RFC 3261 §22.2: same Call-ID,
    /// tags and Request-URI, CSeq + 1, a new branch). Returns false when the challenge cannot
    /// or may not be answered (no usable challenge, realm mismatch, retries used up).
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn retry_with_credentials(
        &mut self,
        now: Instant,
        call: u64,
        trunk: Option<usize>,
        side: Side,
        purpose: &Purpose,
        request: &Message,
        peer: Peer,
        attempts: u8,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) -> bool {
        let Some(creds) = self.trunk_credentials(trunk).cloned() else {
            return false;
        };
        let creds = &creds;
        let Some(method) = request.method().cloned() else {
            return false;
        };
        // RFC 3261 §22.1: CANCEL and ACK cannot be challenged; never answer for them.
        if matches!(method, Method::Cancel | Method::Ack) || attempts >= MAX_AUTH_ATTEMPTS {
            return false;
        }
        // A cancelled call is not revived by answering its challenge.
        if *purpose == Purpose::Initial && self.calls.get(&call).is_none_or(|c| c.canceled) {
            return false;
        }
        // RFC 3261 §22.2 / §22.3: 401 carries WWW-Authenticate, 407 Proxy-Authenticate.
        let (name, header) = if status == 401 {
            (HeaderName::WwwAuthenticate, "Authorization")
        } else {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        };
        let challenges: Vec<crate::auth::Challenge> = resp
            .headers()
            .all(name)
            .filter_map(|h| h.value_str())
            .filter_map(|v| crate::sip::Auth::parse(v).ok())
            .filter_map(|a| crate::auth::Challenge::from_auth(&a).ok())
            .collect();
        // RFC 8760 §2.4: the topmost challenge with a supported algorithm.
        let Some(challenge) = challenges.into_iter().next() else {
            return false;
        };
        // A second challenge means the credentials were refused, unless it only says the
        // nonce went stale (RFC 7616 §3.3).
        if attempts >= 1 && !challenge.stale {
            return false;
        }
        let nc = match &mut self.last_nonce {
            Some((n, count)) if *n == challenge.nonce => {
                *count = count.saturating_add(1);
                *count
            }
            _ => {
                self.last_nonce = Some((challenge.nonce.clone(), 1));
                1
            }
        };
        let cnonce = self.rng.token();
        let uri = request.request_uri_str().unwrap_or_default();
        let Ok(answer) = challenge.respond(creds, method.as_str(), uri, nc, &cnonce) else {
            return false;
        };
        let value = answer.header_value();

        // CSeq + 1 in the leg's sequence space (the call may already be gone for our own BYE).
        let mut cseq = request.cseq().seq.saturating_add(1);
        if let Some(c) = self.calls.get_mut(&call) {
            let leg = c.leg_mut(side);
            leg.local_cseq = leg.local_cseq.max(cseq);
            cseq = leg.local_cseq;
        }
        let branch = self.rng.branch();
        let headers = request.headers();
        let mut ed = crate::sip::Editor::new(request);
        if let Some(i) = headers.positions(HeaderName::Via).next() {
            ed.set_param(i, "branch", Some(branch.as_str().into()));
        }
        let cseq_value = format!("{cseq} {method}");
        if let Some(i) = headers.positions(HeaderName::CSeq).next() {
            ed.replace(i, cseq_value.as_bytes());
        }
        ed.remove_all(HeaderName::Authorization);
        ed.remove_all(HeaderName::ProxyAuthorization);
        ed.append(header, value.as_bytes());
        let mut out = Vec::with_capacity(request.as_bytes().len() + value.len() + 32);
        ed.write(&mut out);
        let bytes = Bytes::from(out);

        let is_invite = method == Method::Invite;
        let ck = client_key(&branch, false);
        match purpose {
            Purpose::Initial => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.initial_client = ck.clone();
                    c.leg_mut(side).invite_out = Some(ck.clone());
                    let server = c.initial_server.clone();
                    if let Some(e) = self.server.get_mut(&server) {
                        e.relay = Some(ck.clone());
                    }
                }
            }
            Purpose::Relay { server } => {
                if is_invite && let Some(c) = self.calls.get_mut(&call) {
                    c.leg_mut(side).invite_out = Some(ck.clone());
                }
                if let Some(e) = self.server.get_mut(server) {
                    e.relay = Some(ck.clone());
                }
            }
            Purpose::Own => {}
        }
        self.auth_retries += 1;
        self.send_client(
            now,
            ck.clone(),
            bytes,
            peer,
            call,
            side,
            purpose.clone(),
            is_invite,
            media,
        );
        if let Some(e) = self.client.get_mut(&ck) {
            e.auth_attempts = attempts + 1;
            // Our own BYE may outlive its call: keep answering with this trunk's credentials.
            e.trunk = trunk;
        }
        true
    }

    /// The trunk refused our credentials (or sent a challenge we cannot answer): the caller
    /// gets 403, never the trunk's challenge, which is meaningless to it (the PBX has no
    /// credentials for the carrier and the challenge headers do not cross).
    fn auth_failed(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        purpose: Purpose,
        media: &mut dyn MediaControl,
    ) {
        self.auth_failures += 1;
        match purpose {
            Purpose::Own => {}
            Purpose::Initial => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.leg_mut(side).invite_out = None;
                let (server, canceled) = (c.initial_server.clone(), c.canceled);
                if !canceled {
                    self.final_on_server(now, &server, 403, "Forbidden", None, media);
                }
                let reason = if canceled {
                    EndReason::Cancelled
                } else {
                    EndReason::Rejected(403)
                };
                self.finish_call(call, reason, media);
            }
            Purpose::Relay { server } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.leg_mut(side).invite_out = None;
                }
                self.final_on_server(now, &server, 403, "Forbidden", None, media);
                let is_bye = self
                    .server
                    .get(&server)
                    .is_some_and(|e| e.request.method() == Some(&Method::Bye));
                if is_bye {
                    self.finish_call(call, EndReason::Bye, media);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn relay_response(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        server: &str,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) {
        if status == 100 {
            return;
        }
        let from = side.other();
        let method = resp.cseq().method.clone();
        if method == Method::Register && call == STANDALONE {
            self.register_response(now, server, status, resp, media);
            return;
        }
        if method == Method::Invite
            && status >= 200
            && let Some(c) = self.calls.get_mut(&call)
        {
            c.leg_mut(side).invite_out = None;
        }
        let sent = self.relay_to_caller(now, call, from, server, status, resp, None, media);
        if matches!(method, Method::Invite | Method::Update) && (200..300).contains(&status) {
            // The peer answered a request relayed on its leg: its session interval from now.
            let current = self.calls.get(&call).and_then(|c| c.leg(side).session);
            let timer = self
                .cfg
                .session_timer
                .answered(now, resp)
                .or(current.map(|t| session_timer::LegTimer {
                    last: now,
                    refreshing: false,
                    ..t
                }));
            self.set_leg_timer(call, side, timer);
        }
        match method {
            Method::Bye if status >= 200 => self.finish_call(call, EndReason::Bye, media),
            Method::Invite if (200..300).contains(&status) => {
                // re-INVITE answered: ACK end-to-end on this leg now unless the offer comes
                // in the ACK (late offer), and retransmit the 2xx to the other leg until ACKed.
                let late = self
                    .server
                    .get(server)
                    .is_some_and(|e| e.request.body().is_empty());
                let cseq_here = resp.cseq().seq;
                if !late {
                    self.send_ack(call, side, cseq_here, b"");
                }
                if let Some(bytes) = sent {
                    let cseq_there = self.server.get(server).map_or(0, |e| e.request.cseq().seq);
                    self.start_2xx_retransmit(
                        now,
                        call,
                        from,
                        server,
                        bytes,
                        late.then_some(cseq_here),
                    );
                    if let Some(c) = self.calls.get_mut(&call)
                        && let Some(p) = c.pending_2xx.as_mut()
                    {
                        p.cseq = cseq_there;
                    }
                }
            }
            _ => {}
        }
    }

    // ---- bookkeeping --------------------------------------------------------------------------

    fn after_server(&mut self, now: Instant, key: &str, media: &mut dyn MediaControl) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        let resend = self.resending.as_deref() == Some(key);
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            &mut self.retransmissions_sent,
            &mut self.transmits,
            |event| terminated |= event == TxEvent::Terminated,
        );
        let owner = TimerRef::Server(key.to_owned());
        match deadline {
            Some(at) if !terminated => self.timers.set(owner, at),
            _ => self.timers.cancel(&owner),
        }
        if terminated {
            self.ledger.remove_server(key);
            if let Some(e) = self.server.remove(key)
                && let Some(m) = e.merged
            {
                self.merged.remove(&m);
            }
        } else {
            self.ledger
                .set_server(key, e.request.as_bytes().len() + e.tx.held_bytes());
        }
        let _ = (now, media);
    }

    fn after_client(&mut self, now: Instant, key: &str, media: &mut dyn MediaControl) {
        let Some(e) = self.client.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        let mut failure = None;
        let resend = self.resending.as_deref() == Some(key);
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            &mut self.retransmissions_sent,
            &mut self.transmits,
            |event| match event {
                TxEvent::Terminated => terminated = true,
                TxEvent::TimedOut(t) => failure = Some(Some(t)),
                TxEvent::TransportError => failure = Some(None),
            },
        );
        let (call, purpose, side) = (e.call, e.purpose.clone(), e.side);
        let own_refresh = purpose == Purpose::Own && e.request.method() == Some(&Method::Update);
        // The request is shared between the entry and the machine: counted once.
        let held = e.tx.held_bytes();
        let owner = TimerRef::Client(key.to_owned());
        match deadline {
            Some(at) if !terminated => self.timers.set(owner, at),
            _ => self.timers.cancel(&owner),
        }
        if terminated {
            self.client.remove(key);
            self.ledger.remove_client(key);
        } else {
            self.ledger.set_client(key, held);
        }
        if own_refresh && failure.is_some() {
            // RFC 4028 §10: a refresh that times out ends the session.
            self.terminate(now, call, EndReason::SessionExpired, media);
            return;
        }
        if let Some(timer) = failure {
            self.client_failed(now, call, side, purpose, timer, media);
        }
    }

    /// A client transaction timed out (`Some(timer)`) or hit a transport error (`None`).
    fn client_failed(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        purpose: Purpose,
        timer: Option<Timer>,
        media: &mut dyn MediaControl,
    ) {
        let (status, reason, end) = match timer {
            Some(_) => (408, "Request Timeout", EndReason::Timeout),
            None => (503, "Service Unavailable", EndReason::TransportError),
        };
        match purpose {
            Purpose::Own => {}
            Purpose::Initial => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.leg_mut(side).invite_out = None;
                let key = c.initial_server.clone();
                let (provisional, canceled) = (c.provisional_seen, c.canceled);
                // No response at all (Timer B) or an unreachable trunk: try the next one.
                if !canceled
                    && side == Side::Outside
                    && timer != Some(Timer::C)
                    && self.failover(now, call, status, media)
                {
                    return;
                }
                if timer == Some(Timer::C) && provisional && !canceled {
                    // §16.6 item 11: CANCEL the callee; the caller gets 408 now.
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.canceled = true;
                    }
                    self.cancel_client(now, call, media);
                }
                if !canceled {
                    self.final_on_server(now, &key, status, reason, None, media);
                }
                self.finish_call(
                    call,
                    if canceled { EndReason::Cancelled } else { end },
                    media,
                );
            }
            Purpose::Relay { server } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.leg_mut(side).invite_out = None;
                }
                self.final_on_server(now, &server, status, reason, None, media);
                let is_bye = self
                    .server
                    .get(&server)
                    .is_some_and(|e| e.request.method() == Some(&Method::Bye));
                if is_bye {
                    self.finish_call(call, EndReason::Bye, media);
                }
            }
        }
    }

    fn call_timer(&mut self, now: Instant, call: u64, media: &mut dyn MediaControl) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(at) = c.ends_at
            && at <= now
        {
            c.ends_at = None;
            self.terminate(now, call, EndReason::MaxDuration, media);
            return;
        }
        let Ok(session_next) = self.session_timers(now, call, media) else {
            return; // a session expired: the call is over
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let mut next = match (c.ends_at, session_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut give_up = false;
        let mut unacked_rel = false;
        let caller_peer = c.legs[side_index(c.leg_side_of_caller())].peer;
        if let Some(p) = c.pending_rel.as_mut() {
            if p.deadline <= now {
                unacked_rel = true;
            } else {
                if p.next <= now {
                    let to = caller_peer;
                    if !to.transport.is_reliable() {
                        self.transmits.push_back(Transmit {
                            to,
                            data: p.response.clone(),
                        });
                    }
                    // RFC 3262 §3: T1, doubling, until the PRACK or 64·T1.
                    p.interval = p.interval.saturating_mul(2);
                    p.next = now + p.interval;
                }
                next = Some(next.map_or(p.next, |n| n.min(p.next)));
            }
        }
        if unacked_rel {
            // §3: no PRACK for 64·T1 — reject the INVITE and cancel the callee.
            c.pending_rel = None;
            self.terminate(now, call, EndReason::Timeout, media);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(p) = c.pending_2xx.as_mut() {
            if p.deadline <= now {
                give_up = true;
            } else {
                if p.next <= now {
                    let to = c.legs[side_index(p.leg)].peer;
                    if !to.transport.is_reliable() {
                        self.retransmissions_sent += 1;
                        self.transmits.push_back(Transmit {
                            to,
                            data: p.response.clone(),
                        });
                    }
                    p.interval = (p.interval * 2).min(self.cfg.timers.t2);
                    p.next = now + p.interval;
                }
                next = Some(next.map_or(p.next.min(p.deadline), |n| n.min(p.next).min(p.deadline)));
            }
        }
        if give_up {
            // §13.3.1.4: no ACK within 64·T1 — the session is confirmed and then ended.
            if let Some(c) = self.calls.get_mut(&call) {
                c.pending_2xx = None;
            }
            self.terminate(now, call, EndReason::NoAck, media);
            return;
        }
        if let Some(at) = next {
            self.timers.set_earliest(TimerRef::Call(call), at);
        }
        self.account_call(call);
    }

    /// Ends a call from the SBC's side: BYE on confirmed legs, CANCEL/487 on an early call.
    fn terminate(
        &mut self,
        now: Instant,
        call: u64,
        reason: EndReason,
        media: &mut dyn MediaControl,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == CallState::Early {
            let key = c.initial_server.clone();
            c.canceled = true;
            let provisional = c.provisional_seen;
            self.final_on_server(now, &key, 487, "Request Terminated", None, media);
            if provisional {
                self.cancel_client(now, call, media);
            } else if let Some(c) = self.calls.get_mut(&call) {
                c.cancel_pending = true;
                return; // wait for a provisional to cancel, or for the 2xx to BYE
            }
        } else {
            for side in [Side::Inside, Side::Outside] {
                self.send_bye(now, call, side, media);
            }
        }
        self.finish_call(call, reason, media);
    }

    fn send_bye(&mut self, now: Instant, call: u64, side: Side, media: &mut dyn MediaControl) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        leg.local_cseq += 1;
        let bye = msg::request(
            &leg.request(
                &Method::Bye,
                local,
                &branch,
                leg.local_cseq,
                &self.cfg.user_agent,
            ),
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        self.send_client(
            now,
            client_key(&branch, false),
            bye,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }

    fn release_media(&mut self, call: u64, media: &mut dyn MediaControl) {
        if let Some(c) = self.calls.get_mut(&call)
            && let Some(s) = c.media.take()
        {
            self.sessions.remove(&s);
            media.release(s);
        }
    }

    /// Forgets a call: media released, dialogs unindexed. Transactions finish on their own.
    fn finish_call(&mut self, call: u64, reason: EndReason, media: &mut dyn MediaControl) {
        self.record_call(call, reason);
        self.release_media(call, media);
        if let Some(c) = self.calls.remove(&call) {
            if let Some(t) = c.trunk
                && let Some(n) = self.trunk_active.get_mut(t)
            {
                *n = n.saturating_sub(1);
            }
            for leg in &c.legs {
                self.dialogs
                    .remove(&(leg.call_id.clone(), leg.local_tag.clone()));
            }
            self.timers.cancel(&TimerRef::Call(call));
            self.ledger.remove_call(call);
            self.events.push_back(Event::CallEnded { call, reason });
        }
    }

    fn drain_media(&mut self, now: Instant, media: &mut dyn MediaControl) {
        while let Some(ev) = media.poll_event() {
            let MediaEvent::Timeout(s) = ev;
            if let Some(call) = self.sessions.get(&s).copied() {
                self.terminate(now, call, EndReason::MediaTimeout, media);
            }
        }
    }
}

/// The outputs every transaction machine has, whichever of the four it is.
trait Machine {
    fn held_bytes(&self) -> usize;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<TxEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
}

macro_rules! machine_for {
    ($ty:ident) => {
        impl Machine for $ty {
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

/// Max-Forwards of a request relayed for one that arrived with `received` (RFC 3261 §16.6
/// item 3: decremented, never reset, so a loop through B2BUAs ends with 483 where it reaches
/// 0; requests arriving with 0 are refused before they get here).
const fn forwarded_max_forwards(received: u8) -> u8 {
    received.saturating_sub(1)
}

/// The call handle of standalone relays (MESSAGE outside a dialog); calls start at 1.
const STANDALONE: u64 = 0;

/// Methods the SBC accepts (Allow header).
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, MESSAGE, NOTIFY, REFER";

/// The server transaction key (RFC 3261 §17.2.3; ACK maps to its INVITE), with the RFC 2543
/// fallback for branches without the magic cookie.
fn server_key(msg: &Message) -> String {
    let via = msg.top_via();
    let method = match msg.method() {
        Some(Method::Ack) | None => "INVITE",
        Some(m) => m.as_str(),
    };
    let port = via.port.unwrap_or(5060);
    match via.branch().filter(|_| via.has_rfc3261_branch()) {
        Some(branch) => format!("{branch}|{}:{port}|{method}", via.host),
        None => format!(
            "2543|{}|{}|{}|{}|{}:{port}|{method}",
            msg.request_uri_str().unwrap_or(""),
            msg.from().tag().unwrap_or(""),
            msg.call_id(),
            msg.cseq().seq,
            via.host
        ),
    }
}

/// The client transaction key: our branch, with CANCEL distinguished (it shares the branch).
fn client_key(branch: &str, cancel: bool) -> String {
    if cancel {
        format!("{branch}|CANCEL")
    } else {
        format!("{branch}|INVITE")
    }
}

/// (Call-ID, From tag, CSeq number) of an initial request, for merged-request detection.
fn merged_key(msg: &Message) -> Option<(String, String, u32)> {
    Some((
        msg.call_id().to_owned(),
        msg.from().tag()?.to_owned(),
        msg.cseq().seq,
    ))
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

fn request_user(msg: &Message) -> Option<String> {
    let from_uri = |u: crate::sip::Uri<'_>| match u {
        crate::sip::Uri::Sip(s) => s.user.map(str::to_owned),
        crate::sip::Uri::Tel(t) => Some(t.raw.trim_start_matches("tel:").to_owned()),
        crate::sip::Uri::Other(_) => None,
    };
    msg.request_uri()
        .and_then(from_uri)
        .or_else(|| from_uri(msg.to().uri))
}
