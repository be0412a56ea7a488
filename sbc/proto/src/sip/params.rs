//! `;name[=value]` parameter lists, for URIs (RFC 3261 §19.1.1 uri-parameters) and headers
//! (generic-param, RFC 3261 §25.1). Parameters are kept as the raw text and iterated on demand.

use super::scan::{self, Cursor};
use super::value_error::HeaderError;

/// A parameter list as on the wire, starting at its first `;` (or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// The raw text, starting at the first `;`.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Wraps text that is known to be a parameter list (it has been parsed before).
    pub(crate) fn from_raw(raw: &'a str) -> Self {
        Self { raw }
    }

    /// Iterates `(name, value)` pairs; a value-less parameter has `None`. Quoted values keep
    /// their quotes.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            c: Cursor::new(self.raw),
        }
    }

    /// The value of the first parameter named `name` (case-insensitive, RFC 3261 §7.3.1):
    /// `Some(None)` when it is present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether a parameter named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Parses header parameters at the cursor: `*( SEMI generic-param )`, with LWS allowed
    /// around `;` and `=` (RFC 3261 §25.1 SEMI and EQUAL).
    pub(crate) fn parse_header(c: &mut Cursor<'a>) -> Result<Self, HeaderError> {
        let mut start = None;
        let mut end = c.pos();
        loop {
            let before = c.pos();
            c.skip_lws();
            if !c.eat(b';') {
                c.reset(before);
                break;
            }
            start.get_or_insert(c.pos() - 1);
            c.skip_lws();
            c.token().map_err(|_| HeaderError::BadParam)?;
            let after_name = c.pos();
            c.skip_lws();
            if c.eat(b'=') {
                c.skip_lws();
                if c.peek() == Some(b'"') {
                    c.quoted()?;
                } else {
                    // gen-value = token / host / quoted-string; host adds `:`, `[`, `]`.
                    let v = c.take_while(|b| scan::is(b, scan::TOKEN) || b"[]:".contains(&b));
                    if v.is_empty() {
                        return Err(HeaderError::BadParam);
                    }
                }
            } else {
                c.reset(after_name);
            }
            end = c.pos();
        }
        let raw = match start {
            Some(s) => c_slice(c, s, end),
            None => "",
        };
        Ok(Self { raw })
    }
}

fn c_slice<'a>(c: &Cursor<'a>, from: usize, to: usize) -> &'a str {
    let mut tmp = c.clone();
    tmp.reset(to);
    tmp.since(from)
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = ParamIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`Params`] list.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    c: Cursor<'a>,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let c = &mut self.c;
        loop {
            c.skip_lws();
            if !c.eat(b';') {
                return None;
            }
            c.skip_lws();
            // URI parameters may contain escapes and paramchars, header ones are tokens: take
            // the union and stop at the structural characters.
            let name = c.take_while(|b| !matches!(b, b'=' | b';' | b'"') && !scan::is_lws(b));
            c.skip_lws();
            let value = if c.eat(b'=') {
                c.skip_lws();
                if c.peek() == Some(b'"') {
                    c.quoted().ok()
                } else {
                    Some(c.take_while(|b| b != b';' && !scan::is_lws(b)))
                }
            } else {
                None
            };
            if name.is_empty() {
                // Only reachable for text that was not validated; skip rather than loop.
                if c.at_end() {
                    return None;
                }
                continue;
            }
            return Some((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Result<(Params<'_>, &str), HeaderError> {
        let mut c = Cursor::new(s);
        let p = Params::parse_header(&mut c)?;
        Ok((p, c.rest()))
    }

    #[test]
    fn header_params_with_lws_and_quotes() {
        let (p, rest) = header(" ;   tag    = 1918181833n ; q=\"a;b\";lr").expect("valid");
        assert_eq!(rest, "");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            [
                ("tag", Some("1918181833n")),
                ("q", Some("\"a;b\"")),
                ("lr", None)
            ]
        );
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("x"), None);
    }

    #[test]
    fn folded_value_and_trailing_text() {
        let (p, rest) = header("; branch=\r\n z9hG4bK30239 , next").expect("valid");
        assert_eq!(p.get("branch"), Some(Some("z9hG4bK30239")));
        assert_eq!(rest, " , next");
    }

    #[test]
    fn empty_params_are_errors() {
        assert_eq!(header(";;").map(|_| ()), Err(HeaderError::BadParam));
        assert_eq!(header(";a=").map(|_| ()), Err(HeaderError::BadParam));
        assert_eq!(
            header(";a=\"x").map(|_| ()),
            Err(HeaderError::UnterminatedQuote)
        );
        assert!(header("").expect("empty list").0.is_empty());
    }
}
