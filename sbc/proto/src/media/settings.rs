//! What the media table needs from the configuration: the relay addresses, the port range, the
//! latching rules, the stream limit and the media timeouts.

use std::{net::IpAddr, time::Duration};

use super::{Side, latch::Rules};

/// One relay address of a side: bound locally, and written into SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideAddress {
    /// Address the relay sockets bind to (and XDP rewrites to).
    pub bind: IpAddr,
    /// Address put into SDP (differs from `bind` behind 1:1 NAT).
    pub advertised: IpAddr,
}

/// A side's relay addresses: at least one, all of one address family (configuration
/// validation checks both). Each address has the whole port range, so a side relays
/// `addresses × pairs` streams at once (one address bounds a machine to ~30,000 calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideAddresses {
    list: Vec<SideAddress>,
}

impl SideAddresses {
    /// The addresses in configuration order; `None` when `list` is empty (a side needs one).
    pub fn new(list: Vec<SideAddress>) -> Option<Self> {
        (!list.is_empty()).then_some(Self { list })
    }

    /// The first address: the side's address family, and the one a disabled stream names.
    pub fn first(&self) -> SideAddress {
        // `new` refuses an empty list.
        self.list[0]
    }

    /// Every address, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = SideAddress> + '_ {
        self.list.iter().copied()
    }

    /// Whether the side is IPv4 (every address shares the first one's family).
    pub fn is_ipv4(&self) -> bool {
        self.first().bind.is_ipv4()
    }

    /// Whether `ip` is one of the side's bind addresses.
    pub fn binds(&self, ip: IpAddr) -> bool {
        self.list.iter().any(|a| a.bind == ip)
    }

    /// What SDP names for relay ports bound to `bind` (`bind` itself if it is not one of the
    /// side's addresses, which the table never asks for).
    pub fn advertised(&self, bind: IpAddr) -> IpAddr {
        self.list
            .iter()
            .find(|a| a.bind == bind)
            .map_or(bind, |a| a.advertised)
    }

    /// The bind address SDP names as `advertised` (restoring a snapshot that recorded only
    /// what SDP said).
    pub fn by_advertised(&self, advertised: IpAddr) -> Option<IpAddr> {
        self.list
            .iter()
            .find(|a| a.advertised == advertised)
            .map(|a| a.bind)
    }
}

impl From<SideAddress> for SideAddresses {
    fn from(a: SideAddress) -> Self {
        Self { list: vec![a] }
    }
}

/// The relay's settings (`[inside]`, `[outside]`, `[media]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Inside relay addresses.
    pub inside: SideAddresses,
    /// Outside relay addresses.
    pub outside: SideAddresses,
    /// Lowest relay port (of every relay address).
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Strict-source latching.
    pub strict_source: bool,
    /// How long after an answer or re-offer another allowed source may take a latch.
    pub relatch_window: Duration,
    /// Most `m=` lines in one offer (488 beyond).
    pub max_streams: usize,
    /// Media timeout; `None` disables it.
    pub timeout: Option<Duration>,
    /// Media timeout while on hold; `None` disables it.
    pub hold_timeout: Option<Duration>,
    /// Most DTMF digits waiting per stream and leg for generation (`[media] dtmf_queue`).
    pub dtmf_queue: usize,
}

impl RelaySettings {
    /// The latching rules in force.
    pub fn rules(&self) -> Rules {
        Rules {
            strict: self.strict_source,
            relatch_window: self.relatch_window,
        }
    }

    /// The relay addresses of `leg`'s side.
    pub fn side(&self, leg: Side) -> &SideAddresses {
        match leg {
            Side::Inside => &self.inside,
            Side::Outside => &self.outside,
        }
    }

    /// Every distinct bind address of both sides, inside first: one port pool each, since a
    /// port can only be bound once per address (both sides share the loopback default).
    pub fn bind_addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for a in self.inside.iter().chain(self.outside.iter()) {
            if !out.contains(&a.bind) {
                out.push(a.bind);
            }
        }
        out
    }

    /// Port pairs of one relay address: `(p, p + 1)` with `p` even and within the range.
    pub fn pairs_per_address(&self) -> u32 {
        let first = u32::from(self.port_min) + u32::from(self.port_min % 2);
        let max = u32::from(self.port_max);
        if max > first {
            (max - first).div_ceil(2)
        } else {
            0
        }
    }

    /// Fast-path mappings the port ranges can ever need: one per relay port (RTP and RTCP, each
    /// direction's ingress) per relay address. The XDP maps and their statistics slots are
    /// sized to this, so a socketless stream can never find its ports but no mapping slot
    /// (which would leave it with neither a socket nor a kernel path).
    pub fn fast_path_mappings(&self) -> u32 {
        let addresses = u32::try_from(self.bind_addresses().len()).unwrap_or(u32::MAX);
        self.pairs_per_address()
            .saturating_mul(2)
            .saturating_mul(addresses)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn addr(last: u8, advertised: u8) -> SideAddress {
        SideAddress {
            bind: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            advertised: IpAddr::V4(Ipv4Addr::new(203, 0, 113, advertised)),
        }
    }

    fn settings(inside: Vec<SideAddress>, outside: Vec<SideAddress>) -> RelaySettings {
        RelaySettings {
            inside: SideAddresses::new(inside).expect("inside"),
            outside: SideAddresses::new(outside).expect("outside"),
            port_min: 6_000,
            port_max: 65_535,
            strict_source: true,
            relatch_window: Duration::ZERO,
            max_streams: 4,
            timeout: None,
            hold_timeout: None,
            dtmf_queue: 4,
        }
    }

    #[test]
    fn an_empty_side_is_refused() {
        assert_eq!(SideAddresses::new(Vec::new()), None);
    }

    #[test]
    fn mappings_count_every_distinct_address() {
        // 6000-65535: 29,768 pairs per address, two mappings (RTP, RTCP) per pair.
        let one = settings(vec![addr(1, 1)], vec![addr(1, 1)]);
        assert_eq!(one.pairs_per_address(), 29_768);
        assert_eq!(one.fast_path_mappings(), 2 * 29_768);
        let two_sides = settings(vec![addr(1, 1)], vec![addr(2, 2)]);
        assert_eq!(two_sides.fast_path_mappings(), 4 * 29_768);
        let four = settings(vec![addr(1, 1), addr(3, 3)], vec![addr(2, 2), addr(4, 4)]);
        assert_eq!(four.bind_addresses().len(), 4);
        assert_eq!(four.fast_path_mappings(), 8 * 29_768);
    }

    #[test]
    fn each_bind_has_its_own_advertised_address() {
        let s = settings(vec![addr(1, 11), addr(3, 13)], vec![addr(2, 12)]);
        let second = addr(3, 13);
        assert_eq!(s.inside.advertised(second.bind), second.advertised);
        assert_eq!(s.inside.by_advertised(second.advertised), Some(second.bind));
        assert!(s.inside.binds(second.bind));
        assert!(!s.outside.binds(second.bind));
        assert_eq!(s.side(Side::Outside).first(), addr(2, 12));
    }
}
