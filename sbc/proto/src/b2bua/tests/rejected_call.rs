//! Calls the callee refuses or never answers.

use super::*;

#[test]
fn busy_and_unavailable_are_relayed_with_retry_after_and_acked_hop_by_hop() {
    for (code, reason) in [
        (486, "Busy Here"),
        (503, "Service Unavailable"),
        (603, "Decline"),
        (404, "Not Found"),
    ] {
        let mut sim = Sim::new();
        sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
        sim.take_pbx();
        let invite = sim.take_carrier().remove(0);
        sim.deliver(
            carrier(),
            &carrier_response(&invite, code, reason, Some("ctag1"), None),
        );
        let ack = sim.take_carrier();
        assert_eq!(ack[0].method(), Some(&Method::Ack), "{code}");
        assert_eq!(
            ack[0].top_via().branch(),
            invite.top_via().branch(),
            "non-2xx ACK reuses the branch"
        );
        let r = sim.take_pbx().remove(0);
        assert_eq!(status(&r), code);
        assert_eq!(r.reason_phrase(), Some(reason));
        if code == 503 {
            assert_eq!(
                r.headers()
                    .all_named("Retry-After")
                    .next()
                    .and_then(|h| h.value_str()),
                Some("120")
            );
        }
        assert!(sim.media.is_empty());
        assert_eq!(sim.sbc.stats().calls, 0);
        // No ACK from the PBX: Timer G retransmits, Timer H gives up; nothing is leaked.
        sim.advance(Duration::from_secs(1));
        assert!(
            sim.take_pbx().iter().all(|m| status(m) == code),
            "G retransmits the final"
        );
        sim.assert_clean();
    }
}

#[test]
fn no_answer_times_out_with_408_to_the_pbx() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    sim.advance(Duration::from_secs(33));
    let carrier_msgs = sim.take_carrier();
    assert_eq!(carrier_msgs.len(), 7, "INVITE + 6 Timer A retransmissions");
    let r = sim.take_pbx();
    // The 408 goes out at 64·T1; the PBX never ACKs it here, so Timer G repeats it.
    assert!(
        !r.is_empty() && r.iter().all(|m| status(m) == 408),
        "{:?}",
        r.iter().map(status).collect::<Vec<_>>()
    );
    sim.assert_clean();
}
