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

fn pbx_info(sim: &Sim, content_type: &str, body: &str) -> String {
    let our_in_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag.clone())
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

fn drain(sim: &mut Sim) -> Vec<Event> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter(|e| matches!(e, Event::Dtmf { .. } | Event::GenerateDtmf { .. }))
        .collect()
}

#[test]
fn info_from_an_info_pbx_becomes_a_media_command_toward_an_rfc4733_carrier() {
    let mut sim = sim_with(DtmfMode::Info, DtmfMode::Rfc4733);
    establish_outbound(&mut sim);
    let _ = drain(&mut sim);
    let session = *sim.media.sessions.keys().next().expect("session");
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
            toward,
            digit,
            duration_ms,
        } => {
            assert_eq!(*s, session);
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
    let session = *sim.media.sessions.keys().next().expect("session");
    let digit = Digit::from_char('#').expect("a digit");
    let now = sim.now;
    assert!(
        sim.sbc
            .dtmf_detected(now, session, Side::Inside, digit, 120, &mut sim.media)
    );
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
    let session = *sim.media.sessions.keys().next().expect("session");
    let digit = Digit::from_char('1').expect("a digit");
    let now = sim.now;
    assert!(
        !sim.sbc
            .dtmf_detected(now, session, Side::Outside, digit, 100, &mut sim.media)
    );
    sim.collect();
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    assert_eq!(drain(&mut sim).len(), 1);
}
