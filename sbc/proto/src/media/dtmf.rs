//! DTMF in the relay, sans I/O: the relay's half of converting between SIP INFO and RFC 4733
//! (`b2bua/dtmf_interwork.rs` is the signaling half).
//!
//! For a leg that takes RFC 4733 while the other side of the call takes SIP INFO, the call
//! layer marks the leg's `telephone-event` payload type as *terminated* ([`StreamDtmf`]):
//!
//! - **Generating** (a digit that came by INFO): the relay injects telephone-event packets into
//!   the RTP stream it sends toward the leg. They join that stream (RFC 4733 §2.5.1): same
//!   SSRC, the next sequence numbers (the forwarded packets after them are shifted so the
//!   sequence stays gap- and duplicate-free), an event timestamp that continues the stream's
//!   media clock, the marker bit on the first packet, the duration growing in every update,
//!   volume [`dtmf::VOLUME`], and the final packet with the E bit sent [`dtmf::END_REPEATS`]
//!   times (§2.5.1.4). The forwarded audio toward the leg is held back while the event plays,
//!   so the receiver gets the tone alone and sequence numbers stay unique.
//! - **Detecting** (a digit that leaves as INFO): the leg's telephone-events are read by a
//!   [`Detector`] (one report per event, none for retransmitted ends) and consumed: the `info`
//!   side negotiated no telephone-event and gets none; its sequence numbers are shifted to
//!   hide the gap.
//!
//! A stream with a terminated leg stays in the userspace relay (the fast path forwards bytes
//! and could neither inject nor shift). Time is an argument everywhere; packets are written
//! into the caller's buffer.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::dtmf::{self, Detected, Detector, Digit, Planned};

/// Clock rate of the telephone-events the relay terminates: the codec policy adds and tracks
/// only `telephone-event/8000` (`b2bua/codec_policy.rs`).
pub const CLOCK_RATE: u32 = 8000;
/// Interval between the packets of a generated event (RFC 4733 §2.5.1.3 suggests 50 ms).
pub const INTERVAL_MS: u32 = 50;
/// An event whose end packets were all lost is reported once its stream was quiet this long.
pub const QUIET: Duration = Duration::from_millis(400);
/// Bytes of a generated packet: a 12-byte RTP header and one event.
pub const PACKET_LEN: usize = 12 + dtmf::EVENT_LEN;

/// Which legs of a stream the SBC terminates DTMF for, set by the call layer after every
/// answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StreamDtmf {
    /// Per leg (`[inside, outside]`, see `Side::index`): the `telephone-event` payload type
    /// of a leg that takes RFC 4733 while the other side takes SIP INFO. Its events are
    /// detected and consumed; events toward it are generated with this number.
    pub terminated: [Option<u8>; 2],
}

impl StreamDtmf {
    /// Whether the stream terminates no DTMF (bytes cross as they are).
    pub fn is_none(&self) -> bool {
        self.terminated.iter().all(Option::is_none)
    }
}

/// Why a digit could not be queued for generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateRefusal {
    /// The stream does not terminate DTMF toward that leg (the call layer set no payload type).
    #[error("the stream terminates no DTMF toward that leg")]
    NotTerminated,
    /// The leg has this many digits waiting already (`[media] dtmf_queue`).
    #[error("{0} digits already queued")]
    QueueFull(usize),
}

/// The RTP stream the relay sends toward one leg, as far as injecting packets goes.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The source being sent (the forwarded one's, or a drawn one before any was seen).
    ssrc: Option<u32>,
    /// Added to every forwarded sequence number: packets injected minus packets held back.
    shift: u16,
    /// The highest sequence number sent.
    last_seq: u16,
    /// The newest timestamp sent and when.
    last_ts: Option<(u32, Instant)>,
}

fn newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000
}

fn header(packet: &[u8]) -> Option<(u16, u32, u32)> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Some((seq, ts, ssrc))
}

/// The payload of an RTP packet (after CSRCs and a header extension; RFC 3550 §5.1, §5.3.1).
fn payload(packet: &[u8]) -> Option<&[u8]> {
    header(packet)?;
    let mut at = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(at + 2..at + 4)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    packet.get(at..)
}

impl Outgoing {
    /// A forwarded packet: its sequence number shifted past the injected ones (in place).
    fn forward(&mut self, now: Instant, packet: &mut [u8]) {
        let Some((seq, ts, ssrc)) = header(packet) else {
            return;
        };
        if self.ssrc != Some(ssrc) {
            // A new source has its own sequence space (or the first one replaces the source
            // drawn for events sent before any audio).
            *self = Self {
                ssrc: Some(ssrc),
                last_seq: seq.wrapping_sub(1),
                ..Self::default()
            };
        }
        let out = seq.wrapping_add(self.shift);
        packet[2..4].copy_from_slice(&out.to_be_bytes());
        if newer(out, self.last_seq) {
            self.last_seq = out;
            self.last_ts = Some((ts, now));
        }
    }

    /// A packet of the current source not sent on: later ones close the gap it leaves.
    fn hold_back(&mut self, packet: &[u8]) {
        if let Some((_, _, ssrc)) = header(packet)
            && self.ssrc == Some(ssrc)
        {
            self.shift = self.shift.wrapping_sub(1);
        }
    }

    /// The media-clock timestamp of `now` for an event starting then: the newest timestamp
    /// sent advanced by the time since (§2.5.1.2: an event's timestamp is its start). `draw`
    /// gives random values when nothing was sent yet (RFC 3550 §5.1).
    fn timestamp(&mut self, now: Instant, draw: &mut dyn FnMut() -> u32) -> u32 {
        if self.ssrc.is_none() {
            self.ssrc = Some(draw());
        }
        let (ts, at) = match self.last_ts {
            Some(t) => t,
            None => {
                // Nothing sent yet: a random start (RFC 3550 §5.1) for both numbers.
                self.last_seq = (draw() & 0x7fff) as u16;
                let t = (draw(), now);
                self.last_ts = Some(t);
                t
            }
        };
        ts.wrapping_add(elapsed_units(at, now))
    }

    /// The source and next sequence number of an injected packet.
    fn next_seq(&mut self) -> (u32, u16) {
        self.last_seq = self.last_seq.wrapping_add(1);
        self.shift = self.shift.wrapping_add(1);
        (self.ssrc.unwrap_or_default(), self.last_seq)
    }
}

/// Timestamp units of the time from `at` to `now` at [`CLOCK_RATE`] (wrapping, as RTP does).
fn elapsed_units(at: Instant, now: Instant) -> u32 {
    let ms = now.saturating_duration_since(at).as_millis();
    (ms * u128::from(CLOCK_RATE) / 1000) as u32
}

/// A digit waiting to be sent.
#[derive(Debug, Clone, Copy)]
struct Queued {
    payload_type: u8,
    digit: Digit,
    duration_ms: u32,
    at: Instant,
}

/// A digit being sent.
#[derive(Debug, Clone)]
struct Playing {
    payload_type: u8,
    /// The event's timestamp (its start on the media clock, §2.5.1.2).
    timestamp: u32,
    started: Instant,
    packets: Vec<Planned>,
    next: usize,
}

impl Playing {
    fn due(&self) -> Option<Instant> {
        let p = self.packets.get(self.next)?;
        Some(self.started + Duration::from_millis(u64::from(p.offset_ms)))
    }
}

/// DTMF toward and from one leg of a stream.
#[derive(Debug, Clone, Default)]
struct LegDtmf {
    out: Outgoing,
    queue: VecDeque<Queued>,
    playing: Option<Playing>,
    /// When the next queued digit may start (one interval after the last end packet).
    free_at: Option<Instant>,
    detector: Detector,
    /// The last telephone-event received from the leg (for [`QUIET`]).
    heard: Option<Instant>,
}

impl LegDtmf {
    fn deadline(&self) -> Option<Instant> {
        match &self.playing {
            Some(p) => p.due(),
            None => {
                let q = self.queue.front()?;
                Some(self.free_at.map_or(q.at, |f| f.max(q.at)))
            }
        }
    }
}

/// The DTMF state of one stream of the relay table.
#[derive(Debug, Clone, Default)]
pub struct StreamDtmfState {
    config: StreamDtmf,
    /// Boxed, and only once the call layer first terminates DTMF on the stream: every
    /// concurrent call holds its streams, and few of them ever interwork DTMF (inline, the
    /// two legs were 376 of a stream's 1,360 bytes). Kept from then on, so that a leg's
    /// sequence-number shift survives a re-INVITE that stops and restarts interworking.
    legs: Option<Box<[LegDtmf; 2]>>,
}

/// What became of a packet received from a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Forward it.
    Forward,
    /// A terminated telephone-event: not forwarded; these digits ended with it.
    Consumed([Option<Detected>; 2]),
}

impl StreamDtmfState {
    /// What the call layer set.
    pub fn config(&self) -> StreamDtmf {
        self.config
    }

    /// New settings after an answer; digits waiting toward a leg no longer terminated go.
    pub fn set(&mut self, config: StreamDtmf) {
        if let Some(legs) = &mut self.legs {
            for (leg, pt) in legs.iter_mut().zip(config.terminated) {
                if pt.is_none() {
                    leg.queue.clear();
                    leg.playing = None;
                }
            }
        } else if !config.is_none() {
            self.legs = Some(Box::default());
        }
        self.config = config;
    }

    /// Whether the stream must stay in the userspace relay.
    pub fn active(&self) -> bool {
        !self.config.is_none()
    }

    /// An RTP packet `packet` received from leg `from` (index), after SRTP: a terminated
    /// telephone-event is read by the leg's detector and consumed, anything else crosses.
    pub fn receive(&mut self, now: Instant, from: usize, packet: &[u8]) -> Received {
        let Some(pt) = self.config.terminated.get(from).copied().flatten() else {
            return Received::Forward;
        };
        if packet.len() < 2 || packet[1] & 0x7f != pt {
            return Received::Forward;
        }
        let (Some((_, ts, _)), Some(body)) = (header(packet), payload(packet)) else {
            return Received::Forward;
        };
        // Allocated by `set` with the terminating config checked above.
        let Some(legs) = self.legs.as_deref_mut() else {
            return Received::Forward;
        };
        let leg = &mut legs[from];
        leg.heard = Some(now);
        let mut out = [None, None];
        for (slot, d) in out
            .iter_mut()
            .zip(leg.detector.observe(ts, body, CLOCK_RATE))
        {
            *slot = Some(d);
        }
        // The other side's stream closes the gap this packet leaves.
        legs[1 - from].out.hold_back(packet);
        Received::Consumed(out)
    }

    /// Events of legs quiet for [`QUIET`] whose end packets never came: `(leg index, digit)`.
    pub fn flush(&mut self, now: Instant) -> Vec<(usize, Detected)> {
        let mut out = Vec::new();
        for (i, leg) in self.legs.iter_mut().flat_map(|l| l.iter_mut()).enumerate() {
            if leg
                .heard
                .is_some_and(|t| now.saturating_duration_since(t) >= QUIET)
            {
                leg.heard = None;
                out.extend(leg.detector.flush(CLOCK_RATE).map(|d| (i, d)));
            }
        }
        out
    }

    /// An RTP packet about to be sent toward leg `toward` (index): `false` to hold it back
    /// while an event is being generated toward that leg; else its sequence number is shifted
    /// past the injected packets (in place; before SRTP protects the header).
    pub fn forward(&mut self, now: Instant, toward: usize, packet: &mut [u8]) -> bool {
        if !self.active() {
            return true;
        }
        let Some(leg) = self.legs.as_deref_mut().and_then(|l| l.get_mut(toward)) else {
            return true;
        };
        if leg.playing.is_some() {
            leg.out.hold_back(packet);
            return false;
        }
        leg.out.forward(now, packet);
        true
    }

    /// Queues `digit` for `duration_ms` toward leg `toward` (index) with `payload_type` at
    /// `now`, at most `limit` waiting.
    pub fn generate(
        &mut self,
        now: Instant,
        toward: usize,
        payload_type: u8,
        digit: Digit,
        duration_ms: u32,
        limit: usize,
    ) -> Result<(), GenerateRefusal> {
        if self
            .config
            .terminated
            .get(toward)
            .copied()
            .flatten()
            .is_none()
        {
            return Err(GenerateRefusal::NotTerminated);
        }
        let Some(leg) = self.legs.as_deref_mut().and_then(|l| l.get_mut(toward)) else {
            return Err(GenerateRefusal::NotTerminated);
        };
        if leg.queue.len() >= limit {
            return Err(GenerateRefusal::QueueFull(leg.queue.len()));
        }
        leg.queue.push_back(Queued {
            payload_type,
            digit,
            duration_ms,
            at: now,
        });
        Ok(())
    }

    /// When the next generated packet is due (None: nothing to send).
    pub fn deadline(&self) -> Option<Instant> {
        self.legs
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(LegDtmf::deadline)
            .min()
    }

    /// The next generated packet due at `now`, written to `buf` (at least [`PACKET_LEN`]
    /// bytes): `(leg index it goes toward, length)`. `draw` gives random numbers for a stream
    /// that sent nothing yet. Call until None, then wait for [`Self::deadline`].
    pub fn poll(
        &mut self,
        now: Instant,
        draw: &mut dyn FnMut() -> u32,
        buf: &mut [u8],
    ) -> Option<(usize, usize)> {
        if buf.len() < PACKET_LEN {
            return None;
        }
        for (i, leg) in self.legs.iter_mut().flat_map(|l| l.iter_mut()).enumerate() {
            if leg.deadline().is_none_or(|d| d > now) {
                continue;
            }
            if leg.playing.is_none()
                && let Some(q) = leg.queue.pop_front()
            {
                let timestamp = leg.out.timestamp(now, draw);
                leg.playing = Some(Playing {
                    payload_type: q.payload_type,
                    timestamp,
                    started: now,
                    packets: dtmf::schedule(q.digit, q.duration_ms, CLOCK_RATE, INTERVAL_MS)
                        .collect(),
                    next: 0,
                });
            }
            let Some(p) = &mut leg.playing else { continue };
            let Some(planned) = p.packets.get(p.next).copied() else {
                leg.playing = None;
                continue;
            };
            p.next += 1;
            let (payload_type, timestamp) = (p.payload_type, p.timestamp);
            if p.next == p.packets.len() {
                leg.playing = None;
                leg.free_at = Some(now + Duration::from_millis(u64::from(INTERVAL_MS)));
            }
            let (ssrc, seq) = leg.out.next_seq();
            buf[0] = 0x80;
            buf[1] = (u8::from(planned.marker) << 7) | (payload_type & 0x7f);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
            buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
            buf[12..PACKET_LEN].copy_from_slice(&planned.event.to_bytes());
            return Some((i, PACKET_LEN));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::Event;

    const SSRC: u32 = 0x1234_5678;

    fn audio(seq: u16, ts: u32) -> [u8; 172] {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[1] = 8;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&SSRC.to_be_bytes());
        p
    }

    fn event_packet(pt: u8, seq: u16, ts: u32, e: Event) -> Vec<u8> {
        let mut p = audio(seq, ts)[..12].to_vec();
        p[1] = pt;
        p.extend_from_slice(&e.to_bytes());
        p
    }

    fn digit(c: char) -> Digit {
        Digit::from_char(c).expect("a DTMF character")
    }

    fn no_draw() -> u32 {
        panic!("the stream had a source; nothing to draw")
    }

    /// One generated packet as (seq, marker, pt, ts, ssrc, event).
    fn decode(p: &[u8]) -> (u16, bool, u8, u32, u32, Event) {
        let (seq, ts, ssrc) = header(p).expect("RTP");
        let e = Event::parse(&p[12..]).expect("event");
        (seq, p[1] & 0x80 != 0, p[1] & 0x7f, ts, ssrc, e)
    }

    fn terminated(leg: usize, pt: u8) -> StreamDtmfState {
        let mut s = StreamDtmfState::default();
        let mut c = StreamDtmf::default();
        c.terminated[leg] = Some(pt);
        s.set(c);
        s
    }

    #[test]
    fn generated_events_join_the_forwarded_stream() {
        let t0 = crate::media::test_origin();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = terminated(1, 96);
        // Audio toward the RFC 4733 leg: seq 100.., 20 ms apart.
        for i in 0..5u16 {
            let mut p = audio(100 + i, 160 * u32::from(i));
            assert!(s.forward(ms(20 * u64::from(i)), 1, &mut p));
            assert_eq!(&p[2..4], &(100 + i).to_be_bytes(), "no shift before events");
        }
        s.generate(ms(90), 1, 96, digit('5'), 100, 8)
            .expect("queued");
        assert_eq!(s.deadline(), Some(ms(90)));
        let mut buf = [0u8; 64];
        let mut sent = Vec::new();
        let mut audio_seq = 105u16;
        // Drive 20 ms steps; audio keeps arriving and is held back while the event plays.
        for step in 0..=20u64 {
            let now = ms(90 + 10 * step);
            while let Some((leg, len)) = s.poll(now, &mut no_draw, &mut buf) {
                assert_eq!(leg, 1);
                sent.push((now, decode(&buf[..len])));
            }
            if step % 2 == 1 {
                let mut p = audio(audio_seq, 160 * u32::from(audio_seq - 100));
                let forwarded = s.forward(now, 1, &mut p);
                let playing = sent.len() < 5;
                assert_eq!(forwarded, !playing, "audio held back only while playing");
                audio_seq += 1;
            }
        }
        // 100 ms: two updates, then the end three times; 50 ms apart.
        let seen: Vec<_> = sent
            .iter()
            .map(|(at, (seq, m, pt, ts, ssrc, e))| {
                assert_eq!((*pt, *ssrc, e.code, e.volume), (96, SSRC, 5, dtmf::VOLUME));
                // The event's timestamp is the media clock at its start: the last audio
                // packet's 640 (sent at 80 ms) plus 10 ms at 8 kHz.
                assert_eq!(*ts, 640 + 80);
                (
                    at.duration_since(t0).as_millis(),
                    *seq,
                    *m,
                    e.end,
                    e.duration,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (90, 105, true, false, 400),
                (140, 106, false, false, 800),
                (190, 107, false, true, 800),
                (240, 108, false, true, 800),
                (290, 109, false, true, 800),
            ]
        );
        // The audio after the event continues the sequence without a gap or a duplicate.
        let mut p = audio(audio_seq, 0);
        assert!(s.forward(ms(300), 1, &mut p));
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 110);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn queued_digits_follow_one_another_and_the_queue_is_bounded() {
        let t0 = crate::media::test_origin();
        let mut s = terminated(0, 101);
        assert_eq!(
            s.generate(t0, 1, 101, digit('1'), 60, 2),
            Err(GenerateRefusal::NotTerminated)
        );
        for c in ['1', '2'] {
            s.generate(t0, 0, 101, digit(c), 60, 2).expect("queued");
        }
        // One is playing after the first poll; two may wait behind it.
        let mut buf = [0u8; PACKET_LEN];
        let mut draws = [7u32, 1000, 5000].into_iter().cycle();
        let mut draw = move || draws.next().unwrap_or(0);
        assert!(s.poll(t0, &mut draw, &mut buf).is_some());
        s.generate(t0, 0, 101, digit('3'), 60, 2).expect("queued");
        assert_eq!(
            s.generate(t0, 0, 101, digit('4'), 60, 2),
            Err(GenerateRefusal::QueueFull(2))
        );
        let mut events = Vec::new();
        let mut now = t0;
        for _ in 0..100 {
            let Some(at) = s.deadline() else { break };
            now = now.max(at);
            while let Some((_, len)) = s.poll(now, &mut draw, &mut buf) {
                events.push(decode(&buf[..len]));
            }
        }
        // Before any audio: a drawn source, random start numbers, each digit its own event.
        let firsts: Vec<_> = events.iter().filter(|e| e.1).collect();
        assert_eq!(firsts.len(), 2, "digits 2 and 3 after the first poll's 1");
        assert!(events.iter().all(|e| e.4 == 7));
        let seqs: Vec<u16> = events.iter().map(|e| e.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
        let stamps: Vec<u32> = firsts.iter().map(|e| e.3).collect();
        assert!(stamps[1] > stamps[0], "later digit, later timestamp");
        // Each digit ends three times.
        assert_eq!(events.iter().filter(|e| e.5.end).count(), 9);
    }

    #[test]
    fn terminated_events_are_detected_consumed_and_the_gap_hidden() {
        let t0 = crate::media::test_origin();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = terminated(0, 101);
        let mut p = audio(10, 0);
        assert_eq!(s.receive(ms(0), 0, &p), Received::Forward);
        assert!(s.forward(ms(0), 1, &mut p));
        let mut digits = Vec::new();
        let mut seq = 11;
        for (i, d) in [400u16, 800, 800, 800, 800].into_iter().enumerate() {
            let e = Event {
                code: 9,
                end: i >= 2,
                volume: 10,
                duration: d,
            };
            let p = event_packet(101, seq, 160, e);
            seq += 1;
            match s.receive(ms(20 * (i as u64 + 1)), 0, &p) {
                Received::Consumed(found) => digits.extend(found.into_iter().flatten()),
                Received::Forward => panic!("a terminated event crossed"),
            }
        }
        assert_eq!(digits.len(), 1, "one digit for one event: {digits:?}");
        assert_eq!((digits[0].digit, digits[0].duration_ms), (digit('9'), 100));
        // The INFO side's stream goes on without the five consumed packets.
        let mut p = audio(seq, 960);
        assert_eq!(s.receive(ms(120), 0, &p), Received::Forward);
        assert!(s.forward(ms(120), 1, &mut p));
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 11);
        // Other payload types and the other leg's events cross untouched.
        let other = event_packet(100, 1, 0, Event::parse(&[1, 10, 0, 160]).expect("event"));
        assert_eq!(s.receive(ms(130), 0, &other), Received::Forward);
        let theirs = event_packet(101, 1, 0, Event::parse(&[1, 10, 0, 160]).expect("event"));
        assert_eq!(s.receive(ms(130), 1, &theirs), Received::Forward);
    }

    #[test]
    fn an_event_without_end_is_reported_once_the_leg_is_quiet() {
        let t0 = crate::media::test_origin();
        let mut s = terminated(1, 96);
        let begin = Event::parse(&[4, 10, 1, 144]).expect("event");
        assert_eq!(
            s.receive(t0, 1, &event_packet(96, 1, 80, begin)),
            Received::Consumed([None, None])
        );
        assert!(s.flush(t0 + QUIET / 2).is_empty());
        let f = s.flush(t0 + QUIET);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1.digit), (1, digit('4')));
        assert!(s.flush(t0 + QUIET * 3).is_empty(), "reported once");
    }

    #[test]
    fn streams_without_termination_are_untouched() {
        let t0 = crate::media::test_origin();
        let mut s = StreamDtmfState::default();
        let mut p = audio(5, 0);
        let before = p;
        assert!(s.forward(t0, 1, &mut p));
        assert_eq!(p, before);
        assert_eq!(s.receive(t0, 0, &p), Received::Forward);
        assert!(!s.active());
        // A header extension and CSRCs are skipped to find an event's payload.
        let mut x = vec![0x91, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        x.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4, 6, 0x8a, 3, 32]);
        assert_eq!(payload(&x), Some(&[6, 0x8a, 3, 32][..]));
        assert_eq!(payload(&x[..20]), None);
    }
}
