//! Authorization, Proxy-Authorization, WWW-Authenticate and Proxy-Authenticate
//! (RFC 3261 §20.7, §20.27, §20.28, §20.44, §25.1; RFC 7616 for SHA-256 digest).

use super::scan::{self, Cursor};
use super::value_error::HeaderError;

/// A challenge or credentials: `auth-scheme LWS auth-param *(COMMA auth-param)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// The scheme, e.g. `Digest`.
    pub scheme: &'a str,
    /// The auth-params as on the wire.
    pub params: &'a str,
}

impl<'a> Auth<'a> {
    /// Parses one header value (these headers are not comma lists: commas separate params).
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let scheme = c.token()?;
        c.skip_lws();
        let start = c.pos();
        let mut first = true;
        while !c.at_end() {
            if !first {
                c.skip_lws();
                c.expect(b',')?;
                c.skip_lws();
            }
            first = false;
            c.token()?;
            c.skip_lws();
            c.expect(b'=')?;
            c.skip_lws();
            if c.peek() == Some(b'"') {
                c.quoted()?;
            } else {
                // token, or token68-style values such as base64 padding.
                let v = c.take_while(|b| scan::is(b, scan::TOKEN) || b == b'/' || b == b'=');
                if v.is_empty() {
                    return Err(HeaderError::BadParam);
                }
            }
            c.skip_lws();
        }
        Ok(Self {
            scheme,
            params: scan::trim_lws(c.since(start)),
        })
    }

    /// Iterates `(name, value)` pairs; quoted values keep their quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut c = Cursor::new(self.params);
        std::iter::from_fn(move || {
            c.skip_lws();
            c.eat(b',');
            c.skip_lws();
            let name = c.token().ok()?;
            c.skip_lws();
            c.eat(b'=');
            c.skip_lws();
            let value = if c.peek() == Some(b'"') {
                c.quoted().ok()?
            } else {
                c.take_while(|b| scan::is(b, scan::TOKEN) || b == b'/' || b == b'=')
            };
            Some((name, value))
        })
    }

    /// The value of a parameter (case-insensitive name) with quotes removed but escapes kept;
    /// use [`unquote`](super::unquote) on the raw value when escapes matter.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let a = Auth::parse("Digest username=\"user\", realm=\"example.com\",\r\n nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", opaque=\"\",\r\n uri=\"sip:example.com\", response=\"dfe56131d1958046689d83306477ecc\", algorithm=MD5")
            .expect("valid");
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.param("username"), Some("user"));
        assert_eq!(a.param("OPAQUE"), Some(""));
        assert_eq!(a.param("algorithm"), Some("MD5"));
        assert_eq!(a.iter().count(), 7);
    }

    #[test]
    fn malformed() {
        assert!(Auth::parse("").is_err());
        assert!(Auth::parse("Digest realm=\"x").is_err());
        assert!(Auth::parse("Digest realm").is_err());
        assert!(Auth::parse("Digest a=b,,c=d").is_err());
    }
}
