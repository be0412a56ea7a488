//! Recognising digits in a received telephone-event stream (for a digit that arrived as RFC
//! 4733 and leaves as SIP INFO): one report per event however many updates, end packets and
//! retransmitted ends arrive, and none for a retransmission of an event already reported.

use super::event::{Digit, Event};

/// A digit seen on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The digit.
    pub digit: Digit,
    /// Its duration in milliseconds (the last duration field seen).
    pub duration_ms: u32,
}

/// State for one telephone-event stream.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// The event being received: its RTP timestamp, code and last duration.
    current: Option<(u32, u8, u16)>,
    /// The timestamp of the last event reported (its later end retransmissions are ignored).
    reported: Option<u32>,
}

impl Detector {
    /// A detector with nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet (its RTP timestamp and payload) of a stream with
    /// `clock_rate`. Yields a digit when an event ends, and first the previous event's digit
    /// when a new event starts while that one's end packets were all lost. Non-DTMF events
    /// (codes above 15) and malformed payloads are ignored.
    pub fn observe(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        clock_rate: u32,
    ) -> impl Iterator<Item = Detected> + use<> {
        let mut out = [None, None];
        if let Some(event) = Event::parse(payload)
            && Digit::from_event(event.code).is_some()
            && self.reported != Some(timestamp)
        {
            if let Some((ts, code, duration)) = self.current
                && ts != timestamp
            {
                out[0] = Self::detected(code, duration, clock_rate);
                self.reported = Some(ts);
            }
            self.current = Some((timestamp, event.code, event.duration));
            if event.end {
                self.current = None;
                self.reported = Some(timestamp);
                out[1] = Self::detected(event.code, event.duration, clock_rate);
            }
        }
        out.into_iter().flatten()
    }

    /// Reports an event that started but never ended (call it when the stream went quiet,
    /// e.g. after a media timeout of a few hundred milliseconds).
    pub fn flush(&mut self, clock_rate: u32) -> Option<Detected> {
        let (ts, code, duration) = self.current.take()?;
        self.reported = Some(ts);
        Self::detected(code, duration, clock_rate)
    }

    fn detected(code: u8, duration: u16, clock_rate: u32) -> Option<Detected> {
        let digit = Digit::from_event(code)?;
        let duration_ms = if clock_rate == 0 {
            0
        } else {
            u32::try_from(u64::from(duration) * 1000 / u64::from(clock_rate)).unwrap_or(u32::MAX)
        };
        Some(Detected { digit, duration_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::super::generator::schedule;
    use super::*;

    fn digit(c: char) -> Digit {
        Digit::from_char(c).expect("a digit")
    }

    #[test]
    fn one_report_per_generated_event_with_its_duration() {
        let mut d = Detector::new();
        let mut seen = Vec::new();
        for (n, c) in "159#".chars().enumerate() {
            let ts = 1000 + 8000 * u32::try_from(n).expect("small");
            for p in schedule(digit(c), 120, 8000, 50) {
                seen.extend(d.observe(ts, &p.event.to_bytes(), 8000));
            }
            // A late retransmitted end of the same event is not a second digit.
            let end = schedule(digit(c), 120, 8000, 50).last().expect("packets");
            assert_eq!(d.observe(ts, &end.event.to_bytes(), 8000).count(), 0);
        }
        let digits: String = seen.iter().map(|s| s.digit.to_char()).collect();
        assert_eq!(digits, "159#");
        assert!(seen.iter().all(|s| s.duration_ms == 120), "{seen:?}");
    }

    #[test]
    fn lost_end_packets_are_reported_at_the_next_event_or_flush() {
        let mut d = Detector::new();
        let begin = |c: char| {
            Event {
                code: digit(c).event(),
                end: false,
                volume: 10,
                duration: 400,
            }
            .to_bytes()
        };
        assert_eq!(d.observe(100, &begin('3'), 8000).count(), 0);
        let r = d
            .observe(900, &begin('4'), 8000)
            .next()
            .expect("3 reported");
        assert_eq!((r.digit, r.duration_ms), (digit('3'), 50));
        let r = d.flush(8000).expect("4 reported");
        assert_eq!(r.digit, digit('4'));
        assert_eq!(d.flush(8000), None);
        // Updates of an event already flushed are not reported again.
        assert_eq!(d.observe(900, &begin('4'), 8000).count(), 0);
        // An unended event followed directly by another event's end: both digits.
        let end6 = Event {
            code: digit('6').event(),
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(d.observe(2000, &begin('5'), 8000).count(), 0);
        let both: String = d
            .observe(3000, &end6.to_bytes(), 8000)
            .map(|r| r.digit.to_char())
            .collect();
        assert_eq!(both, "56");
    }

    #[test]
    fn non_dtmf_and_garbage_are_ignored() {
        let mut d = Detector::new();
        let flash = Event {
            code: 16,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(d.observe(1, &flash.to_bytes(), 8000).count(), 0);
        assert_eq!(d.observe(1, &[1, 2], 8000).count(), 0);
        assert_eq!(d.observe(1, &[], 0).count(), 0);
    }
}
