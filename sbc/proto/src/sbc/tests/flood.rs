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
