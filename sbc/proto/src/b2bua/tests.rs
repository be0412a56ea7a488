//! Call flows through the B2BUA with simulated time and a fake media relay: a scripted PBX on
//! the inside and carrier on the outside exchange real SIP text, and every test checks what each
//! side receives — rewritten headers, consistent tags and CSeqs, and no leak across sides.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::*;
use crate::{media::FakeMedia, net::TransportKind, transaction::TimerConfig};

const PBX: &str = "10.0.0.10:5070";
const CARRIER: &str = "198.51.100.7:5090";
/// Values only the inside knows: none may appear in anything sent to the carrier.
const INSIDE_SECRETS: [&str; 6] = [
    "10.0.0.",
    "pbx-call-1",
    "ptag1",
    "z9hG4bKpbx",
    "PBX-Model-9",
    "pbx.lan",
];
/// Values only the outside knows: none may appear in anything sent to the PBX.
const OUTSIDE_SECRETS: [&str; 5] = [
    "198.51.100.",
    "car-call-9",
    "ctag1",
    "z9hG4bKcar",
    "Carrier-Switch-3",
];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn config() -> B2buaConfig {
    B2buaConfig {
        timers: TimerConfig::default(),
        inside: LocalAddr {
            addr: addr("10.0.0.1:5060"),
            transport: TransportKind::Udp,
        },
        outside: LocalAddr {
            addr: addr("203.0.113.1:5080"),
            transport: TransportKind::Udp,
        },
        pbx: Target {
            addr: addr(PBX),
            transport: TransportKind::Udp,
        },
        trunks: vec![TrunkConfig::new(
            "carrier",
            Target {
                addr: addr(CARRIER),
                transport: TransportKind::Udp,
            },
        )],
        routes: Vec::new(),
        inbound: Vec::new(),
        listeners: Vec::new(),
        limits: crate::limit::CallLimits::default(),
        retry_after_s: 5,
        user_agent: "sbc-test".into(),
        pass_headers: B2buaConfig::default_pass_headers(),
        max_call_duration: None,
        pbx_auth: None,
        session_timer: SessionTimerConfig::default(),
        max_redirects: 5,
        caps: Caps::default(),
        sdp: crate::sdp::SdpPolicy {
            own_addresses: vec![addr("10.0.0.1:0").ip(), addr("203.0.113.1:0").ip()],
            ..crate::sdp::SdpPolicy::default()
        },
        pbx_register: RegisterPolicy::Reject,
        max_pending_challenges: 1000,
    }
}

struct Sim {
    sbc: B2bua,
    media: FakeMedia,
    now: Instant,
    t0: Instant,
    to_pbx: Vec<Message>,
    to_carrier: Vec<Message>,
    /// Addresses inside the SBC may send to (the PBX, inbound route targets).
    pbx_targets: Vec<SocketAddr>,
}

fn pbx() -> Peer {
    Peer {
        side: Side::Inside,
        transport: TransportKind::Udp,
        addr: addr(PBX),
        conn: None,
        local: None,
    }
}

fn carrier() -> Peer {
    Peer {
        side: Side::Outside,
        transport: TransportKind::Udp,
        addr: addr(CARRIER),
        conn: None,
        local: None,
    }
}

impl Sim {
    fn new() -> Self {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        Self {
            sbc: B2bua::new(config(), Rng::from_test_seed(7)),
            media: FakeMedia::new(
                addr("10.0.0.1:0").ip(),
                addr("203.0.113.1:0").ip(),
                10_000,
                20_000,
            ),
            now: t0,
            t0,
            to_pbx: Vec::new(),
            to_carrier: Vec::new(),
            pbx_targets: vec![addr(PBX)],
        }
    }

    fn deliver(&mut self, from: Peer, text: &str) {
        let msg = Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
            .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"));
        self.sbc
            .handle_message(self.now, from, msg, &mut self.media);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(t) = self.sbc.poll_transmit() {
            let text = String::from_utf8_lossy(&t.data).to_string();
            let msg = Message::parse(t.data.clone(), &Limits::default())
                .unwrap_or_else(|e| panic!("SBC sent an unparseable message: {e}\n{text}"));
            match t.to.side {
                Side::Inside => {
                    for s in OUTSIDE_SECRETS {
                        assert!(!text.contains(s), "leak of {s:?} to the PBX:\n{text}");
                    }
                    assert!(
                        self.pbx_targets.contains(&t.to.addr),
                        "PBX messages go to its observed address, not {}",
                        t.to.addr
                    );
                    self.to_pbx.push(msg);
                }
                Side::Outside => {
                    for s in INSIDE_SECRETS {
                        assert!(!text.contains(s), "leak of {s:?} to the carrier:\n{text}");
                    }
                    self.to_carrier.push(msg);
                }
            }
        }
    }

    /// Advances virtual time to `at`, firing every timer on the way.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.sbc.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.sbc.handle_timeout(self.now, &mut self.media);
            self.collect();
        }
        self.now = until;
    }

    fn take_pbx(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.to_pbx)
    }

    fn take_carrier(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.to_carrier)
    }

    /// Runs out every timer and checks nothing is left behind.
    fn assert_clean(&mut self) {
        self.advance(Duration::from_secs(300));
        assert_eq!(
            self.sbc.stats(),
            Stats::default(),
            "state left after the call"
        );
        assert!(
            self.media.sessions.is_empty(),
            "media sessions left: {:?}",
            self.media.sessions
        );
        let _ = self.t0;
    }
}

fn hdr(m: &Message, name: HeaderName) -> String {
    msg::first_value(m.headers(), name).unwrap_or("").to_owned()
}

fn status(m: &Message) -> u16 {
    m.status().map_or(0, |s| s.as_u16())
}

const SDP_PBX: &str = "v=0
o=pbx 1234 1 IN IP4 10.0.0.10
s=pbx.lan call
c=IN IP4 10.0.0.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

const SDP_CARRIER: &str = "v=0
o=switch 777 1 IN IP4 198.51.100.20
s=-
c=IN IP4 198.51.100.20
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

fn with_body(head: &str, body: &str) -> String {
    let body = body.replace('\n', "\r\n");
    format!(
        "{head}Content-Type: application/sdp\nContent-Length: {}\n\n{}",
        body.len(),
        body.replace("\r\n", "\n")
    )
}

fn pbx_invite(branch: &str, sdp: Option<&str>) -> String {
    let head = format!(
        "INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={branch};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>
Call-ID: pbx-call-1
CSeq: 10 INVITE
Contact: <sip:100@10.0.0.10:5070>
User-Agent: PBX-Model-9
P-Asserted-Identity: \"Alice\" <sip:+15550001000@pbx.lan>
Supported: replaces, 100rel, timer
X-Internal-Secret: pbx.lan
"
    );
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

/// A response from the carrier to the SBC's outgoing request `req`.
fn carrier_response(
    req: &Message,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    sdp: Option<&str>,
) -> String {
    let mut head = format!("SIP/2.0 {code} {reason}\n");
    for h in req.headers().all(HeaderName::Via) {
        head.push_str(&format!("Via: {}\n", h.value_str().unwrap_or("")));
    }
    head.push_str(&format!("From: {}\n", hdr(req, HeaderName::From)));
    let to = hdr(req, HeaderName::To);
    match tag {
        Some(t) if !to.contains("tag=") => head.push_str(&format!("To: {to};tag={t}\n")),
        _ => head.push_str(&format!("To: {to}\n")),
    }
    head.push_str(&format!(
        "Call-ID: {}\nCSeq: {}\n",
        req.call_id(),
        hdr(req, HeaderName::CSeq)
    ));
    if code > 100 && code < 300 {
        head.push_str("Contact: <sip:gw@198.51.100.20:5060>\nServer: Carrier-Switch-3\n");
    }
    if code == 503 {
        head.push_str("Retry-After: 120\n");
    }
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

/// PBX → carrier call up to the confirmed state. Returns the INVITE the carrier saw.
fn establish_outbound(sim: &mut Sim) -> Message {
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let pbx_msgs = sim.take_pbx();
    assert_eq!(pbx_msgs.len(), 1);
    assert_eq!(status(&pbx_msgs[0]), 100, "100 Trying at once");
    let out = sim.take_carrier();
    assert_eq!(out.len(), 1);
    let invite = out[0].clone();
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 100, "Trying", None, None),
    );
    assert!(sim.take_pbx().is_empty(), "100 is hop-by-hop");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
    );
    let ringing = sim.take_pbx();
    assert_eq!(ringing.len(), 1);
    assert_eq!(status(&ringing[0]), 180);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx();
    assert_eq!(ok.len(), 1);
    assert_eq!(status(&ok[0]), 200);
    let acks = sim.take_carrier();
    assert_eq!(acks.len(), 1, "ACK for the carrier's 2xx");
    assert_eq!(acks[0].method(), Some(&Method::Ack));
    let our_tag = ok[0]
        .to()
        .tag()
        .expect("2xx to the PBX has our To tag")
        .to_owned();
    sim.deliver(
        pbx(),
        &format!(
            "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 10 ACK
Content-Length: 0

"
        ),
    );
    assert!(
        sim.take_carrier().is_empty(),
        "the PBX's ACK is not relayed (already ACKed)"
    );
    invite
}

#[test]
fn outbound_call_rewrites_everything_and_hides_the_inside() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let trying = sim.take_pbx();
    assert_eq!(status(&trying[0]), 100);
    assert_eq!(trying[0].top_via().branch(), Some("z9hG4bKpbx1"));
    let inv = sim.take_carrier().remove(0);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    assert_eq!(
        inv.top_via().branch().map(|b| b.starts_with("z9hG4bK")),
        Some(true)
    );
    assert_eq!(inv.headers().count(HeaderName::Via), 1, "only our own Via");
    assert_eq!(inv.max_forwards(), Some(69));
    assert_eq!(inv.from().uri_str, "sip:100@203.0.113.1");
    assert_eq!(inv.from().display_name, Some("\"Alice\""));
    assert_eq!(inv.to().uri_str, "sip:15551234567@198.51.100.7:5090");
    assert_eq!(hdr(&inv, HeaderName::Contact), "<sip:sbc@203.0.113.1:5080>");
    assert_eq!(hdr(&inv, HeaderName::UserAgent), "sbc-test");
    assert_eq!(
        inv.headers()
            .all_named("P-Asserted-Identity")
            .next()
            .and_then(|h| h.value_str()),
        Some("\"Alice\" <sip:+15550001000@203.0.113.1>"),
        "identity kept, host rewritten"
    );
    assert_eq!(
        hdr(&inv, HeaderName::Supported),
        "100rel, timer",
        "the SBC's own options on this leg, not the PBX's list (replaces is not mapped)"
    );
    assert!(
        inv.headers()
            .all_named("X-Internal-Secret")
            .next()
            .is_none(),
        "not allowlisted"
    );
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(body.contains("c=IN IP4 203.0.113.1\r\n"), "{body}");
    assert!(body.contains("m=audio 10002 RTP/AVP 0 8 101\r\n"), "{body}");
    assert!(
        body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "other lines kept: {body}"
    );
}

#[test]
fn outbound_call_connects_and_bye_from_pbx_ends_it_cleanly() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    assert_eq!(sim.sbc.stats().calls, 1);
    let info = sim.sbc.calls();
    assert_eq!(info.len(), 1);
    assert!(info[0].answered && info[0].answered_at.is_some());
    assert_eq!(info[0].from, Side::Inside);
    assert_eq!(info[0].legs[0].call_id, "pbx-call-1");
    assert_eq!(info[0].legs[1].call_id, invite.call_id());
    assert_eq!(info[0].legs[1].remote_tag.as_deref(), Some("ctag1"));
    assert_eq!(sim.media.sessions.len(), 1);
    let session = sim.media.sessions.values().next().expect("one session");
    assert!(session.committed, "answer committed to the relay");
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take_pbx().is_empty(),
        "2xx not retransmitted after the ACK"
    );

    let our_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag.clone())
        .unwrap_or_default();
    sim.deliver(
        pbx(),
        &format!(
            "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
        ),
    );
    let bye = sim.take_carrier().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(
        bye.request_uri_str(),
        Some("sip:gw@198.51.100.20:5060"),
        "remote target = carrier Contact"
    );
    assert_eq!(bye.call_id(), invite.call_id(), "outside Call-ID");
    assert_eq!(bye.cseq().seq, 2, "outside CSeq space");
    assert_eq!(bye.from().tag(), invite.from().tag());
    assert_eq!(bye.to().tag(), Some("ctag1"));
    assert!(sim.media.sessions.is_empty(), "media released on BYE");
    sim.deliver(carrier(), &carrier_response(&bye, 200, "OK", None, None));
    let ok = sim.take_pbx();
    assert_eq!(status(&ok[0]), 200);
    assert_eq!(ok[0].cseq().seq, 11);
    assert!(sim.sbc.poll_event().is_some());
    sim.assert_clean();
}

#[test]
fn inbound_call_from_carrier_reaches_pbx_and_bye_from_carrier() {
    let mut sim = Sim::new();
    let invite = with_body(
        "INVITE sip:+15557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar1;rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
User-Agent: Carrier-Switch-3
Record-Route: <sip:198.51.100.7:5090;lr>
",
        SDP_CARRIER,
    );
    sim.deliver(carrier(), &invite);
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(
        to_pbx.request_uri_str(),
        Some("sip:+15557654321@10.0.0.10:5070")
    );
    assert_eq!(to_pbx.from().uri_str, "sip:+15550009999@10.0.0.1");
    assert!(String::from_utf8_lossy(to_pbx.body()).contains("c=IN IP4 10.0.0.1\r\n"));
    // The PBX answers.
    let answer = format!(
        "SIP/2.0 200 OK
Via: {}
From: {}
To: {};tag=ptag1
Call-ID: {}
CSeq: 1 INVITE
Contact: <sip:100@10.0.0.10:5070>
User-Agent: PBX-Model-9
",
        hdr(&to_pbx, HeaderName::Via),
        hdr(&to_pbx, HeaderName::From),
        hdr(&to_pbx, HeaderName::To),
        to_pbx.call_id()
    );
    sim.deliver(pbx(), &with_body(&answer, SDP_PBX));
    let ok = sim.take_carrier().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(ok.call_id(), "car-call-9");
    assert_eq!(ok.top_via().branch(), Some("z9hG4bKcar1"));
    let ack_to_pbx = sim.take_pbx();
    assert_eq!(ack_to_pbx[0].method(), Some(&Method::Ack));
    assert_eq!(
        ack_to_pbx[0].request_uri_str(),
        Some("sip:100@10.0.0.10:5070")
    );
    let our_tag = ok.to().tag().expect("tag").to_owned();
    sim.deliver(
        carrier(),
        &format!(
            "ACK sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar2;rport
Route: <sip:198.51.100.7:5090;lr>
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>;tag={our_tag}
Call-ID: car-call-9
CSeq: 1 ACK
Content-Length: 0

"
        ),
    );
    sim.deliver(
        carrier(),
        &format!(
            "BYE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar3;rport
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>;tag={our_tag}
Call-ID: car-call-9
CSeq: 2 BYE
Content-Length: 0

"
        ),
    );
    let bye = sim.take_pbx().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.to().tag(), Some("ptag1"));
    sim.deliver(
        pbx(),
        &format!(
            "SIP/2.0 200 OK
Via: {}
From: {}
To: {}
Call-ID: {}
CSeq: {}
Content-Length: 0

",
            hdr(&bye, HeaderName::Via),
            hdr(&bye, HeaderName::From),
            hdr(&bye, HeaderName::To),
            bye.call_id(),
            hdr(&bye, HeaderName::CSeq)
        ),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 200);
    sim.assert_clean();
}

#[test]
fn cancel_before_answer_gives_200_and_487_and_cancels_the_carrier() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let invite = sim.take_carrier().remove(0);
    sim.take_pbx();
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
    );
    sim.take_pbx();
    sim.deliver(
        pbx(),
        "CANCEL sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx1;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>
Call-ID: pbx-call-1
CSeq: 10 CANCEL
Content-Length: 0

",
    );
    let to_pbx = sim.take_pbx();
    let codes: Vec<_> = to_pbx
        .iter()
        .map(|m| (status(m), m.cseq().method.clone()))
        .collect();
    assert_eq!(codes, [(200, Method::Cancel), (487, Method::Invite)]);
    let cancel = sim.take_carrier().remove(0);
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(
        cancel.top_via().branch(),
        invite.top_via().branch(),
        "CANCEL shares the INVITE's branch"
    );
    assert!(sim.media.sessions.is_empty(), "media released");
    sim.deliver(
        carrier(),
        &carrier_response(&cancel, 200, "OK", Some("ctag1"), None),
    );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 487, "Request Terminated", Some("ctag1"), None),
    );
    let ack = sim.take_carrier();
    assert_eq!(ack.len(), 1, "hop-by-hop ACK for the 487");
    assert_eq!(ack[0].method(), Some(&Method::Ack));
    assert!(
        sim.take_pbx().is_empty(),
        "the carrier's 487 is not relayed twice"
    );
    // The PBX ACKs our 487 on its INVITE transaction.
    sim.deliver(
        pbx(),
        "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx1;rport
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag=x
Call-ID: pbx-call-1
CSeq: 10 ACK
Content-Length: 0

",
    );
    sim.assert_clean();
}

#[test]
fn busy_and_unavailable_are_relayed_with_retry_after_and_acked_hop_by_hop() {
    for (code, reason) in [
        (486, "Busy Here"),
        (503, "Service Unavailable"),
        (603, "Decline"),
        (404, "Not Found"),
    ] {
        let mut sim = Sim::new();
        sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
        sim.take_pbx();
        let invite = sim.take_carrier().remove(0);
        sim.deliver(
            carrier(),
            &carrier_response(&invite, code, reason, Some("ctag1"), None),
        );
        let ack = sim.take_carrier();
        assert_eq!(ack[0].method(), Some(&Method::Ack), "{code}");
        assert_eq!(
            ack[0].top_via().branch(),
            invite.top_via().branch(),
            "non-2xx ACK reuses the branch"
        );
        let r = sim.take_pbx().remove(0);
        assert_eq!(status(&r), code);
        assert_eq!(r.reason_phrase(), Some(reason));
        if code == 503 {
            assert_eq!(
                r.headers()
                    .all_named("Retry-After")
                    .next()
                    .and_then(|h| h.value_str()),
                Some("120")
            );
        }
        assert!(sim.media.sessions.is_empty());
        assert_eq!(sim.sbc.stats().calls, 0);
        // No ACK from the PBX: Timer G retransmits, Timer H gives up; nothing is leaked.
        sim.advance(Duration::from_secs(1));
        assert!(
            sim.take_pbx().iter().all(|m| status(m) == code),
            "G retransmits the final"
        );
        sim.assert_clean();
    }
}

#[test]
fn no_answer_times_out_with_408_to_the_pbx() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    sim.advance(Duration::from_secs(33));
    let carrier_msgs = sim.take_carrier();
    assert_eq!(carrier_msgs.len(), 7, "INVITE + 6 Timer A retransmissions");
    let r = sim.take_pbx();
    // The 408 goes out at 64·T1; the PBX never ACKs it here, so Timer G repeats it.
    assert!(
        !r.is_empty() && r.iter().all(|m| status(m) == 408),
        "{:?}",
        r.iter().map(status).collect::<Vec<_>>()
    );
    sim.assert_clean();
}

#[test]
fn retransmitted_invite_is_absorbed_not_relayed_twice() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    assert_eq!(sim.take_carrier().len(), 1);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(
        sim.take_pbx().iter().map(status).collect::<Vec<_>>(),
        [100],
        "100 resent"
    );
    assert!(sim.take_carrier().is_empty());
    assert_eq!(sim.media.sessions.len(), 1, "one allocation");
}

#[test]
fn merged_request_gets_482_and_max_forwards_zero_gets_483() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx2", Some(SDP_PBX)));
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [482]);
    let mf0 = pbx_invite("z9hG4bKpbx3", None)
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("pbx-call-1", "pbx-call-2");
    sim.deliver(pbx(), &mf0);
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [483]);
}

#[test]
fn options_is_answered_by_the_sbc_and_unknown_dialog_gets_481() {
    let mut sim = Sim::new();
    sim.deliver(
        carrier(),
        "OPTIONS sip:203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcaropt
Max-Forwards: 70
From: <sip:ping@198.51.100.7>;tag=ctag1
To: <sip:203.0.113.1>
Call-ID: car-call-9
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 200);
    assert!(hdr(&r, HeaderName::Allow).contains("INVITE"));
    assert!(sim.take_pbx().is_empty(), "OPTIONS is not relayed");
    sim.deliver(
        pbx(),
        "BYE sip:x@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxz
From: <sip:100@pbx.lan>;tag=ptag1
To: <sip:200@10.0.0.1>;tag=nope
Call-ID: pbx-call-1
CSeq: 5 BYE
Content-Length: 0

",
    );
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [481]);
}

#[test]
fn missing_ack_ends_the_call_with_bye_on_both_legs() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    sim.take_carrier();
    sim.advance(Duration::from_secs(40));
    let pbx_msgs = sim.take_pbx();
    assert!(
        pbx_msgs.iter().filter(|m| status(m) == 200).count() >= 6,
        "2xx retransmitted"
    );
    assert!(
        pbx_msgs.iter().any(|m| m.method() == Some(&Method::Bye)),
        "BYE to the PBX"
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye)),
        "BYE to the carrier"
    );
    let mut ended = None;
    while let Some(e) = sim.sbc.poll_event() {
        if let Event::CallEnded { reason, .. } = e {
            ended = Some(reason);
        }
    }
    assert_eq!(ended, Some(EndReason::NoAck));
    sim.assert_clean();
}

#[test]
fn end_call_from_the_api_sends_bye_on_both_legs() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let id = sim.sbc.calls()[0].id;
    assert!(sim.sbc.end_call(sim.now, id, &mut sim.media));
    assert!(
        !sim.sbc.end_call(sim.now, id, &mut sim.media),
        "already gone"
    );
    sim.collect();
    assert!(
        sim.take_pbx()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    sim.assert_clean();
}

#[test]
fn media_timeout_sends_bye_both_ways() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let session = *sim.media.sessions.keys().next().expect("session");
    sim.media.inject(MediaEvent::Timeout(session));
    sim.advance(Duration::from_millis(1));
    sim.sbc.handle_timeout(sim.now, &mut sim.media);
    sim.collect();
    assert!(
        sim.take_pbx()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    sim.assert_clean();
}

#[test]
fn reinvite_hold_from_carrier_is_relayed_and_rejected_reinvite_keeps_the_call() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let our_out_tag = invite.from().tag().unwrap_or("").to_owned();
    let hold = SDP_CARRIER
        .replace("a=sendrecv", "a=sendonly")
        .replace("777 1", "777 2");
    let reinvite = |branch: &str, cseq: u32| {
        with_body(
            &format!(
                "INVITE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch={branch};rport
Max-Forwards: 70
From: <sip:15551234567@198.51.100.7:5090>;tag=ctag1
To: <sip:100@203.0.113.1>;tag={our_out_tag}
Call-ID: {}
CSeq: {cseq} INVITE
Contact: <sip:gw@198.51.100.20:5060>
",
                invite.call_id()
            ),
            &hold,
        )
    };
    sim.deliver(carrier(), &reinvite("z9hG4bKcarre1", 5));
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(to_pbx.method(), Some(&Method::Invite));
    assert_eq!(to_pbx.call_id(), "pbx-call-1");
    assert_eq!(to_pbx.to().tag(), Some("ptag1"));
    assert_eq!(to_pbx.request_uri_str(), Some("sip:100@10.0.0.10:5070"));
    let body = String::from_utf8_lossy(to_pbx.body()).to_string();
    assert!(
        body.contains("a=sendonly") && body.contains("c=IN IP4 10.0.0.1\r\n"),
        "{body}"
    );
    // The PBX rejects it: relayed, and the call stays up.
    let reject = format!(
        "SIP/2.0 488 Not Acceptable Here
Via: {}
From: {}
To: {}
Call-ID: pbx-call-1
CSeq: {}
Content-Length: 0

",
        hdr(&to_pbx, HeaderName::Via),
        hdr(&to_pbx, HeaderName::From),
        hdr(&to_pbx, HeaderName::To),
        hdr(&to_pbx, HeaderName::CSeq)
    );
    sim.deliver(pbx(), &reject);
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [488]);
    assert_eq!(
        sim.take_pbx()
            .iter()
            .map(|m| m.method().cloned())
            .collect::<Vec<_>>(),
        [Some(Method::Ack)]
    );
    assert_eq!(
        sim.sbc.stats().calls,
        1,
        "a rejected re-INVITE does not end the call"
    );
    // Second try: accepted.
    sim.deliver(carrier(), &reinvite("z9hG4bKcarre2", 6));
    sim.take_carrier();
    let to_pbx = sim.take_pbx().remove(0);
    let ok = format!(
        "SIP/2.0 200 OK
Via: {}
From: {}
To: {}
Call-ID: pbx-call-1
CSeq: {}
Contact: <sip:100@10.0.0.10:5070>
",
        hdr(&to_pbx, HeaderName::Via),
        hdr(&to_pbx, HeaderName::From),
        hdr(&to_pbx, HeaderName::To),
        hdr(&to_pbx, HeaderName::CSeq)
    );
    sim.deliver(
        pbx(),
        &with_body(
            &ok,
            &SDP_PBX
                .replace("a=sendrecv", "a=recvonly")
                .replace("1234 1", "1234 2"),
        ),
    );
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 200);
    assert!(String::from_utf8_lossy(r.body()).contains("a=recvonly"));
    assert_eq!(
        sim.take_pbx()
            .iter()
            .map(|m| m.method().cloned())
            .collect::<Vec<_>>(),
        [Some(Method::Ack)]
    );
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn reinvite_glare_gets_491() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let our_in_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag.clone())
        .unwrap_or_default();
    let our_out_tag = invite.from().tag().unwrap_or("").to_owned();
    // The carrier re-INVITEs; the SBC relays it to the PBX and waits.
    sim.deliver(
        carrier(),
        &with_body(
            &format!(
                "INVITE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarg1
From: <sip:15551234567@198.51.100.7:5090>;tag=ctag1
To: <sip:100@203.0.113.1>;tag={our_out_tag}
Call-ID: {}
CSeq: 5 INVITE
",
                invite.call_id()
            ),
            SDP_CARRIER,
        ),
    );
    sim.take_carrier();
    sim.take_pbx();
    // Meanwhile the PBX re-INVITEs too: glare on the inside leg.
    sim.deliver(
        pbx(),
        &with_body(
            &format!(
                "INVITE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxg1
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_in_tag}
Call-ID: pbx-call-1
CSeq: 12 INVITE
"
            ),
            SDP_PBX,
        ),
    );
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [491]);
}

#[test]
fn late_offer_answer_travels_in_the_ack() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", None));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    assert!(invite.body().is_empty());
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx().remove(0);
    assert!(
        String::from_utf8_lossy(ok.body()).contains("c=IN IP4 10.0.0.1\r\n"),
        "offer in the 2xx"
    );
    assert!(sim.take_carrier().is_empty(), "ACK waits for the answer");
    let tag = ok.to().tag().unwrap_or("").to_owned();
    sim.deliver(
        pbx(),
        &with_body(
            &format!(
                "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: 10 ACK
"
            ),
            SDP_PBX,
        ),
    );
    let ack = sim.take_carrier().remove(0);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert!(
        String::from_utf8_lossy(ack.body()).contains("c=IN IP4 203.0.113.1\r\n"),
        "answer in the ACK"
    );
}

#[test]
fn stray_responses_and_acks_are_dropped_and_counted() {
    let mut sim = Sim::new();
    sim.deliver(
        carrier(),
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 203.0.113.1:5080;branch=z9hG4bKnothing
From: <sip:a@b>;tag=1
To: <sip:c@d>;tag=2
Call-ID: car-call-9
CSeq: 1 INVITE
Content-Length: 0

",
    );
    sim.deliver(
        pbx(),
        "ACK sip:x@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxq
From: <sip:100@pbx.lan>;tag=ptag1
To: <sip:200@10.0.0.1>;tag=zz
Call-ID: pbx-call-1
CSeq: 1 ACK
Content-Length: 0

",
    );
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    let drops: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event()).collect();
    assert_eq!(
        drops,
        [
            Event::Dropped {
                reason: "stray_response"
            },
            Event::Dropped {
                reason: "stray_ack"
            }
        ]
    );
}

#[test]
fn ten_thousand_mixed_calls_leave_nothing_behind() {
    let mut sim = Sim::new();
    // 10,000 calls in two seconds: far above the default transaction cap (`caps.rs`).
    sim.sbc.set_config(B2buaConfig {
        caps: Caps {
            max_transactions: 1_000_000,
            ..Caps::default()
        },
        ..config()
    });
    for i in 0..10_000u32 {
        let call_id = format!("pbx-call-1-{i}");
        let text =
            pbx_invite(&format!("z9hG4bKpbx{i}"), Some(SDP_PBX)).replace("pbx-call-1", &call_id);
        sim.deliver(pbx(), &text);
        let invite = sim.take_carrier().remove(0);
        sim.take_pbx();
        match i % 4 {
            0 => {
                // answered, then BYE from the carrier
                sim.deliver(
                    carrier(),
                    &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
                );
                sim.take_carrier();
                let ok = sim.take_pbx().remove(0);
                let tag = ok.to().tag().unwrap_or("").to_owned();
                sim.deliver(pbx(), &format!("ACK sip:sbc@10.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxa{i}\nFrom: <sip:100@pbx.lan>;tag=ptag1\nTo: <sip:x@10.0.0.1>;tag={tag}\nCall-ID: {call_id}\nCSeq: 10 ACK\nContent-Length: 0\n\n"));
                sim.deliver(carrier(), &format!("BYE sip:sbc@203.0.113.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarb{i}\nFrom: <sip:x@198.51.100.7>;tag=ctag1\nTo: <sip:y@203.0.113.1>;tag={}\nCall-ID: {}\nCSeq: 3 BYE\nContent-Length: 0\n\n", invite.from().tag().unwrap_or(""), invite.call_id()));
                let bye = sim.take_pbx().remove(0);
                sim.deliver(pbx(), &format!("SIP/2.0 200 OK\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: {}\nContent-Length: 0\n\n", hdr(&bye, HeaderName::Via), hdr(&bye, HeaderName::From), hdr(&bye, HeaderName::To), bye.call_id(), hdr(&bye, HeaderName::CSeq)));
                sim.take_carrier();
            }
            1 => {
                sim.deliver(
                    carrier(),
                    &carrier_response(&invite, 486, "Busy Here", Some("ctag1"), None),
                );
                sim.take_carrier();
                sim.take_pbx();
                sim.deliver(pbx(), &format!("ACK sip:15551234567@10.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{i};rport\nFrom: <sip:100@pbx.lan>;tag=ptag1\nTo: <sip:x@10.0.0.1>;tag=t\nCall-ID: {call_id}\nCSeq: 10 ACK\nContent-Length: 0\n\n"));
            }
            2 => {
                sim.deliver(
                    carrier(),
                    &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
                );
                sim.take_pbx();
                sim.deliver(pbx(), &format!("CANCEL sip:15551234567@10.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{i};rport\nFrom: <sip:100@pbx.lan>;tag=ptag1\nTo: <sip:15551234567@10.0.0.1>\nCall-ID: {call_id}\nCSeq: 10 CANCEL\nContent-Length: 0\n\n"));
                sim.take_pbx();
                let cancel = sim.take_carrier().remove(0);
                sim.deliver(
                    carrier(),
                    &carrier_response(&cancel, 200, "OK", Some("ctag1"), None),
                );
                sim.deliver(
                    carrier(),
                    &carrier_response(&invite, 487, "Request Terminated", Some("ctag1"), None),
                );
                sim.take_carrier();
            }
            _ => {} // unanswered: Timer B ends it
        }
        if i % 500 == 0 {
            sim.advance(Duration::from_millis(100));
            sim.take_pbx();
            sim.take_carrier();
        }
    }
    sim.to_pbx.clear();
    sim.to_carrier.clear();
    sim.assert_clean();
}

/// A reliable 180 (RFC 3262) from the carrier, as the carrier sends it for `invite`.
fn reliable_180(invite: &Message, rseq: u32) -> String {
    carrier_response(invite, 180, "Ringing", Some("ctag1"), None).replace(
        "Content-Length: 0",
        &format!("Require: 100rel\nRSeq: {rseq}\nContent-Length: 0"),
    )
}

#[test]
fn reliable_provisional_is_relayed_reliably_and_prack_is_mapped() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &reliable_180(&invite, 7));
    let r = sim.take_pbx().remove(0);
    assert_eq!(status(&r), 180);
    assert_eq!(hdr(&r, HeaderName::Require), "100rel");
    let ours: u32 = hdr(&r, HeaderName::RSeq).parse().expect("our RSeq");
    assert!(sim.take_carrier().is_empty(), "the PBX PRACKs, not the SBC");
    // Unacknowledged: retransmitted to the PBX (T1); the carrier's own retransmission of its
    // 180 is not relayed again.
    sim.deliver(carrier(), &reliable_180(&invite, 7));
    assert!(sim.take_pbx().is_empty());
    sim.advance(Duration::from_millis(600));
    let again = sim.take_pbx();
    assert_eq!(again.len(), 1);
    assert_eq!(hdr(&again[0], HeaderName::RSeq), ours.to_string());
    // The PBX PRACKs: the carrier gets a PRACK for its own RSeq and INVITE CSeq.
    let tag = r.to().tag().unwrap_or("").to_owned();
    sim.deliver(
        pbx(),
        &format!(
            "PRACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxpr1;rport
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: 11 PRACK
RAck: {ours} 10 INVITE
Content-Length: 0

"
        ),
    );
    let prack = sim.take_carrier().remove(0);
    assert_eq!(prack.method(), Some(&Method::Prack));
    assert_eq!(
        hdr(&prack, HeaderName::RAck),
        format!("7 {} INVITE", invite.cseq().seq)
    );
    assert_eq!(prack.to().tag(), Some("ctag1"));
    sim.deliver(carrier(), &carrier_response(&prack, 200, "OK", None, None));
    let ok = sim.take_pbx().remove(0);
    assert_eq!(
        (status(&ok), ok.cseq().method.clone()),
        (200, Method::Prack)
    );
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take_pbx().is_empty(),
        "no retransmission after the PRACK"
    );
}

#[test]
fn reliable_provisional_to_a_caller_without_100rel_is_pracked_by_the_sbc() {
    let mut sim = Sim::new();
    let text = pbx_invite("z9hG4bKpbx1", Some(SDP_PBX))
        .replace("Supported: replaces, 100rel, timer\n", "");
    sim.deliver(pbx(), &text);
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &reliable_180(&invite, 3));
    let r = sim.take_pbx().remove(0);
    assert_eq!(status(&r), 180);
    assert!(
        r.headers().first(HeaderName::RSeq).is_none(),
        "an ordinary 180 for the PBX"
    );
    let prack = sim.take_carrier().remove(0);
    assert_eq!(prack.method(), Some(&Method::Prack));
    assert_eq!(
        hdr(&prack, HeaderName::RAck),
        format!("3 {} INVITE", invite.cseq().seq)
    );
}

#[test]
fn prack_for_an_unknown_rseq_gets_481() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let trying = sim.take_pbx().remove(0);
    let _ = trying;
    let invite = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &reliable_180(&invite, 7));
    let r = sim.take_pbx().remove(0);
    let tag = r.to().tag().unwrap_or("").to_owned();
    sim.deliver(
        pbx(),
        &format!(
            "PRACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxpr9;rport
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: 11 PRACK
RAck: 424242 10 INVITE
Content-Length: 0

"
        ),
    );
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [481]);
    assert!(sim.take_carrier().is_empty());
}

#[test]
fn first_provisional_is_reported_once_between_start_and_answer() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let events: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event()).collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::CallStarted { .. } => "started",
            Event::CallProgress { .. } => "progress",
            Event::CallAnswered { .. } => "answered",
            Event::CallEnded { .. } => "ended",
            Event::AdmissionRejected { .. } => "rejected",
            Event::Failover { .. } => "failover",
            Event::Redirect { .. } => "redirect",
            Event::PbxAuth { .. } => "pbx_auth",
            Event::NoRoute => "no_route",
            Event::PeerMismatch { .. } => "peer_mismatch",
            Event::BorderRefusal { .. } => "border",
            Event::Dropped { .. } => "dropped",
            Event::CallRecord(_) => "record",
        })
        .collect();
    assert_eq!(kinds, ["started", "progress", "answered"]);
}

#[test]
fn absorbed_request_retransmissions_are_counted() {
    let mut sim = Sim::new();
    let invite = pbx_invite("z9hG4bKretx", Some(SDP_PBX));
    sim.deliver(pbx(), &invite);
    assert_eq!(sim.sbc.counters().retransmissions_received, 0);
    let sent = sim.sbc.counters().retransmissions_sent;
    sim.deliver(pbx(), &invite);
    sim.deliver(pbx(), &invite);
    assert_eq!(sim.sbc.counters().retransmissions_received, 2);
    // Each absorbed INVITE retransmission is answered with the last provisional again.
    assert_eq!(sim.sbc.counters().retransmissions_sent, sent + 2);
}

#[test]
fn timer_a_resends_are_counted_as_retransmissions_sent() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKtimera", Some(SDP_PBX)));
    sim.take_pbx();
    assert_eq!(sim.take_carrier().len(), 1, "the INVITE to the carrier");
    let before = sim.sbc.counters().retransmissions_sent;
    // No answer from the carrier: Timer A (T1 = 500 ms) resends the INVITE over UDP.
    sim.advance(Duration::from_millis(600));
    let resent = sim.take_carrier();
    assert_eq!(resent.len(), 1, "one retransmission after T1");
    assert_eq!(resent[0].method(), Some(&Method::Invite));
    assert_eq!(sim.sbc.counters().retransmissions_sent, before + 1);
}

#[test]
fn message_outside_a_dialog_is_relayed_with_new_identifiers() {
    let mut sim = Sim::new();
    sim.deliver(
        pbx(),
        "MESSAGE sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxmsg1;rport
Max-Forwards: 70
From: <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>
Call-ID: pbx-call-1
CSeq: 1 MESSAGE
User-Agent: PBX-Model-9
Content-Type: text/plain
Content-Length: 5

hello",
    );
    let m = sim.take_carrier().remove(0);
    assert_eq!(m.method(), Some(&Method::Message));
    assert_eq!(
        m.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    assert_eq!(m.body(), b"hello");
    assert_eq!(hdr(&m, HeaderName::ContentType), "text/plain");
    sim.deliver(
        carrier(),
        &carrier_response(&m, 202, "Accepted", Some("ctag1"), None),
    );
    let r = sim.take_pbx().remove(0);
    assert_eq!(
        (status(&r), r.cseq().method.clone()),
        (202, Method::Message)
    );
    assert_eq!(r.call_id(), "pbx-call-1");
    assert_eq!(sim.sbc.stats().calls, 0, "no call for a standalone relay");
    sim.assert_clean();
}

mod admission;
mod auth;
mod auth_passthrough;
mod border;
mod caps;
mod extensions;
mod failover;
mod fork;
mod media_peers;
mod pbx_auth;
mod peer_binding;
mod record;
mod redirect;
mod register_relay;
mod routing;
mod session_timer;
mod tokens;
