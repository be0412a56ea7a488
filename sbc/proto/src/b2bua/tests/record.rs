//! Call detail facts (`record.rs`): one [`Event::CallRecord`] per call attempt, with the
//! final status, who ended it, both legs' Call-IDs and the numbers each leg saw.

use super::*;
use crate::routing::{NumberMatch, NumberRule, OutboundRoute};

fn records(sim: &mut Sim) -> Vec<CallRecord> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::CallRecord(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn leg(r: &CallRecord, side: Side) -> LegRecord {
    r.legs[usize::from(side == Side::Outside)]
        .clone()
        .expect("leg set up")
}

fn pbx_in_dialog(method: &str, cseq: u32, tag: &str) -> String {
    format!(
        "{method} sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{method}{cseq};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: {cseq} {method}
Content-Length: 0

"
    )
}

#[test]
fn answered_call_ended_by_the_caller_has_both_legs_and_normalised_numbers() {
    let mut sim = Sim::new();
    // The trunk's outbound rule turns the national number into E.164 on the carrier leg.
    let mut cfg = config();
    cfg.trunks[0].outbound.called.push(NumberRule {
        matcher: NumberMatch::Prefix("1555".into()),
        replace: None,
        strip: 1,
        add: "+1".into(),
    });
    sim.sbc.set_config(cfg);
    let invite = establish_outbound(&mut sim);
    assert!(
        records(&mut sim).is_empty(),
        "no record while the call runs"
    );
    let tag = sim.sbc.calls()[0].legs[0].local_tag.clone();
    sim.advance(Duration::from_secs(5));
    sim.deliver(pbx(), &pbx_in_dialog("BYE", 11, &tag));
    let bye = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &carrier_response(&bye, 200, "OK", None, None));
    let r = records(&mut sim);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, EndReason::Bye);
    assert_eq!(r.hangup, Hangup::Caller);
    assert_eq!(r.from, Side::Inside);
    assert_eq!(r.trunk, Some(0));
    assert!(
        r.media.is_some(),
        "the media session is named after its release"
    );
    let (started, answered) = (
        r.started.expect("started"),
        r.answered_at.expect("answered"),
    );
    assert!(answered >= started);
    let inside = leg(r, Side::Inside);
    assert_eq!(inside.call_id, "pbx-call-1");
    assert_eq!(
        (inside.calling.as_str(), inside.called.as_str()),
        ("100", "15551234567")
    );
    let outside = leg(r, Side::Outside);
    assert_eq!(outside.call_id, invite.call_id());
    assert_eq!(outside.called, "+15551234567", "after the trunk's rule");
    assert_eq!(outside.calling, "100");
    sim.assert_clean();
}

#[test]
fn unanswered_attempts_record_status_and_who_ended_them() {
    // Busy from the carrier: the callee ended it.
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 486, "Busy Here", Some("ctag1"), None),
    );
    let r = records(&mut sim);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].status, r[0].hangup, r[0].answered_at),
        (486, Hangup::Callee, None)
    );
    assert_eq!(leg(&r[0], Side::Outside).call_id, invite.call_id());

    // CANCEL from the PBX after ringing: the caller ended it, 487.
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
    );
    sim.deliver(
        pbx(),
        &pbx_invite("z9hG4bKpbx1", None)
            .replacen("INVITE sip:", "CANCEL sip:", 1)
            .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL"),
    );
    let cancel = sim.take_carrier().pop().expect("CANCEL");
    sim.deliver(
        carrier(),
        &carrier_response(&cancel, 200, "OK", Some("ctag1"), None),
    );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 487, "Request Terminated", Some("ctag1"), None),
    );
    let r = records(&mut sim);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].status, r[0].hangup), (487, Hangup::Caller));
    assert_eq!(r[0].reason, EndReason::Cancelled);

    // Nobody answers: the SBC gives up with 408.
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.advance(Duration::from_secs(33));
    let r = records(&mut sim);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].status, r[0].hangup), (408, Hangup::Sbc));
}

#[test]
fn a_refused_invite_gets_a_record_with_the_callers_leg_only() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.routes = vec![OutboundRoute {
        name: "only-0".into(),
        matcher: NumberMatch::Prefix("0".into()),
        trunks: vec![0],
        weights: None,
    }];
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(status(&sim.take_pbx()[0]), 404);
    let r = records(&mut sim);
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!((r.call, r.status, r.hangup), (None, 404, Hangup::Sbc));
    assert!(r.legs[1].is_none(), "no carrier leg");
    let inside = leg(r, Side::Inside);
    assert_eq!(
        (
            inside.call_id.as_str(),
            inside.calling.as_str(),
            inside.called.as_str()
        ),
        ("pbx-call-1", "100", "15551234567")
    );
}
