//! The scripted simulation harness: the B2BUA with simulated time and the real media table
//! ([`SimMedia`]: its commands executed in memory) between a PBX and a carrier played by the
//! test, which checks what each side receives — rewritten headers, consistent tags and CSeqs,
//! and no leak across sides. Every simulation ends with [`Sim::assert_clean`]: no call,
//! transaction, timer or stored byte left, and the media table holds nothing (no session, every
//! relay port back in its pool, no socket or fast-path mapping left).
//!
//! Besides the harness, what several test files need lives here (the carrier's re-INVITE, the
//! PBX's response to the SBC's request, a message's body, why calls ended), so that each test
//! file states only what is particular to it.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::*;
use crate::{media::SimMedia, net::TransportKind};

pub(super) const PBX: &str = "10.0.0.10:5070";
pub(super) const CARRIER: &str = "198.51.100.7:5090";
/// Values only the inside knows: none may appear in anything sent to the carrier.
pub(super) const INSIDE_SECRETS: [&str; 6] = [
    "10.0.0.",
    "pbx-call-1",
    "ptag1",
    "z9hG4bKpbx",
    "PBX-Model-9",
    "pbx.lan",
];
/// Values only the outside knows: none may appear in anything sent to the PBX.
pub(super) const OUTSIDE_SECRETS: [&str; 5] = [
    "198.51.100.",
    "car-call-9",
    "ctag1",
    "z9hG4bKcar",
    "Carrier-Switch-3",
];

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

pub(super) fn config() -> B2buaConfig {
    let udp = |a: &str| Target {
        addr: addr(a),
        transport: TransportKind::Udp,
    };
    B2buaConfig {
        user_agent: "sbc-test".into(),
        ..B2buaConfig::new(
            LocalAddr {
                addr: addr("10.0.0.1:5060"),
                transport: TransportKind::Udp,
            },
            LocalAddr {
                addr: addr("203.0.113.1:5080"),
                transport: TransportKind::Udp,
            },
            udp(PBX),
            vec![TrunkConfig::new("carrier", udp(CARRIER))],
        )
    }
}

pub(super) struct Sim {
    pub(super) sbc: B2bua,
    pub(super) media: SimMedia,
    pub(super) now: Instant,
    pub(super) t0: Instant,
    pub(super) to_pbx: Vec<Message>,
    pub(super) to_carrier: Vec<Message>,
    /// Addresses inside the SBC may send to (the PBX, inbound route targets).
    pub(super) pbx_targets: Vec<SocketAddr>,
}

pub(super) fn pbx() -> Peer {
    Peer {
        side: Side::Inside,
        transport: TransportKind::Udp,
        addr: addr(PBX),
        conn: None,
        local: None,
    }
}

pub(super) fn carrier() -> Peer {
    Peer {
        side: Side::Outside,
        transport: TransportKind::Udp,
        addr: addr(CARRIER),
        conn: None,
        local: None,
    }
}

/// The relay settings of [`Sim::new`]: the SBC's signaling addresses relay media, ports
/// 10000-20000 on each.
pub(super) fn relay_settings() -> crate::media::RelaySettings {
    SimMedia::settings(
        addr("10.0.0.1:0").ip(),
        addr("203.0.113.1:0").ip(),
        10_000,
        20_000,
    )
}

impl Sim {
    pub(super) fn new() -> Self {
        Self::with_rng(Rng::from_test_seed(7))
    }

    /// A simulation whose B2BUA draws its identifiers from `rng` (a shard's generator).
    pub(super) fn with_rng(rng: Rng) -> Self {
        Self::on(rng, SimMedia::with_settings(relay_settings()))
    }

    /// A simulation on a media table with `settings` (a media timeout, a small port range).
    pub(super) fn with_relay(settings: crate::media::RelaySettings) -> Self {
        Self::on(Rng::from_test_seed(7), SimMedia::with_settings(settings))
    }

    /// A simulation whose B2BUA draws from `rng`, on `media`.
    fn on(rng: Rng, media: SimMedia) -> Self {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let mut sbc = B2bua::new(config(), rng);
        // The simulations check the state reports too (`restore.rs` tests).
        sbc.report_call_state(true);
        Self {
            sbc,
            media,
            now: t0,
            t0,
            to_pbx: Vec::new(),
            to_carrier: Vec::new(),
            pbx_targets: vec![addr(PBX)],
        }
    }

    pub(super) fn deliver(&mut self, from: Peer, text: &str) {
        let msg = Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
            .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"));
        let now = self.now;
        self.media
            .drive(now, |t| self.sbc.handle_message(now, from, msg, t));
        self.media_events();
        self.collect();
    }

    /// Runs `f` on the B2BUA with the media table at the current time, then executes what it
    /// asked of the relay and handles what the relay reported (as the daemon's driver does
    /// after each input).
    pub(super) fn with_media<R>(
        &mut self,
        f: impl FnOnce(&mut B2bua, Instant, &mut crate::media::MediaTable) -> R,
    ) -> R {
        let now = self.now;
        let r = self.media.drive(now, |t| f(&mut self.sbc, now, t));
        self.media_events();
        r
    }

    /// The relay reported something (a stream that could not be bound ends its call): the
    /// daemon's driver wakes for it at once.
    fn media_events(&mut self) {
        if self.media.table().has_events() {
            let now = self.now;
            self.media.drive(now, |t| self.sbc.handle_timeout(now, t));
        }
    }

    pub(super) fn collect(&mut self) {
        while let Some(t) = self.sbc.poll_transmit() {
            let msg = inspect(&t, &self.pbx_targets);
            match t.to.side {
                Side::Inside => self.to_pbx.push(msg),
                Side::Outside => self.to_carrier.push(msg),
            }
        }
    }

    /// Advances virtual time to `at`, firing every timer on the way; the media relay's timers
    /// run at each step and at `until`, and the B2BUA handles what they reported.
    pub(super) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.sbc.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.media.tick(self.now);
            let now = self.now;
            self.media.drive(now, |t| self.sbc.handle_timeout(now, t));
            self.collect();
        }
        self.now = until;
        self.media.tick(self.now);
        self.media_events();
        self.collect();
    }

    pub(super) fn take_pbx(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.to_pbx)
    }

    pub(super) fn take_carrier(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.to_carrier)
    }

    /// Runs out every timer and checks nothing is left behind.
    pub(super) fn assert_clean(&mut self) {
        self.advance(Duration::from_secs(300));
        assert_eq!(
            self.sbc.stats(),
            Stats::default(),
            "state left after the call"
        );
        assert!(
            self.media.holds_nothing(),
            "media table holds state: {:?}",
            self.media
        );
        let _ = self.t0;
    }
}

/// Parses what the SBC sent and checks topology hiding: nothing only the other side knows,
/// and PBX messages go to an address the PBX uses.
pub(super) fn inspect(t: &Transmit, pbx_targets: &[SocketAddr]) -> Message {
    let text = String::from_utf8_lossy(&t.data).to_string();
    let msg = Message::parse(t.data.clone(), &Limits::default())
        .unwrap_or_else(|e| panic!("SBC sent an unparseable message: {e}\n{text}"));
    let secrets: &[&str] = match t.to.side {
        Side::Inside => {
            assert!(
                pbx_targets.contains(&t.to.addr),
                "PBX messages go to its observed address, not {}",
                t.to.addr
            );
            &OUTSIDE_SECRETS
        }
        Side::Outside => &INSIDE_SECRETS,
    };
    for s in secrets {
        assert!(
            !text.contains(s),
            "leak of {s:?} to the {:?}:\n{text}",
            t.to.side
        );
    }
    msg
}

pub(super) fn hdr(m: &Message, name: HeaderName) -> String {
    msg::first_value(m.headers(), name).unwrap_or("").to_owned()
}

pub(super) fn status(m: &Message) -> u16 {
    m.status().map_or(0, |s| s.as_u16())
}

pub(super) const SDP_PBX: &str = "v=0
o=pbx 1234 1 IN IP4 10.0.0.10
s=pbx.lan call
c=IN IP4 10.0.0.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

pub(super) const SDP_CARRIER: &str = "v=0
o=switch 777 1 IN IP4 198.51.100.20
s=-
c=IN IP4 198.51.100.20
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

pub(super) fn with_body(head: &str, body: &str) -> String {
    let body = body.replace('\n', "\r\n");
    format!(
        "{head}Content-Type: application/sdp\nContent-Length: {}\n\n{}",
        body.len(),
        body.replace("\r\n", "\n")
    )
}

pub(super) fn pbx_invite(branch: &str, sdp: Option<&str>) -> String {
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
pub(super) fn carrier_response(
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

/// A response from the PBX to the SBC's request `req` on the inside leg (its To as the SBC
/// sent it: a request within the dialog already carries the PBX's tag).
pub(super) fn pbx_response(req: &Message, code: u16, reason: &str, sdp: Option<&str>) -> String {
    let head = format!(
        "SIP/2.0 {code} {reason}
Via: {}
From: {}
To: {}
Call-ID: {}
CSeq: {}
Contact: <sip:100@10.0.0.10:5070>
",
        hdr(req, HeaderName::Via),
        hdr(req, HeaderName::From),
        hdr(req, HeaderName::To),
        req.call_id(),
        hdr(req, HeaderName::CSeq)
    );
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

/// The carrier's re-INVITE (`branch`, CSeq `cseq`) carrying `sdp`, in the call whose INVITE
/// the carrier saw as `invite` (see [`establish_outbound`]).
pub(super) fn carrier_reinvite(invite: &Message, branch: &str, cseq: u32, sdp: &str) -> String {
    let our_out_tag = invite.from().tag().unwrap_or("");
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
        sdp,
    )
}

/// Why the calls that ended since the last look ended (the other events are dropped).
pub(super) fn ended(sim: &mut Sim) -> Vec<EndReason> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::CallEnded { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// The body of `m` with LF line ends, as the tests' SDP constants are written.
pub(super) fn body_of(m: &Message) -> String {
    String::from_utf8_lossy(m.body()).replace("\r\n", "\n")
}

/// PBX → carrier call up to the confirmed state. Returns the INVITE the carrier saw.
pub(super) fn establish_outbound(sim: &mut Sim) -> Message {
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
