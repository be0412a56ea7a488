//! What the operator sees of SIP without a packet capture: every message the transports send
//! or receive is offered to a [`Tracer`] (a bounded, non-blocking queue: a full queue drops
//! and counts, SIP never waits), whose task
//! - keeps the messages of each call in the [`TraceStore`] for `GET /api/v1/calls/{id}/trace`
//!   (digest responses redacted: [`redact`]);
//! - exports them as HEP v3 to a collector (`[hep]`), with the other leg's Call-ID as the
//!   correlation id, plus RTCP-derived quality reports per stream (HEP type 5, JSON).
//!
//! The capture points are in `transport/` (every datagram and framed message in and out); the
//! signaling task only says which two Call-IDs form a call and when it ended ([`observe`]),
//! through the same queue, so the trace task sees a call's link after the INVITEs captured
//! before it and links only calls it holds a leg of.

mod compact;
#[cfg(test)]
mod cost_tests;
pub mod hep;
pub mod ladder;
pub mod redact;
pub mod store;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sbc_proto::{
    b2bua::{B2bua, Event},
    media::SessionId,
    net::{Side, TransportKind},
    sip::{CSeq, Headline, Limits, Message, Method, Parties},
};
use tokio::sync::mpsc;

pub use store::{Correlation, Direction, Leg, TraceLimits, TraceStore};

use crate::{config::Config, media::MediaManager};

/// How often the trace task looks at HEP packets waiting for their correlation, while any
/// wait.
const TICK: Duration = Duration::from_millis(50);
/// How often it expires traces, updates its gauges and looks at the RTCP report interval
/// when no HEP packet waits: an idle SBC (or one relaying a single call's media) then wakes
/// once a second for it, not twenty times (each wake-up costs a context switch, which the
/// one-stream media benchmark counts per packet).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// One captured SIP message.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Wall-clock capture time (HEP timestamps, the ladder).
    pub at: SystemTime,
    /// Monotonic capture time (retention, correlation wait).
    pub now: Instant,
    /// Received or sent.
    pub dir: Direction,
    /// The peer's side.
    pub side: Side,
    /// Transport.
    pub transport: TransportKind,
    /// Source.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// The message as on the wire.
    pub data: Bytes,
}

/// Metrics of the trace and the HEP export.
#[derive(Debug, Clone)]
pub struct TraceMetrics {
    /// Messages captured, by direction.
    pub captured: IntCounterVec,
    /// Messages not traced or dropped from traces, by reason.
    pub dropped: IntCounterVec,
    /// Call legs traced now.
    pub legs: IntGauge,
    /// Bytes of traced messages held.
    pub stored_bytes: IntGauge,
    /// HEP packets handed to the network, by type (`sip`, `rtcp`).
    pub hep_sent: IntCounterVec,
    /// HEP packets dropped, by reason.
    pub hep_dropped: IntCounterVec,
    /// 1 while the HEP sender can send (UDP socket bound, TCP connected).
    pub hep_up: IntGauge,
}

impl TraceMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            captured: IntCounterVec::new(
                Opts::new(
                    "sbc_trace_captured_total",
                    "SIP messages captured at the transports for traces and HEP, by direction.",
                ),
                &["direction"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "sbc_trace_dropped_total",
                    "SIP messages not traced or dropped from per-call traces, by reason \
                     (queue_full, leg_full, total_bytes, max_legs, evicted).",
                ),
                &["reason"],
            )?,
            legs: IntGauge::new("sbc_trace_legs", "Call legs with a SIP trace held.")?,
            stored_bytes: IntGauge::new(
                "sbc_trace_stored_bytes",
                "Bytes held by per-call traces: messages and their entries, legs and links \
                 (bounded by [trace] max_total_mib).",
            )?,
            hep_sent: IntCounterVec::new(
                Opts::new(
                    "sbc_hep_sent_total",
                    "HEP packets sent to the collector, by type (sip, rtcp).",
                ),
                &["type"],
            )?,
            hep_dropped: IntCounterVec::new(
                Opts::new(
                    "sbc_hep_dropped_total",
                    "HEP packets dropped, by reason (queue_full, send_failed, not_connected, \
                     encode).",
                ),
                &["reason"],
            )?,
            hep_up: IntGauge::new(
                "sbc_hep_up",
                "1 while the HEP sender can reach its collector (UDP bound, TCP connected).",
            )?,
        };
        registry.register(Box::new(m.captured.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.legs.clone()))?;
        registry.register(Box::new(m.stored_bytes.clone()))?;
        registry.register(Box::new(m.hep_sent.clone()))?;
        registry.register(Box::new(m.hep_dropped.clone()))?;
        registry.register(Box::new(m.hep_up.clone()))?;
        for r in [
            "queue_full",
            "leg_full",
            "total_bytes",
            "max_legs",
            "evicted",
        ] {
            m.dropped.with_label_values(&[r]).inc_by(0);
        }
        for r in ["queue_full", "send_failed", "not_connected", "encode"] {
            m.hep_dropped.with_label_values(&[r]).inc_by(0);
        }
        Ok(m)
    }
}

/// A live call's media session and Call-IDs (for the RTCP reports).
#[derive(Debug, Clone)]
struct LiveCall {
    media: SessionId,
    inside: String,
    outside: String,
}

/// The capture handle: cheap to clone; the transports offer messages, the signaling task links
/// calls, the admin API reads traces.
#[derive(Debug, Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

/// What the transport's parse of a received message tells the trace task, so that it reads
/// the message neither a second time nor at all.
#[derive(Debug)]
enum Known {
    /// Nothing: a sent message (the task scans it, `sip::Headline`).
    Nothing,
    /// A received new INVITE's parse: it may start a leg, whose calling and called numbers
    /// need it. Boxed: a queue slot is as large as its largest item, and inline a parse made
    /// every slot 304 bytes where a link needs 56 (the box is one allocation per received new
    /// INVITE; cloning the parse allocates already).
    Invite(Box<Message>),
    /// Any other received message: where its Call-ID lies in the captured bytes, and what its
    /// start line and CSeq say (the scan's answer, taken from the parse).
    Facts {
        call_id: std::ops::Range<usize>,
        request: Option<Method>,
        status: Option<u16>,
        cseq: CSeq,
    },
}

impl Known {
    /// What a received `message`, parsed from `data`, tells.
    fn of(message: &Message, data: &[u8]) -> Self {
        if message.method() == Some(&Method::Invite) && message.to_tag().is_none() {
            return Self::Invite(Box::new(message.clone()));
        }
        // The parse's Call-ID is a slice of the buffer it parsed; that buffer is `data`
        // (checked: the same bytes at the same place), else the task scans.
        let id = message.call_id();
        let Some(at) = (id.as_ptr() as usize).checked_sub(data.as_ptr() as usize) else {
            return Self::Nothing;
        };
        let range = at..at + id.len();
        // (Within `data`, the bytes there are the Call-ID's own: the same memory.)
        if data.get(range.clone()) != Some(id.as_bytes()) {
            return Self::Nothing;
        }
        Self::Facts {
            call_id: range,
            request: message.method().cloned(),
            status: message.status().map(|s| s.as_u16()),
            cseq: message.cseq().clone(),
        }
    }
}

/// What the capture queue carries, in the order it was offered.
#[derive(Debug)]
enum Queued {
    /// A capture, and what the transport's parse of a received message tells.
    Message(Captured, Known),
    /// A call's legs by Call-ID, inside and outside. Queued rather than given to the store at
    /// once: the store sees it after the call's INVITEs (captured before the B2BUA reports the
    /// call), so it can tell whether it holds a leg of the call and need not link the others.
    Link {
        call: u64,
        inside: String,
        outside: String,
    },
    /// A call ended at `at` (after its link, in the same queue).
    Ended { call: u64, at: Instant },
}

#[derive(Debug)]
struct Inner {
    /// Unbounded: links and ends are never dropped (a lost end would keep the call's legs
    /// until the process ends, a lost link would let a live call's legs expire). They are one
    /// or two per call; messages are bounded by `queue_max`.
    tx: mpsc::UnboundedSender<Queued>,
    /// Messages in the queue (links and ends not counted).
    queued: AtomicUsize,
    /// `[trace] queue`: messages beyond it are dropped, counted.
    queue_max: usize,
    /// `captured` by direction (in, out), resolved once: this is counted for every message.
    captured: [prometheus::IntCounter; 2],
    store: Mutex<TraceStore>,
    /// Only with a HEP collector (`[hep] collector`): nothing else reads it, and a copy of
    /// both Call-IDs for every live call is memory the traces alone do not need.
    live: Option<Mutex<HashMap<u64, LiveCall>>>,
    metrics: TraceMetrics,
    /// Whether `GET …/trace` answers (`[trace] enabled`); the store also serves HEP
    /// correlation when only `[hep]` is on.
    api: bool,
}

impl Inner {
    /// Applies one queued item to the store. A message comes back for the HEP export, with its
    /// Call-ID when `call_id` is asked for.
    fn apply(&self, q: Queued, call_id: bool) -> Option<(Captured, Option<String>)> {
        match q {
            Queued::Message(c, known) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                let parse = |data: &Bytes| Message::parse(data.clone(), &Limits::default()).ok();
                // A leg's numbers: read by a scan of the start line and From, parsed only
                // when the scan cannot tell them plainly.
                let numbers = |data: &Bytes| match Parties::scan(data) {
                    Some(p) => store::owned(p),
                    None => {
                        parse(data).map_or_else(Default::default, |m| store::owned(Parties::of(&m)))
                    }
                };
                // A received new INVITE comes with the transport's parse (its leg's numbers),
                // another received message with the facts the store needs; a sent message is
                // scanned for them (`sip::Headline`) and parsed only when the scan cannot
                // tell. A message that does not parse (one cut by a limit) is still
                // exported, just not traced.
                let (parsed, facts) = match known {
                    Known::Nothing => (None, None),
                    Known::Invite(m) => (Some(m), None),
                    Known::Facts {
                        call_id,
                        request,
                        status,
                        cseq,
                    } => {
                        let facts = c
                            .data
                            .get(call_id)
                            .and_then(|b| std::str::from_utf8(b).ok())
                            .map(|call_id| Headline {
                                call_id,
                                request,
                                status,
                                cseq,
                            });
                        (None, facts)
                    }
                };
                let id = if let Some(m) = parsed {
                    self.store.lock().record(&c, &m);
                    call_id.then(|| m.call_id().to_owned())
                } else if let Some(f) = facts {
                    self.store
                        .lock()
                        .record_facts(&c, &f, &c.data, || numbers(&c.data));
                    call_id.then(|| f.call_id.to_owned())
                } else if let Some(f) = Headline::scan(&c.data) {
                    self.store
                        .lock()
                        .record_facts(&c, &f, &c.data, || numbers(&c.data));
                    call_id.then(|| f.call_id.to_owned())
                } else {
                    parse(&c.data).and_then(|m| {
                        self.store.lock().record(&c, &m);
                        call_id.then(|| m.call_id().to_owned())
                    })
                };
                Some((c, id))
            }
            Queued::Link {
                call,
                inside,
                outside,
            } => {
                self.store.lock().link(call, &inside, &outside);
                None
            }
            Queued::Ended { call, at } => {
                self.store.lock().call_ended(at, call);
                None
            }
        }
    }
}

impl Tracer {
    /// Starts the trace task (and the HEP sender when `[hep] collector` is set) on the current
    /// runtime. `None` when neither traces nor HEP are wanted: then nothing is captured.
    pub fn start(config: &Config, media: MediaManager, metrics: TraceMetrics) -> Option<Self> {
        if !config.trace.enabled && config.hep.collector.is_none() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let store = TraceStore::new(TraceLimits::from_config(&config.trace));
        let store = if config.hep.collector.is_some() {
            store.linking_every_call()
        } else {
            store
        };
        let inner = Arc::new(Inner {
            tx,
            queued: AtomicUsize::new(0),
            queue_max: config.trace.queue.max(1),
            captured: [Direction::In, Direction::Out]
                .map(|d| metrics.captured.with_label_values(&[dir_label(d)])),
            store: Mutex::new(store),
            live: config.hep.collector.map(|_| Mutex::new(HashMap::new())),
            metrics: metrics.clone(),
            api: config.trace.enabled,
        });
        let hep = config
            .hep
            .collector
            .map(|c| hep::Sender::start(c, &config.hep, metrics.clone()));
        let task = Task {
            inner: Arc::downgrade(&inner),
            hep,
            pending: VecDeque::new(),
            wait: Duration::from_millis(config.hep.correlation_wait_ms),
            pending_max: config.hep.queue.max(1),
            rtcp_every: Duration::from_secs(config.hep.rtcp_report_s),
            media,
        };
        tokio::spawn(task.run(rx));
        Some(Self { inner })
    }

    /// Offers one message (never blocks; a full queue drops it, counted).
    pub fn capture(
        &self,
        dir: Direction,
        side: Side,
        transport: TransportKind,
        src: SocketAddr,
        dst: SocketAddr,
        data: Bytes,
    ) {
        self.offer(dir, side, transport, (src, dst), data, Known::Nothing);
    }

    /// Offers a received message the transport has parsed (`data` is its buffer). A new
    /// INVITE's parse goes along (the trace task would otherwise parse it again for its leg's
    /// numbers); for the others, what the store needs of them (their Call-ID's place, start
    /// line and CSeq), so the task does not scan them.
    pub fn capture_received(
        &self,
        side: Side,
        transport: TransportKind,
        (src, dst): (SocketAddr, SocketAddr),
        message: &Message,
        data: Bytes,
    ) {
        let known = Known::of(message, &data);
        self.offer(Direction::In, side, transport, (src, dst), data, known);
    }

    fn offer(
        &self,
        dir: Direction,
        side: Side,
        transport: TransportKind,
        (src, dst): (SocketAddr, SocketAddr),
        data: Bytes,
        known: Known,
    ) {
        let i = match dir {
            Direction::In => 0,
            Direction::Out => 1,
        };
        self.inner.captured[i].inc();
        let c = Captured {
            at: SystemTime::now(),
            now: Instant::now(),
            dir,
            side,
            transport,
            src,
            dst,
            data,
        };
        let inner = &self.inner;
        // A slot is taken before the send and given back by the trace task when it takes the
        // message (`Inner::apply`), so at most `queue_max` messages wait.
        let full = inner.queued.fetch_add(1, Ordering::Relaxed) >= inner.queue_max;
        if full || inner.tx.send(Queued::Message(c, known)).is_err() {
            inner.queued.fetch_sub(1, Ordering::Relaxed);
            inner
                .metrics
                .dropped
                .with_label_values(&["queue_full"])
                .inc();
        }
    }

    /// Queues the link of `call`'s legs (Call-IDs `inside` and `outside`) behind the messages
    /// captured so far.
    fn link(&self, call: u64, inside: &str, outside: &str) {
        // Fails only once the trace task is gone, and then nothing is traced any more.
        let _ = self.inner.tx.send(Queued::Link {
            call,
            inside: inside.to_owned(),
            outside: outside.to_owned(),
        });
    }

    /// Queues the end of `call` behind its link.
    fn call_ended(&self, call: u64, at: Instant) {
        let _ = self.inner.tx.send(Queued::Ended { call, at });
    }

    /// Links calls and marks their end from a B2BUA event (called by the signaling task for
    /// every event, before it handles it).
    pub fn observe(&self, engine: &B2bua, event: &Event) {
        match *event {
            Event::CallStarted { call, .. }
            | Event::Failover { call, .. }
            | Event::Redirect { call, .. } => {
                let Some(info) = engine.call(call) else {
                    return;
                };
                let [inside, outside] = &info.legs;
                self.link(call, &inside.call_id, &outside.call_id);
                if let (Some(media), Some(live)) = (info.media, &self.inner.live) {
                    live.lock().insert(
                        call,
                        LiveCall {
                            media,
                            inside: inside.call_id.clone(),
                            outside: outside.call_id.clone(),
                        },
                    );
                }
            }
            Event::CallEnded { call, .. } => {
                self.call_ended(call, Instant::now());
                if let Some(live) = &self.inner.live {
                    live.lock().remove(&call);
                }
            }
            _ => {}
        }
    }

    /// Whether traces are served (`[trace] enabled`).
    pub fn serves_traces(&self) -> bool {
        self.inner.api
    }

    /// Runs `f` on the store (the admin API reads traces through this).
    pub fn with_store<T>(&self, f: impl FnOnce(&TraceStore) -> T) -> T {
        f(&self.inner.store.lock())
    }
}

/// Forwards a B2BUA event to the tracer the transport carries, if any (one call in the
/// signaling driver's event loop).
pub fn observe(transport: &crate::transport::Transport, engine: &B2bua, event: &Event) {
    if let Some(t) = transport.tracer() {
        t.observe(engine, event);
    }
}

const fn dir_label(d: Direction) -> &'static str {
    match d {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

/// A HEP packet waiting for its call's other leg.
#[derive(Debug)]
struct Pending {
    captured: Captured,
    call_id: Option<String>,
}

/// The trace task's state.
struct Task {
    inner: std::sync::Weak<Inner>,
    hep: Option<hep::Sender>,
    pending: VecDeque<Pending>,
    wait: Duration,
    pending_max: usize,
    rtcp_every: Duration,
    media: MediaManager,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let tick = tokio::time::sleep(IDLE_TICK);
        tokio::pin!(tick);
        let mut last_rtcp = Instant::now();
        loop {
            tokio::select! {
                q = rx.recv() => {
                    let Some(q) = q else { return };
                    let Some(inner) = self.inner.upgrade() else { return };
                    self.handle(&inner, q);
                    // Drain what queued meanwhile without another wake-up each.
                    for _ in 0..256 {
                        let Ok(q) = rx.try_recv() else { break };
                        self.handle(&inner, q);
                    }
                    self.flush(&inner, Instant::now());
                    // A packet now waits for its correlation: look again soon.
                    let soon = tokio::time::Instant::now() + TICK;
                    if !self.pending.is_empty() && tick.deadline() > soon {
                        tick.as_mut().reset(soon);
                    }
                }
                () = &mut tick => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    let now = Instant::now();
                    self.flush(&inner, now);
                    let next = if self.pending.is_empty() { IDLE_TICK } else { TICK };
                    tick.as_mut().reset(tokio::time::Instant::now() + next);
                    let (legs, bytes, drops) = {
                        let mut s = inner.store.lock();
                        s.expire(now);
                        (s.len(), s.bytes(), s.take_drops())
                    };
                    for d in drops {
                        inner.metrics.dropped.with_label_values(&[d.label()]).inc();
                    }
                    inner.metrics.legs.set(i64::try_from(legs).unwrap_or(i64::MAX));
                    inner.metrics.stored_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    if !self.rtcp_every.is_zero() && now.duration_since(last_rtcp) >= self.rtcp_every {
                        last_rtcp = now;
                        self.rtcp_reports(&inner);
                    }
                }
            }
        }
    }

    fn handle(&mut self, inner: &Inner, q: Queued) {
        let Some((c, call_id)) = inner.apply(q, self.hep.is_some()) else {
            return;
        };
        if self.hep.is_none() {
            return;
        }
        if self.pending.len() >= self.pending_max {
            inner
                .metrics
                .hep_dropped
                .with_label_values(&["queue_full"])
                .inc();
            return;
        }
        self.pending.push_back(Pending {
            captured: c,
            call_id,
        });
    }

    /// Sends waiting packets in capture order: each once its correlation is known, or once it
    /// waited `wait` (then without one).
    fn flush(&mut self, inner: &Inner, now: Instant) {
        let Some(hep) = &mut self.hep else { return };
        while let Some(p) = self.pending.front() {
            let store = inner.store.lock();
            let correlation = match p.call_id.as_deref().map(|id| store.correlation(id)) {
                None | Some(Correlation::None) => None,
                Some(Correlation::Other(other)) => Some(other.to_owned()),
                Some(Correlation::Pending)
                    if now.saturating_duration_since(p.captured.now) >= self.wait =>
                {
                    None
                }
                Some(Correlation::Pending) => break,
            };
            drop(store);
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let c = &p.captured;
            hep.send_sip(c, correlation.as_deref());
        }
    }

    /// One RTCP-derived report per stream endpoint that has one, correlated with the leg's
    /// Call-ID.
    fn rtcp_reports(&mut self, inner: &Inner) {
        let Some(hep) = &mut self.hep else { return };
        let Some(live) = &inner.live else { return };
        let live: Vec<LiveCall> = live.lock().values().cloned().collect();
        for call in live {
            let Some(view) = self.media.session_view(call.media) else {
                continue;
            };
            for (i, st) in view.streams.iter().enumerate() {
                for (ep, call_id) in [(&st.inside, &call.inside), (&st.outside, &call.outside)] {
                    if let Some(r) = hep::RtcpReport::from_endpoint(i, ep) {
                        hep.send_rtcp(&r, call_id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn tracer(queue: usize) -> (Tracer, TraceMetrics, mpsc::UnboundedReceiver<Queued>) {
        let metrics = TraceMetrics::register(&Registry::new()).expect("metrics");
        let (tx, rx) = mpsc::unbounded_channel();
        let limits = TraceLimits::from_config(&crate::config::Trace::default());
        let tracer = Tracer {
            inner: Arc::new(Inner {
                tx,
                queued: AtomicUsize::new(0),
                queue_max: queue,
                captured: [Direction::In, Direction::Out]
                    .map(|d| metrics.captured.with_label_values(&[dir_label(d)])),
                store: Mutex::new(TraceStore::new(limits)),
                live: None,
                metrics: metrics.clone(),
                api: true,
            }),
        };
        (tracer, metrics, rx)
    }

    #[test]
    fn a_full_capture_queue_drops_and_counts_without_blocking() {
        let (tracer, metrics, _rx) = tracer(1);
        let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
        for _ in 0..3 {
            tracer.capture(
                Direction::Out,
                Side::Outside,
                TransportKind::Udp,
                a,
                a,
                Bytes::from_static(b"x"),
            );
        }
        assert_eq!(metrics.captured.with_label_values(&["out"]).get(), 3);
        assert_eq!(metrics.dropped.with_label_values(&["queue_full"]).get(), 2);
    }

    #[test]
    fn a_received_new_invite_brings_the_parse_and_other_messages_its_facts() {
        let (tracer, metrics, mut rx) = tracer(4);
        let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
        let options = Bytes::from_static(
            b"OPTIONS sip:sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
              From: <sip:100@pbx>;tag=a\r\nTo: <sip:sbc>\r\nCall-ID: scanned\r\n\
              CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        );
        let m = Message::parse(options.clone(), &Limits::default()).expect("parses");
        tracer.capture_received(
            Side::Inside,
            TransportKind::Udp,
            (a, a),
            &m,
            options.clone(),
        );
        let Ok(Queued::Message(c, known)) = rx.try_recv() else {
            panic!("a message queued")
        };
        assert_eq!(c.dir, Direction::In);
        // Not copied: what the store needs of it comes along, read off the parse.
        let Known::Facts {
            call_id,
            request,
            status,
            cseq,
        } = known
        else {
            panic!("the parse's facts come along, not the parse: {known:?}")
        };
        assert_eq!(c.data.get(call_id), Some(&b"scanned"[..]));
        assert_eq!(
            (request, status, cseq.seq, cseq.method),
            (Some(Method::Options), None, 1, Method::Options)
        );
        invite(&tracer, "handed-over");
        let Ok(Queued::Message(_, Known::Invite(parsed))) = rx.try_recv() else {
            panic!("a new INVITE's parse queued")
        };
        assert_eq!(parsed.call_id(), "handed-over");
        // Captured bytes that do not hold the parse's Call-ID (here the first 20 bytes of its
        // buffer; none of the transports does this) tell nothing: the task scans them.
        let cut = options.slice(..20);
        tracer.capture_received(Side::Inside, TransportKind::Udp, (a, a), &m, cut);
        let Ok(Queued::Message(_, known)) = rx.try_recv() else {
            panic!("a message queued")
        };
        assert!(
            matches!(known, Known::Nothing),
            "nothing known of bytes without the Call-ID: {known:?}"
        );
        assert_eq!(metrics.captured.with_label_values(&["in"]).get(), 3);
    }

    #[test]
    fn scanned_messages_join_their_leg_as_parsed_ones_did() {
        let (tracer, _metrics, mut rx) = tracer(16);
        let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
        invite(&tracer, "in-1");
        // The SBC's own answer, scanned: it ends the leg that is no call.
        tracer.capture(
            Direction::Out,
            Side::Inside,
            TransportKind::Udp,
            a,
            a,
            Bytes::from_static(
                b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
                  From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>;tag=s1\r\n\
                  Call-ID: in-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            ),
        );
        // An INVITE the SBC sends (a new leg): scanned, its numbers too.
        tracer.capture(
            Direction::Out,
            Side::Outside,
            TransportKind::Udp,
            a,
            a,
            Bytes::from_static(
                b"INVITE sip:4930222@carrier SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs\r\n\
                  From: <sip:200@sbc>;tag=s2\r\nTo: <sip:4930222@carrier>\r\nCall-ID: out-1\r\n\
                  CSeq: 7 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n",
            ),
        );
        drain(&tracer, &mut rx);
        tracer.with_store(|s| {
            let leg = s.by_call_id("in-1");
            let [leg] = leg.as_slice() else {
                panic!("one leg in-1")
            };
            assert_eq!(leg.messages.len(), 2);
            assert_eq!(leg.final_status, Some(486));
            assert!(leg.ended(), "a failed leg that is no call is done");
            let [last] = leg.messages.iter().skip(1).collect::<Vec<_>>()[..] else {
                panic!("the answer")
            };
            assert_eq!(
                (last.summary().as_str(), last.cseq().as_str()),
                ("486 Busy Here", "1 INVITE")
            );
            let out = s.by_call_id("out-1");
            let [out] = out.as_slice() else {
                panic!("one leg out-1")
            };
            assert_eq!(
                (out.calling.as_deref(), out.called.as_deref()),
                (Some("200"), Some("4930222"))
            );
        });
    }

    /// An INVITE of Call-ID `call_id`, as a transport captures it.
    fn invite(tracer: &Tracer, call_id: &str) {
        let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
        let raw = Bytes::from(format!(
            "INVITE sip:4930111@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
        let m = Message::parse(raw.clone(), &Limits::default()).expect("parses");
        tracer.capture_received(Side::Inside, TransportKind::Udp, (a, a), &m, raw);
    }

    /// Runs the trace task's part on everything queued.
    fn drain(tracer: &Tracer, rx: &mut mpsc::UnboundedReceiver<Queued>) {
        while let Ok(q) = rx.try_recv() {
            tracer.inner.apply(q, false);
        }
    }

    #[test]
    fn a_call_is_linked_after_its_invites_and_only_if_a_leg_is_held() {
        // The link used to reach the store at once, before the INVITEs queued ahead of it, so
        // the store could not tell a traced call from another and linked every live call.
        let (tracer, _metrics, mut rx) = tracer(16);
        invite(&tracer, "in-1");
        tracer.link(1, "in-1", "out-1");
        tracer.link(2, "in-2", "out-2");
        let linked = |id: &str| tracer.with_store(|s| s.correlation(id) != Correlation::None);
        assert!(!linked("in-1"), "the link waits behind the INVITE");
        drain(&tracer, &mut rx);
        assert!(linked("in-1") && linked("out-1"), "a traced call is linked");
        assert!(
            !linked("in-2") && !linked("out-2"),
            "no leg of call 2 is held"
        );
        let bytes = tracer.with_store(TraceStore::bytes);
        tracer.call_ended(2, Instant::now());
        drain(&tracer, &mut rx);
        assert_eq!(tracer.with_store(TraceStore::bytes), bytes);
    }

    #[test]
    fn links_and_ends_pass_a_full_queue() {
        // Messages beyond `[trace] queue` are dropped; a dropped end would keep its call's legs
        // (live, never evicted) for good.
        let (tracer, metrics, mut rx) = tracer(1);
        invite(&tracer, "in-1");
        invite(&tracer, "in-9");
        assert_eq!(metrics.dropped.with_label_values(&["queue_full"]).get(), 1);
        tracer.link(1, "in-1", "out-1");
        tracer.call_ended(1, Instant::now());
        drain(&tracer, &mut rx);
        let legs =
            tracer.with_store(|s| s.by_call(1).iter().map(|l| l.ended()).collect::<Vec<_>>());
        assert_eq!(legs, [true], "linked, then ended");
        // The slot the message took is free again.
        invite(&tracer, "in-3");
        assert_eq!(metrics.dropped.with_label_values(&["queue_full"]).get(), 1);
    }
}
