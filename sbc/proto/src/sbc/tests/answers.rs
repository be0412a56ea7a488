//! Answers to the SBC's own OPTIONS pings and REGISTERs reach the health check and the
//! registration, not the B2BUA (which would drop them as strays).

use super::*;
use crate::{health::Health, register::RegState, sip::Method};

/// The first request of `method` the core sent to the carrier.
fn first(sent: &[(Peer, Message)], method: Method) -> Message {
    sent.iter()
        .find(|(to, m)| to.addr == addr(CARRIER) && m.method() == Some(&method))
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| panic!("no {method:?} sent: {sent:?}"))
}

#[test]
fn answers_to_our_register_and_options_reach_the_registrar_and_the_health_check() {
    let mut lab = Lab::new(with_registration_and_health(config()));
    let mut events = lab.events();
    assert!(events.contains(&Event::Registration {
        trunk: "carrier".into(),
        state: RegState::Registering,
    }));
    // The REGISTER goes out at once, the first ping when its timer fires.
    lab.advance(Duration::from_millis(1));
    let sent = lab.sent();
    let register = first(&sent, Method::Register);
    let ping = first(&sent, Method::Options);

    let carrier = peer(Side::Outside, CARRIER);
    let r = lab.deliver(carrier, &ok_for(&register, "Expires: 600\n"));
    assert_eq!(r, Received::RegistrationAnswer);
    let r = lab.deliver(carrier, &ok_for(&ping, ""));
    assert_eq!(r, Received::HealthAnswer);
    events = lab.events();
    assert!(
        events.contains(&Event::Registration {
            trunk: "carrier".into(),
            state: RegState::Registered,
        }),
        "{events:?}"
    );
    assert!(
        events.contains(&Event::Health {
            trunk: "carrier".into(),
            state: Health::Up,
            changed: true,
        }),
        "{events:?}"
    );
    assert_eq!(
        lab.sbc.registrations().next().map(|(_, r)| r.state()),
        Some(RegState::Registered)
    );
    assert_eq!(lab.sbc.health().next(), Some(("carrier", Health::Up)));
    // An answer to something else (here a repeat of the 200 to a finished ping) goes to the
    // B2BUA as before.
    let r = lab.deliver(carrier, &ok_for(&ping, ""));
    assert_eq!(r, Received::Call);
}
