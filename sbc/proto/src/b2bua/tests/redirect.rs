//! 3xx from the carrier: recursion to the Contacts (q order, bounded, loop-safe, same trunk
//! policy) or relay to the PBX (Contacts hidden when configured).

use super::*;

const ALT1: &str = "198.51.100.8:5090";
const ALT2: &str = "198.51.100.9:5090";

fn redirect(invite: &Message, code: u16, contacts: &str) -> String {
    carrier_response(invite, code, "Moved Temporarily", Some("ctag3xx"), None).replacen(
        "Content-Length:",
        &format!("Contact: {contacts}\nContent-Length:"),
        1,
    )
}

fn redirects(sim: &mut Sim) -> Vec<&'static str> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::Redirect { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

fn sim_with(f: impl FnOnce(&mut B2buaConfig)) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].outbound.called = vec![crate::routing::NumberRule {
        matcher: crate::routing::NumberMatch::Prefix("0".into()),
        replace: None,
        strip: 1,
        add: "+49".into(),
    }];
    f(&mut cfg);
    sim.sbc.set_config(cfg);
    sim
}

/// The PBX's INVITE; returns the carrier's INVITE.
fn start(sim: &mut Sim) -> Message {
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    sim.take_carrier().remove(0)
}

fn invites_and_acks(msgs: Vec<Message>) -> (Vec<Message>, usize) {
    let acks = msgs
        .iter()
        .filter(|m| m.method() == Some(&Method::Ack))
        .count();
    let invites = msgs
        .into_iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .collect();
    (invites, acks)
}

#[test]
fn a_302_is_followed_in_q_order_with_the_trunks_rules_and_never_twice() {
    let mut sim = sim_with(|_| {});
    let first = start(&mut sim);
    sim.deliver(
        carrier(),
        &redirect(
            &first,
            302,
            &format!("<sip:0301111@{ALT2}>;q=0.5, <sip:0302222@{ALT1}>;q=0.9, <sip:gw.example>"),
        ),
    );
    assert!(sim.take_pbx().is_empty(), "the PBX sees no 302");
    let (invites, acks) = invites_and_acks(sim.take_carrier());
    assert_eq!(acks, 1, "the 302 is ACKed hop-by-hop");
    assert_eq!(invites.len(), 1);
    let second = &invites[0];
    assert_eq!(
        second.request_uri_str(),
        Some("sip:+49302222@198.51.100.8:5090"),
        "highest q first; the trunk's number rules applied"
    );
    assert_ne!(second.call_id(), first.call_id(), "a new carrier dialog");
    assert_eq!(second.body(), first.body(), "the same offer");
    // The second target redirects back to itself and to the SBC: only the third is new.
    sim.deliver(
        carrier(),
        &redirect(
            second,
            302,
            &format!("<sip:0302222@{ALT1}>, <sip:x@203.0.113.1:5080>, <sip:0301111@{ALT2}>;q=0.1"),
        ),
    );
    let (invites, _) = invites_and_acks(sim.take_carrier());
    assert_eq!(invites.len(), 1);
    let third = &invites[0];
    assert_eq!(
        third.request_uri_str(),
        Some("sip:+49301111@198.51.100.9:5090")
    );
    sim.deliver(
        carrier(),
        &carrier_response(third, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx();
    assert_eq!(ok.iter().map(status).collect::<Vec<_>>(), [200]);
    assert_eq!(redirects(&mut sim), ["followed", "followed"]);
    let call = sim.sbc.calls().remove(0);
    assert_eq!(call.legs[1].call_id, third.call_id());
    assert_eq!(call.legs[1].peer.addr, addr(ALT2));
    assert_eq!(sim.sbc.trunk_calls(), [1], "still one call on the trunk");
}

#[test]
fn a_redirect_with_no_usable_contact_reaches_the_pbx_with_contacts_hidden() {
    let mut sim = sim_with(|cfg| cfg.trunks[0].hide_redirect_contacts = true);
    let first = start(&mut sim);
    // Only the SBC itself, the target just tried and a name: nothing to follow.
    sim.deliver(
        carrier(),
        &redirect(
            &first,
            302,
            "<sip:1@203.0.113.1:5080>, <sip:15551234567@198.51.100.7:5090>;q=0.7, \
             <sip:2@gw.example>",
        ),
    );
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [302]);
    let contacts: Vec<&str> = r[0]
        .headers()
        .all(HeaderName::Contact)
        .filter_map(|h| h.value_str())
        .collect();
    assert_eq!(
        contacts,
        [
            "<sip:1@10.0.0.1:5060>",
            "<sip:15551234567@10.0.0.1:5060>;q=0.7",
            "<sip:2@10.0.0.1:5060>"
        ],
        "the carrier's addresses do not reach the PBX"
    );
    assert_eq!(redirects(&mut sim), ["no_target"]);
    sim.assert_clean();
}

#[test]
fn recursion_stops_at_max_redirects() {
    let mut sim = sim_with(|cfg| {
        cfg.max_redirects = 1;
        cfg.trunks[0].hide_redirect_contacts = true;
    });
    let first = start(&mut sim);
    sim.deliver(
        carrier(),
        &redirect(&first, 302, &format!("<sip:1@{ALT1}>")),
    );
    let (invites, _) = invites_and_acks(sim.take_carrier());
    assert_eq!(invites.len(), 1);
    sim.deliver(
        carrier(),
        &redirect(&invites[0], 302, &format!("<sip:2@{ALT2}>")),
    );
    let (invites, _) = invites_and_acks(sim.take_carrier());
    assert!(invites.is_empty(), "the limit is reached");
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [302]);
    assert_eq!(redirects(&mut sim), ["followed", "limit"]);
    sim.assert_clean();
}

#[test]
fn a_relay_trunk_passes_the_3xx_to_the_pbx() {
    let mut sim = sim_with(|cfg| {
        cfg.trunks[0].redirect = Redirect::Relay;
        cfg.trunks[0].hide_redirect_contacts = true;
    });
    let first = start(&mut sim);
    sim.deliver(
        carrier(),
        &redirect(&first, 301, &format!("<sip:1@{ALT1}>")),
    );
    let (invites, acks) = invites_and_acks(sim.take_carrier());
    assert!(invites.is_empty());
    assert_eq!(acks, 1);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [301]);
    assert_eq!(hdr(&r[0], HeaderName::Contact), "<sip:1@10.0.0.1:5060>");
    assert!(redirects(&mut sim).is_empty());
    sim.assert_clean();
}

/// A 302 with two Contacts (q=0.9 at ALT1, q=0.5 at ALT2); returns the INVITE to ALT1.
fn redirected_to_the_best(sim: &mut Sim) -> Message {
    let first = start(sim);
    sim.deliver(
        carrier(),
        &redirect(
            &first,
            302,
            &format!("<sip:0302222@{ALT2}>;q=0.5, <sip:0301111@{ALT1}>;q=0.9"),
        ),
    );
    let (mut invites, _) = invites_and_acks(sim.take_carrier());
    assert_eq!(invites.len(), 1);
    let best = invites.remove(0);
    assert_eq!(
        best.request_uri_str(),
        Some("sip:+49301111@198.51.100.8:5090")
    );
    best
}

#[test]
fn a_busy_redirect_target_hands_the_call_to_the_next_contact_in_q_order() {
    let mut sim = sim_with(|_| {});
    let best = redirected_to_the_best(&mut sim);
    sim.deliver(
        carrier(),
        &carrier_response(&best, 486, "Busy Here", Some("ctag486"), None),
    );
    assert!(sim.take_pbx().is_empty(), "the PBX sees no 486");
    let (invites, acks) = invites_and_acks(sim.take_carrier());
    assert_eq!(acks, 1, "the 486 is ACKed hop-by-hop");
    assert_eq!(invites.len(), 1, "the lower-q Contact is tried");
    let next = &invites[0];
    assert_eq!(
        next.request_uri_str(),
        Some("sip:+49302222@198.51.100.9:5090")
    );
    assert_ne!(next.call_id(), best.call_id(), "a new carrier dialog");
    sim.deliver(
        carrier(),
        &carrier_response(next, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [200]);
    assert_eq!(redirects(&mut sim), ["followed", "followed"]);
    let call = sim.sbc.calls().remove(0);
    assert_eq!(call.legs[1].peer.addr, addr(ALT2));
    assert_eq!(sim.sbc.trunk_calls(), [1], "still one call on the trunk");
}

#[test]
fn the_last_failure_of_an_exhausted_redirect_set_reaches_the_pbx() {
    let mut sim = sim_with(|_| {});
    let best = redirected_to_the_best(&mut sim);
    sim.deliver(
        carrier(),
        &carrier_response(&best, 404, "Not Found", Some("ctag404"), None),
    );
    let (invites, _) = invites_and_acks(sim.take_carrier());
    assert_eq!(invites.len(), 1);
    sim.deliver(
        carrier(),
        &carrier_response(&invites[0], 486, "Busy Here", Some("ctag486"), None),
    );
    let (invites, acks) = invites_and_acks(sim.take_carrier());
    assert!(
        invites.is_empty(),
        "no Contact is left, none is tried twice"
    );
    assert_eq!(acks, 1);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [486]);
    assert_eq!(redirects(&mut sim), ["followed", "followed"]);
    sim.assert_clean();
}

#[test]
fn a_6xx_from_a_redirect_target_ends_the_search() {
    let mut sim = sim_with(|_| {});
    let best = redirected_to_the_best(&mut sim);
    sim.deliver(
        carrier(),
        &carrier_response(&best, 603, "Decline", Some("ctag603"), None),
    );
    let (invites, acks) = invites_and_acks(sim.take_carrier());
    assert!(invites.is_empty(), "603: no other Contact is tried");
    assert_eq!(acks, 1);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [603]);
    assert_eq!(redirects(&mut sim), ["followed"]);
    sim.assert_clean();
}
