//! A reconfiguration keeps what did not change (a registration's binding, a check's health)
//! and reports every state again, so a driver that resets its gauges gets them back; a removed
//! registration takes its binding away.

use super::*;
use crate::{health::Health, register::RegState, sip::Method};

/// Registered and up, with nothing left to send or report.
fn registered_and_up() -> Lab {
    let mut lab = Lab::new(with_registration_and_health(config()));
    lab.advance(Duration::from_millis(1));
    let carrier = peer(Side::Outside, CARRIER);
    for (_, m) in lab.sent() {
        let extra = if m.method() == Some(&Method::Register) {
            "Expires: 600\n"
        } else {
            ""
        };
        lab.deliver(carrier, &ok_for(&m, extra));
    }
    lab.events();
    assert!(lab.sent().is_empty());
    lab
}

#[test]
fn an_unchanged_configuration_keeps_the_binding_and_reports_every_state_again() {
    let mut lab = registered_and_up();
    lab.sbc
        .reconfigure(lab.now, with_registration_and_health(config()));
    assert!(lab.sent().is_empty(), "no new REGISTER, no new ping yet");
    let events = lab.events();
    assert!(events.contains(&Event::Registration {
        trunk: "carrier".into(),
        state: RegState::Registered,
    }));
    assert!(events.contains(&Event::Health {
        trunk: "carrier".into(),
        state: Health::Up,
        changed: false,
    }));
    assert!(events.contains(&Event::AclChanged));
}

#[test]
fn a_removed_registration_takes_its_binding_away() {
    let mut lab = registered_and_up();
    let mut cfg = with_registration_and_health(config());
    cfg.registrations.clear();
    lab.sbc.reconfigure(lab.now, cfg);
    let sent = lab.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (to, m) = &sent[0];
    assert_eq!(to.addr, addr(CARRIER));
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.headers().expires().ok().flatten(), Some(0));
    assert_eq!(lab.sbc.registrations().count(), 0);
}
