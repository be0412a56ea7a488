//! Calls ended by the SBC: a missing ACK, the admin API, a media timeout, a media failure.

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
    assert!(sim.with_media(|b, now, m| b.end_call(now, id, m)));
    assert!(
        !sim.with_media(|b, now, m| b.end_call(now, id, m)),
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

/// Takes what both peers were sent and checks that each got a BYE (saying what came instead).
fn assert_byes(sim: &mut Sim) {
    for msgs in [sim.take_pbx(), sim.take_carrier()] {
        assert!(
            msgs.iter().any(|m| m.method() == Some(&Method::Bye)),
            "{:?}",
            msgs.iter()
                .map(|m| (m.method().cloned(), status(m)))
                .collect::<Vec<_>>()
        );
    }
}

/// Checks that the call's stream is relayed in the kernel without a socket, then lets another
/// program take its inside relay port (the one the PBX was told).
fn take_socketless_inside_port(sim: &mut Sim) {
    let session = sim.media.first_id().expect("session");
    let key = crate::media::StreamKey { session, index: 0 };
    assert_eq!(sim.media.bound(key), [None, None], "socketless");
    assert!(!sim.media.mappings().is_empty(), "relayed in the kernel");
    let relay = sim.media.first().expect("session").streams[0].inside;
    sim.media
        .occupy(std::net::SocketAddr::new(relay.addr, relay.rtp_port));
}

/// An established call whose stream is relayed in the kernel (socketless: its ports are in
/// both SDPs, no socket is bound) after `lose` took something the relay needs; then a
/// re-INVITE's answer numbers telephone-event differently, so the relay must rewrite payload
/// types, which only userspace can, and the stream's ports must be bound where the peers
/// already send.
fn reinvite_after(lose: impl FnOnce(&mut Sim)) -> Sim {
    let mut sim = Sim::new();
    sim.media.table_mut().set_kernel_latch(true);
    let invite = establish_outbound(&mut sim);
    let session = sim.media.first_id().expect("session");
    let key = crate::media::StreamKey { session, index: 0 };
    assert_eq!(sim.media.bound(key), [None, None], "socketless");
    assert!(!sim.media.mappings().is_empty(), "relayed in the kernel");
    lose(&mut sim);
    let reoffer = SDP_CARRIER.replace("777 1", "777 2");
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarre1", 5, &reoffer),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    let answer = SDP_PBX
        .replace("1234 1", "1234 2")
        .replace("RTP/AVP 0 8 101", "RTP/AVP 0 96")
        .replace("a=rtpmap:101", "a=rtpmap:96");
    sim.deliver(pbx(), &pbx_response(&to_pbx, 200, "OK", Some(&answer)));
    sim
}

/// The relay loses an established call's media: the call ends like a media timeout, with its
/// own reason. The loss is the one the daemon reports on an established call: another program
/// took the inside relay port (the one the PBX was told) while the stream was in the kernel,
/// so the bind the re-INVITE's answer needs fails. It goes back to the table as the daemon's
/// executor sends it (`handle_bind_failed`), and the table, which cannot move ports the peers
/// were told, reports the stream lost (`MediaEvent::Failed`).
#[test]
fn media_failure_sends_bye_both_ways() {
    let mut sim = reinvite_after(take_socketless_inside_port);
    assert_eq!(
        sim.media.busy_binds(),
        1,
        "the held port could not be bound"
    );
    assert_byes(&mut sim);
    assert_eq!(ended(&mut sim), [EndReason::MediaFailure]);
    sim.assert_clean();
}

/// The same stream's ports bind, but no relay thread can be started to carry it (the
/// daemon's executor failed to spawn one): its media would go nowhere, so the call ends as
/// for a lost port instead of staying up silent.
#[test]
fn no_relay_thread_for_a_stream_leaving_the_kernel_ends_the_call() {
    let mut sim = reinvite_after(|sim| sim.media.lose_relay_threads());
    assert_eq!(sim.media.busy_binds(), 0, "the ports were free");
    assert_byes(&mut sim);
    assert_eq!(ended(&mut sim), [EndReason::MediaFailure]);
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

/// The same failure at the first answer: with in-kernel latching the call's stream starts
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
    take_socketless_inside_port(&mut sim);
    sim.take_pbx();
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(sim.media.busy_binds(), 1);
    assert_byes(&mut sim);
    assert_eq!(ended(&mut sim), [EndReason::MediaFailure]);
    assert!(sim.media.holds_nothing(), "{:?}", sim.media);
    sim.assert_clean();
}
