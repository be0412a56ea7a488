//! Last activity of a session, for the media timeout.

use std::time::{Duration, Instant};

/// When media last flowed in a session (either direction, userspace or fast path).
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    last: Instant,
}

impl Activity {
    /// Activity starting at `now` (a fresh call gets the full timeout).
    pub fn new(now: Instant) -> Self {
        Self { last: now }
    }

    /// Records a packet seen at `at` (ignores older times).
    pub fn observe(&mut self, at: Instant) {
        if at > self.last {
            self.last = at;
        }
    }

    /// Whether `limit` has passed without activity at `now`.
    pub fn expired(&self, now: Instant, limit: Option<Duration>) -> bool {
        limit.is_some_and(|l| now.saturating_duration_since(self.last) >= l)
    }

    /// Time since the last activity.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_the_limit_and_ignores_older_observations() {
        let t0 = crate::media::test_origin();
        let mut a = Activity::new(t0);
        let s = Duration::from_secs;
        assert!(!a.expired(t0 + s(59), Some(s(60))));
        assert!(a.expired(t0 + s(60), Some(s(60))));
        assert!(!a.expired(t0 + s(600), None), "disabled");
        a.observe(t0 + s(30));
        a.observe(t0 + s(10));
        assert_eq!(a.idle(t0 + s(40)), s(10));
    }
}
