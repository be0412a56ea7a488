//! DTMF in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` / `Duration=160`, the
//! de-facto format of Cisco and most PBXs) and `application/dtmf` (the digit alone).

use super::event::Digit;

/// A digit carried by an INFO request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDigit {
    /// The digit.
    pub digit: Digit,
    /// How long it was pressed, in milliseconds, if the body says.
    pub duration_ms: Option<u32>,
}

/// Which INFO body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFormat {
    /// `application/dtmf-relay`.
    DtmfRelay,
    /// `application/dtmf`.
    Dtmf,
}

impl InfoFormat {
    /// The format for a Content-Type value (parameters and case ignored), if it is a DTMF one.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/dtmf-relay") {
            Some(Self::DtmfRelay)
        } else if media.eq_ignore_ascii_case("application/dtmf") {
            Some(Self::Dtmf)
        } else {
            None
        }
    }

    /// The Content-Type to send.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::DtmfRelay => "application/dtmf-relay",
            Self::Dtmf => "application/dtmf",
        }
    }
}

/// Longest duration an INFO may claim (ms): longer is taken as this, so a body cannot make
/// the relay generate an event for minutes.
pub const MAX_DURATION_MS: u32 = 5_000;

/// Reads the digit of an INFO body; `None` when it names none.
pub fn parse(format: InfoFormat, body: &[u8]) -> Option<InfoDigit> {
    let text = std::str::from_utf8(body).ok()?;
    match format {
        InfoFormat::Dtmf => {
            let t = text.trim();
            let mut chars = t.chars();
            let digit = signal(t).or_else(|| {
                let c = chars.next()?;
                chars.next().is_none().then(|| Digit::from_char(c))?
            })?;
            Some(InfoDigit {
                digit,
                duration_ms: None,
            })
        }
        InfoFormat::DtmfRelay => {
            let mut digit = None;
            let mut duration_ms = None;
            for line in text.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("signal") {
                    digit = signal(v);
                } else if k.eq_ignore_ascii_case("duration") {
                    duration_ms = v.parse::<u32>().ok().map(|d| d.min(MAX_DURATION_MS));
                }
            }
            Some(InfoDigit {
                digit: digit?,
                duration_ms,
            })
        }
    }
}

/// A signal value: one DTMF character, or an event code 0–15 (some phones send `10` and
/// `11` for `*` and `#`).
fn signal(v: &str) -> Option<Digit> {
    if let Ok(n) = v.parse::<u8>() {
        return Digit::from_event(n);
    }
    let mut chars = v.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    Digit::from_char(c)
}

/// Writes the body of an INFO for `digit` in `format`.
pub fn write(format: InfoFormat, digit: Digit, duration_ms: u32, out: &mut Vec<u8>) {
    out.clear();
    match format {
        InfoFormat::DtmfRelay => {
            out.extend_from_slice(b"Signal=");
            out.push(digit.to_char() as u8);
            out.extend_from_slice(b"\r\nDuration=");
            out.extend_from_slice(duration_ms.min(MAX_DURATION_MS).to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        InfoFormat::Dtmf => {
            out.push(digit.to_char() as u8);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).expect("a DTMF character")
    }

    #[test]
    fn dtmf_relay_bodies_from_the_field() {
        let cases: &[(&[u8], char, Option<u32>)] = &[
            (b"Signal=5\r\nDuration=160\r\n", '5', Some(160)),
            (b"signal= #\nduration = 250", '#', Some(250)),
            (b"Signal=10\r\nDuration=100\r\n", '*', Some(100)),
            (b"Signal=11\r\n", '#', None),
            (
                b"Signal=d\r\nDuration=99999\r\n",
                'D',
                Some(MAX_DURATION_MS),
            ),
        ];
        for (body, c, dur) in cases {
            assert_eq!(
                parse(InfoFormat::DtmfRelay, body),
                Some(InfoDigit {
                    digit: d(*c),
                    duration_ms: *dur
                }),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for bad in [
            &b"Duration=100"[..],
            b"Signal=55",
            b"Signal=E",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(parse(InfoFormat::DtmfRelay, bad), None);
        }
    }

    #[test]
    fn dtmf_bodies_and_content_types() {
        assert_eq!(
            parse(InfoFormat::Dtmf, b"7\r\n").map(|i| i.digit),
            Some(d('7'))
        );
        assert_eq!(parse(InfoFormat::Dtmf, b"77"), None);
        assert_eq!(
            InfoFormat::from_content_type("Application/DTMF-Relay; charset=x"),
            Some(InfoFormat::DtmfRelay)
        );
        assert_eq!(
            InfoFormat::from_content_type("application/dtmf"),
            Some(InfoFormat::Dtmf)
        );
        assert_eq!(InfoFormat::from_content_type("application/sdp"), None);
    }

    #[test]
    fn written_bodies_parse_back() {
        let mut out = Vec::new();
        for c in "0123456789*#ABCD".chars() {
            write(InfoFormat::DtmfRelay, d(c), 120, &mut out);
            assert_eq!(
                parse(InfoFormat::DtmfRelay, &out),
                Some(InfoDigit {
                    digit: d(c),
                    duration_ms: Some(120)
                })
            );
            write(InfoFormat::Dtmf, d(c), 120, &mut out);
            assert_eq!(parse(InfoFormat::Dtmf, &out).map(|i| i.digit), Some(d(c)));
        }
    }
}
