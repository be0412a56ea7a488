//! A source that exceeds its message rate is banned for `ban` and gets nothing meanwhile; the
//! ban ends by itself after that time. Configured peers are never banned.

use super::*;

const FLOODER: &str = "10.0.0.7:5060";

#[test]
fn a_flooding_source_is_banned_and_unbanned_after_the_ban_time() {
    let mut lab = Lab::new(config());
    lab.events();
    let from = peer(Side::Inside, FLOODER);
    // rate 1 + burst 2: three messages at once pass.
    for _ in 0..3 {
        assert_eq!(lab.deliver(from, &options(FLOODER, None)), Received::Call);
    }
    assert_eq!(lab.sent().len(), 3);
    assert_eq!(
        lab.deliver(from, &options(FLOODER, None)),
        Received::Dropped(PolicyDrop::Banned)
    );
    let banned = lab
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Banned { .. }))
        .collect::<Vec<_>>();
    assert_eq!(
        banned,
        [Event::Banned {
            side: Side::Inside,
            ip: addr(FLOODER).ip(),
            duration: Duration::from_secs(60),
        }]
    );
    // Banned: nothing for the whole ban, whatever the rate.
    lab.advance(Duration::from_secs(59));
    assert_eq!(lab.sbc.active_bans(), 1);
    assert_eq!(
        lab.deliver(from, &options(FLOODER, None)),
        Received::Dropped(PolicyDrop::Banned)
    );
    assert!(lab.sent().is_empty(), "a banned source gets no answer");
    let bans = lab.sbc.bans(lab.now);
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].dropped, 2);
    // After the ban time it is heard again.
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.sbc.active_bans(), 0);
    assert_eq!(lab.deliver(from, &options(FLOODER, None)), Received::Call);
    assert_eq!(lab.sent().len(), 1);
}

#[test]
fn the_pbx_over_its_budget_is_dropped_but_never_banned() {
    let mut cfg = config();
    cfg.guard.peer_rate = 1;
    cfg.guard.peer_burst = 0;
    let mut lab = Lab::new(cfg);
    let from = peer(Side::Inside, PBX);
    assert_eq!(lab.deliver(from, &options(PBX, None)), Received::Call);
    assert_eq!(
        lab.deliver(from, &options(PBX, None)),
        Received::Dropped(PolicyDrop::PeerOverBudget)
    );
    assert!(
        !lab.events()
            .iter()
            .any(|e| matches!(e, Event::Banned { .. })),
        "a configured peer is never banned"
    );
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.deliver(from, &options(PBX, None)), Received::Call);
}

#[test]
fn the_pbx_over_its_budget_still_gets_its_answers_and_in_dialog_requests_through() {
    let mut cfg = config();
    cfg.guard.peer_rate = 1;
    cfg.guard.peer_burst = 0;
    let mut lab = Lab::new(cfg);
    let from = peer(Side::Inside, PBX);
    assert_eq!(lab.deliver(from, &options(PBX, None)), Received::Call);
    assert_eq!(
        lab.deliver(from, &options(PBX, None)),
        Received::Dropped(PolicyDrop::PeerOverBudget)
    );
    // Over budget, its answers (to the calls other peers place to it) and its in-dialog
    // requests reach the call layer; only new requests are shed.
    let answer = "SIP/2.0 180 Ringing\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKs0-00112233\n\
         From: <sip:carrier@10.0.0.1>;tag=s0-aa\n\
         To: <sip:100@10.0.0.2>;tag=pbx1\n\
         Call-ID: c1@10.0.0.1\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n";
    let bye = format!(
        "BYE sip:sbc@10.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bKbye1\n\
         Max-Forwards: 70\n\
         From: <sip:100@{PBX}>;tag=pbx2\n\
         To: <sip:carrier@10.0.0.1>;tag=s0-bb\n\
         Call-ID: c2@{PBX}\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    );
    for _ in 0..10 {
        assert_eq!(lab.deliver(from, answer), Received::Call);
        assert_eq!(lab.deliver(from, &bye), Received::Call);
    }
    assert_eq!(
        lab.deliver(from, &options(PBX, None)),
        Received::Dropped(PolicyDrop::PeerOverBudget)
    );
}
