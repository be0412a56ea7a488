//! Message framing on stream transports (TCP, TLS): RFC 3261 §18.3 and RFC 5626 §3.5.1
//! keep-alives.
//!
//! On a stream, Content-Length is the only way to find the end of a message, so it is
//! mandatory; a missing or malformed one is an error that closes the connection (the stream
//! cannot be resynchronised).

use crate::sip::Limits;

/// What the bytes at the front of a stream buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A keep-alive of `n` bytes (CRLFCRLF ping or CRLF pong): consume and answer a ping.
    KeepAlive(usize),
    /// A complete message of this many bytes: hand them to [`Message::parse`](super::Message).
    Complete(usize),
    /// Not enough bytes yet.
    Incomplete,
}

/// Why a stream must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header section or the whole message is larger than the limit.
    #[error("message larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// No Content-Length header (mandatory on streams, RFC 3261 §18.3).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length is not a number, or there are several.
    #[error("invalid Content-Length")]
    BadContentLength,
}

/// A resumable framer: it remembers how far it has searched for the end of the headers, so
/// feeding a message byte by byte stays linear.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    searched: usize,
}

impl Framer {
    /// A framer at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Examines the buffered bytes. After `KeepAlive(n)` or `Complete(n)` the caller drops
    /// `n` bytes from the front and calls again.
    pub fn frame(&mut self, buf: &[u8], limits: &Limits) -> Result<Frame, FrameError> {
        if buf.starts_with(b"\r\n") {
            self.searched = 0;
            return Ok(if buf.starts_with(b"\r\n\r\n") {
                Frame::KeepAlive(4)
            } else if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
                // Could still become a CRLFCRLF ping.
                Frame::Incomplete
            } else {
                Frame::KeepAlive(2)
            });
        }
        let from = self.searched.saturating_sub(3);
        let Some(end) = memchr::memmem::find(&buf[from.min(buf.len())..], b"\r\n\r\n") else {
            self.searched = buf.len();
            if buf.len() > limits.max_message {
                return Err(FrameError::TooLarge {
                    max: limits.max_message,
                });
            }
            return Ok(Frame::Incomplete);
        };
        let head_end = from + end + 4;
        let length = match content_length(&buf[..head_end]) {
            // Bytes up to an empty line that do not even start like SIP (e.g. stray octets
            // after a message, RFC 4475 `dblreq`) are framed on their own and left to the
            // parser, which drops them as not SIP: the stream stays in sync and open. A SIP
            // message without Content-Length cannot be framed (RFC 3261 §18.3).
            Err(FrameError::MissingContentLength) if !starts_like_sip(&buf[..head_end]) => 0,
            r => r?,
        };
        let total = head_end
            .checked_add(length)
            .ok_or(FrameError::BadContentLength)?;
        if total > limits.max_message {
            return Err(FrameError::TooLarge {
                max: limits.max_message,
            });
        }
        if buf.len() < total {
            // Keep the header search result; only the body is missing.
            self.searched = head_end.saturating_sub(4);
            return Ok(Frame::Incomplete);
        }
        self.searched = 0;
        Ok(Frame::Complete(total))
    }
}

/// Whether the first line of `head` could be a SIP start line: a Status-Line (`SIP/`) or a
/// Request-Line (ending in a `SIP/` version).
fn starts_like_sip(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    memchr::memmem::find(line, b"SIP/").is_some()
}

/// Finds the single Content-Length (or `l`) in a header section.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            return Err(FrameError::BadContentLength);
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(
            value
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
        );
    }
    found.ok_or(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"BYE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcNEXT";

    #[test]
    fn keepalives() {
        let l = Limits::default();
        let mut f = Framer::new();
        assert_eq!(f.frame(b"\r\n\r\nBYE", &l), Ok(Frame::KeepAlive(4)));
        assert_eq!(f.frame(b"\r\nBYE", &l), Ok(Frame::KeepAlive(2)));
        assert_eq!(f.frame(b"\r\n", &l), Ok(Frame::Incomplete));
    }

    #[test]
    fn byte_by_byte() {
        let l = Limits::default();
        let mut f = Framer::new();
        let len = MSG.len() - 4;
        for i in 1..len {
            assert_eq!(f.frame(&MSG[..i], &l), Ok(Frame::Incomplete), "at {i}");
        }
        assert_eq!(f.frame(&MSG[..len], &l), Ok(Frame::Complete(len)));
        assert_eq!(f.frame(MSG, &l), Ok(Frame::Complete(len)));
    }

    #[test]
    fn stream_of_pings_and_messages() {
        use bytes::Bytes;

        use crate::sip::Message;
        let one = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
            From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n\
            CSeq: 1 OPTIONS\r\nl: 2\r\n\r\nhi";
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(one.as_bytes());
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(one.as_bytes());
        let l = Limits::default();
        let mut f = Framer::new();
        let mut buf = &stream[..];
        let mut seen = Vec::new();
        while !buf.is_empty() {
            match f.frame(buf, &l) {
                Ok(Frame::KeepAlive(n)) => {
                    seen.push(format!("ka{n}"));
                    buf = &buf[n..];
                }
                Ok(Frame::Complete(n)) => {
                    let m = Message::parse(Bytes::copy_from_slice(&buf[..n]), &l).expect("frame");
                    seen.push(format!("msg{}", m.body().len()));
                    buf = &buf[n..];
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, ["ka4", "msg2", "ka2", "msg2"]);
    }

    #[test]
    fn errors() {
        let l = Limits::default();
        let f = |b: &[u8]| Framer::new().frame(b, &l);
        assert_eq!(
            f(b"BYE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"),
            Err(FrameError::MissingContentLength)
        );
        // Not SIP at all: framed up to the empty line (the parser drops it), no error.
        assert_eq!(f(b"C\r\n\r\nOPTIONS"), Ok(Frame::Complete(5)));
        assert_eq!(
            f(b"BYE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n"),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            f(b"BYE sip:a@b SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\n"),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            f(b"BYE sip:a@b SIP/2.0\r\nl: 99999999\r\n\r\n"),
            Err(FrameError::TooLarge { max: 65_535 })
        );
        let small = Limits {
            max_message: 10,
            ..Limits::default()
        };
        assert_eq!(
            Framer::new().frame(&[b'a'; 11], &small),
            Err(FrameError::TooLarge { max: 10 })
        );
    }
}
