//! Protection against floods from one source: a request budget per source IP (token bucket)
//! and temporary bans for sources that exceed it, plus the User-Agent denylist check.
//!
//! Configured peers (the PBX, the trunk proxies) are exempt: the caller says so per message, so
//! a misbehaving PBX is never cut off by its own SBC — overload toward the carrier is what call
//! admission control is for. Time comes from the caller; state is bounded (`max_sources`).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::limit::TokenBucket;

/// Limits of the source guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Sustained messages per second allowed from one source (0: no rate limit, no bans).
    pub rate: u32,
    /// Messages a source may send at once above the rate.
    pub burst: u32,
    /// How long a source that exceeded its budget stays banned.
    pub ban: Duration,
    /// Most sources tracked at once; beyond, idle ones are forgotten first (a spoofed-source
    /// flood cannot exhaust memory).
    pub max_sources: usize,
}

/// What to do with a message from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within its budget (or exempt): process it.
    Pass,
    /// The source is banned: drop the message without an answer.
    Banned,
    /// The source just exceeded its budget and is banned from now on: drop the message.
    NewBan,
}

/// One banned source, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// The source address.
    pub ip: IpAddr,
    /// When the ban started.
    pub since: Instant,
    /// When it ends.
    pub until: Instant,
    /// Messages dropped because of it.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Source {
    bucket: TokenBucket,
    last_seen: Instant,
}

/// Per-source rate limits and bans.
#[derive(Debug, Clone)]
pub struct SourceGuard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    bans: HashMap<IpAddr, BanInfo>,
    bans_total: u64,
}

impl SourceGuard {
    /// A guard with `cfg` and no state.
    pub fn new(cfg: GuardConfig) -> Self {
        Self {
            cfg,
            sources: HashMap::new(),
            bans: HashMap::new(),
            bans_total: 0,
        }
    }

    /// Replaces the limits; current bans stay until they expire, budgets restart.
    pub fn set_config(&mut self, cfg: GuardConfig) {
        if cfg != self.cfg {
            self.sources.clear();
        }
        self.cfg = cfg;
    }

    /// Bans ever imposed.
    pub fn bans_total(&self) -> u64 {
        self.bans_total
    }

    /// Judges one message from `ip` at `now`; `exempt` for configured peers.
    pub fn check(&mut self, now: Instant, ip: IpAddr, exempt: bool) -> Verdict {
        let ip = ip.to_canonical();
        if let Some(b) = self.bans.get_mut(&ip) {
            if now < b.until {
                b.dropped += 1;
                return Verdict::Banned;
            }
            self.bans.remove(&ip);
        }
        if exempt || self.cfg.rate == 0 {
            return Verdict::Pass;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.cfg.max_sources {
            self.evict(now);
        }
        let (rate, burst) = (self.cfg.rate, self.cfg.rate.saturating_add(self.cfg.burst));
        let src = self.sources.entry(ip).or_insert_with(|| Source {
            bucket: TokenBucket::new(rate, burst),
            last_seen: now,
        });
        src.last_seen = now;
        if src.bucket.try_take(now) {
            return Verdict::Pass;
        }
        self.sources.remove(&ip);
        self.bans.insert(
            ip,
            BanInfo {
                ip,
                since: now,
                until: now + self.cfg.ban,
                dropped: 1,
            },
        );
        self.bans_total += 1;
        Verdict::NewBan
    }

    /// Forgets sources idle long enough to have a full bucket again (they lose nothing), and
    /// if that is not enough, the least recently seen half.
    fn evict(&mut self, now: Instant) {
        let refill = Duration::from_secs(
            u64::from(self.cfg.rate.saturating_add(self.cfg.burst))
                / u64::from(self.cfg.rate.max(1))
                + 1,
        );
        self.sources
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < refill);
        if self.sources.len() >= self.cfg.max_sources {
            let mut seen: Vec<Instant> = self.sources.values().map(|s| s.last_seen).collect();
            seen.sort_unstable();
            if let Some(&cut) = seen.get(seen.len() / 2) {
                self.sources.retain(|_, s| s.last_seen > cut);
            }
        }
    }

    /// Current bans (expired ones are removed first), oldest first.
    pub fn bans(&mut self, now: Instant) -> Vec<BanInfo> {
        self.bans.retain(|_, b| now < b.until);
        let mut v: Vec<BanInfo> = self.bans.values().cloned().collect();
        v.sort_by_key(|b| (b.since, b.ip));
        v
    }

    /// Lifts the ban of `ip`; false if it was not banned.
    pub fn unban(&mut self, ip: IpAddr) -> bool {
        self.bans.remove(&ip.to_canonical()).is_some()
    }
}

/// Whether a `User-Agent` (or `Server`) value contains one of the `deny` patterns, compared
/// ASCII case-insensitively (scanners vary the case: `friendly-scanner`, `SIPVicious`).
pub fn user_agent_denied(user_agent: &str, deny: &[String]) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    deny.iter()
        .any(|d| !d.is_empty() && ua.contains(&d.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuardConfig {
        GuardConfig {
            rate: 10,
            burst: 20,
            ban: Duration::from_secs(60),
            max_sources: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "test origin only; time is simulated"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn flood_is_banned_for_the_ban_time_and_exempt_peers_never() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        let flood = ip("192.0.2.9");
        // rate + burst at once pass; the next one bans.
        let passed = (0..30)
            .filter(|_| g.check(t0, flood, false) == Verdict::Pass)
            .count();
        assert_eq!(passed, 30);
        assert_eq!(g.check(t0, flood, false), Verdict::NewBan);
        assert_eq!(g.check(t0, flood, false), Verdict::Banned);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(g.check(later, flood, false), Verdict::Banned);
        let bans = g.bans(later);
        assert_eq!(bans.len(), 1);
        assert_eq!((bans[0].ip, bans[0].dropped), (flood, 3));
        assert_eq!(g.bans_total(), 1);
        // The ban expires; the source starts over with a full budget.
        let after = t0 + Duration::from_secs(60);
        assert_eq!(g.check(after, flood, false), Verdict::Pass);
        assert!(g.bans(after).is_empty());

        // An exempt peer (the PBX) sending far more is never limited.
        let pbx = ip("10.0.0.10");
        assert!((0..10_000).all(|_| g.check(t0, pbx, true) == Verdict::Pass));

        // A sustained rate within the limit is never banned.
        let steady = ip("192.0.2.10");
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 100);
            assert_eq!(g.check(at, steady, false), Verdict::Pass, "message {i}");
        }
    }

    #[test]
    fn unban_and_ipv4_mapped_addresses() {
        let t0 = t0();
        let mut g = SourceGuard::new(GuardConfig { burst: 0, ..cfg() });
        let v4 = ip("192.0.2.9");
        let mapped = ip("::ffff:192.0.2.9");
        for _ in 0..10 {
            g.check(t0, mapped, false);
        }
        assert_eq!(
            g.check(t0, v4, false),
            Verdict::NewBan,
            "one source, two spellings"
        );
        assert!(g.unban(mapped));
        assert!(!g.unban(v4));
        assert_eq!(
            g.check(t0, v4, false),
            Verdict::Pass,
            "a lifted ban starts afresh"
        );
    }

    #[test]
    fn tracked_sources_are_bounded_and_zero_rate_disables() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        for i in 0..1000u32 {
            let a = IpAddr::from(u32::to_be_bytes(0xc000_0200 + i));
            assert_eq!(
                g.check(t0 + Duration::from_millis(u64::from(i)), a, false),
                Verdict::Pass
            );
            assert!(g.sources.len() <= 4);
        }
        let mut off = SourceGuard::new(GuardConfig { rate: 0, ..cfg() });
        assert!((0..1000).all(|_| off.check(t0, ip("192.0.2.1"), false) == Verdict::Pass));
    }

    #[test]
    fn user_agent_denylist() {
        let deny = vec![
            "friendly-scanner".to_owned(),
            "SIPVicious".to_owned(),
            String::new(),
        ];
        for (ua, denied) in [
            ("friendly-scanner", true),
            ("Friendly-Scanner 1.0", true),
            ("sipvicious/0.3", true),
            ("Asterisk PBX 20.1", false),
            ("", false),
        ] {
            assert_eq!(user_agent_denied(ua, &deny), denied, "{ua}");
        }
    }
}
