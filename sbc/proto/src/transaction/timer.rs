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

/// A transaction's copy of its [`TimerConfig`]: whole milliseconds in 16 bytes rather than
/// four `Duration`s in 64. Every live transaction keeps one, an answered call's two INVITE
/// transactions for Timer L/M's 32 s. The configuration sets these in whole milliseconds
/// (`[sip] t1_ms`, `t2_ms`, `t4_ms`, `timer_c_s`), so nothing is lost; a finer part is dropped,
/// and a value beyond `u32` milliseconds (49 days) is kept as that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timings {
    t1: u32,
    t2: u32,
    t4: u32,
    timer_c: u32,
}

impl From<TimerConfig> for Timings {
    fn from(c: TimerConfig) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Self {
            t1: ms(c.t1),
            t2: ms(c.t2),
            t4: ms(c.t4),
            timer_c: ms(c.timer_c),
        }
    }
}

impl Timings {
    /// T1.
    pub(crate) fn t1(self) -> Duration {
        Duration::from_millis(self.t1.into())
    }

    /// T2.
    pub(crate) fn t2(self) -> Duration {
        Duration::from_millis(self.t2.into())
    }

    /// T4.
    pub(crate) fn t4(self) -> Duration {
        Duration::from_millis(self.t4.into())
    }

    /// Timer C.
    pub(crate) fn timer_c(self) -> Duration {
        Duration::from_millis(self.timer_c.into())
    }

    /// 64·T1 ([`TimerConfig::timeout`]).
    pub(crate) fn timeout(self) -> Duration {
        self.t1().saturating_mul(64)
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

/// How many timers one machine arms at once, at most: three (INVITE client in Calling: A, B
/// and C), plus one spare.
const SLOTS: usize = 4;

/// Deadlines of the armed timers of one transaction (a fixed array: no allocation). A few
/// `(timer, deadline)` slots rather than one per RFC timer: every live transaction holds a
/// table, answered calls' INVITE transactions for 32 s, and 13 slots were 208 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    slots: [Option<(Timer, Instant)>; SLOTS],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        let slot = match self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(t, _)| t == timer))
        {
            Some(i) => i,
            None => match self.slots.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    // Unreachable: no machine arms more than `SLOTS - 1` timers. Should one
                    // ever, the latest deadline gives way, so that the earlier ones still fire.
                    debug_assert!(false, "more than {SLOTS} timers armed");
                    self.slots
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, s)| s.map(|(_, d)| d))
                        .map_or(0, |(i, _)| i)
                }
            },
        };
        self.slots[slot] = Some((timer, at));
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        for s in &mut self.slots {
            if s.is_some_and(|(t, _)| t == timer) {
                *s = None;
            }
        }
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.slots = [None; SLOTS];
    }

    /// Deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .find(|(t, _)| *t == timer)
            .map(|(_, d)| *d)
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(_, d)| *d).min()
    }

    /// Disarms and returns the earliest timer due at or before `now` (of timers due at the
    /// same instant, the first in [`Timer::ALL`] order).
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = self
            .slots
            .iter()
            .flatten()
            .filter(|(_, d)| *d <= now)
            .min_by_key(|(t, d)| (*d, t.index()))
            .copied()?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transactions_timings_are_the_configured_ones_in_16_bytes() {
        // Each transaction kept the whole `TimerConfig`, 64 bytes.
        let c = TimerConfig {
            t1: Duration::from_millis(250),
            t2: Duration::from_millis(4_000),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
        };
        let t = Timings::from(c);
        assert_eq!(
            (t.t1(), t.t2(), t.t4(), t.timer_c(), t.timeout()),
            (c.t1, c.t2, c.t4, c.timer_c, c.timeout())
        );
        assert_eq!(std::mem::size_of::<Timings>(), 16);
        let long = Timings::from(TimerConfig {
            timer_c: Duration::MAX,
            ..c
        });
        assert_eq!(long.timer_c(), Duration::from_millis(u32::MAX.into()));
    }

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

    #[test]
    fn the_busiest_machine_fits_and_the_table_is_small() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        // INVITE client in Calling, then re-armed as a CANCEL would.
        t.set(Timer::A, t0 + Duration::from_millis(500));
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::C, t0 + Duration::from_secs(180));
        t.set(Timer::B, t0 + Duration::from_secs(40));
        assert_eq!(t.get(Timer::B), Some(t0 + Duration::from_secs(40)));
        t.stop(Timer::A);
        assert_eq!(t.get(Timer::A), None);
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(40)));
        // Same deadline: table order.
        t.set(Timer::A, t0 + Duration::from_secs(180));
        let later = t0 + Duration::from_secs(200);
        assert_eq!(t.pop_expired(later), Some(Timer::B));
        assert_eq!(t.pop_expired(later), Some(Timer::A));
        assert_eq!(t.pop_expired(later), Some(Timer::C));
        assert!(
            std::mem::size_of::<TimerTable>() <= 96,
            "13 slots were 208 bytes"
        );
    }
}
