//! Building the messages the B2BUA sends: requests on a leg, responses to a leg's requests,
//! hop-by-hop ACK and CANCEL, and the header allowlist that keeps one side's topology away from
//! the other.

use std::fmt::Write as _;

use bytes::Bytes;

use super::config::LocalAddr;
use crate::routing::{HeaderRule, NumberRule};
use crate::sip::{
    HeaderName, Headers, Message, MessageWriter, Method, NameAddr, StatusCode, Uri,
    edit::ResponseOptions,
};
use crate::text::Text;

/// `host:port` for a Via/Contact (IPv6 in brackets).
pub(super) fn hostport(addr: std::net::SocketAddr) -> Text {
    Text::hostport(addr)
}

/// Just the host (IPv6 in brackets).
pub(super) fn host(addr: std::net::SocketAddr) -> Text {
    Text::host(addr)
}

/// Our Via value on a side.
pub(super) fn via(local: LocalAddr, branch: &str) -> String {
    let hp = hostport(local.addr);
    let transport = local.transport.via_token();
    let mut v = String::with_capacity(16 + transport.len() + hp.len() + branch.len());
    for part in [
        "SIP/2.0/", transport, " ", &hp, ";branch=", branch, ";rport",
    ] {
        v.push_str(part);
    }
    v
}

/// Our Contact value on a side, on the stack (at most 71 bytes: it fits a [`Text`]).
pub(super) fn contact(local: LocalAddr) -> Text {
    let transport = match local.transport {
        crate::net::TransportKind::Udp => "",
        crate::net::TransportKind::Tcp => ";transport=tcp",
        crate::net::TransportKind::Tls => ";transport=tls",
    };
    Text::contact(local.addr, transport)
}

/// Headers that identify a party by URI: copied, but with the URI host replaced by the SBC's
/// own, so no inside host name or address crosses (topology hiding).
const IDENTITY_HEADERS: [&str; 3] = ["p-asserted-identity", "p-preferred-identity", "diversion"];

/// Headers negotiated by the SBC on each leg (`extensions.rs`, `session_timer.rs`): never
/// copied from the other leg, whatever the allowlist says.
const PER_LEG: [&str; 5] = [
    "supported",
    "require",
    "proxy-require",
    "session-expires",
    "min-se",
];

/// A trunk's rules for the copied headers of a call's first INVITE.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Shaping<'a> {
    /// Header rules: `set` and `remove` suppress copied headers of their name.
    pub headers: &'a [HeaderRule],
    /// Calling-number rules, applied to the user of the identity headers.
    pub identity: &'a [NumberRule],
}

/// Copies the allowlisted headers of `source` into `w`, sanitised for the other side.
pub(super) fn copy_allowed(
    w: &mut MessageWriter<'_>,
    source: &Headers,
    pass: &[String],
    local: LocalAddr,
    shaping: Shaping<'_>,
) {
    for h in source.iter() {
        let name = h.name.as_str();
        // Known names have a static lower-case spelling: no allocation per copied header.
        let lname: std::borrow::Cow<'_, str> = if name.is_empty() {
            String::from_utf8_lossy(h.raw_name)
                .to_ascii_lowercase()
                .into()
        } else {
            h.name.as_lower().into()
        };
        let lname: &str = &lname;
        if !pass.iter().any(|p| p == lname)
            || PER_LEG.contains(&lname)
            || shaping.headers.iter().any(|r| r.suppresses(lname))
        {
            continue;
        }
        // Checked after the allowlist: most fields are not copied, and need no decoding.
        let Some(value) = h.value_str() else { continue };
        if IDENTITY_HEADERS.contains(&lname) {
            // Diversion names the redirecting party, not the caller: no calling-number rules.
            let rules = if lname == "diversion" {
                &[][..]
            } else {
                shaping.identity
            };
            let mut rewritten = Vec::new();
            for part in split_list(value) {
                match rehost(part, local, rules) {
                    Some(v) => rewritten.push(v),
                    None => rewritten.clear(),
                }
            }
            if !rewritten.is_empty() {
                w.header(canonical(lname), rewritten.join(", "));
            }
            continue;
        }
        w.header(canonical(lname), value);
    }
}

fn canonical(lname: &str) -> &str {
    match lname {
        "p-asserted-identity" => "P-Asserted-Identity",
        "p-preferred-identity" => "P-Preferred-Identity",
        "privacy" => "Privacy",
        "diversion" => "Diversion",
        "reason" => "Reason",
        "allow" => "Allow",
        "accept" => "Accept",
        "retry-after" => "Retry-After",
        "unsupported" => "Unsupported",
        "min-expires" => "Min-Expires",
        other => other,
    }
}

/// Splits a header list at top-level commas (not inside quotes or angle brackets).
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0i32, false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

/// `"Name" <sip:user@inside-host>;p=1` → `"Name" <sip:user@sbc-host>;p=1`. Tel URIs pass as
/// they are; anything unparseable is dropped (None), never passed through.
fn rehost(value: &str, local: LocalAddr, rules: &[NumberRule]) -> Option<String> {
    let na = NameAddr::parse(value).ok()?;
    let uri = match na.uri {
        Uri::Sip(u) => {
            let scheme = if u.secure { "sips" } else { "sip" };
            match u.user {
                Some(user) => format!(
                    "{scheme}:{}@{}",
                    crate::routing::normalize(rules, user),
                    host(local.addr)
                ),
                None => format!("{scheme}:{}", host(local.addr)),
            }
        }
        Uri::Tel(_) => na.uri_str.to_owned(),
        Uri::Other(_) => return None,
    };
    let mut out = String::new();
    if let Some(d) = na.display_name {
        out.push_str(d);
        out.push(' ');
    }
    let _ = write!(out, "<{uri}>{}", na.params.as_str());
    Some(out)
}

/// The Contacts of a relayed 3xx, as the other side may see them. A redirect's Contact names
/// a host, port and URI parameters of the redirecting side; only the number it redirects to
/// is of use to the other side, and that side reaches it through the SBC anyway. So each
/// Contact becomes `<sip:NUMBER@SBC>` (the SBC's address on the receiving leg, `q` kept), a
/// `tel:` URI keeps its number only, and a Contact whose user part is not a dialable number
/// (`+`, digits, `*`, `#`; visual separators removed) or that does not parse is dropped.
pub(super) fn redirect_contacts<'a>(
    values: impl Iterator<Item = &'a str>,
    local: LocalAddr,
) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        for part in split_list(value) {
            let Ok(na) = NameAddr::parse(part) else {
                continue;
            };
            let number = match na.uri {
                Uri::Sip(u) => u.user.and_then(dialable),
                Uri::Tel(t) => dialable(t.number),
                Uri::Other(_) => None,
            };
            let Some(number) = number else { continue };
            let mut c = match na.uri {
                Uri::Tel(_) => format!("<tel:{number}>"),
                _ => format!("<sip:{number}@{}>", hostport(local.addr)),
            };
            if let Some(Some(q)) = na.params.get("q")
                && !q.is_empty()
                && q.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                let _ = write!(c, ";q={q}");
            }
            out.push(c);
        }
    }
    out
}

/// A telephone number without visual separators (RFC 3966 §5.1.1), if `user` is nothing else.
fn dialable(user: &str) -> Option<String> {
    let number: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    let digits = number.strip_prefix('+').unwrap_or(&number);
    (!digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
    .then_some(number)
}

/// Everything needed to write a request on one leg.
pub(super) struct RequestSpec<'a> {
    pub method: &'a Method,
    pub ruri: &'a str,
    pub local: LocalAddr,
    pub branch: &'a str,
    pub max_forwards: u8,
    pub routes: &'a [String],
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub contact: bool,
    pub user_agent: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Headers the B2BUA itself adds (RAck, Require), written verbatim.
    pub extra: &'a [(&'a str, &'a str)],
    /// A trunk's rules for the copied headers (the first INVITE of a call).
    pub shaping: Option<&'a Shaping<'a>>,
}

/// Writes a request, copying the allowlisted headers of `source` (the request being relayed).
pub(super) fn request(
    spec: &RequestSpec<'_>,
    source: Option<&Headers>,
    pass: &[String],
    out: &mut Vec<u8>,
) -> Bytes {
    let mut w = MessageWriter::request(out, spec.method, spec.ruri);
    w.header("Via", via(spec.local, spec.branch));
    w.header("Max-Forwards", Text::decimal(u64::from(spec.max_forwards)));
    for r in spec.routes {
        w.header("Route", r);
    }
    w.header("From", spec.from);
    w.header("To", spec.to);
    w.header("Call-ID", spec.call_id);
    w.cseq(spec.cseq, spec.method);
    if spec.contact {
        w.header("Contact", contact(spec.local));
    }
    for (n, v) in spec.extra {
        w.header(n, v);
    }
    if let Some(src) = source {
        copy_allowed(
            &mut w,
            src,
            pass,
            spec.local,
            spec.shaping.copied().unwrap_or_default(),
        );
    }
    w.header("User-Agent", spec.user_agent);
    if let Some(ct) = spec.content_type.filter(|_| !spec.body.is_empty()) {
        w.header("Content-Type", ct);
    }
    w.finish(spec.body);
    Bytes::copy_from_slice(out)
}

/// What a response to one of a leg's requests carries besides the §8.2.6 copies.
pub(super) struct ResponseSpec<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub to_tag: Option<&'a str>,
    pub contact: Option<LocalAddr>,
    pub user_agent: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Extra headers written verbatim (e.g. Allow, Accept on an OPTIONS answer).
    pub extra: &'a [(&'a str, &'a str)],
}

/// Writes a response to `request` (Via/From/To/Call-ID/CSeq copied per RFC 3261 §8.2.6.2),
/// adding the allowlisted headers of `source` (the response being relayed, if any).
pub(super) fn response(
    request: &Message,
    spec: &ResponseSpec<'_>,
    source: Option<(&Headers, LocalAddr)>,
    pass: &[String],
    out: &mut Vec<u8>,
) -> Bytes {
    // Every status the B2BUA sends is in 100..=699; an out-of-range one would be a bug, and it
    // degrades to 500 rather than panicking.
    let Some(status) = StatusCode::new(spec.status).or(StatusCode::new(500)) else {
        out.clear();
        return Bytes::new();
    };
    let opts = ResponseOptions {
        to_tag: spec.to_tag,
        received: None,
        rport: None,
    };
    let mut w = MessageWriter::response_to_message(out, request, status, spec.reason, &opts);
    if let Some(local) = spec.contact {
        w.header("Contact", contact(local));
    }
    for (n, v) in spec.extra {
        w.header(n, v);
    }
    if let Some((src, local)) = source {
        copy_allowed(&mut w, src, pass, local, Shaping::default());
    }
    w.header("Server", spec.user_agent);
    if let Some(ct) = spec.content_type.filter(|_| !spec.body.is_empty()) {
        w.header("Content-Type", ct);
    }
    w.finish(spec.body);
    Bytes::copy_from_slice(out)
}

/// The hop-by-hop ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI,
/// top Via, From, Call-ID, Route as the INVITE; To from the response; CSeq number with ACK.
pub(super) fn ack_for_non2xx(invite: &Message, resp: &Message, out: &mut Vec<u8>) -> Bytes {
    let ruri = invite.request_uri_str().unwrap_or("sip:invalid");
    let mut w = MessageWriter::request(out, &Method::Ack, ruri);
    if let Some(v) = invite.headers().first(HeaderName::Via) {
        w.copy(v);
    }
    w.header("Max-Forwards", "70");
    for r in invite.headers().all(HeaderName::Route) {
        w.copy(r);
    }
    if let Some(h) = invite.headers().first(HeaderName::From) {
        w.copy(h);
    }
    if let Some(h) = resp.headers().first(HeaderName::To) {
        w.copy(h);
    }
    w.header("Call-ID", invite.call_id());
    w.cseq(invite.cseq().seq, &Method::Ack);
    w.finish(b"");
    Bytes::copy_from_slice(out)
}

/// CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, top Via (same branch),
/// From, To, Call-ID, Route; CSeq number with CANCEL.
pub(super) fn cancel_for(invite: &Message, out: &mut Vec<u8>) -> Bytes {
    let ruri = invite.request_uri_str().unwrap_or("sip:invalid");
    let mut w = MessageWriter::request(out, &Method::Cancel, ruri);
    if let Some(v) = invite.headers().first(HeaderName::Via) {
        w.copy(v);
    }
    w.header("Max-Forwards", "70");
    for r in invite.headers().all(HeaderName::Route) {
        w.copy(r);
    }
    for name in [HeaderName::From, HeaderName::To] {
        if let Some(h) = invite.headers().first(name) {
            w.copy(h);
        }
    }
    w.header("Call-ID", invite.call_id());
    w.cseq(invite.cseq().seq, &Method::Cancel);
    w.header("Reason", "SIP;cause=487;text=\"Request Terminated\"");
    w.finish(b"");
    Bytes::copy_from_slice(out)
}

/// The value of the first header named `name`, as text.
pub(super) fn first_value(h: &Headers, name: HeaderName) -> Option<&str> {
    h.first(name).and_then(|h| h.value_str())
}

/// A From/To value without its `tag` parameter (and with it re-added when `tag` is given).
pub(super) fn with_tag(value: &str, tag: Option<&str>) -> String {
    let mut out = Vec::new();
    crate::sip::edit::edit_param(value.as_bytes(), "tag", tag.map(Some), &mut out);
    String::from_utf8(out).unwrap_or_else(|_| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalAddr {
        LocalAddr {
            addr: "203.0.113.5:5080".parse().expect("literal"),
            transport: crate::net::TransportKind::Udp,
        }
    }

    #[test]
    fn identity_is_rehosted_and_list_split() {
        let v = rehost(
            "\"Alice\" <sip:+15551234@pbx.lan;user=phone>;x=1",
            local(),
            &[],
        );
        assert_eq!(
            v.as_deref(),
            Some("\"Alice\" <sip:+15551234@203.0.113.5>;x=1")
        );
        assert_eq!(
            split_list("<sip:a@b>, \"x,y\" <sip:c@d>"),
            ["<sip:a@b>", "\"x,y\" <sip:c@d>"]
        );
        assert_eq!(
            rehost("<tel:+1555>", local(), &[]).as_deref(),
            Some("<tel:+1555>")
        );
    }

    #[test]
    fn redirect_contacts_keep_only_the_number() {
        let got = redirect_contacts(
            [
                "<sip:+1-555-0100@10.0.0.10:5070;transport=tcp;maddr=10.0.0.99>;q=0.7;x=pbx.lan",
                "\"Ext\" <sip:alice@pbx.lan>, <sip:201:secret@10.0.0.10>",
                "<tel:+15550101;phone-context=pbx.lan>",
                "<mailto:ops@pbx.lan>, garbage<",
            ]
            .into_iter(),
            local(),
        );
        assert_eq!(
            got,
            [
                "<sip:+15550100@203.0.113.5:5080>;q=0.7",
                "<sip:201@203.0.113.5:5080>",
                "<tel:+15550101>",
            ]
        );
    }

    #[test]
    fn tag_is_replaced_or_removed() {
        assert_eq!(with_tag("<sip:a@b>;tag=1", Some("x")), "<sip:a@b>;tag=x");
        assert_eq!(with_tag("<sip:a@b>;tag=1", None), "<sip:a@b>");
        assert_eq!(with_tag("<sip:a@b>", Some("y")), "<sip:a@b>;tag=y");
    }
}
