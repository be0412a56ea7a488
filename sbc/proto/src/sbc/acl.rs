//! Who may send SIP to the SBC: the PBX networks inside, the trunk proxies outside (their
//! configured IPs and what their names resolved to), and the operator's denylist.
//!
//! Unknown sources get no answer at all, so scanners learn nothing. Everything compares
//! canonical IPs (an IPv4-mapped IPv6 source is its IPv4 address).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    net::{Peer, Side},
    protect::user_agent_denied,
};

/// The configured part of the ACL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// Networks the PBX may send from (inside).
    pub inside: Vec<IpNet>,
    /// Trunk proxies given as IP literals (outside).
    pub outside: Vec<IpAddr>,
    /// Configured peers of the inside (the PBX address): their own, higher budget in the
    /// source guard; never banned.
    pub peers: Vec<IpAddr>,
    /// Requests whose User-Agent contains one of these (ASCII case-insensitive) are dropped.
    pub user_agent_deny: Vec<String>,
    /// Sources always dropped, before any other check, peers included (`[limits] deny`).
    pub deny: Vec<IpNet>,
}

/// The source ACL: the configuration plus the addresses trunk proxy names resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    cfg: AclConfig,
    /// What the trunk proxies given by name resolved to (replaced on every update).
    resolved: Vec<IpAddr>,
}

impl Acl {
    /// An ACL with nothing resolved yet.
    pub fn new(mut cfg: AclConfig) -> Self {
        for ip in cfg.outside.iter_mut().chain(cfg.peers.iter_mut()) {
            *ip = ip.to_canonical();
        }
        Self {
            cfg,
            resolved: Vec::new(),
        }
    }

    /// Whether `ip` is on the denylist (dropped before anything else, peers included).
    pub fn denies(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.cfg.deny.iter().any(|n| n.contains(&ip))
    }

    /// Whether `ip` is a configured peer on `side` (the PBX inside, a trunk proxy outside):
    /// limited by the peer budget, never banned. Per side, so that an outsider spoofing the
    /// PBX's address on the outside is an unknown source there.
    pub fn is_configured_peer(&self, side: Side, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match side {
            Side::Inside => self.cfg.peers.contains(&ip),
            Side::Outside => self.is_trunk_proxy(ip),
        }
    }

    /// Whether `peer` may talk to the SBC.
    pub fn allows(&self, peer: &Peer) -> bool {
        let ip = peer.addr.ip().to_canonical();
        match peer.side {
            Side::Inside => self.cfg.inside.iter().any(|n| n.contains(&ip)),
            Side::Outside => self.is_trunk_proxy(ip),
        }
    }

    /// Whether a request with this User-Agent is dropped.
    pub fn denies_user_agent(&self, ua: &str) -> bool {
        user_agent_denied(ua, &self.cfg.user_agent_deny)
    }

    /// The inside networks.
    pub fn inside(&self) -> &[IpNet] {
        &self.cfg.inside
    }

    /// Every trunk proxy IP: the configured ones, then the resolved ones (canonical).
    pub fn outside(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.cfg.outside.iter().chain(&self.resolved).copied()
    }

    /// The denylist.
    pub fn deny(&self) -> &[IpNet] {
        &self.cfg.deny
    }

    /// Replaces the addresses the trunk proxies given by name resolved to.
    pub fn set_resolved(&mut self, ips: Vec<IpAddr>) {
        self.resolved = ips.into_iter().map(|ip| ip.to_canonical()).collect();
    }

    fn is_trunk_proxy(&self, ip: IpAddr) -> bool {
        self.cfg.outside.contains(&ip) || self.resolved.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TransportKind;

    fn peer(side: Side, a: &str) -> Peer {
        Peer {
            side,
            transport: TransportKind::Udp,
            addr: a.parse().expect("literal"),
            conn: None,
            local: None,
        }
    }

    #[test]
    fn inside_by_network_outside_by_proxy_address_and_per_side_peers() {
        let mut acl = Acl::new(AclConfig {
            inside: vec!["10.0.0.0/8".parse().expect("literal")],
            outside: vec!["192.0.2.1".parse().expect("literal")],
            peers: vec!["10.0.0.5".parse().expect("literal")],
            ..AclConfig::default()
        });
        assert!(acl.allows(&peer(Side::Inside, "10.9.9.9:5060")));
        assert!(!acl.allows(&peer(Side::Outside, "10.9.9.9:5060")));
        assert!(acl.allows(&peer(Side::Outside, "[::ffff:192.0.2.1]:5060")));
        assert!(!acl.allows(&peer(Side::Outside, "192.0.2.2:5060")));
        acl.set_resolved(vec!["192.0.2.2".parse().expect("literal")]);
        assert!(acl.allows(&peer(Side::Outside, "192.0.2.2:5060")));
        let pbx = "10.0.0.5".parse().expect("literal");
        assert!(acl.is_configured_peer(Side::Inside, pbx));
        assert!(!acl.is_configured_peer(Side::Outside, pbx));
    }
}
