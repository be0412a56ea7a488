//! Reliable provisionals (RFC 3262) relayed with RSeq/RAck mapped.

use super::*;

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
