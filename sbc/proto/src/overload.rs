//! Overload control by queueing delay: refuse new calls while a standing queue of new
//! requests waits in front of the core, instead of letting it grow until every call times out.
//!
//! # Why delay, not queue length or CPU
//! A SIP client retransmits an unanswered INVITE after T1 (500 ms) and again at 1 s, 2 s, …
//! (RFC 3261 §17.1.1.2). Once the SBC takes longer than that to reach a new INVITE, every
//! call it admits has already been sent twice, the retransmissions queue behind it, and the
//! work per call doubles just when there is least room: the throughput collapses instead of
//! levelling off (RFC 6357 §3; measured here with the SBC held to 40 % of a core: 3,000 or
//! 4,000 calls/s for 20 s left it still working off its backlog 100 s later, where with this
//! rule it completed 1,800-2,300 calls/s and refused the rest at once). The time a message
//! waited is the signal that says this directly, whatever the machine, the message mix or
//! the queue's size. The runtime measures it from the datagram's arrival at the socket (the
//! kernel's timestamp), so a backlog counts whether it builds in the socket or in the shard.
//!
//! # The rule (CoDel's standing-queue test, RFC 8289 §3, applied to admission)
//! Every request that starts something (a request without To tag: the shard's lane for new
//! requests) is observed with the time it waited. A wait below `target` means the queue drains: no
//! shedding. Waits at or above `target` without a break for `interval` mean a standing queue:
//! from then on, until a request waits less than `target` again, new calls are refused with
//! a stateless 503 (cheap: no transaction, no media, no state), so the queue drains at the
//! rate refusals cost rather than at the rate calls cost. A burst that the core works off
//! within `interval` sheds nothing. Calls already admitted are never touched: their answers
//! and in-dialog requests are neither observed nor refused, and an INVITE retransmission or
//! a CANCEL still reaches its transaction.
//!
//! The 503 carries no Retry-After: one would make an RFC 3263 client take the whole SBC out
//! of its rotation for that long (RFC 3261 §21.5.4), the on/off oscillation RFC 6357 §5
//! warns about. Without it, the refused call fails over or is retried, and the SBC goes on
//! serving every call it has room for.

use std::time::{Duration, Instant};

/// The overload rule's parameters (`[limits] queue_delay_target_ms`, `queue_delay_interval_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadConfig {
    /// A new request that waited this long or longer counts as queued behind a standing
    /// queue. Zero: overload control is off (new calls wait however long it takes).
    pub target: Duration,
    /// How long waits must stay at or above `target`, without a break, before new calls are
    /// refused.
    pub interval: Duration,
}

impl Default for OverloadConfig {
    /// 200 ms / 500 ms, measured (an SBC held to 40 % of a core, 4,000 calls/s offered for
    /// 20 s, 80,000 calls; completed calls and the caller's INVITE retransmissions):
    /// 50/100 ms 34,452 and 3,702; 100/300 36,237 and 1,140; 150/500 43,936 and 195; 200/500
    /// 46,075 and 194; 300/500 31,512 and 122,130 (the admitted calls' 100 Trying came after
    /// T1); off: unfinished after 100 s. The target stays below T1/2 because the wait before
    /// the SBC's 100 Trying is not all of the caller's (the network and its own queues add);
    /// the interval is T1: a queue that stands for a whole retransmission period is no burst.
    fn default() -> Self {
        Self {
            target: Duration::from_millis(200),
            interval: Duration::from_millis(500),
        }
    }
}

/// The detector: fed with the wait of every new request, says whether new calls are refused.
#[derive(Debug, Clone, Default)]
pub struct Overload {
    cfg: OverloadConfig,
    /// When the current run of waits at or above the target began.
    above_since: Option<Instant>,
    /// New calls are refused (a standing queue was seen and has not drained yet).
    shedding: bool,
}

impl Overload {
    /// A detector with `cfg`, not shedding.
    pub fn new(cfg: OverloadConfig) -> Self {
        Self {
            cfg,
            above_since: None,
            shedding: false,
        }
    }

    /// New parameters (a reconfiguration); the current run of waits counts on.
    pub fn set_config(&mut self, cfg: OverloadConfig) {
        self.cfg = cfg;
        if cfg.target.is_zero() {
            self.above_since = None;
            self.shedding = false;
        }
    }

    /// A new request taken up at `now` after waiting `waited`. True when a new call among
    /// such requests is to be refused.
    pub fn observe(&mut self, now: Instant, waited: Duration) -> bool {
        if self.cfg.target.is_zero() || waited < self.cfg.target {
            self.above_since = None;
            self.shedding = false;
            return false;
        }
        let since = *self.above_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.cfg.interval {
            self.shedding = true;
        }
        self.shedding
    }

    /// Whether new calls are being refused.
    pub fn shedding(&self) -> bool {
        self.shedding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A 50-ms target and a 100-ms interval (the rule, not the defaults, is under test).
    fn detector() -> (Overload, Instant) {
        let cfg = OverloadConfig {
            target: MS * 50,
            interval: MS * 100,
        };
        (Overload::new(cfg), crate::test_origin())
    }

    #[test]
    fn short_waits_never_shed() {
        let (mut o, t0) = detector();
        for i in 0..10_000u32 {
            assert!(!o.observe(t0 + MS * i, MS * 49));
        }
        assert!(!o.shedding());
    }

    #[test]
    fn a_burst_worked_off_within_the_interval_sheds_nothing() {
        let (mut o, t0) = detector();
        // 90 ms of waits above the target, then the queue is through.
        for i in 0..90u32 {
            assert!(!o.observe(t0 + MS * i, MS * 200), "shed at {i} ms");
        }
        assert!(!o.observe(t0 + MS * 90, MS * 10));
        // A second burst starts its own interval.
        for i in 91..180u32 {
            assert!(!o.observe(t0 + MS * i, MS * 60), "shed at {i} ms");
        }
    }

    #[test]
    fn a_standing_queue_sheds_after_the_interval_until_a_wait_is_short_again() {
        let (mut o, t0) = detector();
        assert!(!o.observe(t0, MS * 50));
        assert!(!o.observe(t0 + MS * 99, MS * 80));
        assert!(o.observe(t0 + MS * 100, MS * 80));
        assert!(o.shedding());
        // Shedding holds while waits stay at the target or above.
        assert!(o.observe(t0 + MS * 150, MS * 50));
        // One short wait: the queue has drained.
        assert!(!o.observe(t0 + MS * 151, MS * 2));
        assert!(!o.shedding());
        // Back above: a full interval again before shedding.
        assert!(!o.observe(t0 + MS * 152, MS * 70));
        assert!(!o.observe(t0 + MS * 251, MS * 70));
        assert!(o.observe(t0 + MS * 252, MS * 70));
    }

    #[test]
    fn a_zero_target_turns_it_off() {
        let mut o = Overload::new(OverloadConfig {
            target: Duration::ZERO,
            interval: Duration::ZERO,
        });
        let t0 = crate::test_origin();
        for i in 0..1000u32 {
            assert!(!o.observe(t0 + MS * i, Duration::from_secs(10)));
        }
    }

    #[test]
    fn turning_it_off_while_shedding_stops_at_once() {
        let (mut o, t0) = detector();
        o.observe(t0, MS * 500);
        assert!(o.observe(t0 + MS * 100, MS * 500));
        o.set_config(OverloadConfig {
            target: Duration::ZERO,
            interval: MS * 100,
        });
        assert!(!o.shedding());
        assert!(!o.observe(t0 + MS * 101, MS * 500));
    }
}
