//! Metrics of the graceful drain (`sbc_proto::sbc::DrainState`).

use prometheus::{IntCounter, IntGauge, Registry};

/// Whether the SBC drains, and what the drain ended.
#[derive(Debug, Clone)]
pub struct DrainMetrics {
    /// 1 from the start of a drain (SIGTERM, `POST /api/v1/drain`) until the process exits.
    pub draining: IntGauge,
    /// Calls the drain ended with BYE (or CANCEL/487) because they outlasted its timeout.
    pub calls_ended: IntCounter,
}

impl DrainMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            draining: IntGauge::new(
                "sbc_draining",
                "1 while the SBC drains: new calls and OPTIONS get 503, calls in progress go on \
                 until [general] drain_timeout_s.",
            )?,
            calls_ended: IntCounter::new(
                "sbc_drain_calls_ended_total",
                "Calls ended by the drain (BYE on both legs, CANCEL/487 before the answer) \
                 because they outlasted its timeout or a second stop signal came.",
            )?,
        };
        registry.register(Box::new(m.draining.clone()))?;
        registry.register(Box::new(m.calls_ended.clone()))?;
        Ok(m)
    }
}
