//! DTMF with real phones: baresip (`baresip-core`) as the PBX's phone in the pbx namespace and
//! as the carrier's phone in the carrier namespace, the real `sbc` between them. Each phone
//! types digits on its keyboard (the `stdio` module through a pipe) and the other one's log
//! names each digit it received.
//!
//! 1. `rfc4733_both_ways_with_101_inside_and_96_outside`: RFC 4733 on both sides, the trunk
//!    configured `telephone_event_pt = 96` (baresip always offers `telephone-event` as 101 and
//!    answers in the offer's numbers): the PBX's phone sends its events at 101, the carrier's
//!    at 96 — on each link only that number (tshark on both links) — and each phone receives
//!    the other's digits, all of them, in order. Without the relay's payload-type rewrite the
//!    carrier's phone gets 101, a payload type it never negotiated, and reports no digit.
//! 2. `rfc4733_from_the_pbx_reaches_an_info_carrier_as_info`: the trunk on `dtmf = "info"`:
//!    the PBX's phone's events are detected by the relay and reach the carrier's phone as SIP
//!    INFO `application/dtmf-relay`, which it reports, in order; no event crosses the carrier
//!    link.
//! 3. `info_from_a_sipp_pbx_reaches_a_baresip_carrier_as_rfc4733`: baresip 1.0 cannot send
//!    INFO DTMF, so SIPp is the PBX (`[pbx] dtmf = "info"`, G.711 only): its INFO digits are
//!    answered by the SBC, generated as RFC 4733 events by the relay, and the carrier's phone
//!    reports each, in order.

mod media_common;

use std::{collections::BTreeMap, process::Command, thread, time::Duration};

use media_common::{
    MediaLab,
    phone::Phone,
    scripts::{
        PBX_AUDIO, PBX_SIP, SBC_INSIDE_SIP, patch_trunk, pause, pbx_call, pbx_in_dialog, play,
        sdp_audio,
    },
};
use sbc_e2e::{capture::Capture, sipp};

/// The tests of this file run one at a time (two phones and the SBC each on a shared 2-core
/// machine; see `srtp_baresip.rs`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Digits the PBX's phone types (no key twice in a row: each is its own event).
const PBX_DIGITS: &str = "15#9*0";
/// Digits the carrier's phone types.
const CARRIER_DIGITS: &str = "73*2#8";
/// Time between two key presses (baresip ends an event at the next key or its release timer).
const KEY_GAP: Duration = Duration::from_millis(400);

/// The two phones of a call, with keyboards: the carrier's answers automatically, the PBX's
/// dials it through the SBC; returns once both show the call established.
fn call(lab: &MediaLab) -> (Phone, Phone) {
    let mut carrier = Phone::new(
        "bdcar",
        "198.18.2.2:5060",
        "<sip:15551234567@198.18.2.2>;regint=0;answermode=auto;audio_codecs=PCMU",
        1000,
    )
    .with_keyboard();
    carrier.run(&lab.lab.carrier, 20, None);
    thread::sleep(Duration::from_millis(700));
    let mut pbx = Phone::new(
        "bdpbx",
        "198.18.1.2:5060",
        "<sip:100@198.18.1.2>;regint=0;audio_codecs=PCMU",
        440,
    )
    .with_keyboard();
    pbx.run(&lab.lab.pbx, 16, Some("/dial sip:15551234567@198.18.1.1"));
    pbx.wait_established(Duration::from_secs(8));
    carrier.wait_established(Duration::from_secs(4));
    // The first RTP packets latch the relay's legs before any digit.
    thread::sleep(Duration::from_millis(800));
    (pbx, carrier)
}

/// Packets per payload type of the RTP in a capture (non-SIP UDP with an RTP version 2
/// header), telephone-event candidates only (dynamic numbers; PCMU is 0).
fn dynamic_payload_types(pcap: &[u8]) -> BTreeMap<u8, usize> {
    let file = std::env::temp_dir().join(format!("{}.pcap", sbc_e2e::netns::unique("dtmfb")));
    std::fs::write(&file, pcap).expect("pcap");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-Y", "udp && !sip", "-T", "fields", "-e", "udp.payload"])
        .output()
        .expect("tshark -r");
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace(':', ""))
        .filter(|p| p.len() >= 24 && p.starts_with("80"))
        .filter_map(|p| u8::from_str_radix(&p[2..4], 16).ok())
        .map(|b| b & 0x7f)
        .filter(|pt| (96..=127).contains(pt))
        .fold(BTreeMap::new(), |mut counts, pt| {
            *counts.entry(pt).or_insert(0) += 1;
            counts
        })
}

#[test]
fn rfc4733_both_ways_with_101_inside_and_96_outside() {
    if !sbc_e2e::require_root("dtmf_baresip") {
        return;
    }
    let _one_at_a_time = serial();
    let lab = MediaLab::start("sdb", "xdp = \"off\"\ntimeout_s = 30");
    patch_trunk(&lab, r#","telephone_event_pt":96"#);
    let car_cap = Capture::start_on(&lab.lab.carrier, &["car0"], "udp").expect("capture");
    let pbx_cap = Capture::start_on(&lab.lab.pbx, &["pbx0"], "udp").expect("capture");
    let (mut pbx, mut carrier) = call(&lab);
    pbx.press(PBX_DIGITS, KEY_GAP);
    thread::sleep(Duration::from_millis(600));
    carrier.press(CARRIER_DIGITS, KEY_GAP);
    thread::sleep(Duration::from_millis(800));
    let (car_pcap, pbx_pcap) = (car_cap.stop(), pbx_cap.stop());
    assert_eq!(
        carrier.digits_by_rtp(),
        PBX_DIGITS,
        "the carrier's phone receives the PBX's digits in order; its log:\n{}",
        carrier.log()
    );
    assert_eq!(
        pbx.digits_by_rtp(),
        CARRIER_DIGITS,
        "the PBX's phone receives the carrier's digits in order; its log:\n{}",
        pbx.log()
    );
    let outside = dynamic_payload_types(&car_pcap);
    let inside = dynamic_payload_types(&pbx_pcap);
    // Both phones' events: about 6 packets per digit each way, 12 digits.
    assert!(
        outside.len() == 1 && outside.get(&96).is_some_and(|n| *n > 50),
        "telephone-event at 96 only on the carrier link (packets per type): {outside:?}"
    );
    assert!(
        inside.len() == 1 && inside.get(&101).is_some_and(|n| *n > 50),
        "telephone-event at 101 only on the PBX link (packets per type): {inside:?}"
    );
    pbx.wait(Duration::from_secs(20));
    carrier.wait(Duration::from_secs(10));
}

#[test]
fn rfc4733_from_the_pbx_reaches_an_info_carrier_as_info() {
    if !sbc_e2e::require_root("dtmf_baresip") {
        return;
    }
    let _one_at_a_time = serial();
    let lab = MediaLab::start("sdbi", "xdp = \"off\"\ntimeout_s = 30");
    patch_trunk(&lab, r#","dtmf":"info""#);
    let car_cap = Capture::start_on(&lab.lab.carrier, &["car0"], "udp").expect("capture");
    let (mut pbx, mut carrier) = call(&lab);
    pbx.press(PBX_DIGITS, KEY_GAP);
    thread::sleep(Duration::from_millis(1200));
    let car_pcap = car_cap.stop();
    assert_eq!(
        carrier.digits_by_info(),
        PBX_DIGITS,
        "the carrier's phone receives the PBX's digits as INFO, in order; its log:\n{}",
        carrier.log()
    );
    assert_eq!(
        carrier.digits_by_rtp(),
        "",
        "no telephone-event reaches the INFO side"
    );
    let outside = dynamic_payload_types(&car_pcap);
    assert!(
        outside.is_empty(),
        "no telephone-event on the carrier link: {outside:?}"
    );
    pbx.wait(Duration::from_secs(20));
    carrier.wait(Duration::from_secs(10));
}

#[test]
fn info_from_a_sipp_pbx_reaches_a_baresip_carrier_as_rfc4733() {
    if !sbc_e2e::require_root("dtmf_baresip") {
        return;
    }
    let _one_at_a_time = serial();
    let lab = MediaLab::start("sdbs", "xdp = \"off\"\ntimeout_s = 30");
    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(r#"{"pbx":{"dtmf":"info"}}"#),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut carrier = Phone::new(
        "bdscar",
        "198.18.2.2:5060",
        "<sip:15551234567@198.18.2.2>;regint=0;answermode=auto;audio_codecs=PCMA",
        1000,
    );
    carrier.run(&lab.lab.carrier, 16, None);
    thread::sleep(Duration::from_millis(700));
    // The PBX offers no telephone-event: the SBC adds one toward the carrier's phone.
    let pbx_sdp = sdp_audio(PBX_AUDIO, "8", "a=rtpmap:8 PCMA/8000\n");
    let digits = [("5", 160), ("#", 200), ("0", 160), ("7", 240)];
    let mut middle = vec![play("g711a.pcap"), pause(800)];
    for (i, (signal, ms)) in digits.iter().enumerate() {
        let cseq = u32::try_from(i).expect("few digits") + 2;
        middle.push(pbx_in_dialog(
            "INFO",
            cseq,
            Some((
                "application/dtmf-relay",
                &format!("Signal={signal}\nDuration={ms}\n"),
            )),
        ));
        middle.push("<recv response=\"200\"/>\n".to_owned());
        middle.push(pause(500));
    }
    middle.push(pause(800));
    let scenario = pbx_call(&pbx_sdp, &middle.concat(), 6);
    let xml = sipp::write_scenario("dtmf-bs-pbx", &scenario);
    let pbx = sipp::run(
        &lab.lab.pbx,
        xml.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    sipp::wait_ok(pbx, "PBX (SIPp)");
    let want: String = digits.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        carrier.digits_by_rtp(),
        want,
        "the carrier's phone receives the PBX's INFO digits as RFC 4733, in order; its log:\n{}",
        carrier.log()
    );
    carrier.wait(Duration::from_secs(15));
}
