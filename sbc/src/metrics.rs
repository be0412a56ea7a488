//! Prometheus metrics of the SBC. Every metric has HELP text and bounded label values only.

mod calls;
mod drain;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sbc_ebpf_common::Stat;

pub use calls::{CallMetrics, CallTracker, Incoming};
pub use drain::DrainMetrics;

/// `sbc_media_packets_dropped_total` reason of datagrams that reached a relay port before
/// its stream had it (queued on a pair bound ahead or parked; the executor drops them).
pub const DROP_UNALLOCATED: &str = "unallocated";
/// `sbc_media_packets_dropped_total` reason of the XDP program's strict-source drops.
const XDP_STRICT_SOURCE: &str = "xdp_strict_source";

/// The XDP program's drop counters and their `sbc_media_packets_dropped_total` reasons.
const XDP_DROP_REASONS: [(Stat, &str); 4] = [
    (Stat::DropStrictSource, XDP_STRICT_SOURCE),
    (Stat::DropNotAllowed, "xdp_not_allowed"),
    (Stat::DropUnallocated, "xdp_unallocated"),
    (Stat::DropNoDestination, "xdp_no_destination"),
];

/// The SBC's metric handles and the registry they are exported from.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// SIP input units received, by side and transport: datagrams on UDP (before parsing, so
    /// garbage counts too), framed messages on streams.
    pub sip_received: IntCounterVec,
    /// Bytes of SIP received, by side and transport.
    pub sip_received_bytes: IntCounterVec,
    /// SIP input dropped or connections closed for bad input, by side, transport and reason
    /// (a fixed set of reasons, see `transport::DropReason`).
    pub sip_dropped: IntCounterVec,
    /// Malformed requests answered statelessly by the transport, by side, transport and code.
    pub sip_rejected: IntCounterVec,
    /// SIP messages handed to the network, by side and transport.
    pub sip_sent: IntCounterVec,
    /// Bytes of SIP handed to the network, by side and transport.
    pub sip_sent_bytes: IntCounterVec,
    /// Sends that failed, by side, transport and reason (see `transport::SendError`).
    pub sip_send_errors: IntCounterVec,
    /// Time a SIP message spends in the SBC, by the side it came from: from the transport
    /// having its bytes (before parsing) to the end of the signaling turn that handled it
    /// (its answers and forwards handed to the transports), queueing for the shard included.
    pub sip_handling: HistogramVec,
    /// Time a UDP SIP datagram waited in the kernel (from its arrival, the socket's
    /// `SO_TIMESTAMPNS`) before the SBC read it, by side: the queueing ahead of
    /// `sip_handling`, where a busy or stalled signaling thread shows first.
    pub sip_receive_wait: HistogramVec,
    /// Signaling shards refusing new calls for overload right now (`sbc_proto::overload`).
    pub sip_overload_shards: IntGauge,
    /// RFC 5626 CRLF keep-alive pings answered with a pong, by side and transport.
    pub sip_keepalives: IntCounterVec,
    /// Open SIP stream connections, by side and transport.
    pub sip_connections: IntGaugeVec,
    /// TLS certificate reloads, by result (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    /// 1 when the XDP program is attached to at least one interface.
    pub xdp_attached: IntGauge,
    /// Packets counted by the XDP program, by outcome (read from its maps at scrape time).
    pub xdp_packets: IntCounterVec,
    /// Media relay metrics (shared with the media manager).
    pub media: MediaMetrics,
    last_xdp: std::sync::Arc<parking_lot::Mutex<[u64; Stat::COUNT as usize]>>,
}

/// Metrics of the media relay. Counters are updated on the userspace hot path (one atomic add
/// each); the XDP path is counted by the program and read at scrape time.
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    /// Packets forwarded by the userspace relay.
    pub user_packets: IntCounter,
    /// Wake-ups of the userspace relay's workers with sockets ready (packets per wake-up =
    /// `user_packets` / this).
    pub relay_wakeups: IntCounter,
    /// Bytes forwarded by the userspace relay.
    pub user_bytes: IntCounter,
    /// Media packets dropped, by reason: the userspace relay's (`not_allowed`,
    /// `strict_source`, `no_destination`, `send_failed`, `unallocated`: queued on a relay
    /// port before its stream had it) and the XDP program's
    /// (`xdp_strict_source`, `xdp_not_allowed`, `xdp_unallocated`, `xdp_no_destination`,
    /// folded in at scrape time).
    pub dropped: IntCounterVec,
    /// Latches that moved to a different source (re-latch window, or loose source).
    pub relatched: IntCounter,
    /// Latches the XDP program made for socketless streams, as the control plane learned them.
    pub xdp_latches: IntCounter,
    /// SRTP/SRTCP packets whose authentication tag did not verify (dropped).
    pub srtp_auth_failures: IntCounter,
    /// Offers rejected by the media layer, by reason (exhausted, streams, family, unavailable).
    pub rejected: IntCounterVec,
    /// Sessions ended by the media timeout.
    pub timeouts: IntCounter,
    /// Live media sessions.
    pub sessions: IntGauge,
    /// Fast-path mappings installed.
    pub xdp_mappings: IntGauge,
    /// Neighbour priming requests for fast-path peers, by result (`resolving`, `not_needed`,
    /// `recent`, `failed`; `media.xdp_prime_neighbours`).
    pub neighbour_primes: IntCounterVec,
    /// Fast-path mappings the XDP maps hold (sized from `[media]` port range).
    pub xdp_mappings_capacity: IntGauge,
    /// Free relay port pairs, by side (summed over the side's relay addresses).
    pub ports_free: IntGaugeVec,
    /// Free relay port pairs, by relay bind address (`media_addresses`: one full address
    /// refuses nothing while another has room, but shows here).
    pub address_ports_free: IntGaugeVec,
    /// Digits handed to the relay for RFC 4733 generation (SIP INFO converted), by result:
    /// `queued`, `queue_full` (`[media] dtmf_queue`), `not_terminated` (no telephone-event
    /// negotiated on that stream).
    pub dtmf_generated: IntCounterVec,
    /// Telephone-event packets the relay terminated, by `kind`: `generated` (sent) and
    /// `consumed` (received from an RFC 4733 leg whose digits leave as INFO, and audio held
    /// back while a generated event plays).
    pub dtmf_packets: IntCounterVec,
    /// Packets the AF_XDP relay received and forwarded, by how they left: `xsk` (written to
    /// the egress interface's AF_XDP socket) or `socket` (through the stream's relay socket:
    /// next hop not resolved yet).
    pub xsk_packets: IntCounterVec,
    /// 1 while the AF_XDP relay runs (`media.xsk`), else 0.
    pub xsk_active: IntGauge,
    /// Relay sockets of ended streams kept bound for reuse (`media.relay_idle_sockets`).
    pub idle_sockets: IntGauge,
    /// Relay port pairs bound ahead and waiting for a new userspace stream
    /// (`media.warm_pairs` per relay address).
    pub warm_pairs: IntGauge,
    /// Userspace streams that found no warm pair on a side and were bound when their offer
    /// arrived (a warm pool too small for the call rate).
    pub warm_misses: IntCounter,
    /// Warm pairs that could not be bound (another program holds a port of the range).
    pub warm_failures: IntCounter,
    /// Relay sockets of ended streams closed instead of kept, by reason: `full` (the cache
    /// holds `media.relay_idle_sockets`) or `descriptors` (closed to free descriptors when a
    /// new relay socket could not be opened).
    pub idle_closed: IntCounterVec,
    /// Per AF_XDP socket (`interface`, `queue`): 1 when the kernel reads preferred busy
    /// polling back as set on it (`media.xsk_busy_poll`), else 0.
    pub xsk_busy_poll: IntGaugeVec,
    /// Per AF_XDP socket (`interface`, `queue`): the NAPI id the kernel reports for it after
    /// its first frame (`SO_INCOMING_NAPI_ID`), read with busy polling on. 0: none, so busy
    /// polling cannot engage (veth on Linux 6.18 reports none).
    pub xsk_napi_id: IntGaugeVec,
}

impl MediaMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            user_packets: IntCounter::new(
                "sbc_media_userspace_packets_total",
                "RTP/RTCP packets forwarded by the userspace relay.",
            )?,
            relay_wakeups: IntCounter::new(
                "sbc_media_relay_wakeups_total",
                "Wake-ups of the userspace relay's workers that found sockets ready.",
            )?,
            user_bytes: IntCounter::new(
                "sbc_media_userspace_bytes_total",
                "Bytes (UDP payload) forwarded by the userspace relay.",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "sbc_media_packets_dropped_total",
                    "Media packets dropped (userspace relay and XDP), by reason.",
                ),
                &["reason"],
            )?,
            relatched: IntCounter::new(
                "sbc_media_relatched_total",
                "Relay port latches that moved to a different allowed source (NAT rebinding).",
            )?,
            xdp_latches: IntCounter::new(
                "sbc_media_xdp_latches_total",
                "Latches made in XDP for socketless streams (from the latch event ring buffer).",
            )?,
            srtp_auth_failures: IntCounter::new(
                "sbc_media_srtp_auth_failures_total",
                "SRTP/SRTCP packets dropped because their authentication tag did not verify.",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "sbc_media_rejected_total",
                    "Offers rejected by the media layer (the call gets 488/503), by reason.",
                ),
                &["reason"],
            )?,
            timeouts: IntCounter::new(
                "sbc_media_timeouts_total",
                "Media sessions that timed out (no packets in either direction).",
            )?,
            sessions: IntGauge::new("sbc_media_sessions", "Live media sessions.")?,
            idle_sockets: IntGauge::new(
                "sbc_media_relay_idle_sockets",
                "Relay sockets of ended streams kept bound for reuse (media.relay_idle_sockets).",
            )?,
            warm_pairs: IntGauge::new(
                "sbc_media_relay_warm_pairs",
                "Relay port pairs bound ahead and waiting for a new userspace stream \
                 (media.warm_pairs per relay address).",
            )?,
            warm_misses: IntCounter::new(
                "sbc_media_relay_warm_misses_total",
                "Userspace streams that found no warm pair on a side and were bound when their \
                 offer arrived.",
            )?,
            warm_failures: IntCounter::new(
                "sbc_media_relay_warm_bind_failures_total",
                "Relay port pairs that could not be bound ahead (a port of the range is held \
                 by another program).",
            )?,
            idle_closed: IntCounterVec::new(
                Opts::new(
                    "sbc_media_relay_idle_sockets_closed_total",
                    "Relay sockets of ended streams closed instead of kept, by reason (full: \
                     the cache is at media.relay_idle_sockets; descriptors: closed so that a \
                     new relay socket could open).",
                ),
                &["reason"],
            )?,
            xdp_mappings: IntGauge::new(
                "sbc_media_xdp_mappings",
                "Mappings installed in the XDP fast path (counted every media tick, 500 ms).",
            )?,
            neighbour_primes: IntCounterVec::new(
                Opts::new(
                    "sbc_media_neighbour_primes_total",
                    "Next-hop resolutions asked for fast-path peers as their mappings went in.",
                ),
                &["result"],
            )?,
            xdp_mappings_capacity: IntGauge::new(
                "sbc_media_xdp_mappings_capacity",
                "Mappings the XDP fast path's maps hold (one per relay port and media address).",
            )?,
            ports_free: IntGaugeVec::new(
                Opts::new(
                    "sbc_media_ports_free",
                    "Free relay port pairs, by side (over all its relay addresses).",
                ),
                &["side"],
            )?,
            address_ports_free: IntGaugeVec::new(
                Opts::new(
                    "sbc_media_address_ports_free",
                    "Free relay port pairs, by relay bind address.",
                ),
                &["address"],
            )?,
            dtmf_generated: IntCounterVec::new(
                Opts::new(
                    "sbc_media_dtmf_generated_total",
                    "DTMF digits handed to the relay to send as RFC 4733 events, by result.",
                ),
                &["result"],
            )?,
            dtmf_packets: IntCounterVec::new(
                Opts::new(
                    "sbc_media_dtmf_packets_total",
                    "Packets of DTMF the relay terminates: generated events sent, and packets consumed.",
                ),
                &["kind"],
            )?,
            xsk_packets: IntCounterVec::new(
                Opts::new(
                    "sbc_media_xsk_packets_total",
                    "Packets relayed through AF_XDP (media.xsk), by how they left (xsk, socket).",
                ),
                &["path"],
            )?,
            xsk_active: IntGauge::new(
                "sbc_media_xsk_active",
                "1 while the AF_XDP relay for SRTP streams runs (media.xsk), else 0.",
            )?,
            xsk_busy_poll: IntGaugeVec::new(
                Opts::new(
                    "sbc_media_xsk_busy_poll",
                    "1 per AF_XDP socket the kernel reports preferred busy polling set on (media.xsk_busy_poll), else 0.",
                ),
                &["interface", "queue"],
            )?,
            xsk_napi_id: IntGaugeVec::new(
                Opts::new(
                    "sbc_media_xsk_napi_id",
                    "NAPI id the kernel reports for an AF_XDP socket after its first frame (busy polling on); 0: none, busy polling cannot engage.",
                ),
                &["interface", "queue"],
            )?,
        };
        registry.register(Box::new(m.user_packets.clone()))?;
        registry.register(Box::new(m.xsk_packets.clone()))?;
        registry.register(Box::new(m.xsk_active.clone()))?;
        registry.register(Box::new(m.xsk_busy_poll.clone()))?;
        registry.register(Box::new(m.xsk_napi_id.clone()))?;
        for path in ["xsk", "socket"] {
            m.xsk_packets.with_label_values(&[path]);
        }
        registry.register(Box::new(m.relay_wakeups.clone()))?;
        registry.register(Box::new(m.user_bytes.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.relatched.clone()))?;
        registry.register(Box::new(m.xdp_latches.clone()))?;
        registry.register(Box::new(m.srtp_auth_failures.clone()))?;
        // Every reason from the start, so alert rules find the series before the first drop.
        for reason in [
            "not_allowed",
            "strict_source",
            "no_destination",
            "send_failed",
            "xsk_unknown",
            DROP_UNALLOCATED,
        ]
        .into_iter()
        .chain(XDP_DROP_REASONS.map(|(_, reason)| reason))
        .chain(sbc_proto::media::table::SRTP_DROP_LABELS)
        {
            m.dropped.with_label_values(&[reason]);
        }
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.timeouts.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        registry.register(Box::new(m.idle_sockets.clone()))?;
        registry.register(Box::new(m.idle_closed.clone()))?;
        registry.register(Box::new(m.warm_pairs.clone()))?;
        registry.register(Box::new(m.warm_misses.clone()))?;
        registry.register(Box::new(m.warm_failures.clone()))?;
        for reason in ["full", "descriptors"] {
            m.idle_closed.with_label_values(&[reason]);
        }
        registry.register(Box::new(m.xdp_mappings.clone()))?;
        registry.register(Box::new(m.xdp_mappings_capacity.clone()))?;
        registry.register(Box::new(m.neighbour_primes.clone()))?;
        for result in ["resolving", "not_needed", "recent", "failed"] {
            m.neighbour_primes.with_label_values(&[result]);
        }
        registry.register(Box::new(m.ports_free.clone()))?;
        registry.register(Box::new(m.address_ports_free.clone()))?;
        registry.register(Box::new(m.dtmf_generated.clone()))?;
        registry.register(Box::new(m.dtmf_packets.clone()))?;
        for result in ["queued", "queue_full", "not_terminated"] {
            m.dtmf_generated.with_label_values(&[result]);
        }
        for kind in ["generated", "consumed"] {
            m.dtmf_packets.with_label_values(&[kind]);
        }
        Ok(m)
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "sbc_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;
        let sip_received = IntCounterVec::new(
            Opts::new(
                "sbc_sip_received_total",
                "SIP messages received, by side and transport.",
            ),
            &["side", "transport"],
        )?;
        let sip_received_bytes = IntCounterVec::new(
            Opts::new("sbc_sip_received_bytes_total", "Bytes of SIP received."),
            &["side", "transport"],
        )?;
        let sip_dropped = IntCounterVec::new(
            Opts::new(
                "sbc_sip_dropped_total",
                "SIP input dropped without a response (or stream closed for it), by reason.",
            ),
            &["side", "transport", "reason"],
        )?;
        let sip_rejected = IntCounterVec::new(
            Opts::new(
                "sbc_sip_rejected_total",
                "Malformed SIP requests answered statelessly with an error response.",
            ),
            &["side", "transport", "code"],
        )?;
        let sip_sent = IntCounterVec::new(
            Opts::new("sbc_sip_sent_total", "SIP messages sent."),
            &["side", "transport"],
        )?;
        let sip_sent_bytes = IntCounterVec::new(
            Opts::new("sbc_sip_sent_bytes_total", "Bytes of SIP sent."),
            &["side", "transport"],
        )?;
        let sip_send_errors = IntCounterVec::new(
            Opts::new(
                "sbc_sip_send_errors_total",
                "SIP sends that failed, by reason.",
            ),
            &["side", "transport", "reason"],
        )?;
        let sip_keepalives = IntCounterVec::new(
            Opts::new(
                "sbc_sip_keepalives_total",
                "CRLF keep-alive pings answered with a pong (RFC 5626).",
            ),
            &["side", "transport"],
        )?;
        let sip_connections = IntGaugeVec::new(
            Opts::new(
                "sbc_sip_connections",
                "Open SIP stream (TCP/TLS) connections.",
            ),
            &["side", "transport"],
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "sbc_tls_reloads_total",
                "TLS certificate reloads, by result.",
            ),
            &["result"],
        )?;
        let xdp_attached = IntGauge::new(
            "sbc_xdp_attached",
            "1 if the XDP fast path is attached, else 0.",
        )?;
        let xdp_packets = IntCounterVec::new(
            Opts::new(
                "sbc_xdp_packets_total",
                "Packets seen by the XDP program, by outcome.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(sip_received.clone()))?;
        registry.register(Box::new(sip_received_bytes.clone()))?;
        registry.register(Box::new(sip_dropped.clone()))?;
        registry.register(Box::new(sip_rejected.clone()))?;
        registry.register(Box::new(sip_sent.clone()))?;
        registry.register(Box::new(sip_sent_bytes.clone()))?;
        registry.register(Box::new(sip_send_errors.clone()))?;
        let sip_handling = HistogramVec::new(
            HistogramOpts::new(
                "sbc_sip_handling_seconds",
                "Time from a SIP message's receipt (before parsing) to the end of the signaling \
                 turn that handled it (answers and forwards handed to the transports), by the \
                 side it came from; queueing for the shard included, the kernel not.",
            )
            .buckets(vec![
                50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
                250e-3, 1.0,
            ]),
            &["side"],
        )?;
        registry.register(Box::new(sip_handling.clone()))?;
        let sip_receive_wait = HistogramVec::new(
            HistogramOpts::new(
                "sbc_sip_receive_wait_seconds",
                "Time a UDP SIP datagram waited in the kernel after its arrival (socket \
                 timestamp) before the SBC read it, by side: the queueing ahead of \
                 sbc_sip_handling_seconds.",
            )
            .buckets(vec![
                20e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0,
            ]),
            &["side"],
        )?;
        registry.register(Box::new(sip_receive_wait.clone()))?;
        let sip_overload_shards = IntGauge::new(
            "sbc_sip_overload_shards",
            "Signaling shards refusing new calls with 503 right now because their new \
             requests wait behind a standing queue ([limits] queue_delay_target_ms).",
        )?;
        registry.register(Box::new(sip_overload_shards.clone()))?;
        for side in ["inside", "outside"] {
            sip_handling.with_label_values(&[side]);
            sip_receive_wait.with_label_values(&[side]);
        }
        registry.register(Box::new(sip_keepalives.clone()))?;
        registry.register(Box::new(sip_connections.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        registry.register(Box::new(xdp_attached.clone()))?;
        registry.register(Box::new(xdp_packets.clone()))?;
        // Export every outcome from the start (0 without XDP), so dashboards and alert rules
        // find the series on hosts without the fast path too.
        for stat in Stat::ALL {
            xdp_packets.with_label_values(&[stat.name()]);
        }
        let media = MediaMetrics::new(&registry)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            sip_received,
            sip_received_bytes,
            sip_dropped,
            sip_rejected,
            sip_sent,
            sip_sent_bytes,
            sip_send_errors,
            sip_handling,
            sip_receive_wait,
            sip_overload_shards,
            sip_keepalives,
            sip_connections,
            tls_reloads,
            xdp_attached,
            xdp_packets,
            media,
            last_xdp: std::sync::Arc::new(parking_lot::Mutex::new([0; Stat::COUNT as usize])),
        })
    }

    /// Folds the XDP program's absolute counters into the exported counters.
    pub fn observe_xdp(&self, now: &[u64; Stat::COUNT as usize]) {
        let mut last = self.last_xdp.lock();
        for (i, stat) in Stat::ALL.iter().enumerate() {
            // Counters restart from zero if the maps were recreated; never go backwards.
            let delta = now[i].saturating_sub(last[i]);
            if delta > 0 {
                self.xdp_packets
                    .with_label_values(&[stat.name()])
                    .inc_by(delta);
                if let Some((_, reason)) = XDP_DROP_REASONS.iter().find(|(s, _)| s == stat) {
                    self.media
                        .dropped
                        .with_label_values(&[reason])
                        .inc_by(delta);
                }
            }
        }
        *last = *now;
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_and_build_info() {
        let m = Metrics::new().expect("metrics register");
        m.sip_received.with_label_values(&["inside", "udp"]).inc();
        let text = m.render();
        assert!(text.contains("# HELP sbc_build_info"));
        assert!(text.contains("sbc_sip_received_total{side=\"inside\",transport=\"udp\"} 1"));
    }

    #[test]
    fn xdp_counters_accumulate_deltas() {
        let m = Metrics::new().expect("metrics register");
        let mut s = [0u64; Stat::COUNT as usize];
        s[Stat::Redirected as usize] = 5;
        m.observe_xdp(&s);
        s[Stat::Redirected as usize] = 8;
        m.observe_xdp(&s);
        assert_eq!(m.xdp_packets.with_label_values(&["redirected"]).get(), 8);
        s[Stat::DropStrictSource as usize] = 3;
        m.observe_xdp(&s);
        assert_eq!(
            m.media
                .dropped
                .with_label_values(&[XDP_STRICT_SOURCE])
                .get(),
            3,
            "XDP drops count in the media drop metric"
        );
        s[Stat::DropNotAllowed as usize] = 7;
        s[Stat::DropUnallocated as usize] = 2;
        m.observe_xdp(&s);
        let dropped = |reason| m.media.dropped.with_label_values(&[reason]).get();
        assert_eq!(dropped("xdp_not_allowed"), 7, "in-kernel latch refusals");
        assert_eq!(dropped("xdp_unallocated"), 2, "unallocated relay ports");
        assert_eq!(dropped(XDP_STRICT_SOURCE), 3);
    }
}
