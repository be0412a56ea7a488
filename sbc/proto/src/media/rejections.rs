//! Offers the media layer refused, by reason: counted in the table (the call layer gets the
//! error itself and answers with its status), read by the runtime into
//! `sbc_media_rejected_total{reason}`.

use super::MediaError;

/// Every reason a verb refuses with, in the order of [`Rejections::counts`].
pub const REASONS: [&str; 7] = [
    "ports_exhausted",
    "trunk_quota",
    "stream_count",
    "address_family",
    "stream_mismatch",
    "unknown_session",
    "unavailable",
];

impl MediaError {
    /// The metric label of this refusal (one of [`REASONS`]).
    pub const fn reason(&self) -> &'static str {
        REASONS[self.reason_index()]
    }

    const fn reason_index(&self) -> usize {
        match self {
            MediaError::PortsExhausted(_) => 0,
            MediaError::QuotaExhausted(_) => 1,
            MediaError::StreamCount(_) => 2,
            MediaError::AddressFamily { .. } => 3,
            MediaError::StreamMismatch { .. } => 4,
            MediaError::UnknownSession(_) => 5,
            MediaError::Unavailable(_) => 6,
        }
    }
}

/// Cumulative refusals per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    counts: [u64; REASONS.len()],
}

impl Rejections {
    /// Counts `e`.
    pub fn count(&mut self, e: &MediaError) {
        let n = &mut self.counts[e.reason_index()];
        *n = n.saturating_add(1);
    }

    /// The counts, in the order of [`REASONS`].
    pub fn counts(&self) -> [u64; REASONS.len()] {
        self.counts
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Side;

    #[test]
    fn each_refusal_counts_under_its_reason() {
        let mut r = Rejections::default();
        r.count(&MediaError::PortsExhausted(Side::Inside));
        r.count(&MediaError::PortsExhausted(Side::Outside));
        r.count(&MediaError::Unavailable("x".into()));
        assert_eq!(r.counts(), [2, 0, 0, 0, 0, 0, 1]);
        assert_eq!(r.total(), 3);
        assert_eq!(
            MediaError::QuotaExhausted("c".into()).reason(),
            "trunk_quota"
        );
    }
}
