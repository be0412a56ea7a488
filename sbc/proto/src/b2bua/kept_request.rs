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

use crate::sip::{Message, Method};

/// A transaction's request: whole until [`KeptRequest::release`], then its method, CSeq number
/// and whether it had a body.
#[derive(Debug)]
pub(super) struct KeptRequest {
    /// Boxed: released, it costs a pointer instead of an empty `Message` (168 bytes) for the
    /// 32 s every answered call's two INVITE transactions wait in Accepted.
    msg: Option<Box<Message>>,
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
            msg: Some(Box::new(msg)),
        }
    }

    /// The whole request, until the transaction had its final response.
    pub(super) fn message(&self) -> Option<&Message> {
        self.msg.as_deref()
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
        self.msg.as_ref().map_or(0, |m| m.as_bytes().len())
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
}
