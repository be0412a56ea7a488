//! Requests the SBC answers itself: merged (482), Max-Forwards 0 (483), OPTIONS, unknown dialogs (481), strays.

use super::*;

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
