//! Real calls through the real `sbc` in the lab: SIPp as the PBX (pbx namespace) and as the
//! carrier (carrier namespace), both directions. Every packet on the carrier link is captured
//! and searched for anything that belongs to the inside.

mod media_common;

use sbc_lab::sipp::{run_args as sipp, wait_ok};
use std::{thread, time::Duration};

use media_common::MediaLab;

const CALLS: &str = "10";

/// SIPp's built-in `uas` flow with 10 % loss on every message it receives. No `-m`: SIPp
/// exits when its last call ends and then stops answering retransmissions, where a real UAS
/// keeps answering for Timer J; it runs until the caller is done and ends with the test.
const LOSSY_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas with receive loss">
  <recv request="INVITE" lost="10" />
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" optional="true" lost="10" />
  <recv request="BYE" lost="10" />
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

    ]]>
  </send>
  <timewait milliseconds="4000"/>
</scenario>
"#;

#[test]
fn sipp_calls_both_directions_with_nothing_from_inside_on_the_carrier_link() {
    if !sbc_e2e::require_root("sip_calls") {
        return;
    }
    let lab = MediaLab::start("ssc", "xdp = \"off\"");
    let capture = sbc_e2e::capture::Capture::start(&lab.lab.carrier, "car0").expect("capture");

    // PBX → carrier.
    let uas = sipp(
        &lab.lab.carrier,
        &["-sn", "uas", "-i", "198.18.2.2", "-p", "5060", "-m", CALLS],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
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
            CALLS,
            "-r",
            "5",
            "-d",
            "300",
            "198.18.1.1:5060",
        ],
    );
    // SIPp puts its PID into its tags (`<pid>SIPpTag00<n>`) and branches (`z9hG4bK-<pid>-`).
    let pbx_pid = uac.pid();
    wait_ok(uac, "outbound SIPp uac (PBX)");
    wait_ok(uas, "outbound SIPp uas (carrier)");

    // Carrier → PBX.
    let uas = sipp(
        &lab.lab.pbx,
        &["-sn", "uas", "-i", "198.18.1.2", "-p", "5060", "-m", CALLS],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        &lab.lab.carrier,
        &[
            "-sn",
            "uac",
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
            "-s",
            "4930123456",
            "-m",
            CALLS,
            "-r",
            "5",
            "-d",
            "300",
            "198.18.2.1:5060",
        ],
    );
    wait_ok(uac, "inbound SIPp uac (carrier)");
    wait_ok(uas, "inbound SIPp uas (PBX)");

    let bytes = capture.stop();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("INVITE sip:15551234567@198.18.2.2"),
        "capture holds the outbound INVITEs"
    );
    // The PBX's address (in Via, Contact, Call-ID, SDP), its tags and its branches never reach
    // the carrier link.
    for secret in [
        "198.18.1.".to_owned(),
        format!("{pbx_pid}SIPpTag00"),
        format!("z9hG4bK-{pbx_pid}-"),
    ] {
        let count = text.matches(secret.as_str()).count();
        assert_eq!(
            count, 0,
            "{secret:?} from the inside appears {count} times on the carrier link"
        );
    }
    // And the check can fail: the same capture does contain the carrier's own values.
    assert!(text.contains("198.18.2.2"));
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"outbound\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"inbound\"} 10"),
        "{metrics}"
    );
    assert!(metrics.contains("sbc_calls_active{direction=\"outbound\"} 0"));
    // Every message the core handled is timed: 20 calls, each side sending at least the
    // INVITE, ACK and BYE or their answers (3 × 20 per side at the least).
    // And every datagram's wait in the kernel before the SBC read it.
    for (histogram, side) in ["sbc_sip_handling_seconds", "sbc_sip_receive_wait_seconds"]
        .into_iter()
        .flat_map(|h| ["inside", "outside"].map(|s| (h, s)))
    {
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{histogram}_count{{side=\"{side}\"}} ")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            count >= 60,
            "{histogram} {side}: {count} messages timed\n{metrics}"
        );
    }
}

/// RFC 3261 §17 retransmissions against real peers: the caller drops 10 % of what it sends and
/// receives (`-lost 10`), the callee 10 % of what it receives, so the SBC's transactions must
/// retransmit (and absorb retransmissions) on both legs for the calls to complete.
#[test]
fn sipp_calls_survive_ten_percent_loss_on_udp() {
    if !sbc_e2e::require_root("sip_calls_loss") {
        return;
    }
    let lab = MediaLab::start("ssl", "xdp = \"off\"");
    // The callee loses 10 % of what it *receives* (INVITE, ACK, BYE), so the SBC's carrier
    // leg must retransmit its INVITE and BYE and ACK every retransmitted 2xx. Loss on the
    // callee's sends is left out: SIPp then forgets what it answered, takes the SBC's
    // INVITE retransmission for an unexpected message and aborts the call (seen as a 408
    // after Timer B), which tests SIPp, not the SBC. The caller loses both ways.
    let uas_xml = sbc_lab::sipp::write_scenario("uas-lossy", LOSSY_UAS);
    let uas = sipp(
        &lab.lab.carrier,
        &[
            "-sf",
            uas_xml.path().to_str().expect("utf-8 temp path"),
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
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
            CALLS,
            "-r",
            "5",
            "-d",
            "300",
            "-lost",
            "10",
            "198.18.1.1:5060",
        ],
    );
    wait_ok(uac, "SIPp uac with 10 % loss");
    drop(uas);
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"outbound\"} 10"),
        "{metrics}"
    );
}

/// The same call flow over TCP on both sides: framing by Content-Length, responses on the
/// connection the request came in on, requests to a peer on one connection.
#[test]
fn sipp_calls_over_tcp() {
    if !sbc_e2e::require_root("sip_calls_tcp") {
        return;
    }
    let lab = MediaLab::start_with_transport("sst", "xdp = \"off\"", true);
    let uas = sipp(
        &lab.lab.carrier,
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
            "-m",
            CALLS,
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-t",
            "t1",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            CALLS,
            "-r",
            "5",
            "-d",
            "300",
            "198.18.1.1:5060",
        ],
    );
    wait_ok(uac, "SIPp uac over TCP");
    wait_ok(uas, "SIPp uas over TCP");
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"outbound\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sbc_sip_connections{side=\"inside\",transport=\"tcp\"}"),
        "{metrics}"
    );
}
