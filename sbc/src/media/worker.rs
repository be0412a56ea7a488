//! The userspace relay's workers: a fixed number of threads (`media.relay_workers`), each with
//! its own epoll set over the sockets of the streams the executor gives it. One wake-up serves
//! every ready socket of the worker: each is drained with one `recvmmsg` into a shared arena,
//! each socket's packets are decided holding only their stream's packet path (the media
//! table's lock is taken only for what a packet changed: a latch, a digit), and each socket's
//! share goes on with `sendmmsg` (`super::relay`). Per-stream tokio tasks used to wake once
//! per packet at telephony rates (50 packets/s per stream); here the wake-up, the lock and the
//! readiness bookkeeping are paid once for all streams that became ready together.
//!
//! The executor talks to a worker with [`Order`]s over a channel and rings the worker's
//! eventfd; sockets of removed streams go back to the executor for reuse.

use std::{
    collections::HashMap,
    io,
    os::fd::AsFd as _,
    sync::{Arc, Weak},
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::{
    errno::Errno,
    sys::{
        epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
        eventfd::EventFd,
    },
};
use sbc_proto::{
    b2bua::Rng,
    media::{RelayPort, StreamKey, latch::Rules, path::PathHandle},
    net::Side,
};

use super::{
    mailbox::Mailbox,
    relay::{self, Control, Received, Sockets},
};
use crate::{metrics::MediaMetrics, sys::udp_batch::Datagram};

/// Datagrams one wake-up decides under one lock (the arena's size): enough for a full
/// `recvmmsg` batch from each of several sockets; more ready sockets take further passes of
/// the same wake-up.
const ARENA: usize = 128;
/// Readiness events fetched per `epoll_wait`.
const EVENTS: usize = 256;
/// The eventfd's token (socket tokens are `slot * 4 + leg * 2 + port`).
const BELL: u64 = u64::MAX;

/// What the executor asks of a worker.
#[derive(Debug)]
pub(crate) enum Order {
    /// Relay `stream` on these sockets from now on.
    Add {
        /// The stream.
        stream: StreamKey,
        /// Its packet path, shared with the table.
        path: PathHandle,
        /// Its sockets, `[leg][port]`.
        sockets: Sockets,
    },
    /// The stream ended: stop watching its sockets and park them in the executor.
    Remove(StreamKey),
    /// The stream has generated packets of its own: re-read when the next is due.
    Wake(StreamKey),
}

/// The executor's handle on one worker thread. Dropping it ends the thread (after its
/// current wake-up); the thread drops the sockets it still has.
#[derive(Debug)]
pub(crate) struct Worker {
    mailbox: Mailbox<Order>,
    /// Streams given to it and not removed (the executor balances on this).
    pub streams: usize,
}

impl Worker {
    /// Starts worker `index` of signaling shard `shard` relaying for `core` under the latching
    /// `rules`.
    pub fn spawn(
        (shard, index): (u16, usize),
        core: Weak<dyn Control>,
        rules: Rules,
        poll: Duration,
        metrics: MediaMetrics,
    ) -> io::Result<Self> {
        let (mailbox, inbox) = Mailbox::new()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            inbox.bell.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, BELL),
        )?;
        let mut state = State {
            epoll,
            bell: inbox.bell,
            orders: inbox.orders,
            core,
            rules,
            poll,
            last_found: None,
            rng: crate::entropy::rng(),
            metrics,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            next_due: None,
            arena: vec![Datagram::default(); ARENA].into_boxed_slice(),
            events: vec![EpollEvent::empty(); EVENTS],
        };
        thread::Builder::new()
            .name(if shard == 0 {
                format!("sbc-relay-{index}")
            } else {
                format!("sbc-relay-{shard}.{index}")
            })
            .spawn(move || state.run())?;
        Ok(Self {
            mailbox,
            streams: 0,
        })
    }

    /// Hands `order` to the worker and wakes it. (Dropping the worker ends its thread after
    /// the current wake-up; the thread drops the sockets it still has.)
    pub fn send(&self, order: Order) {
        self.mailbox.send(order);
    }

    /// Hands a new stream to the worker without waking it, when it already relays streams
    /// (`busy`): it takes the stream within [`QUIET_WITHIN`], at its next wake-up. A new
    /// stream's first packets come after its SDP reached the peers, and until the worker takes
    /// it they wait in the sockets' queues; a wake-up per call set-up would instead cost two
    /// context switches on the CPU the signaling runs on. An idle worker may sleep without a
    /// deadline, so its first stream wakes it.
    pub fn add(&self, order: Order, busy: bool) {
        if busy {
            self.mailbox.send_quiet(order);
        } else {
            self.mailbox.send(order);
        }
    }
}

/// One stream a worker relays.
struct Entry {
    stream: StreamKey,
    path: PathHandle,
    sockets: Sockets,
    /// When its next generated packet is due.
    due: Option<Instant>,
}

/// A worker thread's state.
struct State {
    epoll: Epoll,
    bell: Arc<EventFd>,
    orders: Receiver<Order>,
    core: Weak<dyn Control>,
    /// The latching policy's rules (fixed at start).
    rules: Rules,
    /// Interrupt moderation (`media.relay_poll_us`; zero: a wake-up per ready socket).
    poll: Duration,
    /// When the last wake-up that found datagrams began.
    last_found: Option<Instant>,
    /// Random numbers of generated DTMF events (the worker's own: no lock to share one).
    rng: Rng,
    metrics: MediaMetrics,
    /// Streams by slot (a socket's token names its slot).
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    index: HashMap<StreamKey, usize>,
    /// The earliest `due` of all entries.
    next_due: Option<Instant>,
    /// Datagram buffers shared by every socket of the worker, reused for each wake-up.
    arena: Box<[Datagram]>,
    events: Vec<EpollEvent>,
}

/// A ready socket's place in the arena during one pass.
#[derive(Clone, Copy)]
struct Run {
    slot: usize,
    leg: Side,
    port: RelayPort,
    start: usize,
    len: usize,
}

fn token(slot: usize, leg: Side, port: RelayPort) -> u64 {
    (slot as u64) * 4 + (leg.index() as u64) * 2 + port as u64
}

fn untoken(token: u64) -> (usize, Side, RelayPort) {
    let slot = usize::try_from(token / 4).unwrap_or(usize::MAX);
    let leg = if token & 2 == 0 {
        Side::Inside
    } else {
        Side::Outside
    };
    let port = if token & 1 == 0 {
        RelayPort::Rtp
    } else {
        RelayPort::Rtcp
    };
    (slot, leg, port)
}

/// Longest a worker that relays streams sleeps: it takes a stream handed over quietly
/// ([`Worker::add`]) within this.
pub(crate) const QUIET_WITHIN: Duration = Duration::from_millis(10);

const SIDES: [Side; 2] = [Side::Inside, Side::Outside];
const PORTS: [RelayPort; 2] = [RelayPort::Rtp, RelayPort::Rtcp];

impl State {
    fn run(&mut self) {
        let mut runs: Vec<Run> = Vec::with_capacity(ARENA);
        loop {
            // With streams, new ones may be handed over quietly: wake within QUIET_WITHIN.
            let quiet = (!self.index.is_empty()).then(|| Instant::now() + QUIET_WITHIN);
            let timeout = match self.next_due.into_iter().chain(quiet).min() {
                // Rounded up to the next millisecond: waking early would spin.
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    EpollTimeout::try_from(left + Duration::from_micros(999))
                        .unwrap_or(EpollTimeout::MAX)
                }
                None => EpollTimeout::NONE,
            };
            let n = match self.epoll.wait(&mut self.events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "relay worker: epoll_wait failed; worker ends");
                    return;
                }
            };
            let rang = self.events[..n].iter().any(|e| e.data() == BELL);
            if rang {
                // Reset the bell before taking the orders: an order sent after the reset rings
                // again, so none waits for an unrelated wake-up.
                let _ = self.bell.read();
            }
            if !self.take_orders() {
                return;
            }
            let Some(core) = self.core.upgrade() else {
                return;
            };
            if n > usize::from(rang) {
                self.metrics.relay_wakeups.inc();
            }
            let woke = Instant::now();
            let mut found = false;
            let mut i = 0;
            while i < n {
                // Fill the arena from as many ready sockets as fit, then decide it at once.
                runs.clear();
                let mut used = 0;
                while i < n && used < ARENA {
                    let t = self.events[i].data();
                    i += 1;
                    if t == BELL {
                        continue;
                    }
                    let (slot, leg, port) = untoken(t);
                    let Some(Some(entry)) = self.slots.get(slot) else {
                        continue;
                    };
                    let socket = &entry.sockets[leg.index()][port as usize];
                    let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
                    // WouldBlock (another reader cannot exist, but a spurious wake can) and
                    // ICMP-induced errors of an earlier send leave nothing to relay. A socket
                    // with more queued than fits stays ready (level-triggered) for the next
                    // wait.
                    let Ok((got, _)) =
                        crate::sys::udp_batch::recv_into(fd, &mut self.arena[used..])
                    else {
                        continue;
                    };
                    if got > 0 {
                        runs.push(Run {
                            slot,
                            leg,
                            port,
                            start: used,
                            len: got,
                        });
                        used += got;
                    }
                }
                if runs.is_empty() {
                    continue;
                }
                found = true;
                self.relay(&*core, &runs);
            }
            self.send_due();
            drop(core);
            if found {
                self.moderate(woke);
            }
        }
    }

    /// Interrupt moderation, as NAPI does for a device: while datagrams arrive faster than
    /// `poll`, the worker sleeps that long after each wake-up that found some, and the next
    /// `epoll_wait` returns every socket that became ready meanwhile. One wake-up (two
    /// context switches) then serves the whole interval instead of each packet, for at most
    /// `poll` of added delay. Wake-ups further apart than twice the interval are a quiet
    /// relay's: it keeps blocking in epoll, so a lone stream is not relayed by a timer.
    fn moderate(&mut self, woke: Instant) {
        let busy = self
            .last_found
            .is_some_and(|last| woke.saturating_duration_since(last) < 2 * self.poll);
        self.last_found = Some(woke);
        if busy {
            thread::sleep(self.poll);
        }
    }

    /// Decides and sends on the datagrams of `runs` (all in the arena).
    fn relay(&mut self, core: &dyn Control, runs: &[Run]) {
        let now = Instant::now();
        // The arena split into one slice per run (runs are consecutive and disjoint).
        let mut rest: &mut [Datagram] = &mut self.arena[..];
        let mut offset = 0;
        let mut received: [Option<Received<'_>>; ARENA] = [const { None }; ARENA];
        for (r, run) in received.iter_mut().zip(runs) {
            let Some(Some(entry)) = self.slots.get(run.slot) else {
                continue;
            };
            let (_, tail) = rest.split_at_mut(run.start - offset);
            let (packets, tail) = tail.split_at_mut(run.len);
            rest = tail;
            offset = run.start + run.len;
            *r = Some(Received {
                stream: entry.stream,
                path: &entry.path,
                leg: run.leg,
                port: run.port,
                sockets: &entry.sockets,
                packets,
            });
        }
        let received = &mut received[..runs.len()];
        relay::decide(
            core,
            self.rules,
            &self.metrics,
            now,
            received.iter_mut().flatten(),
        );
        let mut failed = false;
        let mut failures = [0u64; ARENA];
        for (r, f) in received.iter().zip(failures.iter_mut()) {
            if let Some(r) = r {
                *f = relay::send_on(&self.metrics, r);
                failed |= *f > 0;
            }
        }
        if failed {
            for (r, &f) in received.iter().zip(&failures) {
                if let Some(r) = r
                    && f > 0
                {
                    r.path.lock().peers[r.leg.index()].dropped += f;
                }
            }
        }
    }

    /// Sends the generated packets that are due.
    fn send_due(&mut self) {
        let Some(due) = self.next_due else { return };
        let now = Instant::now();
        if due > now {
            return;
        }
        for entry in self.slots.iter_mut().flatten() {
            if entry.due.is_some_and(|d| d <= now) {
                entry.due = relay::send_generated(
                    &entry.path,
                    &mut self.rng,
                    &self.metrics,
                    now,
                    &entry.sockets,
                );
            }
        }
        self.recompute_due();
    }

    fn recompute_due(&mut self) {
        self.next_due = self.slots.iter().flatten().filter_map(|e| e.due).min();
    }

    /// Applies the executor's orders; false when the executor is gone (the worker ends).
    fn take_orders(&mut self) -> bool {
        loop {
            match self.orders.try_recv() {
                Ok(Order::Add {
                    stream,
                    path,
                    sockets,
                }) => self.add(stream, path, sockets),
                Ok(Order::Remove(stream)) => self.remove(stream),
                Ok(Order::Wake(stream)) => {
                    if let Some(&slot) = self.index.get(&stream)
                        && let Some(Some(e)) = self.slots.get_mut(slot)
                    {
                        e.due = e.path.lock().dtmf.deadline();
                        self.recompute_due();
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn add(&mut self, stream: StreamKey, path: PathHandle, sockets: Sockets) {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let mut added = Vec::with_capacity(4);
        for leg in SIDES {
            for port in PORTS {
                let s = &sockets[leg.index()][port as usize];
                let ev = EpollEvent::new(EpollFlags::EPOLLIN, token(slot, leg, port));
                match self.epoll.add(s.as_fd(), ev) {
                    Ok(()) => added.push(s),
                    Err(e) => {
                        // Cannot happen short of memory exhaustion (a socket is added once).
                        tracing::error!(error = %e, "relay worker: watching a socket failed");
                        for s in added {
                            let _ = self.epoll.delete(s.as_fd());
                        }
                        if slot < self.slots.len() {
                            self.free.push(slot);
                        }
                        self.park(sockets);
                        return;
                    }
                }
            }
        }
        // A digit may have been queued while the sockets were bound.
        let due = path.lock().dtmf.deadline();
        let entry = Entry {
            stream,
            path,
            sockets,
            due,
        };
        if slot == self.slots.len() {
            self.slots.push(Some(entry));
        } else {
            self.slots[slot] = Some(entry);
        }
        self.index.insert(stream, slot);
        self.recompute_due();
    }

    fn remove(&mut self, stream: StreamKey) {
        let Some(slot) = self.index.remove(&stream) else {
            return;
        };
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        for pair in entry.sockets.iter() {
            for s in pair {
                let _ = self.epoll.delete(s.as_fd());
            }
        }
        self.park(entry.sockets);
        self.recompute_due();
    }

    /// Hands a stream's sockets back to the executor for the next stream that draws the ports.
    fn park(&self, sockets: Sockets) {
        if let Some(core) = self.core.upgrade() {
            core.park(sockets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for slot in [0, 1, 7, 1 << 20] {
            for leg in SIDES {
                for port in PORTS {
                    assert_eq!(untoken(token(slot, leg, port)), (slot, leg, port));
                }
            }
        }
        // Slots stay far below 2^62 (one per stream), so no socket's token is the bell's.
        assert_ne!(
            token(u32::MAX as usize, Side::Outside, RelayPort::Rtcp),
            BELL
        );
    }
}
