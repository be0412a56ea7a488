//! An active/standby node registers only while it holds the registration lease: held at start
//! (no REGISTER), released (REGISTER at once), held again (no refresh, and no `Expires: 0`
//! either — the binding's contact is the shared address the other node now refreshes).

use super::*;
use crate::sip::Method;

fn registers(sent: &[(Peer, Message)]) -> usize {
    sent.iter()
        .filter(|(_, m)| m.method() == Some(&Method::Register))
        .count()
}

#[test]
fn a_held_node_sends_no_register_until_it_holds_the_lease() {
    let mut cfg = with_registration_and_health(config());
    cfg.registrations_held = true;
    let mut lab = Lab::new(cfg);
    lab.advance(Duration::from_secs(5));
    assert_eq!(registers(&lab.sent()), 0, "the standby does not register");
    assert!(!lab.sbc.register_now(lab.now, "carrier"), "nor when asked");
    assert_eq!(registers(&lab.sent()), 0);

    lab.sbc.set_registering(lab.now, true);
    let sent = lab.sent();
    assert_eq!(registers(&sent), 1, "lease taken: REGISTER at once");
    let carrier = peer(Side::Outside, CARRIER);
    for (_, m) in sent {
        if m.method() == Some(&Method::Register) {
            lab.deliver(carrier, &ok_for(&m, "Expires: 60\n"));
        }
    }

    lab.sbc.set_registering(lab.now, false);
    let sent = lab.sent();
    assert_eq!(registers(&sent), 0, "lease lost: no Expires: 0 {sent:?}");
    // Long past the refresh of a 60 s binding: nothing.
    for _ in 0..12 {
        lab.advance(Duration::from_secs(10));
    }
    assert_eq!(registers(&lab.sent()), 0, "no refresh while held");
}
