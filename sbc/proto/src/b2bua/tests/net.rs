//! A two-sided network around the B2BUA, after quinn-proto's `Pair` and str0m's netem: a PBX
//! agent on the inside places calls, a carrier agent on the outside answers them, and every
//! datagram between an agent and the SBC crosses a seeded lossy [`Link`] that drops, duplicates
//! and reorders. Virtual time jumps to the earliest of the SBC's deadline, the agents' deadlines
//! and the next delivery; [`Net::drive_bounded`] gives up after a step budget instead of
//! spinning, so a livelock fails the test rather than hanging it.
//! The agents are in `agents.rs`.

use super::{
    agents::{CarrierAgent, PbxAgent, parse},
    *,
};

/// What a link does to datagrams, per direction. Probabilities are in per mille.
#[derive(Debug, Clone, Copy)]
pub(super) struct Impairment {
    pub(super) loss: u32,
    pub(super) duplicate: u32,
    /// Fixed one-way delay.
    pub(super) latency: Duration,
    /// Extra delay drawn uniformly from `0..jitter` per datagram: later datagrams overtake
    /// earlier ones (reordering).
    pub(super) jitter: Duration,
}

/// SplitMix64: a tiny seeded generator, so a failing seed replays exactly.
#[derive(Debug, Clone)]
struct Rng64(u64);

impl Rng64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn per_mille(&mut self, p: u32) -> bool {
        self.next() % 1000 < u64::from(p)
    }

    fn below(&mut self, d: Duration) -> Duration {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(if micros == 0 { 0 } else { self.next() % micros })
    }
}

/// One direction between an agent and the SBC.
#[derive(Debug)]
pub(super) struct Link {
    imp: Impairment,
    rng: Rng64,
    /// (delivery time, sequence for a stable order, datagram)
    queue: Vec<(Instant, u64, Bytes)>,
    seq: u64,
    /// Datagrams sent, dropped and duplicated, for the test's own sanity checks.
    pub(super) sent: u64,
    pub(super) dropped: u64,
    pub(super) duplicated: u64,
}

impl Link {
    fn new(imp: Impairment, seed: u64) -> Self {
        Self {
            imp,
            rng: Rng64(seed),
            queue: Vec::new(),
            seq: 0,
            sent: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    fn send(&mut self, now: Instant, data: Bytes) {
        self.sent += 1;
        if self.rng.per_mille(self.imp.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.per_mille(self.imp.duplicate) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + self.imp.latency + self.rng.below(self.imp.jitter);
            self.seq += 1;
            self.queue.push((at, self.seq, data.clone()));
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.iter().map(|(at, ..)| *at).min()
    }

    fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        let i = (0..self.queue.len())
            .filter(|&i| self.queue[i].0 <= now)
            .min_by_key(|&i| (self.queue[i].0, self.queue[i].1))?;
        Some(self.queue.swap_remove(i).2)
    }
}

/// The SBC between the two agents, with a link each way on each side.
#[derive(Debug)]
pub(super) struct Net {
    pub(super) sbc: B2bua,
    pub(super) media: SimMedia,
    pub(super) now: Instant,
    pub(super) pbx: PbxAgent,
    pub(super) carrier: CarrierAgent,
    pbx_to_sbc: Link,
    sbc_to_pbx: Link,
    carrier_to_sbc: Link,
    sbc_to_carrier: Link,
}

impl Net {
    /// The SBC of [`Sim::new`] between a PBX placing `calls` calls `gap` apart (each held for
    /// 2 s) and a carrier answering after 300 ms; the four links all impair with
    /// `imp`, each from its own stream of `seed`.
    pub(super) fn new(seed: u64, imp: Impairment, calls: usize, gap: Duration) -> Self {
        let sim = Sim::new();
        let stream = |i: u64| seed.wrapping_mul(4).wrapping_add(i);
        Self {
            sbc: sim.sbc,
            media: sim.media,
            now: sim.now,
            pbx: PbxAgent::new(sim.now, calls, gap, Duration::from_secs(2)),
            carrier: CarrierAgent::new(Duration::from_millis(300)),
            pbx_to_sbc: Link::new(imp, stream(0)),
            sbc_to_pbx: Link::new(imp, stream(1)),
            carrier_to_sbc: Link::new(imp, stream(2)),
            sbc_to_carrier: Link::new(imp, stream(3)),
        }
    }

    /// Datagrams the links dropped, over all four.
    pub(super) fn dropped(&self) -> u64 {
        self.links().map(|l| l.dropped).sum()
    }

    /// Datagrams the links duplicated, over all four.
    pub(super) fn duplicated(&self) -> u64 {
        self.links().map(|l| l.duplicated).sum()
    }

    fn links(&self) -> impl Iterator<Item = &Link> {
        [
            &self.pbx_to_sbc,
            &self.sbc_to_pbx,
            &self.carrier_to_sbc,
            &self.sbc_to_carrier,
        ]
        .into_iter()
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.sbc.poll_timeout(),
            self.pbx.poll_timeout(),
            self.carrier.poll_timeout(),
        ]
        .into_iter()
        .chain(self.links().map(Link::next_at))
        .flatten()
        .min()
    }

    /// Moves what the SBC and the agents sent onto the links.
    fn flush(&mut self) {
        while let Some(t) = self.sbc.poll_transmit() {
            inspect(&t, &[addr(PBX)]);
            match t.to.side {
                Side::Inside => self.sbc_to_pbx.send(self.now, t.data),
                Side::Outside => self.sbc_to_carrier.send(self.now, t.data),
            }
        }
        while self.sbc.poll_event().is_some() {}
        for d in std::mem::take(&mut self.pbx.out) {
            self.pbx_to_sbc.send(self.now, d);
        }
        for d in std::mem::take(&mut self.carrier.out) {
            self.carrier_to_sbc.send(self.now, d);
        }
    }

    /// One step: jump to the next wakeup (not past `until`), then deliver and fire everything
    /// due. False when nothing is left to do before `until`.
    fn step(&mut self, until: Instant) -> bool {
        let Some(at) = self.next_wakeup().filter(|at| *at <= until) else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(d) = self.pbx_to_sbc.pop_due(now) {
            if let Some(m) = parse(&d) {
                self.media
                    .drive(now, |t| self.sbc.handle_message(now, pbx(), m, t));
            }
            self.flush();
        }
        while let Some(d) = self.carrier_to_sbc.pop_due(now) {
            if let Some(m) = parse(&d) {
                self.media
                    .drive(now, |t| self.sbc.handle_message(now, carrier(), m, t));
            }
            self.flush();
        }
        while let Some(d) = self.sbc_to_pbx.pop_due(now) {
            if let Some(m) = parse(&d) {
                self.pbx.handle(now, &m);
            }
            self.flush();
        }
        while let Some(d) = self.sbc_to_carrier.pop_due(now) {
            if let Some(m) = parse(&d) {
                self.carrier.handle(now, m);
            }
            self.flush();
        }
        if self.sbc.poll_timeout().is_some_and(|t| t <= now) {
            self.media.drive(now, |t| self.sbc.handle_timeout(now, t));
        }
        self.pbx.handle_timeout(now);
        self.carrier.handle_timeout(now);
        self.flush();
        true
    }

    /// Runs until nothing is due before `until`. Err if `max_steps` were not enough (a
    /// livelock: something keeps rescheduling itself).
    pub(super) fn drive_bounded(&mut self, until: Instant, max_steps: usize) -> Result<(), String> {
        for _ in 0..max_steps {
            if !self.step(until) {
                self.now = self.now.max(until);
                return Ok(());
            }
        }
        Err(format!(
            "not idle after {max_steps} steps at {:?}",
            self.now
        ))
    }
}
