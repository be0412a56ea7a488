//! Calls ended by the SBC: a missing ACK, the admin API, a media timeout.

use super::*;

#[test]
fn missing_ack_ends_the_call_with_bye_on_both_legs() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    sim.take_carrier();
    sim.advance(Duration::from_secs(40));
    let pbx_msgs = sim.take_pbx();
    assert!(
        pbx_msgs.iter().filter(|m| status(m) == 200).count() >= 6,
        "2xx retransmitted"
    );
    assert!(
        pbx_msgs.iter().any(|m| m.method() == Some(&Method::Bye)),
        "BYE to the PBX"
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye)),
        "BYE to the carrier"
    );
    let mut ended = None;
    while let Some(e) = sim.sbc.poll_event() {
        if let Event::CallEnded { reason, .. } = e {
            ended = Some(reason);
        }
    }
    assert_eq!(ended, Some(EndReason::NoAck));
    sim.assert_clean();
}

#[test]
fn end_call_from_the_api_sends_bye_on_both_legs() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let id = sim.sbc.calls()[0].id;
    assert!(sim.sbc.end_call(sim.now, id, &mut sim.media));
    assert!(
        !sim.sbc.end_call(sim.now, id, &mut sim.media),
        "already gone"
    );
    sim.collect();
    assert!(
        sim.take_pbx()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    sim.assert_clean();
}

/// An established outbound call whose relay then reports `event` for its session, on
/// [`FakeMedia`]: the real table reports a failure only when a stream whose ports the peers
/// were told must bind them and cannot, which takes a call-layer verb or a restore (see
/// `a_socketless_streams_port_taken_before_it_needs_a_socket_ends_the_call`), not an event
/// out of nowhere on an established call.
fn relay_reports(event: fn(SessionId) -> MediaEvent) -> Sim<FakeMedia> {
    let mut sim = Sim::fake();
    establish_outbound(&mut sim);
    let session = *sim.media.sessions.keys().next().expect("session");
    sim.media.inject(event(session));
    sim.advance(Duration::from_millis(1));
    sim.sbc.handle_timeout(sim.now, &mut sim.media);
    sim.collect();
    sim
}

/// The relay lost the call's media (its advertised ports could not be bound): the call ends
/// like a media timeout, with its own reason.
#[test]
fn media_failure_sends_bye_both_ways() {
    let mut sim = relay_reports(MediaEvent::Failed);
    for msgs in [sim.take_pbx(), sim.take_carrier()] {
        assert!(msgs.iter().any(|m| m.method() == Some(&Method::Bye)));
    }
    let ended: Vec<EndReason> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::CallEnded { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [EndReason::MediaFailure]);
    sim.assert_clean();
}

/// No media for the table's timeout: the relay reports it, and the call ends.
#[test]
fn media_timeout_sends_bye_both_ways() {
    let mut relay = relay_settings();
    relay.timeout = Some(Duration::from_secs(30));
    let mut sim = Sim::with_relay(relay);
    establish_outbound(&mut sim);
    sim.advance(Duration::from_secs(29));
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take_pbx()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert!(
        sim.take_carrier()
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    sim.assert_clean();
}

/// The same failure on the real table: with in-kernel latching the call's stream starts
/// socketless (its ports are in the SDP, no socket bound); the answer asks the relay to
/// terminate the PBX's DTMF, which only userspace can, so the ports are bound then — and
/// another program took the inside one meanwhile. The peers were told that port: the table
/// reports the stream lost and the call ends with both legs BYE'd.
#[test]
fn a_socketless_streams_port_taken_before_it_needs_a_socket_ends_the_call() {
    use crate::b2bua::DtmfMode;
    let mut sim = Sim::new();
    sim.media.table_mut().set_kernel_latch(true);
    let mut cfg = config();
    cfg.pbx_media.dtmf = DtmfMode::Rfc4733;
    cfg.trunks[0].media.dtmf = DtmfMode::Info;
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let invite = sim.take_carrier().remove(0);
    let session = sim.media.first_id().expect("session");
    let key = crate::media::StreamKey { session, index: 0 };
    assert_eq!(sim.media.bound(key), [None, None], "socketless");
    assert!(!sim.media.mappings().is_empty(), "relayed in the kernel");
    let relay = sim.media.first().expect("session").streams[0].inside;
    sim.media
        .occupy(std::net::SocketAddr::new(relay.addr, relay.rtp_port));
    sim.take_pbx();
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(sim.media.busy_binds(), 1);
    let to_pbx = sim.take_pbx();
    let to_carrier = sim.take_carrier();
    for msgs in [&to_pbx, &to_carrier] {
        assert!(
            msgs.iter().any(|m| m.method() == Some(&Method::Bye)),
            "{:?}",
            msgs.iter()
                .map(|m| (m.method().cloned(), status(m)))
                .collect::<Vec<_>>()
        );
    }
    let ended: Vec<EndReason> = std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::CallEnded { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [EndReason::MediaFailure]);
    assert!(sim.media.holds_nothing(), "{:?}", sim.media);
    sim.assert_clean();
}
