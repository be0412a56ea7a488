//! Rate and concurrency limits: a token bucket (calls per second, requests per source) and the
//! call admission limits of a trunk or of the whole SBC. Time comes from the caller.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`. Starts full.
///
/// Integer arithmetic in millionths of a token, so a bucket behaves identically on every run
/// (simulated-time tests depend on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    /// Millionths of a token.
    micro: u64,
    last: Option<Instant>,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A bucket refilled at `rate` per second, holding at most `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            micro: u64::from(burst) * MICRO,
            last: None,
        }
    }

    /// The refill rate per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let cap = u64::from(self.burst) * MICRO;
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            // µs × tokens/s = millionths of a token; u128 so a long idle period cannot overflow.
            let add = elapsed.as_micros() * u128::from(self.rate);
            let add = u64::try_from(add).unwrap_or(u64::MAX);
            self.micro = self.micro.saturating_add(add).min(cap);
        }
        // Time never goes backwards for the bucket, whatever the caller passes.
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.micro >= MICRO {
            self.micro -= MICRO;
            true
        } else {
            false
        }
    }
}

/// Call admission limits of one scope (a trunk, or the whole SBC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallLimits {
    /// Most concurrent calls (None: unlimited).
    pub max_calls: Option<u32>,
    /// Most new calls per second, with a burst of one second's worth (None: unlimited).
    pub max_cps: Option<u32>,
}

impl CallLimits {
    /// The CPS bucket for these limits, if limited.
    pub fn bucket(&self) -> Option<TokenBucket> {
        self.max_cps.map(|r| TokenBucket::new(r, r))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 5);
        let taken = (0..10).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 5, "a full burst at once, no more");
        assert!(!b.try_take(t0 + Duration::from_millis(199)));
        assert!(b.try_take(t0 + Duration::from_millis(200)));
        // Over 10 s at 5/s: 50 more tokens, never more than the burst at a time.
        let mut ok = 0;
        for ms in (0..10_000).step_by(10) {
            if b.try_take(t0 + Duration::from_millis(200 + ms)) {
                ok += 1;
            }
        }
        assert!((49..=51).contains(&ok), "{ok}");
        // A long idle period refills to the burst only.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 5);
        // Time going backwards takes nothing and adds nothing.
        assert!(!b.try_take(t0));
    }

    #[test]
    fn zero_rate_never_refills() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 1);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(100)));
    }
}
