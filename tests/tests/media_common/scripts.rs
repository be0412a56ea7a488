//! SIPp scenario pieces of the media-policy end-to-end tests (`media_policy.rs`,
//! `dtmf_interwork.rs`): SIPp as the PBX (UAC) in the pbx namespace and as the carrier (UAS)
//! in the carrier namespace, with the SDP and in-dialog requests those tests vary. The plain
//! answered-call scripts of other tests are `sbc_e2e::sipp::{answered_caller, …}`.

use std::{thread, time::Duration};

use sbc_e2e::sipp;

use super::MediaLab;

/// The PBX's SIP address (SIPp's `-i`/`-p`).
pub const PBX_SIP: &str = "198.18.1.2:5060";
/// The carrier's SIP address, the lab trunk's proxy.
pub const CARRIER_SIP: &str = "198.18.2.2:5060";
/// The SBC's inside SIP listener, where the PBX sends its INVITE.
pub const SBC_INSIDE_SIP: &str = "198.18.1.1:5060";
/// The PBX's audio port written in its SDP (SIPp's own media sockets are at `-mp`).
pub const PBX_AUDIO: u16 = 4000;
/// The carrier's media port written in its SDP.
pub const CARRIER_MEDIA: u16 = 6000;

/// Replaces the lab's trunk by `carrier` with the extra JSON keys `extra` (`,"k":v…`) through
/// the admin API.
pub fn patch_trunk(lab: &MediaLab, extra: &str) {
    let body = format!(r#"{{"trunk":[{{"name":"carrier","proxy":"{CARRIER_SIP}"{extra}}}]}}"#);
    let r = lab
        .request("PATCH", "/api/v1/config", Some(&body))
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// An SDP body with one `m=audio` line at `port` with `formats` and their `maps` lines.
pub fn sdp_audio(port: u16, formats: &str, maps: &str) -> String {
    format!(
        "v=0\no=peer 1 [cseq] IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio {port} RTP/AVP {formats}\n{maps}a=ptime:20\na=sendrecv\n"
    )
}

/// `sdp` as a request or response body.
pub fn sdp(body: &str) -> Option<(&'static str, &str)> {
    Some(("application/sdp", body))
}

/// A whole scenario named `name`.
pub fn scenario(name: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{body}</scenario>\n"
    )
}

/// Waits `ms`.
pub fn pause(ms: u32) -> String {
    format!("<pause milliseconds=\"{ms}\"/>\n")
}

/// Plays one of SIPp's RTP captures (`/usr/share/sip-tester/<pcap>`) from the `-mp` port.
pub fn play(pcap: &str) -> String {
    format!(
        "<nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/{pcap}\"/></action></nop>\n"
    )
}

/// The PBX's INVITE (UAC) with `sdp`, then the optional 100 and 180.
pub fn pbx_invite(sdp: &str) -> String {
    format!(
        "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: pbx <sip:100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:100@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: [len]\n\n{sdp}]]></send>\n<recv response=\"100\" optional=\"true\"/>\n<recv response=\"180\" optional=\"true\"/>\n"
    )
}

/// A request in the PBX's dialog (after [`pbx_answered`]) with CSeq `cseq` and an optional
/// `(content type, body)`; an ACK is not retransmitted.
pub fn pbx_in_dialog(method: &str, cseq: u32, body: Option<(&str, &str)>) -> String {
    let (ct, body) = body.map_or((String::new(), ""), |(t, b)| {
        (format!("Content-Type: {t}\n"), b)
    });
    let retrans = if method == "ACK" {
        ""
    } else {
        " retrans=\"500\""
    };
    format!(
        "<send{retrans}><![CDATA[\n{method} [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: pbx <sip:100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: [$remote_to]\nCall-ID: [call_id]\nCSeq: {cseq} {method}\nContact: <sip:100@[local_ip]:[local_port]>\nMax-Forwards: 70\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
    )
}

/// The PBX's call: INVITE with `sdp`, 200, ACK, then `middle`, then BYE with CSeq
/// `last_cseq` and its 200.
pub fn pbx_call(sdp: &str, middle: &str, last_cseq: u32) -> String {
    pbx_call_checking(sdp, &[], middle, last_cseq)
}

/// [`pbx_call`] that checks the answer (the SBC's 200) against `checks`.
pub fn pbx_call_checking(sdp: &str, checks: &[&str], middle: &str, last_cseq: u32) -> String {
    scenario(
        "pbx",
        &[
            pbx_invite(sdp),
            pbx_answered(checks),
            pbx_in_dialog("ACK", 1, None),
            middle.to_owned(),
            pbx_in_dialog("BYE", last_cseq, None),
            "<recv response=\"200\"/>\n".to_owned(),
        ]
        .concat(),
    )
}

/// A response to the last request received, with an optional SDP body (`first`: adds the
/// UAS's To tag, on the first response to the initial INVITE).
pub fn respond(code: u16, reason: &str, sdp: Option<&str>, first: bool) -> String {
    let (ct, body) = sdp.map_or(("", ""), |s| ("Content-Type: application/sdp\n", s));
    let to = if first {
        "[last_To:];tag=[pid]SIPpTag01[call_number]"
    } else {
        "[last_To:]"
    };
    format!(
        "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:peer@[local_ip]:[local_port]>\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
    )
}

/// The carrier: the INVITE checked against `checks`, answered 200 with `sdp`, then ACK, and
/// BYE answered 200.
pub fn carrier_call(checks: &[&str], sdp: &str) -> String {
    scenario(
        "carrier",
        &[
            recv_checked("request=\"INVITE\"", checks),
            respond(200, "OK", Some(sdp), true),
            "<recv request=\"ACK\"/>\n<recv request=\"BYE\"/>\n".to_owned(),
            respond(200, "OK", None, false),
        ]
        .concat(),
    )
}

/// Expects a message and checks each regex against it (SIPp fails the call on a mismatch).
pub fn recv_checked(what: &str, checks: &[&str]) -> String {
    recv_with(what, checks, false)
}

/// The PBX's 200 to its INVITE: checked, and the SBC's To (with its tag) kept for every later
/// request of the PBX's dialog (`[last_To:]` is the SBC's requests' once they arrive).
pub fn pbx_answered(checks: &[&str]) -> String {
    recv_with("response=\"200\"", checks, true)
}

fn recv_with(what: &str, checks: &[&str], capture_to: bool) -> String {
    let mut x = format!("<recv {what} rrs=\"true\"><action>");
    let mut vars = Vec::new();
    if capture_to {
        x.push_str("<ereg regexp=\".*\" search_in=\"hdr\" header=\"To:\" check_it=\"true\" assign_to=\"remote_to\"/>");
        vars.push("[$remote_to]".to_owned());
    }
    for (i, re) in checks.iter().enumerate() {
        x.push_str(&format!(
            "<ereg regexp=\"{re}\" search_in=\"msg\" check_it=\"true\" assign_to=\"c{i}\"/>"
        ));
        vars.push(format!("[$c{i}]"));
    }
    if !vars.is_empty() {
        // SIPp refuses variables that are never read.
        x.push_str(&format!("<log message=\"{}\"/>", vars.join(" ")));
    }
    x.push_str("</action></recv>\n");
    x
}

/// Runs the carrier's (`callee`) and the PBX's (`caller`) scenarios and waits for both to
/// succeed.
pub fn run_pair(lab: &MediaLab, callee: &str, caller: &str) {
    run_pair_with(lab, callee, caller, || {});
}

/// [`run_pair`], running `during` on this thread while the scenarios run.
pub fn run_pair_with(lab: &MediaLab, callee: &str, caller: &str, during: impl FnOnce()) {
    let callee_xml = sipp::write_scenario("media-callee", callee);
    let caller_xml = sipp::write_scenario("media-caller", caller);
    let callee = sipp::run(
        &lab.lab.carrier,
        callee_xml.path(),
        CARRIER_SIP,
        None,
        &["-mp", "30000"],
    );
    thread::sleep(Duration::from_millis(300));
    let caller = sipp::run(
        &lab.lab.pbx,
        caller_xml.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    during();
    sipp::wait_ok(caller, "PBX (SIPp)");
    sipp::wait_ok(callee, "carrier (SIPp)");
}
