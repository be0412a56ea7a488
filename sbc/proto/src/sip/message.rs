//! A parsed SIP message: one buffer, the start line, the header fields in wire order and the
//! body, all as spans of the received bytes (RFC 3261 §7).

use std::fmt;

use bytes::Bytes;

use super::addr::{Contact, NameAddr};
use super::cseq::CSeq;
use super::headers::{Headers, Span};
use super::method::Method;
use super::status::StatusCode;
use super::uri::Uri;
use super::value_error::HeaderError;
use super::via::Via;

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: StatusCode, reason: Span },
}

/// A parsed SIP request or response.
///
/// A `Message` only exists once the parser has checked the start line and the headers every
/// element needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length), so their
/// accessors here cannot fail. Other headers are decoded on demand through [`Message::headers`].
#[derive(Clone)]
pub struct Message {
    pub(crate) start: StartLine,
    /// The start line without its CRLF.
    pub(crate) start_line: Span,
    pub(crate) headers: Headers,
    pub(crate) body: Span,
    pub(crate) cseq: CSeq,
    /// The Call-ID value, found and checked by the parser (it occurs once).
    pub(crate) call_id: Span,
    /// The From tag, the To tag and the top Via branch, found while checking those headers;
    /// an empty span when absent (a present one is never empty: a gen-value has at least one
    /// character). Spans, not `Option`s, and the buffer only in `headers`: a `Message` is moved
    /// through channels and stored in transactions, so its size counts.
    pub(crate) from_tag: Span,
    pub(crate) to_tag: Span,
    pub(crate) top_branch: Span,
}

impl Message {
    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, for a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as on the wire, for a request.
    pub fn request_uri_str(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => self.str_at(*uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, for a request (a sip, sips or tel URI; others are rejected with 416).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_str().and_then(|s| Uri::parse(s).ok())
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.start {
            StartLine::Request { .. } => None,
            StartLine::Response { status, .. } => Some(*status),
        }
    }

    /// The reason phrase, for a response (may be empty, RFC 4475 §3.1.1.13).
    pub fn reason_phrase(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { .. } => None,
            StartLine::Response { reason, .. } => self.str_at(*reason),
        }
    }

    fn str_at(&self, span: Span) -> Option<&str> {
        self.headers
            .buf
            .get(span.range())
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The header fields in wire order, with all typed views.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body (possibly empty).
    pub fn body(&self) -> &[u8] {
        self.headers.buf.get(self.body.range()).unwrap_or_default()
    }

    /// The body as a zero-copy slice of the receive buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.headers.buf.slice(self.body.range())
    }

    /// The message exactly as received (without leading CRLFs or octets after the body).
    pub fn as_bytes(&self) -> &[u8] {
        self.headers
            .buf
            .get(self.start_line.start as usize..self.body.end as usize)
            .unwrap_or_default()
    }

    /// All Via values, top first.
    pub fn via(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> + '_ {
        self.headers.via()
    }

    /// The top Via (validated by the parser).
    pub fn top_via(&self) -> Via<'_> {
        // Invariant: `parse::validate` rejected the message unless every Via value parses.
        self.headers
            .top_via()
            .expect("Message::parse validated the Via headers")
    }

    /// The top Via's sent-protocol and sent-by only (its `params` are left empty): what a
    /// transaction is matched by besides the branch, without decoding the parameters again.
    pub fn top_sent_by(&self) -> Via<'_> {
        // Invariant: `parse::validate` rejected the message unless every Via value parses.
        self.headers
            .top_sent_by()
            .expect("Message::parse validated the Via headers")
    }

    /// From (validated by the parser).
    pub fn from(&self) -> NameAddr<'_> {
        // Invariant: `parse::validate` rejected the message unless From parses.
        self.headers.from().expect("Message::parse validated From")
    }

    /// To (validated by the parser).
    pub fn to(&self) -> NameAddr<'_> {
        // Invariant: `parse::validate` rejected the message unless To parses.
        self.headers.to().expect("Message::parse validated To")
    }

    /// The From `tag` (RFC 3261 §19.3), as `from().tag()` but without decoding From again:
    /// the parser kept where it is.
    pub fn from_tag(&self) -> Option<&str> {
        self.str_at(self.from_tag).filter(|t| !t.is_empty())
    }

    /// The To `tag`, as `to().tag()` without decoding To again.
    pub fn to_tag(&self) -> Option<&str> {
        self.str_at(self.to_tag).filter(|t| !t.is_empty())
    }

    /// The top Via's `branch`, as `top_via().branch()` without decoding the Via again.
    pub fn top_branch(&self) -> Option<&str> {
        self.str_at(self.top_branch).filter(|t| !t.is_empty())
    }

    /// Call-ID (validated by the parser).
    pub fn call_id(&self) -> &str {
        // `parse::validate` checked its grammar (`word [ "@" word ]`, all ASCII).
        self.str_at(self.call_id).unwrap_or_default()
    }

    /// CSeq (validated by the parser).
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }

    /// Max-Forwards (validated by the parser when present).
    pub fn max_forwards(&self) -> Option<u8> {
        self.headers.max_forwards().ok().flatten()
    }

    /// Content-Length as received (validated by the parser when present).
    pub fn content_length(&self) -> Option<u32> {
        self.headers.content_length().ok().flatten()
    }

    /// Contact values.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, HeaderError>> + '_ {
        self.headers.contacts()
    }

    /// Route values.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.headers.routes()
    }

    /// Record-Route values.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.headers.record_routes()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Method or status only: URIs and header values carry numbers and addresses that must
        // not reach logs by accident (STYLE.md, PII).
        let mut d = f.debug_struct("Message");
        match &self.start {
            StartLine::Request { method, .. } => d.field("method", &method.as_str()),
            StartLine::Response { status, .. } => d.field("status", &status.as_u16()),
        };
        d.field("headers", &self.headers.len())
            .field("body_len", &self.body().len())
            .finish()
    }
}
