//! Many calls of every outcome leave no state behind.

use super::*;

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
