//! Codec policy on offers (`codec_policy.rs`): a trunk's allow list strips what it does not
//! take and puts its preference first, `a=rtpmap`/`a=fmtp` go with their codec, `a=ptime`
//! stays; the PBX side's deny list applies to offers from the carrier.

use super::*;
use crate::sdp::CodecPolicy;

const SDP_PBX_WIDE: &str = "v=0
o=pbx 1234 1 IN IP4 10.0.0.10
s=pbx.lan call
c=IN IP4 10.0.0.10
t=0 0
m=audio 40000 RTP/AVP 9 0 8 18 101
a=rtpmap:9 G722/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
";

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub(super) fn sim_with(pbx: CodecPolicy, trunk: CodecPolicy) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_media.codecs = pbx;
    cfg.trunks[0].media.codecs = trunk;
    sim.sbc.set_config(cfg);
    sim
}

#[test]
fn trunk_allow_list_strips_g722_and_puts_pcma_first() {
    let mut sim = sim_with(
        CodecPolicy::default(),
        CodecPolicy {
            allow: names(&["PCMA", "PCMU", "telephone-event"]),
            deny: Vec::new(),
        },
    );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX_WIDE)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(offer.contains(" RTP/AVP 8 0 101\n"), "{offer}");
    assert!(
        !offer.contains("G722") && !offer.contains("G729"),
        "{offer}"
    );
    assert!(
        !offer.contains("annexb"),
        "G.729's fmtp goes with it: {offer}"
    );
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{offer}"
    );
    assert!(offer.contains("a=fmtp:101 0-16\n"), "{offer}");
    assert!(offer.contains("a=ptime:20\n"), "{offer}");
    // The carrier answers PCMA: relayed to the PBX as it is.
    let answer = SDP_CARRIER.replace("RTP/AVP 0 101", "RTP/AVP 8 101");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    assert!(
        body_of(&ok).contains(" RTP/AVP 8 101\n"),
        "{}",
        body_of(&ok)
    );
}

#[test]
fn pbx_deny_list_applies_to_offers_from_the_carrier() {
    let mut sim = sim_with(
        CodecPolicy {
            allow: Vec::new(),
            deny: names(&["g729"]),
        },
        CodecPolicy::default(),
    );
    let offer = SDP_CARRIER.replace(
        "RTP/AVP 0 101\n",
        "RTP/AVP 18 0 101\na=rtpmap:18 G729/8000\na=fmtp:18 annexb=no\n",
    );
    sim.deliver(carrier(), &carrier_invite_with(&offer));
    sim.take_carrier();
    let invite = sim.take_pbx().remove(0);
    let to_pbx = body_of(&invite);
    assert!(to_pbx.contains(" RTP/AVP 0 101\n"), "{to_pbx}");
    assert!(
        !to_pbx.contains("G729") && !to_pbx.contains("annexb"),
        "{to_pbx}"
    );
}

/// An INVITE from the carrier to a DID with `sdp` as its offer.
pub(super) fn carrier_invite_with(sdp: &str) -> String {
    with_body(
        "INVITE sip:15550001000@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar1;rport
Max-Forwards: 70
From: <sip:15551234567@198.51.100.7>;tag=ctag1
To: <sip:15550001000@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
",
        sdp,
    )
}
