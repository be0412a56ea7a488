//! Digest authentication of the PBX's requests (RFC 3261 §22.3). The SBC is the PBX's outbound
//! proxy, so it challenges with `407 Proxy Authentication Required` and reads
//! `Proxy-Authorization`.
//!
//! What is authenticated: new out-of-dialog INVITE and MESSAGE from the inside. Not ACK or
//! CANCEL (RFC 3261 §22.1: they cannot be challenged; a CANCEL matches an INVITE that already
//! passed), not in-dialog requests (the dialog was set up by an authenticated INVITE and its
//! Call-ID and tags identify it), not OPTIONS (answered by the SBC itself; PBXs use it as a
//! keep-alive and rarely answer challenges to it).
//!
//! Outcomes, each reported as [`Event::PbxAuth`](super::Event::PbxAuth):
//! - no credentials for our realm: 407 with one challenge per configured algorithm, in order of
//!   preference (SHA-256 before MD5, RFC 8760 §2.4), all `qop="auth"` — `challenged`;
//! - right credentials: the request proceeds (to admission control and the trunk) — `accepted`;
//! - right password on a nonce that expired, is not ours (e.g. issued before a restart) or was
//!   replayed: 407 with a fresh nonce and `stale=true` — `stale`;
//! - wrong credentials: a new 407 — RFC 3261 §22.3 lets a proxy re-challenge, and a UA does
//!   not retry credentials that were just refused (§22.2), so this does not loop — `failed`;
//! - after [`MAX_FAILURES`] failures from one address within [`FAILURE_WINDOW`], 403 Forbidden
//!   without a challenge until the window that began with the first failure is over: at most
//!   a handful of password guesses per window — `failed`;
//! - a `Proxy-Authorization` that does not parse as `scheme params`: 400 (RFC 3261 §21.4.1; a
//!   client that sends it would not send anything better after a new challenge) — `failed`.
//!
//! The `Proxy-Authorization` itself never crosses: it is not in the header allowlist.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{B2bua, Event, Refusal, Rng, ServerKey};
use crate::{
    auth::{Algorithm, DigestCredentials, DigestServer, Secret},
    net::{Peer, Side},
    sip::{Message, Method},
};

/// Consecutive failures from one address after which its requests get 403.
pub const MAX_FAILURES: u32 = 5;

/// How long failures are counted from the first one.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Most addresses whose failures are counted (the ACL admits only PBX networks, so this is
/// far more than needed).
const MAX_FAILURE_SOURCES: usize = 1024;

/// The credentials the PBX must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxAuthConfig {
    /// Digest `username`.
    pub username: String,
    /// The password.
    pub password: Secret,
    /// The realm challenges name.
    pub realm: String,
    /// Algorithms offered, in order of preference (one challenge each).
    pub algorithms: Vec<Algorithm>,
}

/// What the SBC did with a PBX request's credentials (a bounded metric label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxAuthResult {
    /// The credentials were right; the request proceeds.
    Accepted,
    /// No credentials for our realm: challenged with 407.
    Challenged,
    /// Wrong or unusable credentials: 407 again, 403 after repeated failures, 400 if
    /// malformed.
    Failed,
    /// Right password on an expired, unknown or replayed nonce: 407 with `stale=true`.
    Stale,
}

impl PbxAuthResult {
    /// Label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Challenged => "challenged",
            Self::Failed => "failed",
            Self::Stale => "stale",
        }
    }
}

/// Per-B2BUA state: the digest server (built on first use, so its nonce epoch is a `now` the
/// core was given) and the failure counts.
#[derive(Debug, Default)]
pub(super) struct PbxAuthState {
    server: Option<DigestServer>,
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl PbxAuthState {
    /// The digest server for `cfg`, rebuilt (new key and epoch) when the account changed.
    fn server(&mut self, cfg: &PbxAuthConfig, now: Instant, rng: &mut Rng) -> &mut DigestServer {
        let current = self
            .server
            .take()
            .filter(|s| s.same_account(&cfg.username, &cfg.password, &cfg.realm, &cfg.algorithms));
        self.server.insert(current.unwrap_or_else(|| {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            DigestServer::new(
                cfg.username.clone(),
                cfg.password.clone(),
                cfg.realm.clone(),
                cfg.algorithms.clone(),
                key,
                now,
            )
        }))
    }

    fn locked_out(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.failures.get(&ip) {
            Some((_, since)) if now.saturating_duration_since(*since) > FAILURE_WINDOW => {
                self.failures.remove(&ip);
                false
            }
            Some((n, _)) => *n >= MAX_FAILURES,
            None => false,
        }
    }

    fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        if self.failures.len() >= MAX_FAILURE_SOURCES && !self.failures.contains_key(&ip) {
            self.failures
                .retain(|_, (_, since)| now.saturating_duration_since(*since) <= FAILURE_WINDOW);
            if self.failures.len() >= MAX_FAILURE_SOURCES {
                return;
            }
        }
        self.failures.entry(ip).or_insert((0, now)).0 += 1;
    }
}

/// The reaction to a request's credentials.
enum Judgement {
    Pass,
    Challenge { stale: bool },
    Reject(Refusal),
}

impl B2bua {
    /// Authenticates a new out-of-dialog request from the PBX when `pbx_auth` is configured.
    /// Returns the message when it may proceed; otherwise it has been answered (407, 403 or
    /// 400 on a server transaction, so retransmissions get the same answer and the ACK to it
    /// is absorbed) and None is returned.
    pub(super) fn authenticate_pbx(
        &mut self,
        now: Instant,
        peer: Peer,
        key: &ServerKey,
        msg: Message,
    ) -> Option<Message> {
        let Some(cfg) = self.cfg.pbx_auth.as_ref() else {
            return Some(msg);
        };
        if peer.side != Side::Inside
            || !matches!(msg.method(), Some(Method::Invite | Method::Message))
        {
            return Some(msg);
        }
        let ip = peer.addr.ip();
        let (verdict, result) = if self.pbx_auth.locked_out(ip, now) {
            (Judgement::Reject(Refusal::Forbidden), PbxAuthResult::Failed)
        } else {
            let server = self.pbx_auth.server(cfg, now, &mut self.rng);
            judge(server, now, &msg)
        };
        match result {
            PbxAuthResult::Accepted => {
                self.pbx_auth.failures.remove(&ip);
            }
            PbxAuthResult::Failed => self.pbx_auth.record_failure(ip, now),
            PbxAuthResult::Challenged | PbxAuthResult::Stale => {}
        }
        self.events.push_back(Event::PbxAuth { result });
        match verdict {
            Judgement::Pass => Some(msg),
            Judgement::Challenge { stale } => {
                let salt = self.rng.next_u64();
                let challenges = self
                    .pbx_auth
                    .server
                    .as_ref()
                    .map(|s| s.challenges(&s.nonce(now, salt), stale))
                    .unwrap_or_default();
                let extra: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|c| ("Proxy-Authenticate", c.as_str()))
                    .collect();
                self.reject_with(
                    now,
                    peer,
                    key.clone(),
                    msg,
                    Refusal::ProxyAuthenticationRequired,
                    &extra,
                );
                None
            }
            Judgement::Reject(refusal) => {
                self.reject_with(now, peer, key.clone(), msg, refusal, &[]);
                None
            }
        }
    }
}

/// Judges the request's credentials for our realm. Credentials for other realms are for
/// proxies further on (RFC 3261 §22.3) and are ignored.
fn judge(server: &mut DigestServer, now: Instant, msg: &Message) -> (Judgement, PbxAuthResult) {
    let method = msg.method().map_or("", Method::as_str);
    let uri = msg.request_uri_str().unwrap_or_default();
    let mut ours = None;
    for auth in msg.headers().proxy_authorization() {
        let Ok(auth) = auth else {
            return (
                Judgement::Reject(Refusal::MalformedCredentials),
                PbxAuthResult::Failed,
            );
        };
        if auth.scheme.eq_ignore_ascii_case("Digest") && auth.param("realm") == Some(server.realm())
        {
            ours = Some(DigestCredentials::from_auth(&auth));
            break;
        }
    }
    let Some(creds) = ours else {
        return (
            Judgement::Challenge { stale: false },
            PbxAuthResult::Challenged,
        );
    };
    match creds.and_then(|c| server.verify(now, &c, method, uri)) {
        Ok(()) => (Judgement::Pass, PbxAuthResult::Accepted),
        Err(e) if e.is_stale() => (Judgement::Challenge { stale: true }, PbxAuthResult::Stale),
        Err(_) => (Judgement::Challenge { stale: false }, PbxAuthResult::Failed),
    }
}
