//! A call from the PBX to the carrier: what each side sees, and a clean end.

use super::*;

#[test]
fn outbound_call_rewrites_everything_and_hides_the_inside() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let trying = sim.take_pbx();
    assert_eq!(status(&trying[0]), 100);
    assert_eq!(trying[0].top_via().branch(), Some("z9hG4bKpbx1"));
    let inv = sim.take_carrier().remove(0);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090")
    );
    assert_eq!(
        inv.top_via().branch().map(|b| b.starts_with("z9hG4bK")),
        Some(true)
    );
    assert_eq!(inv.headers().count(HeaderName::Via), 1, "only our own Via");
    assert_eq!(inv.max_forwards(), Some(69));
    assert_eq!(inv.from().uri_str, "sip:100@203.0.113.1");
    assert_eq!(inv.from().display_name, Some("\"Alice\""));
    assert_eq!(inv.to().uri_str, "sip:15551234567@198.51.100.7:5090");
    assert_eq!(hdr(&inv, HeaderName::Contact), "<sip:sbc@203.0.113.1:5080>");
    assert_eq!(hdr(&inv, HeaderName::UserAgent), "sbc-test");
    assert_eq!(
        inv.headers()
            .all_named("P-Asserted-Identity")
            .next()
            .and_then(|h| h.value_str()),
        Some("\"Alice\" <sip:+15550001000@203.0.113.1>"),
        "identity kept, host rewritten"
    );
    assert_eq!(
        hdr(&inv, HeaderName::Supported),
        "100rel, timer",
        "the SBC's own options on this leg, not the PBX's list (replaces is not mapped)"
    );
    assert!(
        inv.headers()
            .all_named("X-Internal-Secret")
            .next()
            .is_none(),
        "not allowlisted"
    );
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(body.contains("c=IN IP4 203.0.113.1\r\n"), "{body}");
    // The relay's outside port, the one the media table drew for the call.
    let relay = sim.media.first().expect("a media session").streams[0].outside;
    assert!(
        body.contains(&format!("m=audio {} RTP/AVP 0 8 101\r\n", relay.rtp_port)),
        "{body}"
    );
    assert!(
        body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "other lines kept: {body}"
    );
}

#[test]
fn outbound_call_connects_and_bye_from_pbx_ends_it_cleanly() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    assert_eq!(sim.sbc.stats().calls, 1);
    let info = sim.sbc.calls();
    assert_eq!(info.len(), 1);
    assert!(info[0].answered && info[0].answered_at.is_some());
    assert_eq!(info[0].from, Side::Inside);
    assert_eq!(info[0].legs[0].call_id, "pbx-call-1");
    assert_eq!(info[0].legs[1].call_id, invite.call_id());
    assert_eq!(info[0].legs[1].remote_tag.as_deref(), Some("ctag1"));
    assert_eq!(sim.media.len(), 1);
    let session = sim.media.first().expect("one session");
    assert!(session.committed, "answer committed to the relay");
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take_pbx().is_empty(),
        "2xx not retransmitted after the ACK"
    );

    let our_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
        .unwrap_or_default();
    sim.deliver(
        pbx(),
        &format!(
            "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
        ),
    );
    let bye = sim.take_carrier().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(
        bye.request_uri_str(),
        Some("sip:gw@198.51.100.20:5060"),
        "remote target = carrier Contact"
    );
    assert_eq!(bye.call_id(), invite.call_id(), "outside Call-ID");
    assert_eq!(bye.cseq().seq, 2, "outside CSeq space");
    assert_eq!(bye.from().tag(), invite.from().tag());
    assert_eq!(bye.to().tag(), Some("ctag1"));
    assert!(sim.media.is_empty(), "media released on BYE");
    sim.deliver(carrier(), &carrier_response(&bye, 200, "OK", None, None));
    let ok = sim.take_pbx();
    assert_eq!(status(&ok[0]), 200);
    assert_eq!(ok[0].cseq().seq, 11);
    assert!(sim.sbc.poll_event().is_some());
    sim.assert_clean();
}

#[test]
fn first_provisional_is_reported_once_between_start_and_answer() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let events: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event()).collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::CallStarted { .. } => "started",
            Event::CallProgress { .. } => "progress",
            Event::CallAnswered { .. } => "answered",
            Event::CallEnded { .. } => "ended",
            Event::AdmissionRejected { .. } => "rejected",
            Event::Failover { .. } => "failover",
            Event::Redirect { .. } => "redirect",
            Event::PbxAuth { .. } => "pbx_auth",
            Event::NoRoute => "no_route",
            Event::PeerMismatch { .. } => "peer_mismatch",
            Event::BorderRefusal { .. } => "border",
            Event::Dtmf { .. } => "dtmf",
            Event::GenerateDtmf { .. } => "generate_dtmf",
            Event::Dropped { .. } => "dropped",
            Event::CallRecord(_) => "record",
            Event::CallState(_) => "state",
            Event::CallStateEnded { .. } => "state_ended",
            Event::PbxBinding { .. } => "pbx_binding",
        })
        .collect();
    assert_eq!(kinds, ["started", "progress", "answered", "state"]);
}
