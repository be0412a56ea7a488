//! What the [`Sbc`](super::Sbc) core reports: what became of a received message
//! ([`Received`]) and the events the driver turns into metrics, logs and transport updates.

use std::{net::IpAddr, time::Duration};

use crate::{b2bua, health::Health, net::Side, register::RegState};

/// What the receive path did with one message, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Dropped without an answer.
    Dropped(PolicyDrop),
    /// An answer to one of our OPTIONS pings: went to the trunk's health check.
    HealthAnswer,
    /// An answer to one of our own REGISTERs: went to the trunk's registration.
    RegistrationAnswer,
    /// Handed to the call layer (the B2BUA).
    Call,
    /// A new call refused with a stateless 503 for overload (`overload.rs`); counted by the
    /// B2BUA's admission event with limit `queue_delay`.
    Shed,
    /// Ignored while shutting down (only answers to the final REGISTERs are wanted then).
    ShuttingDown,
}

/// Why the receive path dropped a message, in the order of the checks. Bounded set, usable as
/// the `reason` label of `sbc_sip_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDrop {
    /// The source is on the operator's denylist (`[limits] deny`), checked before anything.
    Denied,
    /// The source is banned (or was just banned) for exceeding its message rate.
    Banned,
    /// A configured peer over its own budget (dropped, never banned).
    PeerOverBudget,
    /// The source is not in the ACL of the side it arrived on.
    Acl,
    /// A request whose User-Agent is on the denylist (`[limits] user_agent_deny`).
    UserAgent,
}

impl PolicyDrop {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyDrop::Denied => "denied",
            PolicyDrop::Banned => "banned",
            PolicyDrop::PeerOverBudget => "peer_over_budget",
            PolicyDrop::Acl => "acl",
            PolicyDrop::UserAgent => "user_agent",
        }
    }
}

/// Something the driver reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// From the call layer.
    Call(b2bua::Event),
    /// A source exceeded its budget and is banned on `side` for `duration`: the transport
    /// refuses its connections and closes the open ones.
    Banned {
        /// The side it is banned on.
        side: Side,
        /// The source.
        ip: IpAddr,
        /// How long.
        duration: Duration,
    },
    /// A ban was lifted before its end: by the admin API, or evicted because the ban table was
    /// full (`evicted`).
    Unbanned {
        /// The side.
        side: Side,
        /// The source.
        ip: IpAddr,
        /// Evicted by a newer ban (`[limits] max_bans`), not lifted on request.
        evicted: bool,
    },
    /// The ACL changed (reconfiguration, a trunk proxy name resolved): the transport's
    /// admission view must follow ([`Sbc::acl`](super::Sbc::acl)).
    AclChanged,
    /// A trunk's OPTIONS health, when it changed (and for every check after a
    /// reconfiguration, with `changed` false unless it really changed).
    Health {
        /// The trunk.
        trunk: String,
        /// Its health now.
        state: Health,
        /// Whether it differs from before.
        changed: bool,
    },
    /// A trunk's registration state, when it changed (and for every registration after a
    /// reconfiguration).
    Registration {
        /// The trunk.
        trunk: String,
        /// Its state now.
        state: RegState,
    },
}
