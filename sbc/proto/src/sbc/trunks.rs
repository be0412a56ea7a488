//! The trunks' proxy addresses: IP literals from the configuration, names from DNS answers
//! the runtime hands in ([`DnsAnswer`]), and how a change reaches the B2BUA's targets, the
//! ACL, the registrations and the health checks. A trunk whose name has not resolved yet is
//! unusable (new calls and failovers skip it).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use crate::b2bua::{B2bua, Rng, Target};

use super::{
    Acl, TrunkHealth, TrunkProxy, TrunkRegistration, UNRESOLVED, health_checks::HealthChecks,
    registrations::Registrations,
};

/// A new set of addresses for one trunk's proxy name, from the runtime's resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The trunk's name.
    pub trunk: String,
    /// The proxy as configured when it was resolved ([`TrunkProxy::proxy`]); an answer for a
    /// proxy the trunk no longer has is ignored.
    pub proxy: String,
    /// Every address, the one new calls use first. An empty answer changes nothing: the last
    /// good addresses stay when a lookup fails.
    pub addrs: Vec<SocketAddr>,
}

/// One trunk: its proxy and the addresses it stands for now (for an IP literal just that; for
/// a name what it last resolved to, nothing before the first answer).
#[derive(Debug, Clone)]
struct TrunkAddrs {
    proxy: TrunkProxy,
    ips: Vec<IpAddr>,
}

/// The trunks in order of preference and the DNS answers for their names.
#[derive(Debug, Default)]
pub(super) struct Trunks {
    list: Vec<TrunkAddrs>,
    resolved: HashMap<String, DnsAnswer>,
}

impl Trunks {
    pub(super) fn new(proxies: Vec<TrunkProxy>) -> Self {
        let mut t = Self::default();
        t.set(proxies);
        t
    }

    fn set(&mut self, proxies: Vec<TrunkProxy>) {
        self.list = proxies
            .into_iter()
            .map(|proxy| TrunkAddrs {
                ips: proxy
                    .static_addr
                    .map(|a| a.ip().to_canonical())
                    .into_iter()
                    .collect(),
                proxy,
            })
            .collect();
    }

    /// The name of trunk `index` ("none" for a call whose carrier side is no configured
    /// trunk).
    pub(super) fn name(&self, index: Option<usize>) -> &str {
        index
            .and_then(|i| self.list.get(i))
            .map_or("none", |t| t.proxy.name.as_str())
    }

    /// Every trunk's name, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|t| t.proxy.name.as_str())
    }

    /// The addresses trunk `index` stands for now (canonical IPs).
    pub(super) fn ips(&self, index: usize) -> &[IpAddr] {
        self.list.get(index).map_or(&[], |t| t.ips.as_slice())
    }

    /// Records an answer; false (keeping nothing) for an empty one.
    pub(super) fn insert(&mut self, a: DnsAnswer) -> bool {
        if a.addrs.is_empty() {
            return false;
        }
        self.resolved.insert(a.trunk.clone(), a);
        true
    }

    /// The addresses of trunk `name` if its configured proxy is still `proxy`.
    fn addrs(
        resolved: &HashMap<String, DnsAnswer>,
        name: &str,
        proxy: &str,
    ) -> Option<Vec<SocketAddr>> {
        resolved
            .get(name)
            .filter(|r| r.proxy == proxy)
            .map(|r| r.addrs.clone())
    }

    /// Before a reconfiguration is compared with the running one: takes the new trunk list,
    /// forgets answers for trunks that are gone or whose proxy changed, and puts the resolved
    /// addresses into the new registrations and health checks, so unchanged ones compare equal
    /// and keep their state.
    pub(super) fn replace(
        &mut self,
        proxies: Vec<TrunkProxy>,
        regs: &mut [TrunkRegistration],
        checks: &mut [TrunkHealth],
    ) {
        self.resolved.retain(|name, r| {
            proxies
                .iter()
                .any(|p| p.name == *name && p.proxy == r.proxy)
        });
        for p in &proxies {
            let Some(primary) =
                Self::addrs(&self.resolved, &p.name, &p.proxy).and_then(|s| s.first().copied())
            else {
                continue;
            };
            for r in regs.iter_mut().filter(|r| r.trunk == p.name) {
                r.peer.addr = primary;
            }
            for h in checks.iter_mut().filter(|h| h.trunk == p.name) {
                h.peer.addr = primary;
                h.cfg.target = primary;
            }
        }
        self.set(proxies);
    }

    /// Applies the resolved addresses to the B2BUA's targets and sources, the ACL, the
    /// registrations and the health checks. Trunks whose name has not resolved yet are marked
    /// unusable.
    pub(super) fn apply(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        acl: &mut Acl,
        regs: &mut Registrations,
        checks: &mut HealthChecks,
        b2bua: &mut B2bua,
    ) {
        let mut all = Vec::new();
        for (index, t) in self.list.iter_mut().enumerate() {
            if t.proxy.static_addr.is_some() {
                continue;
            }
            let name = t.proxy.name.as_str();
            let addrs = Self::addrs(&self.resolved, name, &t.proxy.proxy).unwrap_or_default();
            t.ips = addrs.iter().map(|s| s.ip().to_canonical()).collect();
            all.extend(t.ips.iter().copied());
            b2bua.set_trunk_sources(index, t.ips.clone());
            let Some(primary) = addrs.first().copied() else {
                b2bua.set_trunk_usable(index, false);
                continue;
            };
            // Every server in order: the B2BUA fails over between them before the next trunk.
            b2bua.set_trunk_targets(
                index,
                addrs
                    .iter()
                    .map(|addr| Target {
                        addr: *addr,
                        transport: t.proxy.transport,
                    })
                    .collect(),
            );
            let usable = checks
                .entries
                .iter()
                .find(|e| e.cfg.index == index)
                .is_none_or(|e| e.check.state().usable());
            b2bua.set_trunk_usable(index, usable);
            for e in regs.entries.iter_mut().filter(|e| e.cfg.trunk == name) {
                let first = e.cfg.peer.addr == UNRESOLVED;
                // The next REGISTER (refresh or retry) goes to the new address.
                e.cfg.peer.addr = primary;
                if first {
                    // First answer: register now instead of after the failed attempt's backoff.
                    e.reg.start(now);
                }
            }
            for e in checks.entries.iter_mut().filter(|e| e.cfg.trunk == name) {
                if e.cfg.cfg.target != primary {
                    // Another server: its health is not known yet, so the check starts over.
                    let mut cfg = e.cfg.clone();
                    cfg.peer.addr = primary;
                    cfg.cfg.target = primary;
                    *e = super::health_checks::started(cfg, rng, now);
                }
            }
        }
        acl.set_resolved(all);
    }
}
