//! Topology hiding and SDP address checks end to end: SIPp as the PBX sends the topology probes
//! of issue 13 (SDP with `a=candidate` naming its own address, `a=tool`, media-level `i=` and
//! `k=`, a vendor attribute, inside a `multipart/mixed` body with another part) and answers an
//! inbound call with a 302 whose Contacts are inside URIs; the whole carrier link is captured
//! and must hold none of it. Then the SDP loop probes: `c=` naming the SBC's own addresses and
//! relay port, 127.0.0.1 and 224.0.0.1 are refused with 488 and cost no CPU; `c=0.0.0.0` is a
//! hold, and RTP the carrier sends during it never reaches the SBC host's loopback.

mod media_common;

use std::{
    net::{SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{
    netns,
    sipp::{self, Step::*},
};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";
/// The PBX's SDP port in the hold probe: what a relay that took `0.0.0.0` as a target would
/// send to on the SBC host itself.
const HOLD_PORT: u16 = 41_000;

/// The probe SDP: every line that must not cross carries a `PROBE` marker.
const PROBE_SDP: &str = "v=0
o=pbx-PROBEUSER 1 1 IN IP4 [local_ip]
s=PROBESESSION
i=PROBEINFO session
u=http://pbx-internal.lan/PROBEURI
e=PROBEMAIL@pbx-internal.lan
c=IN IP4 [local_ip]
t=0 0
a=tool:PROBETOOL 4.2
m=audio [media_port] RTP/AVP 0 101
i=PROBEMEDIAINFO
k=clear:PROBEKEY
a=candidate:1 1 UDP 2130706431 [local_ip] 41000 typ host
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=X-PROBEVENDOR:node-7
a=sendrecv
";

/// A PBX call to the carrier: INVITE with `body` of type `content_type`; then either `final_`
/// (a refusal, ACKed) or, with 200, an answered call held for `hold_ms` and hung up.
fn pbx_caller(content_type: &str, body: &str, final_: u16, hold_ms: u32) -> String {
    let tag = "[pid]SIPpTag00[call_number]";
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"probe\">\n\
<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n\
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
From: <sip:100@pbx-internal.lan>;tag={tag}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\n\
Call-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:100@[local_ip]:[local_port]>\n\
Max-Forwards: 70\nUser-Agent: SIPp-UA-[pid]\nContent-Type: {content_type}\n\
Content-Length: [len]\n\n{body}]]></send>\n\
<recv response=\"100\" optional=\"true\"/>\n"
    );
    if final_ == 200 {
        x.push_str(&format!(
            "<recv response=\"180\" optional=\"true\"/>\n<recv response=\"200\" rrs=\"true\"/>\n\
<send><![CDATA[\nACK [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
[routes]\nFrom: <sip:100@pbx-internal.lan>;tag={tag}\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\n\
Max-Forwards: 70\nContent-Length: 0\n\n]]></send>\n<pause milliseconds=\"{hold_ms}\"/>\n\
<send retrans=\"500\"><![CDATA[\nBYE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
[routes]\nFrom: <sip:100@pbx-internal.lan>;tag={tag}\n[last_To:]\nCall-ID: [call_id]\nCSeq: 2 BYE\n\
Max-Forwards: 70\nContent-Length: 0\n\n]]></send>\n<recv response=\"200\"/>\n"
        ));
    } else {
        x.push_str(&format!(
            "<recv response=\"{final_}\"/>\n<send><![CDATA[\nACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n\
[last_Via:]\nFrom: <sip:100@pbx-internal.lan>;tag={tag}\n[last_To:]\nCall-ID: [call_id]\n\
CSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
        ));
    }
    x.push_str("</scenario>\n");
    x
}

/// The PBX redirecting an inbound call: 302 with a number at its own address and an inside
/// user URI.
fn pbx_redirecting() -> String {
    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"redirect\">\n\
<recv request=\"INVITE\"/>\n<send><![CDATA[\nSIP/2.0 302 Moved to pbx-internal.lan PROBEPHRASE\n\
[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n[last_Call-ID:]\n[last_CSeq:]\n\
Contact: <sip:+1-555-0100@[local_ip]:[local_port];transport=udp>;q=0.9\n\
Contact: \"Ext 201\" <sip:alice-PROBEUSER@pbx-internal.lan>\nContent-Length: 0\n\n]]></send>\n\
<recv request=\"ACK\"/>\n</scenario>\n"
        .to_owned()
}

/// Runs a PBX-side and a carrier-side scenario of one call; true if both succeeded. Without
/// a carrier scenario (a call the SBC refuses), only the PBX runs.
fn run_call(lab: &MediaLab, outbound: bool, pbx_xml: &str, carrier_xml: Option<&str>) -> bool {
    let pbx_file = sipp::write_scenario("pbx", pbx_xml);
    let car_file = sipp::write_scenario("car", carrier_xml.unwrap_or(""));
    if carrier_xml.is_none() {
        let mut pbx = sipp::run(&lab.lab.pbx, pbx_file.path(), PBX, Some(SBC_INSIDE), &[]);
        return pbx
            .wait_timeout(Duration::from_secs(70))
            .is_some_and(|s| s.success());
    }
    let (mut callee, mut caller) = if outbound {
        let callee = sipp::run(&lab.lab.carrier, car_file.path(), CARRIER, None, &[]);
        thread::sleep(Duration::from_millis(300));
        let caller = sipp::run(
            &lab.lab.pbx,
            pbx_file.path(),
            PBX,
            Some(SBC_INSIDE),
            &["-mp", &HOLD_PORT.to_string()],
        );
        (callee, caller)
    } else {
        let callee = sipp::run(&lab.lab.pbx, pbx_file.path(), PBX, None, &[]);
        thread::sleep(Duration::from_millis(300));
        let caller = sipp::run(
            &lab.lab.carrier,
            car_file.path(),
            CARRIER,
            Some(SBC_OUTSIDE),
            &[],
        );
        (callee, caller)
    };
    let a = caller.wait_timeout(Duration::from_secs(70));
    let b = callee.wait_timeout(Duration::from_secs(10));
    a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success())
}

/// User plus system CPU time of `pid`, in clock ticks (USER_HZ).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("sbc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn metric(lab: &MediaLab, series: &str) -> u64 {
    let text = lab.request("GET", "/metrics", None).expect("metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn topology_probes_never_reach_the_carrier() {
    if !sbc_e2e::require_root("border_topology") {
        return;
    }
    let lab = MediaLab::start("sbt", "xdp = \"off\"");
    let capture = sbc_e2e::capture::Capture::start(&lab.lab.carrier, "car0").expect("capture");
    let carrier_answers = sipp::scenario("carrier", false, &sipp::answering_callee());
    let mut failures = Vec::new();

    // 1. The probes, in a multipart body with another part.
    let multipart = format!(
        "--PROBEBOUNDARY\nContent-Type: application/vnd.pbx-routing+xml\n\n\
<route host=\"pbx-internal.lan\" ip=\"[local_ip]\" PROBEPART=\"1\"/>\n--PROBEBOUNDARY\n\
Content-Type: application/sdp\n\n{PROBE_SDP}\n--PROBEBOUNDARY--\n"
    );
    if !run_call(
        &lab,
        true,
        &pbx_caller(
            "multipart/mixed;boundary=PROBEBOUNDARY",
            &multipart,
            200,
            200,
        ),
        Some(&carrier_answers),
    ) {
        failures.push("probe call (multipart with SDP probes)");
    }

    // 2. A 302 from the PBX on an inbound call.
    let carrier_redirected = sipp::scenario(
        "carrier",
        true,
        &[
            Invite { sdp: true },
            Recv {
                code: 100,
                optional: true,
            },
            Recv {
                code: 302,
                optional: false,
            },
            AckNon2xx,
        ],
    );
    if !run_call(&lab, false, &pbx_redirecting(), Some(&carrier_redirected)) {
        failures.push("302 from the PBX");
    }

    // Let tshark write out the last packets before it is stopped.
    thread::sleep(Duration::from_secs(1));
    let bytes = capture.stop();
    assert!(failures.is_empty(), "calls failed: {failures:?}");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("198.18.2.2"),
        "the capture holds the carrier's traffic"
    );
    for s in [
        "198.18.1.",
        "PROBE",
        "pbx-internal",
        "a=candidate",
        "a=tool",
        "multipart",
        "vnd.pbx-routing",
    ] {
        assert_eq!(
            text.matches(s).count(),
            0,
            "{s:?} from the inside reached the carrier link"
        );
    }
    let sip_lines: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| l.contains("SIP/2.0 ") || l.starts_with("Contact:"))
        .collect();
    assert!(
        text.contains("SIP/2.0 302 Moved Temporarily"),
        "the 302 reached the carrier with the standard phrase: {sip_lines:?}"
    );
    assert!(
        text.contains("Contact: <sip:+15550100@198.18.2.1:5060>;q=0.9"),
        "the redirect target is the number at the SBC: {sip_lines:?}"
    );
}

#[test]
fn sdp_loop_probes_are_refused_and_a_zero_address_is_a_hold() {
    if !sbc_e2e::require_root("border_topology") {
        return;
    }
    let lab = MediaLab::start("sbl", "xdp = \"off\"");
    let sbc_pid = lab.sbc.as_ref().expect("sbc running").pid();
    let carrier_answers = sipp::scenario("carrier", false, &sipp::answering_callee());
    let mut failures = Vec::new();

    // 1. SDP loop probes: each refused with 488 before any relay port is taken.
    let refused_before = metric(
        &lab,
        "sbc_border_refusals_total{reason=\"sdp_own_address\"}",
    );
    let plain = |c: &str, port: &str| {
        PROBE_SDP
            .replace("c=IN IP4 [local_ip]", &format!("c=IN IP4 {c}"))
            .replace("m=audio [media_port]", &format!("m=audio {port}"))
    };
    for (c, port) in [
        ("198.18.2.1", "10000"),
        ("198.18.1.1", "10002"),
        ("127.0.0.1", "[media_port]"),
        ("224.0.0.1", "[media_port]"),
    ] {
        let xml = pbx_caller("application/sdp", &plain(c, port), 488, 0);
        if !run_call(&lab, true, &xml, None) {
            failures.push("loop probe not refused with 488");
            eprintln!("c={c} port {port}: not refused with 488");
        }
    }
    assert_eq!(
        metric(
            &lab,
            "sbc_border_refusals_total{reason=\"sdp_own_address\"}"
        ) - refused_before,
        2,
        "the SBC's own addresses counted"
    );
    for r in ["sdp_loopback", "sdp_multicast"] {
        assert_eq!(
            metric(
                &lab,
                &format!("sbc_border_refusals_total{{reason=\"{r}\"}}")
            ),
            1,
            "{r} counted"
        );
    }
    let before = cpu_ticks(sbc_pid);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(sbc_pid) - before;
    let elapsed = t0.elapsed().as_secs_f64();
    eprintln!("sbc CPU after the loop probes: {used} ticks in {elapsed:.1} s");
    assert!(
        used <= 15,
        "sbc not idle: {used} ticks of CPU in {elapsed:.1} s"
    );

    // 2. 0.0.0.0: a hold. RTP from the carrier must not reach the SBC host's loopback.
    let trap = {
        let _in = netns::enter(&lab.lab.sbc).expect("enter sbc netns");
        // The wildcard catches both forms of "0.0.0.0": the kernel delivers it to the sending
        // socket's own address, or to 127.0.0.1 from an unbound one.
        let s = UdpSocket::bind(("0.0.0.0", HOLD_PORT)).expect("bind the trap");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        s
    };
    let hold_sdp = plain("0.0.0.0", "[media_port]");
    let hold_xml = pbx_caller("application/sdp", &hold_sdp, 200, 4000);
    let carrier = lab.socket(false, "198.18.2.2:0");
    let hold = thread::scope(|s| {
        let call = s.spawn(|| run_call(&lab, true, &hold_xml, Some(&carrier_answers)));
        // The relay's outside endpoint of the held call, from the admin API.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut relay: Option<SocketAddr> = None;
        while relay.is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            let ids = lab.json("GET", "/api/v1/media/sessions", None, 200);
            let Some(id) = ids[0].as_u64() else { continue };
            let v = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
            let ep = &v["streams"][0]["outside"];
            relay = ep["relay"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .zip(ep["rtp_port"].as_u64().and_then(|p| u16::try_from(p).ok()))
                .map(|(ip, port)| SocketAddr::new(ip, port));
        }
        let relay = relay.expect("held call anchored on the relay");
        media_common::send_rtp(&carrier, relay, 1, 50, 0x5bc);
        let mut buf = [0u8; 2048];
        let leaked = trap.recv_from(&mut buf).is_ok();
        (call.join().expect("call thread"), leaked)
    });
    if !hold.0 {
        failures.push("hold call with c=0.0.0.0");
    }
    assert!(
        !hold.1,
        "RTP for a c=0.0.0.0 peer reached the SBC host itself"
    );
    assert!(failures.is_empty(), "calls failed: {failures:?}");
}
