//! `[hep]` (HEP v3 export of every SIP message to a capture server such as Homer) and
//! `[trace]` (the per-call SIP trace kept for the admin API).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How HEP packets reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HepTransport {
    /// One datagram per packet.
    #[default]
    Udp,
    /// A stream of packets on one connection, re-opened after a failure.
    Tcp,
}

/// `[hep]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hep {
    /// The collector's address; `None` turns the export off.
    pub collector: Option<SocketAddr>,
    /// UDP or TCP.
    pub transport: HepTransport,
    /// Capture agent id sent with every packet (tells this SBC apart in Homer).
    pub capture_id: u32,
    /// The collector's password (HEP authentication key chunk), if it wants one.
    pub password: Option<String>,
    /// Packets waiting for the sender; beyond it new ones are dropped and counted.
    pub queue: usize,
    /// How long a message of a call waits for its call's other leg to be known (for the
    /// correlation id) before it goes without one, milliseconds.
    pub correlation_wait_ms: u64,
    /// RTCP-derived quality reports per stream every this many seconds; 0: none.
    pub rtcp_report_s: u64,
}

impl Default for Hep {
    fn default() -> Self {
        Self {
            collector: None,
            transport: HepTransport::Udp,
            capture_id: 2001,
            password: None,
            queue: 4096,
            correlation_wait_ms: 200,
            rtcp_report_s: 10,
        }
    }
}

/// `[trace]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trace {
    /// Keep per-call traces for the admin API.
    pub enabled: bool,
    /// Messages kept per call leg (the oldest go first, counted).
    pub max_messages_per_leg: usize,
    /// Bytes kept of one message (the rest is cut, marked `truncated`).
    pub max_message_bytes: usize,
    /// Call legs traced at once (live and recently ended).
    pub max_legs: usize,
    /// Memory held by the traces in total, MiB: messages and their bookkeeping (entries, legs,
    /// links; `trace/store.rs`).
    pub max_total_mib: usize,
    /// How long a trace stays after its call ended or failed, seconds.
    pub keep_s: u64,
    /// Captured messages waiting for the trace task; beyond it new ones are dropped, counted.
    pub queue: usize,
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            enabled: true,
            max_messages_per_leg: 64,
            max_message_bytes: 8192,
            max_legs: 4096,
            max_total_mib: 32,
            keep_s: 600,
            queue: 8192,
        }
    }
}

/// Problems in `[hep]` and `[trace]`, as (key path, message).
pub(super) fn validate(hep: &Hep, trace: &Trace) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |path: &str, msg: &str| out.push((path.to_owned(), msg.to_owned()));
    if let Some(c) = hep.collector
        && (c.port() == 0 || c.ip().is_unspecified())
    {
        bad("hep.collector", "must be a concrete address and port");
    }
    if hep
        .password
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 256)
    {
        bad("hep.password", "must be 1-256 bytes");
    }
    if !(16..=1_000_000).contains(&hep.queue) {
        bad("hep.queue", "must be 16-1000000");
    }
    if hep.correlation_wait_ms > 5_000 {
        bad("hep.correlation_wait_ms", "must be 0-5000");
    }
    if hep.rtcp_report_s > 3_600 {
        bad("hep.rtcp_report_s", "must be 0-3600");
    }
    if !(4..=10_000).contains(&trace.max_messages_per_leg) {
        bad("trace.max_messages_per_leg", "must be 4-10000");
    }
    if !(256..=65_535).contains(&trace.max_message_bytes) {
        bad("trace.max_message_bytes", "must be 256-65535");
    }
    if !(1..=1_000_000).contains(&trace.max_legs) {
        bad("trace.max_legs", "must be 1-1000000");
    }
    if !(1..=4_096).contains(&trace.max_total_mib) {
        bad("trace.max_total_mib", "must be 1-4096");
    }
    if !(1..=86_400).contains(&trace.keep_s) {
        bad("trace.keep_s", "must be 1-86400");
    }
    if !(16..=1_000_000).contains(&trace.queue) {
        bad("trace.queue", "must be 16-1000000");
    }
    out
}
