//! The table's side of warm pairs ([`crate::media::warm`]): keeping each relay address topped
//! up, drawing a new stream's pair, and the runtime's answers.

use std::net::{IpAddr, SocketAddr};

use super::MediaTable;
use crate::media::{MediaCommand, Side, warm::Answer};

/// At most this share (1 in N) of an address's pairs is held warm, whatever the
/// configuration asks: the rest stays in the pool for socketless streams and restores.
const MOST_HELD_OF: usize = 4;

/// Where a claimed pair came from ([`MediaTable::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claimed {
    /// The pool.
    Pool,
    /// The warm pairs: the runtime holds (or is binding) its sockets.
    Warm,
}

impl MediaTable {
    /// Keeps `pairs` port pairs per relay address bound ahead for new userspace streams (0:
    /// none; each stream's bind then runs when its offer arrives). At most a quarter of an
    /// address's pairs are held. The first pairs are asked for at once (drain the commands).
    pub fn set_warm_pairs(&mut self, pairs: usize) {
        self.warm.set_target(pairs);
        self.top_up();
    }

    /// The runtime's answer to [`MediaCommand::Prebind`] of `addr`: `bound`, or the pair goes
    /// back to the pool (and another is asked for at the next top-up).
    pub fn handle_prebound(&mut self, addr: SocketAddr, bound: bool) {
        if self.warm.answer(addr.ip(), addr.port(), bound) == Answer::Failed {
            // Back of the queue: it may be free again later.
            let _ = self.pools.free(addr.ip(), addr.port());
        }
    }

    /// Warm pairs bound and waiting, over every relay address.
    pub fn warm_ready(&self) -> usize {
        self.pools.addresses().map(|ip| self.warm.ready(ip)).sum()
    }

    /// Userspace streams whose pair was bound on their call's path for want of a warm one,
    /// and pairs that could not be bound ahead (both cumulative).
    pub fn warm_misses_and_failures(&self) -> (u64, u64) {
        (self.warm.misses(), self.warm.failures())
    }

    /// Asks the runtime to bind pairs ahead until every address holds its target. Runs after
    /// an allocation took pairs and on the tick, never from an answer: a range that cannot be
    /// bound costs at most one round of binds per tick, not a loop.
    pub(super) fn top_up(&mut self) {
        if self.warm.target() == 0 {
            return;
        }
        let ips: Vec<IpAddr> = self.pools.addresses().collect();
        for ip in ips {
            let most = self.pools.capacity_on(ip) / MOST_HELD_OF;
            let wanted = self
                .warm
                .wanted(ip)
                .min(most.saturating_sub(self.warm.held(ip)));
            for _ in 0..wanted {
                let Some(port) = self.pools.allocate_on(ip, &mut self.rng) else {
                    break;
                };
                self.warm.asked(ip, port);
                self.commands.push_back(MediaCommand::Prebind {
                    addr: SocketAddr::new(ip, port),
                });
            }
        }
    }

    /// A pair on `leg`'s side for a new stream, or `None` when the side is full. A stream
    /// with `sockets` takes a warm pair (from the address with the most free pairs among those
    /// holding one, the pool's own spreading), else it is a miss and draws from the pool. A
    /// socketless stream draws from the pool, and takes a warm pair only when the pool is
    /// empty (whose sockets then go: the kernel relays it).
    pub(super) fn draw(&mut self, leg: Side, sockets: bool) -> Option<(IpAddr, u16)> {
        let side = self.settings.side(leg);
        if sockets {
            let mut best: Option<(IpAddr, usize)> = None;
            for ip in side.iter().map(|a| a.bind) {
                let free = self.pools.available_on(ip);
                if self.warm.ready(ip) > 0 && best.is_none_or(|(_, most)| free > most) {
                    best = Some((ip, free));
                }
            }
            if let Some((ip, _)) = best
                && let Some(port) = self.warm.take(ip)
            {
                return Some((ip, port));
            }
            if self.warm.target() > 0 {
                self.warm.missed();
            }
            return self.pools.allocate(side, &mut self.rng);
        }
        if let Some(pair) = self.pools.allocate(side, &mut self.rng) {
            return Some(pair);
        }
        let ip = side
            .iter()
            .map(|a| a.bind)
            .find(|&ip| self.warm.ready(ip) > 0)?;
        let port = self.warm.take(ip)?;
        self.commands.push_back(MediaCommand::Unbind {
            addr: SocketAddr::new(ip, port),
        });
        Some((ip, port))
    }

    /// Takes the very pair of `port` on `ip` for a stream that must have it (a restored or
    /// adopted one, relayed with sockets): from the pool, or from the warm pairs, whose sockets
    /// its bind then takes. `None` if another stream has it.
    pub(super) fn claim(&mut self, ip: IpAddr, port: u16) -> Option<Claimed> {
        if self.pools.reserve(ip, port) {
            Some(Claimed::Pool)
        } else if self.warm.claim(ip, port) {
            Some(Claimed::Warm)
        } else {
            None
        }
    }

    /// Undoes [`Self::claim`] (the stream's other pair was taken): the pair goes to the pool,
    /// and the sockets of a warm one are given up.
    pub(super) fn unclaim(&mut self, ip: IpAddr, port: u16, from: Claimed) {
        let _ = self.pools.free(ip, port);
        if from == Claimed::Warm {
            self.commands.push_back(MediaCommand::Unbind {
                addr: SocketAddr::new(ip, port),
            });
        }
    }

    /// Whether every pair of every address is in the pool or held warm (a leak check).
    pub(super) fn ports_all_back(&self) -> bool {
        self.pools
            .per_address()
            .all(|(ip, free, total)| free + self.warm.held(ip) == total)
    }

    /// Warm pairs bound and waiting on `leg`'s side (free for new streams).
    pub(super) fn warm_on(&self, leg: Side) -> usize {
        self.settings
            .side(leg)
            .iter()
            .map(|a| self.warm.ready(a.bind))
            .sum()
    }
}
