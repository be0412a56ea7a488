//! Digest authentication of the PBX end to end, with the real `sbc` in the namespace lab: the
//! SBC challenges the PBX's INVITE with 407 (SHA-256 before MD5), a SIPp PBX that answers the
//! challenge gets its call through to a SIPp carrier, and a PBX with a wrong password gets a
//! second 407 and no call. Debian's SIPp answers only MD5 challenges and takes the first one,
//! so the SIPp part runs with `auth_algorithms = ["MD5"]`; SHA-256 is proven by the unit tests
//! and by the raw 407 checked here.

mod media_common;

use std::{
    net::UdpSocket,
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{netns, sipp};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
/// The raw-socket PBX (not 5060: SIPp binds that).
const RAW_PBX: &str = "198.18.1.2:5066";
/// What SIPp's `[authentication]` hashes as `uri`: the Request-URI without the scheme.
const AUTH_URI: &str = "15551234567@198.18.1.1:5060";

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn patch(lab: &MediaLab, json: &str) {
    let r = lab
        .request("PATCH", "/api/v1/config", Some(json))
        .expect("admin API");
    assert_eq!(r.status, 200, "PATCH {json}: {}", r.body);
}

/// Sends one INVITE without credentials from a raw socket and returns the final response's
/// text (ACKed, so the SBC stops retransmitting it). Bounded by a 3 s deadline.
fn raw_invite_final() -> String {
    let sock = UdpSocket::bind(RAW_PBX).expect("bind raw PBX socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let invite = format!(
        "INVITE sip:15551234567@{SBC_INSIDE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {RAW_PBX};branch=z9hG4bKrawauth1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=rawauth\r\n\
         To: <sip:15551234567@198.18.1.1>\r\nCall-ID: raw-auth-1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:100@{RAW_PBX}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), SBC_INSIDE)
        .expect("send INVITE");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("SIP/2.0 1") {
            continue;
        }
        let to = text
            .lines()
            .find(|l| l.starts_with("To: "))
            .unwrap_or("To: <sip:15551234567@198.18.1.1>");
        let ack = format!(
            "ACK sip:15551234567@{SBC_INSIDE} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {RAW_PBX};branch=z9hG4bKrawauth1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=rawauth\r\n{to}\r\n\
             Call-ID: raw-auth-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(ack.as_bytes(), SBC_INSIDE);
        return text;
    }
    String::new()
}

const SDP: &str = "v=0\no=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]\ns=-\n\
                   c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\n\
                   a=rtpmap:0 PCMU/8000\na=sendrecv\n";

fn invite_xml(cseq: u32, auth: bool) -> String {
    let auth = if auth { "[authentication]\n" } else { "" };
    format!(
        "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n\
         Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
         From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
         To: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: {cseq} INVITE\n\
         Contact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n{auth}\
         Content-Type: application/sdp\nContent-Length: [len]\n\n{SDP}]]></send>\n"
    )
}

/// ACK of a non-2xx final to INVITE `cseq` (same branch: the Via of the response).
fn ack_non2xx_xml(cseq: u32) -> String {
    format!(
        "<send><![CDATA[\nACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n\
         From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
         [last_To:]\nCall-ID: [call_id]\nCSeq: {cseq} ACK\nMax-Forwards: 70\n\
         Content-Length: 0\n\n]]></send>\n"
    )
}

/// The PBX: INVITE, 407, ACK, INVITE with credentials; then either the whole call (`answered`)
/// or a second 407 and its ACK.
fn pbx_scenario(answered: bool) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"pbx-auth\">\n",
    );
    x.push_str(&invite_xml(1, false));
    x.push_str("<recv response=\"100\" optional=\"true\"/>\n");
    x.push_str("<recv response=\"407\" auth=\"true\"/>\n");
    x.push_str(&ack_non2xx_xml(1));
    x.push_str(&invite_xml(2, true));
    x.push_str("<recv response=\"100\" optional=\"true\"/>\n");
    if answered {
        x.push_str("<recv response=\"180\" optional=\"true\"/>\n");
        x.push_str("<recv response=\"200\" rrs=\"true\"/>\n");
        x.push_str(
            "<send><![CDATA[\nACK [next_url] SIP/2.0\n\
             Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\n\
             From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
             [last_To:]\nCall-ID: [call_id]\nCSeq: 2 ACK\nMax-Forwards: 70\n\
             Content-Length: 0\n\n]]></send>\n",
        );
        x.push_str("<pause milliseconds=\"200\"/>\n");
        x.push_str(
            "<send retrans=\"500\"><![CDATA[\nBYE [next_url] SIP/2.0\n\
             Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\n\
             From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
             [last_To:]\nCall-ID: [call_id]\nCSeq: 3 BYE\nMax-Forwards: 70\n\
             Content-Length: 0\n\n]]></send>\n",
        );
        x.push_str("<recv response=\"200\"/>\n");
    } else {
        x.push_str("<recv response=\"407\"/>\n");
        x.push_str(&ack_non2xx_xml(2));
    }
    x.push_str("</scenario>\n");
    x
}

/// Runs the PBX scenario with `password` (and the carrier scenario when `callee` is given);
/// both must succeed.
fn run_pbx(lab: &MediaLab, password: &str, callee: Option<&[sipp::Step]>) -> Result<(), String> {
    let callee_xml =
        callee.map(|c| sipp::write_scenario("callee", &sipp::scenario("callee", false, c)));
    let mut carrier = callee_xml
        .as_ref()
        .map(|x| sipp::run(&lab.lab.carrier, x.path(), CARRIER, None, &[]));
    thread::sleep(Duration::from_millis(300));
    let pbx_xml = sipp::write_scenario("pbx-auth", &pbx_scenario(callee.is_some()));
    let mut pbx = sipp::run(
        &lab.lab.pbx,
        pbx_xml.path(),
        PBX,
        Some(SBC_INSIDE),
        &["-au", "pbx", "-ap", password, "-auth_uri", AUTH_URI],
    );
    let a = pbx.wait_timeout(Duration::from_secs(70));
    let b = carrier
        .as_mut()
        .map(|c| c.wait_timeout(Duration::from_secs(10)));
    let carrier_ok = b.is_none_or(|s| s.is_some_and(|s| s.success()));
    if a.is_some_and(|s| s.success()) && carrier_ok {
        Ok(())
    } else {
        Err(format!("pbx {a:?}, carrier {b:?}"))
    }
}

#[test]
fn pbx_must_authenticate_and_a_wrong_password_gets_no_call() {
    if !sbc_e2e::require_root("pbx_auth") {
        return;
    }
    let lab = MediaLab::start("spa", "xdp = \"off\"");

    // Credentials go in live; the API never shows the password.
    patch(
        &lab,
        r#"{"pbx":{"username":"pbx","password":"pbx-s3cret"}}"#,
    );
    let config = lab
        .request("GET", "/api/v1/config", None)
        .expect("config")
        .body;
    assert!(config.contains("<redacted>"), "{config}");
    assert!(!config.contains("pbx-s3cret"), "password leaked: {config}");

    // Default algorithms: SHA-256 first, then MD5 (RFC 8760 §2.4), qop="auth".
    let challenge = {
        let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
        raw_invite_final()
    };
    assert!(
        challenge.starts_with("SIP/2.0 407 "),
        "unauthenticated INVITE: {challenge}"
    );
    let offers: Vec<&str> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("Proxy-Authenticate: "))
        .collect();
    assert_eq!(offers.len(), 2, "{challenge}");
    assert!(offers[0].contains("algorithm=SHA-256"), "{challenge}");
    assert!(offers[1].contains("algorithm=MD5"), "{challenge}");
    assert!(
        offers
            .iter()
            .all(|o| o.contains("realm=\"198.18.1.1\"") && o.contains("qop=\"auth\"")),
        "{challenge}"
    );

    // SIPp only does MD5 and answers the first challenge: offer MD5 alone.
    patch(&lab, r#"{"pbx":{"auth_algorithms":["MD5"]}}"#);
    let callee = sipp::answering_callee();
    run_pbx(&lab, "pbx-s3cret", Some(&callee)).expect("authenticated call completes");

    // A wrong password: a second 407 and no call (no carrier runs: nothing may arrive).
    run_pbx(&lab, "wrong-password", None).expect("wrong password challenged again");

    let series = |r: &str| metric(&lab, &format!("sbc_pbx_auth_total{{result=\"{r}\"}}"));
    assert_eq!(series("challenged"), Some(3.0), "raw, good and bad PBX");
    assert_eq!(series("accepted"), Some(1.0));
    assert_eq!(series("failed"), Some(1.0));
    assert_eq!(series("stale"), Some(0.0));
    assert_eq!(
        metric(&lab, "sbc_calls_started_total{direction=\"outbound\"}"),
        Some(1.0),
        "only the authenticated call reached the carrier side"
    );
}
