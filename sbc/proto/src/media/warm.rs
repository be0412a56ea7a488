//! Relay port pairs bound ahead of the streams that will use them.
//!
//! A stream relayed in userspace needs sockets on its relay ports. Bound when its offer
//! arrives, the bind sits on the call's path, and a port that another program holds fails
//! after the table chose it: the stream must move to another pair before its SDP leaves, so
//! the call layer can only learn its endpoints once the runtime has tried. With warm pairs the
//! runtime keeps a few randomly drawn pairs per relay address bound ahead
//! ([`MediaCommand::Prebind`](super::MediaCommand::Prebind), answered through
//! [`MediaTable::handle_prebound`](super::MediaTable::handle_prebound)), and a new userspace
//! stream takes a pair that is known to be bound: its endpoints are final when the table
//! returns them, and no bind runs for it.
//!
//! The pairs are drawn from the port pool like any other (at random, from the older half of
//! the free pairs), so holding some ahead makes the next call's ports no more predictable.
//! While held they are not in the pool, but they count as free: a new stream can have them.

use std::{collections::VecDeque, net::IpAddr};

/// Warm pairs of one relay address.
#[derive(Debug, Clone)]
struct Address {
    ip: IpAddr,
    /// Bound and waiting for a stream (RTP ports), oldest first.
    ready: VecDeque<u16>,
    /// Asked of the runtime and not yet answered.
    asked: Vec<u16>,
}

/// The warm pairs of every relay address, and how many each should have.
#[derive(Debug, Clone)]
pub struct WarmPairs {
    target: usize,
    addresses: Vec<Address>,
    /// Userspace streams that found no warm pair on their side and were bound on their call's
    /// path instead (cumulative).
    misses: u64,
    /// Pairs the runtime could not bind ahead (cumulative).
    failures: u64,
}

/// What an answer to a [`WarmPairs::asked`] pair means for the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The pair is bound and waits for a stream.
    Ready,
    /// The pair could not be bound: it goes back to the pool.
    Failed,
    /// The pair was not (or no longer) asked for: a stream claimed it meanwhile, or the answer
    /// is a duplicate. Nothing changes.
    Unexpected,
}

impl WarmPairs {
    /// No warm pairs yet, none wanted, on the relay addresses `ips`.
    pub fn new(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            target: 0,
            addresses: ips
                .into_iter()
                .map(|ip| Address {
                    ip,
                    ready: VecDeque::new(),
                    asked: Vec::new(),
                })
                .collect(),
            misses: 0,
            failures: 0,
        }
    }

    /// How many pairs each relay address should hold bound ahead.
    pub fn set_target(&mut self, pairs: usize) {
        self.target = pairs;
    }

    /// The pairs each address should hold.
    pub fn target(&self) -> usize {
        self.target
    }

    /// How many more pairs `ip` should be asked for.
    pub fn wanted(&self, ip: IpAddr) -> usize {
        self.address(ip).map_or(0, |a| {
            self.target.saturating_sub(a.ready.len() + a.asked.len())
        })
    }

    /// `port` on `ip` was drawn from the pool and the runtime asked to bind it ahead.
    pub fn asked(&mut self, ip: IpAddr, port: u16) {
        if let Some(a) = self.address_mut(ip) {
            a.asked.push(port);
        }
    }

    /// The runtime's answer for `port` on `ip`.
    pub fn answer(&mut self, ip: IpAddr, port: u16, bound: bool) -> Answer {
        let Some(a) = self.address_mut(ip) else {
            return Answer::Unexpected;
        };
        let Some(i) = a.asked.iter().position(|&p| p == port) else {
            return Answer::Unexpected;
        };
        a.asked.swap_remove(i);
        if bound {
            a.ready.push_back(port);
            Answer::Ready
        } else {
            self.failures += 1;
            Answer::Failed
        }
    }

    /// Takes the oldest bound pair of `ip`.
    pub fn take(&mut self, ip: IpAddr) -> Option<u16> {
        self.address_mut(ip)?.ready.pop_front()
    }

    /// Takes `port` on `ip` for a stream that must have that very pair (a restored or adopted
    /// one), whether bound or still asked for. False if it is not held here.
    pub fn claim(&mut self, ip: IpAddr, port: u16) -> bool {
        let Some(a) = self.address_mut(ip) else {
            return false;
        };
        if let Some(i) = a.ready.iter().position(|&p| p == port) {
            a.ready.remove(i);
            return true;
        }
        if let Some(i) = a.asked.iter().position(|&p| p == port) {
            // Its answer will be `Unexpected`; the stream's own bind takes the pair.
            a.asked.swap_remove(i);
            return true;
        }
        false
    }

    /// Bound pairs waiting on `ip`.
    pub fn ready(&self, ip: IpAddr) -> usize {
        self.address(ip).map_or(0, |a| a.ready.len())
    }

    /// Pairs held on `ip`, bound or asked for (out of the pool).
    pub fn held(&self, ip: IpAddr) -> usize {
        self.address(ip)
            .map_or(0, |a| a.ready.len() + a.asked.len())
    }

    /// Counts a userspace stream that found no bound pair.
    pub fn missed(&mut self) {
        self.misses += 1;
    }

    /// Userspace streams bound on their call's path for want of a warm pair (cumulative).
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Pairs that could not be bound ahead (cumulative).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    fn address(&self, ip: IpAddr) -> Option<&Address> {
        self.addresses.iter().find(|a| a.ip == ip)
    }

    fn address_mut(&mut self, ip: IpAddr) -> Option<&mut Address> {
        self.addresses.iter_mut().find(|a| a.ip == ip)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));

    #[test]
    fn an_address_is_topped_up_to_its_target_counting_pairs_asked_for() {
        let mut w = WarmPairs::new([A, B]);
        assert_eq!(w.wanted(A), 0);
        w.set_target(2);
        assert_eq!(w.wanted(A), 2);
        w.asked(A, 10_000);
        assert_eq!((w.wanted(A), w.wanted(B)), (1, 2));
        // Asked is not bound: nothing to take yet.
        assert_eq!(w.take(A), None);
        assert_eq!(w.answer(A, 10_000, true), Answer::Ready);
        assert_eq!((w.ready(A), w.held(A), w.wanted(A)), (1, 1, 1));
        assert_eq!(w.take(A), Some(10_000));
        assert_eq!((w.held(A), w.wanted(A)), (0, 2));
        // An unknown address wants nothing and holds nothing.
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!((w.wanted(c), w.held(c)), (0, 0));
    }

    #[test]
    fn a_failed_or_unasked_answer_holds_nothing() {
        let mut w = WarmPairs::new([A]);
        w.set_target(4);
        w.asked(A, 10_000);
        w.asked(A, 10_002);
        assert_eq!(w.answer(A, 10_000, false), Answer::Failed);
        assert_eq!(w.failures(), 1);
        // Twice, or never asked: the pool's bookkeeping must not change.
        assert_eq!(w.answer(A, 10_000, true), Answer::Unexpected);
        assert_eq!(w.answer(A, 10_004, true), Answer::Unexpected);
        assert_eq!(w.answer(B, 10_002, true), Answer::Unexpected);
        assert_eq!(w.held(A), 1);
    }

    #[test]
    fn a_claimed_pair_leaves_whether_bound_or_asked() {
        let mut w = WarmPairs::new([A]);
        w.set_target(4);
        w.asked(A, 10_000);
        w.asked(A, 10_002);
        assert_eq!(w.answer(A, 10_000, true), Answer::Ready);
        assert!(w.claim(A, 10_000));
        assert!(w.claim(A, 10_002));
        assert!(!w.claim(A, 10_002));
        assert_eq!(w.held(A), 0);
        // The claimed pair's late answer changes nothing.
        assert_eq!(w.answer(A, 10_002, true), Answer::Unexpected);
        assert_eq!(w.take(A), None);
    }
}
