//! The per-call SIP trace: the messages of every INVITE dialog leg, linked into calls, kept for
//! a while after the call ends, every size bounded. Plain state with injected time, so the
//! bounds are tested without sockets or sleeps.
//!
//! A leg (one Call-ID) starts with an INVITE request; later messages with its Call-ID are
//! appended to its ring. The signaling task links a call's two legs ([`TraceStore::link`]) and
//! says when the call ended ([`TraceStore::call_ended`]), through the capture queue, so that
//! a link reaches the store after the messages captured before it: the call's INVITEs. Only a
//! call with a leg held is linked, unless HEP needs every call's correlation
//! ([`TraceStore::linking_every_call`]). A leg that never became a call (a
//! 404 for an unrouted number, a 503 from admission, a challenge) is done at its final error
//! response. Done legs stay for `keep` and then go; when a bound is reached, the leg done the
//! longest goes first, and with none done the new message or leg is dropped (counted).
//!
//! No message pays for the size of the store: done legs wait in a queue in the order they
//! became done (expiry and eviction take its front), a call's Call-IDs are indexed for its
//! end, and the look over every leg and link for what expires without an event of its own
//! (quiet legs that never became a call, links of ended calls) runs once per [`SWEEP`].
//!
//! The byte bound counts what the store really holds, not only the message bytes: each kept
//! message's entry (its ring slot, capacity included) and allocation, each leg's record, map
//! slot and strings, and the call links (see [`TraceStore::bytes`]). With message bytes alone,
//! the default 32 MiB held ~30 MB at 4,096 legs although the messages were a fraction of it.
//! Entries are kept compact for the same reason: summary and CSeq are derived from the stored
//! message, not kept as two more strings, a message's header lines that repeat the leg's INVITE
//! are references to it (`compact.rs`; the INVITE stays when the ring is full), and a leg's
//! ring grows a few slots at a time rather than doubling.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use sbc_proto::{
    net::{Side, TransportKind},
    sip::{Headline, Message, Method, Parties},
};

use super::{Captured, compact};

/// Which way a message went, seen from the SBC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from a peer.
    In,
    /// Sent to a peer.
    Out,
}

/// Limits of the store (from `[trace]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    /// Messages kept per leg.
    pub per_leg: usize,
    /// Bytes kept of one message.
    pub message_bytes: usize,
    /// Legs held at once.
    pub legs: usize,
    /// Bytes held in total: messages and their bookkeeping ([`TraceStore::bytes`]).
    pub total_bytes: usize,
    /// How long a done leg stays.
    pub keep: Duration,
}

impl TraceLimits {
    /// The limits of `[trace]`.
    pub fn from_config(t: &crate::config::Trace) -> Self {
        Self {
            per_leg: t.max_messages_per_leg,
            message_bytes: t.max_message_bytes,
            legs: t.max_legs,
            total_bytes: t.max_total_mib.saturating_mul(1024 * 1024),
            keep: Duration::from_secs(t.keep_s),
        }
    }
}

/// Why a message was not kept, or a kept one was dropped (the `reason` label of
/// `sbc_trace_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The oldest message of a full leg ring made room for a new one.
    LegFull,
    /// No room under the total bytes bound and no done leg to forget.
    TotalBytes,
    /// A new leg and no room under the leg bound.
    MaxLegs,
    /// A done leg forgotten early to make room (before `keep` ran out).
    Evicted,
}

impl Dropped {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::LegFull => "leg_full",
            Self::TotalBytes => "total_bytes",
            Self::MaxLegs => "max_legs",
            Self::Evicted => "evicted",
        }
    }
}

/// One message as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Wall-clock capture time.
    pub at: SystemTime,
    /// Received or sent.
    pub dir: Direction,
    /// The side of the peer.
    pub side: Side,
    /// Transport.
    pub transport: TransportKind,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// The message (cut at `max_message_bytes`), as stored: header lines that repeat the
    /// leg's first message are references to it (`compact.rs`, [`Leg::data`]).
    data: Box<[u8]>,
    /// Whether the message was cut.
    pub truncated: bool,
    /// Whether `data` refers to the leg's first message.
    encoded: bool,
    /// The status code of a response, 0 for a request.
    status: u16,
    /// The CSeq number.
    seq: u32,
    /// The CSeq method (a request's own: the parser checks they match).
    method: Method,
}

impl Entry {
    /// The start line's summary: `INVITE`, `180 Ringing`, …
    pub fn summary(&self) -> String {
        if self.status == 0 {
            return self.method.to_string();
        }
        // The reason phrase is the start line's third part (`SIP/2.0 180 Ringing`); a start
        // line cut by `max_message_bytes` (at least 256) loses at most its end.
        let line = self
            .data
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        let reason = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
        format!("{} {}", self.status, String::from_utf8_lossy(reason))
            .trim_end()
            .to_owned()
    }

    /// The CSeq (`1 INVITE`).
    pub fn cseq(&self) -> String {
        format!("{} {}", self.seq, self.method)
    }

    /// Whether it is a response.
    pub fn is_response(&self) -> bool {
        self.status != 0
    }

    /// The CSeq method.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// One traced leg (one Call-ID).
#[derive(Debug, Clone)]
pub struct Leg {
    /// The Call-ID.
    pub call_id: String,
    /// Side the leg is on.
    pub side: Side,
    /// The call it belongs to, once linked.
    pub call: Option<u64>,
    /// The other leg's Call-ID, once linked.
    pub other: Option<String>,
    /// Calling number (From user) of the INVITE.
    pub calling: Option<String>,
    /// Called number (Request-URI user) of the INVITE.
    pub called: Option<String>,
    /// The final response to the INVITE, once seen.
    pub final_status: Option<u16>,
    /// When the leg began (wall clock).
    pub started: SystemTime,
    /// Kept messages, oldest first.
    pub messages: VecDeque<Entry>,
    /// Messages dropped from this leg's ring.
    pub dropped: u64,
    /// When the leg became done (its call ended or it failed).
    done: Option<Instant>,
    /// Last message, for legs that never finish (kept `keep` after going quiet).
    last: Instant,
    /// Bytes of the kept messages' allocations.
    data_bytes: usize,
    /// Where the first message's header lines are (what later messages refer to).
    dict: compact::Dict,
}

impl Leg {
    /// Whether the call ended or failed.
    pub fn ended(&self) -> bool {
        self.done.is_some()
    }

    /// What the leg holds: its map slot (key and record), its strings, its ring's slots
    /// (capacity, not length) and its messages.
    fn cost(&self) -> usize {
        let strings = [
            Some(&self.call_id),
            self.other.as_ref(),
            self.calling.as_ref(),
            self.called.as_ref(),
        ];
        // The map's key is a second copy of the Call-ID.
        LEG_SLOT
            + heap(self.call_id.len())
            + strings
                .into_iter()
                .flatten()
                .map(|s| heap(s.len()))
                .sum::<usize>()
            + self.messages.capacity() * size_of::<Entry>()
            + self.data_bytes
            + self.dict.heap_bytes()
    }

    /// Appends `entry`, growing the ring by [`RING_STEP`] slots when full (a doubling ring
    /// of 16 slots for 9 messages holds 7 entries' worth of nothing).
    fn push(&mut self, entry: Entry) {
        if self.messages.len() == self.messages.capacity() {
            self.messages.reserve_exact(RING_STEP);
        }
        self.data_bytes += heap(entry.data.len());
        if self.messages.is_empty() && self.dict.is_empty() {
            self.dict = compact::Dict::of(&entry.data);
        }
        self.messages.push_back(entry);
    }

    /// The message of `entry` (one of this leg's).
    pub fn data<'a>(&'a self, entry: &'a Entry) -> Cow<'a, [u8]> {
        match self.messages.front() {
            Some(first) if entry.encoded => Cow::Owned(compact::decode(&first.data, &entry.data)),
            _ => Cow::Borrowed(&entry.data),
        }
    }

    /// Drops the oldest message but the first (the INVITE, which later ones refer to).
    fn pop(&mut self) -> bool {
        let old = if self.messages.len() > 1 {
            self.messages.remove(1)
        } else {
            self.dict = compact::Dict::default();
            self.messages.pop_front()
        };
        let Some(old) = old else {
            return false;
        };
        self.data_bytes -= heap(old.data.len());
        true
    }
}

/// Slots a leg's ring grows by.
const RING_STEP: usize = 4;

/// What the allocator takes for a block of `len` bytes: glibc's malloc adds an 8-byte header
/// and rounds to 16 (an empty string allocates nothing).
const fn heap(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).div_ceil(16) * 16
    }
}

/// A leg's map slot: key, record, and hashbrown's control byte.
const LEG_SLOT: usize = size_of::<String>() + size_of::<Leg>() + 1;

/// A link's map slot.
const LINK_SLOT: usize = size_of::<String>() + size_of::<Link>() + 1;

/// What the HEP export can say about a message's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correlation<'a> {
    /// No call: send without a correlation id.
    None,
    /// A call's leg whose other leg is not known yet: worth waiting for.
    Pending,
    /// The other leg's Call-ID.
    Other(&'a str),
}

/// A call's link as the signaling task gave it, by leg Call-ID. Kept apart from the legs: the
/// signaling task may link a call before the capture task has seen its messages.
///
/// Every live call has two (traced or not: HEP correlation needs them), so a Call-ID is one
/// shared allocation ([`CallIdRc`]): the key of its leg's link, the other link's `other` and
/// the call index's entry, rather than three copies.
#[derive(Debug, Clone)]
struct Link {
    call: u64,
    other: CallIdRc,
    ended: Option<Instant>,
}

/// A Call-ID shared by the links and the call index.
type CallIdRc = Arc<str>;

/// What the allocator takes for a shared Call-ID: the counts and the text.
const fn shared_heap(id: &str) -> usize {
    heap(2 * size_of::<usize>() + id.len())
}

/// `id`'s allocation if the holder about to drop it is the last one (else 0): a shared Call-ID
/// is counted once, from its first holder to its last.
fn last_holder(id: &CallIdRc) -> usize {
    if Arc::strong_count(id) == 1 {
        shared_heap(id)
    } else {
        0
    }
}

/// The traces.
#[derive(Debug)]
pub struct TraceStore {
    limits: TraceLimits,
    legs: HashMap<String, Leg>,
    links: HashMap<CallIdRc, Link>,
    /// The legs' [`Leg::cost`], summed.
    bytes: usize,
    /// The shared Call-IDs of the links and the call index, each counted once.
    link_bytes: usize,
    /// Legs in the order they became done, with when: the next to expire or to evict is at
    /// the front (entries of legs gone or active again are skipped when they come up).
    done: VecDeque<(Instant, String)>,
    /// The Call-IDs in [`Self::done`].
    done_bytes: usize,
    /// Live calls' Call-IDs (from [`Self::link`] to [`Self::call_ended`]; a failover links a
    /// second outside leg to the same call).
    calls: HashMap<u64, Vec<CallIdRc>>,
    /// The lists' slots in [`Self::calls`] (their Call-IDs are in `link_bytes`).
    call_bytes: usize,
    /// When the next sweep for quiet legs and ended links is due ([`SWEEP`]).
    next_sweep: Option<Instant>,
    /// Sweeps done (each looks at every leg and link).
    sweeps: u64,
    /// [`Self::link`] looks over the links for ended ones at this many (or twice the legs).
    links_checked: usize,
    /// Reused for every kept message: each is then one allocation.
    encoder: compact::Encoder,
    /// Link every call, traced or not (HEP correlation); else only calls with a leg held.
    every_call: bool,
    /// Drops since the last [`TraceStore::take_drops`], by reason.
    drops: Vec<Dropped>,
}

/// How often the store looks over every leg and link for those that expire without an event
/// of their own (legs that never became a call and went quiet, links of ended calls): not per
/// message, where a scan of thousands of legs cost more than the call itself (`perf` of the
/// signaling benchmark at 1,000 calls/s: half the SBC's samples in these scans).
const SWEEP: Duration = Duration::from_secs(1);

/// A done-queue entry's slot.
const DONE_SLOT: usize = size_of::<(Instant, String)>();

/// A live call's slot in the call index: key, its list of Call-IDs, control byte (the list's
/// own slots are counted in `call_bytes`).
const CALL_SLOT: usize = size_of::<u64>() + size_of::<Vec<CallIdRc>>() + 1;

impl TraceStore {
    /// An empty store.
    pub fn new(limits: TraceLimits) -> Self {
        Self {
            limits,
            legs: HashMap::new(),
            links: HashMap::new(),
            bytes: 0,
            link_bytes: 0,
            done: VecDeque::new(),
            done_bytes: 0,
            calls: HashMap::new(),
            call_bytes: 0,
            next_sweep: None,
            sweeps: 0,
            links_checked: 0,
            encoder: compact::Encoder::default(),
            drops: Vec::new(),
            every_call: false,
        }
    }

    /// Links every call, whether any of its legs is held or not: the HEP export correlates
    /// every message it sends, traced or not ([`TraceStore::correlation`]).
    #[must_use]
    pub fn linking_every_call(mut self) -> Self {
        self.every_call = true;
        self
    }

    /// Queues leg `call_id`, done at `at`, for expiry and eviction.
    fn mark_done(&mut self, at: Instant, call_id: &str) {
        self.done_bytes += heap(call_id.len());
        self.done.push_back((at, call_id.to_owned()));
    }

    /// Takes the front of the done queue.
    fn pop_done(&mut self) -> Option<(Instant, String)> {
        let front = self.done.pop_front()?;
        self.done_bytes -= heap(front.1.len());
        Some(front)
    }

    /// Removes leg `call_id` if the done-queue entry `(at, call_id)` is still its own (the
    /// leg exists and is done since `at`); returns whether it did.
    fn remove_done(&mut self, at: Instant, call_id: &str) -> bool {
        if self.legs.get(call_id).is_none_or(|l| l.done != Some(at)) {
            return false;
        }
        if let Some(l) = self.legs.remove(call_id) {
            self.bytes -= l.cost();
        }
        true
    }

    /// Records one captured message, parsed as `msg` (retention runs on `c.now`, the ladder
    /// shows `c.at`).
    pub fn record(&mut self, c: &Captured, msg: &Message) {
        self.record_facts(c, &Headline::of(msg), msg.as_bytes(), || {
            owned(Parties::scan(msg.as_bytes()).unwrap_or_else(|| Parties::of(msg)))
        });
    }

    /// Records one captured message, `raw`, by its `facts`; `numbers` gives the calling and
    /// called numbers of a message that starts a leg (a scan, or a parse where it declines).
    pub fn record_facts(
        &mut self,
        c: &Captured,
        facts: &Headline<'_>,
        raw: &[u8],
        numbers: impl FnOnce() -> (Option<String>, Option<String>),
    ) {
        let (now, at, side) = (c.now, c.at, c.side);
        self.expire(now);
        let call_id = facts.call_id;
        // One lookup for the leg's first message to encode against and whether its ring is
        // full (the Call-ID's hash was a tenth of the trace's work per call).
        let held = self.legs.get(call_id);
        if held.is_none() && !facts.is_invite_request() {
            return;
        }
        let redacted = super::redact::credentials(raw);
        let raw: &[u8] = &redacted;
        let keep = raw.len().min(self.limits.message_bytes);
        let cut = raw.get(..keep).unwrap_or(raw);
        let mut new_leg = None;
        let (data, encoded, full) = match held {
            Some(l) => {
                let full = l.messages.len() == l.messages.capacity()
                    && l.messages.len() < self.limits.per_leg;
                match l.messages.front() {
                    Some(first) => {
                        let data = Box::from(self.encoder.encode(&first.data, &l.dict, cut));
                        (data, true, full)
                    }
                    None => (Box::from(cut), false, full),
                }
            }
            None => {
                if self.legs.len() >= self.limits.legs && !self.evict_one() {
                    self.drops.push(Dropped::MaxLegs);
                    return;
                }
                let (calling, called) = numbers();
                let link = self.links.get(call_id);
                new_leg = Some(Leg {
                    call_id: call_id.to_owned(),
                    side,
                    call: link.map(|l| l.call),
                    other: link.map(|l| l.other.to_string()),
                    calling,
                    called,
                    final_status: None,
                    started: at,
                    messages: VecDeque::new(),
                    dropped: 0,
                    done: link.and_then(|l| l.ended),
                    last: now,
                    data_bytes: 0,
                    dict: compact::Dict::default(),
                });
                // A growing map counts as grown (its new spare slots) before the room is made.
                self.legs.reserve(1);
                (Box::from(cut), false, false)
            }
        };
        // The message's allocation, the ring's next slots when it is full, and a new leg's
        // record: a leg whose first message does not fit is not created.
        let grows = new_leg.is_some() || full;
        let ring = if grows {
            RING_STEP * size_of::<Entry>()
        } else {
            0
        };
        // (The new leg's map slot is already counted, spare.) Its record includes where its
        // first message's header lines are.
        if let Some(leg) = new_leg.as_mut() {
            leg.dict = compact::Dict::of(&data);
        }
        let record = new_leg.as_ref().map_or(0, |l| l.cost() - LEG_SLOT);
        if !self.make_room(heap(data.len()) + ring + record) {
            return;
        }
        if let Some(leg) = new_leg {
            self.bytes += leg.cost();
            if let Some(at) = leg.done {
                self.mark_done(at, call_id);
            }
            self.legs.insert(call_id.to_owned(), leg);
        }
        let cseq = &facts.cseq;
        let entry = Entry {
            at,
            dir: c.dir,
            side,
            transport: c.transport,
            src: c.src,
            dst: c.dst,
            data,
            truncated: keep < raw.len(),
            encoded,
            status: facts.status.unwrap_or(0),
            seq: cseq.seq,
            method: cseq.method.clone(),
        };
        let Some(leg) = self.legs.get_mut(call_id) else {
            // Evicting made room by removing done legs; a leg just touched may be one of them.
            return;
        };
        let before = leg.cost();
        leg.last = now;
        let mut failed = false;
        if facts.request.is_none()
            && cseq.method == Method::Invite
            && let Some(code) = facts.status
            && code >= 200
        {
            leg.final_status = Some(code);
            // A failed leg that is no call is done now; a call's end comes from signaling.
            if code >= 300 && leg.call.is_none() && leg.done.is_none() {
                leg.done = Some(now);
                failed = true;
            }
        }
        if leg.messages.len() >= self.limits.per_leg && leg.pop() {
            leg.dropped += 1;
            self.drops.push(Dropped::LegFull);
        }
        leg.push(entry);
        self.bytes = self.bytes - before + leg.cost();
        if failed {
            self.mark_done(now, call_id);
        }
    }

    /// Evicts done legs until `need` more bytes fit under the bound; false (counted) if they
    /// do not.
    fn make_room(&mut self, need: usize) -> bool {
        while self.bytes() + need > self.limits.total_bytes {
            if !self.evict_one() {
                self.drops.push(Dropped::TotalBytes);
                return false;
            }
        }
        true
    }

    /// Links the legs of `call` (Call-IDs on the inside and the outside). Without
    /// [`Self::linking_every_call`], only a call that has a leg held (or is linked already: a
    /// failover's new leg) is linked: the link is given after the call's INVITEs were
    /// recorded, and a call none of whose legs is held has nothing to link. Every live call
    /// had two links before, traced or not: ~3 MB at 10,000 calls for 2,048 traced.
    pub fn link(&mut self, call: u64, inside: &str, outside: &str) {
        if !self.every_call
            && !self.calls.contains_key(&call)
            && !self.legs.contains_key(inside)
            && !self.legs.contains_key(outside)
        {
            return;
        }
        // Links of ended calls go with their legs; live ones are bounded by the legs held (with
        // HEP, by the call layer's own call limit). This keeps a flood of short calls from
        // growing the table.
        if self.links.len() >= self.limits.legs.saturating_mul(2).max(self.links_checked) {
            let legs = &self.legs;
            let mut freed = 0;
            self.links.retain(|id, l| {
                let keep = l.ended.is_none() || legs.contains_key(&**id);
                if !keep {
                    freed += last_holder(id) + last_holder(&l.other);
                }
                keep
            });
            self.link_bytes -= freed;
            // Live links stay: look again only when they doubled, not at every call (a scan
            // per call once more calls are up than legs are kept).
            self.links_checked = self.links.len().saturating_mul(2);
        }
        let ids = self.calls.entry(call).or_default();
        if ids.is_empty() {
            // Two legs, as a rule: not the four slots a first push reserves.
            ids.reserve_exact(2);
        }
        let [inside, outside] = [inside, outside].map(|id| {
            if let Some(known) = ids.iter().find(|known| &***known == id) {
                return known.clone();
            }
            // A leg relinked to another call (not seen) keeps its link's Call-ID.
            let shared = match self.links.get_key_value(id) {
                Some((known, _)) => known.clone(),
                None => {
                    self.link_bytes += shared_heap(id);
                    CallIdRc::from(id)
                }
            };
            ids.push(shared.clone());
            self.call_bytes += size_of::<CallIdRc>();
            shared
        });
        for (mine, other) in [(&inside, &outside), (&outside, &inside)] {
            let link = Link {
                call,
                other: other.clone(),
                ended: None,
            };
            if let Some(old) = self.links.insert(mine.clone(), link) {
                self.link_bytes -= last_holder(&old.other);
            }
            if let Some(leg) = self.legs.get_mut(&**mine) {
                let before = leg.cost();
                leg.call = Some(call);
                leg.other = Some(other.to_string());
                // A leg that failed (e.g. a failover's first trunk) but belongs to a live call
                // stays until the call ends.
                leg.done = None;
                self.bytes = self.bytes - before + leg.cost();
            }
        }
    }

    /// The call ended at `now`: its legs are kept for `keep` from now.
    pub fn call_ended(&mut self, now: Instant, call: u64) {
        let Some(ids) = self.calls.remove(&call) else {
            return;
        };
        self.call_bytes -= ids.len() * size_of::<CallIdRc>();
        // The links normally still hold them (until their legs go), but not always.
        self.link_bytes -= ids.iter().map(last_holder).sum::<usize>();
        for id in &ids {
            if let Some(link) = self.links.get_mut(&**id)
                && link.call == call
            {
                link.ended.get_or_insert(now);
            }
            let done = self
                .legs
                .get_mut(&**id)
                .filter(|l| l.call == Some(call) && l.done.is_none());
            if let Some(leg) = done {
                leg.done = Some(now);
                self.mark_done(now, id);
            }
        }
    }

    /// The correlation id for a message of `call_id`: the other leg's Call-ID once linked.
    pub fn correlation(&self, call_id: &str) -> Correlation<'_> {
        if let Some(l) = self.links.get(call_id) {
            return Correlation::Other(&l.other);
        }
        match self.legs.get(call_id) {
            None => Correlation::None,
            Some(l) => match &l.other {
                Some(o) => Correlation::Other(o),
                None if l.done.is_some() => Correlation::None,
                None => Correlation::Pending,
            },
        }
    }

    /// The legs of `call`, inside first.
    pub fn by_call(&self, call: u64) -> Vec<&Leg> {
        let mut v: Vec<&Leg> = self
            .legs
            .values()
            .filter(|l| l.call == Some(call))
            .collect();
        v.sort_by_key(|l| (l.side != Side::Inside, l.started));
        v
    }

    /// The leg with `call_id` and the legs linked to it.
    pub fn by_call_id(&self, call_id: &str) -> Vec<&Leg> {
        let Some(leg) = self.legs.get(call_id) else {
            return Vec::new();
        };
        match leg.call {
            Some(call) => self.by_call(call),
            None => vec![leg],
        }
    }

    /// The most recent leg whose calling or called number is `number` (exact), with the legs
    /// linked to it.
    pub fn by_number(&self, number: &str) -> Vec<&Leg> {
        let found = self
            .legs
            .values()
            .filter(|l| l.calling.as_deref() == Some(number) || l.called.as_deref() == Some(number))
            .max_by_key(|l| l.started);
        match found {
            Some(l) => self.by_call_id(&l.call_id.clone()),
            None => Vec::new(),
        }
    }

    /// Legs held now.
    pub fn len(&self) -> usize {
        self.legs.len()
    }

    /// Whether no leg is held.
    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    /// Bytes held now, what `[trace] max_total_mib` bounds: every leg's [`Leg::cost`]
    /// (messages, entries, ring slots, strings, map slot), the spare slots of the legs' map,
    /// and the links (map slots and Call-IDs). Allocations are counted as glibc's malloc
    /// takes them ([`heap`]); the maps' spare capacity as their `capacity()`, which hashbrown
    /// rounds up to a power of two of buckets (up to 8/7 more).
    pub fn bytes(&self) -> usize {
        self.bytes
            + (self.legs.capacity() - self.legs.len()) * LEG_SLOT
            + self.links.capacity() * LINK_SLOT
            + self.link_bytes
            + self.done.capacity() * DONE_SLOT
            + self.done_bytes
            + self.calls.capacity() * CALL_SLOT
            + self.call_bytes
    }

    /// Drops since the last call, for the metrics.
    pub fn take_drops(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.drops)
    }

    /// Forgets done legs older than `keep` (from the front of the done queue: what is due, no
    /// more), and, once per [`SWEEP`], legs quiet for longer than `keep` that never became a
    /// call (a lost final response, an INVITE nobody answered) and links of ended calls.
    pub fn expire(&mut self, now: Instant) {
        let keep = self.limits.keep;
        while let Some((at, _)) = self.done.front() {
            if now.saturating_duration_since(*at) < keep {
                break;
            }
            if let Some((at, id)) = self.pop_done() {
                self.remove_done(at, &id);
            }
        }
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP);
        self.sweeps += 1;
        let mut freed = 0;
        self.legs.retain(|_, l| {
            let since_done = l.done.map(|d| now.saturating_duration_since(d));
            let quiet = now.saturating_duration_since(l.last);
            let gone = since_done.is_some_and(|d| d >= keep) || (l.call.is_none() && quiet >= keep);
            if gone {
                freed += l.cost();
            }
            !gone
        });
        self.bytes -= freed;
        let legs = &self.legs;
        let mut freed = 0;
        self.links.retain(|id, l| {
            let stays = l.ended.is_none_or(|e| {
                now.saturating_duration_since(e) < keep || legs.contains_key(&**id)
            });
            if !stays {
                freed += last_holder(id) + last_holder(&l.other);
            }
            stays
        });
        self.link_bytes -= freed;
    }

    /// Forgets the leg done the longest (the front of the done queue); `false` if none is
    /// done.
    fn evict_one(&mut self) -> bool {
        while let Some((at, id)) = self.pop_done() {
            if self.remove_done(at, &id) {
                self.drops.push(Dropped::Evicted);
                return true;
            }
        }
        false
    }
}

/// The calling and called numbers a leg keeps.
pub(super) fn owned(p: Parties<'_>) -> (Option<String>, Option<String>) {
    (p.calling.map(str::to_owned), p.called.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sbc_proto::sip::Limits;

    use super::*;

    const PBX: &str = "192.0.2.10:5060";
    const SBC_IN: &str = "192.0.2.1:5060";

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn invite(call_id: &str) -> Message {
        let text = format!(
            "INVITE sip:4930111@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("valid")
    }

    fn response(call_id: &str, code: u16, reason: &str, method: &str) -> Message {
        let text = format!(
            "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>;tag=b\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("valid")
    }

    fn limits() -> TraceLimits {
        TraceLimits {
            per_leg: 4,
            message_bytes: 100,
            legs: 3,
            total_bytes: 10_000,
            keep: Duration::from_secs(60),
        }
    }

    fn rec(s: &mut TraceStore, now: Instant, dir: Direction, m: &Message) {
        let c = Captured {
            at: SystemTime::UNIX_EPOCH,
            now,
            dir,
            side: Side::Inside,
            transport: TransportKind::Udp,
            src: a(PBX),
            dst: a(SBC_IN),
            data: Bytes::new(),
        };
        s.record(&c, m);
    }

    #[test]
    fn a_stored_credential_has_no_digest_response() {
        let text = "INVITE sip:4930111@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>\r\nCall-ID: cr\r\n\
             CSeq: 2 INVITE\r\nMax-Forwards: 70\r\n\
             Proxy-Authorization: Digest username=\"t\", response=\"5ec2e7\"\r\n\
             Content-Length: 0\r\n\r\n";
        let m = Message::parse(Bytes::from(text), &Limits::default()).expect("valid");
        let mut s = TraceStore::new(TraceLimits {
            message_bytes: 4096,
            ..limits()
        });
        rec(&mut s, Instant::now(), Direction::Out, &m);
        let data = &s.by_call_id("cr")[0].messages[0].data;
        let stored = String::from_utf8_lossy(data);
        assert!(!stored.contains("5ec2e7"), "{stored}");
        assert!(
            stored.contains("username=\"t\", response=\"redacted\""),
            "{stored}"
        );
    }

    #[test]
    fn failed_call_is_kept_for_keep_then_forgotten() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits());
        rec(&mut s, t0, Direction::In, &invite("c1"));
        rec(
            &mut s,
            t0,
            Direction::Out,
            &response("c1", 486, "Busy Here", "INVITE"),
        );
        // An OPTIONS with another Call-ID is no call and is not traced.
        rec(
            &mut s,
            t0,
            Direction::In,
            &response("o1", 200, "OK", "OPTIONS"),
        );
        assert_eq!(s.len(), 1);
        let legs = s.by_number("4930111");
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].final_status, Some(486));
        assert_eq!(legs[0].calling.as_deref(), Some("100"));
        let summaries: Vec<String> = legs[0].messages.iter().map(Entry::summary).collect();
        assert_eq!(summaries, ["INVITE", "486 Busy Here"]);
        assert!(legs[0].ended());
        assert!(legs[0].messages[0].truncated, "cut at 100 bytes");
        assert_eq!(legs[0].messages[0].data.len(), 100);
        s.expire(t0 + Duration::from_secs(59));
        assert_eq!(s.len(), 1, "kept for keep_s");
        s.expire(t0 + Duration::from_secs(60));
        assert!(s.is_empty());
        assert_eq!(s.bytes(), empty_maps(&s), "only the maps' slots are left");
    }

    #[test]
    fn linked_legs_correlate_and_live_until_the_call_ends() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits());
        rec(&mut s, t0, Direction::In, &invite("in-1"));
        assert_eq!(
            s.correlation("in-1"),
            Correlation::Pending,
            "wait for the link"
        );
        assert_eq!(
            s.correlation("unknown"),
            Correlation::None,
            "no call: do not wait"
        );
        rec(&mut s, t0, Direction::Out, &invite("out-1"));
        s.link(7, "in-1", "out-1");
        assert_eq!(s.correlation("in-1"), Correlation::Other("out-1"));
        assert_eq!(s.correlation("out-1"), Correlation::Other("in-1"));
        assert_eq!(s.by_call(7).len(), 2);
        assert_eq!(s.by_call_id("out-1").len(), 2);
        // A live call outlives keep_s of silence.
        s.expire(t0 + Duration::from_secs(3600));
        assert_eq!(s.len(), 2);
        s.call_ended(t0 + Duration::from_secs(3600), 7);
        s.expire(t0 + Duration::from_secs(3660));
        assert!(s.is_empty());
    }

    #[test]
    fn a_message_costs_no_look_at_every_leg() {
        // Recording used to look over every leg and link for expired ones, per message: at
        // 4,096 legs that scan cost more than the call.
        let t0 = Instant::now();
        let mut s = TraceStore::new(TraceLimits {
            legs: 1000,
            total_bytes: 10 << 20,
            ..limits()
        });
        for k in 0..500 {
            let at = t0 + Duration::from_millis(k);
            rec(&mut s, at, Direction::In, &invite(&format!("leg-{k}")));
            rec(
                &mut s,
                at,
                Direction::Out,
                &response(&format!("leg-{k}"), 486, "Busy Here", "INVITE"),
            );
        }
        assert_eq!(
            s.sweeps, 1,
            "one sweep in the first second, not one per message"
        );
        // The failed legs still go at keep_s, from the done queue, oldest first.
        s.expire(t0 + Duration::from_millis(60_100));
        assert_eq!(s.len(), 399, "the 101 done 60 s ago or more are gone");
        assert!(s.by_call_id("leg-100").is_empty() && !s.by_call_id("leg-101").is_empty());
        s.expire(t0 + Duration::from_secs(61));
        assert!(s.is_empty());
        assert_eq!(s.bytes(), empty_maps(&s));
    }

    #[test]
    fn every_leg_of_a_failed_over_call_goes_when_the_call_ends() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits());
        // The first trunk's leg fails; the call goes on on a second outside leg.
        rec(&mut s, t0, Direction::In, &invite("in-5"));
        rec(&mut s, t0, Direction::Out, &invite("out-5a"));
        s.link(5, "in-5", "out-5a");
        rec(
            &mut s,
            t0,
            Direction::In,
            &response("out-5a", 503, "Service Unavailable", "INVITE"),
        );
        s.link(5, "in-5", "out-5b");
        rec(&mut s, t0, Direction::Out, &invite("out-5b"));
        assert_eq!(s.by_call(5).len(), 3);
        s.expire(t0 + Duration::from_secs(3600));
        assert_eq!(s.len(), 3, "a live call's legs stay");
        s.call_ended(t0 + Duration::from_secs(3600), 5);
        s.expire(t0 + Duration::from_secs(3660));
        assert!(s.is_empty(), "{:?}", s.by_call(5).len());
        assert_eq!(s.bytes(), empty_maps(&s));
    }

    #[test]
    fn a_call_id_is_held_once_by_the_links_and_the_call_index() {
        // Two links per linked call: the key of one is the other's `other` and the call
        // index's entry, one allocation counted once (three copies before).
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits()).linking_every_call();
        s.link(3, "in-3", "out-3");
        let (key, link) = s.links.get_key_value("in-3").expect("linked");
        assert_eq!(
            Arc::strong_count(key),
            3,
            "key, the other link, the call index"
        );
        assert!(Arc::ptr_eq(key, &s.links["out-3"].other));
        assert!(Arc::ptr_eq(&link.other, &s.calls[&3][1]));
        assert_eq!(s.calls[&3].capacity(), 2);
        assert_eq!(s.link_bytes, shared_heap("in-3") + shared_heap("out-3"));
        // Linked again (a failover): the inside Call-ID is not copied, the new one is added.
        s.link(3, "in-3", "out-3b");
        assert_eq!(
            s.link_bytes,
            shared_heap("in-3") + shared_heap("out-3") + shared_heap("out-3b")
        );
        s.call_ended(t0, 3);
        s.expire(t0 + Duration::from_secs(60));
        assert!(s.links.is_empty() && s.calls.is_empty());
        assert_eq!((s.link_bytes, s.call_bytes), (0, 0));
    }

    #[test]
    fn a_link_given_before_the_messages_applies_to_them() {
        // With HEP, every call is linked, traced or not (its messages are all exported).
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits()).linking_every_call();
        s.link(9, "in-9", "out-9");
        assert_eq!(s.correlation("in-9"), Correlation::Other("out-9"));
        rec(&mut s, t0, Direction::In, &invite("in-9"));
        rec(&mut s, t0, Direction::Out, &invite("out-9"));
        assert_eq!(s.by_call(9).len(), 2);
        s.call_ended(t0, 9);
        s.expire(t0 + Duration::from_secs(60));
        assert!(s.is_empty());
        assert_eq!(
            s.correlation("in-9"),
            Correlation::None,
            "the link went with its legs"
        );
    }

    #[test]
    fn a_call_is_linked_only_with_a_leg_held() {
        // Every live call had two links and an index entry, traced or not: at 10,000 calls
        // with 2,048 traced, ~3 MB that `[trace]` did not bound.
        let t0 = Instant::now();
        let mut s = TraceStore::new(TraceLimits {
            legs: 1,
            ..limits()
        });
        let empty = s.bytes();
        s.link(1, "in-1", "out-1");
        assert!(s.links.is_empty() && s.calls.is_empty());
        assert_eq!(s.bytes(), empty);
        s.call_ended(t0, 1);
        // A held leg is linked, and so is the other leg once its INVITE is recorded.
        rec(&mut s, t0, Direction::In, &invite("in-2"));
        s.link(2, "in-2", "out-2");
        assert_eq!(s.correlation("in-2"), Correlation::Other("out-2"));
        // A leg refused for `max_legs` leaves its call unlinked.
        rec(&mut s, t0, Direction::In, &invite("in-3"));
        assert!(s.by_call_id("in-3").is_empty());
        s.link(3, "in-3", "out-3");
        assert_eq!(s.correlation("in-3"), Correlation::None);
        // Call 2's new outside leg (a failover) joins it although it is not held.
        s.link(2, "in-2", "out-2b");
        assert_eq!(s.correlation("out-2b"), Correlation::Other("in-2"));
        s.call_ended(t0, 2);
        s.expire(t0 + Duration::from_secs(60));
        assert!(s.is_empty() && s.links.is_empty());
        assert_eq!(s.bytes(), empty_maps(&s));
    }

    #[test]
    fn every_bound_holds_and_is_counted() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(limits());
        // Per leg: 4 messages, the oldest dropped.
        for _ in 0..6 {
            rec(&mut s, t0, Direction::In, &invite("a"));
        }
        assert_eq!(s.by_call_id("a")[0].messages.len(), 4);
        assert_eq!(s.by_call_id("a")[0].dropped, 2);
        // Legs: 3; a 4th is refused while none is done, then the done one is evicted.
        rec(&mut s, t0, Direction::In, &invite("b"));
        rec(&mut s, t0, Direction::In, &invite("c"));
        rec(&mut s, t0, Direction::In, &invite("d"));
        assert_eq!(s.len(), 3);
        assert!(s.by_call_id("d").is_empty());
        rec(
            &mut s,
            t0,
            Direction::Out,
            &response("b", 404, "Not Found", "INVITE"),
        );
        rec(&mut s, t0, Direction::In, &invite("d"));
        assert!(s.by_call_id("b").is_empty(), "the done leg made room");
        assert_eq!(s.by_call_id("d").len(), 1);
        let drops: Vec<&str> = s.take_drops().iter().map(|d| d.label()).collect();
        assert_eq!(drops, ["leg_full", "leg_full", "max_legs", "evicted"]);
        // Total bytes: with room for two messages only, the third is refused.
        let mut probe = TraceStore::new(limits());
        rec(&mut probe, t0, Direction::In, &invite("x"));
        rec(&mut probe, t0, Direction::In, &invite("x"));
        let two = probe.bytes();
        let mut s = TraceStore::new(TraceLimits {
            total_bytes: two,
            ..limits()
        });
        rec(&mut s, t0, Direction::In, &invite("x"));
        rec(&mut s, t0, Direction::In, &invite("x"));
        rec(&mut s, t0, Direction::In, &invite("x"));
        assert_eq!(s.bytes(), two);
        let drops: Vec<&str> = s.take_drops().iter().map(|d| d.label()).collect();
        assert_eq!(drops, ["total_bytes"]);
    }

    /// What an emptied store still holds: its maps' slots.
    /// What an empty store still holds: the maps' slots and the done queue's and call index's
    /// capacity (no strings).
    fn empty_maps(s: &TraceStore) -> usize {
        assert_eq!((s.done_bytes, s.call_bytes), (0, 0), "strings left");
        s.legs.capacity() * LEG_SLOT
            + s.links.capacity() * LINK_SLOT
            + s.done.capacity() * DONE_SLOT
            + s.calls.capacity() * CALL_SLOT
    }

    #[test]
    fn the_bound_counts_what_a_leg_really_holds() {
        // Message bytes alone were a fraction of a leg's memory: entries, ring slots, strings
        // and map slots made the default 32 MiB hold ~30 MB at 4,096 legs.
        let t0 = Instant::now();
        let mut s = TraceStore::new(TraceLimits {
            per_leg: 64,
            message_bytes: 4096,
            legs: 100,
            ..limits()
        });
        let m = invite("c1");
        for _ in 0..9 {
            rec(&mut s, t0, Direction::In, &m);
        }
        let leg = &s.by_call_id("c1")[0];
        assert_eq!(
            leg.messages.capacity(),
            12,
            "grown 4 slots at a time, not to 16"
        );
        // Eight of the nine refer to the first one's lines (`compact.rs`).
        let data: usize = leg.messages.iter().map(|e| e.data.len()).sum();
        assert!(data < 9 * m.as_bytes().len() / 3, "{data}");
        let data = m.as_bytes().len() + 8 * heap(leg.messages[1].data.len());
        let records = size_of::<Leg>() + 12 * size_of::<Entry>() + 2 * "c1".len();
        assert!(
            s.bytes() >= data + records,
            "{} < {}",
            s.bytes(),
            data + records
        );
        // 168 bytes and two heap strings (summary, CSeq) before.
        assert!(
            size_of::<Entry>() <= 136,
            "an Entry is {} bytes",
            size_of::<Entry>()
        );
        // And the bound holds it: legs stop being traced, not memory growing.
        let bound = s.bytes() * 3;
        let mut s = TraceStore::new(TraceLimits {
            per_leg: 64,
            message_bytes: 4096,
            legs: 100,
            total_bytes: bound,
            ..limits()
        });
        for i in 0..10 {
            for _ in 0..9 {
                rec(&mut s, t0, Direction::In, &invite(&format!("c{i}")));
            }
        }
        assert!(s.bytes() <= bound);
        assert!(s.len() < 4, "{} legs", s.len());
        assert!(s.take_drops().contains(&Dropped::TotalBytes));
    }

    #[test]
    fn summary_and_cseq_come_from_the_stored_message() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(TraceLimits {
            message_bytes: 4096,
            ..limits()
        });
        rec(&mut s, t0, Direction::In, &invite("c1"));
        rec(
            &mut s,
            t0,
            Direction::Out,
            &response("c1", 180, "Ringing", "INVITE"),
        );
        let leg = s.by_call_id("c1")[0];
        let ringing = response("c1", 180, "Ringing", "INVITE");
        assert_eq!(
            leg.data(&leg.messages[1]),
            ringing.as_bytes(),
            "stored compact"
        );
        assert!(leg.messages[1].data.len() < ringing.as_bytes().len() / 2);
        let got: Vec<(String, String)> = leg
            .messages
            .iter()
            .map(|e| (e.summary(), e.cseq()))
            .collect();
        assert_eq!(
            got,
            [
                ("INVITE".to_owned(), "1 INVITE".to_owned()),
                ("180 Ringing".to_owned(), "1 INVITE".to_owned())
            ]
        );
    }

    #[test]
    fn a_full_ring_keeps_the_invite_the_others_refer_to() {
        let t0 = Instant::now();
        let mut s = TraceStore::new(TraceLimits {
            message_bytes: 4096,
            ..limits()
        });
        rec(&mut s, t0, Direction::In, &invite("c1"));
        for code in [180, 181, 182, 183, 200] {
            rec(
                &mut s,
                t0,
                Direction::Out,
                &response("c1", code, "X", "INVITE"),
            );
        }
        let leg = s.by_call_id("c1")[0];
        let summaries: Vec<String> = leg.messages.iter().map(Entry::summary).collect();
        assert_eq!(summaries, ["INVITE", "182 X", "183 X", "200 X"]);
        assert_eq!(leg.dropped, 2);
        let ok = response("c1", 200, "X", "INVITE");
        assert_eq!(leg.data(&leg.messages[3]), ok.as_bytes());
    }
}
