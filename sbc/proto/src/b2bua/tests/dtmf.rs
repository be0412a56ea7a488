//! DTMF interworking (`dtmf_interwork.rs`): INFO from a side configured `info` toward an
//! `rfc4733` side is answered 200 by the SBC and becomes a media command; a digit the relay
//! detected in RFC 4733 events becomes an INFO toward an `info` side; otherwise INFO crosses
//! as before. Every digit is counted, none shows in an event's `Debug`.

use super::*;
use crate::{b2bua::DtmfMode, dtmf::Digit};

fn sim_with(pbx: DtmfMode, trunk: DtmfMode) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_media.dtmf = pbx;
    cfg.trunks[0].media.dtmf = trunk;
    sim.sbc.set_config(cfg);
    sim
}

pub(super) fn pbx_info(sim: &Sim, content_type: &str, body: &str) -> String {
    let our_in_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
        .unwrap_or_default();
    format!(
        "INFO sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxinfo1;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_in_tag}
Call-ID: pbx-call-1
CSeq: 11 INFO
Content-Type: {content_type}
Content-Length: {}

{body}",
        body.len()
    )
}

pub(super) fn drain(sim: &mut Sim) -> Vec<Event> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter(|e| matches!(e, Event::Dtmf { .. } | Event::GenerateDtmf { .. }))
        .collect()
}

#[test]
fn info_from_an_info_pbx_becomes_a_media_command_toward_an_rfc4733_carrier() {
    let mut sim = sim_with(DtmfMode::Info, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let session = sim.media.first_id().expect("session");
    let info = pbx_info(&sim, "application/dtmf-relay", "Signal=5\nDuration=160\n");
    sim.deliver(pbx(), &info);
    let r = sim.take_pbx();
    assert_eq!(
        r.iter().map(status).collect::<Vec<_>>(),
        [200],
        "answered by the SBC"
    );
    assert!(
        sim.take_carrier().is_empty(),
        "no INFO toward an RFC 4733 carrier"
    );
    let events = drain(&mut sim);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        events[0],
        Event::Dtmf {
            side: Side::Inside,
            method: crate::b2bua::DtmfMethod::Info
        }
    ));
    match &events[1] {
        Event::GenerateDtmf {
            session: s,
            stream,
            payload_type,
            toward,
            digit,
            duration_ms,
        } => {
            assert_eq!(*s, session);
            assert_eq!(
                (*stream, *payload_type),
                (0, 101),
                "the carrier's telephone-event"
            );
            assert_eq!(*toward, Side::Outside);
            assert_eq!(digit.to_char(), '5');
            assert_eq!(*duration_ms, 160);
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{events:?}");
    assert!(!shown.contains('5'), "no digit in a log line: {shown}");
}

#[test]
fn info_crosses_as_before_when_the_sides_do_not_call_for_conversion() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let info = pbx_info(&sim, "application/dtmf", "7");
    sim.deliver(pbx(), &info);
    let to_carrier = sim.take_carrier();
    assert_eq!(to_carrier.len(), 1);
    assert_eq!(to_carrier[0].method(), Some(&Method::Info));
    assert_eq!(to_carrier[0].body(), b"7");
    let events = drain(&mut sim);
    assert_eq!(events.len(), 1, "counted, no media command: {events:?}");
}

#[test]
fn a_detected_rfc4733_digit_becomes_an_info_toward_an_info_carrier() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Info);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let session = sim.media.first_id().expect("session");
    let digit = Digit::from_char('#').expect("a digit");
    assert!(sim.with_media(|b, now, m| b.dtmf_detected(now, session, Side::Inside, digit, 120, m)));
    sim.collect();
    let info = sim.take_carrier().remove(0);
    assert_eq!(info.method(), Some(&Method::Info));
    assert_eq!(
        hdr(&info, HeaderName::ContentType),
        "application/dtmf-relay"
    );
    let body = String::from_utf8_lossy(info.body()).to_string();
    assert!(
        body.contains("Signal=#") && body.contains("Duration=120"),
        "{body}"
    );
    // The carrier's 200 is the SBC's own transaction's: nothing reaches the PBX.
    sim.deliver(carrier(), &carrier_response(&info, 200, "OK", None, None));
    assert!(sim.take_pbx().is_empty());
    assert_eq!(drain(&mut sim).len(), 1, "counted once");
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn a_detected_digit_toward_an_rfc4733_side_is_only_counted() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let session = sim.media.first_id().expect("session");
    let digit = Digit::from_char('1').expect("a digit");
    assert!(!sim.with_media(|b, now, m| b.dtmf_detected(
        now,
        session,
        Side::Outside,
        digit,
        100,
        m
    )));
    sim.collect();
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    assert_eq!(drain(&mut sim).len(), 1);
}

#[test]
fn telephone_event_is_added_toward_rfc4733_and_removed_toward_info() {
    let mut sim = sim_with(DtmfMode::Info, DtmfMode::Rfc4733);
    // The INFO-only PBX offers no telephone-event: the carrier gets one from the SBC.
    let offer = SDP_PBX
        .replace("RTP/AVP 0 8 101", "RTP/AVP 0 8")
        .replace("a=rtpmap:101 telephone-event/8000\n", "");
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(&offer)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let to_carrier = body_of(&invite);
    assert!(to_carrier.contains(" RTP/AVP 0 8 101\n"), "{to_carrier}");
    assert!(
        to_carrier.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{to_carrier}"
    );
    assert!(to_carrier.contains("a=fmtp:101 0-16\n"), "{to_carrier}");
    // The carrier answers it as 96: the PBX's answer has no telephone-event at all.
    let answer = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 0 96")
        .replace("rtpmap:101", "rtpmap:96");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    let to_pbx = body_of(&ok);
    assert!(to_pbx.contains(" RTP/AVP 0\n"), "{to_pbx}");
    assert!(!to_pbx.contains("telephone-event"), "{to_pbx}");
    // Its INFO digits go out as events with the carrier's 96.
    let our_tag = ok.to().tag().unwrap_or("").to_owned();
    let _ = drain(&mut sim);
    sim.deliver(
        pbx(),
        &format!(
            "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 10 ACK
Content-Length: 0

"
        ),
    );
    sim.deliver(pbx(), &pbx_info(&sim, "application/dtmf", "9"));
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [200]);
    let generated = drain(&mut sim).into_iter().find_map(|e| match e {
        Event::GenerateDtmf { payload_type, .. } => Some(payload_type),
        _ => None,
    });
    assert_eq!(generated, Some(96));
}

#[test]
fn telephone_event_is_removed_toward_an_info_carrier_and_added_back_in_its_answer() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Info);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let to_carrier = body_of(&invite);
    assert!(to_carrier.contains(" RTP/AVP 0 8\n"), "{to_carrier}");
    assert!(!to_carrier.contains("telephone-event"), "{to_carrier}");
    let answer = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 0")
        .replace("a=rtpmap:101 telephone-event/8000\n", "");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let to_pbx = body_of(&sim.take_pbx().remove(0));
    assert!(
        to_pbx.contains(" RTP/AVP 0 101\n"),
        "the PBX keeps sending events: {to_pbx}"
    );
    assert!(
        to_pbx.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{to_pbx}"
    );
}

#[test]
fn the_relay_is_told_which_legs_dtmf_it_terminates() {
    use crate::media::dtmf::StreamDtmf;
    // PBX on INFO, carrier on RFC 4733 (101 in both SDPs of the outbound call).
    let mut sim = sim_with(DtmfMode::Info, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let s = sim.media.first().expect("session");
    assert_eq!(
        s.dtmf,
        [StreamDtmf {
            terminated: [None, Some(101)]
        }],
        "events generated toward and detected from the carrier only"
    );
    // Without conversion the relay terminates nothing (streams may take the fast path).
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let s = sim.media.first().expect("session");
    assert!(s.dtmf.iter().all(StreamDtmf::is_none), "{:?}", s.dtmf);
}

#[test]
fn a_digit_the_relay_reports_goes_out_as_info() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Info);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let session = sim.media.first_id().expect("session");
    // The PBX's telephone-event ends (90 ms at 8 kHz): the relay detects the digit.
    let action = sim.media.send_event(
        sim.now,
        crate::media::StreamKey { session, index: 0 },
        crate::net::Side::Inside,
        "10.0.0.10:40000".parse().expect("literal"),
        101,
        crate::dtmf::Event {
            code: Digit::from_char('7').expect("a digit").event(),
            end: true,
            volume: 10,
            duration: 720,
        },
    );
    assert_eq!(action, crate::media::PacketAction::Consumed, "not relayed");
    sim.advance(Duration::from_millis(1));
    sim.with_media(|b, now, m| b.handle_timeout(now, m));
    sim.collect();
    let to_carrier = sim.take_carrier();
    assert_eq!(to_carrier.len(), 1, "one INFO");
    assert_eq!(to_carrier[0].method(), Some(&Method::Info));
    let body = String::from_utf8_lossy(to_carrier[0].body()).to_string();
    assert!(
        body.contains("Signal=7") && body.contains("Duration=90"),
        "{body}"
    );
    assert!(matches!(
        drain(&mut sim)[..],
        [Event::Dtmf {
            side: Side::Inside,
            method: crate::b2bua::DtmfMethod::Rfc4733
        }]
    ));
}
