//! Bans another node decided (`[state.cluster] share_bans`): enforced here for what is left of
//! them, never against a configured peer, and not at all when this node has bans off.

use super::*;

const SCANNER: &str = "203.0.113.50:5060";

#[test]
fn another_nodes_ban_drops_the_source_for_what_is_left_of_it() {
    let mut lab = Lab::new(config());
    lab.events();
    let from = peer(Side::Outside, SCANNER);
    assert!(lab.sbc.ban_from_cluster(
        lab.now,
        Side::Outside,
        addr(SCANNER).ip(),
        Duration::from_secs(5),
    ));
    assert_eq!(
        lab.deliver(from, &options(SCANNER, None)),
        Received::Dropped(PolicyDrop::Banned)
    );
    assert!(
        !lab.events()
            .iter()
            .any(|e| matches!(e, Event::Banned { .. })),
        "the node that decided the ban published it; no event here"
    );
    // The remaining 5 s, not this node's own ban length.
    lab.advance(Duration::from_secs(6));
    assert_ne!(
        lab.deliver(from, &options(SCANNER, None)),
        Received::Dropped(PolicyDrop::Banned)
    );
}

#[test]
fn a_configured_peer_is_never_banned_from_another_nodes_word() {
    let mut lab = Lab::new(config());
    for (side, who) in [(Side::Outside, CARRIER), (Side::Inside, PBX)] {
        assert!(
            !lab.sbc
                .ban_from_cluster(lab.now, side, addr(who).ip(), Duration::from_secs(600)),
            "{who} on {side:?}"
        );
        assert_eq!(
            lab.deliver(peer(side, who), &options(who, None)),
            Received::Call
        );
    }
    // The carrier's address banned on the inside (where it is no peer) is another matter.
    assert!(lab.sbc.ban_from_cluster(
        lab.now,
        Side::Inside,
        addr(CARRIER).ip(),
        Duration::from_secs(600)
    ));
}

#[test]
fn no_ban_is_installed_where_bans_are_off() {
    let mut cfg = config();
    cfg.guard.rate = 0;
    let mut lab = Lab::new(cfg);
    assert!(!lab.sbc.bans_enabled());
    assert!(!lab.sbc.ban_from_cluster(
        lab.now,
        Side::Outside,
        addr(SCANNER).ip(),
        Duration::from_secs(600)
    ));
    assert_eq!(lab.sbc.bans(lab.now).len(), 0);
}
