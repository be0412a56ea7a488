//! CANCEL before the answer: 200 and 487 to the caller, CANCEL to the callee.

use super::*;

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
    assert!(sim.media.is_empty(), "media released");
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
