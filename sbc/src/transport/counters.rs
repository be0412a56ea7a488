//! Metric handles of one (side, transport) pair, resolved once so the per-packet path does
//! not look labels up.

use prometheus::{Histogram, IntCounter, IntGauge};
use sbc_proto::net::{Side, TransportKind};

use super::{DropReason, SendError};
use crate::metrics::Metrics;

/// Counters for one side and transport.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    side: Side,
    transport: TransportKind,
    metrics: Metrics,
    pub(crate) received: IntCounter,
    pub(crate) received_bytes: IntCounter,
    pub(crate) sent: IntCounter,
    pub(crate) sent_bytes: IntCounter,
    pub(crate) keepalives: IntCounter,
    pub(crate) connections: IntGauge,
    /// Kernel arrival to read (UDP).
    pub(crate) receive_wait: Histogram,
}

impl Counters {
    pub(crate) fn new(metrics: &Metrics, side: Side, transport: TransportKind) -> Self {
        let labels = [side.as_str(), transport.as_str()];
        Self {
            side,
            transport,
            received: metrics.sip_received.with_label_values(&labels),
            received_bytes: metrics.sip_received_bytes.with_label_values(&labels),
            sent: metrics.sip_sent.with_label_values(&labels),
            sent_bytes: metrics.sip_sent_bytes.with_label_values(&labels),
            keepalives: metrics.sip_keepalives.with_label_values(&labels),
            connections: metrics.sip_connections.with_label_values(&labels),
            receive_wait: metrics.sip_receive_wait.with_label_values(&[side.as_str()]),
            metrics: metrics.clone(),
        }
    }

    /// Counts dropped input. Logged at debug only: a flood of garbage must not flood logs.
    pub(crate) fn dropped(&self, reason: DropReason) {
        self.metrics
            .sip_dropped
            .with_label_values(&[self.side.as_str(), self.transport.as_str(), reason.as_str()])
            .inc();
    }

    /// Counts a stateless error response. Codes come from `Problem::status`, a fixed set, so
    /// the label stays bounded.
    pub(crate) fn rejected(&self, code: u16) {
        self.metrics
            .sip_rejected
            .with_label_values(&[
                self.side.as_str(),
                self.transport.as_str(),
                &code.to_string(),
            ])
            .inc();
    }

    /// Counts a failed send.
    pub(crate) fn send_error(&self, error: &SendError) {
        self.metrics
            .sip_send_errors
            .with_label_values(&[self.side.as_str(), self.transport.as_str(), error.reason()])
            .inc();
    }

    /// Counts a failed send noticed after `send` returned (connect failure, connection lost
    /// with messages queued); `reason` is one of a fixed set of literals.
    pub(crate) fn send_failure(&self, reason: &'static str) {
        self.metrics
            .sip_send_errors
            .with_label_values(&[self.side.as_str(), self.transport.as_str(), reason])
            .inc();
    }

    /// Counts a message handed to the network.
    pub(crate) fn sent(&self, len: usize) {
        self.sent.inc();
        self.sent_bytes.inc_by(len as u64);
    }
}
