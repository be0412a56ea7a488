//! Protection against floods from one source: a request budget per (side, source IP) (token
//! bucket), temporary bans for unknown sources that exceed it, a separate and higher budget for
//! configured peers, plus the User-Agent denylist check.
//!
//! Configured peers (the PBX on the inside, the trunk proxies on the outside; the caller says so
//! per message) get their own budget (`peer_rate`/`peer_burst`). Over it their new requests
//! are dropped but the peer is never banned: a misbehaving PBX is bounded without being cut off
//! from its own SBC for `ban` seconds. A peer's follow-ups (responses and in-dialog requests,
//! [`SourceGuard::check_follow_up`]) take from the same budget but are never dropped for it:
//! a peer flooding new calls sheds its new calls first, and the answers of the calls already
//! admitted (including the calls other peers place to it) still get through (the overload rule
//! of RFC 6357 §5: refuse new work before the work in progress). What a follow-up can cost is
//! bounded by the calls it belongs to, which the B2BUA's caps bound.
//!
//! Everything is keyed by (side, address). A source spoofing the PBX's address on the outside
//! is banned on the outside only; the PBX keeps talking on the inside (ban poisoning).
//!
//! State is bounded: at most `max_sources` budgets (idle ones forgotten first) and at most
//! `max_bans` bans (the least recently hit evicted first, counted). Expired bans are removed
//! in time order without scanning the table. Time comes from the caller.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{limit::TokenBucket, net::Side};

/// Limits of the source guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Sustained messages per second allowed from one unknown source (0: no rate limit and no
    /// bans for unknown sources).
    pub rate: u32,
    /// Messages a source may send at once above the rate.
    pub burst: u32,
    /// How long a source that exceeded its budget stays banned.
    pub ban: Duration,
    /// Most sources tracked at once; beyond, idle ones are forgotten first (a spoofed-source
    /// flood cannot exhaust memory).
    pub max_sources: usize,
    /// Sustained messages per second allowed from one configured peer (0: unlimited). Over
    /// it messages are dropped, never banned.
    pub peer_rate: u32,
    /// Messages a configured peer may send at once above `peer_rate`.
    pub peer_burst: u32,
    /// Most bans held at once; beyond, the least recently hit ban is lifted early (at least 1).
    pub max_bans: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            rate: 50,
            burst: 100,
            ban: Duration::from_secs(600),
            max_sources: 65_536,
            peer_rate: 2_000,
            peer_burst: 4_000,
            max_bans: 10_000,
        }
    }
}

/// What to do with a message from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screening {
    /// Within its budget: process it.
    Pass,
    /// The source is banned: drop the message without an answer.
    Banned,
    /// The source just exceeded its budget and is banned from now on: drop the message.
    NewBan,
    /// A configured peer over its budget: drop the message (no ban).
    OverBudget,
}

/// Where a message came from: the side it arrived on and the source IP (canonical).
pub type SourceKey = (Side, IpAddr);

/// One banned source, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// The side the source was banned on.
    pub side: Side,
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

#[derive(Debug, Clone)]
struct Ban {
    info: BanInfo,
    /// Position in `by_use` (larger = more recently hit).
    used: u64,
    /// Unique id, second half of the `by_expiry` key.
    id: u64,
}

/// Per-source rate limits and bans.
#[derive(Debug, Clone)]
pub struct SourceGuard {
    cfg: GuardConfig,
    sources: HashMap<SourceKey, Source>,
    peers: HashMap<SourceKey, TokenBucket>,
    bans: HashMap<SourceKey, Ban>,
    /// Bans by last hit, oldest first (LRU eviction).
    by_use: BTreeMap<u64, SourceKey>,
    /// Bans by end time (expiry without a scan).
    by_expiry: BTreeMap<(Instant, u64), SourceKey>,
    clock: u64,
    bans_total: u64,
    evicted_total: u64,
    /// Bans lifted early by eviction since the last [`SourceGuard::drain_evicted`].
    evicted: Vec<SourceKey>,
}

impl SourceGuard {
    /// A guard with `cfg` and no state.
    pub fn new(cfg: GuardConfig) -> Self {
        Self {
            cfg,
            sources: HashMap::new(),
            peers: HashMap::new(),
            bans: HashMap::new(),
            by_use: BTreeMap::new(),
            by_expiry: BTreeMap::new(),
            clock: 0,
            bans_total: 0,
            evicted_total: 0,
            evicted: Vec::new(),
        }
    }

    /// Replaces the limits; current bans stay until they expire (or are evicted if the new cap
    /// is lower), budgets restart.
    pub fn set_config(&mut self, cfg: GuardConfig) {
        if cfg != self.cfg {
            self.sources.clear();
            self.peers.clear();
        }
        self.cfg = cfg;
        while self.bans.len() > self.cfg.max_bans.max(1) {
            self.evict_one();
        }
    }

    /// Bans ever imposed.
    pub fn bans_total(&self) -> u64 {
        self.bans_total
    }

    /// Bans lifted early because the table was full.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// The bans lifted early by eviction since the last call (so a mirror of the ban table,
    /// e.g. the transport's admission view, can follow).
    pub fn drain_evicted(&mut self) -> Vec<SourceKey> {
        std::mem::take(&mut self.evicted)
    }

    /// Judges one message from `ip` on `side` at `now`; `peer` for configured peers of that
    /// side (their own budget, never banned).
    pub fn check(&mut self, now: Instant, side: Side, ip: IpAddr, peer: bool) -> Screening {
        let key = (side, ip.to_canonical());
        if self.banned(now, key) {
            return Screening::Banned;
        }
        if peer {
            if self.cfg.peer_rate == 0 {
                return Screening::Pass;
            }
            let (rate, burst) = (
                self.cfg.peer_rate,
                self.cfg.peer_rate.saturating_add(self.cfg.peer_burst),
            );
            // Bounded: only configured peers (a handful of addresses) are ever `peer`.
            let bucket = self
                .peers
                .entry(key)
                .or_insert_with(|| TokenBucket::new(rate, burst));
            return if bucket.try_take(now) {
                Screening::Pass
            } else {
                Screening::OverBudget
            };
        }
        if self.cfg.rate == 0 {
            return Screening::Pass;
        }
        if !self.sources.contains_key(&key) && self.sources.len() >= self.cfg.max_sources {
            self.evict_sources(now);
        }
        let (rate, burst) = (self.cfg.rate, self.cfg.rate.saturating_add(self.cfg.burst));
        let src = self.sources.entry(key).or_insert_with(|| Source {
            bucket: TokenBucket::new(rate, burst),
            last_seen: now,
        });
        src.last_seen = now;
        if src.bucket.try_take(now) {
            return Screening::Pass;
        }
        self.sources.remove(&key);
        self.insert_ban(now, key);
        Screening::NewBan
    }

    /// Judges one follow-up (a response, or a request inside a dialog) from `ip` on `side` at
    /// `now`. From a configured peer (`peer`) it takes a token from the peer's budget when one
    /// is left but always passes (unless banned): the budget sheds the peer's new requests,
    /// never the answers of calls in progress. From anyone else it is [`Self::check`]: an
    /// unknown source's every message counts toward its ban.
    pub fn check_follow_up(
        &mut self,
        now: Instant,
        side: Side,
        ip: IpAddr,
        peer: bool,
    ) -> Screening {
        if !peer {
            return self.check(now, side, ip, false);
        }
        let key = (side, ip.to_canonical());
        if self.banned(now, key) {
            return Screening::Banned;
        }
        if self.cfg.peer_rate > 0 {
            let (rate, burst) = (
                self.cfg.peer_rate,
                self.cfg.peer_rate.saturating_add(self.cfg.peer_burst),
            );
            // Charged, so the peer's new requests meet an emptier budget; the verdict is Pass
            // whatever the bucket says.
            let _ = self
                .peers
                .entry(key)
                .or_insert_with(|| TokenBucket::new(rate, burst))
                .try_take(now);
        }
        Screening::Pass
    }

    /// Whether `key` is banned at `now` (counted against the ban, which is marked recently
    /// used); an expired ban is lifted.
    fn banned(&mut self, now: Instant, key: SourceKey) -> bool {
        if let Some(b) = self.bans.get_mut(&key) {
            if now < b.info.until {
                b.info.dropped += 1;
                // Mark it recently used: a ban still being hit is the last one to evict.
                self.clock += 1;
                self.by_use.remove(&b.used);
                b.used = self.clock;
                self.by_use.insert(self.clock, key);
                return true;
            }
            self.remove_ban(&key);
        }
        false
    }

    /// Bans `ip` on `side` from `now` for the configured time because another signaling
    /// shard banned it (`crate::shard`): its messages are dropped here too. No verdict, so the
    /// ban is reported once, by the shard that decided it.
    pub fn ban(&mut self, now: Instant, side: Side, ip: IpAddr) {
        self.ban_for(now, side, ip, self.cfg.ban);
    }

    /// Bans `ip` on `side` from `now` for `length` because another node banned it (what is
    /// left of that ban); like [`ban`](Self::ban), no verdict. A ban already running here is
    /// left as it is.
    pub fn ban_for(&mut self, now: Instant, side: Side, ip: IpAddr, length: Duration) {
        let key = (side, ip.to_canonical());
        if self.bans.get(&key).is_some_and(|b| now < b.info.until) {
            return;
        }
        self.remove_ban(&key);
        self.sources.remove(&key);
        self.insert_ban_for(now, key, length);
        // Evicted to make room: the deciding shard reports its own evictions.
        self.evicted.clear();
    }

    fn insert_ban(&mut self, now: Instant, key: SourceKey) {
        self.insert_ban_for(now, key, self.cfg.ban);
    }

    fn insert_ban_for(&mut self, now: Instant, key: SourceKey, length: Duration) {
        if self.bans.len() >= self.cfg.max_bans.max(1) {
            self.expire(now);
        }
        while self.bans.len() >= self.cfg.max_bans.max(1) {
            self.evict_one();
        }
        self.clock += 1;
        let until = now + length;
        let ban = Ban {
            info: BanInfo {
                side: key.0,
                ip: key.1,
                since: now,
                until,
                dropped: 1,
            },
            used: self.clock,
            id: self.clock,
        };
        self.by_use.insert(self.clock, key);
        self.by_expiry.insert((until, self.clock), key);
        self.bans.insert(key, ban);
        self.bans_total += 1;
    }

    /// Lifts the least recently hit ban.
    fn evict_one(&mut self) {
        let Some((_, key)) = self.by_use.pop_first() else {
            return;
        };
        if let Some(b) = self.bans.remove(&key) {
            self.by_expiry.remove(&(b.info.until, b.id));
        }
        self.evicted_total += 1;
        self.evicted.push(key);
    }

    fn remove_ban(&mut self, key: &SourceKey) -> bool {
        let Some(b) = self.bans.remove(key) else {
            return false;
        };
        self.by_use.remove(&b.used);
        self.by_expiry.remove(&(b.info.until, b.id));
        true
    }

    /// Removes the bans that ended by `now`, in end-time order (cost: the expired ones only).
    pub fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(b) = self.bans.remove(&key) {
                self.by_use.remove(&b.used);
            }
        }
    }

    /// Bans in force (after [`SourceGuard::expire`]), without copying the table.
    pub fn active_bans(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.bans.len()
    }

    /// Forgets sources idle long enough to have a full bucket again (they lose nothing), and
    /// if that is not enough, the least recently seen half.
    fn evict_sources(&mut self, now: Instant) {
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

    /// Current bans (expired ones are removed first), oldest first. Built on request (the
    /// admin API); nothing periodic copies the table.
    pub fn bans(&mut self, now: Instant) -> Vec<BanInfo> {
        self.expire(now);
        let mut v: Vec<BanInfo> = self.bans.values().map(|b| b.info.clone()).collect();
        v.sort_by_key(|b| (b.since, b.ip));
        v
    }

    /// Lifts the bans of `ip` on both sides; returns the sides it was banned on.
    pub fn unban(&mut self, ip: IpAddr) -> Vec<Side> {
        let ip = ip.to_canonical();
        [Side::Inside, Side::Outside]
            .into_iter()
            .filter(|&side| self.remove_ban(&(side, ip)))
            .collect()
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

    const IN: Side = Side::Inside;
    const OUT: Side = Side::Outside;

    fn cfg() -> GuardConfig {
        GuardConfig {
            rate: 10,
            burst: 20,
            ban: Duration::from_secs(60),
            max_sources: 4,
            peer_rate: 100,
            peer_burst: 100,
            max_bans: 8,
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
    fn flood_is_banned_for_the_ban_time() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        let flood = ip("192.0.2.9");
        // rate + burst at once pass; the next one bans.
        let passed = (0..30)
            .filter(|_| g.check(t0, OUT, flood, false) == Screening::Pass)
            .count();
        assert_eq!(passed, 30);
        assert_eq!(g.check(t0, OUT, flood, false), Screening::NewBan);
        assert_eq!(g.check(t0, OUT, flood, false), Screening::Banned);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(g.check(later, OUT, flood, false), Screening::Banned);
        let bans = g.bans(later);
        assert_eq!(bans.len(), 1);
        assert_eq!((bans[0].side, bans[0].ip, bans[0].dropped), (OUT, flood, 3));
        assert_eq!(g.bans_total(), 1);
        // The ban expires; the source starts over with a full budget.
        let after = t0 + Duration::from_secs(60);
        assert_eq!(g.active_bans(after), 0);
        assert_eq!(g.check(after, OUT, flood, false), Screening::Pass);

        // A sustained rate within the limit is never banned.
        let steady = ip("192.0.2.10");
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 100);
            assert_eq!(
                g.check(at, OUT, steady, false),
                Screening::Pass,
                "message {i}"
            );
        }
    }

    #[test]
    fn a_configured_peer_has_a_bounded_budget_but_is_never_banned() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        let pbx = ip("10.0.0.10");
        // peer_rate + peer_burst = 200 at once; the rest of a 10k flood is dropped.
        let verdicts: Vec<Screening> = (0..10_000).map(|_| g.check(t0, IN, pbx, true)).collect();
        let passed = verdicts.iter().filter(|v| **v == Screening::Pass).count();
        assert_eq!(passed, 200);
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Screening::Pass | Screening::OverBudget))
        );
        assert_eq!(g.bans_total(), 0, "a configured peer is never banned");
        // One second later it has a second's worth of budget again.
        let later = t0 + Duration::from_secs(1);
        let passed = (0..1000)
            .filter(|_| g.check(later, IN, pbx, true) == Screening::Pass)
            .count();
        assert_eq!(passed, 100);
        // peer_rate 0: unlimited.
        let mut open = SourceGuard::new(GuardConfig {
            peer_rate: 0,
            ..cfg()
        });
        assert!((0..10_000).all(|_| open.check(t0, IN, pbx, true) == Screening::Pass));
    }

    #[test]
    fn a_peer_over_budget_sheds_new_requests_but_its_follow_ups_pass() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        let pbx = ip("10.0.0.10");
        // The PBX floods new requests: its 200 tokens go, the rest is shed.
        let passed = (0..1000)
            .filter(|_| g.check(t0, IN, pbx, true) == Screening::Pass)
            .count();
        assert_eq!(passed, 200);
        // Its answers and in-dialog requests of calls in progress still pass.
        assert!((0..1000).all(|_| g.check_follow_up(t0, IN, pbx, true) == Screening::Pass));
        // They took from the budget: a second later the refill went to them first.
        let later = t0 + Duration::from_secs(1);
        for _ in 0..60 {
            assert_eq!(g.check_follow_up(later, IN, pbx, true), Screening::Pass);
        }
        let passed = (0..1000)
            .filter(|_| g.check(later, IN, pbx, true) == Screening::Pass)
            .count();
        assert_eq!(passed, 40, "100 refilled, 60 taken by follow-ups");
        assert_eq!(g.bans_total(), 0);
        // An unknown source's follow-ups count toward its ban like anything it sends.
        let stranger = ip("192.0.2.77");
        let verdicts: Vec<Screening> = (0..40)
            .map(|_| g.check_follow_up(t0, OUT, stranger, false))
            .collect();
        assert!(verdicts.contains(&Screening::NewBan));
        assert_eq!(
            g.check_follow_up(t0, OUT, stranger, false),
            Screening::Banned
        );
    }

    #[test]
    fn bans_are_per_side_so_spoofing_the_pbx_outside_does_not_ban_it_inside() {
        let t0 = t0();
        let mut g = SourceGuard::new(cfg());
        // An inside host the PBX routes calls to (allowed inside, not a configured peer), and
        // the PBX itself: an outsider floods with both addresses as source on the outside.
        for victim in [ip("198.18.1.3"), ip("198.18.1.2")] {
            for _ in 0..40 {
                g.check(t0, OUT, victim, false);
            }
            assert_eq!(g.check(t0, OUT, victim, false), Screening::Banned);
            assert_eq!(g.check(t0, IN, victim, false), Screening::Pass);
            assert_eq!(g.check(t0, IN, victim, true), Screening::Pass);
        }
        assert!(g.bans(t0).iter().all(|b| b.side == OUT));
        // Unban lifts it wherever it is.
        assert_eq!(g.unban(ip("198.18.1.3")), vec![OUT]);
        assert!(g.unban(ip("198.18.1.3")).is_empty());
    }

    #[test]
    fn ban_table_is_capped_and_evicts_the_least_recently_hit() {
        let t0 = t0();
        let mut g = SourceGuard::new(GuardConfig { burst: 0, ..cfg() });
        let addr = |i: u32| IpAddr::from(u32::to_be_bytes(0xc000_0200 + i));
        let ban = |g: &mut SourceGuard, a: IpAddr, at: Instant| {
            for _ in 0..10 {
                g.check(at, OUT, a, false);
            }
            assert_eq!(g.check(at, OUT, a, false), Screening::NewBan);
        };
        for i in 0..8 {
            ban(&mut g, addr(i), t0 + Duration::from_millis(u64::from(i)));
        }
        // Source 0 keeps hitting its ban: it is the most recently used.
        assert_eq!(g.check(t0, OUT, addr(0), false), Screening::Banned);
        for i in 8..1000 {
            ban(&mut g, addr(i), t0 + Duration::from_millis(u64::from(i)));
            assert!(g.active_bans(t0) <= 8);
            assert_eq!(
                g.check(t0, OUT, addr(0), false),
                Screening::Banned,
                "the active flood stays banned"
            );
        }
        assert_eq!(g.evicted_total(), 992);
        let evicted = g.drain_evicted();
        assert_eq!(evicted.len(), 992);
        assert_eq!(evicted[0], (OUT, addr(1)), "least recently hit first");
        assert!(g.drain_evicted().is_empty());
        assert_eq!(g.bans_total(), 1000);
        // Lowering the cap evicts at once.
        g.set_config(GuardConfig {
            max_bans: 2,
            burst: 0,
            ..cfg()
        });
        assert_eq!(g.active_bans(t0), 2);
        // Expiry removes everything in time order.
        assert_eq!(g.active_bans(t0 + Duration::from_secs(3600)), 0);
        assert!(g.by_use.is_empty() && g.by_expiry.is_empty());
    }

    #[test]
    fn unban_and_ipv4_mapped_addresses() {
        let t0 = t0();
        let mut g = SourceGuard::new(GuardConfig { burst: 0, ..cfg() });
        let v4 = ip("192.0.2.9");
        let mapped = ip("::ffff:192.0.2.9");
        for _ in 0..10 {
            g.check(t0, OUT, mapped, false);
        }
        assert_eq!(
            g.check(t0, OUT, v4, false),
            Screening::NewBan,
            "one source, two spellings"
        );
        assert_eq!(g.unban(mapped), vec![OUT]);
        assert!(g.unban(v4).is_empty());
        assert_eq!(
            g.check(t0, OUT, v4, false),
            Screening::Pass,
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
                g.check(t0 + Duration::from_millis(u64::from(i)), OUT, a, false),
                Screening::Pass
            );
            assert!(g.sources.len() <= 4);
        }
        let mut off = SourceGuard::new(GuardConfig { rate: 0, ..cfg() });
        assert!((0..1000).all(|_| off.check(t0, OUT, ip("192.0.2.1"), false) == Screening::Pass));
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
