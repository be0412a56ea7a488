//! Session timers (RFC 4028) per leg, in simulated time: 422 below Min-SE, the SBC refreshing
//! where it is the refresher, peers' refreshes answered, and expiry ending both legs with BYE.

use super::*;
use crate::b2bua::session_timer::{LegTimer, Refresher};

/// Session timers with a 300 s interval and a 120 s Min-SE.
fn sim_with_timers() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.session_timer = SessionTimerConfig {
        enabled: true,
        session_expires: Duration::from_secs(300),
        min_se: Duration::from_secs(120),
    };
    sim.sbc.set_config(cfg);
    sim
}

/// Connects a PBX → carrier call whose carrier 2xx carries `carrier_se` (a Session-Expires
/// value, or none). Returns the carrier's INVITE and the 2xx the PBX got.
fn connect(sim: &mut Sim, pbx_extra: &str, carrier_se: Option<&str>) -> (Message, Message) {
    let inv = pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)).replace(
        "Supported: replaces, 100rel, timer\n",
        &format!("Supported: replaces, 100rel, timer\n{pbx_extra}"),
    );
    sim.deliver(pbx(), &inv);
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let mut ok = carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER));
    if let Some(se) = carrier_se {
        ok = ok.replacen(
            "Content-Type:",
            &format!("Require: timer\nSession-Expires: {se}\nContent-Type:"),
            1,
        );
    }
    sim.deliver(carrier(), &ok);
    let ok_pbx = sim.take_pbx().remove(0);
    assert_eq!(status(&ok_pbx), 200);
    assert_eq!(sim.take_carrier().len(), 1, "ACK");
    let our_tag = ok_pbx.to().tag().unwrap_or_default().to_owned();
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
    (invite, ok_pbx)
}

/// A body-less UPDATE from the carrier on the call's outside dialog.
fn carrier_update(invite: &Message, cseq: u32, se: &str) -> String {
    format!(
        "UPDATE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarupd{cseq}
Max-Forwards: 70
From: {};tag=ctag1
To: {}
Call-ID: {}
CSeq: {cseq} UPDATE
Contact: <sip:gw@198.51.100.20:5060>
Supported: timer
Session-Expires: {se}
Content-Length: 0

",
        hdr(invite, HeaderName::To),
        hdr(invite, HeaderName::From),
        invite.call_id()
    )
}

/// `msgs` without UDP retransmissions (byte-identical repeats).
fn distinct(msgs: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for m in msgs {
        if !out.iter().any(|o| o.as_bytes() == m.as_bytes()) {
            out.push(m);
        }
    }
    out
}

fn raw(m: &Message, name: &str) -> String {
    m.headers()
        .all_named(name)
        .next()
        .and_then(|h| h.value_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn session_interval_below_min_se_gets_422_with_min_se() {
    let mut sim = sim_with_timers();
    let inv = pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)).replace(
        "Supported: replaces, 100rel, timer\n",
        "Supported: timer\nSession-Expires: 100\n",
    );
    sim.deliver(pbx(), &inv);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [422]);
    assert_eq!(raw(&r[0], "Min-SE"), "120");
    assert!(sim.take_carrier().is_empty(), "no call toward the carrier");
    // The PBX retries with the interval asked for: the call goes ahead.
    let inv = pbx_invite("z9hG4bKpbx2", Some(SDP_PBX))
        .replace(
            "Supported: replaces, 100rel, timer\n",
            "Supported: timer\nSession-Expires: 120\nMin-SE: 120\n",
        )
        .replace("CSeq: 10 INVITE", "CSeq: 11 INVITE");
    sim.deliver(pbx(), &inv);
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let out = sim.take_carrier().remove(0);
    assert_eq!(
        raw(&out, "Session-Expires"),
        "300",
        "the SBC's own interval"
    );
    assert_eq!(raw(&out, "Min-SE"), "120");
}

#[test]
fn each_leg_negotiates_its_own_interval_and_refresher() {
    let mut sim = sim_with_timers();
    let (_, ok_pbx) = connect(
        &mut sim,
        "Session-Expires: 1800\n",
        Some("150;refresher=uac"),
    );
    // PBX leg: 1800 asked, lowered to the SBC's 300; the PBX supports timer, so it refreshes.
    assert_eq!(raw(&ok_pbx, "Session-Expires"), "300;refresher=uac");
    assert_eq!(hdr(&ok_pbx, HeaderName::Require), "timer");
    let c = sim.sbc.calls.values().next().expect("one call");
    let inside = c.leg(Side::Inside).session.expect("PBX leg timer");
    let outside = c.leg(Side::Outside).session.expect("carrier leg timer");
    assert_eq!(inside.interval, Duration::from_secs(300));
    assert_eq!(inside.refresher, Refresher::Peer);
    assert_eq!(outside.interval, Duration::from_secs(150));
    assert_eq!(outside.refresher, Refresher::Sbc);
}

#[test]
fn the_sbc_refreshes_its_legs_with_update_at_half_the_interval() {
    let mut sim = sim_with_timers();
    let (invite, _) = connect(&mut sim, "", Some("150;refresher=uac"));
    sim.advance(Duration::from_secs(74));
    assert!(
        sim.take_carrier().is_empty(),
        "not before half the interval"
    );
    sim.advance(Duration::from_secs(2));
    let upd = distinct(sim.take_carrier());
    assert_eq!(upd.len(), 1, "one refresh");
    let upd = &upd[0];
    assert_eq!(upd.method(), Some(&Method::Update));
    assert!(upd.body().is_empty(), "no SDP: no media change");
    assert_eq!(upd.call_id(), invite.call_id());
    assert_eq!(upd.to().tag(), Some("ctag1"));
    assert_eq!(raw(upd, "Session-Expires"), "150;refresher=uac");
    assert_eq!(
        hdr(upd, HeaderName::Contact),
        "<sip:sbc@203.0.113.1:5080>",
        "UPDATE is a target refresh request (RFC 3311 §5.1)"
    );
    assert!(sim.take_pbx().is_empty(), "the PBX sees nothing of it");
    let ok = carrier_response(upd, 200, "OK", None, None).replacen(
        "Content-Length:",
        "Session-Expires: 150;refresher=uac\nContent-Length:",
        1,
    );
    sim.deliver(carrier(), &ok);
    // The next refresh comes half an interval after the answer, and the call lives on.
    sim.advance(Duration::from_secs(74));
    assert!(sim.take_carrier().is_empty());
    sim.advance(Duration::from_secs(2));
    let upd = distinct(sim.take_carrier());
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].method(), Some(&Method::Update));
    assert!(upd[0].cseq().seq > 1);
    assert_eq!(sim.sbc.stats().calls, 1);
    assert!(ended(&mut sim).is_empty());
}

#[test]
fn a_refresh_answered_481_ends_the_call_on_both_legs() {
    let mut sim = sim_with_timers();
    connect(&mut sim, "", Some("150;refresher=uac"));
    sim.advance(Duration::from_secs(76));
    let upd = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&upd, 481, "Call/Transaction Does Not Exist", None, None),
    );
    let byes_pbx = sim.take_pbx();
    let byes_carrier = sim.take_carrier();
    assert!(byes_pbx.iter().any(|m| m.method() == Some(&Method::Bye)));
    assert!(
        byes_carrier
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert_eq!(ended(&mut sim), [EndReason::SessionExpired]);
    sim.assert_clean();
}

#[test]
fn no_refresh_from_the_refresher_ends_the_call_with_bye_on_both_legs() {
    let mut sim = sim_with_timers();
    let (invite, _) = connect(&mut sim, "", Some("150;refresher=uas"));
    // The carrier refreshes once, body-less: answered by the SBC, not relayed.
    sim.advance(Duration::from_secs(70));
    sim.deliver(carrier(), &carrier_update(&invite, 2, "150;refresher=uac"));
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [200]);
    assert_eq!(raw(&r[0], "Session-Expires"), "150;refresher=uac");
    assert_eq!(hdr(&r[0], HeaderName::Require), "timer");
    assert!(
        sim.take_pbx().is_empty(),
        "a refresh of one leg stays there"
    );
    // Expiry is 150 - min(32, 50) = 118 s after the refresh; nothing happens before.
    sim.advance(Duration::from_secs(117));
    assert!(sim.take_carrier().is_empty() && sim.take_pbx().is_empty());
    assert!(ended(&mut sim).is_empty());
    sim.advance(Duration::from_secs(2));
    let to_pbx = distinct(sim.take_pbx());
    let to_carrier = distinct(sim.take_carrier());
    assert_eq!(
        to_pbx
            .iter()
            .filter_map(Message::method)
            .collect::<Vec<_>>(),
        [&Method::Bye]
    );
    assert_eq!(
        to_carrier
            .iter()
            .filter_map(Message::method)
            .collect::<Vec<_>>(),
        [&Method::Bye]
    );
    assert_eq!(ended(&mut sim), [EndReason::SessionExpired]);
    assert!(sim.media.is_empty(), "media released");
    sim.assert_clean();
}

#[test]
fn a_peer_refresh_with_too_small_an_interval_gets_422() {
    let mut sim = sim_with_timers();
    let (invite, _) = connect(&mut sim, "", Some("150;refresher=uas"));
    sim.deliver(carrier(), &carrier_update(&invite, 2, "100;refresher=uac"));
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [422]);
    assert_eq!(raw(&r[0], "Min-SE"), "120");
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn timers_off_means_no_session_headers_and_no_supervision() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.session_timer.enabled = false;
    sim.sbc.set_config(cfg);
    let (invite, ok_pbx) = connect(&mut sim, "Session-Expires: 100\n", Some("90;refresher=uas"));
    assert!(raw(&invite, "Session-Expires").is_empty());
    assert_eq!(hdr(&invite, HeaderName::Supported), "100rel");
    assert!(raw(&ok_pbx, "Session-Expires").is_empty());
    sim.advance(Duration::from_secs(600));
    assert!(sim.take_carrier().is_empty() && sim.take_pbx().is_empty());
    assert_eq!(sim.sbc.stats().calls, 1, "nothing ends the call");
}

fn unit_cfg() -> SessionTimerConfig {
    SessionTimerConfig {
        enabled: true,
        session_expires: Duration::from_secs(600),
        min_se: Duration::from_secs(120),
    }
}

fn parse_invite(extra: &str) -> Message {
    let text = format!(
        "INVITE sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx\r\n\
         From: <sip:b@192.0.2.2>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: c\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text), &Limits::default()).expect("valid test message")
}

#[test]
fn answer_honours_the_callers_choice_and_lowers_long_intervals() {
    let t0 = Sim::new().now;
    let req = parse_invite("Supported: timer\r\nSession-Expires: 300;refresher=uas\r\n");
    let (t, h) = unit_cfg().answer(t0, &req).expect("enabled");
    assert_eq!(t.interval, Duration::from_secs(300));
    assert_eq!(t.refresher, Refresher::Sbc);
    assert_eq!(h[0], ("Session-Expires", "300;refresher=uas".to_owned()));
    assert_eq!(h[1], ("Require", "timer".to_owned()));
    // Longer than the SBC grants: lowered. Caller supports timers: it refreshes.
    let req = parse_invite("Supported: timer\r\nSession-Expires: 7200\r\n");
    let (t, _) = unit_cfg().answer(t0, &req).expect("enabled");
    assert_eq!(t.interval, Duration::from_secs(600));
    assert_eq!(t.refresher, Refresher::Peer);
    // A caller without timer support: the SBC refreshes, no Require.
    let (t, h) = unit_cfg().answer(t0, &parse_invite("")).expect("enabled");
    assert_eq!(t.refresher, Refresher::Sbc);
    assert_eq!(h.len(), 1);
    // The peer's Min-SE is respected.
    let req = parse_invite("Session-Expires: 200\r\nMin-SE: 400\r\n");
    let (t, _) = unit_cfg().answer(t0, &req).expect("enabled");
    assert_eq!(t.interval, Duration::from_secs(400));
}

#[test]
fn refresh_at_half_and_expiry_before_the_end() {
    let t0 = Sim::new().now;
    let t = LegTimer {
        interval: Duration::from_secs(90),
        refresher: Refresher::Sbc,
        last: t0,
        refreshing: false,
    };
    assert_eq!(t.refresh_at(), Some(t0 + Duration::from_secs(45)));
    assert_eq!(t.expires_at(), t0 + Duration::from_secs(60));
    let long = LegTimer {
        interval: Duration::from_secs(1800),
        refresher: Refresher::Peer,
        ..t
    };
    assert_eq!(long.refresh_at(), None);
    assert_eq!(long.expires_at(), t0 + Duration::from_secs(1768));
    assert_eq!(long.request_value(), "1800;refresher=uas");
}
