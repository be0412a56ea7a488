//! What the B2BUA needs to know about its surroundings: its own addresses per side, where the
//! PBX and the trunk are, timers, and which headers may cross.

use std::{net::SocketAddr, time::Duration};

use crate::{auth::Credentials, limit::CallLimits, net::TransportKind, transaction::TimerConfig};

/// The SBC's own SIP address on one side (written into Via and Contact on that side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// Address and port advertised on that side.
    pub addr: SocketAddr,
    /// Transport used on that side.
    pub transport: TransportKind,
}

/// A next hop: the PBX or a trunk's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: TransportKind,
}

/// A trunk tried when the ones before it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverTrunk {
    /// Its proxy.
    pub target: Target,
    /// Its digest credentials.
    pub credentials: Option<Credentials>,
}

/// B2BUA configuration.
#[derive(Debug, Clone)]
pub struct B2buaConfig {
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// The SBC on the PBX side.
    pub inside: LocalAddr,
    /// The SBC on the carrier side.
    pub outside: LocalAddr,
    /// Where calls from the carrier go.
    pub pbx: Target,
    /// Where calls from the PBX go.
    pub trunk: Target,
    /// Digest credentials for the trunk: a 401/407 to a request on the trunk leg is answered
    /// with them once on the PBX's behalf (RFC 3261 §22.2). None: challenges are relayed.
    pub trunk_credentials: Option<Credentials>,
    /// Trunks tried in order after `trunk` when a call's INVITE toward the carrier times out or
    /// gets 408 or 5xx (never on other 4xx or 6xx: those are the callee's answer).
    pub failover: Vec<FailoverTrunk>,
    /// Call admission limits of the trunk (calls in either direction through it).
    pub trunk_limits: CallLimits,
    /// Call admission limits of the whole SBC.
    pub limits: CallLimits,
    /// `Retry-After` seconds on the 503 of a call refused by admission control.
    pub retry_after_s: u32,
    /// `User-Agent` / `Server` value.
    pub user_agent: String,
    /// Header names (lower case) copied from one leg to the other; everything else is dropped.
    pub pass_headers: Vec<String>,
    /// Longest call; ended with BYE on both legs after this (None: unlimited).
    pub max_call_duration: Option<Duration>,
    /// Digest authentication required of the PBX's new requests (None: the ACL alone).
    pub pbx_auth: Option<super::PbxAuthConfig>,
}

impl B2buaConfig {
    /// The default header allowlist: identity, privacy, diversion, reason, capabilities, and
    /// Retry-After (kept on 503).
    pub fn default_pass_headers() -> Vec<String> {
        [
            "p-asserted-identity",
            "p-preferred-identity",
            "privacy",
            "diversion",
            "reason",
            "allow",
            "supported",
            "accept",
            "retry-after",
            "unsupported",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// The SBC's address on `side`.
    pub fn local(&self, side: crate::net::Side) -> LocalAddr {
        match side {
            crate::net::Side::Inside => self.inside,
            crate::net::Side::Outside => self.outside,
        }
    }
}
