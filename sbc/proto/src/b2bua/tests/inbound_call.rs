//! A call from the carrier to the PBX.

use super::*;

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
