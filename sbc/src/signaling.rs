//! The signaling driver: one tokio task that owns the sans-I/O B2BUA, feeds it received
//! messages (after the source ACL) and the time, and sends what it produces through the
//! transports. Calls, transactions and dialogs live in the B2BUA; this file is only I/O glue.
//!
//! One task owns all calls today (no lock on the per-message path; the B2BUA is `!Sync` by
//! design). Sharding by Call-ID across several such tasks is the planned scale-out path.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sbc_proto::{
    b2bua::{
        B2bua, B2buaConfig, CallInfo, Caps, EndReason, Event, LocalAddr, PbxAuthConfig,
        PeerMismatch, Redirect, SessionTimerConfig, Target, TrunkConfig, TrunkLocal,
    },
    health::{HealthCheck, HealthConfig},
    limit::CallLimits,
    net::{Peer, Side, TransportKind},
    protect::{GuardConfig, SourceGuard, Verdict, user_agent_denied},
    register::{RegConfig, RegState, Registration},
    sip::Method,
    transaction::TimerConfig,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    config::{Config, Limits, ProxyAddr},
    dns::{DnsState, DnsTrunks, Resolved, TrunkAddr},
    media::MediaManager,
    metrics::Metrics,
    transport::{AdmissionPolicy, Inbound, Transport},
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
        for k in ["server", "client"] {
            transactions.with_label_values(&[k]);
        }
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
        })
    }
}

/// Metric label of a request method: the standard methods by name, anything else `other`
/// (extension tokens are unbounded and must not become label values).
fn method_label(token: &[u8]) -> &'static str {
    const KNOWN: [&str; 14] = [
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
    KNOWN
        .iter()
        .find(|m| m.as_bytes() == token)
        .copied()
        .unwrap_or("other")
}

/// Metric label of a status code's class.
fn class_label(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

/// Counts one outgoing message from its start line only (no full parse on the send path):
/// `SIP/2.0 NNN ...` is a response, anything else starts with the method token.
fn count_outgoing(calls: &CallMetrics, side: Side, data: &[u8]) {
    let side = side.as_str();
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let code = rest
            .get(..3)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
            .unwrap_or(0);
        calls
            .responses
            .with_label_values(&[side, "out", class_label(code)])
            .inc();
    } else {
        let end = data.iter().position(|b| *b == b' ').unwrap_or(0);
        calls
            .requests
            .with_label_values(&[side, "out", method_label(&data[..end])])
            .inc();
    }
}

/// Counts one received message (already parsed by the transport).
fn count_incoming(calls: &CallMetrics, side: Side, msg: &sbc_proto::sip::Message) {
    let side = side.as_str();
    if let Some(m) = msg.method() {
        calls
            .requests
            .with_label_values(&[side, "in", method_label(m.as_str().as_bytes())])
            .inc();
    } else if let Some(st) = msg.status() {
        calls
            .responses
            .with_label_values(&[side, "in", class_label(st.as_u16())])
            .inc();
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

/// What the driver remembers about a live call for its metrics.
#[derive(Debug)]
struct CallMeta {
    direction: &'static str,
    trunk: String,
    started: std::time::Instant,
    answered: Option<std::time::Instant>,
}

/// Trunk names with their proxy addresses, to attribute calls to a trunk (position = the
/// B2BUA's trunk index; addresses of names filled in by [`DnsState::apply`]).
#[derive(Debug, Clone, Default)]
pub struct TrunkNames(pub(crate) Vec<(String, TrunkAddr)>);

impl TrunkNames {
    /// From the configuration.
    pub fn from_config(c: &Config) -> Self {
        Self(
            c.trunks
                .iter()
                .map(|t| (t.name.clone(), TrunkAddr::from_trunk(t)))
                .collect(),
        )
    }

    /// The name of trunk `index` as the B2BUA reports it ("none" for a call whose carrier
    /// side is no configured trunk).
    fn name(&self, index: Option<usize>) -> String {
        index
            .and_then(|i| self.0.get(i))
            .map_or_else(|| "none".into(), |(n, _)| n.clone())
    }
}

const fn direction(from: Side) -> &'static str {
    match from {
        Side::Inside => "outbound",
        Side::Outside => "inbound",
    }
}

/// The B2BUA configuration derived from the SBC configuration.
pub fn b2bua_config(c: &Config) -> B2buaConfig {
    let local = |s: &crate::config::Side| {
        // Prefer UDP for what we write into Via/Contact; the advertised address wins (1:1 NAT).
        let (addr, transport) = s
            .udp
            .first()
            .map(|a| (*a, TransportKind::Udp))
            .or_else(|| s.tcp.first().map(|a| (*a, TransportKind::Tcp)))
            .or_else(|| s.tls.first().map(|a| (*a, TransportKind::Tls)))
            .unwrap_or((SocketAddr::from(([127, 0, 0, 1], 5060)), TransportKind::Udp));
        let ip = s.advertised_address.unwrap_or(addr.ip());
        LocalAddr {
            addr: SocketAddr::new(ip, addr.port()),
            transport,
        }
    };
    // Every listener, bound address → what is written into messages for peers reaching it.
    let mut listeners = Vec::new();
    for s in [&c.inside, &c.outside] {
        for (list, transport) in [
            (&s.udp, TransportKind::Udp),
            (&s.tcp, TransportKind::Tcp),
            (&s.tls, TransportKind::Tls),
        ] {
            for a in list {
                let ip = s.advertised_address.unwrap_or(a.ip());
                listeners.push((
                    *a,
                    LocalAddr {
                        addr: SocketAddr::new(ip, a.port()),
                        transport,
                    },
                ));
            }
        }
    }
    let (compiled, _) = crate::config::compile(c);
    let mut rules = compiled.trunks.into_iter();
    let trunks = c
        .trunks
        .iter()
        .map(|t| {
            let (outbound, inbound) = rules.next().unwrap_or_default();
            TrunkConfig {
                name: t.name.clone(),
                sources: Vec::new(),
                alternates: Vec::new(),
                target: Target {
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    transport: t.transport.kind(),
                },
                credentials: t.credentials(),
                limits: CallLimits {
                    max_calls: t.max_calls.or(Some(Limits::DEFAULT_TRUNK_MAX_CALLS)),
                    max_cps: t.max_cps.or(Some(Limits::DEFAULT_TRUNK_MAX_CPS)),
                },
                local: t.local.and_then(|bound| {
                    listeners
                        .iter()
                        .find(|(b, l)| *b == bound && l.transport == t.transport.kind())
                        .map(|(_, l)| TrunkLocal {
                            advertised: *l,
                            bound,
                        })
                }),
                from_domain: t.from_domain.clone(),
                outbound,
                inbound,
                auth: t.auth_mode(),
                redirect: match t.redirect {
                    crate::config::RedirectMode::Recurse => Redirect::Recurse,
                    crate::config::RedirectMode::Relay => Redirect::Relay,
                },
                hide_redirect_contacts: t.hide_redirect_contacts,
            }
        })
        .collect();
    let inside = local(&c.inside);
    B2buaConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(c.sip.t1_ms),
            t2: Duration::from_millis(c.sip.t2_ms),
            t4: Duration::from_millis(c.sip.t4_ms),
            timer_c: Duration::from_secs(c.sip.timer_c_s),
        },
        inside,
        outside: local(&c.outside),
        pbx: Target {
            addr: c.pbx.address,
            transport: c.pbx.transport.kind(),
        },
        listeners,
        trunks,
        routes: compiled.routes,
        inbound: compiled.inbound,
        limits: CallLimits {
            max_calls: c.limits.max_calls.or(Some(Limits::DEFAULT_MAX_CALLS)),
            max_cps: c.limits.max_cps.or(Some(Limits::DEFAULT_MAX_CPS)),
        },
        retry_after_s: c.limits.retry_after_s,
        user_agent: c.general.user_agent.clone(),
        pass_headers: B2buaConfig::default_pass_headers(),
        max_call_duration: None,
        pbx_auth: pbx_auth_config(c, inside.addr),
        session_timer: SessionTimerConfig {
            enabled: c.sip.session_timer,
            session_expires: Duration::from_secs(c.sip.session_expires),
            min_se: Duration::from_secs(c.sip.min_se),
        },
        max_redirects: c.sip.max_redirects,
        caps: Caps {
            max_transactions: usize::try_from(c.limits.max_transactions).unwrap_or(usize::MAX),
            max_stored_bytes: usize::try_from(c.limits.max_stored_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
        },
        sdp: sdp_policy(c),
        pbx_register: c.pbx.register_policy(&c.trunks),
        max_pending_challenges: c.limits.max_pending_challenges,
    }
}

/// The SBC's own addresses (every SIP listener, advertised and media address), which SDP may
/// not name: media sent there would loop through the relay or hit the SBC's own services.
fn sdp_policy(c: &Config) -> sbc_proto::sdp::SdpPolicy {
    let mut own = Vec::new();
    for s in [&c.inside, &c.outside] {
        let listeners = s.udp.iter().chain(&s.tcp).chain(&s.tls).map(SocketAddr::ip);
        for ip in listeners
            .chain(std::iter::once(s.media_address))
            .chain(s.advertised_address)
        {
            // A wildcard bind names no address of its own; 0.0.0.0 in SDP is a hold anyway.
            if !ip.is_unspecified() && !own.contains(&ip) {
                own.push(ip);
            }
        }
    }
    sbc_proto::sdp::SdpPolicy {
        own_addresses: own,
        ..sbc_proto::sdp::SdpPolicy::default()
    }
}

/// What the PBX must authenticate with, when `[pbx]` has a user name and a password. The
/// realm defaults to the SBC's inside address (what the PBX has configured as its proxy).
fn pbx_auth_config(c: &Config, inside: SocketAddr) -> Option<PbxAuthConfig> {
    let username = c.pbx.username.clone()?;
    let password = c.pbx.password.as_ref()?;
    Some(PbxAuthConfig {
        username,
        password: sbc_proto::auth::Secret::new(password.0.clone()),
        realm: c
            .pbx
            .realm
            .clone()
            .unwrap_or_else(|| inside.ip().to_string()),
        algorithms: c.pbx.algorithms(),
    })
}

/// One trunk's outbound registration as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The trunk's name.
    pub trunk: String,
    /// Where REGISTERs go (the trunk's proxy).
    pub peer: Peer,
    /// The registration's parameters.
    pub cfg: RegConfig,
}

/// The registrations of every trunk with `register = true`.
pub fn registrations(c: &Config) -> Vec<TrunkRegistration> {
    let b2bua = b2bua_config(c);
    c.trunks
        .iter()
        .filter(|t| t.register)
        .filter_map(|t| {
            let user = t.username.clone()?;
            Some(TrunkRegistration {
                trunk: t.name.clone(),
                peer: Peer {
                    side: Side::Outside,
                    transport: t.transport.kind(),
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    conn: None,
                    local: None,
                },
                cfg: RegConfig {
                    user,
                    domain: t.from_domain.clone().unwrap_or_else(|| t.proxy.host()),
                    local: b2bua.outside.addr,
                    transport: t.transport.kind(),
                    expires: t.register_expires_s.unwrap_or(3600),
                    credentials: t.credentials(),
                    timers: b2bua.timers,
                    user_agent: c.general.user_agent.clone(),
                    backoff_base: Duration::from_secs(30),
                    backoff_max: Duration::from_secs(1800),
                },
            })
        })
        .collect()
}

/// One trunk's OPTIONS health check as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkHealth {
    /// The trunk's name.
    pub trunk: String,
    /// Its position in the order of preference (the B2BUA's trunk index).
    pub index: usize,
    /// Where the pings go.
    pub peer: Peer,
    /// The check's parameters.
    pub cfg: HealthConfig,
}

/// The health checks of every trunk with `options_interval_s`.
pub fn health_checks(c: &Config) -> Vec<TrunkHealth> {
    let b2bua = b2bua_config(c);
    c.trunks
        .iter()
        .enumerate()
        .filter_map(|(index, t)| {
            let interval = Duration::from_secs(u64::from(t.options_interval_s?));
            Some(TrunkHealth {
                trunk: t.name.clone(),
                index,
                peer: Peer {
                    side: Side::Outside,
                    transport: t.transport.kind(),
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    conn: None,
                    local: None,
                },
                cfg: HealthConfig {
                    target: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    local: b2bua.outside.addr,
                    transport: t.transport.kind(),
                    interval,
                    timeout: interval.min(Duration::from_secs(5)),
                    up_after: t.options_up_after.unwrap_or(2),
                    down_after: t.options_down_after.unwrap_or(3),
                    timers: b2bua.timers,
                    user_agent: c.general.user_agent.clone(),
                },
            })
        })
        .collect()
}

fn flush_health(
    checks: &mut [(TrunkHealth, HealthCheck)],
    transport: &Transport,
    calls: &CallMetrics,
) {
    for (t, h) in checks.iter_mut() {
        while let Some(data) = h.poll_transmit() {
            count_outgoing(calls, t.peer.side, &data);
            if let Err(e) = transport.send(&t.peer, data) {
                tracing::debug!(trunk = %t.trunk, error = %e, "sending OPTIONS failed");
            }
        }
    }
}

/// Applies health changes to the engine (trunks that are down are skipped) and the metrics.
fn apply_health(
    checks: &mut [(TrunkHealth, HealthCheck)],
    engine: &mut B2bua,
    calls: &CallMetrics,
    force: bool,
) {
    for (t, h) in checks.iter_mut() {
        let changed = h.poll_change();
        if changed.is_none() && !force {
            continue;
        }
        let state = h.state();
        if let Some(s) = changed {
            tracing::info!(trunk = %t.trunk, state = s.as_str(), "trunk health changed");
        }
        engine.set_trunk_usable(t.index, state.usable());
        for s in ["unknown", "up", "down"] {
            calls
                .health
                .with_label_values(&[&t.trunk, s])
                .set(i64::from(state.as_str() == s));
        }
    }
}

/// A trunk's registration state, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegView {
    /// The trunk's name.
    pub trunk: String,
    /// `unregistered`, `registering`, `registered`, `failed` or `backing_off`.
    pub state: &'static str,
    /// Expiry granted by the registrar, seconds.
    pub expires_s: Option<u32>,
    /// Seconds until the next REGISTER (refresh or retry).
    pub next_register_in_s: Option<u64>,
}

fn flush_registrations(
    regs: &mut [(TrunkRegistration, Registration)],
    transport: &Transport,
    calls: &CallMetrics,
) {
    for (t, reg) in regs.iter_mut() {
        while let Some(data) = reg.poll_transmit() {
            count_outgoing(calls, t.peer.side, &data);
            if let Err(e) = transport.send(&t.peer, data) {
                tracing::debug!(trunk = %t.trunk, error = %e, "sending REGISTER failed");
            }
        }
    }
}

fn start_registration(t: &TrunkRegistration) -> Registration {
    let mut reg = Registration::new(t.cfg.clone(), crate::entropy::rng());
    reg.start(std::time::Instant::now());
    reg
}

/// Who may send SIP to the SBC: the PBX networks inside, the trunk proxies outside; and the
/// per-source protection (rate limit and bans, User-Agent denylist).
#[derive(Debug, Clone)]
pub struct Acl {
    inside: Vec<IpNet>,
    outside: Vec<IpAddr>,
    /// What the trunk proxies given by name resolved to (replaced on every update).
    resolved: Vec<IpAddr>,
    /// Configured peers of the inside (the PBX address): their own, higher budget; never
    /// banned.
    peers: Vec<IpAddr>,
    guard: GuardConfig,
    user_agent_deny: Vec<String>,
    /// Sources always dropped, before any other check (`[limits] deny`).
    deny: Vec<IpNet>,
}

impl Acl {
    /// From the configuration.
    pub fn from_config(c: &Config) -> Self {
        let outside: Vec<IpAddr> = c
            .trunks
            .iter()
            .filter_map(|t| Some(t.proxy.static_addr()?.ip()))
            .collect();
        // The trunk proxies are the outside's peers (`outside` + `resolved`).
        let peers = vec![c.pbx.address.ip().to_canonical()];
        Self {
            inside: c.pbx.allow.clone(),
            outside,
            resolved: Vec::new(),
            peers,
            guard: GuardConfig {
                rate: c.limits.source_rate,
                burst: c.limits.source_burst,
                ban: Duration::from_secs(c.limits.ban_s),
                max_sources: 65_536,
                peer_rate: c.limits.peer_rate,
                peer_burst: c.limits.peer_burst,
                max_bans: c.limits.max_bans,
            },
            user_agent_deny: c.limits.user_agent_deny.clone(),
            deny: c.limits.deny.clone(),
        }
    }

    /// Whether `ip` is on the denylist (dropped before anything else, peers included).
    pub fn denies(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.deny.is_empty() && self.deny.iter().any(|n| n.contains(&ip))
    }

    /// Whether `ip` is a configured peer on `side` (the PBX inside, a trunk proxy outside):
    /// limited by the peer budget, never banned. Per side, so that an outsider spoofing the
    /// PBX's address on the outside is an unknown source there.
    pub fn is_configured_peer(&self, side: Side, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match side {
            Side::Inside => self.peers.contains(&ip),
            Side::Outside => {
                self.outside.iter().any(|a| a.to_canonical() == ip) || self.resolved.contains(&ip)
            }
        }
    }

    /// What the transport checks at accept and before a stateless reply: the same allowlists
    /// and denylist as [`Acl::allows`] and [`Acl::denies`].
    pub fn admission(&self) -> AdmissionPolicy {
        let mut outside: Vec<IpAddr> = self.outside.iter().map(|a| a.to_canonical()).collect();
        outside.extend(self.resolved.iter().map(|a| a.to_canonical()));
        AdmissionPolicy {
            inside: Some(self.inside.clone()),
            outside: Some(outside),
            deny: self.deny.clone(),
        }
    }

    /// Replaces the addresses the trunk proxies given by name resolved to (canonical IPs).
    pub fn set_resolved(&mut self, ips: Vec<IpAddr>) {
        self.resolved = ips;
    }

    /// Whether a request with this User-Agent is dropped.
    pub fn denies_user_agent(&self, ua: &str) -> bool {
        user_agent_denied(ua, &self.user_agent_deny)
    }

    /// Whether `peer` may talk to the SBC. Unknown sources get no answer at all, so scanners
    /// learn nothing.
    pub fn allows(&self, peer: &Peer) -> bool {
        let ip = peer.addr.ip().to_canonical();
        match peer.side {
            Side::Inside => self.inside.iter().any(|n| n.contains(&ip)),
            Side::Outside => {
                self.outside.iter().any(|a| a.to_canonical() == ip) || self.resolved.contains(&ip)
            }
        }
    }
}

/// A request to the signaling task from the admin API.
#[derive(Debug)]
pub enum Command {
    /// Snapshot of every call.
    ListCalls(oneshot::Sender<Vec<CallInfo>>),
    /// End one call (BYE both legs, or CANCEL/487 before the answer); false if unknown.
    EndCall(u64, oneshot::Sender<bool>),
    /// The banned sources.
    ListBans(oneshot::Sender<BanList>),
    /// Lift the ban of one source; false if it was not banned.
    Unban(IpAddr, oneshot::Sender<bool>),
    /// OPTIONS health of the checked trunks: (name, state).
    Health(oneshot::Sender<Vec<(String, &'static str)>>),
    /// Registration states of the registering trunks.
    Registrations(oneshot::Sender<Vec<RegView>>),
    /// Send a REGISTER for this trunk now; false if it does not register.
    Register(String, oneshot::Sender<bool>),
    /// New addresses of a trunk proxy given by name (from the resolver task).
    DnsResolved(Resolved),
    /// Use a new configuration for new calls (calls in progress keep theirs).
    Reconfigure {
        /// The B2BUA part.
        b2bua: Box<B2buaConfig>,
        /// The source ACL.
        acl: Acl,
        /// Trunk names, for metrics.
        trunks: TrunkNames,
        /// Outbound registrations (changed ones restart).
        registrations: Vec<TrunkRegistration>,
        /// OPTIONS health checks (changed ones restart).
        health: Vec<TrunkHealth>,
        /// Media networks and trunk port quotas (new calls).
        media: Box<crate::media::policy::MediaPolicy>,
        /// Answered once applied.
        done: oneshot::Sender<()>,
    },
}

/// One banned source, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BanView {
    /// The side it is banned on (`inside`, `outside`).
    pub side: &'static str,
    /// The source address.
    pub address: IpAddr,
    /// Seconds since the ban started.
    pub age_s: u64,
    /// Seconds until it ends.
    pub remaining_s: u64,
    /// Messages dropped because of it.
    pub dropped: u64,
}

/// The ban list and whether banning is on at all.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BanList {
    /// `[limits] source_rate` > 0.
    pub enabled: bool,
    /// Current bans, oldest first.
    pub bans: Vec<BanView>,
}

/// Cloneable handle to the signaling task.
#[derive(Debug, Clone)]
pub struct SignalingHandle {
    tx: mpsc::Sender<Command>,
    /// The trunks the resolver task looks up, updated on every reconfiguration.
    dns: std::sync::Arc<watch::Sender<DnsTrunks>>,
}

impl SignalingHandle {
    /// A handle and the receiver to give to [`run`].
    pub fn channel() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(64);
        let dns = std::sync::Arc::new(watch::channel(DnsTrunks::default()).0);
        (Self { tx, dns }, rx)
    }

    /// Sets the trunks the resolver task looks up (from the configuration at start).
    pub fn set_dns_trunks(&self, trunks: DnsTrunks) {
        self.dns.send_replace(trunks);
    }

    /// The trunks to look up, for the resolver task ([`crate::dns::run`]).
    pub fn dns_trunks(&self) -> watch::Receiver<DnsTrunks> {
        self.dns.subscribe()
    }

    /// Hands new addresses of a trunk proxy to the signaling task; false if it is gone.
    pub async fn dns_resolved(&self, r: Resolved) -> bool {
        self.tx.send(Command::DnsResolved(r)).await.is_ok()
    }

    /// The banned sources; `None` if the signaling task is gone.
    pub async fn bans(&self) -> Option<BanList> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::ListBans(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Lifts a ban; `None` if the signaling task is gone.
    pub async fn unban(&self, ip: IpAddr) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Unban(ip, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Trunk health states; `None` if the signaling task is gone.
    pub async fn health(&self) -> Option<Vec<(String, &'static str)>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Health(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Registration states; `None` if the signaling task is gone.
    pub async fn registrations(&self) -> Option<Vec<RegView>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Registrations(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Forces a REGISTER for `trunk`; `Some(false)` if it does not register.
    pub async fn register(&self, trunk: &str) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Register(trunk.to_owned(), tx))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Every call; `None` if the signaling task is gone.
    pub async fn calls(&self) -> Option<Vec<CallInfo>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::ListCalls(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Ends a call; `Some(false)` if there is no such call.
    pub async fn end_call(&self, id: u64) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::EndCall(id, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Applies `config` to new calls; false if the signaling task is gone.
    pub async fn reconfigure(&self, config: &Config) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = Command::Reconfigure {
            b2bua: Box::new(b2bua_config(config)),
            acl: Acl::from_config(config),
            trunks: TrunkNames::from_config(config),
            registrations: registrations(config),
            health: health_checks(config),
            media: Box::new(crate::media::policy::from_config(config)),
            done,
        };
        let applied = self.tx.send(cmd).await.is_ok() && rx.await.is_ok();
        if applied {
            // Names added, removed or changed: the resolver task follows.
            self.set_dns_trunks(DnsTrunks::from_config(config));
        }
        applied
    }
}

/// Runs the B2BUA until `shutdown` turns true or the inbound channel closes.
#[allow(
    clippy::too_many_arguments,
    reason = "the driver's wiring is its whole purpose"
)]
pub async fn run(
    cfg: B2buaConfig,
    acl: Acl,
    trunks: TrunkNames,
    registrations: Vec<TrunkRegistration>,
    health: Vec<TrunkHealth>,
    mut media: MediaManager,
    transport: Transport,
    mut inbound: mpsc::Receiver<Inbound>,
    mut commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    calls: CallMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut guard = SourceGuard::new(acl.guard);
    let mut regs: Vec<(TrunkRegistration, Registration)> = registrations
        .into_iter()
        .map(|t| {
            let reg = start_registration(&t);
            (t, reg)
        })
        .collect();
    flush_registrations(&mut regs, &transport, &calls);
    let start = std::time::Instant::now();
    let mut checks: Vec<(TrunkHealth, HealthCheck)> = health
        .into_iter()
        .map(|t| {
            let h = HealthCheck::new(t.cfg.clone(), crate::entropy::rng(), start);
            (t, h)
        })
        .collect();
    let mut acl = acl;
    let mut trunks = trunks;
    seed_trunk_series(&calls, &trunks);
    let mut engine = B2bua::new(cfg, crate::entropy::rng());
    let mut live: std::collections::HashMap<u64, CallMeta> = std::collections::HashMap::new();
    let mut retransmissions_seen = (0u64, 0u64);
    let mut auth_seen = [0u64; 6];
    // Media timeouts surface through MediaControl::poll_event; look at least this often.
    // Media events (timeouts) wake us through `event_ready`; the slow tick is only a backstop.
    let media_events = media.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Trunk proxies given by name: unusable until the resolver task reports addresses.
    let mut dns = DnsState::default();
    dns.apply(&mut trunks, &mut acl, &mut regs, &mut checks, &mut engine);
    transport.set_admission(acl.admission());
    loop {
        let deadline = engine
            .poll_timeout()
            .into_iter()
            .chain(regs.iter().filter_map(|(_, r)| r.poll_timeout()))
            .chain(checks.iter().filter_map(|(_, h)| h.poll_timeout()))
            .min()
            .map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = inbound.recv() => {
                let Some(m) = received else { break };
                let source = m.peer.addr.ip();
                // The operator's denylist before anything else, peers included.
                if acl.denies(source) {
                    metrics
                        .sip_dropped
                        .with_label_values(&[m.peer.side.as_str(), m.peer.transport.as_str(), "denied"])
                        .inc();
                    continue;
                }
                // Bans next: a banned flood costs one hash lookup per packet. Unknown sources
                // count too (they are dropped below anyway, but a scan shows in the ban list).
                // Keyed by side: a ban on the outside never silences the same address inside.
                let side = m.peer.side;
                let now = std::time::Instant::now();
                match guard.check(now, side, source, acl.is_configured_peer(side, source)) {
                    Verdict::Pass => {}
                    verdict => {
                        let reason = match verdict {
                            Verdict::OverBudget => "peer_over_budget",
                            _ => "banned",
                        };
                        if verdict == Verdict::NewBan {
                            calls.bans.inc();
                            tracing::warn!(side = side.as_str(), "source banned: over its message rate");
                            tracing::debug!(%source, "source banned");
                            // The transport refuses its connections from now on and closes
                            // the open ones.
                            transport.ban(side, source, acl.guard.ban);
                            for (s, ip) in guard.drain_evicted() {
                                calls.bans_evicted.inc();
                                transport.unban(s, ip);
                            }
                        }
                        metrics
                            .sip_dropped
                            .with_label_values(&[side.as_str(), m.peer.transport.as_str(), reason])
                            .inc();
                        continue;
                    }
                }
                if !acl.allows(&m.peer) {
                    // Three labels (side, transport, reason): a wrong count would panic in prometheus.
                    metrics
                        .sip_dropped
                        .with_label_values(&[m.peer.side.as_str(), m.peer.transport.as_str(), "acl"])
                        .inc();
                    continue;
                }
                if m.message.is_request()
                    && m.message.headers().user_agent().ok().flatten().is_some_and(|ua| acl.denies_user_agent(ua))
                {
                    metrics
                        .sip_dropped
                        .with_label_values(&[m.peer.side.as_str(), m.peer.transport.as_str(), "user_agent"])
                        .inc();
                    continue;
                }
                // Answers to our OPTIONS pings belong to the health check.
                if !m.message.is_request()
                    && m.message.cseq().method == Method::Options
                    && checks.iter().any(|(_, h)| h.matches(&m.message))
                {
                    let now = std::time::Instant::now();
                    for (_, h) in &mut checks {
                        h.handle_response(now, &m.message);
                    }
                    apply_health(&mut checks, &mut engine, &calls, false);
                    continue;
                }
                // Responses to our REGISTERs belong to the registration, not to a call (those
                // to the PBX's relayed REGISTERs go to the B2BUA).
                if !m.message.is_request()
                    && m.message.cseq().method == Method::Register
                    && regs.iter().any(|(_, r)| r.matches(&m.message))
                {
                    let now = std::time::Instant::now();
                    for (_, reg) in &mut regs {
                        reg.handle_response(now, &m.message);
                    }
                    flush_registrations(&mut regs, &transport, &calls);
                    update_registration_metrics(&calls, &regs);
                    continue;
                }
                count_incoming(&calls, m.peer.side, &m.message);
                engine.handle_message(std::time::Instant::now(), m.peer, m.message, &mut media);
            }
            () = sleep => {
                let now = std::time::Instant::now();
                engine.handle_timeout(now, &mut media);
                for (_, reg) in &mut regs {
                    reg.handle_timeout(now);
                }
                flush_registrations(&mut regs, &transport, &calls);
                update_registration_metrics(&calls, &regs);
                for (_, h) in &mut checks {
                    h.handle_timeout(now);
                }
                flush_health(&mut checks, &transport, &calls);
                apply_health(&mut checks, &mut engine, &calls, false);
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::ListCalls(reply) => {
                    let _ = reply.send(engine.calls());
                }
                Command::EndCall(id, reply) => {
                    let ended = engine.end_call(std::time::Instant::now(), id, &mut media);
                    let _ = reply.send(ended);
                }
                Command::ListBans(reply) => {
                    let now = std::time::Instant::now();
                    let bans = guard
                        .bans(now)
                        .into_iter()
                        .map(|b| BanView {
                            side: b.side.as_str(),
                            address: b.ip,
                            age_s: now.saturating_duration_since(b.since).as_secs(),
                            remaining_s: b.until.saturating_duration_since(now).as_secs(),
                            dropped: b.dropped,
                        })
                        .collect();
                    let _ = reply.send(BanList { enabled: acl.guard.rate > 0, bans });
                }
                Command::Unban(ip, reply) => {
                    let sides = guard.unban(ip);
                    for side in &sides {
                        transport.unban(*side, ip);
                    }
                    let _ = reply.send(!sides.is_empty());
                }
                Command::Health(reply) => {
                    let states = checks
                        .iter()
                        .map(|(t, h)| (t.trunk.clone(), h.state().as_str()))
                        .collect();
                    let _ = reply.send(states);
                }
                Command::Registrations(reply) => {
                    let now = std::time::Instant::now();
                    let views = regs
                        .iter()
                        .map(|(t, r)| RegView {
                            trunk: t.trunk.clone(),
                            state: r.state().as_str(),
                            expires_s: r.granted(),
                            next_register_in_s: r
                                .next_attempt()
                                .map(|at| at.saturating_duration_since(now).as_secs()),
                        })
                        .collect();
                    let _ = reply.send(views);
                }
                Command::Register(name, reply) => {
                    let found = regs.iter_mut().find(|(t, _)| t.trunk == name);
                    let ok = found.is_some();
                    if let Some((_, reg)) = found {
                        reg.start(std::time::Instant::now());
                    }
                    flush_registrations(&mut regs, &transport, &calls);
                    let _ = reply.send(ok);
                }
                Command::DnsResolved(r) => {
                    if dns.insert(r) {
                        dns.apply(&mut trunks, &mut acl, &mut regs, &mut checks, &mut engine);
                        transport.set_admission(acl.admission());
                        flush_registrations(&mut regs, &transport, &calls);
                        flush_health(&mut checks, &transport, &calls);
                    }
                }
                Command::Reconfigure { b2bua, acl: new_acl, trunks: new_trunks, registrations: mut new_regs, health: mut new_health, media: media_policy, done } => {
                    media.set_policy(*media_policy);
                    dns.prepare(&new_trunks, &mut new_regs, &mut new_health);
                    // Health checks: unchanged ones keep their state; every trunk is usable
                    // again unless its (kept) check says it is down.
                    let mut old_checks = std::mem::take(&mut checks);
                    let now = std::time::Instant::now();
                    for t in new_health {
                        match old_checks.iter().position(|(o, _)| *o == t) {
                            Some(i) => checks.push(old_checks.swap_remove(i)),
                            None => {
                                let h = HealthCheck::new(t.cfg.clone(), crate::entropy::rng(), now);
                                checks.push((t, h));
                            }
                        }
                    }
                    for i in 0..b2bua.trunks.len() {
                        engine.set_trunk_usable(i, true);
                    }
                    calls.health.reset();
                    // Unchanged registrations keep their binding; changed or new ones start over.
                    let mut old = std::mem::take(&mut regs);
                    for t in new_regs {
                        match old.iter().position(|(o, _)| *o == t) {
                            Some(i) => regs.push(old.swap_remove(i)),
                            None => {
                                let reg = start_registration(&t);
                                regs.push((t, reg));
                            }
                        }
                    }
                    // Removed ones: take the binding away (best effort, responses are ignored).
                    for (t, mut reg) in old {
                        if reg.stop(std::time::Instant::now()) {
                            let mut gone = vec![(t, reg)];
                            flush_registrations(&mut gone, &transport, &calls);
                        }
                    }
                    flush_registrations(&mut regs, &transport, &calls);
                    calls.registration_state.reset();
                    update_registration_metrics(&calls, &regs);
                    guard.set_config(new_acl.guard);
                    engine.set_config(*b2bua);
                    apply_health(&mut checks, &mut engine, &calls, true);
                    acl = new_acl;
                    trunks = new_trunks;
                    seed_trunk_series(&calls, &trunks);
                    dns.apply(&mut trunks, &mut acl, &mut regs, &mut checks, &mut engine);
                    // Live ACL and denylist changes reach accept (and close what they refuse).
                    transport.set_admission(acl.admission());
                    let _ = done.send(());
                }
            },
            () = media_events.event_ready() => {
                engine.handle_timeout(std::time::Instant::now(), &mut media);
            }
            _ = tick.tick() => {
                let now = std::time::Instant::now();
                engine.handle_timeout(now, &mut media);
                for (_, reg) in &mut regs {
                    reg.handle_timeout(now);
                }
                flush_registrations(&mut regs, &transport, &calls);
                update_registration_metrics(&calls, &regs);
                for (_, h) in &mut checks {
                    h.handle_timeout(now);
                }
                flush_health(&mut checks, &transport, &calls);
                apply_health(&mut checks, &mut engine, &calls, false);
                // Expired bans leave the table (and the gauge) even when nobody asks; the cost
                // is the expired ones only, no copy of the table.
                let active = guard.active_bans(now);
                calls.bans_active.set(i64::try_from(active).unwrap_or(i64::MAX));
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
        while let Some(t) = engine.poll_transmit() {
            count_outgoing(&calls, t.to.side, &t.data);
            if let Err(e) = transport.send(&t.to, t.data) {
                tracing::debug!(to = %t.to, error = %e, "sending SIP failed");
            }
        }
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::CallStarted { call, from, trunk } => {
                    let d = direction(from);
                    let trunk = trunks.name(trunk);
                    calls.started.with_label_values(&[d]).inc();
                    calls.active.with_label_values(&[d]).inc();
                    calls.trunk_active.with_label_values(&[&trunk, d]).inc();
                    live.insert(
                        call,
                        CallMeta {
                            direction: d,
                            trunk,
                            started: std::time::Instant::now(),
                            answered: None,
                        },
                    );
                }
                Event::CallProgress { call } => {
                    if let Some(c) = live.get(&call) {
                        calls
                            .post_dial_delay
                            .with_label_values(&[c.direction])
                            .observe(c.started.elapsed().as_secs_f64());
                    }
                }
                Event::CallAnswered { call } => {
                    if let Some(c) = live.get_mut(&call) {
                        calls.answered.with_label_values(&[c.direction]).inc();
                        calls
                            .answer_delay
                            .with_label_values(&[c.direction])
                            .observe(c.started.elapsed().as_secs_f64());
                        c.answered = Some(std::time::Instant::now());
                    }
                }
                Event::CallEnded { call, reason } => {
                    let Some(c) = live.remove(&call) else {
                        continue;
                    };
                    let d = c.direction;
                    calls.ended.with_label_values(&[d, reason.as_str()]).inc();
                    calls.active.with_label_values(&[d]).dec();
                    calls.trunk_active.with_label_values(&[&c.trunk, d]).dec();
                    let result = result_label(c.answered.is_some(), reason);
                    calls.total.with_label_values(&[&c.trunk, d, result]).inc();
                    if let Some(at) = c.answered {
                        calls
                            .duration
                            .with_label_values(&[d])
                            .observe(at.elapsed().as_secs_f64());
                    }
                }
                Event::Redirect { call, outcome } => {
                    calls.redirects.with_label_values(&[outcome]).inc();
                    tracing::info!(call, outcome, "carrier redirect");
                }
                Event::Failover {
                    call,
                    from,
                    to,
                    status,
                } => {
                    let failed = trunks.name(Some(from));
                    calls.failovers.with_label_values(&[&failed]).inc();
                    tracing::info!(call, status, from = %failed, "call moved to the next trunk");
                    if let Some(next) = trunks.0.get(to)
                        && let Some(c) = live.get_mut(&call)
                    {
                        // The call now counts on the trunk that carries it.
                        calls
                            .trunk_active
                            .with_label_values(&[&c.trunk, c.direction])
                            .dec();
                        c.trunk = next.0.clone();
                        calls
                            .trunk_active
                            .with_label_values(&[&c.trunk, c.direction])
                            .inc();
                    }
                }
                Event::AdmissionRejected { from, limit } => {
                    calls
                        .admission_rejected
                        .with_label_values(&[direction(from), limit])
                        .inc();
                }
                Event::PbxAuth { result } => {
                    calls.pbx_auth.with_label_values(&[result.as_str()]).inc();
                }
                Event::NoRoute => calls.no_route.inc(),
                Event::PeerMismatch { side, kind } => {
                    calls
                        .peer_mismatch
                        .with_label_values(&[side.as_str(), kind.as_str()])
                        .inc();
                }
                Event::BorderRefusal { reason } => {
                    calls.border_refusals.with_label_values(&[reason]).inc();
                }
                Event::Dropped { reason } => {
                    metrics
                        .sip_dropped
                        .with_label_values(&["any", "any", reason])
                        .inc();
                }
            }
        }
        let stats = engine.stats();
        let counters = engine.counters();
        let new = counters
            .retransmissions_received
            .saturating_sub(retransmissions_seen.0);
        if new > 0 {
            calls.retransmissions_received.inc_by(new);
        }
        let new = counters
            .retransmissions_sent
            .saturating_sub(retransmissions_seen.1);
        if new > 0 {
            calls.retransmissions_sent.inc_by(new);
        }
        retransmissions_seen = (
            counters.retransmissions_received,
            counters.retransmissions_sent,
        );
        let [s0, s1, s2, s3, s4, s5] = &mut auth_seen;
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
                calls.trunk_auth.with_label_values(&[label]).inc_by(new);
            }
            *seen = now;
        }
        calls
            .transactions
            .with_label_values(&["server"])
            .set(i64::try_from(stats.server_transactions).unwrap_or(i64::MAX));
        calls
            .transactions
            .with_label_values(&["client"])
            .set(i64::try_from(stats.client_transactions).unwrap_or(i64::MAX));
        calls
            .stored_bytes
            .set(i64::try_from(stats.stored_bytes).unwrap_or(i64::MAX));
    }
    deregister(&mut regs, &transport, &calls, &mut inbound).await;
    tracing::info!(calls = engine.stats().calls, "signaling stopped");
}

/// Zero failover series for every configured trunk, so the dashboard and the alert rules find
/// them before the first failover.
fn seed_trunk_series(calls: &CallMetrics, trunks: &TrunkNames) {
    for (name, _) in &trunks.0 {
        calls.failovers.with_label_values(&[name]);
    }
}

fn update_registration_metrics(calls: &CallMetrics, regs: &[(TrunkRegistration, Registration)]) {
    const STATES: [RegState; 5] = [
        RegState::Unregistered,
        RegState::Registering,
        RegState::Registered,
        RegState::Failed,
        RegState::BackingOff,
    ];
    for (t, reg) in regs {
        for s in STATES {
            calls
                .registration_state
                .with_label_values(&[&t.trunk, s.as_str()])
                .set(i64::from(reg.state() == s));
        }
    }
}

/// On shutdown: removes every binding (RFC 3261 §10.2.2, `Expires: 0`) and waits for the
/// registrars' answers, at most two seconds, so a restart does not leave stale bindings that
/// attract calls to an address nobody answers.
async fn deregister(
    regs: &mut [(TrunkRegistration, Registration)],
    transport: &Transport,
    calls: &CallMetrics,
    inbound: &mut mpsc::Receiver<Inbound>,
) {
    let now = std::time::Instant::now();
    let mut pending = 0;
    for (_, reg) in regs.iter_mut() {
        if reg.stop(now) {
            pending += 1;
        }
    }
    if pending == 0 {
        return;
    }
    flush_registrations(regs, transport, calls);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    // Bounded by the deadline; every branch either handles one message or sleeps.
    while regs
        .iter()
        .any(|(_, r)| r.state() != RegState::Unregistered)
        && tokio::time::Instant::now() < deadline
    {
        tokio::select! {
            received = inbound.recv() => {
                let Some(m) = received else { break };
                if !m.message.is_request() && m.message.cseq().method == Method::Register {
                    let now = std::time::Instant::now();
                    for (_, reg) in regs.iter_mut() {
                        reg.handle_response(now, &m.message);
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                let now = std::time::Instant::now();
                for (_, reg) in regs.iter_mut() {
                    reg.handle_timeout(now);
                }
            }
        }
        flush_registrations(regs, transport, calls);
    }
    tracing::info!(trunks = pending, "registrations removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_admits_pbx_networks_inside_and_trunk_proxies_outside() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let acl = Acl::from_config(&cfg);
        let peer = |side, a: &str| Peer {
            side,
            transport: TransportKind::Udp,
            addr: a.parse().expect("literal"),
            conn: None,
            local: None,
        };
        assert!(acl.allows(&peer(Side::Inside, "127.0.0.1:5070")));
        assert!(acl.allows(&peer(Side::Inside, "127.9.9.9:1234")));
        assert!(!acl.allows(&peer(Side::Inside, "192.0.2.1:5060")));
        assert!(acl.allows(&peer(Side::Outside, "127.0.0.1:5090")));
        assert!(!acl.allows(&peer(Side::Outside, "127.0.0.2:5090")));
    }

    #[test]
    fn b2bua_config_uses_the_documented_default_addresses() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let b = b2bua_config(&cfg);
        assert_eq!(b.inside.addr, "127.0.0.1:5060".parse().expect("literal"));
        assert_eq!(b.outside.addr, "127.0.0.1:5080".parse().expect("literal"));
        assert_eq!(b.pbx.addr, "127.0.0.1:5070".parse().expect("literal"));
        assert_eq!(
            b.trunks[0].target.addr,
            "127.0.0.1:5090".parse().expect("literal")
        );
        assert_eq!(b.pbx_auth, None, "the ACL alone by default");
    }

    #[test]
    fn call_limits_and_caps_are_finite_by_default() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let b = b2bua_config(&cfg);
        assert_eq!(b.limits.max_calls, Some(Limits::DEFAULT_MAX_CALLS));
        assert_eq!(b.limits.max_cps, Some(Limits::DEFAULT_MAX_CPS));
        for t in &b.trunks {
            assert_eq!(t.limits.max_calls, Some(Limits::DEFAULT_TRUNK_MAX_CALLS));
            assert_eq!(t.limits.max_cps, Some(Limits::DEFAULT_TRUNK_MAX_CPS));
        }
        assert_eq!(b.caps.max_transactions, 20_000);
        assert_eq!(b.caps.max_stored_bytes, 64 << 20);
        // Without a [limits] section at all: the same.
        let mut bare = cfg.clone();
        bare.limits = crate::config::Limits::default();
        assert_eq!(b2bua_config(&bare).limits, b.limits);
    }

    #[test]
    fn pbx_auth_realm_defaults_to_the_inside_address() {
        let mut cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        cfg.pbx.username = Some("pbx".into());
        cfg.pbx.password = Some(crate::config::Password("pw".into()));
        let a = b2bua_config(&cfg).pbx_auth.expect("configured");
        assert_eq!(a.realm, "127.0.0.1");
        assert_eq!(
            a.algorithms,
            [
                sbc_proto::auth::Algorithm::Sha256,
                sbc_proto::auth::Algorithm::Md5
            ]
        );
        cfg.pbx.realm = Some("pbx.example".into());
        assert_eq!(
            b2bua_config(&cfg).pbx_auth.map(|a| a.realm),
            Some("pbx.example".into())
        );
    }
}
