//! Digest pass-through (RFC 3261 §22): challenges that the SBC does not answer itself cross to
//! the other side intact, and the challenged side's retry is mapped back onto the same callee
//! dialog.
//!
//! Which challenges cross: a 401/407 from a trunk with `auth = passthrough`, and every 401/407
//! from the PBX (the SBC never holds credentials for the PBX). A trunk with `auth = sbc` has its
//! challenges answered with the trunk's credentials (`retry_with_credentials` in `mod.rs`).
//!
//! The retry of a challenged INVITE is a new INVITE from the caller with the same Call-ID and
//! From tag and CSeq + 1 (§8.1.3.5, §22.2). Since the B2BUA forgot the call when it relayed the
//! final 401/407, the callee leg's identity is remembered here ([`Resume`]) for 64·T1, keyed
//! by the caller's Call-ID and From tag; the retry resumes the callee dialog: same Call-ID and
//! From tag there, that leg's CSeq + 1, same trunk and server, and the caller's credentials for
//! the challenged realms. The challenger then sees exactly what RFC 3261 §22.2 expects of a
//! UAC retrying a request.
//!
//! The digest `uri=` is computed over the Request-URI the challenger sees, so on a passthrough
//! trunk the Request-URI crosses unchanged (`build_invite`), and the configuration refuses
//! called-number rules on such a trunk.

use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

use bytes::Bytes;

use super::{B2bua, Plan, Target, TrunkAuth, admission::TrunkId, call::CallId};
use crate::{
    net::{Peer, Side},
    sip::{Auth, HeaderName, Message},
};

/// The callee leg of a call whose first INVITE was challenged and the challenge relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resume {
    /// The callee leg's Call-ID.
    pub call_id: String,
    /// Our From tag on the callee leg.
    pub tag: String,
    /// CSeq of the challenged INVITE on the callee leg; the retry gets the next one.
    pub cseq: u32,
    /// The trunk of the call's carrier side.
    pub trunk: Option<TrunkId>,
    /// The server the challenged INVITE went to (the retry goes there too).
    pub target: Target,
    /// Realms of the relayed challenges: only credentials for these cross.
    pub realms: Vec<String>,
    expires: Instant,
}

/// Key: the caller's side, Call-ID and From tag.
type Key = (Side, String, String);

/// Relayed challenges awaiting their retry, oldest first. Every entry lives for the same time,
/// so insertion order is also expiry order.
#[derive(Debug, Default)]
pub(super) struct PendingChallenges {
    map: HashMap<Key, Resume>,
    order: VecDeque<Key>,
}

impl PendingChallenges {
    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    fn purge(&mut self, now: Instant) {
        while let Some(k) = self.order.front() {
            match self.map.get(k) {
                Some(r) if r.expires > now => break,
                _ => {
                    if let Some(k) = self.order.pop_front() {
                        self.map.remove(&k);
                    }
                }
            }
        }
    }

    fn insert(&mut self, now: Instant, key: Key, resume: Resume, max: usize) {
        self.purge(now);
        if max == 0 {
            return;
        }
        if self.map.insert(key.clone(), resume).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    fn take(&mut self, now: Instant, key: &Key) -> Option<Resume> {
        self.purge(now);
        let r = self.map.remove(key)?;
        self.order.retain(|k| k != key);
        Some(r)
    }
}

impl B2bua {
    /// How trunk `trunk` answers challenges (no trunk: as `sbc`, i.e. not relayed).
    pub(super) fn trunk_auth(&self, trunk: Option<TrunkId>) -> TrunkAuth {
        trunk
            .and_then(|t| self.cfg.trunks.get(t.index()))
            .map_or(TrunkAuth::Sbc, |t| t.auth)
    }

    /// Whether a 401/407 from `from` on a call of `trunk` is relayed with its challenge.
    pub(super) fn challenge_crosses(&self, trunk: Option<TrunkId>, from: Side) -> bool {
        from == Side::Inside || self.trunk_auth(trunk) == TrunkAuth::Passthrough
    }

    /// Remembers the callee leg of `call` after its first INVITE got the 401/407 `resp` from
    /// `callee` and the challenge was relayed, so that the caller's retry resumes that leg.
    pub(super) fn remember_challenge(
        &mut self,
        now: Instant,
        call: CallId,
        callee: Side,
        resp: &Message,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if !self.challenge_crosses(c.trunk, callee) {
            return;
        }
        let caller = c.leg(callee.other());
        let Some(caller_tag) = caller.remote_tag().map(str::to_owned) else {
            return;
        };
        let leg = c.leg(callee);
        let realms = challenge_realms(resp);
        let resume = Resume {
            call_id: leg.call_id.clone(),
            tag: leg.local_tag().to_owned(),
            cseq: resp.cseq().seq,
            trunk: c.trunk,
            target: Target {
                addr: leg.peer.addr,
                transport: leg.peer.transport,
            },
            realms,
            expires: now + self.cfg.timers.timeout(),
        };
        let key = (callee.other(), caller.call_id.clone(), caller_tag);
        let max = self.cfg.max_pending_challenges;
        self.challenges.insert(now, key, resume, max);
    }

    /// The plan of a new INVITE that retries a challenged one (same Call-ID and From tag as a
    /// relayed challenge's INVITE): the same trunk and server, resuming the callee dialog.
    pub(super) fn resume_plan(&mut self, now: Instant, peer: &Peer, msg: &Message) -> Option<Plan> {
        let tag = msg.from_tag()?;
        let key = (peer.side, msg.call_id().to_owned(), tag.to_owned());
        let resume = self.challenges.take(now, &key)?;
        self.auth_relayed_retries += 1;
        Some(Plan {
            trunk: resume.trunk,
            next_trunks: Vec::new(),
            target: resume.target,
            resume: Some(resume),
        })
    }
}

/// The challenge headers of a 401/407, verbatim (realm, nonce, opaque untouched), to be
/// relayed with it.
pub(super) fn challenge_headers(resp: &Message) -> Vec<(&'static str, String)> {
    [
        (HeaderName::WwwAuthenticate, "WWW-Authenticate"),
        (HeaderName::ProxyAuthenticate, "Proxy-Authenticate"),
    ]
    .into_iter()
    .flat_map(|(name, text)| {
        resp.headers()
            .all(name)
            .filter_map(|h| h.value_str().map(|v| (text, v.to_owned())))
            .collect::<Vec<_>>()
    })
    .collect()
}

/// The realms named by the challenges of `resp`.
fn challenge_realms(resp: &Message) -> Vec<String> {
    challenge_headers(resp)
        .iter()
        .filter_map(|(_, v)| Auth::parse(v).ok()?.param("realm").map(str::to_owned))
        .collect()
}

/// The `Authorization`/`Proxy-Authorization` values of `req` for one of `realms` (all of
/// them when `realms` is None), to be relayed with it. Credentials for other realms (the SBC's
/// own PBX authentication) stay behind.
pub(super) fn credential_headers(
    req: &Message,
    realms: Option<&[String]>,
) -> Vec<(&'static str, String)> {
    [
        (HeaderName::Authorization, "Authorization"),
        (HeaderName::ProxyAuthorization, "Proxy-Authorization"),
    ]
    .into_iter()
    .flat_map(|(name, text)| {
        req.headers()
            .all(name)
            .filter_map(|h| h.value_str())
            .filter(|v| {
                realms.is_none_or(|realms| {
                    Auth::parse(v)
                        .ok()
                        .and_then(|a| a.param("realm").map(str::to_owned))
                        .is_some_and(|r| realms.contains(&r))
                })
            })
            .map(|v| (text, v.to_owned()))
            .collect::<Vec<_>>()
    })
    .collect()
}

/// The callee-leg INVITE built for a retry, turned into the resumed dialog's next request:
/// CSeq `cseq` and the caller's credentials for the challenged realms.
pub(super) fn resumed_invite(
    built: &Bytes,
    cseq: u32,
    credentials: &[(&'static str, String)],
    limits: &crate::sip::Limits,
) -> Option<Bytes> {
    let msg = Message::parse(built.clone(), limits).ok()?;
    let headers = msg.headers();
    let mut ed = crate::sip::Editor::new(&msg);
    let cseq_value = format!("{cseq} INVITE");
    let i = headers.positions(HeaderName::CSeq).next()?;
    ed.replace(i, cseq_value.as_bytes());
    for (name, value) in credentials {
        ed.append(*name, value.as_bytes());
    }
    let mut out = Vec::with_capacity(built.len() + 256);
    ed.write(&mut out);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            addr: "198.51.100.7:5090".parse().expect("literal"),
            transport: crate::net::TransportKind::Udp,
        }
    }

    fn resume(expires: Instant) -> Resume {
        Resume {
            call_id: "c".into(),
            tag: "t".into(),
            cseq: 1,
            trunk: Some(TrunkId::new(0)),
            target: target(),
            realms: Vec::new(),
            expires,
        }
    }

    #[test]
    fn pending_challenges_expire_and_are_bounded() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let later = t0 + std::time::Duration::from_secs(32);
        let key = |n: &str| (Side::Inside, n.to_owned(), "a".to_owned());
        let mut p = PendingChallenges::default();
        p.insert(t0, key("1"), resume(later), 2);
        p.insert(t0, key("2"), resume(later), 2);
        p.insert(t0, key("3"), resume(later), 2);
        assert_eq!(p.len(), 2, "bounded: the oldest is forgotten");
        assert!(p.take(t0, &key("1")).is_none());
        assert!(p.take(t0, &key("2")).is_some(), "taken once");
        assert!(p.take(t0, &key("2")).is_none());
        assert!(p.take(later, &key("3")).is_none(), "expired after 64·T1");
        assert_eq!(p.len(), 0);
    }
}
