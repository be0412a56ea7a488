//! Request retransmissions absorbed and counted; our own resent on Timer A.

use super::*;

#[test]
fn retransmitted_invite_is_absorbed_not_relayed_twice() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    assert_eq!(sim.take_carrier().len(), 1);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(
        sim.take_pbx().iter().map(status).collect::<Vec<_>>(),
        [100],
        "100 resent"
    );
    assert!(sim.take_carrier().is_empty());
    assert_eq!(sim.media.len(), 1, "one allocation");
}

#[test]
fn absorbed_request_retransmissions_are_counted() {
    let mut sim = Sim::new();
    let invite = pbx_invite("z9hG4bKretx", Some(SDP_PBX));
    sim.deliver(pbx(), &invite);
    assert_eq!(sim.sbc.counters().retransmissions_received, 0);
    let sent = sim.sbc.counters().retransmissions_sent;
    sim.deliver(pbx(), &invite);
    sim.deliver(pbx(), &invite);
    assert_eq!(sim.sbc.counters().retransmissions_received, 2);
    // Each absorbed INVITE retransmission is answered with the last provisional again.
    assert_eq!(sim.sbc.counters().retransmissions_sent, sent + 2);
}

#[test]
fn timer_a_resends_are_counted_as_retransmissions_sent() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKtimera", Some(SDP_PBX)));
    sim.take_pbx();
    assert_eq!(sim.take_carrier().len(), 1, "the INVITE to the carrier");
    let before = sim.sbc.counters().retransmissions_sent;
    // No answer from the carrier: Timer A (T1 = 500 ms) resends the INVITE over UDP.
    sim.advance(Duration::from_millis(600));
    let resent = sim.take_carrier();
    assert_eq!(resent.len(), 1, "one retransmission after T1");
    assert_eq!(resent[0].method(), Some(&Method::Invite));
    assert_eq!(sim.sbc.counters().retransmissions_sent, before + 1);
}
