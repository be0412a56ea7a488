//! RFC 3261 §17 timers, and the small fixed table each transaction keeps them in.

use std::time::{Duration, Instant};

/// Timer values of RFC 3261 §17.1.1.1 (T1, T2, T4) and the proxy/B2BUA INVITE timeout (Timer C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip time estimate; base of timers A, B, E, F, G, H, J, L, M.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum duration a message remains in the network (timers I, K).
    pub t4: Duration,
    /// Timer C (RFC 3261 §16.6 item 11): give up on an INVITE that has had no final response.
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
        }
    }
}

impl TimerConfig {
    /// 64·T1: the transaction timeout (timers B, F, H, J, L, M).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// The timers of the four transaction state machines (RFC 3261 §17, RFC 6026 for L and M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE client: request retransmission (doubling).
    A,
    /// INVITE client: transaction timeout.
    B,
    /// INVITE client: no final response after a provisional (RFC 3261 §16.6).
    C,
    /// INVITE client: wait time for response retransmissions in Completed.
    D,
    /// Non-INVITE client: request retransmission (doubling, capped at T2).
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: final response retransmission.
    G,
    /// INVITE server: wait time for ACK receipt.
    H,
    /// INVITE server: wait time for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server: wait time for request retransmissions in Completed.
    J,
    /// Non-INVITE client: wait time for response retransmissions in Completed.
    K,
    /// INVITE server (RFC 6026): wait time for INVITE retransmissions after a 2xx.
    L,
    /// INVITE client (RFC 6026): wait time for 2xx retransmissions in Accepted.
    M,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 13] = [
        Timer::A,
        Timer::B,
        Timer::C,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of the armed timers of one transaction (a fixed array: no allocation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 13],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; 13];
    }

    /// Deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|t| self.deadlines[t.index()].is_some_and(|d| d <= now))
            .min_by_key(|t| self.deadlines[t.index()])?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_disarms() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.pop_expired(t0), None);
        let later = t0 + Duration::from_secs(40);
        assert_eq!(t.pop_expired(later), Some(Timer::A));
        assert_eq!(t.pop_expired(later), Some(Timer::B));
        assert_eq!(t.pop_expired(later), None);
        assert_eq!(t.next_timeout(), None);
    }
}
