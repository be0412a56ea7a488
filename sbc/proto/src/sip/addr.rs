//! name-addr / addr-spec values with header parameters: From, To, Contact, Route,
//! Record-Route (RFC 3261 §20.10, §20.20, §20.30, §20.34, §20.39, §25.1).

use super::params::Params;
use super::scan::{self, Cursor};
use super::uri::Uri;
use super::value_error::HeaderError;

/// A `(name-addr / addr-spec) *( SEMI param )` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as on the wire: a quoted-string with its quotes, or tokens separated
    /// by LWS. Use [`unquote`](super::unquote) for the text.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// The URI text as on the wire (without `<` `>`).
    pub uri_str: &'a str,
    /// Whether the URI was enclosed in `<` `>` (name-addr form).
    pub bracketed: bool,
    /// The header parameters after the address.
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one complete value (From, To, or one element of a list).
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        let v = Self::parse_at(&mut c)?;
        c.skip_lws();
        if !c.at_end() {
            return Err(HeaderError::Trailing);
        }
        Ok(v)
    }

    pub(crate) fn parse_at(c: &mut Cursor<'a>) -> Result<Self, HeaderError> {
        c.skip_lws();
        let mut display_name = None;
        let bracketed;
        match c.peek() {
            None => return Err(HeaderError::Empty),
            Some(b'"') => {
                display_name = Some(c.quoted()?);
                c.skip_lws();
                if c.peek() != Some(b'<') {
                    return Err(HeaderError::BadDisplayName);
                }
                bracketed = true;
            }
            Some(b'<') => bracketed = true,
            Some(_) => {
                // display-name = *(token LWS) / quoted-string. It is a display name only if a
                // `<` follows the tokens (RFC 4475 §3.1.1.6 allows no LWS before `<`);
                // otherwise this is a bare addr-spec.
                let start = c.pos();
                let mut end = start;
                loop {
                    if c.take_class(scan::TOKEN).is_empty() {
                        break;
                    }
                    end = c.pos();
                    c.skip_lws();
                }
                if c.peek() == Some(b'<') && end > start {
                    let mut tmp = c.clone();
                    tmp.reset(end);
                    display_name = Some(tmp.since(start));
                    bracketed = true;
                } else {
                    c.reset(start);
                    bracketed = false;
                }
            }
        }
        let (uri_str, uri) = if bracketed {
            c.expect(b'<')?;
            // LAQUOT/RAQUOT allow no whitespace inside the brackets (RFC 4475 §3.1.2.14).
            let u = c.take_while(|b| b != b'>' && !scan::is_lws(b) && b != b'<');
            if !c.eat(b'>') {
                return Err(HeaderError::Expected('>'));
            }
            (u, Uri::parse(u)?)
        } else {
            // A bare addr-spec ends at the first `;` (those are header parameters, RFC 3261
            // §20.10), comma or whitespace. `?` may not occur: a URI with headers must be in
            // name-addr form (RFC 4475 §3.1.2.13).
            let u = c.take_while(|b| {
                !matches!(b, b';' | b',' | b'?' | b'<' | b'>' | b'"') && !scan::is_lws(b)
            });
            if u.is_empty() {
                return Err(HeaderError::Empty);
            }
            if c.peek() == Some(b'?') {
                return Err(HeaderError::Trailing);
            }
            (u, Uri::parse(u)?)
        };
        let params = Params::parse_header(c)?;
        Ok(Self {
            display_name,
            uri,
            uri_str,
            bracketed,
            params,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }
}

/// One Contact value: `*` or an address with contact-params (RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removing all bindings, RFC 3261 §10.2.2).
    Star,
    /// An address.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        if scan::trim_lws(s) == "*" {
            return Ok(Self::Star);
        }
        NameAddr::parse(s).map(Self::Addr)
    }

    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Self::Star => None,
            Self::Addr(a) => Some(a),
        }
    }

    /// The `expires` contact parameter; `None` if absent or not a valid delta-seconds.
    pub fn expires(&self) -> Option<u32> {
        self.addr()?
            .params
            .get("expires")
            .flatten()
            .and_then(|v| scan::parse_u32(v).ok())
    }

    /// The `q` parameter in thousandths (`q=0.7` is 700); `None` if absent or invalid
    /// (qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )).
    pub fn q(&self) -> Option<u16> {
        let v = self.addr()?.params.get("q").flatten()?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut thousandths = 0u16;
        for (i, d) in frac.bytes().enumerate() {
            thousandths += u16::from(d - b'0') * [100, 10, 1][i];
        }
        match int {
            "0" => Some(thousandths),
            "1" if thousandths == 0 => Some(1000),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .expect("valid");
        assert_eq!(a.display_name, Some("\"J Rosenberg \\\\\\\"\""));
        assert_eq!(
            super::super::scan::unquote(a.display_name.unwrap_or_default()),
            "J Rosenberg \\\""
        );
        assert_eq!(a.tag(), Some("98asjd8"));
        assert!(a.bracketed);

        let b = NameAddr::parse("sip:caller@example.net;tag=134161461246").expect("valid");
        assert!(!b.bracketed);
        assert_eq!(b.uri_str, "sip:caller@example.net");
        assert_eq!(b.tag(), Some("134161461246"));

        let c = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(c.display_name, Some("caller"));

        let d = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
            .expect("valid");
        assert_eq!(d.display_name, Some("token1~` token2'+_ token3*%!.-"));

        let e = NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>")
            .expect("valid");
        assert!(e.bracketed);
    }

    #[test]
    fn invalid() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b",
            "",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contact_star_expires_q() {
        assert_eq!(Contact::parse(" * "), Ok(Contact::Star));
        let c = Contact::parse("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33").expect("valid");
        assert_eq!(c.q(), Some(330));
        let c = Contact::parse("<sip:a@b>;expires=3600;q=1.000").expect("valid");
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.q(), Some(1000));
        let c = Contact::parse("<sip:a@b>;expires=280297596632815;q=1.5").expect("valid");
        assert_eq!(c.expires(), None);
        assert_eq!(c.q(), None);
    }
}
