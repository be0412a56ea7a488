//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), borrowed from the message buffer,
//! with the comparison rules of RFC 3261 §19.1.4.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::params::Params;
use super::scan::{self, Cursor};
use super::value_error::UriError;

/// A URI as found in a Request-URI or a name-addr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966)
    Tel(TelUri<'a>),
    /// Any other absoluteURI, kept opaque (RFC 4475 §3.3.4).
    Other(OtherUri<'a>),
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// Whether the scheme is `sips`.
    pub secure: bool,
    /// The user part, still %-escaped.
    pub user: Option<&'a str>,
    /// The password, still %-escaped.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if explicit.
    pub port: Option<u16>,
    /// The URI parameters.
    pub params: Params<'a>,
    /// The headers component after `?`, still escaped.
    pub headers: Option<&'a str>,
    /// The whole URI as on the wire.
    pub raw: &'a str,
}

/// A `tel:` URI (RFC 3966).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number, global (`+…`) or local, with visual separators as received.
    pub number: &'a str,
    /// The parameters (e.g. `phone-context`).
    pub params: Params<'a>,
    /// The whole URI as on the wire.
    pub raw: &'a str,
}

/// An absoluteURI of another scheme, kept opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherUri<'a> {
    /// The scheme, as received.
    pub scheme: &'a str,
    /// Everything after the colon.
    pub rest: &'a str,
    /// The whole URI as on the wire.
    pub raw: &'a str,
}

/// A host: a domain name or an IP address literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A host name, as received (compare case-insensitively).
    Domain(&'a str),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (written in brackets on the wire).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl Host<'_> {
    /// Host equality of RFC 3261 §19.1.4: case-insensitive names, addresses by value.
    pub fn matches(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Self::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Self::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Self::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

impl<'a> Host<'a> {
    /// Parses `host` = hostname / IPv4address / IPv6reference at the cursor.
    pub(crate) fn parse(c: &mut Cursor<'a>) -> Result<Self, UriError> {
        if c.eat(b'[') {
            let inner = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            c.expect(b']').map_err(|_| UriError::BadHost)?;
            return inner.parse().map(Host::Ipv6).map_err(|_| UriError::BadHost);
        }
        // One pass finds the end of the host, whether it is all digits and dots (IPv4), and
        // checks hostname = *( domainlabel "." ) toplabel [ "." ]: labels are non-empty, do
        // not start or end with '-', and the top label starts with a letter.
        let rest = c.rest();
        let b = rest.as_bytes();
        let mut len = 0;
        // The classes seen (a table lookup per byte: hosts are on every Via, Contact, From,
        // To and Request-URI).
        let mut seen = 0u8;
        let mut bad_label = false;
        let mut label_start = 0;
        // First byte of the label before the last dot (the top label if a dot ends the name).
        let mut prev_label_first = 0u8;
        while let Some(&ch) = b.get(len) {
            let class = HOST_CLASS[usize::from(ch)];
            if class == 0 {
                break;
            }
            if class == HOST_DOT {
                bad_label |= len == label_start || b[len - 1] == b'-';
                prev_label_first = b[label_start];
                label_start = len + 1;
            } else if class == HOST_DASH {
                bad_label |= len == label_start;
            }
            seen |= class;
            len += 1;
        }
        let numeric = seen & (HOST_ALPHA | HOST_DASH) == 0;
        // Every byte counted is ASCII, so `len` is a character boundary.
        let name = rest.get(..len).unwrap_or_default();
        c.reset(c.pos() + len);
        if name.is_empty() {
            return Err(UriError::BadHost);
        }
        if numeric {
            return parse_ipv4(name.as_bytes())
                .map(Host::Ipv4)
                .ok_or(UriError::BadHost);
        }
        let top_first = if label_start < len {
            bad_label |= b[len - 1] == b'-';
            b[label_start]
        } else {
            prev_label_first
        };
        if bad_label || !top_first.is_ascii_alphabetic() {
            return Err(UriError::BadHost);
        }
        Ok(Host::Domain(name))
    }
}

/// Host byte classes: digit, letter, `-`, `.`; 0 for a byte that ends the host.
const HOST_DIGIT: u8 = 1;
const HOST_ALPHA: u8 = 2;
const HOST_DASH: u8 = 4;
const HOST_DOT: u8 = 8;

static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            HOST_DIGIT
        } else if b.is_ascii_alphabetic() {
            HOST_ALPHA
        } else if b == b'-' {
            HOST_DASH
        } else if b == b'.' {
            HOST_DOT
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Parses a dotted-quad IPv4 address with the rules of `Ipv4Addr::from_str` (four decimal
/// octets of one to three digits, at most 255, no leading zero), without its generic parser
/// machinery: hosts are on every Via, Contact and Route, so this is on the per-message path.
fn parse_ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    // One pass, no iterator adapters: this runs for every host of every message.
    let mut octets = [0u8; 4];
    let mut k = 0;
    let mut n = 0u16;
    let mut digits = 0;
    for &c in b {
        if c == b'.' {
            if digits == 0 || k == 3 {
                return None;
            }
            octets[k] = u8::try_from(n).ok()?;
            k += 1;
            n = 0;
            digits = 0;
        } else if c.is_ascii_digit() {
            // At most three digits, and no leading zero ("0" alone is fine).
            if digits == 3 || (digits == 1 && n == 0) {
                return None;
            }
            n = n * 10 + u16::from(c - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    octets[3] = u8::try_from(n).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

/// Parses `[":" port]` after a host.
pub(crate) fn parse_port(c: &mut Cursor<'_>) -> Result<Option<u16>, UriError> {
    if !c.eat(b':') {
        return Ok(None);
    }
    let digits = c.take_while(|b| b.is_ascii_digit());
    if digits.is_empty() || digits.len() > 5 {
        return Err(UriError::BadPort);
    }
    // At most five digits: no overflow in u32, and above u16::MAX is an error as `parse` says.
    let n = digits
        .bytes()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(n).map(Some).map_err(|_| UriError::BadPort)
}

impl<'a> Uri<'a> {
    /// Parses a complete URI; the whole of `s` must be the URI.
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        let colon = memchr::memchr(b':', s.as_bytes()).ok_or(UriError::BadScheme)?;
        let scheme = s.get(..colon).unwrap_or_default();
        let rest = s.get(colon + 1..).unwrap_or_default();
        if !is_scheme(scheme) {
            return Err(UriError::BadScheme);
        }
        // The SIP path checks every component against its character class; the others are
        // checked here for whitespace and control characters.
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(false, rest, s).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(true, rest, s).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_rest(rest, s).map(Uri::Tel)
        } else if rest.is_empty()
            || rest
                .bytes()
                .any(|b| !b.is_ascii() || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            Err(UriError::BadChar)
        } else {
            Ok(Uri::Other(OtherUri {
                scheme,
                rest,
                raw: s,
            }))
        }
    }

    /// The URI as on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Self::Sip(u) => u.raw,
            Self::Tel(u) => u.raw,
            Self::Other(u) => u.raw,
        }
    }

    /// URI equivalence (RFC 3261 §19.1.4 for SIP/SIPS, RFC 3966 §4 for tel). URIs of other
    /// schemes compare equal only when byte-identical after lower-casing the scheme.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self, other) {
            (Self::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Self::Tel(a), Uri::Tel(b)) => a.equivalent(b),
            (Self::Other(a), Uri::Other(b)) => {
                a.scheme.eq_ignore_ascii_case(b.scheme) && a.rest == b.rest
            }
            _ => false,
        }
    }
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|f| f.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

impl<'a> SipUri<'a> {
    fn parse_rest(secure: bool, rest: &'a str, raw: &'a str) -> Result<Self, UriError> {
        // '@' may only appear (unescaped) as the userinfo delimiter: user, password, params
        // and headers all require it to be escaped (RFC 3261 §25.1).
        let (user, password, hostpart) = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match memchr::memchr(b':', userinfo.as_bytes()) {
                    Some(i) => (&userinfo[..i], Some(&userinfo[i + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !scan::is_escaped_run(user, scan::USER) {
                    return Err(UriError::BadUser);
                }
                if let Some(p) = password
                    && !scan::is_escaped_run(p, scan::PASSWORD)
                {
                    return Err(UriError::BadPassword);
                }
                (Some(user), password, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let mut c = Cursor::new(hostpart);
        let host = Host::parse(&mut c)?;
        let port = parse_port(&mut c)?;
        let params_start = c.pos();
        while c.eat(b';') {
            let name = c.take_while(|b| scan::is(b, scan::PARAM) || b == b'%');
            if name.is_empty() || !scan::is_escaped_run(name, scan::PARAM) {
                return Err(UriError::BadParam);
            }
            if c.eat(b'=') {
                let value = c.take_while(|b| scan::is(b, scan::PARAM) || b == b'%');
                if value.is_empty() || !scan::is_escaped_run(value, scan::PARAM) {
                    return Err(UriError::BadParam);
                }
            }
        }
        let params = Params::from_raw(c.since(params_start));
        let headers = if c.eat(b'?') {
            let h = c.rest();
            let ok = !h.is_empty()
                && h.split('&').all(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, "\u{0}"));
                    !k.is_empty()
                        && scan::is_escaped_run(k, scan::HNV)
                        && scan::is_escaped_run(v, scan::HNV)
                });
            if !ok {
                return Err(UriError::BadHeaders);
            }
            Some(h)
        } else {
            if !c.at_end() {
                return Err(UriError::BadChar);
            }
            None
        };
        Ok(Self {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
            raw,
        })
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// Whether the `lr` parameter is present (RFC 3261 §19.1.1 loose routing).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The `user` parameter (`phone`, `ip`, …).
    pub fn user_param(&self) -> Option<&'a str> {
        self.params.get("user").flatten()
    }

    /// SIP URI equivalence, RFC 3261 §19.1.4.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure || self.port != other.port {
            return false;
        }
        // Userinfo is case-sensitive, compared after unescaping.
        let opt = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => escaped_eq(a, b, false),
            _ => false,
        };
        if !opt(self.user, other.user) || !opt(self.password, other.password) {
            return false;
        }
        if !self.host.matches(&other.host) {
            return false;
        }
        // A parameter in both must match; user, ttl, method, maddr and transport must also
        // not appear in only one of them. Other parameters in only one are ignored.
        for (i, (name, value)) in self.params.iter().enumerate() {
            // Only the first occurrence of a repeated parameter counts (as for `find_param`).
            if self
                .params
                .iter()
                .take(i)
                .any(|(n, _)| escaped_eq(n, name, true))
            {
                continue;
            }
            match find_param(other.params, name) {
                Some(v) if !opt_escaped_eq(value, v) => return false,
                None if is_strict_param(name) => return false,
                Some(_) | None => {}
            }
        }
        for (name, _) in other.params.iter() {
            if is_strict_param(name) && find_param(self.params, name).is_none() {
                return false;
            }
        }
        // Headers are never ignored: each must be in both, with equal values.
        let ha = self.headers.unwrap_or("");
        let hb = other.headers.unwrap_or("");
        let count = |h: &str| h.split('&').filter(|s| !s.is_empty()).count();
        count(ha) == count(hb)
            && ha.split('&').filter(|s| !s.is_empty()).all(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                hb.split('&').any(|kv2| {
                    let (k2, v2) = kv2.split_once('=').unwrap_or((kv2, ""));
                    escaped_eq(k, k2, true) && escaped_eq(v, v2, false)
                })
            })
    }
}

fn is_strict_param(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|p| escaped_eq(name, p, true))
}

fn find_param<'b>(params: Params<'b>, name: &str) -> Option<Option<&'b str>> {
    params
        .iter()
        .find(|(n, _)| escaped_eq(n, name, true))
        .map(|(_, v)| v)
}

fn opt_escaped_eq(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => escaped_eq(a, b, true),
        _ => false,
    }
}

/// Iterates the bytes of `s` with `%HH` escapes decoded.
fn unescaped(s: &str) -> impl Iterator<Item = u8> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'%' {
            let hex = |x: u8| char::from(x).to_digit(16);
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&x| hex(x)),
                b.get(i + 2).and_then(|&x| hex(x)),
            ) {
                i += 3;
                // Two hex digits always fit in a byte.
                return Some(u8::try_from(h * 16 + l).unwrap_or(0));
            }
        }
        i += 1;
        Some(c)
    })
}

/// Compares two escaped strings after unescaping, optionally ignoring ASCII case.
fn escaped_eq(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        unescaped(a)
            .map(|c| c.to_ascii_lowercase())
            .eq(unescaped(b).map(|c| c.to_ascii_lowercase()))
    } else {
        unescaped(a).eq(unescaped(b))
    }
}

/// Decodes `%HH` escapes. Invalid escapes are kept as is; the result may not be UTF-8 (e.g.
/// `%00`, RFC 4475 §3.1.1.4), hence bytes.
pub fn unescape(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if s.contains('%') {
        std::borrow::Cow::Owned(unescaped(s).collect())
    } else {
        std::borrow::Cow::Borrowed(s.as_bytes())
    }
}

impl<'a> TelUri<'a> {
    fn parse_rest(rest: &'a str, raw: &'a str) -> Result<Self, UriError> {
        let (number, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // global-number-digits = "+" *phonedigit DIGIT *phonedigit;
        // local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex.
        let visual = |b: u8| matches!(b, b'-' | b'.' | b'(' | b')');
        let ok = if let Some(g) = number.strip_prefix('+') {
            g.bytes().all(|b| b.is_ascii_digit() || visual(b))
                && g.bytes().any(|b| b.is_ascii_digit())
        } else {
            number
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || visual(b) || b == b'*' || b == b'#')
                && number
                    .bytes()
                    .any(|b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
        };
        if !ok {
            return Err(UriError::BadNumber);
        }
        let mut c = Cursor::new(params);
        while c.eat(b';') {
            let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-');
            if name.is_empty() {
                return Err(UriError::BadParam);
            }
            if c.eat(b'=') {
                let v = c.take_while(|b| scan::is(b, scan::PARAM) || b == b'%');
                if v.is_empty() {
                    return Err(UriError::BadParam);
                }
            }
        }
        if !c.at_end() {
            return Err(UriError::BadParam);
        }
        Ok(Self {
            number,
            params: Params::from_raw(params),
            raw,
        })
    }

    /// Whether the number is global (`+` E.164).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// The `phone-context` parameter of a local number.
    pub fn phone_context(&self) -> Option<&'a str> {
        self.params.get("phone-context").flatten()
    }

    /// tel URI equivalence (RFC 3966 §4): numbers equal without visual separators (hex digits
    /// case-insensitive), and the same parameters with case-insensitively equal values.
    pub fn equivalent(&self, other: &TelUri<'_>) -> bool {
        let digits = |n: &'a str| {
            n.bytes()
                .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')'))
                .map(|b| b.to_ascii_lowercase())
        };
        let digits_b = other
            .number
            .bytes()
            .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')'))
            .map(|b| b.to_ascii_lowercase());
        if !digits(self.number).eq(digits_b) {
            return false;
        }
        let n = |p: Params<'_>| p.iter().count();
        n(self.params) == n(other.params)
            && self.params.iter().all(|(k, v)| {
                other
                    .params
                    .iter()
                    .any(|(k2, v2)| k.eq_ignore_ascii_case(k2) && opt_escaped_eq(v, v2))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parts() {
        let u =
            sip("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&priority=urgent");
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Ipv6("2001:db8::1".parse().expect("literal")));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=x&priority=urgent"));
        let v4 = sip("sip:192.0.2.4");
        assert_eq!(v4.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(v4.user, None);
    }

    #[test]
    fn torture_user_parts() {
        // RFC 4475 §3.1.1.2 and §3.1.1.9: user parts with many legal characters.
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(
            unescape(u.user.unwrap_or_default()).as_ref(),
            b"sips:user@example.com"
        );
        assert_eq!(unescape("null-%00-null").as_ref(), b"null-\0-null");
    }

    #[test]
    fn errors() {
        let cases = [
            ("sip:", UriError::BadHost),
            ("sip:@host", UriError::BadUser),
            ("sip:a b@host", UriError::BadUser),
            ("sip:host x", UriError::BadChar),
            ("sip:host:99999", UriError::BadPort),
            ("sip:host;;", UriError::BadParam),
            ("sip:host?", UriError::BadHeaders),
            ("sip:[::1", UriError::BadHost),
            ("sip:1.2.3.999", UriError::BadHost),
            ("sip:host>", UriError::BadChar),
            ("<sip:host>", UriError::BadScheme),
            ("tel:", UriError::BadNumber),
            ("tel:+1-x", UriError::BadNumber),
            ("nocolon", UriError::BadScheme),
        ];
        for (s, e) in cases {
            assert_eq!(Uri::parse(s).err(), Some(e), "{s}");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        let Ok(Uri::Other(o)) = Uri::parse("soap.beep://192.0.2.103:3002") else {
            panic!("opaque")
        };
        assert_eq!((o.scheme, o.rest), ("soap.beep", "//192.0.2.103:3002"));
    }

    #[test]
    fn ipv4_agrees_with_std() {
        let cases = [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1234.1.1.1",
            "",
            "1.2.3.04",
            "10.0.0.255",
            "999.999.999.999",
            "0.00.0.0",
            "1.2.3.4 ",
        ];
        for s in cases {
            assert_eq!(
                parse_ipv4(s.as_bytes()),
                s.parse::<std::net::Ipv4Addr>().ok(),
                "{s:?}"
            );
        }
        // Every dotted string of up to four short numbers, against the standard parser.
        let parts = ["0", "00", "1", "9", "10", "099", "255", "256", "300", ""];
        for a in parts {
            for b in parts {
                for c in parts {
                    for d in parts {
                        let s = format!("{a}.{b}.{c}.{d}");
                        assert_eq!(parse_ipv4(s.as_bytes()), s.parse().ok(), "{s:?}");
                    }
                }
            }
        }
    }

    /// The two-pass hostname check the one-pass scanner replaced, kept as the reference.
    fn reference_host(s: &str) -> Result<(Host<'_>, usize), UriError> {
        let len = s
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
            .count();
        let name = &s[..len];
        if name.is_empty() {
            return Err(UriError::BadHost);
        }
        if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return name
                .parse()
                .map(|a| (Host::Ipv4(a), len))
                .map_err(|_| UriError::BadHost);
        }
        let b = name.as_bytes();
        let end = if b.last() == Some(&b'.') {
            b.len() - 1
        } else {
            b.len()
        };
        let mut label_start = 0;
        for i in 0..=end {
            if i == end || b[i] == b'.' {
                if !(i > label_start && b[label_start] != b'-' && b[i - 1] != b'-') {
                    return Err(UriError::BadHost);
                }
                if i == end && !b[label_start].is_ascii_alphabetic() {
                    return Err(UriError::BadHost);
                }
                label_start = i + 1;
            }
        }
        Ok((Host::Domain(name), len))
    }

    #[test]
    fn host_scanner_agrees_with_reference() {
        let alphabet = ["a", "1", "-", ".", ":", "Z", "0"];
        let mut cases = vec![String::new()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for c in &cases {
                for a in alphabet {
                    next.push(format!("{c}{a}"));
                }
            }
            cases.extend(next);
            cases.dedup();
        }
        cases.extend([
            "192.0.2.1".into(),
            "10.0.0.1.".into(),
            "example.com.".into(),
        ]);
        for s in &cases {
            let mut c = Cursor::new(s);
            let got = Host::parse(&mut c).map(|h| (h, c.pos()));
            assert_eq!(got, reference_host(s), "{s:?}");
        }
    }

    #[test]
    fn tel() {
        let Ok(Uri::Tel(t)) = Uri::parse("tel:+1-201-555-0123") else {
            panic!("tel")
        };
        assert!(t.is_global());
        let Ok(Uri::Tel(l)) = Uri::parse("tel:7042;phone-context=example.com") else {
            panic!("local")
        };
        assert_eq!(l.phone_context(), Some("example.com"));
        let eq = |a: &str, b: &str| {
            Uri::parse(a)
                .ok()
                .zip(Uri::parse(b).ok())
                .is_some_and(|(a, b)| a.equivalent(&b))
        };
        assert!(eq("tel:+1-201-555-0123", "tel:+12015550123"));
        assert!(!eq("tel:+12015550123", "tel:+12015550124"));
    }

    #[test]
    fn rfc3261_19_1_4_equivalence() {
        let eq = |a: &str, b: &str| sip(a).equivalent(&sip(b));
        // Equivalent pairs from RFC 3261 §19.1.4.
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        // Non-equivalent pairs from the same section.
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(!eq("sip:alice@example.com", "sips:alice@example.com"));
    }
}
