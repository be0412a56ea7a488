//! Dialogs and transactions bound to their peer: a second trunk (or anyone sending from its
//! address) that learned a call's Call-ID and tags cannot end it, re-INVITE it (redirect its
//! media) or answer for the carrier; a wrong remote tag is refused the same way.

use super::*;

/// Another configured trunk: an allowed source on the outside, but not this call's peer.
const OTHER_TRUNK: &str = "198.51.100.8:5090";

fn sim_two_trunks() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new(
        "other",
        Target {
            addr: addr(OTHER_TRUNK),
            transport: TransportKind::Udp,
        },
    ));
    // Calls from the PBX take the first trunk ("carrier").
    sim.sbc.set_config(cfg);
    sim
}

fn from(a: &str, side: Side) -> Peer {
    Peer {
        side,
        transport: TransportKind::Udp,
        addr: addr(a),
        conn: None,
        local: None,
    }
}

/// An in-dialog request of the carrier on the call's outside leg, as the carrier would send
/// it (From = the carrier's tag, To = the SBC's tag), with `from_tag` and an optional body.
fn carrier_request(
    invite: &Message,
    method: &str,
    cseq: u32,
    from_tag: &str,
    sdp: Option<&str>,
) -> String {
    let our_from = hdr(invite, HeaderName::From);
    let our_to = hdr(invite, HeaderName::To);
    let head = format!(
        "{method} sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKcar{method}{cseq};rport
Max-Forwards: 70
From: {our_to};tag={from_tag}
To: {our_from}
Call-ID: {}
CSeq: {cseq} {method}
Contact: <sip:gw@198.51.100.20:5060>
",
        invite.call_id()
    );
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

fn mismatches(sim: &mut Sim) -> Vec<(Side, PeerMismatch)> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::PeerMismatch { side, kind } => Some((side, kind)),
            _ => None,
        })
        .collect()
}

/// The carrier's real BYE ends the call; everything drains.
fn hang_up(sim: &mut Sim, invite: &Message) {
    sim.deliver(
        carrier(),
        &carrier_request(invite, "BYE", 70, "ctag1", None),
    );
    let bye = sim.take_pbx().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    sim.deliver(
        pbx(),
        &format!(
            "SIP/2.0 200 OK\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: {}\nContent-Length: 0\n\n",
            hdr(&bye, HeaderName::Via),
            hdr(&bye, HeaderName::From),
            hdr(&bye, HeaderName::To),
            bye.call_id(),
            hdr(&bye, HeaderName::CSeq)
        ),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 200, "the real peer's BYE");
    assert!(sim.sbc.calls().is_empty());
    sim.assert_clean();
}

#[test]
fn bye_from_another_trunks_address_gets_481_and_the_call_stays_up() {
    let mut sim = sim_two_trunks();
    let invite = establish_outbound(&mut sim);
    let _ = mismatches(&mut sim);
    let media_before = sim.media.sessions();

    // Right Call-ID, right tags, wrong sender.
    let forged = from(OTHER_TRUNK, Side::Outside);
    sim.deliver(forged, &carrier_request(&invite, "BYE", 50, "ctag1", None));
    let answer = sim.take_carrier();
    assert_eq!(answer.len(), 1);
    assert_eq!(status(&answer[0]), 481);
    assert!(sim.take_pbx().is_empty(), "nothing reaches the PBX");
    let calls = sim.sbc.calls();
    assert_eq!(calls.len(), 1, "the call is up");
    assert!(calls[0].answered);
    assert_eq!(
        calls[0].legs[1].peer.addr,
        addr(CARRIER),
        "leg not re-pointed"
    );
    assert_eq!(sim.media.sessions(), media_before, "media untouched");
    assert_eq!(
        mismatches(&mut sim),
        vec![(Side::Outside, PeerMismatch::RequestSource)]
    );

    hang_up(&mut sim, &invite);
}

#[test]
fn reinvite_from_another_trunks_address_cannot_redirect_media() {
    let mut sim = sim_two_trunks();
    let invite = establish_outbound(&mut sim);
    let _ = mismatches(&mut sim);
    let media_before = sim.media.sessions();

    let evil_sdp = SDP_CARRIER.replace("198.51.100.20", "198.51.100.66");
    let forged = from(OTHER_TRUNK, Side::Outside);
    sim.deliver(
        forged,
        &carrier_request(&invite, "INVITE", 60, "ctag1", Some(&evil_sdp)),
    );
    let answer = sim.take_carrier();
    assert_eq!(answer.iter().map(status).collect::<Vec<_>>(), vec![481]);
    assert!(sim.take_pbx().is_empty(), "no re-INVITE toward the PBX");
    assert_eq!(
        sim.media.sessions(),
        media_before,
        "the relay still sends where it did"
    );
    assert_eq!(sim.sbc.calls()[0].legs[1].peer.addr, addr(CARRIER));
    assert_eq!(
        mismatches(&mut sim),
        vec![(Side::Outside, PeerMismatch::RequestSource)]
    );

    hang_up(&mut sim, &invite);
}

#[test]
fn in_dialog_request_with_a_wrong_remote_tag_gets_481() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let _ = mismatches(&mut sim);
    // From the carrier's own address, but not the tag of the carrier's dialog.
    sim.deliver(
        carrier(),
        &carrier_request(&invite, "BYE", 50, "guessed", None),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 481);
    assert!(sim.take_pbx().is_empty());
    assert_eq!(sim.sbc.calls().len(), 1);
    assert_eq!(
        mismatches(&mut sim),
        vec![(Side::Outside, PeerMismatch::RequestTag)]
    );
    hang_up(&mut sim, &invite);
}

#[test]
fn inside_leg_takes_requests_only_from_the_pbx_address() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let _ = mismatches(&mut sim);
    let our_tag = sim.sbc.calls()[0].legs[0].local_tag.clone();
    let bye = format!(
        "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.99:5070;branch=z9hG4bKpbxevil;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
    );
    // Another host on the PBX's network (allowed by the ACL, not this dialog's peer).
    sim.pbx_targets.push(addr("10.0.0.99:5070"));
    sim.deliver(from("10.0.0.99:5070", Side::Inside), &bye);
    assert_eq!(status(&sim.take_pbx()[0]), 481);
    assert!(sim.take_carrier().is_empty(), "no BYE to the carrier");
    assert_eq!(sim.sbc.calls().len(), 1);
    assert_eq!(sim.sbc.calls()[0].legs[0].peer.addr, addr(PBX));
    assert_eq!(
        mismatches(&mut sim),
        vec![(Side::Inside, PeerMismatch::RequestSource)]
    );
    hang_up(&mut sim, &invite);
}

#[test]
fn responses_from_another_source_are_dropped() {
    let mut sim = sim_two_trunks();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let _ = sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let _ = mismatches(&mut sim);
    let media_before = sim.media.sessions();

    // The branch is right; the sender is the other trunk, then the inside.
    let forged = from(OTHER_TRUNK, Side::Outside);
    sim.deliver(
        forged,
        &carrier_response(
            &invite,
            183,
            "Session Progress",
            Some("evil"),
            Some(SDP_CARRIER),
        ),
    );
    sim.deliver(
        forged,
        &carrier_response(&invite, 200, "OK", Some("evil"), Some(SDP_CARRIER)),
    );
    sim.deliver(
        from(PBX, Side::Inside),
        &carrier_response(&invite, 200, "OK", Some("evil"), Some(SDP_CARRIER)),
    );
    assert!(sim.take_pbx().is_empty(), "nothing relayed to the PBX");
    assert!(sim.take_carrier().is_empty(), "no ACK for a forged 2xx");
    assert_eq!(sim.media.sessions(), media_before, "no answer committed");
    let calls = sim.sbc.calls();
    assert!(!calls[0].answered);
    assert_eq!(calls[0].legs[1].remote_tag, None);
    assert_eq!(
        mismatches(&mut sim),
        vec![
            (Side::Outside, PeerMismatch::Response),
            (Side::Outside, PeerMismatch::Response),
            (Side::Outside, PeerMismatch::Response),
        ]
    );

    // The real carrier still completes the call.
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    assert!(sim.sbc.calls()[0].answered);
}

#[test]
fn a_trunks_other_addresses_may_answer_but_do_not_move_the_leg() {
    let mut sim = Sim::new();
    // The carrier's DNS name also resolves to .9: it may send from there.
    sim.sbc
        .set_trunk_sources(0, vec![addr("198.51.100.9:5060").ip()]);
    let invite = establish_outbound(&mut sim);
    let _ = mismatches(&mut sim);
    sim.deliver(
        from("198.51.100.9:5060", Side::Outside),
        &carrier_request(&invite, "INFO", 40, "ctag1", None),
    );
    let info = sim.take_pbx();
    assert_eq!(info[0].method(), Some(&Method::Info), "relayed");
    assert_eq!(
        sim.sbc.calls()[0].legs[1].peer.addr,
        addr(CARRIER),
        "requests still go to the proxy"
    );
    // A new port of the same address is NAT rebinding: the leg follows it.
    sim.deliver(
        from("198.51.100.7:5999", Side::Outside),
        &carrier_request(&invite, "INFO", 41, "ctag1", None),
    );
    assert_eq!(sim.take_pbx().len(), 1);
    assert_eq!(
        sim.sbc.calls()[0].legs[1].peer.addr,
        addr("198.51.100.7:5999")
    );
    assert!(mismatches(&mut sim).is_empty());
}
