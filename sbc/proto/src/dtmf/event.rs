//! The RFC 4733 telephone-event payload (§2.3) and the DTMF digits it names (§3.2).

/// A DTMF digit: events 0–15 of RFC 4733 §3.2 (`0`–`9`, `*`, `#`, `A`–`D`). Its `Debug`
/// output hides the value: digits are PINs and must not reach a log.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl std::fmt::Debug for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digit(<redacted>)")
    }
}

impl Digit {
    /// The digit for an event code, if it is one of the 16 DTMF events.
    pub fn from_event(code: u8) -> Option<Self> {
        (code <= 15).then_some(Self(code))
    }

    /// The digit for its character (`0`–`9`, `*`, `#`, `A`–`D`, lower case accepted).
    pub fn from_char(c: char) -> Option<Self> {
        Some(Self(match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            d @ 'A'..='D' => d as u8 - b'A' + 12,
            _ => return None,
        }))
    }

    /// The RFC 4733 event code.
    pub fn event(self) -> u8 {
        self.0
    }

    /// The character.
    pub fn to_char(self) -> char {
        match self.0 {
            d @ 0..=9 => char::from(b'0' + d),
            10 => '*',
            11 => '#',
            d => char::from(b'A' + d - 12),
        }
    }
}

/// One telephone-event payload: 4 bytes (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The event code (0–15 are DTMF digits).
    pub code: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// The power level in −dBm0, 0–63 (§2.5.2.2: DTMF senders use about 10).
    pub volume: u8,
    /// The duration so far, in timestamp units (samples at the clock rate).
    pub duration: u16,
}

/// Bytes of a telephone-event payload.
pub const EVENT_LEN: usize = 4;

impl Event {
    /// Reads the first event of a payload; `None` if it is shorter than 4 bytes. Redundant
    /// events (RFC 4733 §2.5.1.5, RFC 2198) arrive in their own RED payload, not here.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [code, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(Self {
            code,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4 payload bytes (the R bit is zero, §2.3).
    pub fn to_bytes(self) -> [u8; EVENT_LEN] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.code,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d0,
            d1,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_round_trip_through_chars_and_codes() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            let d = Digit::from_char(c).expect("a DTMF character");
            assert_eq!(usize::from(d.event()), i);
            assert_eq!(d.to_char(), c);
            assert_eq!(Digit::from_event(d.event()), Some(d));
        }
        assert_eq!(Digit::from_char('a'), Digit::from_char('A'));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event(16), None);
    }

    #[test]
    fn payload_layout_matches_rfc_4733_figure_1() {
        // Event 5, end, volume 10, duration 800 (100 ms at 8 kHz).
        let e = Event {
            code: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [5, 0x8a, 0x03, 0x20]);
        assert_eq!(Event::parse(&e.to_bytes()), Some(e));
        // The reserved bit is ignored on input; short payloads are not events.
        assert_eq!(
            Event::parse(&[1, 0x4a, 0, 160]).map(|e| (e.end, e.volume)),
            Some((false, 10))
        );
        assert_eq!(Event::parse(&[1, 2, 3]), None);
    }
}
