//! Issue 13, dialogs bound to their peer: while a call runs on trunk A, a BYE from trunk B's
//! address carrying the call's exact Call-ID and tags (as an insider of trunk B, or anyone
//! sending from its address, could learn them) gets 481; the call stays up and ends normally.

mod media_common;

use sbc_lab::sipp::run_args as sipp;
use std::{net::UdpSocket, process::Command, thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::netns;

/// A second trunk, added to the carrier namespace by the test.
const EXTRA: &str = r#"
[[trunk]]
name = "carrier2"
proxy = "198.18.2.3:5060"
[[route]]
name = "all"
trunks = ["carrier"]
"#;

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn bye_from_another_trunks_address_gets_481_and_the_call_stays_up() {
    if !sbc_e2e::require_root("border_cross_trunk") {
        return;
    }
    let lab = MediaLab::start_admin("bxt", "xdp = \"off\"", EXTRA, None);
    let added = Command::new("ip")
        .args([
            "-n",
            &lab.lab.carrier,
            "addr",
            "add",
            "198.18.2.3/24",
            "dev",
            "car0",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(added, "second trunk address");

    // PBX → trunk A, a call of six seconds.
    let mut uas = sipp(
        &lab.lab.carrier,
        &["-sn", "uas", "-i", "198.18.2.2", "-p", "5060", "-m", "1"],
    );
    thread::sleep(Duration::from_millis(300));
    let mut uac = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            "1",
            "-d",
            "6000",
            "198.18.1.1:5060",
        ],
    );
    // Wait (bounded) for the answer, then read the outside leg's identifiers.
    let mut leg = None;
    for _ in 0..50 {
        let calls = lab.json("GET", "/api/v1/calls", None, 200);
        if let Some(c) = calls["calls"].as_array().and_then(|c| c.first())
            && c["state"] == "answered"
        {
            leg = c["legs"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["side"] == "outside"))
                .cloned();
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let leg = leg.expect("the call is answered within 5 s");
    let (call_id, ours, theirs) = (
        leg["call_id"].as_str().unwrap_or_default().to_owned(),
        leg["local_tag"].as_str().unwrap_or_default().to_owned(),
        leg["remote_tag"].as_str().unwrap_or_default().to_owned(),
    );
    assert!(!call_id.is_empty() && !theirs.is_empty(), "{leg}");

    // The forged BYE, from trunk B's address, with everything else right.
    let answer = {
        let _in = netns::enter(&lab.lab.carrier).expect("enter carrier netns");
        let sock = UdpSocket::bind("198.18.2.3:5060").expect("bind trunk B");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let bye = format!(
            "BYE sip:sbc@198.18.2.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.2.3:5060;branch=z9hG4bKforged1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@198.18.2.2>;tag={theirs}\r\n\
             To: <sip:y@198.18.2.1>;tag={ours}\r\nCall-ID: {call_id}\r\n\
             CSeq: 900 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(bye.as_bytes(), "198.18.2.1:5060")
            .expect("send BYE");
        let mut buf = [0u8; 2048];
        sock.recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).to_string())
            .unwrap_or_default()
    };
    assert!(answer.starts_with("SIP/2.0 481"), "answer: {answer:?}");
    let calls = lab.json("GET", "/api/v1/calls", None, 200);
    assert_eq!(calls["total"], 1, "the call is still up: {calls}");
    assert_eq!(
        metric(
            &lab,
            "sbc_sip_peer_mismatch_total{kind=\"request_source\",side=\"outside\"}"
        ),
        Some(1.0)
    );

    // The call ends normally: the PBX's BYE after six seconds reaches trunk A.
    let a = uac.wait_timeout(Duration::from_secs(30));
    let b = uas.wait_timeout(Duration::from_secs(10));
    assert!(
        a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()),
        "the call completes: uac {a:?}, uas {b:?}"
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"}"
        ),
        Some(1.0)
    );
}
