//! What the resolver task hands over: a trunk proxy name's new addresses. The signaling
//! driver passes them to the core ([`sbc_proto::sbc::Sbc::handle_dns`]), which applies them to
//! the B2BUA's targets, the ACL, the registrations and the health checks.

use std::net::SocketAddr;

use sbc_proto::sbc::DnsAnswer;

use crate::config::ProxyAddr;

/// A new set of addresses for one trunk's proxy name, from the resolver task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The trunk's name.
    pub trunk: String,
    /// The proxy as configured when it was resolved (a changed proxy ignores old answers).
    pub proxy: ProxyAddr,
    /// Every address, the one new calls use first. Never empty.
    pub addrs: Vec<SocketAddr>,
}

impl From<Resolved> for DnsAnswer {
    fn from(r: Resolved) -> Self {
        Self {
            trunk: r.trunk,
            // The same text the configuration translation puts into `TrunkProxy::proxy`.
            proxy: r.proxy.to_string(),
            addrs: r.addrs,
        }
    }
}
