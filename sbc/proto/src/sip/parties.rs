//! A request's calling and called numbers (the user parts of its From URI and its
//! Request-URI) without parsing it.
//!
//! The daemon's SIP trace labels every leg with these two numbers, so that an operator can
//! find a call by number. It parsed each leg's first INVITE for them: the INVITE the SBC
//! sends is otherwise only scanned ([`super::Headline`]), and that one parse was an eighth of
//! the trace's work per call. The scan here reads the start line and the From line. It
//! answers only for the plain form (`sip:` or `sips:`, a user of unreserved characters and
//! `+`, then `@`) and declines anything else (a tel URI, an escape, a password, a quoted
//! display name before the `<`, a folded or repeated From): the caller then parses. The tests
//! hold it to the parser's answer on the RFC 4475 torture messages and altered copies.

use super::{
    Message, Uri,
    scan::{HeaderLines, trim_sp},
};

/// The calling and called numbers of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties<'a> {
    /// The From URI's user part (a tel URI's number).
    pub calling: Option<&'a str>,
    /// The Request-URI's user part (a tel URI's number).
    pub called: Option<&'a str>,
}

impl<'a> Parties<'a> {
    /// The numbers of a parsed request (both `None` for a response).
    pub fn of(msg: &'a Message) -> Self {
        Self {
            calling: user(&msg.from().uri),
            called: msg.request_uri().as_ref().and_then(user),
        }
    }

    /// The numbers of a well-formed request by a scan of its start line and From line;
    /// `None` when the scan cannot tell them plainly (the caller then parses).
    pub fn scan(data: &'a [u8]) -> Option<Self> {
        let (start, lines) = HeaderLines::of(data)?;
        // `Method SP Request-URI SP SIP-Version`: a response starts with the version.
        if start.starts_with(b"SIP/") {
            return None;
        }
        let mut words = start.split(|b| *b == b' ');
        let (_method, uri, version) = (words.next()?, words.next()?, words.next()?);
        if version != b"SIP/2.0" || words.next().is_some() {
            return None;
        }
        let called = plain_user(uri)?;
        let mut calling = None;
        for h in lines {
            if matches!(h.line.first(), Some(b'f' | b'F'))
                && let Some((name, value)) = h.split()
                && (name.eq_ignore_ascii_case(b"from") || name.eq_ignore_ascii_case(b"f"))
            {
                // A folded From goes on in the next line (RFC 3261 §7.3.1).
                if h.folded {
                    return None;
                }
                // The parser admits one From (a received request passed it, a sent one is
                // the B2BUA's), so the rest of the lines cannot change the answer.
                calling = Some(from_user(value)?);
                break;
            }
        }
        Some(Self {
            calling: Some(calling?),
            called: Some(called),
        })
    }
}

/// The user of a From value: the URI in `<…>` (`name-addr`), else the value itself up to
/// its header parameters (`addr-spec`).
fn from_user(value: &[u8]) -> Option<&str> {
    let uri = if value.first() == Some(&b'"') {
        // A quoted display name may hold a `<` of its own: the URI follows its closing quote
        // (a backslash escapes the next byte), then `<` after optional blanks.
        let mut i = 1;
        loop {
            match value.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let after = trim_sp(value.get(i + 1..)?);
        after.strip_prefix(b"<")?
    } else {
        match memchr::memchr(b'<', value) {
            // An unquoted display name is tokens: no quote, no `<`.
            Some(lt) if !value.get(..lt)?.contains(&b'"') => value.get(lt + 1..)?,
            Some(_) => return None,
            None => value,
        }
    };
    plain_user(uri)
}

/// The user of `sip:user@…` or `sips:user@…` when it holds only unreserved characters and
/// `+` (what a number looks like); `None` otherwise.
fn plain_user(uri: &[u8]) -> Option<&str> {
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return None;
    }
    let rest = uri.get(colon + 1..)?;
    let len = rest.iter().take_while(|b| is_plain(**b)).count();
    if len == 0 || rest.get(len) != Some(&b'@') {
        return None;
    }
    // Every byte counted is ASCII.
    std::str::from_utf8(rest.get(..len)?).ok()
}

/// `unreserved` (RFC 3261 §25.1) and `+`: no escape, no delimiter.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' | b'+'
        )
}

/// The user part of a SIP URI or the number of a tel URI.
fn user<'a>(uri: &Uri<'a>) -> Option<&'a str> {
    match uri {
        Uri::Sip(u) => u.user,
        Uri::Tel(t) => Some(t.number),
        Uri::Other(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    fn parsed(raw: &[u8]) -> Message {
        Message::parse(Bytes::copy_from_slice(raw), &Limits::default()).expect("parses")
    }

    #[test]
    fn an_invite_s_numbers_are_read_from_its_start_line_and_from() {
        let raw = b"INVITE sip:+4930111@carrier.example;user=phone SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
            From: \"Reception\" <sip:100@pbx.example>;tag=a\r\n\
            To: <sip:+4930111@carrier.example>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let scanned = Parties::scan(raw).expect("plain");
        assert_eq!(
            scanned,
            Parties {
                calling: Some("100"),
                called: Some("+4930111")
            }
        );
        assert_eq!(scanned, Parties::of(&parsed(raw)));
        // The compact form and an addr-spec From.
        let raw = b"INVITE sip:200@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            f: sip:300@pbx;tag=a\r\nt: <sip:200@h>\r\ni: x\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(Parties::scan(raw), Some(Parties::of(&parsed(raw))));
        // A quoted display name holding a '<' and an escaped quote.
        let raw = b"INVITE sip:200@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: \"a<b \\\"c\\\"\" <sip:300@pbx>;tag=a\r\nTo: <sip:200@h>\r\nCall-ID: x\r\n\
            CSeq: 1 INVITE\r\n\r\n";
        assert_eq!(
            Parties::scan(raw).map(|p| p.calling),
            Some(Parties::of(&parsed(raw)).calling)
        );
        assert_eq!(Parties::scan(raw).and_then(|p| p.calling), Some("300"));
    }

    #[test]
    fn what_the_scan_cannot_tell_plainly_is_left_to_the_parser() {
        let head = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\n\
            CSeq: 1 INVITE\r\n";
        for (start, from) in [
            // A tel URI; no user; an escape; a password.
            ("INVITE tel:+4930111 SIP/2.0", "From: <sip:a@h>;tag=1"),
            ("INVITE sip:h SIP/2.0", "From: <sip:a@h>;tag=1"),
            ("INVITE sip:a%40b@h SIP/2.0", "From: <sip:a@h>;tag=1"),
            ("INVITE sip:a:pw@h SIP/2.0", "From: <sip:a@h>;tag=1"),
            // A quote after an unquoted name; an unclosed quote; a folded From; a response.
            ("INVITE sip:a@h SIP/2.0", "From: x\"<y\" <sip:a@h>;tag=1"),
            ("INVITE sip:a@h SIP/2.0", "From: \"x<sip:a@h>;tag=1"),
            ("INVITE sip:a@h SIP/2.0", "From: <sip:a@h>\r\n ;tag=1"),
            ("SIP/2.0 200 OK", "From: <sip:a@h>;tag=1"),
        ] {
            let raw = format!("{start}\r\n{head}{from}\r\n\r\n");
            assert_eq!(Parties::scan(raw.as_bytes()), None, "{raw}");
        }
        // No From; a cut message. (Two Froms are the parser's to refuse: the scan reads
        // the first.)
        let none = format!("INVITE sip:a@h SIP/2.0\r\n{head}\r\n");
        for raw in [&none[..], "INVITE sip:a@h SIP/2.0\r\nFrom: <sip:a@h>"] {
            assert_eq!(Parties::scan(raw.as_bytes()), None, "{raw}");
        }
    }

    #[test]
    fn the_scan_agrees_with_the_parser_on_the_torture_messages() {
        // Wherever both answer, they agree; the scan may decline, never differ (cut and
        // altered copies too).
        let files = crate::testdata::rfc4475_files();
        let mut alter = crate::testdata::Alter::new(
            0x5bd1_e995,
            [b' ', b'\t', b'\r', b'\n', b'@', b'<', b':', b'"'],
        );
        let mut agreed = 0;
        for path in &files {
            let raw = std::fs::read(path).expect("readable");
            for copy in crate::testdata::variants(&raw, 13, &mut alter, 32) {
                crate::fuzzing::parties(&copy);
                if Parties::scan(&copy).is_some()
                    && Message::parse(Bytes::from(copy), &Limits::default()).is_ok()
                {
                    agreed += 1;
                }
            }
        }
        assert!(
            agreed >= 10,
            "the scan reads plain requests ({agreed} read)"
        );
    }
}
