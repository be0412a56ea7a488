//! Overload control (`overload.rs`): while the new requests wait behind a standing queue, new
//! calls get a stateless 503 without Retry-After; retransmissions, CANCELs and the calls
//! already up go on; a short wait admits calls again.

use super::drain::{answer, establish, header, invite, lab, pbx_bye};
use super::*;
use crate::{b2bua, sip::Method};

const LONG: Duration = Duration::from_millis(80);

fn pbx() -> Peer {
    peer(Side::Inside, PBX)
}

/// Brings `lab` to the edge of shedding: a new call (`n`) admitted after a long wait, and the
/// whole interval gone by; the next long wait sheds.
fn overload(lab: &mut Lab, n: u32) {
    assert_eq!(lab.deliver_waited(pbx(), &invite(n), LONG), Received::Call);
    lab.advance(Duration::from_millis(100));
    lab.sent();
    lab.events();
}

fn rejected_for_queue_delay(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Call(b2bua::Event::AdmissionRejected {
                    limit: "queue_delay",
                    ..
                })
            )
        })
        .count()
}

#[test]
fn a_standing_queue_refuses_new_calls_statelessly_without_retry_after() {
    let mut lab = lab();
    // A wait above the target alone is a burst: the call goes through.
    assert_eq!(lab.deliver_waited(pbx(), &invite(1), LONG), Received::Call);
    assert!(!lab.sbc.shedding());
    lab.advance(Duration::from_millis(99));
    assert_eq!(lab.deliver_waited(pbx(), &invite(2), LONG), Received::Call);
    lab.sent();
    lab.events();
    lab.advance(Duration::from_millis(1));
    // A full interval of long waits: a standing queue.
    assert_eq!(lab.deliver_waited(pbx(), &invite(3), LONG), Received::Shed);
    assert!(lab.sbc.shedding());
    let sent = lab.sent();
    assert_eq!(sent.len(), 1, "only the refusal: {sent:?}");
    let (to, refusal) = &sent[0];
    assert_eq!(to.side, Side::Inside);
    assert_eq!(refusal.status().map(|s| s.as_u16()), Some(503));
    assert!(
        header(refusal, "Retry-After").is_empty(),
        "no Retry-After: upstream keeps the SBC in rotation"
    );
    assert!(refusal.to_tag().is_some(), "a final response has a To tag");
    assert_eq!(rejected_for_queue_delay(&lab.events()), 1);
    assert_eq!(
        lab.sbc.calls().len(),
        2,
        "nothing is kept for the refused call"
    );
    assert_eq!(
        lab.sbc.b2bua().stats().server_transactions,
        2,
        "no transaction for it either"
    );
}

#[test]
fn a_short_wait_admits_new_calls_again() {
    let mut lab = lab();
    overload(&mut lab, 1);
    assert_eq!(lab.deliver_waited(pbx(), &invite(2), LONG), Received::Shed);
    assert_eq!(
        lab.deliver_waited(pbx(), &invite(3), Duration::from_millis(3)),
        Received::Call
    );
    assert!(!lab.sbc.shedding());
    let sent = lab.sent();
    assert!(
        sent.iter()
            .any(|(to, m)| to.side == Side::Outside && m.method() == Some(&Method::Invite)),
        "call 3 goes to the carrier: {sent:?}"
    );
}

#[test]
fn retransmissions_cancels_and_calls_up_are_not_refused() {
    let mut lab = lab();
    let to = establish(&mut lab, 1);
    overload(&mut lab, 2);
    // The retransmitted INVITE of call 2 (taken up before the overload) is absorbed by its
    // transaction: the PBX gets its 100 Trying again, not a 503.
    assert_eq!(lab.deliver_waited(pbx(), &invite(2), LONG), Received::Call);
    let again: Vec<u16> = lab
        .sent()
        .iter()
        .filter_map(|(_, m)| m.status().map(|s| s.as_u16()))
        .collect();
    assert_eq!(again, [100]);
    // Its CANCEL (no To tag: the lane of new requests) still reaches it.
    let cancel = invite(2)
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel
        .split("Content-Type")
        .next()
        .map(|head| format!("{head}Content-Length: 0\n\n"))
        .expect("headers");
    assert_eq!(lab.deliver_waited(pbx(), &cancel, LONG), Received::Call);
    let statuses: Vec<u16> = lab
        .sent()
        .iter()
        .filter(|(to, _)| to.side == Side::Inside)
        .filter_map(|(_, m)| m.status().map(|s| s.as_u16()))
        .collect();
    assert!(statuses.contains(&200), "CANCEL answered: {statuses:?}");
    assert!(lab.sbc.shedding(), "still overloaded");
    // The established call's BYE (To tag: the other lane) goes through whatever it waited.
    assert_eq!(
        lab.deliver_waited(pbx(), &pbx_bye(1, &to), Duration::from_secs(1)),
        Received::Call
    );
    let relayed: Vec<_> = lab
        .sent()
        .into_iter()
        .filter(|(to, m)| to.side == Side::Outside && m.method() == Some(&Method::Bye))
        .collect();
    assert_eq!(relayed.len(), 1, "the BYE is relayed");
    lab.deliver(peer(Side::Outside, CARRIER), &answer(&relayed[0].1, 200));
    assert_eq!(rejected_for_queue_delay(&lab.events()), 0);
}

#[test]
fn a_zero_target_never_refuses() {
    let mut cfg = config();
    cfg.guard = crate::protect::GuardConfig::default();
    cfg.overload.target = Duration::ZERO;
    let mut lab = Lab::new(cfg);
    for n in 1..=20 {
        assert_eq!(
            lab.deliver_waited(pbx(), &invite(n), Duration::from_secs(2)),
            Received::Call
        );
        lab.advance(Duration::from_millis(50));
    }
    assert!(!lab.sbc.shedding());
}

#[test]
fn a_reconfiguration_turning_it_off_admits_at_once() {
    let mut lab = lab();
    overload(&mut lab, 1);
    assert_eq!(lab.deliver_waited(pbx(), &invite(9), LONG), Received::Shed);
    let mut cfg = config();
    cfg.guard = crate::protect::GuardConfig::default();
    cfg.overload.target = Duration::ZERO;
    lab.sbc.reconfigure(lab.now, cfg);
    assert_eq!(lab.deliver_waited(pbx(), &invite(2), LONG), Received::Call);
}
