//! What tracing costs per call, deterministically: `trace_cost_per_call` offers 1,000 calls'
//! messages (14 each, with SDP where a call has it) as the transports and the signaling
//! driver do, and runs the trace task's part on them. Run it under callgrind with collection
//! on `traced_calls` only (the transport's own parse of received messages is not the trace's):
//!
//! ```text
//! cargo test --release -p sbc --lib --no-run
//! valgrind --tool=callgrind --toggle-collect='*traced_calls*' <test binary> \
//!     trace::cost_tests::trace_cost_per_call --exact --ignored --test-threads 1
//! ```
//!
//! (`bench/results/signaling-trace-2026-12-05.md`.)

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use sbc_proto::{
    net::{Side, TransportKind},
    sip::{Limits, Message},
};
use tokio::sync::mpsc;

use super::{Direction, Queued, TraceStore, Tracer};

const CALLS: u64 = 1_000;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
    m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

/// One message of a call: received (with the transport's parse) or sent.
struct Offered {
    side: Side,
    data: Bytes,
    parsed: Option<Message>,
}

/// The Content-Type line and the body of a message with or without SDP.
fn body(sdp: bool) -> (&'static str, &'static str) {
    if sdp {
        ("Content-Type: application/sdp\r\n", SDP)
    } else {
        ("", "")
    }
}

fn request(method: &str, call_id: &str, seq: u32, to_tag: &str, sdp: bool) -> String {
    let (kind, body) = body(sdp);
    format!(
        "{method} sip:4930111@192.0.2.20:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{call_id}-{seq}-{method}\r\n\
         Max-Forwards: 70\r\nFrom: \"100\" <sip:100@192.0.2.10>;tag=f-{call_id}\r\n\
         To: <sip:4930111@192.0.2.20>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
         Contact: <sip:100@192.0.2.10:5060>\r\nUser-Agent: PBX 1.0\r\n{kind}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn response(status: &str, method: &str, call_id: &str, seq: u32, sdp: bool) -> String {
    let (kind, body) = body(sdp);
    format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{call_id}-{seq}-{method}\r\n\
         From: \"100\" <sip:100@192.0.2.10>;tag=f-{call_id}\r\n\
         To: <sip:4930111@192.0.2.20>;tag=t-{call_id}\r\nCall-ID: {call_id}\r\n\
         CSeq: {seq} {method}\r\nContact: <sip:4930111@192.0.2.20:5060>\r\n{kind}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Call `i`'s messages in the order a B2BUA sees them.
fn call(i: u64) -> Vec<Offered> {
    let (inside, outside) = (format!("in-{i}"), format!("out-{i}"));
    let tag = |id: &str| format!(";tag=t-{id}");
    let received = |side, text: String| {
        let data = Bytes::from(text);
        let parsed = Some(Message::parse(data.clone(), &Limits::default()).expect("parses"));
        Offered { side, data, parsed }
    };
    let sent = |side, text: String| Offered {
        side,
        data: Bytes::from(text),
        parsed: None,
    };
    vec![
        received(Side::Inside, request("INVITE", &inside, 1, "", true)),
        sent(
            Side::Inside,
            response("100 Trying", "INVITE", &inside, 1, false),
        ),
        sent(Side::Outside, request("INVITE", &outside, 1, "", true)),
        received(
            Side::Outside,
            response("100 Trying", "INVITE", &outside, 1, false),
        ),
        received(
            Side::Outside,
            response("180 Ringing", "INVITE", &outside, 1, false),
        ),
        sent(
            Side::Inside,
            response("180 Ringing", "INVITE", &inside, 1, false),
        ),
        received(
            Side::Outside,
            response("200 OK", "INVITE", &outside, 1, true),
        ),
        sent(Side::Inside, response("200 OK", "INVITE", &inside, 1, true)),
        received(
            Side::Inside,
            request("ACK", &inside, 1, &tag(&inside), false),
        ),
        sent(
            Side::Outside,
            request("ACK", &outside, 1, &tag(&outside), false),
        ),
        received(
            Side::Inside,
            request("BYE", &inside, 2, &tag(&inside), false),
        ),
        sent(
            Side::Outside,
            request("BYE", &outside, 2, &tag(&outside), false),
        ),
        received(Side::Outside, response("200 OK", "BYE", &outside, 2, false)),
        sent(Side::Inside, response("200 OK", "BYE", &inside, 2, false)),
    ]
}

/// The measured part: every message offered as the transports do, the call's link and end
/// as the signaling driver queues them, each taken by the trace task's part at once.
#[inline(never)]
fn traced_calls(tracer: &Tracer, rx: &mut mpsc::UnboundedReceiver<Queued>, calls: &[Vec<Offered>]) {
    let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
    for (i, msgs) in (0u64..).zip(calls) {
        for (k, m) in msgs.iter().enumerate() {
            match &m.parsed {
                Some(p) => {
                    tracer.capture_received(m.side, TransportKind::Udp, (a, a), p, m.data.clone())
                }
                None => tracer.capture(
                    Direction::Out,
                    m.side,
                    TransportKind::Udp,
                    a,
                    a,
                    m.data.clone(),
                ),
            }
            if k == 2 {
                tracer.link(i, &format!("in-{i}"), &format!("out-{i}"));
            }
            while let Ok(q) = rx.try_recv() {
                tracer.inner.apply(q, false);
            }
        }
        tracer.call_ended(i, Instant::now());
        while let Ok(q) = rx.try_recv() {
            tracer.inner.apply(q, false);
        }
    }
}

#[test]
#[ignore = "a measurement: run under callgrind (module docs)"]
fn trace_cost_per_call() {
    let (tracer, _metrics, mut rx) = super::tests::tracer(1 << 16);
    let calls: Vec<Vec<Offered>> = (0..CALLS).map(call).collect();
    traced_calls(&tracer, &mut rx, &calls);
    let legs = tracer.with_store(TraceStore::len);
    assert_eq!(legs, usize::try_from(2 * CALLS).expect("small"));
    let messages: usize = tracer.with_store(|s| {
        // Both legs of the call: the Call-ID finds its call.
        s.by_call_id("in-0").iter().map(|l| l.messages.len()).sum()
    });
    assert_eq!(messages, 14, "every message of a call is kept");
}
