//! A two-sided network around the B2BUA, after quinn-proto's `Pair` and str0m's netem: a PBX
//! agent on the inside places calls, a carrier agent on the outside answers them, and every
//! datagram between an agent and the SBC crosses a seeded lossy [`Link`] that drops, duplicates
//! and reorders. Virtual time jumps to the earliest of the SBC's deadline, the agents' deadlines
//! and the next delivery; [`Net::drive_bounded`] gives up after a step budget instead of
//! spinning, so a livelock fails the test rather than hanging it.
//!
//! The agents are small but honest UAs over UDP: the PBX retransmits its INVITE (Timer A) until
//! a response and its BYE (Timer E) until the final, ACKs every 2xx it sees (so a lost ACK is
//! repaired by the SBC's 2xx retransmission); the carrier answers retransmitted requests with
//! its last response and retransmits its 2xx until the ACK (RFC 3261 §13.3.1.4).

use std::collections::HashMap;

use super::*;

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

/// How one PBX call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered, then hung up by the PBX with a 200 to its BYE.
    Completed,
    /// A final response other than 2xx to the INVITE.
    Rejected(u16),
    /// The PBX's own Timer B or F ran out.
    TimedOut,
}

#[derive(Debug)]
struct Resend {
    data: Bytes,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct PbxCall {
    call_id: String,
    branch: String,
    start: Instant,
    invite: Option<Resend>,
    to_tag: Option<String>,
    ack: Option<Bytes>,
    hangup_at: Option<Instant>,
    bye: Option<Resend>,
    outcome: Option<Outcome>,
}

/// The PBX: places `calls` calls, `gap` apart, each hung up `hold` after its answer.
#[derive(Debug)]
pub(super) struct PbxAgent {
    calls: Vec<PbxCall>,
    hold: Duration,
    out: Vec<Bytes>,
}

fn text(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

fn parse(data: &Bytes) -> Option<Message> {
    Message::parse(data.clone(), &Limits::default()).ok()
}

/// RFC 3261 timers of the agents (those of the SBC's default configuration).
fn t1() -> Duration {
    TimerConfig::default().t1
}

fn t2() -> Duration {
    TimerConfig::default().t2
}

impl PbxAgent {
    pub(super) fn new(t0: Instant, calls: usize, gap: Duration, hold: Duration) -> Self {
        let calls = (0..calls)
            .map(|i| PbxCall {
                call_id: format!("pbx-call-1-{i}"),
                branch: format!("z9hG4bKpbx{i}"),
                start: t0 + gap * u32::try_from(i).unwrap_or(u32::MAX),
                invite: None,
                to_tag: None,
                ack: None,
                hangup_at: None,
                bye: None,
                outcome: None,
            })
            .collect();
        Self {
            calls,
            hold,
            out: Vec::new(),
        }
    }

    pub(super) fn outcomes(&self) -> Vec<Option<Outcome>> {
        self.calls.iter().map(|c| c.outcome).collect()
    }

    pub(super) fn done(&self) -> bool {
        self.calls.iter().all(|c| c.outcome.is_some())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .iter()
            .filter(|c| c.outcome.is_none())
            .filter_map(|c| {
                if c.invite.is_none() && c.to_tag.is_none() && c.ack.is_none() {
                    return Some(c.start);
                }
                [
                    c.invite.as_ref().map(|r| r.next.min(r.deadline)),
                    c.hangup_at,
                    c.bye.as_ref().map(|r| r.next.min(r.deadline)),
                ]
                .into_iter()
                .flatten()
                .min()
            })
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        for (i, c) in self.calls.iter_mut().enumerate() {
            if c.outcome.is_some() {
                continue;
            }
            if c.invite.is_none() && c.to_tag.is_none() && c.ack.is_none() && c.start <= now {
                let data =
                    text(&pbx_invite(&c.branch, Some(SDP_PBX)).replace("pbx-call-1", &c.call_id));
                self.out.push(data.clone());
                c.invite = Some(Resend {
                    data,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.invite.as_mut() {
                if r.deadline <= now {
                    c.invite = None;
                    c.outcome = Some(Outcome::TimedOut);
                    continue;
                }
                if r.next <= now {
                    // Timer A: T1, doubling (RFC 3261 §17.1.1.2).
                    self.out.push(r.data.clone());
                    r.interval *= 2;
                    r.next = now + r.interval;
                }
            }
            if c.hangup_at.is_some_and(|at| at <= now) {
                c.hangup_at = None;
                let tag = c.to_tag.clone().unwrap_or_default();
                let data = text(&format!(
                    "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye{i};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 11 BYE
Content-Length: 0

",
                    c.call_id
                ));
                self.out.push(data.clone());
                c.bye = Some(Resend {
                    data,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.bye.as_mut() {
                if r.deadline <= now {
                    c.bye = None;
                    c.outcome = Some(Outcome::TimedOut);
                    continue;
                }
                if r.next <= now {
                    // Timer E: T1, doubling up to T2 (§17.1.2.2).
                    self.out.push(r.data.clone());
                    r.interval = (r.interval * 2).min(t2());
                    r.next = now + r.interval;
                }
            }
        }
    }

    fn handle(&mut self, now: Instant, msg: &Message) {
        let Some(c) = self.calls.iter_mut().find(|c| c.call_id == msg.call_id()) else {
            return;
        };
        let Some(status) = msg.status().map(|s| s.as_u16()) else {
            return; // the SBC sends the PBX no requests in these calls
        };
        match msg.cseq().method {
            Method::Invite if status < 200 => {
                // Proceeding: no more INVITE retransmissions (§17.1.1.2).
                if let Some(r) = c.invite.as_mut() {
                    r.next = r.deadline;
                }
            }
            Method::Invite if status < 300 => {
                c.invite = None;
                if c.ack.is_none() {
                    let tag = msg.to().tag().unwrap_or_default().to_owned();
                    c.ack = Some(text(&format!(
                        "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={}ack;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 10 ACK
Content-Length: 0

",
                        c.branch, c.call_id
                    )));
                    c.to_tag = Some(tag);
                    c.hangup_at = Some(now + self.hold);
                }
                // Every 2xx, also a retransmission, is ACKed (§13.2.2.4).
                if let Some(ack) = &c.ack {
                    self.out.push(ack.clone());
                }
            }
            Method::Invite => {
                // The transaction ACKs a non-2xx final hop by hop (§17.1.1.3).
                let tag = msg.to().tag().unwrap_or_default();
                self.out.push(text(&format!(
                    "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 10 ACK
Content-Length: 0

",
                    c.branch, c.call_id
                )));
                if c.outcome.is_none() {
                    c.invite = None;
                    c.outcome = Some(Outcome::Rejected(status));
                }
            }
            Method::Bye if status >= 200 && c.bye.is_some() => {
                c.bye = None;
                c.outcome = Some(Outcome::Completed);
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
struct CarrierCall {
    tag: String,
    /// The last response to the INVITE, resent for a retransmitted INVITE.
    last: Option<Bytes>,
    answer_at: Option<Instant>,
    invite: Message,
    /// The 2xx retransmitted until the ACK.
    ok: Option<Resend>,
    acked: bool,
    byes: u32,
}

/// The carrier: rings at once, answers `answer_after` later, retransmits its 2xx until the
/// ACK, and answers every BYE with 200.
#[derive(Debug)]
pub(super) struct CarrierAgent {
    calls: HashMap<String, CarrierCall>,
    answer_after: Duration,
    out: Vec<Bytes>,
}

impl CarrierAgent {
    pub(super) fn new(answer_after: Duration) -> Self {
        Self {
            calls: HashMap::new(),
            answer_after,
            out: Vec::new(),
        }
    }

    /// Calls whose 2xx was ACKed and that got a BYE.
    pub(super) fn ended(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.acked && c.byes > 0)
            .count()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| [c.answer_at, c.ok.as_ref().map(|r| r.next.min(r.deadline))])
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        for c in self.calls.values_mut() {
            if c.answer_at.is_some_and(|at| at <= now) {
                c.answer_at = None;
                let ok = text(&carrier_response(
                    &c.invite,
                    200,
                    "OK",
                    Some(&c.tag),
                    Some(SDP_CARRIER),
                ));
                self.out.push(ok.clone());
                c.last = Some(ok.clone());
                c.ok = Some(Resend {
                    data: ok,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.ok.as_mut() {
                if r.deadline <= now {
                    c.ok = None;
                } else if r.next <= now {
                    self.out.push(r.data.clone());
                    r.interval = (r.interval * 2).min(t2());
                    r.next = now + r.interval;
                }
            }
        }
    }

    fn handle(&mut self, now: Instant, msg: Message) {
        let Some(method) = msg.method().cloned() else {
            return; // the carrier sends no requests in these calls
        };
        let key = msg.call_id().to_owned();
        match method {
            Method::Invite => {
                if let Some(c) = self.calls.get(&key) {
                    // A retransmission: the last response again (§17.2.1).
                    if let Some(last) = &c.last {
                        self.out.push(last.clone());
                    }
                    return;
                }
                let tag = format!("ctag-{}", self.calls.len());
                let ringing = text(&carrier_response(&msg, 180, "Ringing", Some(&tag), None));
                self.out.push(ringing.clone());
                self.calls.insert(
                    key,
                    CarrierCall {
                        tag,
                        last: Some(ringing),
                        answer_at: Some(now + self.answer_after),
                        invite: msg,
                        ok: None,
                        acked: false,
                        byes: 0,
                    },
                );
            }
            Method::Ack => {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.ok = None;
                    c.acked = true;
                }
            }
            _ => {
                let tag = self.calls.get_mut(&key).map(|c| {
                    if method == Method::Bye {
                        c.byes += 1;
                    }
                    c.tag.clone()
                });
                self.out.push(text(&carrier_response(
                    &msg,
                    200,
                    "OK",
                    tag.as_deref(),
                    None,
                )));
            }
        }
    }
}

/// The SBC between the two agents, with a link each way on each side.
#[derive(Debug)]
pub(super) struct Net {
    pub(super) sbc: B2bua,
    pub(super) media: FakeMedia,
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
                self.sbc.handle_message(now, pbx(), m, &mut self.media);
            }
            self.flush();
        }
        while let Some(d) = self.carrier_to_sbc.pop_due(now) {
            if let Some(m) = parse(&d) {
                self.sbc.handle_message(now, carrier(), m, &mut self.media);
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
            self.sbc.handle_timeout(now, &mut self.media);
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
