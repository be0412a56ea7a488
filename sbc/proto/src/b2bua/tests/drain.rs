//! Graceful drain in the call layer: new calls from either side and OPTIONS get 503 with the
//! drain's Retry-After while established calls go on; at the end every call left is ended
//! with BYE on both legs (CANCEL/487 before the answer) and the SBC knows when the answers
//! to its requests are in.

use super::*;

const DRAIN_RETRY_AFTER: u32 = 47;

/// A 200 to `req` (a request the SBC sent), as its peer would answer it.
fn ok_to(req: &Message) -> String {
    let mut head = String::from("SIP/2.0 200 OK\n");
    for h in req.headers().all(HeaderName::Via) {
        head.push_str(&format!("Via: {}\n", h.value_str().unwrap_or("")));
    }
    let to = hdr(req, HeaderName::To);
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag=peer1")
    };
    head.push_str(&format!(
        "From: {}\nTo: {to}\nCall-ID: {}\nCSeq: {}\nContent-Length: 0\n\n",
        hdr(req, HeaderName::From),
        req.call_id(),
        hdr(req, HeaderName::CSeq)
    ));
    head
}

fn carrier_invite(call_id: &str, branch: &str) -> String {
    with_body(
        &format!(
            "INVITE sip:+15557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch={branch};rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag7
To: <sip:+15557654321@203.0.113.1>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
"
        ),
        SDP_CARRIER,
    )
}

fn options_from_carrier() -> String {
    "OPTIONS sip:203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcaropt1
Max-Forwards: 70
From: <sip:ping@198.51.100.7>;tag=copt1
To: <sip:203.0.113.1>
Call-ID: car-opt-1
CSeq: 1 OPTIONS
Content-Length: 0

"
    .to_owned()
}

fn retry_after(m: &Message) -> Option<String> {
    m.headers()
        .all_named("Retry-After")
        .next()
        .and_then(|h| h.value_str().map(str::to_owned))
}

#[test]
fn draining_refuses_new_calls_both_ways_and_options_with_503_but_keeps_the_call_up() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    sim.sbc.set_draining(Some(DRAIN_RETRY_AFTER));
    assert!(sim.sbc.draining());

    // A new call from the PBX: 503 + the drain's Retry-After, nothing toward the carrier.
    sim.deliver(
        pbx(),
        &pbx_invite("z9hG4bKpbx2", Some(SDP_PBX)).replace("pbx-call-1", "pbx-call-2"),
    );
    let refused = sim.take_pbx();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(status(&refused[0]), 503);
    assert_eq!(retry_after(&refused[0]).as_deref(), Some("47"));
    assert!(
        sim.take_carrier().is_empty(),
        "a refused call reaches nobody"
    );

    // A new call from the carrier: the same.
    sim.deliver(carrier(), &carrier_invite("car-call-2", "z9hG4bKcar2"));
    let refused = sim.take_carrier();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(status(&refused[0]), 503);
    assert_eq!(retry_after(&refused[0]).as_deref(), Some("47"));
    assert!(sim.take_pbx().is_empty());

    // A carrier's OPTIONS ping: 503 so it fails over to another node.
    sim.deliver(carrier(), &options_from_carrier());
    let answer = sim.take_carrier();
    assert_eq!(status(&answer[0]), 503);
    assert_eq!(retry_after(&answer[0]).as_deref(), Some("47"));

    let rejected: Vec<Event> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter(|e| {
            matches!(
                e,
                Event::AdmissionRejected {
                    limit: "draining",
                    ..
                }
            )
        })
        .collect();
    assert_eq!(rejected.len(), 2, "both refusals counted");

    // The established call goes on: the carrier's BYE still reaches the PBX.
    assert_eq!(sim.sbc.calls().len(), 1);
    sim.deliver(
        carrier(),
        &format!(
            "BYE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarbye
Max-Forwards: 70
From: {to};tag=ctag1
To: {from}
Call-ID: {cid}
CSeq: 1 BYE
Content-Length: 0

",
            to = hdr(&invite, HeaderName::To),
            from = hdr(&invite, HeaderName::From),
            cid = invite.call_id(),
        ),
    );
    let bye = sim.take_pbx().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    sim.deliver(pbx(), &ok_to(&bye));
    assert_eq!(status(&sim.take_carrier()[0]), 200);
    assert_eq!(ended(&mut sim), vec![EndReason::Bye]);

    // Drain lifted: calls are taken again.
    sim.sbc.set_draining(None);
    sim.deliver(
        carrier(),
        &options_from_carrier().replace("caropt1", "caropt2"),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 200);
    sim.assert_clean();
}

#[test]
fn end_all_byes_both_legs_of_answered_calls_and_cancels_ringing_ones() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    // A second call, ringing.
    sim.deliver(
        pbx(),
        &pbx_invite("z9hG4bKpbx2", Some(SDP_PBX)).replace("pbx-call-1", "pbx-call-2"),
    );
    sim.take_pbx();
    let invite2 = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite2, 180, "Ringing", Some("ctag2"), None),
    );
    sim.take_pbx();
    let _ = ended(&mut sim);

    assert_eq!(sim.with_media(|b, now, m| b.end_all(now, m)), 2);
    sim.collect();
    let to_pbx = sim.take_pbx();
    let to_carrier = sim.take_carrier();
    let byes_pbx: Vec<&Message> = to_pbx
        .iter()
        .filter(|m| m.method() == Some(&Method::Bye))
        .collect();
    let byes_carrier: Vec<&Message> = to_carrier
        .iter()
        .filter(|m| m.method() == Some(&Method::Bye))
        .collect();
    assert_eq!(
        (byes_pbx.len(), byes_carrier.len()),
        (1, 1),
        "one BYE per leg"
    );
    assert!(
        to_pbx
            .iter()
            .any(|m| status(m) == 487 && m.call_id() == "pbx-call-2"),
        "the ringing call's INVITE ends with 487: {to_pbx:?}"
    );
    let cancel = to_carrier
        .iter()
        .find(|m| m.method() == Some(&Method::Cancel))
        .expect("CANCEL to the ringing carrier leg");
    assert_eq!(ended(&mut sim), vec![EndReason::Drain, EndReason::Drain]);
    assert!(sim.sbc.calls().is_empty());

    // BYE, BYE, CANCEL and the cancelled INVITE wait for their answers.
    assert_eq!(sim.sbc.requests_in_flight(), 4);
    let (bye_pbx, bye_carrier, cancel) =
        (byes_pbx[0].clone(), byes_carrier[0].clone(), cancel.clone());
    sim.deliver(pbx(), &ok_to(&bye_pbx));
    sim.deliver(carrier(), &ok_to(&bye_carrier));
    sim.deliver(carrier(), &ok_to(&cancel));
    assert_eq!(
        sim.sbc.requests_in_flight(),
        1,
        "the INVITE waits for its 487"
    );
    sim.deliver(
        carrier(),
        &carrier_response(&invite2, 487, "Request Terminated", Some("ctag2"), None),
    );
    assert_eq!(sim.sbc.requests_in_flight(), 0);
    // The 487's ACK and the PBX's ACK for our 487 finish the transactions.
    sim.take_carrier();
    let our_487 = to_pbx.iter().find(|m| status(m) == 487).expect("487");
    sim.deliver(
        pbx(),
        &format!(
            "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx2;rport
Max-Forwards: 70
From: {}
To: {}
Call-ID: pbx-call-2
CSeq: 10 ACK
Content-Length: 0

",
            hdr(our_487, HeaderName::From),
            hdr(our_487, HeaderName::To)
        ),
    );
    sim.assert_clean();
}
