//! What the B2BUA reports: events for metrics and logs, why calls end, live-state counts and
//! counters since start.

use super::*;

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
    /// The relay lost the call's media (its advertised ports could not be bound).
    MediaFailure,
    /// The maximum call duration was reached.
    MaxDuration,
    /// A transport failure.
    TransportError,
    /// A leg's session timer ran out without a refresh (RFC 4028 §10), or a refresh of ours
    /// was answered 408/481 or timed out.
    SessionExpired,
    /// The SBC was draining and its drain timeout ran out (or it was told to end now).
    Drain,
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
            EndReason::MediaFailure => "media_failure",
            EndReason::MaxDuration => "max_duration",
            EndReason::TransportError => "transport_error",
            EndReason::SessionExpired => "session_expired",
            EndReason::Drain => "drain",
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
    /// A DTMF digit arrived from `side` (`dtmf_interwork.rs`); its value is not part of the
    /// event.
    Dtmf {
        /// Side it came from.
        side: Side,
        /// How it came.
        method: super::DtmfMethod,
    },
    /// Media command: the relay is to send `digit` as RFC 4733 telephone-events toward
    /// `toward` on stream `stream` of `session` with payload type `payload_type` (8000 Hz; an
    /// INFO digit converted, `dtmf_interwork.rs`). `Digit`'s `Debug` hides the value.
    GenerateDtmf {
        /// The call's media session.
        session: crate::media::SessionId,
        /// The stream (`m=` line index).
        stream: usize,
        /// The `telephone-event` payload type the receiving leg negotiated.
        payload_type: u8,
        /// The leg the events go to.
        toward: Side,
        /// The digit.
        digit: crate::dtmf::Digit,
        /// How long (ms).
        duration_ms: u32,
    },
    /// A message was dropped without an answer.
    Dropped {
        /// Why (bounded set, usable as a metric label).
        reason: &'static str,
    },
    /// One call attempt is over: the facts for its detail record (`record.rs`).
    CallRecord(Box<super::CallRecord>),
    /// An answered call's restorable state changed (answered, re-INVITE or UPDATE done, a
    /// refresh, a CSeq step): the driver persists it (`snapshot.rs`).
    CallState(Box<super::CallSnapshot>),
    /// A call whose state was reported is over: the driver deletes its record.
    CallStateEnded {
        /// The record's key.
        key: super::StateKey,
    },
    /// A relayed registration of the PBX bound AOR `user` to `target` until the instant
    /// given, or (`None`) was removed: the other signaling shards mirror it
    /// ([`B2bua::mirror_pbx_binding`](super::B2bua::mirror_pbx_binding)), so a call for the
    /// AOR that lands on any shard reaches the PBX's registered address.
    PbxBinding {
        /// The AOR's user part.
        user: String,
        /// Where its calls go, and until when.
        target: Option<(super::Target, std::time::Instant)>,
    },
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
