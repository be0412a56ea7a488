//! Call admission control: concurrent-call and calls-per-second limits, globally and per
//! trunk, answered with 503 and Retry-After toward the caller (RFC 3261 §21.5.4).

use super::*;
use crate::limit::CallLimits;

fn sim_with(limits: CallLimits, trunk_limits: CallLimits) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.limits = limits;
    cfg.trunks[0].limits = trunk_limits;
    sim.sbc.set_config(cfg);
    sim
}

/// A PBX INVITE with its own Call-ID and tag, so each is a new call.
fn invite(i: u32) -> String {
    pbx_invite(&format!("z9hG4bKpbx{i}"), Some(SDP_PBX))
        .replace("pbx-call-1", &format!("pbx-call-1-{i}"))
        .replace("tag=ptag1", &format!("tag=ptag1-{i}"))
}

fn drain_events(sim: &mut Sim) -> Vec<Event> {
    std::iter::from_fn(|| sim.sbc.poll_event()).collect()
}

#[test]
fn concurrency_limit_gives_503_with_retry_after_and_frees_on_hangup() {
    for (limits, trunk, label) in [
        (
            CallLimits {
                max_calls: Some(2),
                max_cps: None,
            },
            CallLimits::default(),
            "max_calls",
        ),
        (
            CallLimits::default(),
            CallLimits {
                max_calls: Some(2),
                max_cps: None,
            },
            "trunk_max_calls",
        ),
    ] {
        let mut sim = sim_with(limits, trunk);
        for i in 0..2 {
            sim.deliver(pbx(), &invite(i));
        }
        let invites = sim.take_carrier();
        assert_eq!(invites.len(), 2, "two calls admitted");
        assert!(sim.take_pbx().iter().all(|m| status(m) == 100));
        drain_events(&mut sim);

        sim.deliver(pbx(), &invite(2));
        assert!(
            sim.take_carrier().is_empty(),
            "the third never reaches the carrier"
        );
        let r = sim.take_pbx();
        assert_eq!(r.len(), 1);
        assert_eq!(status(&r[0]), 503);
        assert_eq!(hdr(&r[0], HeaderName::RetryAfter), "5");
        assert!(
            r[0].to().tag().is_some(),
            "a final response carries a To tag"
        );
        let events = drain_events(&mut sim);
        assert_eq!(
            events[0],
            Event::AdmissionRejected {
                from: Side::Inside,
                limit: label,
            }
        );
        // The refused attempt gets its detail record (`record.rs`).
        assert!(
            matches!(&events[1..], [Event::CallRecord(r)] if r.status == 503 && r.call.is_none()),
            "{events:?}"
        );
        assert_eq!(sim.sbc.stats().calls, 2);

        // One call is refused by the carrier and ends: a new one is admitted again.
        sim.deliver(
            carrier(),
            &carrier_response(&invites[0], 486, "Busy Here", Some("b"), None),
        );
        assert_eq!(sim.sbc.stats().calls, 1);
        sim.take_pbx();
        sim.take_carrier();
        sim.deliver(pbx(), &invite(3));
        assert_eq!(
            status(&sim.take_pbx()[0]),
            100,
            "admitted after a call ended"
        );
        assert_eq!(sim.sbc.stats().calls, 2);
    }
}

#[test]
fn cps_limit_refuses_the_excess_and_recovers_after_a_second() {
    let mut sim = sim_with(
        CallLimits::default(),
        CallLimits {
            max_calls: None,
            max_cps: Some(3),
        },
    );
    for i in 0..5 {
        sim.deliver(pbx(), &invite(i));
    }
    let to_pbx = sim.take_pbx();
    let rejected = to_pbx.iter().filter(|m| status(m) == 503).count();
    assert_eq!(sim.take_carrier().len(), 3, "a burst of max_cps");
    assert_eq!(rejected, 2);
    assert!(
        drain_events(&mut sim)
            .iter()
            .filter(|e| matches!(
                e,
                Event::AdmissionRejected {
                    limit: "trunk_max_cps",
                    ..
                }
            ))
            .count()
            == 2
    );
    // Inbound calls count against the same trunk.
    sim.deliver(
        carrier(),
        &pbx_invite("z9hG4bKcarx", Some(SDP_CARRIER))
            .replace("10.0.0.10:5070", "198.51.100.7:5090")
            .replace("10.0.0.1", "203.0.113.1")
            .replace("pbx.lan", "198.51.100.7")
            .replace("pbx-call-1", "car-call-9")
            .replace("ptag1", "ctag9")
            .replace("PBX-Model-9", "Carrier-Switch-3"),
    );
    let r = sim.take_carrier();
    assert_eq!(status(&r[0]), 503, "inbound too: {r:?}");
    // One second later the bucket has refilled: three more.
    sim.advance(Duration::from_secs(1));
    sim.take_carrier();
    sim.take_pbx();
    for i in 10..14 {
        sim.deliver(pbx(), &invite(i));
    }
    let statuses: Vec<u16> = sim.take_pbx().iter().map(status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        1,
        "{statuses:?}"
    );
}
