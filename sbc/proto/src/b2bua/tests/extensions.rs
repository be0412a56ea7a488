//! Extension negotiation (RFC 3261 §8.2.2.3): a required option the SBC does not implement is
//! refused with 420 and `Unsupported`; `Supported`/`Require` are the SBC's own on each leg.

use super::*;

fn options(extra: &str) -> String {
    format!(
        "OPTIONS sip:203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcaropt
Max-Forwards: 70
From: <sip:ping@198.51.100.7>;tag=ctag1
To: <sip:203.0.113.1>
Call-ID: car-call-9
CSeq: 1 OPTIONS
{extra}Content-Length: 0

"
    )
}

fn unsupported(m: &Message) -> String {
    hdr(m, HeaderName::Unsupported)
}

#[test]
fn options_requiring_an_unknown_extension_gets_420_with_unsupported() {
    let mut sim = Sim::new();
    sim.deliver(carrier(), &options("Require: nonsense, 100rel\n"));
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 420);
    assert_eq!(unsupported(&r), "nonsense", "only the unknown one");
    sim.deliver(
        carrier(),
        &options("Proxy-Require: foo\n").replace("z9hG4bKcaropt", "z9hG4bKcaropt2"),
    );
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 420, "Proxy-Require too (the SBC is the UAS)");
    assert_eq!(unsupported(&r), "foo");
    // What it supports is listed and accepted.
    sim.deliver(
        carrier(),
        &options("Require: timer\n").replace("z9hG4bKcaropt", "z9hG4bKcaropt3"),
    );
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 200);
    assert_eq!(hdr(&r, HeaderName::Supported), "100rel, timer");
    assert!(sim.take_pbx().is_empty());
    sim.assert_clean();
}

#[test]
fn invite_requiring_an_unknown_extension_is_refused_before_any_call() {
    let mut sim = Sim::new();
    let inv = pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)).replace(
        "Supported: replaces, 100rel, timer\n",
        "Require: replaces, x-secret-feature\n",
    );
    sim.deliver(pbx(), &inv);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [420]);
    assert_eq!(unsupported(&r[0]), "replaces, x-secret-feature");
    assert!(sim.take_carrier().is_empty(), "nothing reaches the carrier");
    assert!(sim.media.is_empty(), "no media allocated");
    // Session timers off: `timer` is not supported either.
    let mut cfg = config();
    cfg.session_timer.enabled = false;
    sim.sbc.set_config(cfg);
    let inv = pbx_invite("z9hG4bKpbx2", Some(SDP_PBX))
        .replace("Supported: replaces, 100rel, timer\n", "Require: timer\n")
        .replace("pbx-call-1", "pbx-call-2");
    sim.deliver(pbx(), &inv);
    let r = sim.take_pbx();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [420]);
    assert_eq!(unsupported(&r[0]), "timer");
    sim.assert_clean();
}

#[test]
fn supported_and_require_are_the_sbcs_own_on_each_leg() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    assert_eq!(
        hdr(&invite, HeaderName::Supported),
        "100rel, timer",
        "not the PBX's list: replaces is not mapped across legs"
    );
    assert_eq!(invite.headers().count(HeaderName::Supported), 1);
    let ok = carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)).replacen(
        "Content-Type:",
        "Supported: replaces, x-carrier-only\nRequire: x-carrier-only\nContent-Type:",
        1,
    );
    sim.deliver(carrier(), &ok);
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(hdr(&ok, HeaderName::Supported), "100rel, timer");
    let text = String::from_utf8_lossy(ok.as_bytes()).to_string();
    assert!(!text.contains("x-carrier-only"), "{text}");
    assert!(!text.contains("replaces"), "{text}");
}

#[test]
fn in_dialog_request_requiring_an_unknown_extension_is_not_relayed() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    sim.deliver(
        carrier(),
        &format!(
            "INFO sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarinfo
Max-Forwards: 70
From: {};tag=ctag1
To: {}
Call-ID: {}
CSeq: 2 INFO
Require: x-unknown
Content-Length: 0

",
            hdr(&invite, HeaderName::To),
            hdr(&invite, HeaderName::From),
            invite.call_id()
        ),
    );
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [420]);
    assert_eq!(unsupported(&r[0]), "x-unknown");
    assert!(sim.take_pbx().is_empty());
    assert_eq!(sim.sbc.stats().calls, 1, "the call goes on");
}
