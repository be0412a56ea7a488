//! How a traced message is stored: its header lines that repeat the leg's first message (the
//! INVITE) become two-byte references to it.
//!
//! Most of a dialog's messages copy the INVITE's Via, From, Call-ID, CSeq, Max-Forwards, and
//! often its Route, Contact, Content-Type and User-Agent: a response repeats half its bytes
//! from the request. The trace holds thousands of legs of ten or more messages each, so those
//! copies were most of what it held. A reference is `0x00` and the line's index in the
//! INVITE's header lines (the first 255); a stored header line never starts with `0x00`
//! otherwise, since the parser accepts no control character there. The start line and
//! everything from the blank line on (the body) stay as they are, and so does a last line
//! cut by `max_message_bytes`.

/// Marks a reference to a line of the first message.
const REF: u8 = 0x00;

/// The header lines of `first` (without their CRLF): what later messages may refer to.
fn lines(first: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = after_start_line(first);
    std::iter::from_fn(move || {
        let end = find_crlf(rest)?;
        let line = &rest[..end];
        if line.is_empty() {
            return None;
        }
        rest = &rest[end + 2..];
        Some(line)
    })
    .take(usize::from(u8::MAX))
}

/// [`Encoder::encode`] into a new buffer.
#[cfg(test)]
pub fn encode(first: &[u8], msg: &[u8]) -> Box<[u8]> {
    Box::from(Encoder::default().encode(first, &Dict::of(first), msg))
}

/// Where the header lines of a leg's first message are in it, as (offset, length): found once
/// when the leg keeps its first message, not again for each later message encoded against it
/// (that search was a tenth of the trace's work per call). Offsets fit in `u16`: a stored
/// message is at most `max_message_bytes` (≤ 65,535).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dict(Box<[(u16, u16)]>);

impl Dict {
    /// The header lines of `first`.
    pub fn of(first: &[u8]) -> Self {
        let base = first.len() - after_start_line(first).len();
        let mut at = base;
        let spans: Vec<(u16, u16)> = lines(first)
            .map_while(|line| {
                let span = (u16::try_from(at).ok()?, u16::try_from(line.len()).ok()?);
                at += line.len() + 2;
                Some(span)
            })
            .collect();
        Self(spans.into_boxed_slice())
    }

    /// Whether it names no line.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of its allocation (for the trace's memory bound).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.0)
    }
}

/// Encodes messages against their leg's first one. Its buffer is reused from message to
/// message (the trace encodes every message it keeps): each stored copy is then the one
/// allocation, at its size.
#[derive(Debug, Default)]
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// `msg` with every complete header line equal to a header line of `first` (whose lines
    /// `dict` names) replaced by a reference.
    pub fn encode(&mut self, first: &[u8], dict: &Dict, msg: &[u8]) -> &[u8] {
        let out = &mut self.out;
        out.clear();
        out.reserve(msg.len());
        let head = msg.len() - after_start_line(msg).len();
        out.extend_from_slice(&msg[..head]);
        let mut rest = &msg[head..];
        while let Some(end) = find_crlf(rest) {
            let line = &rest[..end];
            if line.is_empty() {
                break;
            }
            let known = dict.0.iter().position(|&(at, len)| {
                let (at, len) = (usize::from(at), usize::from(len));
                first.get(at..at + len) == Some(line)
            });
            match known {
                Some(i) => out.extend_from_slice(&[REF, u8::try_from(i).unwrap_or(u8::MAX)]),
                None => out.extend_from_slice(&rest[..end + 2]),
            }
            rest = &rest[end + 2..];
        }
        out.extend_from_slice(rest);
        out
    }
}

/// The message `stored` was encoded from, with `first` the leg's first message.
pub fn decode(first: &[u8], stored: &[u8]) -> Vec<u8> {
    let dict: Vec<&[u8]> = lines(first).collect();
    let mut out = Vec::with_capacity(stored.len() * 2);
    let head = stored.len() - after_start_line(stored).len();
    out.extend_from_slice(&stored[..head]);
    let mut rest = &stored[head..];
    loop {
        match rest {
            [REF, i, tail @ ..] => {
                out.extend_from_slice(dict.get(usize::from(*i)).copied().unwrap_or_default());
                out.extend_from_slice(b"\r\n");
                rest = tail;
            }
            _ => match find_crlf(rest) {
                Some(end) if end > 0 => {
                    out.extend_from_slice(&rest[..end + 2]);
                    rest = &rest[end + 2..];
                }
                // The blank line, the body, or a cut last line: as stored.
                _ => break,
            },
        }
    }
    out.extend_from_slice(rest);
    out
}

/// What follows the start line's CRLF (nothing if there is none).
fn after_start_line(msg: &[u8]) -> &[u8] {
    find_crlf(msg).map_or(&[], |i| &msg[i + 2..])
}

pub(super) use sbc_proto::sip::find_crlf;

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] =
        b"INVITE sip:1@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
        From: <sip:100@pbx>;tag=a\r\nTo: <sip:1@sbc>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn a_crlf_is_found_past_lone_line_feeds() {
        assert_eq!(find_crlf(b"a\nb\r\nc"), Some(3));
        assert_eq!(find_crlf(b"\r\n"), Some(0));
        assert_eq!(find_crlf(b"\n\r"), None);
        assert_eq!(find_crlf(b""), None);
    }

    #[test]
    fn repeated_lines_become_references_and_come_back() {
        let ringing: &[u8] =
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
            From: <sip:100@pbx>;tag=a\r\nTo: <sip:1@sbc>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let stored = encode(INVITE, ringing);
        assert!(
            stored.len() < ringing.len() / 2,
            "{} of {}",
            stored.len(),
            ringing.len()
        );
        assert_eq!(decode(INVITE, &stored), ringing);
        // The first message itself, a re-INVITE with the same start line, and one that
        // shares nothing, all round-trip.
        for msg in [
            INVITE,
            b"BYE sip:x SIP/2.0\r\nCall-ID: other\r\n\r\n".as_slice(),
        ] {
            assert_eq!(decode(INVITE, &encode(INVITE, msg)), msg);
        }
    }

    #[test]
    fn bodies_cut_lines_and_odd_bytes_are_kept_as_they_are() {
        // A body with NUL bytes and a CRLF-looking line equal to a header line; a message
        // cut inside its headers; one without any CRLF.
        let with_body: &[u8] = b"INFO sip:x SIP/2.0\r\nCall-ID: c1\r\n\r\n\x00\x01Call-ID: c1\r\n";
        let cut: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: c1\r\nFrom: <sip:100@pb";
        for msg in [with_body, cut, b"SIP/2.0 200".as_slice(), b"".as_slice()] {
            let stored = encode(INVITE, msg);
            assert_eq!(
                decode(INVITE, &stored),
                msg,
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
        assert_eq!(encode(INVITE, with_body).len(), with_body.len() - 13 + 2);
    }
}
