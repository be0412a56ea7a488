//! T.38 fax (`t38.rs`): a re-INVITE switching to `m=image … udptl t38` crosses with its
//! attributes and the UDPTL stream anchored like any other; `t38 = "reject"` answers it 488 at
//! the SBC; a 488 from the far side leaves the call on its previous (G.711) streams.

use super::*;
use crate::b2bua::T38Mode;

const T38_ATTRS: [&str; 7] = [
    "a=T38FaxVersion:0",
    "a=T38MaxBitRate:14400",
    "a=T38FaxRateManagement:transferredTCF",
    "a=T38FaxMaxBuffer:262",
    "a=T38FaxMaxDatagram:176",
    "a=T38FaxUdpEC:t38UDPRedundancy",
    "a=T38FaxFillBitRemoval:0",
];

/// The carrier's SDP switched to fax on `port`.
fn carrier_t38(port: u16) -> String {
    format!(
        "v=0
o=switch 777 2 IN IP4 198.51.100.20
s=-
c=IN IP4 198.51.100.20
t=0 0
m=image {port} udptl t38
{}
",
        T38_ATTRS.join("\n")
    )
}

/// The PBX's SDP switched to fax on `port`.
fn pbx_t38(port: u16) -> String {
    format!(
        "v=0
o=pbx 1234 2 IN IP4 10.0.0.10
s=pbx.lan call
c=IN IP4 10.0.0.10
t=0 0
m=image {port} udptl t38
{}
",
        T38_ATTRS.join("\n")
    )
}

#[test]
fn t38_reinvite_crosses_with_its_attributes_and_udptl_is_anchored() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarfax1", 5, &carrier_t38(30010)),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    let offer = body_of(&to_pbx);
    let session = sim.media.first().expect("a media session");
    let port = session.streams[0].inside.rtp_port;
    assert!(
        offer.contains(&format!("m=image {port} udptl t38\n")),
        "UDPTL on the relay's port: {offer}"
    );
    for a in T38_ATTRS {
        assert!(offer.contains(&format!("{a}\n")), "{a} missing: {offer}");
    }
    assert_eq!(
        session.outside[0].sdp.map(|a| a.port()),
        Some(30010),
        "the relay sends UDPTL there"
    );
    sim.deliver(
        pbx(),
        &pbx_response(&to_pbx, 200, "OK", Some(&pbx_t38(40010))),
    );
    let ok = sim.take_carrier().remove(0);
    assert_eq!(status(&ok), 200);
    let answer = body_of(&ok);
    assert!(answer.contains(" udptl t38\n"), "{answer}");
    for a in T38_ATTRS {
        assert!(answer.contains(&format!("{a}\n")), "{a} missing: {answer}");
    }
    let session = sim.media.first().expect("a media session");
    assert_eq!(session.inside[0].sdp.map(|a| a.port()), Some(40010));
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn t38_reject_answers_488_at_the_sbc_and_keeps_the_call() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].media.t38 = T38Mode::Reject;
    sim.sbc.set_config(cfg);
    let invite = establish_outbound(&mut sim);
    let before = sim.media.first().expect("session");
    while sim.sbc.poll_event().is_some() {}
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarfax1", 5, &carrier_t38(30010)),
    );
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [100, 488]);
    assert!(
        sim.take_pbx().is_empty(),
        "the PBX never sees the fax offer"
    );
    let reasons: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::BorderRefusal { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["t38_rejected"]);
    assert_eq!(
        sim.media.first(),
        Some(before),
        "the relay still runs G.711"
    );
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn t38_refused_by_the_far_side_falls_back_to_the_audio_streams() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let before = sim.media.first().expect("session");
    assert_eq!(before.inside[0].sdp.map(|a| a.port()), Some(40000));
    let our_in_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
        .unwrap_or_default();
    // The PBX switches to fax on a new port; the carrier refuses with 488.
    sim.deliver(
        pbx(),
        &with_body(
            &format!(
                "INVITE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxfax1;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_in_tag}
Call-ID: pbx-call-1
CSeq: 12 INVITE
Contact: <sip:100@10.0.0.10:5070>
"
            ),
            &pbx_t38(40010),
        ),
    );
    sim.take_pbx();
    let reinvite = sim.take_carrier().remove(0);
    assert!(body_of(&reinvite).contains(" udptl t38\n"));
    let during = sim.media.first().expect("session");
    assert_eq!(
        during.inside[0].sdp.map(|a| a.port()),
        Some(40010),
        "the offer reached the relay"
    );
    sim.deliver(
        carrier(),
        &carrier_response(&reinvite, 488, "Not Acceptable Here", None, None),
    );
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [488]);
    let after = sim.media.first().expect("session");
    assert_eq!(
        after.inside, before.inside,
        "the relay is back on the PBX's G.711 stream"
    );
    assert_eq!(sim.sbc.stats().calls, 1, "the call continues");
}
