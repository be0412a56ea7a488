//! A source on the operator's denylist gets nothing, even the PBX itself (the denylist is
//! checked before everything else).

use super::*;

#[test]
fn a_denied_source_gets_nothing_even_when_it_is_the_pbx() {
    let mut cfg = config();
    cfg.acl.deny = vec!["10.0.0.2/32".parse().expect("literal")];
    let mut lab = Lab::new(cfg);
    lab.sent();
    for _ in 0..3 {
        let r = lab.deliver(peer(Side::Inside, PBX), &options(PBX, None));
        assert_eq!(r, Received::Dropped(PolicyDrop::Denied));
    }
    assert!(lab.sent().is_empty(), "a denied source gets no answer");
    // Its neighbour in the same network is answered: only the denylisted address is dropped.
    let r = lab.deliver(
        peer(Side::Inside, "10.0.0.3:5060"),
        &options("10.0.0.3:5060", None),
    );
    assert_eq!(r, Received::Call);
    assert_eq!(lab.sent().len(), 1, "the OPTIONS is answered");
}
