//! A glance at a message's start line, Call-ID and CSeq without parsing it.
//!
//! For a message already known to be well-formed (one the transport parsed, one the B2BUA
//! wrote) that only needs keying and labelling: the daemon's SIP trace parsed every captured
//! message in full for these, and tracing cost a quarter of the SBC's CPU per call
//! (`bench/results/signaling-trace-2026-12-05.md`). A scan of the header lines finds the three
//! values, and stops there. A message the scan cannot read plainly (a folded or repeated
//! Call-ID or CSeq ahead of the other, a missing one) returns `None` and is parsed in full as
//! before; the tests hold the scan to the parser's answer on the RFC 4475 torture messages.

use super::{CSeq, Message, Method, scan::HeaderLines};

/// What the start line, Call-ID and CSeq say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline<'a> {
    /// The Call-ID (the leg's key).
    pub call_id: &'a str,
    /// The request's method; `None` for a response.
    pub request: Option<Method>,
    /// The response's status code; `None` for a request.
    pub status: Option<u16>,
    /// The CSeq.
    pub cseq: CSeq,
}

impl<'a> Headline<'a> {
    /// The facts of a parsed message.
    pub fn of(msg: &'a Message) -> Self {
        Self {
            call_id: msg.call_id(),
            request: msg.method().cloned(),
            status: msg.status().map(|s| s.as_u16()),
            cseq: msg.cseq().clone(),
        }
    }

    /// The facts of a well-formed message by a scan of its lines; `None` when the scan cannot
    /// tell them plainly (the caller then parses).
    pub fn scan(data: &'a [u8]) -> Option<Self> {
        let (start, mut lines) = HeaderLines::of(data)?;
        let (request, status) = match start.strip_prefix(b"SIP/2.0 ") {
            Some(rest) => {
                let code = rest.get(..3)?;
                if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|b| *b != b' ') {
                    return None;
                }
                let code: u16 = std::str::from_utf8(code).ok()?.parse().ok()?;
                (None, Some(code))
            }
            None => {
                let sp = memchr::memchr(b' ', start)?;
                let token = std::str::from_utf8(start.get(..sp)?).ok()?;
                (Some(Method::from_token(token)?), None)
            }
        };
        let (mut call_id, mut cseq) = (None, None);
        for h in lines.by_ref() {
            // Only `Call-ID`, `i` and `CSeq` are read: skip the others on their first byte.
            if matches!(h.line.first(), Some(b'c' | b'C' | b'i' | b'I'))
                && let Some((name, value)) = h.split()
            {
                // A control character (a stray CR) is the parser's to judge: decline.
                let value = || {
                    if value.iter().any(u8::is_ascii_control) {
                        return None;
                    }
                    std::str::from_utf8(value).ok()
                };
                if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
                    if h.folded || call_id.is_some() {
                        return None;
                    }
                    call_id = Some(value()?);
                } else if name.eq_ignore_ascii_case(b"cseq") {
                    if h.folded || cseq.is_some() {
                        return None;
                    }
                    cseq = Some(CSeq::parse(value()?).ok()?);
                }
            }
            // Both found: the parser admits each once (a received message passed it, a sent
            // one is the B2BUA's), so the rest of the lines cannot change the answer.
            if call_id.is_some() && cseq.is_some() {
                break;
            }
        }
        if lines.cut() {
            return None;
        }
        let call_id = call_id.filter(|c| !c.is_empty())?;
        Some(Self {
            call_id,
            request,
            status,
            cseq: cseq?,
        })
    }

    /// An INVITE request: it may start a leg (whose numbers need the full parse).
    pub fn is_invite_request(&self) -> bool {
        self.request == Some(Method::Invite)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::sip::Limits;

    use super::*;

    #[test]
    fn the_sbcs_own_messages_scan_as_they_parse() {
        let invite = b"INVITE sip:4930111@carrier SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs1\r\n\
            From: <sip:100@sbc>;tag=s1\r\nTo: <sip:4930111@carrier>\r\nCall-ID: 0f3a9c@sbc\r\n\
            CSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
            From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>;tag=s2\r\ni:  abc-1 \r\n\
            cseq:\t2 BYE\r\nContent-Length: 0\r\n\r\n";
        for raw in [&invite[..], &ok[..]] {
            let m =
                Message::parse(Bytes::copy_from_slice(raw), &Limits::default()).expect("parses");
            assert_eq!(Headline::scan(raw), Some(Headline::of(&m)));
        }
        let f = Headline::scan(ok).expect("scans");
        assert_eq!(
            (f.call_id, f.status, f.cseq.method),
            ("abc-1", Some(200), Method::Bye)
        );
        assert!(Headline::scan(invite).is_some_and(|f| f.is_invite_request()));
    }

    #[test]
    fn what_the_scan_cannot_tell_plainly_is_left_to_the_parser() {
        for raw in [
            // Folded Call-ID.
            &b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n y\r\nCSeq: 2 BYE\r\n\r\n"[..],
            // Two Call-IDs before the CSeq.
            b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\ni: y\r\nCSeq: 2 BYE\r\n\r\n",
            // No CSeq; no end of a cut header; a bad status.
            b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n",
            b"BYE sip:a@b SIP/2.0\r\nCall-ID: x",
            b"SIP/2.0 2000 OK\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n",
        ] {
            assert_eq!(
                Headline::scan(raw),
                None,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn the_scan_agrees_with_the_parser_on_the_torture_messages() {
        // RFC 4475's messages (folding, compact forms, odd spacing, escapes): wherever both
        // answer, they agree; the scan may decline, never differ.
        let files = crate::testdata::rfc4475_files();
        let (mut agreed, mut declined) = (0, 0);
        for path in &files {
            let raw = std::fs::read(path).expect("readable");
            crate::fuzzing::headline(&raw);
            let Ok(m) = Message::parse(Bytes::from(raw.clone()), &Limits::default()) else {
                continue;
            };
            match Headline::scan(&raw) {
                Some(h) => {
                    assert_eq!(h, Headline::of(&m), "{}", path.display());
                    agreed += 1;
                }
                None => declined += 1,
            }
        }
        // The fuzz target's property on cut and altered copies of them too (the fuzz target
        // runs it on any input).
        let mut alter = crate::testdata::Alter::new(
            0x9e37_79b9,
            [b' ', b'\t', b'\r', b'\n', b':', b'i', b'C', b'x'],
        );
        for path in &files {
            let raw = std::fs::read(path).expect("readable");
            for cut in crate::testdata::cuts(&raw, 7) {
                crate::fuzzing::headline(cut);
            }
            for _ in 0..64 {
                crate::fuzzing::headline(&alter.copy(&raw));
            }
        }
        assert!(
            agreed >= 10 && agreed > declined,
            "the scan reads most well-formed messages ({agreed} read, {declined} declined)"
        );
    }
}
