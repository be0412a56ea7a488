//! Character classes and a small cursor for the RFC 3261 §25.1 grammar.
//!
//! Every typed view decodes from a header value that the parser has already checked to be UTF-8.
//! The cursor only ever stops on ASCII bytes, so every slice it hands out falls on a character
//! boundary; it still uses `str::get` so that a logic slip cannot turn into a panic.

use super::value_error::HeaderError;

/// `alphanum`.
pub(crate) const ALPHANUM: u8 = 1;
/// `token` characters (RFC 3261 §25.1).
pub(crate) const TOKEN: u8 = 1 << 1;
/// `unreserved` = alphanum / mark.
pub(crate) const UNRESERVED: u8 = 1 << 2;
/// `user` characters other than escapes: unreserved / user-unreserved.
pub(crate) const USER: u8 = 1 << 3;
/// `password` characters other than escapes.
pub(crate) const PASSWORD: u8 = 1 << 4;
/// `paramchar` other than escapes: param-unreserved / unreserved.
pub(crate) const PARAM: u8 = 1 << 5;
/// `hname`/`hvalue` characters other than escapes: hnv-unreserved / unreserved.
pub(crate) const HNV: u8 = 1 << 6;
/// `word` characters (Call-ID, RFC 3261 §25.1).
pub(crate) const WORD: u8 = 1 << 7;

const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mark = matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let unreserved = alnum || mark;
        let token = alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let mut v = 0;
        if alnum {
            v |= ALPHANUM;
        }
        if token {
            v |= TOKEN;
        }
        if unreserved {
            v |= UNRESERVED;
        }
        if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            v |= USER;
        }
        if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            v |= PASSWORD;
        }
        if unreserved || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            v |= PARAM;
        }
        if unreserved || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            v |= HNV;
        }
        if token
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            v |= WORD;
        }
        t[i] = v;
        i += 1;
    }
    t
}

static TABLE: [u8; 256] = build();

/// Whether `b` belongs to any of the classes in `class`.
#[inline]
pub(crate) fn is(b: u8, class: u8) -> bool {
    TABLE[usize::from(b)] & class != 0
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| is(b, TOKEN))
}

/// Whether `s` is a run of `class` characters and `%HH` escapes (RFC 3261 §25.1 `escaped`).
pub(crate) fn is_escaped_run(s: &str, class: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else if is(b[i], class) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Linear whitespace inside a header value: SP, HTAB and the CRLF of a folded line (the parser
/// only keeps a CRLF inside a value when whitespace follows it, RFC 3261 §7.3.1).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims LWS from both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// `s` without leading and trailing spaces and tabs (a header line's name or value, which
/// the line scans read without a parse).
pub(crate) fn trim_sp(s: &[u8]) -> &[u8] {
    let sp = |b: &u8| *b == b' ' || *b == b'\t';
    let from = s.iter().position(|b| !sp(b)).unwrap_or(s.len());
    let to = s.iter().rposition(|b| !sp(b)).map_or(from, |i| i + 1);
    s.get(from..to).unwrap_or_default()
}

/// One header line as the line scans (`Headline`, `Parties`, the B2BUA's sent-request scan)
/// read it, without a parse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderLine<'a> {
    /// The line without its CRLF.
    pub line: &'a [u8],
    /// Whether the next line goes on with this one (RFC 3261 §7.3.1 folding).
    pub folded: bool,
}

impl<'a> HeaderLine<'a> {
    /// Name and value around the first colon, without surrounding spaces and tabs.
    pub fn split(&self) -> Option<(&'a [u8], &'a [u8])> {
        let colon = memchr::memchr(b':', self.line)?;
        Some((
            trim_sp(self.line.get(..colon)?),
            trim_sp(self.line.get(colon + 1..)?),
        ))
    }
}

/// The header lines of a message, from after its start line up to the blank line.
/// A message cut before the blank line ends the lines early and says so
/// ([`HeaderLines::cut`]): the scans then decline.
#[derive(Debug, Clone)]
pub(crate) struct HeaderLines<'a> {
    rest: &'a [u8],
    state: LinesState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinesState {
    Open,
    Ended,
    Cut,
}

impl<'a> HeaderLines<'a> {
    /// The start line of `data` (without its CRLF) and the header lines after it; `None`
    /// when there is no CRLF at all.
    pub fn of(data: &'a [u8]) -> Option<(&'a [u8], Self)> {
        let end = find_crlf(data)?;
        let lines = Self {
            rest: data.get(end + 2..)?,
            state: LinesState::Open,
        };
        Some((data.get(..end)?, lines))
    }

    /// Whether the message ended before its blank line.
    pub fn cut(&self) -> bool {
        self.state == LinesState::Cut
    }

    /// What follows the blank line, once the lines have reached it.
    pub fn body(&self) -> Option<&'a [u8]> {
        (self.state == LinesState::Ended).then_some(self.rest)
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = HeaderLine<'a>;

    fn next(&mut self) -> Option<HeaderLine<'a>> {
        if self.state != LinesState::Open {
            return None;
        }
        let Some(end) = find_crlf(self.rest) else {
            self.state = LinesState::Cut;
            return None;
        };
        let (line, next) = (
            self.rest.get(..end).unwrap_or_default(),
            self.rest.get(end + 2..).unwrap_or_default(),
        );
        self.rest = next;
        if line.is_empty() {
            self.state = LinesState::Ended;
            return None;
        }
        Some(HeaderLine {
            line,
            folded: matches!(next.first(), Some(b' ' | b'\t')),
        })
    }
}

/// Parses a decimal number of at most `u32` range; no sign, at least one digit.
pub(crate) fn parse_u32(s: &str) -> Result<u32, HeaderError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::BadNumber);
    }
    // Leading zeros are legal (`0068` in RFC 4475 wsinv); skip them before the overflow check.
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return Err(HeaderError::NumberOverflow);
    }
    let mut v: u64 = 0;
    for b in digits.bytes() {
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).map_err(|_| HeaderError::NumberOverflow)
}

/// A forward-only cursor over a header value.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn reset(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// The text between `from` and the current position.
    pub(crate) fn since(&self, from: usize) -> &'a str {
        self.s.get(from..self.pos).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8) -> Result<(), HeaderError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(HeaderError::Expected(char::from(b)))
        }
    }

    /// Skips LWS; returns whether anything was skipped.
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        self.pos += self.run_len(is_lws);
        self.pos != start
    }

    /// Takes ASCII bytes while `f` holds. `f` must be false for non-ASCII bytes.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        self.pos += self.run_len(|b| b.is_ascii() && f(b));
        self.since(start)
    }

    /// How many bytes from the position on `f` holds for: one scan over the remaining bytes,
    /// not a bounds-checked `peek` per byte (every header value is walked this way).
    fn run_len(&self, f: impl Fn(u8) -> bool) -> usize {
        let rest = self.s.as_bytes().get(self.pos..).unwrap_or_default();
        rest.iter().position(|&b| !f(b)).unwrap_or(rest.len())
    }

    pub(crate) fn take_class(&mut self, class: u8) -> &'a str {
        self.take_while(|b| is(b, class))
    }

    /// A non-empty token.
    pub(crate) fn token(&mut self) -> Result<&'a str, HeaderError> {
        let t = self.take_class(TOKEN);
        if t.is_empty() {
            Err(HeaderError::ExpectedToken)
        } else {
            Ok(t)
        }
    }

    /// A quoted-string (RFC 3261 §25.1), returned with its quotes and escapes as on the wire.
    pub(crate) fn quoted(&mut self) -> Result<&'a str, HeaderError> {
        let start = self.pos;
        self.expect(b'"')?;
        let bytes = self.s.as_bytes();
        loop {
            match bytes.get(self.pos) {
                None => return Err(HeaderError::UnterminatedQuote),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.since(start));
                }
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                Some(b'\\') => match bytes.get(self.pos + 1) {
                    Some(&n) if n.is_ascii() && n != b'\r' && n != b'\n' => self.pos += 2,
                    _ => return Err(HeaderError::BadEscape),
                },
                Some(_) => {
                    // Step over a whole UTF-8 character so the position stays on a boundary.
                    let ch = self.rest().chars().next().map_or(1, char::len_utf8);
                    self.pos += ch;
                }
            }
        }
    }
}

/// Removes the quotes and quoted-pair escapes of a quoted-string; other text is returned as is.
pub fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return std::borrow::Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Where the first CRLF in `s` starts; a bare LF is part of its line. By the LF (`memchr`): a
/// substring searcher would be built anew for each line of a message.
pub fn find_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let lf = from + memchr::memchr(b'\n', s.get(from..)?)?;
        if lf > 0 && s.get(lf - 1) == Some(&b'\r') {
            return Some(lf - 1);
        }
        from = lf + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is(b'!', TOKEN) && is(b'%', TOKEN) && !is(b'(', TOKEN));
        assert!(is(b'(', WORD) && is(b'}', WORD) && !is(b' ', WORD));
        assert!(is(b';', USER) && !is(b'@', USER) && !is(b':', USER));
        assert!(is(b':', PARAM) && !is(b';', PARAM) && !is(b'=', PARAM));
        assert!(!is(0x80, TOKEN | WORD | USER));
    }

    #[test]
    fn escaped_runs() {
        assert!(is_escaped_run("a%20b", USER));
        assert!(!is_escaped_run("a%2", USER));
        assert!(!is_escaped_run("a%zz", USER));
        assert!(is_escaped_run("", USER));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0068"), Ok(68));
        assert_eq!(parse_u32("4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32("4294967296"), Err(HeaderError::NumberOverflow));
        assert_eq!(
            parse_u32("36893488147419103232"),
            Err(HeaderError::NumberOverflow)
        );
        assert_eq!(parse_u32("-1"), Err(HeaderError::BadNumber));
        assert_eq!(parse_u32(""), Err(HeaderError::BadNumber));
    }

    #[test]
    fn quoted_strings() {
        let mut c = Cursor::new(r#""J Rosenberg \\\"" rest"#);
        assert_eq!(c.quoted(), Ok(r#""J Rosenberg \\\"""#));
        assert_eq!(c.rest(), " rest");
        assert_eq!(
            Cursor::new("\"open").quoted(),
            Err(HeaderError::UnterminatedQuote)
        );
        assert_eq!(Cursor::new("\"é\"").quoted(), Ok("\"é\""));
        assert_eq!(unquote(r#""a\"b""#), "a\"b");
        assert_eq!(unquote("token"), "token");
    }

    #[test]
    fn lws_skipping_crosses_folds() {
        let mut c = Cursor::new(" \r\n\tx");
        assert!(c.skip_lws());
        assert_eq!(c.peek(), Some(b'x'));
    }
}
