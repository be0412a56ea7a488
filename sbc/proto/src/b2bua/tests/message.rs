//! MESSAGE outside a dialog relayed with new identifiers.

use super::*;

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
