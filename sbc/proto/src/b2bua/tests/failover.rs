//! Failover across trunks: an outbound INVITE that times out or gets 408/5xx on one trunk is
//! sent to the next; 4xx and 6xx answers are the callee's and end the call.

use super::*;

const SECOND: &str = "198.51.100.8:5090";

fn sim_with_two_trunks() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new(
        "second",
        Target {
            addr: addr(SECOND),
            transport: TransportKind::Udp,
        },
    ));
    sim.sbc.set_config(cfg);
    sim
}

/// The second trunk (it answers from its own address).
fn second_trunk() -> Peer {
    Peer {
        addr: addr(SECOND),
        ..carrier()
    }
}

fn failovers(sim: &mut Sim) -> Vec<(usize, u16)> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::Failover { from, status, .. } => Some((from, status)),
            _ => None,
        })
        .collect()
}

#[test]
fn server_error_on_the_first_trunk_moves_the_call_to_the_next() {
    let mut sim = sim_with_two_trunks();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let first = sim.take_carrier().remove(0);
    assert_eq!(
        first.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let out = sim.take_carrier();
    assert_eq!(
        out.len(),
        2,
        "ACK to the first trunk, INVITE to the second: {out:?}"
    );
    assert_eq!(out[0].method(), Some(&Method::Ack));
    let second = out[1].clone();
    assert_eq!(second.method(), Some(&Method::Invite));
    assert_eq!(
        second.request_uri_str(),
        Some("sip:15551234567@198.51.100.8:5090")
    );
    assert_eq!(second.to().uri_str, "sip:15551234567@198.51.100.8:5090");
    assert_ne!(second.call_id(), first.call_id(), "a new dialog");
    assert_ne!(second.from().tag(), first.from().tag());
    assert_eq!(second.cseq().seq, 1);
    assert_eq!(second.body(), first.body(), "the same offer");
    assert!(
        sim.take_pbx().is_empty(),
        "the PBX sees nothing of the failure"
    );
    assert_eq!(failovers(&mut sim), vec![(0, 503)]);

    // The second trunk answers; the dialog continues there.
    sim.deliver(
        second_trunk(),
        &carrier_response(&second, 200, "OK", Some("t2"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx();
    assert_eq!(status(&ok[0]), 200);
    let ack = sim.take_carrier().remove(0);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.call_id(), second.call_id());
    assert_eq!(ack.to().tag(), Some("t2"));
    let info = sim.sbc.calls();
    assert_eq!(info[0].legs[1].call_id, second.call_id());
    assert_eq!(info[0].legs[1].peer.addr, addr(SECOND));
    // The old dialog is gone: a BYE for it gets 481.
    assert_eq!(sim.sbc.stats().dialogs, 2);
}

#[test]
fn no_answer_at_all_fails_over_after_timer_b_and_the_last_failure_reaches_the_pbx() {
    let mut sim = sim_with_two_trunks();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    sim.take_carrier();
    // Timer B: 64·T1 = 32 s of retransmissions without any answer.
    sim.advance(Duration::from_secs(33));
    let out = sim.take_carrier();
    let second: Vec<&Message> = out
        .iter()
        .filter(|m| m.request_uri_str() == Some("sip:15551234567@198.51.100.8:5090"))
        .collect();
    assert!(!second.is_empty(), "INVITE to the second trunk: {out:?}");
    assert_eq!(failovers(&mut sim), vec![(0, 408)]);
    assert!(
        sim.take_pbx().iter().all(|m| status(m) < 200),
        "no final to the PBX yet"
    );
    // The second trunk fails too (500): no trunk left, the PBX gets it.
    let inv = second[0].clone();
    sim.deliver(
        second_trunk(),
        &carrier_response(&inv, 500, "Server Internal Error", Some("t2"), None),
    );
    let finals: Vec<u16> = sim.take_pbx().iter().map(status).collect();
    assert_eq!(finals, vec![500]);
    sim.assert_clean();
}

#[test]
fn busy_and_decline_do_not_fail_over() {
    for (code, reason) in [(486, "Busy Here"), (603, "Decline"), (404, "Not Found")] {
        let mut sim = sim_with_two_trunks();
        sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
        sim.take_pbx();
        let first = sim.take_carrier().remove(0);
        sim.deliver(
            carrier(),
            &carrier_response(&first, code, reason, Some("t1"), None),
        );
        let out = sim.take_carrier();
        assert_eq!(out.len(), 1, "{code}: only the ACK: {out:?}");
        assert_eq!(status(&sim.take_pbx()[0]), code);
        assert!(failovers(&mut sim).is_empty());
        sim.assert_clean();
    }
}

#[test]
fn trunks_marked_down_by_their_health_check_are_skipped() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks
        .extend(["198.51.100.8:5090", "198.51.100.9:5090"].map(|a| {
            TrunkConfig::new(
                a,
                Target {
                    addr: addr(a),
                    transport: TransportKind::Udp,
                },
            )
        }));
    sim.sbc.set_config(cfg);
    // The first trunk is down: new calls start on the second.
    sim.sbc.set_trunk_usable(0, false);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let inv = sim.take_carrier().remove(0);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:15551234567@198.51.100.8:5090")
    );
    // The second fails with 503 while the third... is fine: it goes there.
    sim.deliver(
        second_trunk(),
        &carrier_response(&inv, 503, "Service Unavailable", Some("t2"), None),
    );
    let out = sim.take_carrier();
    assert_eq!(
        out[1].request_uri_str(),
        Some("sip:15551234567@198.51.100.9:5090")
    );
    assert_eq!(failovers(&mut sim), vec![(1, 503)]);

    // Everything down: the first trunk is tried anyway (better a try than a certain failure);
    // a failure there has no usable trunk left to go to.
    let mut sim2 = Sim::new();
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new(
        "second",
        Target {
            addr: addr(SECOND),
            transport: TransportKind::Udp,
        },
    ));
    sim2.sbc.set_config(cfg);
    sim2.sbc.set_trunk_usable(0, false);
    sim2.sbc.set_trunk_usable(1, false);
    sim2.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim2.take_pbx();
    let inv = sim2.take_carrier().remove(0);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    sim2.deliver(
        carrier(),
        &carrier_response(&inv, 503, "Service Unavailable", Some("t1"), None),
    );
    assert_eq!(status(&sim2.take_pbx()[0]), 503);
    // Back up: the first trunk again.
    sim2.sbc.set_trunk_usable(0, true);
    sim2.deliver(
        pbx(),
        &pbx_invite("z9hG4bKpbx2", Some(SDP_PBX)).replace("pbx-call-1", "pbx-call-2"),
    );
    let inv = sim2
        .take_carrier()
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("INVITE");
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
}

#[test]
fn a_trunks_other_servers_are_tried_before_the_next_trunk() {
    const ALT: &str = "198.51.100.9:5090";
    let mut sim = sim_with_two_trunks();
    // The first trunk's DNS name gave two servers.
    sim.sbc.set_trunk_targets(
        0,
        [CARRIER, ALT]
            .map(|a| Target {
                addr: addr(a),
                transport: TransportKind::Udp,
            })
            .to_vec(),
    );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    assert_eq!(
        first.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let out = sim.take_carrier();
    let second = out.last().expect("INVITE to the trunk's second server");
    assert_eq!(
        second.request_uri_str(),
        Some("sip:15551234567@198.51.100.9:5090")
    );
    assert!(!second.body().is_empty(), "the same offer");
    assert_eq!(sim.sbc.trunk_calls(), &[1, 0], "still on the first trunk");
    let from_alt = Peer {
        addr: addr(ALT),
        ..carrier()
    };
    sim.deliver(
        from_alt,
        &carrier_response(second, 503, "Service Unavailable", Some("t2"), None),
    );
    let out = sim.take_carrier();
    let third = out.last().expect("INVITE to the next trunk");
    assert_eq!(
        third.request_uri_str(),
        Some("sip:15551234567@198.51.100.8:5090")
    );
    assert_eq!(sim.sbc.trunk_calls(), &[0, 1]);
    let moves: Vec<(usize, usize)> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::Failover { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(moves, [(0, 0), (0, 1)]);
}

/// Each trunk's codec policy applies to the caller's offer: after failover the second trunk
/// gets the PBX's offer filtered by its own list, not the first trunk's filtered offer.
#[test]
fn failover_applies_the_next_trunks_codec_policy_to_the_callers_offer() {
    use crate::sdp::CodecPolicy;
    let mut sim = Sim::new();
    let mut cfg = config();
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    cfg.trunks[0].media.codecs = CodecPolicy {
        allow: names(&["PCMU", "telephone-event"]),
        deny: Vec::new(),
    };
    let mut second = TrunkConfig::new(
        "second",
        Target {
            addr: addr(SECOND),
            transport: TransportKind::Udp,
        },
    );
    second.media.codecs = CodecPolicy {
        allow: names(&["PCMA", "PCMU", "telephone-event"]),
        deny: Vec::new(),
    };
    cfg.trunks.push(second);
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    assert!(
        body_of(&first).contains(" RTP/AVP 0 101\n"),
        "{}",
        body_of(&first)
    );
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let second = sim.take_carrier().remove(1);
    let offer = body_of(&second);
    assert!(
        offer.contains(" RTP/AVP 8 0 101\n"),
        "the second trunk's order over the PBX's codecs: {offer}"
    );
    // Same relay endpoints as the first offer (the media session is the call's).
    let port = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("m=audio "))
            .map(|l| l.split(' ').nth(1).unwrap_or("").to_owned())
    };
    assert_eq!(port(&offer), port(&body_of(&first)));
    assert!(offer.contains("c=IN IP4 203.0.113.1\n"), "{offer}");
    // Its answer (PCMA) crosses to the PBX.
    let answer = SDP_CARRIER.replace("RTP/AVP 0 101", "RTP/AVP 8 101");
    sim.deliver(
        second_trunk(),
        &carrier_response(&second, 200, "OK", Some("t2"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    assert!(
        body_of(&ok).contains(" RTP/AVP 8 101\n"),
        "{}",
        body_of(&ok)
    );
}

/// A trunk whose codec list takes none of the caller's codecs is skipped on failover (counted
/// as a border refusal); the call goes to the trunk after it.
#[test]
fn failover_skips_a_trunk_with_no_codec_in_common() {
    use crate::sdp::CodecPolicy;
    const THIRD: &str = "198.51.100.9:5090";
    let mut sim = Sim::new();
    let mut cfg = config();
    let trunk = |name: &str, at: &str, allow: &[&str]| {
        let mut t = TrunkConfig::new(
            name,
            Target {
                addr: addr(at),
                transport: TransportKind::Udp,
            },
        );
        t.media.codecs = CodecPolicy {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            deny: Vec::new(),
        };
        t
    };
    cfg.trunks.push(trunk("g729-only", SECOND, &["G729"]));
    cfg.trunks.push(trunk("third", THIRD, &[]));
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    let _ = std::iter::from_fn(|| sim.sbc.poll_event()).count();
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let out = sim.take_carrier();
    let invites: Vec<_> = out
        .iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .collect();
    assert_eq!(invites.len(), 1, "{out:?}");
    assert_eq!(
        invites[0].request_uri_str(),
        Some("sip:15551234567@198.51.100.9:5090"),
        "the G.729-only trunk is skipped"
    );
    let refusals: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::BorderRefusal { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(refusals, ["sdp_no_common_codec"]);
}
