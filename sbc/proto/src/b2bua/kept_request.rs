//! The request a transaction of the table was created for, held whole only while a later step
//! can still need it.
//!
//! RFC 6026 §7.1 and §7.2: once an INVITE transaction has its final response it only matches
//! retransmissions (its key, in the table) and resends what its state machine keeps (the last
//! response, or the ACK for a non-2xx). Everything the B2BUA builds from the whole request —
//! responses (final ones included: 487, 408, 503), the CANCEL, the ACK for a non-2xx, a
//! challenged request's retry, a failover's or redirect's new INVITE — happens before that. So
//! the parsed request (its buffer and header index, most of a transaction's memory) goes with
//! the final response, and the few facts read later stay: an answered call would otherwise keep
//! both INVITEs for Timer L/M's 32 s, which at 10,000 calls is most of the B2BUA's heap.

//!
//! A request the SBC sends itself is kept as the bytes it sent and parsed only when a later
//! step reads it whole (a CANCEL, the ACK of a non-2xx, a challenge's retry, a failover): an
//! answered call's INVITE and BYE never are, and parsing them at send time was a tenth of a
//! call's work in the core (`cargo xtask bench check`).

use std::cell::OnceCell;

use bytes::Bytes;

use super::SentRequest;
use crate::sip::{Limits, Message, Method};

/// The whole request while it is held.
#[derive(Debug)]
enum Whole {
    /// A received request, parsed by the transport.
    Parsed(Message),
    /// A request the SBC sent, parsed on first use. `None` inside: it did not parse (a
    /// builder's bug; the steps that need it then do without, as after a release).
    Sent {
        bytes: Bytes,
        parsed: OnceCell<Option<Message>>,
    },
}

/// A transaction's request: whole until [`KeptRequest::release`], then its method, CSeq number
/// and whether it had a body.
#[derive(Debug)]
pub(super) struct KeptRequest {
    /// Boxed: released, it costs a pointer instead of an empty `Message` (168 bytes) for the
    /// 32 s every answered call's two INVITE transactions wait in Accepted.
    msg: Option<Box<Whole>>,
    method: Method,
    cseq: u32,
    has_body: bool,
}

impl KeptRequest {
    /// Holds `msg` whole.
    pub(super) fn new(msg: Message) -> Self {
        Self {
            method: msg.method().unwrap_or(&msg.cseq().method).clone(),
            cseq: msg.cseq().seq,
            has_body: !msg.body().is_empty(),
            msg: Some(Box::new(Whole::Parsed(msg))),
        }
    }

    /// Holds a request the SBC sends, `bytes`, by what a scan of it told (`facts`); it is
    /// parsed the first time [`KeptRequest::message`] is asked for.
    pub(super) fn sent(bytes: Bytes, facts: SentRequest) -> Self {
        Self {
            method: facts.method,
            cseq: facts.cseq,
            has_body: facts.has_body,
            msg: Some(Box::new(Whole::Sent {
                bytes,
                parsed: OnceCell::new(),
            })),
        }
    }

    /// The whole request, until the transaction had its final response.
    pub(super) fn message(&self) -> Option<&Message> {
        match self.msg.as_deref()? {
            Whole::Parsed(m) => Some(m),
            Whole::Sent { bytes, parsed } => parsed
                .get_or_init(|| Message::parse(bytes.clone(), &Limits::default()).ok())
                .as_ref(),
        }
    }

    /// The request's method.
    pub(super) fn method(&self) -> &Method {
        &self.method
    }

    /// The request's CSeq number.
    pub(super) fn cseq(&self) -> u32 {
        self.cseq
    }

    /// Whether the request had a body (an INVITE without one asks for the offer: late offer).
    pub(super) fn has_body(&self) -> bool {
        self.has_body
    }

    /// Bytes of the message still held, for the memory cap.
    pub(super) fn held_bytes(&self) -> usize {
        match self.msg.as_deref() {
            None => 0,
            Some(Whole::Parsed(m)) => m.as_bytes().len(),
            Some(Whole::Sent { bytes, .. }) => bytes.len(),
        }
    }

    /// Lets the whole request go (the transaction has its final response).
    pub(super) fn release(&mut self) {
        self.msg = None;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    #[test]
    fn released_request_keeps_its_facts_only() {
        let text = "INVITE sip:4930111@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:100@pbx>;tag=a\r\nTo: <sip:4930111@sbc>\r\nCall-ID: c1\r\n\
             CSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let msg = Message::parse(Bytes::from(text), &Limits::default()).expect("valid");
        let mut r = KeptRequest::new(msg);
        assert_eq!(r.held_bytes(), text.len());
        r.release();
        assert!(r.message().is_none());
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(
            (r.method(), r.cseq(), r.has_body()),
            (&Method::Invite, 7, false)
        );
        assert!(
            std::mem::size_of::<KeptRequest>() <= 48,
            "released, it is small"
        );
    }

    #[test]
    fn a_sent_request_is_parsed_only_when_read_whole() {
        let text = "BYE sip:4930111@carrier SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs9\r\n\
             From: <sip:100@sbc>;tag=s1\r\nTo: <sip:4930111@carrier>;tag=c\r\nCall-ID: c2\r\n\
             CSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let facts = SentRequest::scan(text.as_bytes()).expect("scans");
        let mut r = KeptRequest::sent(Bytes::from(text), facts);
        assert_eq!(
            (r.method(), r.cseq(), r.has_body(), r.held_bytes()),
            (&Method::Bye, 3, false, text.len())
        );
        let Some(Whole::Sent { parsed, .. }) = r.msg.as_deref() else {
            panic!("kept as sent")
        };
        assert!(parsed.get().is_none(), "not parsed until read whole");
        assert_eq!(r.message().map(Message::call_id), Some("c2"));
        r.release();
        assert!(r.message().is_none());
        assert_eq!(r.held_bytes(), 0);
    }
}
