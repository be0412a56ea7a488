//! Stateless error responses to requests the parser rejected (RFC 3261 §8.2.6), sent by the
//! transport itself so that malformed input never reaches the SIP core.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use sbc_proto::sip::{Headers, Host, MessageWriter, StatusCode, edit::ResponseOptions};

/// An error response ready to send, and where it goes.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    /// The response bytes.
    pub(crate) bytes: Bytes,
    /// Its status code (for the metric).
    pub(crate) code: u16,
    /// Where a UDP response goes (RFC 3261 §18.2.2 / RFC 3581 §4); streams answer on the
    /// connection the request came in on instead.
    pub(crate) to: SocketAddr,
}

/// Builds the response with `code` and `reason` to the request whose headers are `headers`,
/// received from `source`.
pub(crate) fn rejection(
    headers: &Headers,
    code: u16,
    reason: &str,
    source: SocketAddr,
) -> Rejection {
    let via = headers.top_via().ok();
    // RFC 3581 §4: a request with a value-less `rport` gets `rport=<source port>` and
    // `received` (even when sent-by already matches), and the response goes to the source
    // address and port.
    let rport_requested = via.as_ref().is_some_and(|v| v.rport().is_some());
    // RFC 3261 §18.2.1: `received` when sent-by differs from the packet's source address.
    let sent_by_is_source = via.as_ref().is_some_and(|v| match v.host {
        Host::Ipv4(a) => same_ip(IpAddr::V4(a), source.ip()),
        Host::Ipv6(a) => same_ip(IpAddr::V6(a), source.ip()),
        Host::Domain(_) => false,
    });
    let received = source.ip().to_canonical().to_string();
    let tag = stateless_tag(headers);
    let opts = ResponseOptions {
        // RFC 3261 §8.2.6.2: a response without a To tag gets one. Derived from the request,
        // so a retransmitted request gets the identical response without keeping state.
        to_tag: Some(&tag),
        received: (rport_requested || !sent_by_is_source).then_some(received.as_str()),
        rport: rport_requested.then_some(source.port()),
    };
    // `code` comes from `Problem::status`, always a valid 4xx/5xx.
    let status = StatusCode::new(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut out = Vec::with_capacity(512);
    MessageWriter::response_to(&mut out, headers, status, reason, &opts).finish(&[]);
    // RFC 3261 §18.2.2 for unreliable transports: without rport, to the received address and
    // the sent-by port (default 5060).
    let to = if rport_requested {
        source
    } else {
        let port = via.as_ref().and_then(|v| v.port).unwrap_or(5060);
        SocketAddr::new(source.ip(), port)
    };
    Rejection {
        bytes: Bytes::from(out),
        code,
        to,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// A To tag derived (FNV-1a) from Call-ID, From and CSeq: stable across retransmissions.
fn stateless_tag(headers: &Headers) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in [
        sbc_proto::sip::HeaderName::CallId,
        sbc_proto::sip::HeaderName::From,
        sbc_proto::sip::HeaderName::CSeq,
    ] {
        if let Some(h) = headers.first(name) {
            for &b in h.value {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    format!("sbc{hash:016x}")
}

#[cfg(test)]
mod tests {
    use sbc_proto::sip::{Limits, Message, ParseError};

    use super::*;

    fn rejected(text: &str) -> (Box<Headers>, u16, &'static str) {
        match Message::parse(Bytes::copy_from_slice(text.as_bytes()), &Limits::default()) {
            Err(ParseError::Rejected { headers, problem }) => {
                let (code, reason) = problem.status();
                (headers, code, reason)
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    const BAD: &str = "OPTIONS sip:x@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx;rport\r\n\
        From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\n\
        CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn rport_request_answered_to_source_with_received_and_rport() {
        let (headers, code, reason) = rejected(BAD);
        assert_eq!(code, 400);
        let source: SocketAddr = "127.0.0.1:40000".parse().expect("literal");
        let r = rejection(&headers, code, reason, source);
        assert_eq!(r.to, source);
        let text = std::str::from_utf8(&r.bytes).expect("ascii");
        assert!(
            text.starts_with("SIP/2.0 400 CSeq Method Does Not Match\r\n"),
            "{text}"
        );
        assert!(text.contains("received=127.0.0.1"), "{text}");
        assert!(text.contains("rport=40000"), "{text}");
        assert!(text.contains("To: <sip:x@example.com>;tag=sbc"), "{text}");
        // Stateless: a retransmission gets the same bytes.
        assert_eq!(rejection(&headers, code, reason, source).bytes, r.bytes);
    }

    #[test]
    fn without_rport_goes_to_sent_by_port() {
        let (headers, code, reason) = rejected(&BAD.replace(";rport", ""));
        let r = rejection(
            &headers,
            code,
            reason,
            "127.0.0.1:40000".parse().expect("literal"),
        );
        assert_eq!(r.to, "127.0.0.1:5070".parse().expect("literal"));
        let text = std::str::from_utf8(&r.bytes).expect("ascii");
        assert!(text.contains("received=127.0.0.1"), "{text}");
        assert!(!text.contains("rport="), "{text}");
    }
}
