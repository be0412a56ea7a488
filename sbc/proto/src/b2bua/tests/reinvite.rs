//! re-INVITE: relayed offers, a refused re-INVITE, glare (491), late offer in the ACK.

use super::*;

#[test]
fn reinvite_hold_from_carrier_is_relayed_and_rejected_reinvite_keeps_the_call() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let hold = SDP_CARRIER
        .replace("a=sendrecv", "a=sendonly")
        .replace("777 1", "777 2");
    let reinvite = |branch: &str, cseq: u32| carrier_reinvite(&invite, branch, cseq, &hold);
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
    let recvonly = SDP_PBX
        .replace("a=sendrecv", "a=recvonly")
        .replace("1234 1", "1234 2");
    sim.deliver(pbx(), &pbx_response(&to_pbx, 200, "OK", Some(&recvonly)));
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
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
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
