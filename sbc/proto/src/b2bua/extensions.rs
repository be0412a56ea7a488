//! SIP extension negotiation per leg (RFC 3261 §8.2.2.3, §19.2, §20.32, §20.37).
//!
//! A B2BUA is a user agent on each leg: it answers for the option tags it implements itself and
//! never copies the other leg's `Supported`/`Require` lists, which would promise what the SBC
//! cannot do (e.g. `replaces`: an INVITE with Replaces names the other leg's dialog, which the
//! SBC does not map). What it implements on every leg:
//! - `100rel` (RFC 3262): reliable provisionals are relayed with RSeq/RAck mapped, or PRACKed by
//!   the SBC itself toward a callee whose caller does not support them;
//! - `timer` (RFC 4028), when session timers are enabled: each leg is refreshed and supervised
//!   on its own (`session_timer.rs`).

use crate::sip::{Message, Method};

/// The option tags the SBC supports on a leg, for `Supported` and the 420 check.
pub(super) fn supported(timer: bool) -> &'static [&'static str] {
    if timer {
        &["100rel", "timer"]
    } else {
        &["100rel"]
    }
}

/// The `Supported` value the SBC writes on its own requests and answers.
pub(super) fn supported_value(timer: bool) -> String {
    supported(timer).join(", ")
}

/// The option tags of the request's `Require` and `Proxy-Require` the SBC does not support
/// (§8.2.2.3; each once, as written), empty when it may be processed. ACK and CANCEL are never
/// refused for their extensions (§8.2.2.3).
pub(super) fn unsupported(msg: &Message, timer: bool) -> Vec<String> {
    if matches!(msg.method(), Some(Method::Ack | Method::Cancel) | None) {
        return Vec::new();
    }
    let known = supported(timer);
    let h = msg.headers();
    let mut out: Vec<String> = Vec::new();
    let tags = h.require().chain(h.proxy_require());
    for tag in tags {
        let Ok(tag) = tag.map(str::trim) else {
            continue; // not a token: the parser's business (400), no extension name
        };
        if tag.is_empty() || known.iter().any(|k| k.eq_ignore_ascii_case(tag)) {
            continue;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(tag)) {
            out.push(tag.to_owned());
        }
    }
    out
}

/// Whether `msg` lists `tag` in its `Supported` or `Require` header.
pub(super) fn offers(msg: &Message, tag: &str) -> bool {
    let h = msg.headers();
    h.supported()
        .chain(h.require())
        .filter_map(Result::ok)
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// Whether `msg` lists `tag` in its `Require` header.
pub(super) fn requires(msg: &Message, tag: &str) -> bool {
    msg.headers()
        .require()
        .filter_map(Result::ok)
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    fn parse(extra: &str, method: &str) -> Message {
        let text = format!(
            "{method} sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx\r\n\
             From: <sip:b@192.0.2.2>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: c\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("valid test message")
    }

    #[test]
    fn unknown_required_tags_are_listed_once_known_ones_pass() {
        let m = parse(
            "Require: 100rel, nonsense\r\nProxy-Require: foo, NONSENSE\r\n",
            "OPTIONS",
        );
        assert_eq!(unsupported(&m, true), ["nonsense", "foo"]);
        let m = parse("Require: 100rel, timer\r\n", "INVITE");
        assert!(unsupported(&m, true).is_empty());
        assert_eq!(unsupported(&m, false), ["timer"], "timer only when enabled");
        let m = parse("Require: replaces\r\n", "INVITE");
        assert_eq!(
            unsupported(&m, true),
            ["replaces"],
            "Replaces is not mapped"
        );
        let m = parse("Require: foo\r\n", "CANCEL");
        assert!(unsupported(&m, true).is_empty(), "CANCEL is never refused");
    }

    #[test]
    fn offers_and_requires_read_the_lists() {
        let m = parse("Supported: timer\r\nRequire: 100rel\r\n", "INVITE");
        assert!(offers(&m, "timer") && offers(&m, "100rel"));
        assert!(requires(&m, "100rel") && !requires(&m, "timer"));
        assert_eq!(supported_value(true), "100rel, timer");
    }
}
