//! Credentials are not kept in traces.
//!
//! A digest `response=` (RFC 2617/7616) together with the nonce, realm and URI beside it is
//! enough to guess the password offline at leisure; a trace is read by whoever holds an API
//! token (the read token too) and by support staff it is mailed to. The stored copy of an
//! `Authorization` or `Proxy-Authorization` header therefore keeps every parameter (realm,
//! username, nonce, algorithm: what one needs to debug a challenge) but the response value.
//! HEP export is unchanged: the collector is the operator's own capture system.

use std::borrow::Cow;

/// What replaces a digest response value.
pub const REDACTED: &[u8] = b"\"redacted\"";

/// `raw` with the `response=` value of every `Authorization`/`Proxy-Authorization` header
/// replaced by [`REDACTED`]; borrowed unchanged when there is none (the common case).
pub fn credentials(raw: &[u8]) -> Cow<'_, [u8]> {
    if !may_hold_credentials(raw) {
        return Cow::Borrowed(raw);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut line_start = 0;
    // Line by line up to the blank line (or the end of a message cut before it).
    while line_start < raw.len() {
        let line_end =
            super::compact::find_crlf(&raw[line_start..]).map_or(raw.len(), |i| line_start + i);
        if line_end == line_start {
            break;
        }
        let line = &raw[line_start..line_end];
        if let Some(value) = credential_value(line) {
            let value_start = line_start + value;
            if let Some((from, to)) = response_span(&raw[value_start..line_end]) {
                let buf = out.get_or_insert_with(|| Vec::with_capacity(raw.len()));
                buf.extend_from_slice(&raw[copied..value_start + from]);
                buf.extend_from_slice(REDACTED);
                copied = value_start + to;
            }
        }
        line_start = line_end + 2;
    }
    match out {
        None => Cow::Borrowed(raw),
        Some(mut buf) => {
            buf.extend_from_slice(&raw[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// Whether `raw` holds "authorization" in any case anywhere, as every header line
/// [`credentials`] rewrites does. Most messages do not, and this costs one search for the
/// letter z (in SIP mostly the branch cookie `z9hG4bK`), not a walk through every line (the
/// walk was a tenth of the trace's work per call).
fn may_hold_credentials(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"authorization";
    // Where the z is in NAME.
    const Z: usize = 7;
    memchr::memchr2_iter(b'z', b'Z', raw).any(|i| {
        i.checked_sub(Z)
            .and_then(|start| raw.get(start..start + NAME.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(NAME))
    })
}

/// Offset of the value in a header line named `Authorization` or `Proxy-Authorization` (any
/// case, optional space before the colon), else `None`.
fn credential_value(line: &[u8]) -> Option<usize> {
    // Most lines are not: skip them on their first byte (the trace task redacts every
    // message it keeps).
    if !matches!(line.first(), Some(b'a' | b'A' | b'p' | b'P')) {
        return None;
    }
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    let hit = name.eq_ignore_ascii_case(b"authorization")
        || name.eq_ignore_ascii_case(b"proxy-authorization");
    hit.then_some(colon + 1)
}

/// The span (relative to `value`) of the `response` parameter's value, quotes included.
fn response_span(value: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < value.len() {
        // A parameter name starts after the scheme's space or a comma.
        let at_name = i == 0 || matches!(value[i - 1], b',' | b' ' | b'\t');
        let rest = &value[i..];
        if at_name && rest.len() > 8 && rest[..8].eq_ignore_ascii_case(b"response") {
            let mut j = i + 8;
            while value.get(j).is_some_and(|b| matches!(b, b' ' | b'\t')) {
                j += 1;
            }
            if value.get(j) == Some(&b'=') {
                j += 1;
                while value.get(j).is_some_and(|b| matches!(b, b' ' | b'\t')) {
                    j += 1;
                }
                let start = j;
                let end = if value.get(j) == Some(&b'"') {
                    memchr::memchr(b'"', &value[j + 1..]).map_or(value.len(), |k| j + 1 + k + 1)
                } else {
                    value[j..]
                        .iter()
                        .position(|b| matches!(b, b',' | b' ' | b'\t'))
                        .map_or(value.len(), |k| j + k)
                };
                return Some((start, end));
            }
        }
        // Skip quoted strings: a realm may contain "response=".
        if value[i] == b'"' {
            i = memchr::memchr(b'"', &value[i + 1..]).map_or(value.len(), |k| i + 1 + k + 1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> String {
        String::from_utf8(credentials(s.as_bytes()).into_owned()).expect("utf-8 stays utf-8")
    }

    #[test]
    fn the_response_goes_and_everything_else_stays() {
        let msg = "INVITE sip:1@c.example SIP/2.0\r\n\
                   Proxy-Authorization: Digest username=\"trunk\", realm=\"c.example\", \
                   nonce=\"abc\", uri=\"sip:1@c.example\", response=\"0123456789abcdef\", \
                   algorithm=MD5\r\n\
                   Content-Length: 0\r\n\r\n";
        let out = redact(msg);
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(
            out.contains("response=\"redacted\", algorithm=MD5\r\n"),
            "{out}"
        );
        assert!(out.contains("username=\"trunk\", realm=\"c.example\", nonce=\"abc\""));
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn any_case_unquoted_last_and_several_headers() {
        let msg = "REGISTER sip:c.example SIP/2.0\r\n\
                   authorization : Digest realm=\"x\",RESPONSE = deadbeef\r\n\
                   Authorization: Digest realm=\"y\", response=\"cafe\"\r\n\r\nbody response=1";
        let out = redact(msg);
        assert!(!out.contains("deadbeef") && !out.contains("cafe"), "{out}");
        assert!(out.contains("RESPONSE = \"redacted\"\r\n"), "{out}");
        assert!(
            out.ends_with("\r\n\r\nbody response=1"),
            "the body is not touched: {out}"
        );
    }

    #[test]
    fn a_quoted_realm_is_not_a_parameter_and_other_headers_are_kept() {
        let msg = "INVITE sip:1@c SIP/2.0\r\n\
                   WWW-Authenticate: Digest realm=\"r\", response=\"keep\"\r\n\
                   Authorization: Digest realm=\"a, response=fake\", response=\"secret\"\r\n\r\n";
        let out = redact(msg);
        assert!(
            out.contains("response=\"keep\""),
            "a challenge is not a credential"
        );
        assert!(out.contains("realm=\"a, response=fake\""), "{out}");
        assert!(!out.contains("secret"), "{out}");
    }

    #[test]
    fn nothing_to_redact_borrows() {
        let msg = b"OPTIONS sip:c SIP/2.0\r\nVia: x\r\n\r\n";
        assert!(matches!(credentials(msg), Cow::Borrowed(_)));
        // Many z's, none in a credential header: the quick check lets it through untouched.
        let msg = b"BYE sip:z SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKz\r\n\
                    Authorizatio: response=1\r\nX-Authz: response=2\r\n\r\nz";
        assert!(matches!(credentials(msg), Cow::Borrowed(_)));
    }

    #[test]
    fn the_quick_check_finds_the_name_in_any_case_and_at_the_edges() {
        for name in ["AUTHORIZATION", "AuThOrIzAtIoN", "PROXY-authorization"] {
            let msg = format!("ACK sip:1@c SIP/2.0\r\n{name}: Digest response=\"s3\"\r\n\r\n");
            let out = redact(&msg);
            assert!(!out.contains("s3"), "{out}");
        }
        // The name at the very start and end of the bytes.
        assert!(may_hold_credentials(b"authorization"));
        assert!(may_hold_credentials(b"x\r\nAuthorization"));
        assert!(!may_hold_credentials(b"authorizatio"));
        assert!(!may_hold_credentials(b"uthorization"));
    }
}
