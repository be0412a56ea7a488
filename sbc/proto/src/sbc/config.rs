//! What the [`Sbc`](super::Sbc) core is configured with: the B2BUA's configuration, the source
//! ACL and guard, the trunks' proxies, their outbound registrations and OPTIONS checks. The
//! runtime builds it from its configuration file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::{
    b2bua::B2buaConfig,
    health::HealthConfig,
    net::{Peer, TransportKind},
    overload::OverloadConfig,
    protect::GuardConfig,
    register::RegConfig,
};

use super::AclConfig;

/// A stand-in target for a proxy whose name has not resolved yet. Sends to it fail at once
/// (port 0 is refused by the kernel), and the trunk is unusable meanwhile.
pub const UNRESOLVED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Everything the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct SbcConfig {
    /// The call layer.
    pub b2bua: B2buaConfig,
    /// Who may send.
    pub acl: AclConfig,
    /// Per-source rate limits and bans.
    pub guard: GuardConfig,
    /// Overload control by queueing delay.
    pub overload: OverloadConfig,
    /// The trunks in order of preference (position = the B2BUA's trunk index).
    pub trunks: Vec<TrunkProxy>,
    /// Outbound registrations (trunks with `register = true`).
    pub registrations: Vec<TrunkRegistration>,
    /// OPTIONS health checks (trunks with `options_interval_s`).
    pub health: Vec<TrunkHealth>,
    /// Start with the registrations held ([`super::Sbc::set_registering`]): a node of an
    /// active/standby pair registers only once it holds the registration lease. Read at
    /// start only; a reconfiguration keeps the current hold.
    pub registrations_held: bool,
}

/// A trunk's proxy as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkProxy {
    /// The trunk's name.
    pub name: String,
    /// The proxy as written in the configuration (a DNS answer for another text is stale).
    pub proxy: String,
    /// The address when the proxy is an IP literal; `None` for a name (resolved by DNS).
    pub static_addr: Option<SocketAddr>,
    /// Transport toward it.
    pub transport: TransportKind,
}

/// One trunk's outbound registration as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The trunk's name.
    pub trunk: String,
    /// Where REGISTERs go (the trunk's proxy; [`UNRESOLVED`] until its name resolves).
    pub peer: Peer,
    /// The registration's parameters.
    pub cfg: RegConfig,
}

/// One trunk's OPTIONS health check as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkHealth {
    /// The trunk's name.
    pub trunk: String,
    /// Its position in the order of preference (the B2BUA's trunk index).
    pub index: usize,
    /// Where the pings go ([`UNRESOLVED`] until its name resolves).
    pub peer: Peer,
    /// The check's parameters.
    pub cfg: HealthConfig,
}
