//! The media border policy from the configuration: which networks may send a side's or a
//! trunk's media (see [`super::latch`]) and how many relay ports a trunk's calls may hold.

use std::{collections::HashMap, sync::Arc};

use super::{MediaPeers, Side, latch::Allowed};
use ipnet::IpNet;

/// A trunk's media settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkMedia {
    /// `[[trunk]] media_networks`.
    pub networks: Arc<[IpNet]>,
    /// `[[trunk]] max_media_ports`; None: the default quota.
    pub max_ports: Option<usize>,
}

/// Who may send media on each side, and the trunks' port quotas. Applies to new calls; a live
/// configuration change replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaPolicy {
    /// `[pbx] media_networks`.
    pub pbx_networks: Arc<[IpNet]>,
    /// By trunk name.
    pub trunks: HashMap<String, TrunkMedia>,
}

impl MediaPolicy {
    /// The sources allowed on `leg` of a call with `peers` (besides the leg's SDP address).
    pub fn allowed(&self, leg: Side, peers: &MediaPeers) -> Allowed {
        let networks = match leg {
            Side::Inside => self.pbx_networks.clone(),
            Side::Outside => peers
                .trunk
                .as_ref()
                .and_then(|t| self.trunks.get(t))
                .map_or_else(|| Arc::from([]), |t| t.networks.clone()),
        };
        Allowed {
            signaling: peers.of(leg),
            networks,
        }
    }

    /// The relay ports `trunk`'s calls may hold on the outside; `default` unless configured.
    pub fn quota(&self, trunk: &str, default: usize) -> usize {
        self.trunks
            .get(trunk)
            .and_then(|t| t.max_ports)
            .unwrap_or(default)
    }
}

/// Relay ports held per trunk: by this table's calls, and (with signaling shards) in the
/// count every shard's table takes from, against which the limit is checked.
#[derive(Debug, Default)]
pub struct Quotas {
    held: HashMap<String, usize>,
    /// The ledger of every shard's table, and the counts of the trunks this table has met
    /// (found once per trunk: then no lock).
    shared: Option<(
        super::share::SharedQuotas,
        HashMap<String, super::share::TrunkPorts>,
    )>,
}

impl Quotas {
    /// Quotas checked against `shared`, the ledger of every shard's table.
    pub fn shared(shared: super::share::SharedQuotas) -> Self {
        Self {
            held: HashMap::new(),
            shared: Some((shared, HashMap::new())),
        }
    }

    /// The shared count of `trunk`, found in the ledger the first time.
    fn counter(&mut self, trunk: &str) -> Option<&super::share::TrunkPorts> {
        let (ledger, known) = self.shared.as_mut()?;
        if !known.contains_key(trunk) {
            let c = super::share::TrunkPorts::new(ledger.counter(trunk));
            known.insert(trunk.to_owned(), c);
        }
        known.get(trunk)
    }

    /// Takes `ports` for `trunk` if that keeps it within `limit`; returns whether it did.
    pub fn take(&mut self, trunk: &str, ports: usize, limit: usize) -> bool {
        let held = self.held.get(trunk).copied().unwrap_or(0);
        let fits = match self.counter(trunk) {
            Some(all) => all.take(ports, limit),
            None => held.saturating_add(ports) <= limit,
        };
        if fits {
            self.held.insert(trunk.to_owned(), held + ports);
        }
        fits
    }

    /// Takes `ports` for `trunk` whatever its limit (a failover moving an existing call).
    pub fn force(&mut self, trunk: &str, ports: usize) {
        *self.held.entry(trunk.to_owned()).or_default() += ports;
        if let Some(all) = self.counter(trunk) {
            all.force(ports);
        }
    }

    /// Gives `ports` of `trunk` back (no more than this table's calls hold).
    pub fn give(&mut self, trunk: &str, ports: usize) {
        let Some(h) = self.held.get_mut(trunk) else {
            return;
        };
        let given = ports.min(*h);
        *h -= given;
        if *h == 0 {
            self.held.remove(trunk);
        }
        if let Some(all) = self.counter(trunk) {
            all.give(given);
        }
    }

    /// Whether no trunk holds ports (of this table's calls).
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Ports `trunk`'s calls hold.
    pub fn held(&self, trunk: &str) -> usize {
        self.held.get(trunk).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_holds_and_frees() {
        let mut q = Quotas::default();
        assert!(q.take("c", 4, 6));
        assert!(!q.take("c", 4, 6), "8 > 6");
        assert!(q.take("other", 4, 6), "per trunk");
        q.give("c", 4);
        assert!(q.take("c", 6, 6));
        assert_eq!(q.held("c"), 6);
    }

    #[test]
    fn networks_follow_side_and_trunk() {
        let mut p = MediaPolicy {
            pbx_networks: vec!["10.0.0.0/8".parse().expect("net")].into(),
            trunks: HashMap::new(),
        };
        p.trunks.insert(
            "c".into(),
            TrunkMedia {
                networks: vec!["192.0.2.0/24".parse().expect("net")].into(),
                max_ports: Some(8),
            },
        );
        let peers = MediaPeers {
            inside: Some("10.1.1.1".parse().expect("ip")),
            outside: Some("198.51.100.1".parse().expect("ip")),
            trunk: Some("c".into()),
        };
        let out = p.allowed(Side::Outside, &peers);
        assert!(out.permits("192.0.2.9".parse().expect("ip"), None));
        assert!(out.permits("198.51.100.1".parse().expect("ip"), None));
        assert!(!out.permits("10.1.1.1".parse().expect("ip"), None));
        let inside = p.allowed(Side::Inside, &peers);
        assert!(inside.permits("10.200.0.1".parse().expect("ip"), None));
        assert_eq!(p.quota("c", 100), 8);
        assert_eq!(p.quota("unknown", 100), 100);
    }
}
