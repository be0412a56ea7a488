//! The message parser (RFC 3261 §7, §25) and its limits.
//!
//! One pass over the buffer finds the start line, every header field (with folded lines) and
//! the body; the headers every element relies on are then checked. On error, the parser keeps
//! going far enough to know whether the headers needed for a response were present, so that the
//! caller can tell "answer 400" from "drop".

use bytes::Bytes;

use super::addr::{Contact, NameAddr};
use super::cseq::CSeq;
use super::error::{ParseError, Problem};
use super::headers::{Entry, Headers, Span, check_call_id, split_commas};
use super::message::{Message, StartLine};
use super::method::Method;
use super::name::HeaderName;
use super::scan::{self, Cursor};
use super::status::StatusCode;
use super::uri::Uri;
use super::value_error::HeaderError;
use super::values;
use super::via::Via;

use super::limits::Limits;

/// The empty line that ends the header section, searched with one searcher built once
/// (`memmem::find` builds a new one on every call: ~400 instructions per message).
static END_OF_HEADERS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Finds the next CRLF at or after `from`; a bare LF counts as a line end too so that the
/// caller can reject it.
fn find_lf(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', data.get(from..)?).map(|i| from + i)
}

impl Message {
    /// Parses one message from a datagram or from a frame the [stream
    /// framer](super::framer) delimited. Header values and the body stay slices of `buf`.
    ///
    /// Without a Content-Length the body is the rest of the buffer (RFC 3261 §18.3, datagrams);
    /// with one, octets beyond it are ignored (RFC 4475 §3.1.1.8) and a shorter body is an
    /// error.
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<Self, ParseError> {
        parse(buf, limits)
    }
}

pub(crate) fn parse(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    // The buffer goes into the headers now, not as a clone at the end: cloning a `Bytes` made
    // from a `Vec` allocates its shared header (one allocation per message).
    let mut headers = Headers {
        buf,
        entries: Vec::new(),
    };
    let data: &[u8] = &headers.buf;
    let max = limits.max_message.min(u32::MAX as usize - 4);
    // Implementations ignore CRLFs before the start line (RFC 3261 §7.5).
    let mut pos = 0;
    while data.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    let mut problem: Option<Problem> = None;
    let mut scan_end = data.len();
    if data.len() - pos > max {
        problem = Some(Problem::TooLarge {
            len: data.len() - pos,
            max,
        });
        scan_end = pos + max;
    }
    let data = &data[..scan_end];

    // ---- start line ----
    let Some(lf) = find_lf(data, pos) else {
        return Err(ParseError::NotSip);
    };
    if lf == pos || data[lf - 1] != b'\r' {
        return Err(ParseError::NotSip);
    }
    let sl_end = lf - 1;
    let line = &data[pos..sl_end];
    let start = match parse_start_line(line, pos) {
        Ok(s) => Some(s),
        Err(StartError::NotSip) => return Err(ParseError::NotSip),
        Err(StartError::Response(p)) => return Err(ParseError::Unanswerable { problem: p }),
        Err(StartError::Request(p)) => {
            problem.get_or_insert(p);
            None
        }
    };
    if line.len() > limits.max_header_len {
        problem.get_or_insert(Problem::HeaderTooLong {
            max: limits.max_header_len,
        });
    }
    let is_request = start
        .as_ref()
        .is_none_or(|s| matches!(s, StartLine::Request { .. }));

    // ---- header fields ----
    let header_start = sl_end + 2;
    let section_end = END_OF_HEADERS.find(&data[sl_end..]).map(|i| sl_end + i + 2);
    let estimate = match section_end {
        Some(e) => memchr::memchr_iter(b'\n', &data[header_start..e]).count(),
        None => 16,
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(estimate.min(limits.max_headers));
    let mut p = header_start;
    let mut body_start = None;
    let mut headers_end = p;
    loop {
        if data.get(p..p + 2) == Some(b"\r\n") {
            headers_end = p;
            body_start = Some(p + 2);
            break;
        }
        // The field ends at the first CRLF not followed by SP/HTAB (RFC 3261 §7.3.1).
        let mut e = match find_lf(data, p) {
            Some(e) => e,
            None => break,
        };
        loop {
            if data[e - 1] != b'\r' {
                problem.get_or_insert(Problem::BadHeaderLine { offset: p });
                break;
            }
            if matches!(data.get(e + 1), Some(b' ' | b'\t')) {
                match find_lf(data, e + 1) {
                    Some(n) => e = n,
                    None => break,
                }
            } else {
                break;
            }
        }
        let line_end = e + 1;
        if line_end - p > limits.max_header_len {
            problem.get_or_insert(Problem::HeaderTooLong {
                max: limits.max_header_len,
            });
        }
        if entries.len() >= limits.max_headers {
            problem.get_or_insert(Problem::TooManyHeaders {
                max: limits.max_headers,
            });
            break;
        }
        // Without its CR (a bare LF was recorded as a problem above) the content ends at the LF.
        let content_end = if e > p && data[e - 1] == b'\r' {
            e - 1
        } else {
            e
        };
        match split_field(data, p, content_end) {
            Some(entry) => entries.push(Entry {
                line_end: line_end as u32,
                ..entry
            }),
            None => {
                problem.get_or_insert(Problem::BadHeaderLine { offset: p });
            }
        }
        p = line_end;
    }
    if body_start.is_none() {
        problem.get_or_insert(Problem::Truncated);
    }
    let section = match std::str::from_utf8(&data[pos..headers_end.max(sl_end)]) {
        Ok(s) => s,
        Err(e) => {
            problem.get_or_insert(Problem::NotUtf8 {
                offset: pos + e.valid_up_to(),
            });
            ""
        }
    };
    headers.entries = entries;

    // ---- mandatory headers and body ----
    let (start, body_start) = match (start, body_start, problem) {
        (Some(start), Some(body_start), None) => (start, body_start),
        (_, _, problem) => {
            return Err(reject(
                problem.unwrap_or(Problem::Truncated),
                headers,
                is_request,
            ));
        }
    };
    let checked = match validate(&headers, section, pos, &start, limits) {
        Ok(c) => c,
        Err(p) => return Err(reject(p, headers, is_request)),
    };
    let available = data.len() - body_start;
    let body_end = match checked.content_length {
        Some(n) if n as usize > available => {
            let p = Problem::BodyTooShort {
                declared: n,
                available,
            };
            return Err(reject(p, headers, is_request));
        }
        Some(n) => body_start + n as usize,
        None => data.len(),
    };
    Ok(Message {
        start,
        start_line: Span::new(pos, sl_end),
        headers,
        body: Span::new(body_start, body_end),
        cseq: checked.cseq,
        call_id: checked.call_id,
        from_tag: checked.from_tag.unwrap_or_default(),
        to_tag: checked.to_tag.unwrap_or_default(),
        top_branch: checked.top_branch.unwrap_or_default(),
    })
}

fn reject(problem: Problem, headers: Headers, is_request: bool) -> ParseError {
    if is_request && answerable(&headers) {
        ParseError::Rejected {
            problem,
            headers: Box::new(headers),
        }
    } else {
        ParseError::Unanswerable { problem }
    }
}

/// Whether a response can be built and routed: the top Via's sent-by (where it goes, RFC 3261
/// §18.2.2) and CSeq (with the Via branch, what the client matches it by, §17.1.3) are present
/// as UTF-8 text. From, To and Call-ID are copied when present (§8.2.6.2); a request missing
/// them still gets its 400 (RFC 4475 `insuf`: "ideally, it will respond with a 400").
pub(crate) fn answerable(headers: &Headers) -> bool {
    let via_ok = matches!(headers.values(HeaderName::Via).next(), Some(Ok(v))
        if Via::parse_sent_by(&mut Cursor::new(v)).is_ok());
    // What is copied must be text: a response must not carry invalid UTF-8 back.
    let text = |n: HeaderName| headers.first(n).map(|h| h.value_str().is_some());
    via_ok
        && text(HeaderName::CSeq) == Some(true)
        && [HeaderName::From, HeaderName::To, HeaderName::CallId]
            .iter()
            .all(|n| text(*n) != Some(false))
}

/// Splits `name: value` between `start` and `end` (the CRLF of the field's last line).
fn split_field(data: &[u8], start: usize, end: usize) -> Option<Entry> {
    let line = &data[start..end];
    let name_len = line.iter().position(|b| !scan::is(*b, scan::TOKEN))?;
    if name_len == 0 {
        return None;
    }
    // HCOLON = *( SP / HTAB ) ":" SWS
    let mut i = name_len;
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if line.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while line.get(i).is_some_and(|b| scan::is_lws(*b)) {
        i += 1;
    }
    let mut j = line.len();
    while j > i && scan::is_lws(line[j - 1]) {
        j -= 1;
    }
    Some(Entry {
        name: HeaderName::from_bytes(&line[..name_len]),
        name_span: Span::new(start, start + name_len),
        value: Span::new(start + i, start + j),
        line_end: 0,
    })
}

enum StartError {
    NotSip,
    Request(Problem),
    Response(Problem),
}

fn parse_start_line(line: &[u8], offset: usize) -> Result<StartLine, StartError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(line, offset).ok_or(StartError::Response(Problem::BadStatusLine));
    }
    // It is a SIP request only if the line ends with a SIP-Version; anything else is not SIP.
    let trimmed_len = line
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    let trimmed = &line[..trimmed_len];
    let version_start = trimmed
        .iter()
        .rposition(|b| *b == b' ')
        .map_or(0, |i| i + 1);
    let version = &trimmed[version_start..];
    if version_start == 0 || version.len() < 4 || !version[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(StartError::NotSip);
    }
    let bad = StartError::Request(Problem::BadRequestLine);
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly two single spaces
    // (RFC 4475 §3.1.2.8–3.1.2.10).
    if trimmed_len != line.len() {
        return Err(bad);
    }
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(uri), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(Method::from_token)
        .ok_or(bad)?;
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(StartError::Request(Problem::BadVersion));
    }
    let uri_start = offset + method.as_str().len() + 1;
    let uri_str =
        std::str::from_utf8(uri).map_err(|_| StartError::Request(Problem::BadRequestUri))?;
    match Uri::parse(uri_str) {
        Ok(Uri::Sip(u)) if u.headers.is_some() => {
            Err(StartError::Request(Problem::RequestUriHeaders))
        }
        Ok(Uri::Sip(_) | Uri::Tel(_)) => Ok(StartLine::Request {
            method,
            uri: Span::new(uri_start, uri_start + uri.len()),
        }),
        Ok(Uri::Other(_)) => Err(StartError::Request(Problem::UnsupportedScheme)),
        Err(_) => Err(StartError::Request(Problem::BadRequestUri)),
    }
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF.
fn parse_status_line(line: &[u8], offset: usize) -> Option<StartLine> {
    let rest = line.get(8..)?;
    if !line[..8].eq_ignore_ascii_case(b"SIP/2.0 ") {
        return None;
    }
    let (code, sp) = (rest.get(..3)?, rest.get(3)?);
    if *sp != b' ' || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let status = StatusCode::new(n)?;
    // Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP /
    // HTAB): no control characters.
    let reason = &rest[4..];
    if reason.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return None;
    }
    Some(StartLine::Response {
        status,
        reason: Span::new(offset + 12, offset + line.len()),
    })
}

/// What [`validate`] learnt on the way, so that the message's accessors need not look again.
struct Checked {
    cseq: CSeq,
    content_length: Option<u32>,
    /// The Call-ID value (it occurs exactly once in a valid message).
    call_id: Span,
    /// The `tag` parameters of From and To and the top Via's `branch`, which the transaction
    /// and dialog layers look up on every message.
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    top_branch: Option<Span>,
}

/// Checks the headers every element relies on; returns what it decoded.
///
/// `section` is the header section already checked to be UTF-8, starting at buffer offset
/// `base`, so values are sliced from it without decoding each one again.
fn validate(
    headers: &Headers,
    section: &str,
    base: usize,
    start: &StartLine,
    limits: &Limits,
) -> Result<Checked, Problem> {
    const SINGLE: [HeaderName; 6] = [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
    ];
    let invalid = |name| move |error: HeaderError| Problem::Invalid { name, error };
    // Where a slice of `section` lies in the buffer (values are sub-slices of `section`, so the
    // address difference is their offset in it).
    let span_of = |sub: &str| {
        let at = base + (sub.as_ptr() as usize - section.as_ptr() as usize);
        Span::new(at, at + sub.len())
    };
    let value = |e: &Entry| {
        let r = e.value.range();
        section
            .get(r.start - base..r.end - base)
            .unwrap_or_default()
    };
    // One pass over the fields: Vias are checked as they come, the single-instance headers are
    // counted and remembered.
    let mut found: [Option<Span>; 6] = [None; 6];
    let mut counts = [0usize; 6];
    let mut vias = 0;
    let mut lists = false;
    let mut top_branch = None;
    for e in &headers.entries {
        match e.name {
            HeaderName::Via => {
                for v in split_commas(value(e)) {
                    let via = Via::parse(v).map_err(invalid(HeaderName::Via))?;
                    if vias == 0 {
                        top_branch = via.branch().map(&span_of);
                    }
                    vias += 1;
                    if vias > limits.max_vias {
                        return Err(Problem::TooManyVias {
                            max: limits.max_vias,
                        });
                    }
                }
            }
            HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => lists = true,
            name => {
                if let Some(i) = SINGLE.iter().position(|n| *n == name) {
                    counts[i] += 1;
                    found[i].get_or_insert(e.value);
                }
            }
        }
    }
    if vias == 0 {
        return Err(Problem::Missing(HeaderName::Via));
    }
    for (i, name) in SINGLE.iter().enumerate() {
        match counts[i] {
            0 if i < 4 => return Err(Problem::Missing(*name)),
            0 | 1 => {}
            _ => return Err(Problem::Duplicate(*name)),
        }
    }
    let text = |span: Option<Span>| {
        span.and_then(|r| section.get(r.start as usize - base..r.end as usize - base))
            .unwrap_or_default()
    };
    let [from, to, call_id, cseq, max_forwards, content_length] = found;
    let from_tag = NameAddr::parse(text(from))
        .map_err(invalid(HeaderName::From))?
        .tag()
        .map(span_of);
    let to_tag = NameAddr::parse(text(to))
        .map_err(invalid(HeaderName::To))?
        .tag()
        .map(span_of);
    check_call_id(text(call_id)).map_err(invalid(HeaderName::CallId))?;
    let cseq = CSeq::parse(text(cseq)).map_err(invalid(HeaderName::CSeq))?;
    if let StartLine::Request { method, .. } = start
        && *method != cseq.method
    {
        return Err(Problem::CSeqMethodMismatch);
    }
    if let Some(v) = max_forwards {
        let n = values::parse_number(text(Some(v))).map_err(invalid(HeaderName::MaxForwards))?;
        u8::try_from(n).map_err(|_| Problem::Invalid {
            name: HeaderName::MaxForwards,
            error: HeaderError::NumberOverflow,
        })?;
    }
    let content_length = content_length
        .map(|v| values::parse_number(text(Some(v))))
        .transpose()
        .map_err(invalid(HeaderName::ContentLength))?;
    // The SBC rewrites and routes on these, so a malformed one is rejected up front
    // (RFC 4475 §3.1.2.1 and §3.1.2.13).
    if lists {
        for e in &headers.entries {
            let ok = match e.name {
                HeaderName::Contact => {
                    split_commas(value(e)).try_for_each(|v| Contact::parse(v).map(drop))
                }
                HeaderName::Route | HeaderName::RecordRoute => {
                    split_commas(value(e)).try_for_each(|v| NameAddr::parse(v).map(drop))
                }
                _ => Ok(()),
            };
            ok.map_err(invalid(e.name))?;
        }
    }
    // Invariant: the counts above are 1 for From, To and Call-ID, so each was found.
    Ok(Checked {
        cseq,
        content_length,
        call_id: call_id.unwrap_or_default(),
        from_tag,
        to_tag,
        top_branch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Reaction;

    const OPTIONS: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: abc@192.0.2.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn parse_str(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
    }

    fn reaction(s: &str) -> Reaction {
        match parse_str(s) {
            Ok(_) => panic!("parsed: {s}"),
            Err(e) => e.reaction(),
        }
    }

    #[test]
    fn minimal_request() {
        let m = parse_str(OPTIONS).expect("valid");
        assert_eq!(m.method(), Some(&Method::Options));
        assert_eq!(m.request_uri_str(), Some("sip:bob@example.com"));
        assert_eq!(m.headers().len(), 7);
        assert_eq!(m.call_id(), "abc@192.0.2.1");
        assert_eq!(m.as_bytes(), OPTIONS.as_bytes());
        assert!(m.body().is_empty());
    }

    #[test]
    fn leading_crlf_and_trailing_octets() {
        let s = format!("\r\n\r\n{OPTIONS}garbage");
        let m = parse_str(&s).expect("valid");
        assert_eq!(m.as_bytes(), OPTIONS.as_bytes());
    }

    #[test]
    fn not_sip_is_dropped() {
        for s in [
            "",
            "\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "hello",
            "\x16\x03\x01\x02\x00",
        ] {
            assert!(matches!(parse_str(s), Err(ParseError::NotSip)), "{s:?}");
        }
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let e = Message::parse(Bytes::from_static(OPTIONS.as_bytes()), &small).err();
        assert_eq!(
            e.and_then(|e| e.problem().cloned()),
            Some(Problem::TooManyHeaders { max: 3 })
        );
        let tiny = Limits {
            max_message: 100,
            ..Limits::default()
        };
        let e = Message::parse(Bytes::from_static(OPTIONS.as_bytes()), &tiny).err();
        assert!(matches!(
            e.and_then(|e| e.problem().cloned()),
            Some(Problem::TooLarge { .. })
        ));
        let one_via = Limits {
            max_vias: 1,
            ..Limits::default()
        };
        let two = OPTIONS.replace(
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b",
        );
        let e = Message::parse(Bytes::from(two), &one_via).err();
        assert_eq!(
            e.map(|e| e.reaction()),
            Some(Reaction::Respond {
                code: 400,
                reason: "Too Many Via Headers"
            })
        );
        let long = OPTIONS.replace("Call-ID: abc", &format!("Call-ID: {}", "a".repeat(9000)));
        assert_eq!(
            reaction(&long),
            Reaction::Respond {
                code: 513,
                reason: "Message Too Large"
            }
        );
    }

    #[test]
    fn specific_reasons() {
        let r = |from: &str, to: &str| reaction(&OPTIONS.replace(from, to));
        assert_eq!(
            r("CSeq: 1 OPTIONS", "CSeq: x OPTIONS"),
            Reaction::Respond {
                code: 400,
                reason: "Malformed CSeq Header"
            }
        );
        assert_eq!(
            r("Content-Length: 0", "Content-Length: 10"),
            Reaction::Respond {
                code: 400,
                reason: "Body Shorter Than Content-Length"
            }
        );
        assert_eq!(
            r("Max-Forwards: 70", "Max-Forwards: 256"),
            Reaction::Respond {
                code: 400,
                reason: "Malformed Max-Forwards Header"
            }
        );
        assert_eq!(
            r("sip:bob@example.com SIP", "http://x SIP"),
            Reaction::Respond {
                code: 416,
                reason: "Unsupported URI Scheme"
            }
        );
        assert_eq!(
            r("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
            Reaction::Respond {
                code: 505,
                reason: "Version Not Supported"
            }
        );
        // RFC 4475 `insuf`: the Via routes the answer, CSeq lets the client match it.
        assert_eq!(
            r("Call-ID: abc@192.0.2.1\r\n", ""),
            Reaction::Respond {
                code: 400,
                reason: "Missing Call-ID Header"
            }
        );
        assert_eq!(r("CSeq: 1 OPTIONS\r\n", ""), Reaction::Drop);
        assert_eq!(
            r("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nbad header\r\n"),
            Reaction::Respond {
                code: 400,
                reason: "Malformed Header Line"
            }
        );
        assert_eq!(
            r("Max-Forwards: 70\r\n", "Max-Forwards: 70\n"),
            Reaction::Respond {
                code: 400,
                reason: "Malformed Header Line"
            }
        );
        assert_eq!(
            r("\r\n\r\n", "\r\n"),
            Reaction::Respond {
                code: 400,
                reason: "Incomplete Header Section"
            }
        );
    }

    #[test]
    fn non_utf8_header_is_rejected_not_skipped() {
        let mut raw = OPTIONS
            .replace("Max-Forwards: 70", "X-Bin: \u{1}\u{1}")
            .into_bytes();
        let at = raw.iter().position(|b| *b == 1).expect("marker");
        raw[at] = 0xff;
        let e = Message::parse(Bytes::from(raw), &Limits::default()).err();
        assert!(matches!(
            e.as_ref().and_then(|e| e.problem()),
            Some(Problem::NotUtf8 { .. })
        ));
        assert_eq!(
            e.map(|e| e.reaction()),
            Some(Reaction::Respond {
                code: 400,
                reason: "Invalid UTF-8 in Header"
            })
        );
    }

    #[test]
    fn non_utf8_in_a_copied_header_is_not_answered() {
        let mut raw = OPTIONS.replace("tag=1", "tag=\u{1}").into_bytes();
        let at = raw.iter().position(|b| *b == 1).expect("marker");
        raw[at] = 0xfe;
        let e = Message::parse(Bytes::from(raw), &Limits::default()).err();
        assert_eq!(e.map(|e| e.reaction()), Some(Reaction::Drop));
    }

    #[test]
    fn responses_are_never_answered() {
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(reaction(resp), Reaction::Drop);
        let ok = resp.replace("Content-Length: 5", "Content-Length: 2");
        let m = parse_str(&ok).expect("valid");
        assert_eq!(m.status(), Some(StatusCode::OK));
        assert_eq!(m.reason_phrase(), Some("OK"));
        assert_eq!(m.body(), b"ab");
        assert_eq!(reaction("SIP/2.0 20 OK\r\n\r\n"), Reaction::Drop);
        assert_eq!(reaction("SIP/2.0 700 OK\r\n\r\n"), Reaction::Drop);
    }
}
