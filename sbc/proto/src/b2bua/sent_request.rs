//! What a client transaction needs at once of a request the SBC is about to send (its method,
//! CSeq number, whether it has a body, the top Via's branch), read off the bytes by a scan of
//! the header lines instead of a parse.
//!
//! The request is the B2BUA's own, so the scan only has to read what the builders write; it
//! declines anything it cannot read plainly (a folded or repeated line, a Via with more than
//! one value, no branch, a body shorter than its Content-Length), and the caller then parses
//! as before. The tests hold it to the parser's answer on the RFC 4475 torture messages.

use crate::sip::{
    CSeq, Method,
    scan::{HeaderLines, trim_sp},
};

/// The facts of a request the SBC sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentRequest {
    /// The request's method.
    pub method: Method,
    /// The CSeq number.
    pub cseq: u32,
    /// Whether the body is not empty.
    pub has_body: bool,
    /// The top Via's `branch` (the client transaction's key).
    pub branch: Box<str>,
}

impl SentRequest {
    /// The facts of a request by one pass over its lines; `None` when the scan cannot tell
    /// them plainly (the caller then parses).
    pub(crate) fn scan(data: &[u8]) -> Option<Self> {
        let (start, mut lines) = HeaderLines::of(data)?;
        if start.starts_with(b"SIP/2.0 ") {
            return None;
        }
        let sp = memchr::memchr(b' ', start)?;
        let method = Method::from_token(std::str::from_utf8(start.get(..sp)?).ok()?)?;
        let (mut branch, mut length, mut cseq) = (None, None, None);
        let mut via_seen = false;
        for h in lines.by_ref() {
            // Only Via, CSeq and Content-Length are read: skip the others on their first
            // byte.
            if matches!(
                h.line.first(),
                Some(b'v' | b'V' | b'c' | b'C' | b'l' | b'L')
            ) && let Some((name, value)) = h.split()
            {
                // A folded line goes on in the next one (RFC 3261 §7.3.1); a control
                // character is the parser's to judge. Looked at for the three headers read
                // only (Call-ID, Contact and Content-Type start with a C too).
                let plain = || !h.folded && !value.iter().any(u8::is_ascii_control);
                if name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v") {
                    // Only the first Via value is the top one.
                    if !via_seen {
                        if !plain() || value.contains(&b',') {
                            return None;
                        }
                        branch = Some(top_branch(value)?);
                    }
                    via_seen = true;
                } else if name.eq_ignore_ascii_case(b"cseq") {
                    if !plain() || cseq.is_some() {
                        return None;
                    }
                    cseq = Some(CSeq::parse(std::str::from_utf8(value).ok()?).ok()?);
                } else if name.eq_ignore_ascii_case(b"content-length")
                    || name.eq_ignore_ascii_case(b"l")
                {
                    if !plain() || length.is_some() {
                        return None;
                    }
                    length = Some(std::str::from_utf8(value).ok()?.parse::<u32>().ok()?);
                }
            }
        }
        // A message cut before its blank line is the parser's to refuse.
        let rest = lines.body()?;
        let cseq = cseq?;
        // The parser refuses a CSeq whose method is not the request's.
        if cseq.method != method {
            return None;
        }
        let available = rest.len();
        let has_body = match length {
            Some(n) if n as usize > available => return None,
            Some(n) => n > 0,
            None => available > 0,
        };
        Some(Self {
            method,
            cseq: cseq.seq,
            has_body,
            branch: branch?,
        })
    }
}

/// The `branch` parameter of one Via value (`SIP/2.0/UDP host;…;branch=…`).
fn top_branch(via: &[u8]) -> Option<Box<str>> {
    let mut params = via.split(|b| *b == b';').skip(1);
    let value = params.find_map(|p| {
        let (name, value) = match memchr::memchr(b'=', p) {
            Some(eq) => (trim_sp(p.get(..eq)?), trim_sp(p.get(eq + 1..)?)),
            None => (trim_sp(p), &b""[..]),
        };
        name.eq_ignore_ascii_case(b"branch").then_some(value)
    })?;
    // A token (RFC 3261 §25.1); anything else is the parser's to judge.
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b);
    if value.is_empty() || !value.iter().all(token) {
        return None;
    }
    Some(std::str::from_utf8(value).ok()?.into())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::{Limits, Message};

    /// The parser's answer to the same questions.
    fn parsed(m: &Message) -> Option<SentRequest> {
        Some(SentRequest {
            method: m.method()?.clone(),
            cseq: m.cseq().seq,
            has_body: !m.body().is_empty(),
            branch: m.top_branch()?.into(),
        })
    }

    #[test]
    fn the_sbcs_own_requests_scan_as_they_parse() {
        let invite = "INVITE sip:4930111@carrier SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKs1-0f3a9c\r\n\
            Max-Forwards: 69\r\nFrom: <sip:100@sbc>;tag=s1\r\nTo: <sip:4930111@carrier>\r\n\
            Call-ID: 0f3a9c@sbc\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
            Content-Length: 4\r\n\r\nv=0\n";
        let bye = "BYE sip:4930111@192.0.2.20 SIP/2.0\r\nv: SIP/2.0/TCP sbc;BRANCH=z9hG4bK2\r\n\
            From: <sip:100@sbc>;tag=s1\r\nTo: <sip:4930111@carrier>;tag=c\r\ni: x\r\n\
            CSeq: 2 BYE\r\nl: 0\r\n\r\n";
        for raw in [invite, bye] {
            let m = Message::parse(Bytes::from(raw), &Limits::default()).expect("parses");
            let scanned = SentRequest::scan(raw.as_bytes());
            assert_eq!(scanned, parsed(&m), "{raw}");
            assert!(scanned.is_some(), "read plainly: {raw}");
        }
        let s = SentRequest::scan(invite.as_bytes()).expect("scans");
        assert_eq!(
            (s.method, s.cseq, s.has_body, &*s.branch),
            (Method::Invite, 1, true, "z9hG4bKs1-0f3a9c")
        );
    }

    #[test]
    fn what_the_scan_cannot_tell_plainly_is_left_to_the_parser() {
        for raw in [
            // Two Via values on one line; a folded Via; no branch; a response.
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP g;branch=z9hG4bK2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n",
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n",
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n",
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n",
            // A body shorter than its Content-Length; two Content-Lengths; a cut header.
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 9\r\n\r\nab",
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nl: 0\r\nl: 0\r\n\r\n",
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 2 BYE",
        ] {
            assert_eq!(SentRequest::scan(raw.as_bytes()), None, "{raw}");
        }
    }

    #[test]
    fn the_scan_agrees_with_the_parser_on_the_torture_messages() {
        // RFC 4475's requests: wherever both answer, they agree; the scan may decline, never
        // differ (cut and altered copies too).
        let files = crate::testdata::rfc4475_files();
        let mut agreed = 0;
        let mut alter = crate::testdata::Alter::new(
            0x2545_f491,
            [b' ', b'\t', b'\r', b'\n', b';', b',', b'=', b'0'],
        );
        for path in &files {
            let raw = std::fs::read(path).expect("readable");
            for copy in crate::testdata::variants(&raw, 11, &mut alter, 32) {
                crate::fuzzing::sent_request(&copy);
                let Some(scanned) = SentRequest::scan(&copy) else {
                    continue;
                };
                let Ok(m) = Message::parse(Bytes::from(copy.clone()), &Limits::default()) else {
                    // The scan reads only what the builders write: a message the parser
                    // refuses never reaches it (the caller parses on first use).
                    continue;
                };
                assert_eq!(
                    Some(scanned),
                    parsed(&m),
                    "{}: {}",
                    path.display(),
                    String::from_utf8_lossy(&copy)
                );
                agreed += 1;
            }
        }
        assert!(
            agreed >= 10,
            "the scan reads well-formed requests ({agreed} read)"
        );
    }
}
