//! The signaling task's view of resolved trunk proxies, and how it is applied: the B2BUA's
//! trunk targets, the source ACL, call attribution, OPTIONS pings and REGISTERs.
//!
//! The signaling task applies it after every [`Resolved`] update and after every
//! reconfiguration (which rebuilds those from the configuration, where names have no address).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use sbc_proto::{
    b2bua::{B2bua, Target},
    health::HealthCheck,
    net::TransportKind,
    register::Registration,
};

use crate::{
    config::{ProxyAddr, Trunk},
    signaling::{Acl, TrunkHealth, TrunkNames, TrunkRegistration},
};

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

/// A trunk's proxy as configured and the addresses it stands for now (for an IP literal
/// just that; for a name what it last resolved to, nothing before the first answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAddr {
    /// As configured.
    pub proxy: ProxyAddr,
    /// Transport toward it.
    pub transport: TransportKind,
    /// The addresses, canonical IPs (IPv4-mapped IPv6 as IPv4).
    pub ips: Vec<IpAddr>,
}

impl TrunkAddr {
    /// From a `[[trunk]]`.
    pub fn from_trunk(t: &Trunk) -> Self {
        Self {
            proxy: t.proxy.clone(),
            transport: t.transport.kind(),
            ips: t
                .proxy
                .static_addr()
                .map(|a| a.ip().to_canonical())
                .into_iter()
                .collect(),
        }
    }
}

/// Resolved addresses by trunk name.
#[derive(Debug, Default)]
pub struct DnsState {
    resolved: HashMap<String, Resolved>,
}

impl DnsState {
    /// Records an update. Returns false (and keeps nothing) for an empty one: the last good
    /// addresses stay when a lookup fails.
    pub fn insert(&mut self, r: Resolved) -> bool {
        if r.addrs.is_empty() {
            return false;
        }
        self.resolved.insert(r.trunk.clone(), r);
        true
    }

    /// The addresses of trunk `name` if its configured proxy is still `proxy`.
    fn addrs(&self, name: &str, proxy: &ProxyAddr) -> Option<&[SocketAddr]> {
        self.resolved
            .get(name)
            .filter(|r| r.proxy == *proxy)
            .map(|r| r.addrs.as_slice())
    }

    /// Before a reconfiguration is compared with the running one: forgets trunks that are
    /// gone or whose proxy changed, and puts the resolved addresses into the new
    /// registrations and health checks, so unchanged ones compare equal and keep their state.
    pub fn prepare(
        &mut self,
        trunks: &TrunkNames,
        regs: &mut [TrunkRegistration],
        checks: &mut [TrunkHealth],
    ) {
        self.resolved.retain(|name, r| {
            trunks
                .0
                .iter()
                .any(|(n, a)| n == name && a.proxy == r.proxy)
        });
        for (name, a) in &trunks.0 {
            let Some(primary) = self.addrs(name, &a.proxy).and_then(|s| s.first()) else {
                continue;
            };
            for r in regs.iter_mut().filter(|r| r.trunk == *name) {
                r.peer.addr = *primary;
            }
            for h in checks.iter_mut().filter(|h| h.trunk == *name) {
                h.peer.addr = *primary;
                h.cfg.target = *primary;
            }
        }
    }

    /// Applies the resolved addresses to the running driver state. Trunks whose name has not
    /// resolved yet are marked unusable (new calls and failovers skip them).
    pub fn apply(
        &self,
        trunks: &mut TrunkNames,
        acl: &mut Acl,
        regs: &mut [(TrunkRegistration, Registration)],
        checks: &mut [(TrunkHealth, HealthCheck)],
        engine: &mut B2bua,
    ) {
        let mut all = Vec::new();
        for (index, (name, a)) in trunks.0.iter_mut().enumerate() {
            if a.proxy.static_addr().is_some() {
                continue;
            }
            let addrs = self.addrs(name, &a.proxy).unwrap_or_default();
            a.ips = addrs.iter().map(|s| s.ip().to_canonical()).collect();
            all.extend(a.ips.iter().copied());
            engine.set_trunk_sources(index, a.ips.clone());
            let Some(primary) = addrs.first().copied() else {
                engine.set_trunk_usable(index, false);
                continue;
            };
            // Every server in order: the B2BUA fails over between them before the next trunk.
            engine.set_trunk_targets(
                index,
                addrs
                    .iter()
                    .map(|addr| Target {
                        addr: *addr,
                        transport: a.transport,
                    })
                    .collect(),
            );
            let health = checks
                .iter()
                .find(|(t, _)| t.index == index)
                .is_none_or(|(_, h)| h.state().usable());
            engine.set_trunk_usable(index, health);
            for (t, reg) in regs.iter_mut().filter(|(t, _)| t.trunk == *name) {
                if t.peer.addr == ProxyAddr::UNRESOLVED {
                    // First answer: register now instead of after the failed attempt's backoff.
                    t.peer.addr = primary;
                    reg.start(std::time::Instant::now());
                } else {
                    // The next REGISTER (refresh or retry) goes to the new address.
                    t.peer.addr = primary;
                }
            }
            for (t, h) in checks.iter_mut().filter(|(t, _)| t.trunk == *name) {
                if t.cfg.target != primary {
                    // Another server: its health is not known yet, so the check starts over.
                    t.peer.addr = primary;
                    t.cfg.target = primary;
                    *h = HealthCheck::new(
                        t.cfg.clone(),
                        crate::entropy::rng(),
                        std::time::Instant::now(),
                    );
                }
            }
        }
        acl.set_resolved(all);
    }
}
