//! Call metrics: calls by direction, trunk and result, their delays and durations, SIP
//! messages through the call layer, transactions, admission, authentication, bans,
//! registrations and trunk health. The signaling driver feeds them from the core's events
//! ([`CallMetrics::on_event`]) and counters ([`CallMetrics::observe`]); labels are bounded.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sbc_proto::{
    b2bua::{Counters, EndReason, Event, PeerMismatch, Stats},
    health::Health,
    net::Side,
    register::RegState,
    sbc::Sbc,
    sip::Message,
};

/// Call metrics (bounded labels: direction, reason).
#[derive(Debug, Clone)]
pub struct CallMetrics {
    /// Calls started, by direction (`outbound`: PBX → carrier; `inbound`: carrier → PBX).
    pub started: IntCounterVec,
    /// Calls ended, by direction and reason.
    pub ended: IntCounterVec,
    /// Calls in progress, by direction.
    pub active: IntGaugeVec,
    /// Calls answered, by direction.
    pub answered: IntCounterVec,
    /// Calls finished, by trunk, direction and result (`answered`, `busy`, `no_answer`,
    /// `rejected_4xx`/`5xx`/`6xx`, `cancelled`, `timeout`, `failed`): the ASR denominator.
    pub total: IntCounterVec,
    /// Calls in progress, by trunk and direction.
    pub trunk_active: IntGaugeVec,
    /// INVITE → first provisional above 100, by direction (post-dial delay).
    pub post_dial_delay: HistogramVec,
    /// INVITE → 2xx, by direction.
    pub answer_delay: HistogramVec,
    /// Answer → end of answered calls, by direction (ACD).
    pub duration: HistogramVec,
    /// SIP requests by side, direction (`in`/`out`) and method.
    pub requests: IntCounterVec,
    /// SIP responses by side, direction and status class.
    pub responses: IntCounterVec,
    /// Request retransmissions received (absorbed by a server transaction).
    pub retransmissions_received: IntCounter,
    /// Requests and responses the SBC sent again (transaction timers, 2xx until ACK).
    pub retransmissions_sent: IntCounter,
    /// Live SIP transactions by kind (`server`, `client`).
    pub transactions: IntGaugeVec,
    /// New calls refused with 503 by call admission control, by direction and limit.
    pub admission_rejected: IntCounterVec,
    /// Digest authentication toward the trunk, by result (`retry`: a challenged request
    /// resent with credentials; `failure`: refused or unanswerable, 403 to the caller).
    pub trunk_auth: IntCounterVec,
    /// Sources banned for exceeding their message rate.
    pub bans: IntCounter,
    /// Sources banned now.
    pub bans_active: IntGauge,
    /// Bans lifted early because the ban table was full (`[limits] max_bans`).
    pub bans_evicted: IntCounter,
    /// Outbound registration state per trunk: 1 for the current state, 0 for the others.
    pub registration_state: IntGaugeVec,
    /// Calls moved away from a trunk after a timeout, 408 or 5xx, by that trunk.
    pub failovers: IntCounterVec,
    /// Carrier 3xx on trunks that recurse, by outcome (`followed`, `limit`, `no_target`).
    pub redirects: IntCounterVec,
    /// Calls (and MESSAGEs) from the PBX refused with 404 because no route takes the number.
    pub no_route: IntCounter,
    /// OPTIONS health per trunk: 1 for the current state (`unknown`, `up`, `down`).
    pub health: IntGaugeVec,
    /// Digest authentication of the PBX's new requests, by result (`challenged`, `accepted`,
    /// `failed`, `stale`).
    pub pbx_auth: IntCounterVec,
    /// In-dialog requests (481) and responses (dropped) not from their dialog's or
    /// transaction's peer, by side and kind (`request_source`, `request_tag`, `response`).
    pub peer_mismatch: IntCounterVec,
    /// Bytes of SIP messages the call layer holds (capped by `[limits] max_stored_mib`).
    pub stored_bytes: IntGauge,
    /// Bodies and SDP stopped at the border (415, 488 or dropped), by reason.
    pub border_refusals: IntCounterVec,
    /// DTMF digits seen, by side they came from and method (values never recorded).
    pub dtmf_events: IntCounterVec,
    /// The per-message series, resolved once (see [`PerMessage`]).
    per_message: Arc<PerMessage>,
}

/// The children of the series every SIP message touches (`requests`, `responses`, the two
/// transaction gauges), each resolved on first use and kept: `with_label_values` hashes the
/// labels and takes the family's lock on every call, which at five to six calls per message
/// was ~3 % of the signaling thread. Filled lazily so the exposition shows a method or class
/// only once it was seen, as before.
#[derive(Debug)]
struct PerMessage {
    /// By side × direction × method ([`METHODS`], then `other`).
    requests: [OnceLock<IntCounter>; 2 * 2 * (METHODS.len() + 1)],
    /// By side × direction × class (`1xx` … `6xx`).
    responses: [OnceLock<IntCounter>; 2 * 2 * CLASSES.len()],
    /// `server`, `client`.
    transactions: [IntGauge; 2],
}

/// The methods counted by name; any other token is `other` (extension tokens are unbounded
/// and must not become label values).
const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "MESSAGE",
    "NOTIFY",
    "SUBSCRIBE",
    "REFER",
    "PUBLISH",
];

/// Status class labels; a code outside 100–599 counts as `6xx`, as before.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Direction label of a counted message.
#[derive(Debug, Clone, Copy)]
enum Way {
    In,
    Out,
}

impl Way {
    const fn as_str(self) -> &'static str {
        match self {
            Way::In => "in",
            Way::Out => "out",
        }
    }
}

/// Row of `side` × `way` in the per-message arrays.
const fn row(side: Side, way: Way) -> usize {
    side.index() * 2 + way as usize
}

impl PerMessage {
    fn new(transactions: &IntGaugeVec) -> Self {
        Self {
            requests: std::array::from_fn(|_| OnceLock::new()),
            responses: std::array::from_fn(|_| OnceLock::new()),
            transactions: [
                transactions.with_label_values(&["server"]),
                transactions.with_label_values(&["client"]),
            ],
        }
    }

    fn request(&self, family: &IntCounterVec, side: Side, way: Way, method: Method) -> &IntCounter {
        let i = row(side, way) * (METHODS.len() + 1) + method.0;
        self.requests[i].get_or_init(|| {
            family.with_label_values(&[side.as_str(), way.as_str(), method.label()])
        })
    }

    fn response(&self, family: &IntCounterVec, side: Side, way: Way, class: Class) -> &IntCounter {
        let i = row(side, way) * CLASSES.len() + class.0;
        self.responses[i].get_or_init(|| {
            family.with_label_values(&[side.as_str(), way.as_str(), CLASSES[class.0]])
        })
    }
}

/// A request method as an index into [`METHODS`] (`METHODS.len()` is `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method(usize);

impl Method {
    /// The method of a request line's token.
    fn of(token: &[u8]) -> Self {
        Self(
            METHODS
                .iter()
                .position(|m| m.as_bytes() == token)
                .unwrap_or(METHODS.len()),
        )
    }

    /// Its metric label.
    pub fn label(self) -> &'static str {
        METHODS.get(self.0).copied().unwrap_or("other")
    }
}

/// A status code's class as an index into [`CLASSES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class(usize);

impl Class {
    /// The class of `code` (`6xx` for anything outside 100–599, as the label always did).
    fn of(code: u16) -> Self {
        Self(match code / 100 {
            1..=5 => usize::from(code / 100 - 1),
            _ => 5,
        })
    }

    /// Its metric label.
    pub fn label(self) -> &'static str {
        CLASSES[self.0]
    }
}

impl CallMetrics {
    /// Creates and registers the call metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let started = IntCounterVec::new(
            Opts::new("sbc_calls_started_total", "Calls started, by direction."),
            &["direction"],
        )?;
        let ended = IntCounterVec::new(
            Opts::new(
                "sbc_calls_ended_total",
                "Calls ended, by direction and reason.",
            ),
            &["direction", "reason"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "sbc_calls_active",
                "Calls in progress (ringing or answered).",
            ),
            &["direction"],
        )?;
        let answered = IntCounterVec::new(
            Opts::new(
                "sbc_calls_answered_total",
                "Calls answered (2xx), by direction.",
            ),
            &["direction"],
        )?;
        let total = IntCounterVec::new(
            Opts::new(
                "sbc_calls_total",
                "Calls finished, by trunk, direction and result.",
            ),
            &["trunk", "direction", "result"],
        )?;
        let trunk_active = IntGaugeVec::new(
            Opts::new(
                "sbc_trunk_calls_active",
                "Calls in progress, by trunk and direction.",
            ),
            &["trunk", "direction"],
        )?;
        // Post-dial delay and answer time span tens of milliseconds (lab, auto-answer) to
        // minutes (a person picking up); Timer C caps them at 180 s by default.
        let delays = vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0,
        ];
        let post_dial_delay = HistogramVec::new(
            HistogramOpts::new(
                "sbc_call_post_dial_delay_seconds",
                "Time from the INVITE to the first provisional response above 100 (PDD).",
            )
            .buckets(delays.clone()),
            &["direction"],
        )?;
        let answer_delay = HistogramVec::new(
            HistogramOpts::new(
                "sbc_call_answer_delay_seconds",
                "Time from the INVITE to the answer (2xx).",
            )
            .buckets(delays),
            &["direction"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sbc_call_duration_seconds",
                "Duration of answered calls, from the answer to the end (ACD).",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
            ]),
            &["direction"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "sbc_sip_requests_total",
                "SIP requests processed by the call layer, by side, direction and method.",
            ),
            &["side", "direction", "method"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "sbc_sip_responses_total",
                "SIP responses processed by the call layer, by side, direction and class.",
            ),
            &["side", "direction", "class"],
        )?;
        let retransmissions_received = IntCounter::new(
            "sbc_sip_retransmissions_received_total",
            "Request retransmissions received and absorbed by a server transaction.",
        )?;
        let retransmissions_sent = IntCounter::new(
            "sbc_sip_retransmissions_sent_total",
            "SIP requests and responses sent again (transaction timers, 2xx until the ACK).",
        )?;
        let transactions = IntGaugeVec::new(
            Opts::new("sbc_sip_transactions", "Live SIP transactions, by kind."),
            &["kind"],
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(ended.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(answered.clone()))?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(trunk_active.clone()))?;
        registry.register(Box::new(post_dial_delay.clone()))?;
        registry.register(Box::new(answer_delay.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(retransmissions_received.clone()))?;
        registry.register(Box::new(retransmissions_sent.clone()))?;
        let admission_rejected = IntCounterVec::new(
            Opts::new(
                "sbc_calls_admission_rejected_total",
                "New calls refused with 503 by call admission control, by direction and limit.",
            ),
            &["direction", "limit"],
        )?;
        let trunk_auth = IntCounterVec::new(
            Opts::new(
                "sbc_trunk_auth_total",
                "Digest challenges: from the trunk answered with credentials (retry) or not \
                 (failure); relayed to the other side with their challenge (relayed), retries \
                 mapped onto the challenged dialog (relayed_retry); REGISTERs from the PBX \
                 relayed to the trunk (register_relayed) or answered by the SBC (register_refused).",
            ),
            &["result"],
        )?;
        let bans = IntCounter::new(
            "sbc_bans_total",
            "Sources banned for exceeding their SIP message rate.",
        )?;
        let bans_active = IntGauge::new("sbc_bans_active", "Sources banned now.")?;
        let bans_evicted = IntCounter::new(
            "sbc_bans_evicted_total",
            "Bans lifted early because the ban table was full ([limits] max_bans).",
        )?;
        let registration_state = IntGaugeVec::new(
            Opts::new(
                "sbc_trunk_registration_state",
                "Outbound registration state per trunk (1 = current state).",
            ),
            &["trunk", "state"],
        )?;
        registry.register(Box::new(registration_state.clone()))?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "sbc_trunk_failovers_total",
                "Calls moved to the next trunk after a timeout, 408 or 5xx, by the failed trunk.",
            ),
            &["trunk"],
        )?;
        registry.register(Box::new(failovers.clone()))?;
        let redirects = IntCounterVec::new(
            Opts::new(
                "sbc_calls_redirects_total",
                "Carrier 3xx on trunks with redirect = \"recurse\", by outcome: followed (the \
                 INVITE went to a Contact), limit ([sip] max_redirects reached) or no_target \
                 (no usable Contact left); in the last two the 3xx reaches the PBX.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(redirects.clone()))?;
        let no_route = IntCounter::new(
            "sbc_calls_no_route_total",
            "Calls from the PBX refused with 404: no [[route]] takes the called number.",
        )?;
        registry.register(Box::new(no_route.clone()))?;
        let health = IntGaugeVec::new(
            Opts::new(
                "sbc_trunk_health",
                "OPTIONS health per trunk (1 = current state: unknown, up, down).",
            ),
            &["trunk", "state"],
        )?;
        registry.register(Box::new(health.clone()))?;
        registry.register(Box::new(bans.clone()))?;
        registry.register(Box::new(bans_active.clone()))?;
        registry.register(Box::new(bans_evicted.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(admission_rejected.clone()))?;
        registry.register(Box::new(trunk_auth.clone()))?;
        // Zero series for the label values the dashboard queries, so panels show 0 instead
        // of "no data" before the first event.
        for d in ["outbound", "inbound"] {
            active.with_label_values(&[d]);
            started.with_label_values(&[d]);
            answered.with_label_values(&[d]);
        }
        let per_message = Arc::new(PerMessage::new(&transactions));
        for r in [
            "retry",
            "failure",
            "relayed",
            "relayed_retry",
            "register_relayed",
            "register_refused",
        ] {
            trunk_auth.with_label_values(&[r]);
        }
        let pbx_auth = IntCounterVec::new(
            Opts::new(
                "sbc_pbx_auth_total",
                "Digest authentication of the PBX's new requests, by result.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(pbx_auth.clone()))?;
        for d in ["outbound", "inbound"] {
            for l in [
                "max_calls",
                "max_cps",
                "trunk_max_calls",
                "trunk_max_cps",
                "max_transactions",
                "max_stored_bytes",
            ] {
                admission_rejected.with_label_values(&[d, l]);
            }
        }
        for r in ["challenged", "accepted", "failed", "stale"] {
            pbx_auth.with_label_values(&[r]);
        }
        let peer_mismatch = IntCounterVec::new(
            Opts::new(
                "sbc_sip_peer_mismatch_total",
                "In-dialog requests (answered 481) and responses (dropped) that did not come \
                 from their dialog's or transaction's peer, by side and kind.",
            ),
            &["side", "kind"],
        )?;
        registry.register(Box::new(peer_mismatch.clone()))?;
        for side in [Side::Inside, Side::Outside] {
            for k in [
                PeerMismatch::RequestSource,
                PeerMismatch::RequestTag,
                PeerMismatch::Response,
            ] {
                peer_mismatch.with_label_values(&[side.as_str(), k.as_str()]);
            }
        }
        let stored_bytes = IntGauge::new(
            "sbc_sip_stored_bytes",
            "Bytes of SIP messages held by the call layer (retransmission and matching).",
        )?;
        registry.register(Box::new(stored_bytes.clone()))?;
        let border_refusals = IntCounterVec::new(
            Opts::new(
                "sbc_border_refusals_total",
                "Bodies and SDP stopped at the border (topology hiding, SDP address checks), \
                 by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(border_refusals.clone()))?;
        let dtmf_events = IntCounterVec::new(
            Opts::new(
                "sbc_dtmf_events_total",
                "DTMF digits seen, by the side they came from and how (info, rfc4733).",
            ),
            &["side", "method"],
        )?;
        registry.register(Box::new(dtmf_events.clone()))?;
        Ok(Self {
            started,
            ended,
            active,
            answered,
            total,
            trunk_active,
            post_dial_delay,
            answer_delay,
            duration,
            requests,
            responses,
            retransmissions_received,
            retransmissions_sent,
            transactions,
            admission_rejected,
            trunk_auth,
            bans,
            bans_active,
            bans_evicted,
            registration_state,
            failovers,
            redirects,
            no_route,
            health,
            pbx_auth,
            peer_mismatch,
            stored_bytes,
            border_refusals,
            dtmf_events,
            per_message,
        })
    }
}

/// Counts one outgoing message from its start line only (no full parse on the send path):
/// `SIP/2.0 NNN ...` is a response, anything else starts with the method token.
fn count_outgoing(calls: &CallMetrics, side: Side, data: &[u8]) {
    let pm = &calls.per_message;
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let code = rest
            .get(..3)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
            .unwrap_or(0);
        pm.response(&calls.responses, side, Way::Out, Class::of(code))
            .inc();
    } else {
        let end = data.iter().position(|b| *b == b' ').unwrap_or(0);
        pm.request(&calls.requests, side, Way::Out, Method::of(&data[..end]))
            .inc();
    }
}

/// The metric labels of a received message, taken before the core consumes it: a request's
/// method or a response's status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A request, by method.
    Request(Method),
    /// A response, by status class.
    Response(Class),
}

impl Incoming {
    /// The labels of `msg`.
    pub fn of(msg: &Message) -> Option<Self> {
        if let Some(m) = msg.method() {
            return Some(Self::Request(Method::of(m.as_str().as_bytes())));
        }
        msg.status()
            .map(|st| Self::Response(Class::of(st.as_u16())))
    }
}

/// Result label of a finished call.
fn result_label(answered: bool, reason: EndReason) -> &'static str {
    if answered {
        return "answered";
    }
    match reason {
        EndReason::Rejected(486 | 600) => "busy",
        EndReason::Rejected(408 | 480) => "no_answer",
        EndReason::Rejected(c) if c < 500 => "rejected_4xx",
        EndReason::Rejected(c) if c < 600 => "rejected_5xx",
        EndReason::Rejected(_) => "rejected_6xx",
        EndReason::Cancelled => "cancelled",
        EndReason::Timeout => "timeout",
        _ => "failed",
    }
}

/// What the driver remembers about a live call for its metrics (one per concurrent call:
/// 56 bytes, the trunk's name shared).
#[derive(Debug)]
struct CallMeta {
    /// The caller's side, whence the direction.
    from: Side,
    /// The trunk's name, one allocation for every call on it ([`CallTracker::trunk`]).
    trunk: Arc<str>,
    started: Instant,
    answered: Option<Instant>,
}

/// The metrics' memory of the core: live calls (for delays, durations and per-trunk gauges)
/// and the core's counters as last seen (Prometheus counters only go up by the difference).
#[derive(Debug, Default)]
pub struct CallTracker {
    live: HashMap<u64, CallMeta>,
    /// The trunk names live calls refer to.
    trunks: Vec<Arc<str>>,
    retransmissions_seen: (u64, u64),
    auth_seen: [u64; 6],
    /// This shard's share of the transaction and stored-bytes gauges last reported.
    gauges_seen: [i64; 3],
}

impl CallTracker {
    /// `name`, shared with the live calls already on that trunk. Names no call holds any more
    /// (a trunk renamed by a reload) go when a new one comes.
    fn trunk(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.trunks.iter().find(|t| &***t == name) {
            return t.clone();
        }
        self.trunks.retain(|t| Arc::strong_count(t) > 1);
        let t = Arc::<str>::from(name);
        self.trunks.push(t.clone());
        t
    }
}

const fn direction(from: Side) -> &'static str {
    match from {
        Side::Inside => "outbound",
        Side::Outside => "inbound",
    }
}

impl CallMetrics {
    /// Counts one message the call layer sends (from its start line).
    pub fn sent(&self, side: Side, data: &[u8]) {
        count_outgoing(self, side, data);
    }

    /// Counts one message the call layer received.
    pub fn received(&self, side: Side, incoming: Incoming) {
        let pm = &self.per_message;
        match incoming {
            Incoming::Request(m) => pm.request(&self.requests, side, Way::In, m),
            Incoming::Response(c) => pm.response(&self.responses, side, Way::In, c),
        }
        .inc();
    }

    /// Zero failover series for every configured trunk, so the dashboard and the alert rules
    /// find them before the first failover.
    pub fn seed_trunks<'a>(&self, names: impl Iterator<Item = &'a str>) {
        for name in names {
            self.failovers.with_label_values(&[name]);
        }
    }

    /// A source was banned on `side`.
    pub fn banned(&self, side: Side, source: IpAddr) {
        self.bans.inc();
        tracing::warn!(side = side.as_str(), "source banned: over its message rate");
        tracing::debug!(%source, "source banned");
    }

    /// A trunk's registration state (1 for it, 0 for the others).
    pub fn registration(&self, trunk: &str, state: RegState) {
        const STATES: [RegState; 5] = [
            RegState::Unregistered,
            RegState::Registering,
            RegState::Registered,
            RegState::Failed,
            RegState::BackingOff,
        ];
        for s in STATES {
            self.registration_state
                .with_label_values(&[trunk, s.as_str()])
                .set(i64::from(state == s));
        }
    }

    /// A trunk's OPTIONS health (1 for it, 0 for the others).
    pub fn health(&self, trunk: &str, state: Health, changed: bool) {
        if changed {
            tracing::info!(trunk = %trunk, state = state.as_str(), "trunk health changed");
        }
        for s in ["unknown", "up", "down"] {
            self.health
                .with_label_values(&[trunk, s])
                .set(i64::from(state.as_str() == s));
        }
    }

    /// One event of the call layer at `now`; `sip_dropped` is the transport's drop counter
    /// (messages the call layer dropped count there too).
    pub fn on_event(
        &self,
        tracker: &mut CallTracker,
        sbc: &Sbc,
        ev: Event,
        now: Instant,
        sip_dropped: &IntCounterVec,
    ) {
        match ev {
            Event::CallStarted { call, from, trunk } => {
                let d = direction(from);
                let trunk = tracker.trunk(sbc.trunk_name(trunk));
                self.started.with_label_values(&[d]).inc();
                self.active.with_label_values(&[d]).inc();
                self.trunk_active.with_label_values(&[&trunk, d]).inc();
                tracker.live.insert(
                    call,
                    CallMeta {
                        from,
                        trunk,
                        started: now,
                        answered: None,
                    },
                );
            }
            Event::CallProgress { call } => {
                if let Some(c) = tracker.live.get(&call) {
                    self.post_dial_delay
                        .with_label_values(&[direction(c.from)])
                        .observe(now.saturating_duration_since(c.started).as_secs_f64());
                }
            }
            Event::CallAnswered { call } => {
                if let Some(c) = tracker.live.get_mut(&call) {
                    let d = direction(c.from);
                    self.answered.with_label_values(&[d]).inc();
                    self.answer_delay
                        .with_label_values(&[d])
                        .observe(now.saturating_duration_since(c.started).as_secs_f64());
                    c.answered = Some(now);
                }
            }
            Event::CallEnded { call, reason } => {
                let Some(c) = tracker.live.remove(&call) else {
                    return;
                };
                let d = direction(c.from);
                self.ended.with_label_values(&[d, reason.as_str()]).inc();
                self.active.with_label_values(&[d]).dec();
                self.trunk_active.with_label_values(&[&c.trunk, d]).dec();
                let result = result_label(c.answered.is_some(), reason);
                self.total.with_label_values(&[&c.trunk, d, result]).inc();
                if let Some(at) = c.answered {
                    self.duration
                        .with_label_values(&[d])
                        .observe(now.saturating_duration_since(at).as_secs_f64());
                }
            }
            Event::Redirect { call, outcome } => {
                self.redirects.with_label_values(&[outcome]).inc();
                tracing::info!(call, outcome, "carrier redirect");
            }
            Event::Failover {
                call,
                from,
                to,
                status,
            } => {
                let failed = sbc.trunk_name(Some(from));
                self.failovers.with_label_values(&[failed]).inc();
                tracing::info!(call, status, from = %failed, "call moved to the next trunk");
                let next = sbc.trunk_names().nth(to).map(|n| tracker.trunk(n));
                if let Some(next) = next
                    && let Some(c) = tracker.live.get_mut(&call)
                {
                    // The call now counts on the trunk that carries it.
                    let d = direction(c.from);
                    self.trunk_active.with_label_values(&[&c.trunk, d]).dec();
                    c.trunk = next;
                    self.trunk_active.with_label_values(&[&c.trunk, d]).inc();
                }
            }
            Event::AdmissionRejected { from, limit } => {
                self.admission_rejected
                    .with_label_values(&[direction(from), limit])
                    .inc();
            }
            Event::PbxAuth { result } => {
                self.pbx_auth.with_label_values(&[result.as_str()]).inc();
            }
            Event::NoRoute => self.no_route.inc(),
            Event::PeerMismatch { side, kind } => {
                self.peer_mismatch
                    .with_label_values(&[side.as_str(), kind.as_str()])
                    .inc();
            }
            Event::BorderRefusal { reason } => {
                // Refusals by the operator's media policy are worth a line (a codec list that
                // matches nobody shows up at once); the others can come in floods.
                if matches!(reason, "sdp_no_common_codec" | "t38_rejected") {
                    tracing::info!(reason, "offer refused with 488 by the media policy");
                }
                self.border_refusals.with_label_values(&[reason]).inc();
            }
            Event::Dtmf { side, method } => {
                self.dtmf_events
                    .with_label_values(&[side.as_str(), method.as_str()])
                    .inc();
            }
            // The media command is the relay's (`signaling.rs`).
            Event::GenerateDtmf { .. } => {}
            // Mirrored to the other shards by the driver (`signaling.rs`).
            Event::PbxBinding { .. } => {}
            Event::Dropped { reason } => {
                sip_dropped.with_label_values(&["any", "any", reason]).inc();
            }
            // The CDR sink's and the state writer's (`signaling.rs`); their metrics are
            // `sbc_cdr_*` and `sbc_state_*`.
            Event::CallRecord(_) | Event::CallState(_) | Event::CallStateEnded { .. } => {}
        }
    }

    /// The call layer's counters and live state after a turn.
    pub fn observe(&self, tracker: &mut CallTracker, counters: &Counters, stats: &Stats) {
        let seen = &mut tracker.retransmissions_seen;
        let new = counters.retransmissions_received.saturating_sub(seen.0);
        if new > 0 {
            self.retransmissions_received.inc_by(new);
        }
        let new = counters.retransmissions_sent.saturating_sub(seen.1);
        if new > 0 {
            self.retransmissions_sent.inc_by(new);
        }
        *seen = (
            counters.retransmissions_received,
            counters.retransmissions_sent,
        );
        let [s0, s1, s2, s3, s4, s5] = &mut tracker.auth_seen;
        for (label, now, seen) in [
            ("retry", counters.auth_retries, s0),
            ("failure", counters.auth_failures, s1),
            ("relayed", counters.challenges_relayed, s2),
            ("relayed_retry", counters.auth_relayed_retries, s3),
            ("register_relayed", counters.registers_relayed, s4),
            ("register_refused", counters.registers_refused, s5),
        ] {
            let new = now.saturating_sub(*seen);
            if new > 0 {
                self.trunk_auth.with_label_values(&[label]).inc_by(new);
            }
            *seen = now;
        }
        // Each signaling shard adds what changed in its own counts: the gauges are the sum.
        let [g0, g1, g2] = &mut tracker.gauges_seen;
        for (gauge, now, seen) in [
            (
                &self.per_message.transactions[0],
                stats.server_transactions,
                g0,
            ),
            (
                &self.per_message.transactions[1],
                stats.client_transactions,
                g1,
            ),
            (&self.stored_bytes, stats.stored_bytes, g2),
        ] {
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            gauge.add(now.saturating_sub(*seen));
            *seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value())
    }

    #[test]
    fn messages_are_counted_by_side_way_method_and_class() {
        let registry = Registry::new();
        let calls = CallMetrics::register(&registry).expect("register");
        calls.sent(Side::Outside, b"INVITE sip:1@example.net SIP/2.0\r\n");
        calls.sent(Side::Outside, b"INVITE sip:2@example.net SIP/2.0\r\n");
        calls.sent(Side::Inside, b"SIP/2.0 183 Session Progress\r\n");
        calls.sent(Side::Inside, b"FROB sip:x SIP/2.0\r\n");
        calls.sent(Side::Inside, b"SIP/2.0 xyz broken\r\n");
        calls.received(Side::Inside, Incoming::Request(Method::of(b"BYE")));
        calls.received(Side::Outside, Incoming::Response(Class::of(486)));
        let req = "sbc_sip_requests_total";
        let resp = "sbc_sip_responses_total";
        let at = |side, way, label| [("side", side), ("direction", way), ("method", label)];
        assert_eq!(
            value(&registry, req, &at("outside", "out", "INVITE")),
            Some(2.0)
        );
        assert_eq!(
            value(&registry, req, &at("inside", "out", "other")),
            Some(1.0)
        );
        assert_eq!(value(&registry, req, &at("inside", "in", "BYE")), Some(1.0));
        // Resolved lazily: a series shows up only once its first message was counted.
        assert_eq!(value(&registry, req, &at("inside", "in", "INVITE")), None);
        let class = |side, way, label| [("side", side), ("direction", way), ("class", label)];
        assert_eq!(
            value(&registry, resp, &class("inside", "out", "1xx")),
            Some(1.0)
        );
        assert_eq!(
            value(&registry, resp, &class("inside", "out", "6xx")),
            Some(1.0)
        );
        assert_eq!(
            value(&registry, resp, &class("outside", "in", "4xx")),
            Some(1.0)
        );
    }

    #[test]
    fn every_class_and_method_has_its_label() {
        let classes: Vec<_> = [100, 299, 302, 404, 503, 606, 0, 700]
            .map(|c| Class::of(c).label())
            .into();
        assert_eq!(
            classes,
            ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "6xx", "6xx"]
        );
        for m in METHODS {
            assert_eq!(Method::of(m.as_bytes()).label(), m);
        }
        assert_eq!(Method::of(b"invite").label(), "other");
        assert_eq!(Method::of(b"").label(), "other");
    }
}
