//! What the admin API shows of the media relay: totals and per-session views, built from the
//! media table and the XDP counters.

use std::{net::SocketAddr, time::Instant};

use sbc_proto::media::{
    Direction, FastPath, SessionId,
    rtp::{ReceptionReport, RtpStats},
    table::Session,
};
use sbc_proto::net::Side;

use super::xdp_maps::XdpMaps;

/// One relay bind address's port pairs, at `/api/v1/media`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddressView {
    /// The bind address.
    pub address: String,
    /// Free pairs.
    pub ports_free: usize,
    /// Pairs in total.
    pub ports_total: usize,
}

/// Totals shown at `/api/v1/media`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Overview {
    /// Live sessions.
    pub sessions: usize,
    /// Streams in them.
    pub streams: usize,
    /// XDP mappings installed.
    pub xdp_mappings: usize,
    /// Free port pairs inside.
    pub ports_free_inside: usize,
    /// Free port pairs outside.
    pub ports_free_outside: usize,
    /// Pairs inside (all relay addresses; kept under its old name for readers of one
    /// address per side, when both sides had the same count).
    pub ports_total: usize,
    /// Pairs inside, over all inside relay addresses.
    pub ports_total_inside: usize,
    /// Pairs outside, over all outside relay addresses.
    pub ports_total_outside: usize,
    /// Free and total pairs per relay bind address.
    pub addresses: Vec<AddressView>,
    /// Relay sockets of ended streams kept bound for reuse.
    pub idle_sockets: usize,
    /// Relay port pairs bound ahead and waiting for a new userspace stream.
    pub warm_pairs: usize,
    /// Packets forwarded by the userspace relay.
    pub userspace_packets: u64,
    /// Bytes forwarded by the userspace relay.
    pub userspace_bytes: u64,
    /// Sessions timed out.
    pub timeouts: u64,
}

/// A session as shown by `GET /api/v1/media/sessions/{id}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Id.
    pub id: u64,
    /// An answer was committed.
    pub committed: bool,
    /// The media timeout fired (the call layer was told).
    pub timed_out: bool,
    /// Recreated from pinned mappings after a restart.
    pub adopted: bool,
    /// Milliseconds since the last packet in either direction (userspace or XDP).
    pub idle_ms: u64,
    /// Streams in `m=` order.
    pub streams: Vec<StreamView>,
}

/// One stream of a [`SessionView`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamView {
    /// Relay endpoint facing the PBX.
    pub inside: EndpointView,
    /// Relay endpoint facing the carrier.
    pub outside: EndpointView,
    /// XDP mappings installed for the stream.
    pub xdp_mappings: usize,
    /// No relay socket: the XDP program latches and relays the stream.
    pub socketless: bool,
    /// SRTP suite per leg (`null`: plain RTP). Keys are never shown.
    pub srtp: SrtpView,
}

/// The SRTP suite of each leg of a stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SrtpView {
    /// Suite toward the PBX.
    pub inside: Option<&'static str>,
    /// Suite toward the carrier.
    pub outside: Option<&'static str>,
}

/// One leg of a [`StreamView`]: the relay endpoint and the peer behind it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointView {
    /// Relay address (as advertised) and ports.
    pub relay: String,
    /// The relay address the ports are bound to (one of the side's `media_addresses`; the
    /// fast-path map key).
    pub bind: String,
    /// RTP port.
    pub rtp_port: u16,
    /// RTCP port.
    pub rtcp_port: u16,
    /// Latched peer RTP address, once a packet came.
    pub latched: Option<String>,
    /// Where the relay sends RTP to this peer (latched, else SDP).
    pub target: Option<String>,
    /// Packets from this peer forwarded by userspace.
    pub userspace_packets: u64,
    /// Bytes of those.
    pub userspace_bytes: u64,
    /// Packets from this peer forwarded by XDP.
    pub xdp_packets: u64,
    /// Bytes of those.
    pub xdp_bytes: u64,
    /// Packets from this peer dropped.
    pub dropped: u64,
    /// Milliseconds since this peer's last packet reached userspace.
    pub last_seen_ms: Option<u64>,
    /// RTP packets lost (from sequence numbers seen in userspace).
    pub rtp_lost: i64,
    /// Interarrival jitter in ms (userspace-seen RTP, static payload types only).
    pub rtp_jitter_ms: Option<f64>,
    /// The last RTCP reception report from this peer (about what it receives from us).
    pub rtcp_report: Option<ReportView>,
    /// The peer's RTP address from its SDP.
    pub sdp: Option<String>,
    /// The direction attribute of the peer's SDP.
    pub sdp_direction: &'static str,
    /// Source of the last packet the latch refused, and why (`not_allowed`, `strict_source`).
    pub refused_from: Option<String>,
    /// See `refused_from`.
    pub refused_reason: Option<&'static str>,
    /// Milliseconds since the fast path last forwarded a packet from this peer.
    pub xdp_idle_ms: Option<u64>,
}

/// The first report block of an RTCP SR or RR (RFC 3550 §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReportView {
    /// Fraction lost since the previous report, out of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Interarrival jitter, RTP timestamp units.
    pub jitter: u32,
}

impl From<ReceptionReport> for ReportView {
    fn from(r: ReceptionReport) -> Self {
        Self {
            fraction_lost: r.fraction_lost,
            cumulative_lost: r.cumulative_lost,
            jitter: r.jitter,
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The view of session `id` at `now`; `xdp` gives the fast path's per-mapping counters.
pub(crate) fn session_view(
    id: SessionId,
    s: &Session,
    xdp: Option<&XdpMaps>,
    now: Instant,
) -> SessionView {
    let streams = s
        .streams
        .iter()
        .map(|st| {
            // A copy of what the view shows, so the stream's relay thread does not wait on the
            // XDP counter reads below.
            let (peers, suites) = {
                let path = st.path.lock();
                let suite = |leg| path.srtp.suite(leg);
                (
                    path.peers.clone(),
                    [suite(Side::Inside), suite(Side::Outside)],
                )
            };
            let ep = |leg: Side| {
                let r = st.relay.facing(leg);
                let p = &peers[leg.index()];
                let key: SocketAddr = st.bound()[leg.index()];
                let slot = st
                    .installed
                    .iter()
                    .find(|m| m.ingress == key)
                    .as_ref()
                    .and_then(FastPath::stats);
                let xs = xdp
                    .zip(slot)
                    .and_then(|(x, s)| x.mapping_stats(s.slot, s.generation).ok())
                    .unwrap_or_default();
                EndpointView {
                    relay: r.addr.to_string(),
                    bind: key.ip().to_string(),
                    rtp_port: r.rtp_port,
                    rtcp_port: r.rtcp_port,
                    latched: p.latch[0].latched().map(|a| a.to_string()),
                    target: p.latch[0].target().map(|a| a.to_string()),
                    userspace_packets: p.packets,
                    userspace_bytes: p.bytes,
                    xdp_packets: xs.packets,
                    xdp_bytes: xs.bytes,
                    dropped: p.dropped,
                    last_seen_ms: p
                        .last_seen
                        .map(|t| millis(now.saturating_duration_since(t))),
                    rtp_lost: p.rtp().map_or(0, RtpStats::lost),
                    rtp_jitter_ms: p.rtp().and_then(RtpStats::jitter_ms),
                    rtcp_report: p.report().map(ReportView::from),
                    sdp: p.latch[0].sdp().map(|a| a.to_string()),
                    sdp_direction: direction_str(p.direction),
                    refused_from: p.refused().map(|(a, _)| a.to_string()),
                    refused_reason: p.refused().map(|(_, r)| r.label()),
                    xdp_idle_ms: since_monotonic_ns(xs.last_seen_ns),
                }
            };
            StreamView {
                inside: ep(Side::Inside),
                outside: ep(Side::Outside),
                xdp_mappings: st.fast_paths(),
                socketless: st.kernel,
                srtp: SrtpView {
                    inside: suites[0],
                    outside: suites[1],
                },
            }
        })
        .collect();
    SessionView {
        id: id.0,
        committed: s.committed,
        timed_out: s.timed_out,
        adopted: s.adopted,
        idle_ms: millis(s.activity.idle(now)),
        streams,
    }
}

/// The SDP direction attribute as written in SDP.
pub const fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    }
}

/// Milliseconds since `ns` on CLOCK_MONOTONIC (the XDP program's `bpf_ktime_get_ns`); `None`
/// for 0 (never) or an unreadable clock.
pub fn since_monotonic_ns(ns: u64) -> Option<u64> {
    if ns == 0 {
        return None;
    }
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let now_ns = u64::try_from(now.tv_sec())
        .ok()?
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec()).ok()?);
    Some(now_ns.saturating_sub(ns) / 1_000_000)
}
