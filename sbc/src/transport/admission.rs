//! Who may open a stream connection, and who may get a stateless reply: the admission view
//! the signaling side keeps up to date (ACL, denylist, bans) and the transport consults at
//! accept, before any TLS handshake, and before answering anything statelessly.
//!
//! The ACL and denylist are an immutable snapshot swapped atomically (`arc-swap`): readers
//! never take a lock. Bans change one at a time (a flood creates them at packet rate), so they
//! are a bounded map behind a mutex that is touched only at accept and on the stateless-reply
//! path, never for a well-formed message on an established connection.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use parking_lot::Mutex;
use sbc_proto::{limit::TokenBucket, net::Side, sbc::Acl};

use super::DropReason;

/// The allowlists and the denylist, per side, as the signaling ACL has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// `None`: every source is allowed on the inside (tests). Else `[pbx] allow`.
    pub inside: Option<Vec<IpNet>>,
    /// `None`: every source is allowed on the outside (tests). Else the trunk proxies'
    /// addresses (configured and resolved), canonical.
    pub outside: Option<Vec<IpAddr>>,
    /// `[limits] deny`: refused on both sides, before anything else.
    pub deny: Vec<IpNet>,
}

impl From<&Acl> for AdmissionPolicy {
    /// The core's ACL as the transport checks it at accept and before a stateless reply: the
    /// same allowlists and denylist as the receive path.
    fn from(acl: &Acl) -> Self {
        Self {
            inside: Some(acl.inside().to_vec()),
            outside: Some(acl.outside().collect()),
            deny: acl.deny().to_vec(),
        }
    }
}

impl AdmissionPolicy {
    /// Admits every source (no ACL); the default of a bare [`super::TransportConfig`].
    pub fn allow_all() -> Self {
        Self {
            inside: None,
            outside: None,
            deny: Vec::new(),
        }
    }

    /// Why a source is not admitted on `side`, if it is not.
    pub fn refusal(&self, side: Side, ip: IpAddr) -> Option<DropReason> {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Some(DropReason::Denied);
        }
        let allowed = match side {
            Side::Inside => self
                .inside
                .as_ref()
                .is_none_or(|nets| nets.iter().any(|n| n.contains(&ip))),
            Side::Outside => self
                .outside
                .as_ref()
                .is_none_or(|addrs| addrs.iter().any(|a| a.to_canonical() == ip)),
        };
        (!allowed).then_some(DropReason::NotAllowed)
    }
}

/// Limits of stateless replies (`[limits] stateless_reply_rate` / `_burst`), per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Replies per second per side (0: none at all).
    pub rate: u32,
    /// Replies at once above the rate.
    pub burst: u32,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            rate: 20,
            burst: 40,
        }
    }
}

/// The shared admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    policy: ArcSwap<AdmissionPolicy>,
    /// (side, canonical IP) → end of the ban.
    bans: Mutex<HashMap<(Side, IpAddr), Instant>>,
    max_bans: usize,
    replies: [Mutex<TokenBucket>; 2],
    reply_limits: ReplyLimits,
}

impl Admission {
    pub(crate) fn new(policy: AdmissionPolicy, max_bans: usize, replies: ReplyLimits) -> Self {
        let bucket = || {
            Mutex::new(TokenBucket::new(
                replies.rate,
                replies.rate.saturating_add(replies.burst),
            ))
        };
        Self {
            policy: ArcSwap::from_pointee(policy),
            bans: Mutex::new(HashMap::new()),
            max_bans: max_bans.max(1),
            replies: [bucket(), bucket()],
            reply_limits: replies,
        }
    }

    /// The current policy (a lock-free load).
    pub(crate) fn policy(&self) -> Arc<AdmissionPolicy> {
        self.policy.load_full()
    }

    /// Replaces the policy.
    pub(crate) fn set_policy(&self, policy: AdmissionPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// Why a connection from `ip` on `side` is refused at `now`, if it is: denylist, ACL,
    /// then bans.
    pub(crate) fn refusal(&self, side: Side, ip: IpAddr, now: Instant) -> Option<DropReason> {
        if let Some(r) = self.policy.load().refusal(side, ip) {
            return Some(r);
        }
        self.banned(side, ip, now).then_some(DropReason::Banned)
    }

    fn banned(&self, side: Side, ip: IpAddr, now: Instant) -> bool {
        let key = (side, ip.to_canonical());
        let mut bans = self.bans.lock();
        match bans.get(&key) {
            Some(&until) if now < until => true,
            Some(_) => {
                bans.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Records a ban of `ip` on `side` for `length`. Bounded: when full, expired bans go
    /// first, then the one ending soonest (the signaling side's own table evicts by LRU and
    /// reports it through [`Admission::unban`]).
    pub(crate) fn ban(&self, side: Side, ip: IpAddr, now: Instant, length: Duration) {
        let mut bans = self.bans.lock();
        if bans.len() >= self.max_bans {
            bans.retain(|_, until| now < *until);
        }
        if bans.len() >= self.max_bans
            && let Some(first) = bans
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| *k)
        {
            bans.remove(&first);
        }
        bans.insert((side, ip.to_canonical()), now + length);
    }

    /// Lifts a ban.
    pub(crate) fn unban(&self, side: Side, ip: IpAddr) {
        self.bans.lock().remove(&(side, ip.to_canonical()));
    }

    /// Whether a stateless reply may go to `ip` on `side` now: only to admitted sources, and
    /// within the side's reply budget. `Err` says why not (for the metric).
    pub(crate) fn may_reply(&self, side: Side, ip: IpAddr, now: Instant) -> Result<(), DropReason> {
        if self.refusal(side, ip, now).is_some() {
            return Err(DropReason::ReplyNotAllowed);
        }
        if self.reply_limits.rate == 0 {
            return Err(DropReason::ReplyRateLimited);
        }
        let i = match side {
            Side::Inside => 0,
            Side::Outside => 1,
        };
        if self.replies[i].lock().try_take(now) {
            Ok(())
        } else {
            Err(DropReason::ReplyRateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy {
            inside: Some(vec!["198.18.1.0/24".parse().expect("literal")]),
            outside: Some(vec![ip("198.18.2.2")]),
            deny: vec!["198.18.1.66/32".parse().expect("literal")],
        }
    }

    #[test]
    fn acl_per_side_then_deny_then_bans() {
        let now = Instant::now();
        let a = Admission::new(policy(), 4, ReplyLimits::default());
        let r = |side, s: &str| a.refusal(side, ip(s), now);
        assert_eq!(r(Side::Inside, "198.18.1.2"), None);
        assert_eq!(r(Side::Inside, "::ffff:198.18.1.2"), None, "mapped v4");
        assert_eq!(r(Side::Inside, "198.18.3.2"), Some(DropReason::NotAllowed));
        assert_eq!(r(Side::Inside, "198.18.1.66"), Some(DropReason::Denied));
        assert_eq!(r(Side::Outside, "198.18.2.2"), None);
        // The PBX's address is not a trunk: refused on the outside.
        assert_eq!(r(Side::Outside, "198.18.1.2"), Some(DropReason::NotAllowed));
        assert_eq!(r(Side::Outside, "198.18.2.3"), Some(DropReason::NotAllowed));

        a.ban(Side::Inside, ip("198.18.1.2"), now, Duration::from_secs(60));
        assert_eq!(r(Side::Inside, "198.18.1.2"), Some(DropReason::Banned));
        // Keyed by side.
        a.ban(
            Side::Outside,
            ip("198.18.2.2"),
            now,
            Duration::from_secs(60),
        );
        a.unban(Side::Outside, ip("198.18.2.2"));
        assert_eq!(r(Side::Outside, "198.18.2.2"), None);
        // A ban ends by itself.
        let later = now + Duration::from_secs(61);
        assert_eq!(a.refusal(Side::Inside, ip("198.18.1.2"), later), None);

        // A live ACL change applies to the next check.
        a.set_policy(AdmissionPolicy {
            inside: Some(vec!["198.18.3.0/24".parse().expect("literal")]),
            ..policy()
        });
        assert_eq!(r(Side::Inside, "198.18.3.2"), None);
        assert_eq!(r(Side::Inside, "198.18.1.2"), Some(DropReason::NotAllowed));
        let open = AdmissionPolicy::allow_all();
        assert_eq!(open.refusal(Side::Outside, ip("203.0.113.1")), None);
    }

    #[test]
    fn ban_mirror_is_bounded() {
        let now = Instant::now();
        let a = Admission::new(policy(), 4, ReplyLimits::default());
        for i in 0..100u32 {
            let at = now + Duration::from_millis(u64::from(i));
            a.ban(
                Side::Outside,
                IpAddr::from(u32::to_be_bytes(0xc000_0200 + i)),
                at,
                Duration::from_secs(60),
            );
            assert!(a.bans.lock().len() <= 4);
        }
        // The newest stay.
        let newest = IpAddr::from(u32::to_be_bytes(0xc000_0200 + 99));
        assert_eq!(
            a.refusal(Side::Outside, newest, now),
            Some(DropReason::NotAllowed),
            "ACL first"
        );
        assert!(a.banned(Side::Outside, newest, now));
    }

    #[test]
    fn stateless_replies_only_to_admitted_sources_and_rate_limited() {
        let now = Instant::now();
        let a = Admission::new(policy(), 4, ReplyLimits { rate: 2, burst: 3 });
        assert_eq!(
            a.may_reply(Side::Outside, ip("198.18.3.2"), now),
            Err(DropReason::ReplyNotAllowed)
        );
        let sent = (0..100)
            .filter(|_| a.may_reply(Side::Inside, ip("198.18.1.2"), now).is_ok())
            .count();
        assert_eq!(sent, 5, "rate + burst");
        // The outside's budget is separate.
        assert!(a.may_reply(Side::Outside, ip("198.18.2.2"), now).is_ok());
        let later = now + Duration::from_secs(1);
        let sent = (0..100)
            .filter(|_| a.may_reply(Side::Inside, ip("198.18.1.2"), later).is_ok())
            .count();
        assert_eq!(sent, 2);
    }
}
