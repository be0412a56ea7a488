//! Which message bodies cross the border. An allowlist by method, failing closed:
//!
//! | carried by                                   | allowed                                       |
//! |----------------------------------------------|-----------------------------------------------|
//! | INVITE, UPDATE, ACK; 1xx/2xx to INVITE/UPDATE | `application/sdp`, and `multipart/mixed` with an SDP part |
//! | INFO                                         | `application/dtmf-relay`, `application/dtmf` (DTMF) |
//! | MESSAGE                                      | `text/plain` (RFC 3428 §8; `charset` kept)    |
//! | NOTIFY                                       | `message/sipfrag` (REFER progress, RFC 3515), status line only |
//!
//! SDP is never relayed as it came: the B2BUA anchors and rewrites it (`sdp.rs`). Of a
//! `multipart/mixed` body only the first SDP part is used, and it is sent as plain
//! `application/sdp` (every other part — ISUP, XML, vendor data — is dropped). A sipfrag is cut
//! to its status line with the standard reason phrase (its header lines would be the other
//! side's Via, Contact and Call-ID). Everything else is refused: a body without Content-Type,
//! any other type, SDP in another method, a multipart without an SDP part. A refused request
//! gets 415 with the `Accept` of its method; a refused response body is dropped. Each refusal
//! is an [`Event::BorderRefusal`](super::Event::BorderRefusal).

use std::borrow::Cow;

use crate::sip::{HeaderName, Message, Method, StatusCode};

/// A body as it may cross.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body<'a> {
    /// No body.
    Empty,
    /// SDP (the whole body, or the SDP part of a multipart), still to be rewritten.
    Sdp(&'a [u8]),
    /// An allowlisted non-SDP body, as it is to be sent.
    Other {
        /// The Content-Type to write.
        content_type: String,
        /// The body to write.
        body: Cow<'a, [u8]>,
    },
}

/// Why a body does not cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum BodyRefusal {
    /// A body without Content-Type: its type cannot be checked.
    #[error("body without Content-Type")]
    NoContentType,
    /// A type not allowed for the method.
    #[error("body type not allowed")]
    Type,
    /// A multipart body without an SDP part.
    #[error("multipart body without an SDP part")]
    MultipartWithoutSdp,
    /// An allowed type whose content is not what the type says.
    #[error("malformed body")]
    Malformed,
}

impl BodyRefusal {
    /// Metric label.
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Self::NoContentType => "body_no_content_type",
            Self::Type => "body_type",
            Self::MultipartWithoutSdp => "body_multipart_without_sdp",
            Self::Malformed => "body_malformed",
        }
    }
}

/// The `Accept` value of a 415 to a `method` request: what the SBC would have relayed.
pub(super) fn accept(method: &Method) -> &'static str {
    match method {
        Method::Invite | Method::Update | Method::Ack => "application/sdp, multipart/mixed",
        Method::Info => "application/dtmf-relay, application/dtmf",
        Method::Message => "text/plain",
        Method::Notify => "message/sipfrag",
        _ => "",
    }
}

/// The body of `msg` as it may cross. `method` is the request's method (for a response, the
/// method of its CSeq).
pub(super) fn classify<'a>(msg: &'a Message, method: &Method) -> Result<Body<'a>, BodyRefusal> {
    let body = msg.body();
    if body.is_empty() {
        return Ok(Body::Empty);
    }
    let ct = msg
        .headers()
        .first(HeaderName::ContentType)
        .and_then(|h| h.value_str())
        .ok_or(BodyRefusal::NoContentType)?;
    let (media_type, params) = ct.split_once(';').unwrap_or((ct, ""));
    let media_type = media_type.trim().to_ascii_lowercase();
    let is_response = msg.status().is_some();
    let sdp_allowed = matches!(method, Method::Invite | Method::Update)
        || (*method == Method::Ack && !is_response);
    match media_type.as_str() {
        "application/sdp" if sdp_allowed => Ok(Body::Sdp(body)),
        "multipart/mixed" if sdp_allowed => {
            let boundary = param(params, "boundary").ok_or(BodyRefusal::Malformed)?;
            sdp_part(body, boundary)
                .map(Body::Sdp)
                .ok_or(BodyRefusal::MultipartWithoutSdp)
        }
        _ if is_response => Err(BodyRefusal::Type),
        "application/dtmf-relay" | "application/dtmf" if *method == Method::Info => {
            Ok(Body::Other {
                content_type: media_type,
                body: Cow::Borrowed(body),
            })
        }
        "text/plain" if *method == Method::Message => {
            let content_type = match param(params, "charset") {
                Some(c) if is_token(c) => format!("text/plain;charset={c}"),
                _ => media_type,
            };
            Ok(Body::Other {
                content_type,
                body: Cow::Borrowed(body),
            })
        }
        "message/sipfrag" if *method == Method::Notify => Ok(Body::Other {
            content_type: media_type,
            body: Cow::Owned(sipfrag_status(body).ok_or(BodyRefusal::Malformed)?),
        }),
        _ => Err(BodyRefusal::Type),
    }
}

/// A parameter of a Content-Type (`; name=value`, the value possibly quoted).
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The first `application/sdp` part of a multipart body (RFC 2046 §5.1.1).
fn sdp_part<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let starts: Vec<usize> = finder.find_iter(body).collect();
    for pair in starts.windows(2) {
        let (from, to) = (pair[0] + delimiter.len(), pair[1]);
        let mut part = body.get(from..to)?;
        if part.starts_with(b"--") {
            return None; // the close delimiter: no further parts
        }
        // The rest of the delimiter line, then the part; the line end before the next
        // delimiter belongs to that delimiter.
        let line_end = memchr::memchr(b'\n', part)?;
        part = &part[line_end + 1..];
        part = part.strip_suffix(b"\n").unwrap_or(part);
        part = part.strip_suffix(b"\r").unwrap_or(part);
        let (headers, content) = split_part(part)?;
        let is_sdp = headers.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("content-type")
                    && v.split(';')
                        .next()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
            })
        });
        if is_sdp && !content.is_empty() {
            return Some(content);
        }
    }
    None
}

/// A MIME part's header block (as text) and content.
fn split_part(part: &[u8]) -> Option<(&str, &[u8])> {
    for sep in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(i) = memchr::memmem::find(part, sep) {
            let headers = std::str::from_utf8(&part[..i]).ok()?;
            return Some((headers, &part[i + sep.len()..]));
        }
    }
    None
}

/// A sipfrag cut to its status line, with the standard phrase (RFC 3515 §2.4.5: the status
/// line is what REFER progress needs).
fn sipfrag_status(body: &[u8]) -> Option<Vec<u8>> {
    let line = body.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut f = line.splitn(3, ' ');
    if !f.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code = f.next()?;
    if code.len() != 3 {
        return None;
    }
    let status = StatusCode::new(code.parse().ok()?)?;
    Some(format!("SIP/2.0 {status} {}\r\n", status.standard_phrase()).into_bytes())
}

/// Whether a request's `Accept` lets its answer carry SDP (RFC 3261 §20.1: an absent field
/// means `application/sdp`; a present one lists every type the sender takes, so an empty one
/// takes none). `sdp01` of RFC 4475 accepts only a type nobody knows.
pub(super) fn accepts_sdp(msg: &Message) -> bool {
    if msg.headers().all(HeaderName::Accept).next().is_none() {
        return true;
    }
    msg.headers()
        .values(HeaderName::Accept)
        .filter_map(Result::ok)
        .any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            (kind == "*" || kind.eq_ignore_ascii_case("application"))
                && (sub == "*" || sub.trim().eq_ignore_ascii_case("sdp"))
        })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    fn request(method: &str, extra: &str, body: &str) -> Message {
        let text = format!(
            "{method} sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}\
Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("valid")
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    #[test]
    fn multipart_yields_its_sdp_part_only() {
        let body = format!(
            "preamble\r\n--b1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\
\x01\x02isup-from-pbx.lan\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1--\r\n"
        );
        let m = request(
            "INVITE",
            "Content-Type: multipart/mixed;boundary=\"b1\"\r\n",
            &body,
        );
        assert_eq!(classify(&m, &Method::Invite), Ok(Body::Sdp(SDP.as_bytes())));
        let no_sdp = "--b1\r\nContent-Type: application/isup\r\n\r\nx\r\n--b1--\r\n";
        let m = request(
            "INVITE",
            "Content-Type: multipart/mixed;boundary=b1\r\n",
            no_sdp,
        );
        assert_eq!(
            classify(&m, &Method::Invite),
            Err(BodyRefusal::MultipartWithoutSdp)
        );
        let m = request("INVITE", "Content-Type: multipart/mixed\r\n", &body);
        assert_eq!(classify(&m, &Method::Invite), Err(BodyRefusal::Malformed));
    }

    #[test]
    fn types_follow_the_method_allowlist() {
        let m = request("INVITE", "", SDP);
        assert_eq!(
            classify(&m, &Method::Invite),
            Err(BodyRefusal::NoContentType)
        );
        let m = request("INVITE", "Content-Type: text/plain\r\n", "hi");
        assert_eq!(classify(&m, &Method::Invite), Err(BodyRefusal::Type));
        let m = request("INFO", "Content-Type: application/sdp\r\n", SDP);
        assert_eq!(classify(&m, &Method::Info), Err(BodyRefusal::Type));
        let m = request(
            "INFO",
            "Content-Type: Application/DTMF-Relay\r\n",
            "Signal=5\r\nDuration=160\r\n",
        );
        assert!(matches!(
            classify(&m, &Method::Info),
            Ok(Body::Other { content_type, .. }) if content_type == "application/dtmf-relay"
        ));
        let m = request(
            "MESSAGE",
            "Content-Type: text/plain; charset=UTF-8; x-origin=pbx.lan\r\n",
            "hello",
        );
        assert!(matches!(
            classify(&m, &Method::Message),
            Ok(Body::Other { content_type, .. }) if content_type == "text/plain;charset=UTF-8"
        ));
        let m = request(
            "MESSAGE",
            "Content-Type: application/vnd.pbx+xml\r\n",
            "<x/>",
        );
        assert_eq!(classify(&m, &Method::Message), Err(BodyRefusal::Type));
        let m = request(
            "NOTIFY",
            "Content-Type: message/sipfrag;version=2.0\r\n",
            "SIP/2.0 200 OK pbx-7\r\nVia: SIP/2.0/UDP 10.0.0.10\r\n",
        );
        assert_eq!(
            classify(&m, &Method::Notify),
            Ok(Body::Other {
                content_type: "message/sipfrag".into(),
                body: Cow::Owned(b"SIP/2.0 200 OK\r\n".to_vec()),
            })
        );
        let m = request("BYE", "Content-Type: text/plain\r\n", "x");
        assert_eq!(classify(&m, &Method::Bye), Err(BodyRefusal::Type));
        assert_eq!(
            classify(&request("BYE", "", ""), &Method::Bye),
            Ok(Body::Empty)
        );
    }
}
