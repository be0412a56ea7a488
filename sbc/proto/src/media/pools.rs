//! The relay port pools of every relay address: one [`PortPool`] per distinct bind address,
//! and the choice of address for a new stream.
//!
//! A side with several relay addresses (`media_addresses`) takes each new stream's pair from
//! the address with the most free pairs (the first on a tie), so that load spreads over the
//! addresses and a full one is skipped until pairs come back. A stream's RTP and RTCP are on
//! one address (the pair), and so is the stream on one side: the SDP names one `c=` address.

use std::net::IpAddr;

use super::{
    pool::{PoolError, PortPool},
    settings::{RelaySettings, SideAddresses},
};
use crate::ids::Rng;

/// The pools, one per distinct bind address of both sides.
#[derive(Debug, Clone)]
pub struct RelayPools {
    pools: Vec<(IpAddr, PortPool)>,
}

impl RelayPools {
    /// A full pool of the port range for every bind address of `settings`.
    pub fn new(settings: &RelaySettings) -> Self {
        Self {
            pools: settings
                .bind_addresses()
                .into_iter()
                .map(|ip| (ip, PortPool::new(settings.port_min, settings.port_max)))
                .collect(),
        }
    }

    /// Takes a free pair on one of `side`'s addresses (the one with the most free pairs);
    /// returns (bind address, RTP port), or `None` when every address of the side is full.
    pub fn allocate(&mut self, side: &SideAddresses, rng: &mut Rng) -> Option<(IpAddr, u16)> {
        let mut best: Option<(usize, usize)> = None;
        for a in side.iter() {
            let Some(i) = self.index(a.bind) else {
                continue;
            };
            let free = self.pools[i].1.available();
            if free > 0 && best.is_none_or(|(_, most)| free > most) {
                best = Some((i, free));
            }
        }
        let (i, _) = best?;
        let (ip, pool) = &mut self.pools[i];
        pool.allocate(rng).map(|port| (*ip, port))
    }

    /// Takes a free pair on the relay address `bind`; returns its RTP port, or `None` when
    /// that address is full or not a relay address.
    pub fn allocate_on(&mut self, bind: IpAddr, rng: &mut Rng) -> Option<u16> {
        let i = self.index(bind)?;
        self.pools[i].1.allocate(rng)
    }

    /// Free pairs on `bind` (0 for an address that is not a relay address).
    pub fn available_on(&self, bind: IpAddr) -> usize {
        self.index(bind).map_or(0, |i| self.pools[i].1.available())
    }

    /// Pairs in total on `bind` (0 for an address that is not a relay address).
    pub fn capacity_on(&self, bind: IpAddr) -> usize {
        self.index(bind).map_or(0, |i| self.pools[i].1.capacity())
    }

    /// The relay bind addresses, one pool each.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.pools.iter().map(|(ip, _)| *ip)
    }

    /// Returns the pair of `rtp_port` on `bind` to its pool.
    pub fn free(&mut self, bind: IpAddr, rtp_port: u16) -> Result<(), PoolError> {
        let i = self.index(bind).ok_or(PoolError::Foreign(rtp_port))?;
        self.pools[i].1.free(rtp_port)
    }

    /// Marks the pair of `rtp_port` on `bind` as allocated (adoption and restore after a
    /// restart). False if it is not a free pair of that address.
    pub fn reserve(&mut self, bind: IpAddr, rtp_port: u16) -> bool {
        self.index(bind)
            .is_some_and(|i| self.pools[i].1.reserve(rtp_port))
    }

    /// Free pairs over `side`'s addresses.
    pub fn available(&self, side: &SideAddresses) -> usize {
        self.over(side, PortPool::available)
    }

    /// Pairs in total over `side`'s addresses.
    pub fn capacity(&self, side: &SideAddresses) -> usize {
        self.over(side, PortPool::capacity)
    }

    /// Free and total pairs of every bind address.
    pub fn per_address(&self) -> impl Iterator<Item = (IpAddr, usize, usize)> + '_ {
        self.pools
            .iter()
            .map(|(ip, p)| (*ip, p.available(), p.capacity()))
    }

    /// Whether every pair of every address is free (a leak check).
    pub fn all_free(&self) -> bool {
        self.pools
            .iter()
            .all(|(_, p)| p.available() == p.capacity())
    }

    fn over(&self, side: &SideAddresses, f: impl Fn(&PortPool) -> usize) -> usize {
        self.pools
            .iter()
            .filter(|(ip, _)| side.binds(*ip))
            .map(|(_, p)| f(p))
            .sum()
    }

    fn index(&self, bind: IpAddr) -> Option<usize> {
        self.pools.iter().position(|(ip, _)| *ip == bind)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, time::Duration};

    use super::*;
    use crate::media::settings::SideAddress;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1));

    fn side(binds: &[IpAddr]) -> SideAddresses {
        SideAddresses::new(
            binds
                .iter()
                .map(|&bind| SideAddress {
                    bind,
                    advertised: bind,
                })
                .collect(),
        )
        .expect("non-empty")
    }

    /// Two pairs per address (20000-20003): inside on A and B, outside on C.
    fn settings() -> RelaySettings {
        RelaySettings {
            inside: side(&[A, B]),
            outside: side(&[C]),
            port_min: 20_000,
            port_max: 20_003,
            strict_source: true,
            relatch_window: Duration::ZERO,
            max_streams: 4,
            timeout: None,
            hold_timeout: None,
            dtmf_queue: 4,
        }
    }

    #[test]
    fn a_full_address_hands_over_to_the_next() {
        let s = settings();
        let mut pools = RelayPools::new(&s);
        let mut rng = Rng::from_test_seed(3);
        assert_eq!(pools.capacity(&s.inside), 4);
        assert_eq!(pools.capacity(&s.outside), 2);
        let got: Vec<(IpAddr, u16)> =
            std::iter::from_fn(|| pools.allocate(&s.inside, &mut rng)).collect();
        // Every pair of both inside addresses, none of the outside one.
        assert_eq!(got.len(), 4);
        assert_eq!(got.iter().filter(|(ip, _)| *ip == A).count(), 2);
        assert_eq!(got.iter().filter(|(ip, _)| *ip == B).count(), 2);
        assert_eq!(pools.available(&s.inside), 0);
        assert_eq!(pools.available(&s.outside), 2);
        // A pair freed on B is the only one left: the next stream goes there.
        let (ip, port) = got.iter().copied().find(|(ip, _)| *ip == B).expect("B");
        pools.free(ip, port).expect("free");
        assert_eq!(pools.allocate(&s.inside, &mut rng), Some((B, port)));
        assert_eq!(pools.allocate(&s.inside, &mut rng), None);
    }

    #[test]
    fn streams_spread_over_the_addresses() {
        let s = settings();
        let mut pools = RelayPools::new(&s);
        let mut rng = Rng::from_test_seed(4);
        let first = pools.allocate(&s.inside, &mut rng).expect("first");
        let second = pools.allocate(&s.inside, &mut rng).expect("second");
        // Ties go to the first address; then the emptier one wins.
        assert_eq!(first.0, A);
        assert_eq!(second.0, B);
    }

    #[test]
    fn pairs_are_per_address() {
        let s = settings();
        let mut pools = RelayPools::new(&s);
        // The same port on two addresses is two pairs.
        assert!(pools.reserve(A, 20_000));
        assert!(pools.reserve(B, 20_000));
        assert!(!pools.reserve(A, 20_000));
        assert!(!pools.reserve(IpAddr::V4(Ipv4Addr::LOCALHOST), 20_000));
        assert_eq!(pools.available(&s.inside), 2);
        assert_eq!(pools.free(C, 20_000), Err(PoolError::DoubleFree(20_000)));
        assert_eq!(
            pools.free(IpAddr::V4(Ipv4Addr::LOCALHOST), 20_000),
            Err(PoolError::Foreign(20_000))
        );
        pools.free(A, 20_000).expect("free A");
        pools.free(B, 20_000).expect("free B");
        assert!(pools.all_free());
    }

    #[test]
    fn sides_sharing_an_address_share_its_pool() {
        let mut s = settings();
        s.outside = side(&[A]);
        let mut pools = RelayPools::new(&s);
        let mut rng = Rng::from_test_seed(5);
        assert_eq!(pools.per_address().count(), 2);
        let (ip, _) = pools.allocate(&s.outside, &mut rng).expect("outside");
        assert_eq!(ip, A);
        assert_eq!(pools.available(&s.inside), 3);
    }
}
