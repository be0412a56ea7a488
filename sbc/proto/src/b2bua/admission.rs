//! Where a new call or standalone request goes and whether it may: routing over trunks and
//! inbound routes, per-trunk and global admission limits, trunk addresses and health.

use super::*;

/// A configured trunk: its position in the configuration's trunk list (stable until the
/// configuration is replaced; `B2bua::set_config` remaps the calls' trunks by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TrunkId(usize);

impl TrunkId {
    /// The trunk at `index` in the configuration's list.
    pub(super) const fn new(index: usize) -> Self {
        Self(index)
    }

    /// Its position in the configuration's list (also the number the public API uses).
    pub(super) const fn index(self) -> usize {
        self.0
    }
}

/// Where a new call goes, decided before anything is set up for it.
#[derive(Debug)]
pub(super) struct Plan {
    /// The carrier-side trunk: the chosen one (outbound) or the sending one (inbound).
    pub(super) trunk: Option<TrunkId>,
    /// Outbound: the trunks to try next, in order.
    pub(super) next_trunks: Vec<TrunkId>,
    /// Where the new leg goes.
    pub(super) target: Target,
    /// A retry of a challenged INVITE: the callee dialog it continues.
    pub(super) resume: Option<auth_passthrough::Resume>,
}

/// Why a new call is refused before it is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotAdmitted {
    /// No outbound route takes the called number (404).
    NoRoute,
    /// A call admission limit (503 + Retry-After); the value is the metric label.
    Limit(&'static str),
}

/// No number or header rules (calls whose carrier side is not a configured trunk).
pub(super) static NO_RULES: Manipulation = Manipulation {
    called: Vec::new(),
    calling: Vec::new(),
    headers: Vec::new(),
};

impl B2bua {
    /// Global concurrency limit for a new call, checked first (so a refused call does not
    /// use up a CPS token).
    /// Counted across shards (`shared_calls.rs`); the place is held until the message is
    /// handled.
    pub(super) fn admit_calls(&mut self) -> Option<&'static str> {
        (!self.take_call_place()).then_some("max_calls")
    }

    /// Global rate limit for a new call, checked last (after the trunk's limits).
    pub(super) fn admit_rate(&mut self, now: Instant) -> Option<&'static str> {
        let ok = match self.take_shared_rate(now) {
            Some(ok) => ok,
            None => self.cps.as_mut().is_none_or(|b| b.try_take(now)),
        };
        (!ok).then_some("max_cps")
    }

    /// Admission on trunk `t`: the limit a new call on it would exceed, if any (a CPS token
    /// is used when it is admitted). Calls are counted across shards; the place is held
    /// until the message is handled.
    pub(super) fn admit_trunk(&mut self, now: Instant, t: TrunkId) -> Option<&'static str> {
        let limits = self.cfg.trunks.get(t.index())?.limits;
        if !self.take_trunk_place(t, limits.max_calls) {
            return Some("trunk_max_calls");
        }
        let ok = match self.take_shared_trunk_rate(now, t, limits.max_cps) {
            Some(ok) => ok,
            None => match self.trunk_cps.get_mut(t.index()) {
                Some(Some(b)) => b.try_take(now),
                _ => true,
            },
        };
        // Across nodes (`[state.cluster]`): one of this node's calls of the cluster's second.
        if !ok || !self.take_cluster_rate(t) {
            self.release_trunk_place(t);
            return Some("trunk_max_cps");
        }
        None
    }

    pub(super) fn trunk_usable(&self, t: TrunkId) -> bool {
        !self.trunk_down.get(t.index()).copied().unwrap_or(false)
    }

    /// The configured trunk whose proxy has address `ip` (calls from the carrier): its
    /// proxy address, else one of its other known sources.
    pub(super) fn trunk_of(&self, ip: std::net::IpAddr) -> Option<TrunkId> {
        let ip = ip.to_canonical();
        let trunks = &self.cfg.trunks;
        trunks
            .iter()
            .position(|t| t.target.addr.ip().to_canonical() == ip)
            .or_else(|| trunks.iter().position(|t| t.sources.contains(&ip)))
            .map(TrunkId::new)
    }

    /// The SBC's address toward `side` for a leg on `trunk`: the trunk's own local address
    /// when it has one (carrier side), else the side's default.
    pub(super) fn trunk_local(&self, side: Side, trunk: Option<TrunkId>) -> LocalAddr {
        match (
            side,
            trunk.and_then(|t| self.cfg.trunks.get(t.index())?.local),
        ) {
            (Side::Outside, Some(l)) => l.advertised,
            _ => self.cfg.local(side),
        }
    }

    /// The bound address to send from toward `side` on `trunk` (None: the transport's
    /// default socket).
    pub(super) fn trunk_bound(
        &self,
        side: Side,
        trunk: Option<TrunkId>,
    ) -> Option<std::net::SocketAddr> {
        match (
            side,
            trunk.and_then(|t| self.cfg.trunks.get(t.index())?.local),
        ) {
            (Side::Outside, Some(l)) => Some(l.bound),
            _ => None,
        }
    }

    /// The SBC's address as seen by `peer`: the listener its message arrived at (advertised
    /// form), else the side's default.
    pub(super) fn local_of(&self, peer: &Peer) -> LocalAddr {
        peer.local
            .and_then(|bound| {
                self.cfg
                    .listeners
                    .iter()
                    .find(|(b, l)| *b == bound && l.transport == peer.transport)
                    .map(|(_, l)| *l)
            })
            .unwrap_or_else(|| self.cfg.local(peer.side))
    }

    /// Routing and per-trunk admission of a new call. From the PBX: the first route whose
    /// pattern takes the called number gives the trunk order; the first trunk in it that is
    /// not down and admits the call carries it (all down: the first that admits, better a try
    /// than a certain failure). From a carrier: the sending trunk's limits, then the first
    /// inbound route taking the DID (after the trunk's inbound number rules), else the PBX.
    pub(super) fn plan(
        &mut self,
        now: Instant,
        peer: &Peer,
        msg: &Message,
    ) -> Result<Plan, NotAdmitted> {
        let called = request_user(msg).unwrap_or_default();
        let digits = called.split(';').next().unwrap_or_default();
        match peer.side {
            Side::Inside => {
                let order: Vec<TrunkId> = if self.cfg.routes.is_empty() {
                    (0..self.cfg.trunks.len()).map(TrunkId::new).collect()
                } else {
                    let route = self
                        .cfg
                        .routes
                        .iter()
                        .find(|r| r.matcher.matches(digits))
                        .ok_or(NotAdmitted::NoRoute)?;
                    route
                        .order(&mut self.rng)
                        .into_iter()
                        .map(TrunkId::new)
                        .collect()
                };
                let any_up = order.iter().any(|t| self.trunk_usable(*t));
                let mut limited = None;
                for (pos, &t) in order.iter().enumerate() {
                    if any_up && !self.trunk_usable(t) {
                        continue;
                    }
                    if let Some(l) = self.admit_trunk(now, t) {
                        limited.get_or_insert(l);
                        continue;
                    }
                    let Some(trunk) = self.cfg.trunks.get(t.index()) else {
                        continue;
                    };
                    return Ok(Plan {
                        trunk: Some(t),
                        next_trunks: order[pos + 1..].to_vec(),
                        target: trunk.target,
                        resume: None,
                    });
                }
                Err(limited.map_or(NotAdmitted::NoRoute, NotAdmitted::Limit))
            }
            Side::Outside => {
                let trunk = self.trunk_of(peer.addr.ip());
                if let Some(t) = trunk
                    && let Some(l) = self.admit_trunk(now, t)
                {
                    return Err(NotAdmitted::Limit(l));
                }
                let rules = trunk
                    .and_then(|t| self.cfg.trunks.get(t.index()))
                    .map_or(&NO_RULES, |t| &t.inbound);
                let did = crate::routing::normalize(&rules.called, digits);
                // A DID route first, then an AOR the PBX registered through the SBC
                // (register_relay.rs), then the PBX.
                let target = self
                    .cfg
                    .inbound
                    .iter()
                    .find(|r| r.matcher.matches(&did))
                    .map(|r| r.target)
                    .or_else(|| self.registered_target(now, digits))
                    .unwrap_or(self.cfg.pbx);
                Ok(Plan {
                    trunk,
                    next_trunks: Vec::new(),
                    target,
                    resume: None,
                })
            }
        }
    }

    /// Where a request outside any call goes: toward the carrier, the first trunk of the
    /// called number's route that is up (the first one if none is); toward the PBX, the
    /// inbound route of the DID. No admission control: these are not calls.
    pub(super) fn standalone_target(
        &mut self,
        peer: &Peer,
        user: &str,
    ) -> Option<(Target, Option<TrunkId>)> {
        let digits = user.split(';').next().unwrap_or_default();
        match peer.side {
            Side::Inside => {
                let order: Vec<TrunkId> = if self.cfg.routes.is_empty() {
                    (0..self.cfg.trunks.len()).map(TrunkId::new).collect()
                } else {
                    let route = self.cfg.routes.iter().find(|r| r.matcher.matches(digits))?;
                    route
                        .order(&mut self.rng)
                        .into_iter()
                        .map(TrunkId::new)
                        .collect()
                };
                let t = order
                    .iter()
                    .copied()
                    .find(|t| self.trunk_usable(*t))
                    .or_else(|| order.first().copied())?;
                self.cfg
                    .trunks
                    .get(t.index())
                    .map(|tr| (tr.target, Some(t)))
            }
            Side::Outside => {
                let rules = self
                    .trunk_of(peer.addr.ip())
                    .and_then(|t| self.cfg.trunks.get(t.index()))
                    .map_or(&NO_RULES, |t| &t.inbound);
                let did = crate::routing::normalize(&rules.called, digits);
                Some((
                    self.cfg
                        .inbound
                        .iter()
                        .find(|r| r.matcher.matches(&did))
                        .map_or(self.cfg.pbx, |r| r.target),
                    None,
                ))
            }
        }
    }

    /// The credentials of trunk `trunk`.
    pub(super) fn trunk_credentials(
        &self,
        trunk: Option<TrunkId>,
    ) -> Option<&crate::auth::Credentials> {
        self.cfg.trunks.get(trunk?.index())?.credentials.as_ref()
    }

    /// Marks trunk `index` (its position in `cfg.trunks`) usable or not (its OPTIONS health):
    /// new calls and failovers skip trunks that are down.
    pub fn set_trunk_usable(&mut self, index: usize, usable: bool) {
        if self.trunk_down.len() <= index {
            self.trunk_down.resize(index + 1, false);
        }
        self.trunk_down[index] = !usable;
    }

    /// Points trunk `index` (as in [`B2bua::set_trunk_usable`]) at a new proxy address, e.g.
    /// after a DNS lookup gave another one. Calls already on the trunk keep their address
    /// (their dialogs are bound to the peer they talk to); new calls and failovers use it.
    pub fn set_trunk_target(&mut self, index: usize, target: Target) {
        if let Some(t) = self.cfg.trunks.get_mut(index) {
            t.target = target;
        }
    }

    /// Points trunk `index` at its servers in order of preference (e.g. its DNS name's SRV
    /// targets): the first is its target, the others are tried in turn before the next trunk
    /// when a call's INVITE fails there. An empty list changes nothing.
    pub fn set_trunk_targets(&mut self, index: usize, targets: Vec<Target>) {
        if let Some(t) = self.cfg.trunks.get_mut(index)
            && let Some((first, rest)) = targets.split_first()
        {
            t.target = *first;
            t.alternates = rest.to_vec();
        }
    }

    /// Sets the addresses trunk `index` sends from besides its proxy address (e.g. every
    /// address its DNS name resolved to): calls from them count as calls from that trunk.
    pub fn set_trunk_sources(&mut self, index: usize, sources: Vec<std::net::IpAddr>) {
        if let Some(t) = self.cfg.trunks.get_mut(index) {
            t.sources = sources.into_iter().map(|ip| ip.to_canonical()).collect();
        }
    }

    /// Calls in progress per trunk (index as in `cfg.trunks`).
    pub fn trunk_calls(&self) -> &[u32] {
        &self.trunk_active
    }
}
