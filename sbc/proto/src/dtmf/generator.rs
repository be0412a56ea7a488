//! Generating the RFC 4733 packets of one digit (for a digit that arrived by SIP INFO and
//! leaves as telephone-event): what to send when, relative to the event's start.
//!
//! RFC 4733 §2.5.1: every packet of one event carries the RTP timestamp of its start, the
//! first has the marker bit, updates follow at the packetisation interval with the duration
//! so far, and the final duration is sent three times with the E bit (§2.5.1.4) so that a
//! lost end packet does not stretch the tone.

use super::event::{Digit, Event};

/// The volume DTMF generators use (−10 dBm0; RFC 4733 §2.5.2.2 asks for a realistic level).
pub const VOLUME: u8 = 10;

/// How many times the end packet is sent.
pub const END_REPEATS: u32 = 3;

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When, in milliseconds after the first packet.
    pub offset_ms: u32,
    /// The RTP marker bit (set on the first packet of the event).
    pub marker: bool,
    /// The payload.
    pub event: Event,
}

/// The packets of `digit` held for `duration_ms` (at least one interval) on a stream with
/// `clock_rate`, updated every `interval_ms` (RFC 4733 suggests 50 ms). The duration field
/// is 16 bits: longer events are cut at 65,535 timestamp units (8.2 s at 8 kHz), which no
/// DTMF digit needs.
pub fn schedule(
    digit: Digit,
    duration_ms: u32,
    clock_rate: u32,
    interval_ms: u32,
) -> impl Iterator<Item = Planned> {
    let interval_ms = interval_ms.max(10);
    let duration_ms = duration_ms.max(interval_ms);
    let units = move |ms: u32| -> u16 {
        let u = u64::from(ms) * u64::from(clock_rate) / 1000;
        u16::try_from(u).unwrap_or(u16::MAX)
    };
    let updates = duration_ms.div_ceil(interval_ms);
    let total = units(duration_ms);
    let code = digit.event();
    let event = move |end: bool, duration: u16| Event {
        code,
        end,
        volume: VOLUME,
        duration,
    };
    // Each update says how long the tone will have lasted by the next one (like an audio
    // frame carrying the next packetisation interval), so the last update already carries the
    // full duration; the end packets follow when the tone stops, one interval apart.
    let progress = (0..updates).map(move |i| Planned {
        offset_ms: i * interval_ms,
        marker: i == 0,
        event: event(false, units((i + 1) * interval_ms).min(total)),
    });
    let ends = (0..END_REPEATS).map(move |j| Planned {
        offset_ms: (updates + j) * interval_ms,
        marker: false,
        event: event(true, total),
    });
    progress.chain(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Digit {
        Digit::from_char('5').expect("a digit")
    }

    #[test]
    fn a_100_ms_digit_at_8_khz() {
        let p: Vec<_> = schedule(five(), 100, 8000, 50).collect();
        // Updates at 0 and 50 ms, then the end (800 units = 100 ms) three times.
        let seen: Vec<_> = p
            .iter()
            .map(|p| (p.offset_ms, p.marker, p.event.end, p.event.duration))
            .collect();
        assert_eq!(
            seen,
            [
                (0, true, false, 400),
                (50, false, false, 800),
                (100, false, true, 800),
                (150, false, true, 800),
                (200, false, true, 800),
            ]
        );
        assert!(
            p.iter()
                .all(|p| p.event.code == 5 && p.event.volume == VOLUME)
        );
    }

    #[test]
    fn durations_grow_and_end_three_times() {
        let p: Vec<_> = schedule(five(), 240, 8000, 50).collect();
        let ends = p.iter().filter(|p| p.event.end).count();
        assert_eq!(ends, END_REPEATS as usize);
        assert_eq!(p.iter().filter(|p| p.marker).count(), 1);
        let durations: Vec<u16> = p.iter().map(|p| p.event.duration).collect();
        assert!(durations.windows(2).all(|w| w[0] <= w[1]), "{durations:?}");
        assert_eq!(*durations.last().expect("packets"), 1920);
        let offsets: Vec<u32> = p.iter().map(|p| p.offset_ms).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    }

    #[test]
    fn short_and_long_extremes_stay_in_range() {
        let p: Vec<_> = schedule(five(), 0, 8000, 50).collect();
        assert_eq!(p.len(), 1 + END_REPEATS as usize, "one interval at least");
        assert!(p[0].marker && !p[0].event.end);
        let p: Vec<_> = schedule(five(), 60_000, 48_000, 50).collect();
        assert_eq!(p.last().map(|p| p.event.duration), Some(u16::MAX));
    }
}
