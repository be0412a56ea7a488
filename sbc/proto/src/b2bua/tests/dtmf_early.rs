//! DTMF during early media (an IVR or a carrier's announcement before the answer, RFC 3960):
//! once the carrier's 183 carries SDP, the relay terminates DTMF as after an answer, so an
//! INFO from an `info` PBX in the early dialog becomes RFC 4733 events toward an `rfc4733`
//! carrier, and a digit the relay detects from an `rfc4733` PBX goes to an `info` carrier as
//! an INFO in the early dialog — before any 200.

use super::dtmf::drain;
use super::*;
use crate::{b2bua::DtmfMode, dtmf::Digit, media::dtmf::StreamDtmf};

fn sim_with(pbx: DtmfMode, trunk: DtmfMode) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_media.dtmf = pbx;
    cfg.trunks[0].media.dtmf = trunk;
    sim.sbc.set_config(cfg);
    sim
}

/// The PBX's call answered by a 183 with SDP from the carrier: the INVITE the carrier got and
/// the SBC's To tag toward the PBX (from the 183 the PBX got).
fn early(sim: &mut Sim) -> (Message, String) {
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(
            &invite,
            183,
            "Session Progress",
            Some("ctag1"),
            Some(SDP_CARRIER),
        ),
    );
    let progress = sim
        .take_pbx()
        .into_iter()
        .find(|m| status(m) == 183)
        .expect("183 relayed to the PBX");
    let tag = progress.to().tag().expect("the SBC's To tag").to_owned();
    (invite, tag)
}

fn early_info(tag: &str) -> String {
    let body = "Signal=9\nDuration=200\n";
    format!(
        "INFO sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxearlyinfo;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: 2 INFO
Content-Type: application/dtmf-relay
Content-Length: {}

{body}",
        body.len()
    )
}

#[test]
fn info_in_the_early_dialog_becomes_events_toward_the_carrier() {
    let mut sim = sim_with(DtmfMode::Info, DtmfMode::Rfc4733);
    let (_, tag) = early(&mut sim);
    let s = sim.media.first().expect("session");
    assert_eq!(
        s.dtmf,
        [StreamDtmf {
            terminated: [None, Some(101)]
        }],
        "the relay terminates the carrier's DTMF from the 183 on"
    );
    let _ = drain(&mut sim);
    sim.deliver(pbx(), &early_info(&tag));
    let answered: Vec<u16> = sim.take_pbx().iter().map(status).collect();
    assert_eq!(answered, [200], "answered by the SBC");
    assert!(sim.take_carrier().is_empty(), "nothing relayed");
    let generated = drain(&mut sim).into_iter().find_map(|e| match e {
        Event::GenerateDtmf {
            payload_type,
            toward,
            ..
        } => Some((payload_type, toward)),
        _ => None,
    });
    assert_eq!(generated, Some((101, Side::Outside)));
}

#[test]
fn a_detected_digit_reaches_an_info_carrier_in_the_early_dialog() {
    let mut sim = sim_with(DtmfMode::Rfc4733, DtmfMode::Info);
    let (invite, _) = early(&mut sim);
    let _ = drain(&mut sim);
    let session = sim.media.first_id().expect("session");
    // The PBX's telephone-event ends (100 ms at 8 kHz): the relay detects the digit.
    let action = sim.media.send_event(
        sim.now,
        crate::media::StreamKey { session, index: 0 },
        Side::Inside,
        "10.0.0.10:40000".parse().expect("literal"),
        101,
        crate::dtmf::Event {
            code: Digit::from_char('2').expect("a digit").event(),
            end: true,
            volume: 10,
            duration: 800,
        },
    );
    assert_eq!(action, crate::media::PacketAction::Consumed, "not relayed");
    sim.advance(Duration::from_millis(1));
    sim.with_media(|b, now, m| b.handle_timeout(now, m));
    sim.collect();
    let out = sim.take_carrier();
    let info = out
        .iter()
        .find(|m| m.method() == Some(&Method::Info))
        .unwrap_or_else(|| panic!("an INFO toward the carrier: {out:?}"));
    assert_eq!(
        info.call_id(),
        invite.call_id(),
        "in the carrier's early dialog"
    );
    assert_eq!(info.to().tag(), Some("ctag1"));
    assert!(String::from_utf8_lossy(info.body()).contains("Signal=2"));
}
