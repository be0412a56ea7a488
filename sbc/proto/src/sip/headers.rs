//! Header fields in wire order over the message buffer, with typed views decoded on demand.
//!
//! Each entry records the name, the span of the name and of the value (without the leading and
//! trailing whitespace, but with any folded line breaks inside it), and where its line ends.
//! Nothing is copied: an untouched message re-prints byte for byte from the spans.

use bytes::Bytes;

use super::addr::{Contact, NameAddr};
use super::auth::Auth;
use super::cseq::CSeq;
use super::name::HeaderName;
use super::scan;
use super::value_error::HeaderError;
use super::values::{self, MediaType, RAck, Reason, RetryAfter, SessionExpires};
use super::via::Via;

/// A byte range in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        // The parser rejects messages above `Limits::max_message` (at most `u32::MAX` by
        // construction of `Limits`) before creating spans, so offsets fit.
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header field as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    pub(crate) name_span: Span,
    pub(crate) value: Span,
    /// Offset just past the CRLF that ends the field (its last folded line).
    pub(crate) line_end: u32,
}

/// The header fields of a message, in wire order.
#[derive(Clone)]
pub struct Headers {
    pub(crate) buf: Bytes,
    pub(crate) entries: Vec<Entry>,
}

/// A borrowed view of one header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The classified name.
    pub name: HeaderName,
    /// The name as received (e.g. `v`, `MaX-fOrWaRdS`).
    pub raw_name: &'a [u8],
    /// The value as received, without surrounding whitespace; folds are kept.
    pub value: &'a [u8],
    /// The whole field as received, from its name through its final CRLF.
    pub line: &'a [u8],
}

impl<'a> Header<'a> {
    /// The value as text (UTF-8 is checked by the parser; `None` only for a header of a
    /// rejected message that failed that check).
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// Whether the raw name equals `name`, ignoring ASCII case.
    pub fn is_named(&self, name: &str) -> bool {
        self.raw_name.eq_ignore_ascii_case(name.as_bytes())
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values carry addresses and numbers (STYLE.md, PII).
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

impl Headers {
    /// Number of header fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn view(&self, e: &Entry) -> Header<'_> {
        let line_start = e.name_span.start as usize;
        Header {
            name: e.name,
            raw_name: self.buf.get(e.name_span.range()).unwrap_or_default(),
            value: self.buf.get(e.value.range()).unwrap_or_default(),
            line: self
                .buf
                .get(line_start..e.line_end as usize)
                .unwrap_or_default(),
        }
    }

    /// The field at `index` in wire order.
    pub fn get(&self, index: usize) -> Option<Header<'_>> {
        self.entries.get(index).map(|e| self.view(e))
    }

    /// All fields in wire order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.entries.iter().map(|e| self.view(e))
    }

    /// All fields with the given (known) name, in wire order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = Header<'_>> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.name == name)
            .map(|e| self.view(e))
    }

    /// Indices of the fields with the given (known) name.
    pub fn positions(&self, name: HeaderName) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.name == name)
            .map(|(i, _)| i)
    }

    /// All fields whose raw name equals `name` case-insensitively (for extension headers).
    pub fn all_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Header<'s>> + 's {
        self.iter().filter(move |h| h.is_named(name))
    }

    /// How many fields have this name.
    pub fn count(&self, name: HeaderName) -> usize {
        self.entries.iter().filter(|e| e.name == name).count()
    }

    /// The first field with this name.
    pub fn first(&self, name: HeaderName) -> Option<Header<'_>> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| self.view(e))
    }

    fn first_str(&self, name: HeaderName) -> Result<Option<&str>, HeaderError> {
        match self.first(name) {
            None => Ok(None),
            Some(h) => h.value_str().map(Some).ok_or(HeaderError::NotUtf8),
        }
    }

    fn required_str(&self, name: HeaderName) -> Result<&str, HeaderError> {
        self.first_str(name)?.ok_or(HeaderError::Absent)
    }

    /// The comma-separated values of every field with this name, in order (RFC 3261 §7.3.1:
    /// repeated fields and comma lists are equivalent). Commas inside quoted strings and
    /// `<...>` do not split. An empty field yields nothing; an empty element between commas
    /// yields `""` so that the typed parsers can reject it.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.all(name).flat_map(|h| {
            let (s, err) = match h.value_str() {
                Some(s) => (s, None),
                None => ("", Some(Err(HeaderError::NotUtf8))),
            };
            err.into_iter().chain(split_commas(s).map(Ok))
        })
    }

    /// All Via values, top first.
    pub fn via(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> + '_ {
        self.values(HeaderName::Via).map(|v| v.and_then(Via::parse))
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        self.via().next().unwrap_or(Err(HeaderError::Absent))
    }

    /// The topmost Via value's sent-protocol and sent-by, its parameters not decoded (left
    /// empty). Cheaper than [`Headers::top_via`] where only the sent-by is needed.
    pub fn top_sent_by(&self) -> Result<Via<'_>, HeaderError> {
        let top = self
            .values(HeaderName::Via)
            .next()
            .unwrap_or(Err(HeaderError::Absent))?;
        Via::parse_sent_by(&mut scan::Cursor::new(top))
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse(self.required_str(HeaderName::From)?)
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse(self.required_str(HeaderName::To)?)
    }

    /// Call-ID: `word [ "@" word ]` (RFC 3261 §25.1).
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        check_call_id(self.required_str(HeaderName::CallId)?)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.required_str(HeaderName::CSeq)?)
    }

    /// All Contact values (`*` or addresses).
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, HeaderError>> + '_ {
        self.values(HeaderName::Contact)
            .map(|v| v.and_then(Contact::parse))
    }

    /// All Route values, in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.values(HeaderName::Route)
            .map(|v| v.and_then(NameAddr::parse))
    }

    /// All Record-Route values, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.values(HeaderName::RecordRoute)
            .map(|v| v.and_then(NameAddr::parse))
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, HeaderError> {
        self.first_str(name)?.map(values::parse_number).transpose()
    }

    /// Max-Forwards (0–255, RFC 3261 §20.22).
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.number(HeaderName::MaxForwards)?
            .map(|n| u8::try_from(n).map_err(|_| HeaderError::NumberOverflow))
            .transpose()
    }

    /// Content-Length.
    pub fn content_length(&self) -> Result<Option<u32>, HeaderError> {
        self.number(HeaderName::ContentLength)
    }

    /// Content-Type.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, HeaderError> {
        self.first_str(HeaderName::ContentType)?
            .map(MediaType::parse)
            .transpose()
    }

    fn tokens(&self, name: HeaderName) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.values(name).map(|v| {
            v.and_then(|t| {
                if scan::is_token(t) {
                    Ok(t)
                } else {
                    Err(HeaderError::ExpectedToken)
                }
            })
        })
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.tokens(HeaderName::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.tokens(HeaderName::ProxyRequire)
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.tokens(HeaderName::Supported)
    }

    /// Unsupported option tags.
    pub fn unsupported(&self) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.tokens(HeaderName::Unsupported)
    }

    /// Allow: method tokens.
    pub fn allow(&self) -> impl Iterator<Item = Result<&str, HeaderError>> + '_ {
        self.tokens(HeaderName::Allow)
    }

    /// RSeq (RFC 3262 §7.1).
    pub fn rseq(&self) -> Result<Option<u32>, HeaderError> {
        self.number(HeaderName::RSeq)
    }

    /// RAck (RFC 3262 §7.2).
    pub fn rack(&self) -> Result<Option<RAck>, HeaderError> {
        self.first_str(HeaderName::RAck)?
            .map(RAck::parse)
            .transpose()
    }

    /// Expires (delta-seconds).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.number(HeaderName::Expires)
    }

    /// Min-Expires.
    pub fn min_expires(&self) -> Result<Option<u32>, HeaderError> {
        self.number(HeaderName::MinExpires)
    }

    /// Min-SE (RFC 4028 §5); its parameters are ignored.
    pub fn min_se(&self) -> Result<Option<u32>, HeaderError> {
        self.first_str(HeaderName::MinSe)?
            .map(|v| SessionExpires::parse(v).map(|s| s.seconds))
            .transpose()
    }

    /// Session-Expires (RFC 4028 §4).
    pub fn session_expires(&self) -> Result<Option<SessionExpires<'_>>, HeaderError> {
        self.first_str(HeaderName::SessionExpires)?
            .map(SessionExpires::parse)
            .transpose()
    }

    /// Retry-After.
    pub fn retry_after(&self) -> Result<Option<RetryAfter<'_>>, HeaderError> {
        self.first_str(HeaderName::RetryAfter)?
            .map(RetryAfter::parse)
            .transpose()
    }

    fn auths(&self, name: HeaderName) -> impl Iterator<Item = Result<Auth<'_>, HeaderError>> + '_ {
        self.all(name).map(|h| {
            h.value_str()
                .ok_or(HeaderError::NotUtf8)
                .and_then(Auth::parse)
        })
    }

    /// Authorization credentials, one per field.
    pub fn authorization(&self) -> impl Iterator<Item = Result<Auth<'_>, HeaderError>> + '_ {
        self.auths(HeaderName::Authorization)
    }

    /// Proxy-Authorization credentials.
    pub fn proxy_authorization(&self) -> impl Iterator<Item = Result<Auth<'_>, HeaderError>> + '_ {
        self.auths(HeaderName::ProxyAuthorization)
    }

    /// WWW-Authenticate challenges.
    pub fn www_authenticate(&self) -> impl Iterator<Item = Result<Auth<'_>, HeaderError>> + '_ {
        self.auths(HeaderName::WwwAuthenticate)
    }

    /// Proxy-Authenticate challenges.
    pub fn proxy_authenticate(&self) -> impl Iterator<Item = Result<Auth<'_>, HeaderError>> + '_ {
        self.auths(HeaderName::ProxyAuthenticate)
    }

    /// User-Agent text.
    pub fn user_agent(&self) -> Result<Option<&str>, HeaderError> {
        self.first_str(HeaderName::UserAgent)
    }

    /// Server text.
    pub fn server(&self) -> Result<Option<&str>, HeaderError> {
        self.first_str(HeaderName::Server)
    }

    /// Reason values (RFC 3326).
    pub fn reasons(&self) -> impl Iterator<Item = Result<Reason<'_>, HeaderError>> + '_ {
        self.values(HeaderName::Reason)
            .map(|v| v.and_then(Reason::parse))
    }
}

/// Checks `word [ "@" word ]`.
pub(crate) fn check_call_id(v: &str) -> Result<&str, HeaderError> {
    let b = v.as_bytes();
    let word = |w: &[u8]| !w.is_empty() && w.iter().all(|c| scan::is(*c, scan::WORD));
    let ok = match memchr::memchr(b'@', b) {
        Some(i) => word(&b[..i]) && word(&b[i + 1..]),
        None => word(b),
    };
    if ok {
        Ok(v)
    } else {
        Err(HeaderError::BadCallId)
    }
}

/// Splits a header value on top-level commas, trimming LWS around each element.
pub(crate) fn split_commas(s: &str) -> impl Iterator<Item = &str> + '_ {
    let bytes = s.as_bytes();
    let all_blank = s.bytes().all(scan::is_lws);
    let mut pos = if all_blank { bytes.len() + 1 } else { 0 };
    // Most values hold one element: without a comma there is nothing to split, and the
    // quote/bracket state machine below need not run.
    let single = memchr::memchr(b',', bytes).is_none();
    std::iter::from_fn(move || {
        if pos > bytes.len() {
            return None;
        }
        let start = pos;
        if single {
            pos = bytes.len() + 1;
            return Some(scan::trim_lws(s));
        }
        let mut i = pos;
        let mut in_quote = false;
        let mut in_angle = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(bytes.len());
        pos = end + 1;
        Some(scan::trim_lws(s.get(start..end).unwrap_or("")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_splitting() {
        let v: Vec<_> = split_commas("a, \"x,y\" <sip:a,b@c>;p=1 ,\r\n c").collect();
        assert_eq!(v, ["a", "\"x,y\" <sip:a,b@c>;p=1", "c"]);
        let v: Vec<_> = split_commas("SIP/2.0/UDP 192.0.2.15;;,;,,").collect();
        assert_eq!(v, ["SIP/2.0/UDP 192.0.2.15;;", ";", "", ""]);
        assert_eq!(split_commas("  ").count(), 0);
        assert_eq!(split_commas("\"a\\\",b\"").count(), 1);
    }
}
