//! Trunk proxies given by DNS name (RFC 3263 §4.2): SRV by transport with RFC 2782 ordering,
//! A/AAAA fallback, re-resolution by TTL, and the hand-over of the addresses to the signaling
//! task. Only the runtime does DNS; the sans-I/O core gets the answers
//! (`Sbc::handle_dns`). This module does not know the signaling driver: the task hands its
//! answers to any [`ResolvedSink`].

mod error;
mod resolve;
mod resolved;
pub mod srv;
mod task;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use prometheus::{IntCounterVec, Opts, Registry};

pub use error::{LookupError, SetupError};
pub use resolve::{Resolution, Resolver, default_port, srv_prefix};
pub use resolved::Resolved;
pub use task::{DnsTrunk, DnsTrunks, ResolvedSink, run};

/// DNS metrics (labels bounded by the configured trunk names and a fixed result set).
#[derive(Debug, Clone)]
pub struct DnsMetrics {
    /// Lookups of trunk proxies, by trunk and result (`ok`, `no_records`, `not_available`,
    /// `timeout`, `error`).
    pub lookups: IntCounterVec,
}

impl DnsMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "sbc_dns_lookups_total",
                "DNS lookups of trunk proxies given by name, by trunk and result.",
            ),
            &["trunk", "result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Self { lookups })
    }

    fn count(&self, trunk: &str, result: &str) {
        self.lookups.with_label_values(&[trunk, result]).inc();
    }
}
