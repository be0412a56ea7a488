//! Editing received messages and building new ones, into a caller-supplied buffer.
//!
//! The editor records operations against a parsed [`Message`] and then prints it once: every
//! byte of the start line, header fields and body that no operation touches is copied as it was
//! received (names keep their compact forms and case, folds stay folded).

use std::borrow::Cow;

use super::headers::{Header, Headers};
use super::message::Message;
use super::method::Method;
use super::name::HeaderName;
use super::status::StatusCode;
use crate::text::Text;

#[derive(Debug, Clone)]
enum Op<'m> {
    Remove,
    Replace(Cow<'m, [u8]>),
    InsertBefore(Cow<'m, str>, Cow<'m, [u8]>),
    SetParam(Cow<'m, str>, Option<Cow<'m, str>>),
    RemoveParam(Cow<'m, str>),
}

/// Records edits to a received message and prints the result.
#[derive(Debug, Clone)]
pub struct Editor<'m> {
    msg: &'m Message,
    start_line: Option<Cow<'m, [u8]>>,
    ops: Vec<(usize, Op<'m>)>,
    appended: Vec<(Cow<'m, str>, Cow<'m, [u8]>)>,
    body: Option<Cow<'m, [u8]>>,
}

impl<'m> Editor<'m> {
    /// Starts editing `msg`; with no operations, [`Editor::write`] reproduces it byte for byte.
    pub fn new(msg: &'m Message) -> Self {
        Self {
            msg,
            start_line: None,
            ops: Vec::new(),
            appended: Vec::new(),
            body: None,
        }
    }

    /// Replaces the start line with a Request-Line.
    pub fn set_request_line(&mut self, method: &Method, uri: &str) -> &mut Self {
        self.start_line = Some(Cow::Owned(format!("{method} {uri} SIP/2.0").into_bytes()));
        self
    }

    /// Replaces the start line with a Status-Line.
    pub fn set_status_line(&mut self, status: StatusCode, reason: &str) -> &mut Self {
        self.start_line = Some(Cow::Owned(
            format!("SIP/2.0 {status} {reason}").into_bytes(),
        ));
        self
    }

    /// Removes the field at `index` (wire order, see [`Headers::get`]).
    pub fn remove(&mut self, index: usize) -> &mut Self {
        self.ops.push((index, Op::Remove));
        self
    }

    /// Removes every field with this name.
    pub fn remove_all(&mut self, name: HeaderName) -> &mut Self {
        let positions: Vec<usize> = self.msg.headers().positions(name).collect();
        for i in positions {
            self.remove(i);
        }
        self
    }

    /// Replaces the value of the field at `index`, keeping its name as received.
    pub fn replace(&mut self, index: usize, value: impl Into<Cow<'m, [u8]>>) -> &mut Self {
        self.ops.push((index, Op::Replace(value.into())));
        self
    }

    /// Inserts a new field before the field at `index` (e.g. a Via on top of index 0 of the
    /// Vias, or a Record-Route).
    pub fn insert_before(
        &mut self,
        index: usize,
        name: impl Into<Cow<'m, str>>,
        value: impl Into<Cow<'m, [u8]>>,
    ) -> &mut Self {
        self.ops
            .push((index, Op::InsertBefore(name.into(), value.into())));
        self
    }

    /// Appends a new field after the last one.
    pub fn append(
        &mut self,
        name: impl Into<Cow<'m, str>>,
        value: impl Into<Cow<'m, [u8]>>,
    ) -> &mut Self {
        self.appended.push((name.into(), value.into()));
        self
    }

    /// Sets (adds or replaces) a parameter on the first value of the field at `index`, e.g.
    /// `received` on the top Via or `tag` on To. `None` writes a value-less parameter.
    pub fn set_param(
        &mut self,
        index: usize,
        name: impl Into<Cow<'m, str>>,
        value: Option<Cow<'m, str>>,
    ) -> &mut Self {
        self.ops.push((index, Op::SetParam(name.into(), value)));
        self
    }

    /// Removes a parameter from the first value of the field at `index`.
    pub fn remove_param(&mut self, index: usize, name: impl Into<Cow<'m, str>>) -> &mut Self {
        self.ops.push((index, Op::RemoveParam(name.into())));
        self
    }

    /// Replaces the body; Content-Length is recomputed.
    pub fn set_body(&mut self, body: impl Into<Cow<'m, [u8]>>) -> &mut Self {
        self.body = Some(body.into());
        self
    }

    /// Prints the edited message into `out` (cleared first, so it can be reused).
    ///
    /// Content-Length is rewritten to the body length when the body was replaced, and added
    /// when the message has none (stream transports need it, RFC 3261 §18.3).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        let msg = self.msg;
        let buf = &msg.headers.buf[..];
        match &self.start_line {
            Some(l) => out.extend_from_slice(l),
            None => out.extend_from_slice(&buf[msg.start_line.range()]),
        }
        out.extend_from_slice(b"\r\n");
        let body: &[u8] = self.body.as_deref().unwrap_or_else(|| msg.body());
        let mut has_length = false;
        let mut scratch = Vec::new();
        for (i, h) in msg.headers().iter().enumerate() {
            let mut removed = false;
            let mut value: Option<Cow<'_, [u8]>> = None;
            for (_, op) in self.ops.iter().filter(|(at, _)| *at == i) {
                match op {
                    Op::InsertBefore(n, v) => write_field(out, n.as_bytes(), v),
                    Op::Remove => removed = true,
                    Op::Replace(v) => value = Some(Cow::Borrowed(v)),
                    Op::SetParam(n, v) => {
                        let cur = value.as_deref().unwrap_or(h.value);
                        scratch.clear();
                        edit_param(cur, n, Some(v.as_deref()), &mut scratch);
                        value = Some(Cow::Owned(scratch.clone()));
                    }
                    Op::RemoveParam(n) => {
                        let cur = value.as_deref().unwrap_or(h.value);
                        scratch.clear();
                        edit_param(cur, n, None, &mut scratch);
                        value = Some(Cow::Owned(scratch.clone()));
                    }
                }
            }
            if removed {
                continue;
            }
            if h.name == HeaderName::ContentLength {
                has_length = true;
                if self.body.is_some() {
                    write_field(out, h.raw_name, Text::decimal(body.len() as u64).as_bytes());
                    continue;
                }
            }
            match value {
                Some(v) => write_field(out, h.raw_name, &v),
                None => out.extend_from_slice(h.line),
            }
        }
        // Insertions past the last field go before the appended ones.
        let n = msg.headers().len();
        for (_, op) in self.ops.iter().filter(|(at, _)| *at >= n) {
            if let Op::InsertBefore(name, v) = op {
                write_field(out, name.as_bytes(), v);
            }
        }
        for (name, v) in &self.appended {
            if HeaderName::from_bytes(name.as_bytes()) == HeaderName::ContentLength {
                has_length = true;
            }
            write_field(out, name.as_bytes(), v);
        }
        if !has_length {
            write_field(
                out,
                b"Content-Length",
                Text::decimal(body.len() as u64).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Rewrites `value` with parameter `name` set to `new` (`Some(None)`: value-less; `None`:
/// removed) on its first comma-separated element. Everything else is copied verbatim.
pub fn edit_param(value: &[u8], name: &str, new: Option<Option<&str>>, out: &mut Vec<u8>) {
    // The result is at most the value plus `;name=new`: one allocation, not several.
    out.reserve(value.len() + name.len() + 2 + new.flatten().map_or(0, str::len));
    // First element: up to the first top-level comma (outside quotes and `<>`).
    let elem_end = scan_until(value, 0, |b| b == b',');
    let mut trimmed_end = elem_end;
    while trimmed_end > 0 && matches!(value[trimmed_end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        trimmed_end -= 1;
    }
    // Header parameters start at the first top-level `;` (after `>` for name-addr).
    let mut found: Option<(usize, usize)> = None;
    let mut i = scan_until(value, 0, |b| b == b';').min(trimmed_end);
    while i < trimmed_end {
        let next = scan_until(value, i + 1, |b| b == b';').min(trimmed_end);
        let param = &value[i + 1..next];
        let pname = param.split(|b| *b == b'=').next().unwrap_or_default();
        let pname = pname.trim_ascii();
        if pname.eq_ignore_ascii_case(name.as_bytes()) {
            found = Some((i, next));
            break;
        }
        i = next;
    }
    let write_new = |out: &mut Vec<u8>| {
        if let Some(v) = new {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            if let Some(v) = v {
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
        }
    };
    match found {
        Some((s, e)) => {
            out.extend_from_slice(&value[..s]);
            write_new(out);
            out.extend_from_slice(&value[e..]);
        }
        None => {
            out.extend_from_slice(&value[..trimmed_end]);
            write_new(out);
            out.extend_from_slice(&value[trimmed_end..]);
        }
    }
}

/// Index of the first byte at or after `from` for which `stop` holds, outside quoted strings
/// and `<...>`; `value.len()` if none.
fn scan_until(value: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    let (mut q, mut a) = (false, false);
    while i < value.len() {
        let b = value[i];
        match b {
            b'\\' if q => i += 1,
            b'"' => q = !q,
            b'<' if !q => a = true,
            b'>' if !q => a = false,
            _ if !q && !a && stop(b) => return i,
            _ => {}
        }
        i += 1;
    }
    value.len()
}

/// Writes a new message into a reused buffer: start line, fields, then the body with its
/// Content-Length.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    out: &'b mut Vec<u8>,
}

impl<'b> MessageWriter<'b> {
    /// Starts a request (clears `out`).
    pub fn request(out: &'b mut Vec<u8>, method: &Method, uri: &str) -> Self {
        out.clear();
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        Self { out }
    }

    /// Starts a response (clears `out`).
    pub fn response(out: &'b mut Vec<u8>, status: StatusCode, reason: &str) -> Self {
        out.clear();
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(Text::decimal(u64::from(status.as_u16())).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        Self { out }
    }

    /// Starts a response to a request per RFC 3261 §8.2.6.2: copies every Via (in order), From,
    /// To, Call-ID and CSeq as received. If To has no tag, `opts.to_tag` is added (omit it for
    /// 100 Trying). `opts.received`/`opts.rport` are set on the top Via (RFC 3261 §18.2.1,
    /// RFC 3581) when the transport layer has not already done so.
    pub fn response_to(
        out: &'b mut Vec<u8>,
        request: &Headers,
        status: StatusCode,
        reason: &str,
        opts: &ResponseOptions<'_>,
    ) -> Self {
        let to_untagged = || request.to().is_ok_and(|t| t.tag().is_none());
        Self::response_with(out, request, to_untagged, status, reason, opts)
    }

    /// As [`MessageWriter::response_to`], for a parsed request: whether its To has a tag is
    /// known from the parser, so To is not decoded again.
    pub fn response_to_message(
        out: &'b mut Vec<u8>,
        request: &Message,
        status: StatusCode,
        reason: &str,
        opts: &ResponseOptions<'_>,
    ) -> Self {
        let to_untagged = || request.to_tag().is_none();
        Self::response_with(out, request.headers(), to_untagged, status, reason, opts)
    }

    fn response_with(
        out: &'b mut Vec<u8>,
        request: &Headers,
        to_untagged: impl Fn() -> bool,
        status: StatusCode,
        reason: &str,
        opts: &ResponseOptions<'_>,
    ) -> Self {
        let mut w = Self::response(out, status, reason);
        let mut first_via = true;
        let mut scratch = Vec::new();
        for h in request.iter() {
            match h.name {
                HeaderName::Via
                    if first_via && (opts.received.is_some() || opts.rport.is_some()) =>
                {
                    first_via = false;
                    let mut v = h.value.to_vec();
                    if let Some(r) = opts.received {
                        scratch.clear();
                        edit_param(&v, "received", Some(Some(r)), &mut scratch);
                        v.clone_from(&scratch);
                    }
                    if let Some(p) = opts.rport {
                        scratch.clear();
                        let port = Text::decimal(u64::from(p));
                        edit_param(&v, "rport", Some(Some(port.as_str())), &mut scratch);
                        v.clone_from(&scratch);
                    }
                    write_field(w.out, h.raw_name, &v);
                }
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    w.copy(h);
                }
                HeaderName::To => {
                    let needs_tag = to_untagged();
                    match opts.to_tag {
                        Some(tag) if needs_tag => {
                            scratch.clear();
                            edit_param(h.value, "tag", Some(Some(tag)), &mut scratch);
                            write_field(w.out, h.raw_name, &scratch);
                        }
                        _ => {
                            w.copy(h);
                        }
                    }
                }
                _ => {}
            }
        }
        w
    }

    /// Adds a field.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        write_field(self.out, name.as_bytes(), value.as_ref());
        self
    }

    /// Copies a received field verbatim.
    pub fn copy(&mut self, h: Header<'_>) -> &mut Self {
        self.out.extend_from_slice(h.line);
        self
    }

    /// Adds `CSeq: <seq> <method>`.
    pub fn cseq(&mut self, seq: u32, method: &Method) -> &mut Self {
        self.out.extend_from_slice(b"CSeq: ");
        self.out
            .extend_from_slice(Text::decimal(u64::from(seq)).as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(method.as_str().as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Adds Content-Length, the empty line and the body.
    pub fn finish(&mut self, body: &[u8]) {
        write_field(
            self.out,
            b"Content-Length",
            Text::decimal(body.len() as u64).as_bytes(),
        );
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
    }
}

/// Options for [`MessageWriter::response_to`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseOptions<'a> {
    /// The To tag to add when the request's To has none.
    pub to_tag: Option<&'a str>,
    /// A `received` value for the top Via.
    pub received: Option<&'a str>,
    /// An `rport` value for the top Via.
    pub rport: Option<u16>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::{Limits, ParseError};

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1 , SIP/2.0/TCP proxy.example.com;branch=z9hG4bK0\r\n\
        f: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
        t: <sip:bob@example.com>\r\n\
        i: abc@192.0.2.1\r\n\
        CSeq: 1 INVITE\r\n\
        X-Odd:   folded\r\n  value  \r\n\
        l: 4\r\n\r\nbody";

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()), &Limits::default()).expect("valid")
    }

    #[test]
    fn untouched_is_identical() {
        let m = msg(INVITE);
        let mut out = Vec::new();
        Editor::new(&m).write(&mut out);
        assert_eq!(out, INVITE.as_bytes());
    }

    #[test]
    fn edits_touch_only_their_fields() {
        let m = msg(INVITE);
        let mut out = Vec::new();
        Editor::new(&m)
            .set_request_line(&Method::Invite, "sip:bob@192.0.2.9")
            .set_param(0, "received", Some("198.51.100.1".into()))
            .set_param(2, "tag", Some("b2".into()))
            .remove_param(1, "tag")
            .insert_before(
                0,
                "Via",
                &b"SIP/2.0/UDP sbc.example.com;branch=z9hG4bKs"[..],
            )
            .remove(5)
            .append("Max-Forwards", &b"69"[..])
            .set_body(&b"new body"[..])
            .write(&mut out);
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert_eq!(
            text,
            "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
             Via: SIP/2.0/UDP sbc.example.com;branch=z9hG4bKs\r\n\
             v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;received=198.51.100.1 , SIP/2.0/TCP proxy.example.com;branch=z9hG4bK0\r\n\
             f: \"Alice\" <sip:alice@example.com>\r\n\
             t: <sip:bob@example.com>;tag=b2\r\n\
             i: abc@192.0.2.1\r\n\
             CSeq: 1 INVITE\r\n\
             l: 8\r\n\
             Max-Forwards: 69\r\n\r\nnew body"
        );
        let again = msg(&text);
        assert_eq!(again.top_via().branch(), Some("z9hG4bKs"));
        assert_eq!(again.to().tag(), Some("b2"));
        assert_eq!(again.body(), b"new body");
    }

    #[test]
    fn param_editing() {
        let mut out = Vec::new();
        edit_param(b"<sip:a@b;lr>;tag=1;x", "tag", Some(Some("2")), &mut out);
        assert_eq!(out, b"<sip:a@b;lr>;tag=2;x");
        out.clear();
        edit_param(b"<sip:a@b;tag=u>", "tag", Some(Some("2")), &mut out);
        assert_eq!(out, b"<sip:a@b;tag=u>;tag=2");
        out.clear();
        edit_param(
            b"SIP/2.0/UDP h;rport;branch=z",
            "rport",
            Some(Some("5060")),
            &mut out,
        );
        assert_eq!(out, b"SIP/2.0/UDP h;rport=5060;branch=z");
        out.clear();
        edit_param(b"\"a;b\" <sip:x>;tag=1", "tag", None, &mut out);
        assert_eq!(out, b"\"a;b\" <sip:x>");
    }

    #[test]
    fn response_to_request() {
        let m = msg(INVITE);
        let mut out = Vec::new();
        let opts = ResponseOptions {
            to_tag: Some("xyz"),
            received: Some("203.0.113.5"),
            rport: None,
        };
        MessageWriter::response_to(&mut out, m.headers(), StatusCode::RINGING, "Ringing", &opts)
            .header("Contact", "<sip:sbc.example.com>")
            .finish(b"");
        let r = Message::parse(Bytes::from(out), &Limits::default()).expect("valid response");
        assert_eq!(r.status(), Some(StatusCode::RINGING));
        assert_eq!(r.to().tag(), Some("xyz"));
        assert_eq!(r.from().tag(), Some("a1"));
        assert_eq!(r.top_via().received(), Some("203.0.113.5"));
        assert_eq!(r.via().count(), 2);
        assert_eq!(r.call_id(), "abc@192.0.2.1");
        assert_eq!(r.cseq().seq, 1);
    }

    #[test]
    fn answer_a_rejected_request() {
        let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let Err(ParseError::Rejected { problem, headers }) =
            Message::parse(Bytes::from(bad), &Limits::default())
        else {
            panic!("expected a rejection")
        };
        let (code, reason) = problem.status();
        let mut out = Vec::new();
        let status = StatusCode::new(code).unwrap_or(StatusCode::BAD_REQUEST);
        let opts = ResponseOptions {
            to_tag: Some("t"),
            ..ResponseOptions::default()
        };
        MessageWriter::response_to(&mut out, &headers, status, reason, &opts).finish(b"");
        let r = Message::parse(Bytes::from(out), &Limits::default()).expect("valid 400");
        assert_eq!(r.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(r.reason_phrase(), Some("CSeq Method Does Not Match"));
    }

    #[test]
    fn new_request() {
        let mut out = Vec::new();
        let mut w = MessageWriter::request(&mut out, &Method::Options, "sip:carrier.example.net");
        w.header("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
            .header("From", "<sip:sbc@example.com>;tag=1")
            .header("To", "<sip:carrier.example.net>")
            .header("Call-ID", "c1")
            .header("CSeq", "1 OPTIONS")
            .header("Max-Forwards", "70");
        w.finish(b"");
        let m = Message::parse(Bytes::from(out), &Limits::default()).expect("valid");
        assert_eq!(m.method(), Some(&Method::Options));
        assert_eq!(m.content_length(), Some(0));
    }
}
