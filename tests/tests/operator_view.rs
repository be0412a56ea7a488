//! The operator's view of calls, end to end with the real `sbc` in the lab:
//! - HEP v3 export: Kamailio's `sipcapture` module (HEP mode, an event route that logs what
//!   it decoded) receives both legs of a SIPp call, each message with its method, Call-ID,
//!   source and destination, the other leg's Call-ID as correlation id, the capture id and
//!   the password;
//! - the per-call trace: the ladder of a call the carrier refused with 486, looked up by number
//!   and by Call-ID after the call ended;
//! - one-way audio: a call where only the PBX sends RTP is diagnosed as such by
//!   `GET /api/v1/calls/{id}/media`, then the carrier's RTP from an address the latch refuses
//!   is reported with that address.

mod media_common;

use std::{
    fs::File,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use media_common::{MediaLab, send_rtp};
use nix::sys::signal::Signal;
use sbc_e2e::{
    process::Owned,
    sipp::{self, Step::*},
};
use serde_json::Value;

const PBX_SIP: &str = "198.18.1.2:5060";
const CARRIER_SIP: &str = "198.18.2.2:5060";
const SBC_INSIDE_SIP: &str = "198.18.1.1:5060";
const SBC_OUTSIDE_SIP: &str = "198.18.2.1:5060";
const COLLECTOR: &str = "198.18.2.2:9060";
/// What `sipp::run` dials.
const NUMBER: &str = "15551234567";

/// Kamailio as a HEP collector: `sipcapture` decodes each HEP packet and the event route logs
/// the chunks it decoded and the SIP start line and Call-ID of the payload. (`db_text` only
/// satisfies the module's start-up; nothing is stored.)
fn kamailio_cfg(dir: &std::path::Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=no
children=1
auto_aliases=no
listen=udp:{COLLECTOR}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "text://{db}")
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "nonsip_hook", 1)
event_route[sipcapture:request] {{
    if ($hep(0x00b) == 1) {{
        xlog("L_NOTICE", "HEPSIP v=$hep(version) cap=$hep(0x00c) auth=$hep(0x00e) proto=$hep(0x002) src=$hep(0x003):$hep(0x007) dst=$hep(0x004):$hep(0x008) corr=[$hep(0x011)] first=[$(hep(0x00f){{line.at,0}})] [$(hep(0x00f){{line.sw,Call-ID:}})]\n");
    }} else {{
        xlog("L_NOTICE", "HEPREPORT type=$hep(0x00b) corr=[$hep(0x011)] src=$hep(0x003):$hep(0x007) payload=[$hep(0x00f)]\n");
    }}
    return 0;
}}
request_route {{
    drop;
}}
"#,
        db = dir.join("db").display()
    )
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn basic_caller(pause_ms: u32) -> Vec<sipp::Step> {
    vec![
        Invite { sdp: true },
        Recv {
            code: 100,
            optional: true,
        },
        Recv {
            code: 180,
            optional: true,
        },
        Recv {
            code: 200,
            optional: false,
        },
        Ack2xx {
            sdp: false,
            cseq: 1,
        },
        Pause { ms: pause_ms },
        InDialog {
            method: "BYE",
            cseq: 2,
            sdp: None,
            uac: true,
        },
        Recv {
            code: 200,
            optional: false,
        },
    ]
}

/// The legs of the most recent traced call to `NUMBER`.
fn trace_by_number(lab: &MediaLab) -> Value {
    lab.json(
        "GET",
        &format!("/api/v1/calls/{NUMBER}/trace?by=number"),
        None,
        200,
    )
}

fn call_ids(trace: &Value) -> (String, String) {
    let legs = trace["legs"].as_array().expect("legs");
    let of = |side: &str| {
        legs.iter()
            .find(|l| l["side"] == side)
            .and_then(|l| l["call_id"].as_str())
            .unwrap_or_else(|| panic!("no {side} leg: {trace}"))
            .to_owned()
    };
    (of("inside"), of("outside"))
}

#[test]
fn hep_export_is_decoded_by_kamailio_sipcapture_for_both_legs() {
    if !sbc_e2e::require_root("operator_view") {
        return;
    }
    let lab = MediaLab::start_admin(
        "ohep",
        "xdp = \"off\"",
        &format!(
            "[hep]\ncollector = \"{COLLECTOR}\"\ncapture_id = 4242\npassword = \"hep-pw\"\n\
             rtcp_report_s = 1\n"
        ),
        None,
    );
    let dir = TempDir(std::env::temp_dir().join(sbc_e2e::netns::unique("kamhep")));
    std::fs::create_dir_all(dir.0.join("db")).expect("temp dir");
    let cfg = dir.0.join("kamailio.cfg");
    std::fs::write(&cfg, kamailio_cfg(&dir.0)).expect("write kamailio.cfg");
    let log_path = dir.0.join("kamailio.log");
    let log = File::create(&log_path).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.lab.carrier, "kamailio", "-f"])
        .arg(&cfg)
        .args(["-DD", "-E", "-Y"])
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start kamailio");
    let mut kamailio = Owned::new("kamailio", child);
    // Kamailio logs the raw HEP bytes it first tries to parse as SIP: not UTF-8.
    let read =
        || String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    thread::sleep(Duration::from_millis(700));
    assert!(kamailio.running(), "kamailio runs: {}", read());

    // Fixed media ports in the PBX's SDP: the test's own sockets send its RTP and RTCP.
    const PBX_RTP: &str = "198.18.1.2:4000";
    let callee = sipp::write_scenario(
        "hep-callee",
        &sipp::scenario("callee", false, &sipp::answering_callee()),
    );
    let caller = sipp::write_scenario(
        "hep-caller",
        &sipp::scenario("caller", true, &basic_caller(2_500)).replace("[media_port]", "4000"),
    );
    let callee = sipp::run(&lab.lab.carrier, callee.path(), CARRIER_SIP, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let caller = sipp::run(
        &lab.lab.pbx,
        caller.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    // The PBX talks and sends one RTCP receiver report (fraction lost 64/256, 5 lost, jitter
    // 80): the SBC exports it as a HEP type 5 report correlated with the PBX leg's Call-ID.
    let (_, in_relay) = answered_call(&lab);
    let pbx = lab.socket(true, PBX_RTP);
    send_rtp(&pbx, in_relay, 0, 10, 0x1111_1111);
    let rtcp = lab.socket(true, "198.18.1.2:4001");
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222_2222u32.to_be_bytes());
    rr.extend_from_slice(&[64, 0, 0, 5]);
    rr.extend_from_slice(&100u32.to_be_bytes());
    rr.extend_from_slice(&80u32.to_be_bytes());
    rr.extend_from_slice(&[0; 8]);
    let rtcp_relay = SocketAddr::new(in_relay.ip(), in_relay.port() + 1);
    rtcp.send_to(&rr, rtcp_relay).expect("send RTCP");
    sipp::wait_ok(caller, "caller");
    sipp::wait_ok(callee, "callee");

    let (inside, outside) = call_ids(&trace_by_number(&lab));
    assert_ne!(inside, outside, "the B2BUA's legs have their own Call-IDs");
    // Every message of both legs, as Kamailio decoded it: (who sent, to whom, start line).
    let expect = [
        (PBX_SIP, SBC_INSIDE_SIP, "INVITE sip:", &inside, &outside),
        (
            SBC_OUTSIDE_SIP,
            CARRIER_SIP,
            "INVITE sip:",
            &outside,
            &inside,
        ),
        (
            CARRIER_SIP,
            SBC_OUTSIDE_SIP,
            "SIP/2.0 200 OK",
            &outside,
            &inside,
        ),
        (SBC_INSIDE_SIP, PBX_SIP, "SIP/2.0 200 OK", &inside, &outside),
        (PBX_SIP, SBC_INSIDE_SIP, "ACK sip:", &inside, &outside),
        (SBC_OUTSIDE_SIP, CARRIER_SIP, "ACK sip:", &outside, &inside),
        (PBX_SIP, SBC_INSIDE_SIP, "BYE sip:", &inside, &outside),
        (SBC_OUTSIDE_SIP, CARRIER_SIP, "BYE sip:", &outside, &inside),
        (
            CARRIER_SIP,
            SBC_OUTSIDE_SIP,
            "SIP/2.0 200 OK",
            &outside,
            &inside,
        ),
        (SBC_INSIDE_SIP, PBX_SIP, "SIP/2.0 200 OK", &inside, &outside),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut missing: Vec<String>;
    loop {
        let log = read();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("HEPSIP ")).collect();
        missing = expect
            .iter()
            .filter(|(src, dst, first, cid, corr)| {
                !lines.iter().any(|l| {
                    l.contains("v=3 cap=4242 auth=hep-pw proto=17 ")
                        && l.contains(&format!(" src={src} dst={dst} "))
                        && l.contains(&format!("corr=[{corr}]"))
                        && l.contains(&format!("first=[{first}"))
                        && l.contains(&format!("[Call-ID: {cid}]"))
                })
            })
            .map(|e| format!("{e:?}"))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        missing.is_empty(),
        "not decoded by sipcapture: {missing:#?}\nkamailio log:\n{}",
        read()
    );
    let log = read();
    let report = log
        .lines()
        .find(|l| l.contains("HEPREPORT type=5 ") && l.contains(&format!("corr=[{inside}]")))
        .unwrap_or_else(|| panic!("no RTCP report for the PBX leg:\n{log}"));
    assert!(report.contains(&format!(" src={PBX_RTP} ")), "{report}");
    assert!(
        report.contains(r#""fraction_lost":64"#)
            && report.contains(r#""packets_lost":5"#)
            && report.contains(r#""ia_jitter":80"#),
        "{report}"
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    let sent = metric(&metrics, "sbc_hep_sent_total{type=\"sip\"}");
    assert!(sent >= 10, "sbc_hep_sent_total{{type=\"sip\"}} = {sent}");
    assert_eq!(metric(&metrics, "sbc_hep_up"), 1);

    kamailio.signal(Signal::SIGTERM);
    let _ = kamailio.wait_timeout(Duration::from_secs(5));
}

#[test]
fn trace_shows_the_ladder_of_a_call_refused_with_486() {
    if !sbc_e2e::require_root("operator_view") {
        return;
    }
    let lab = MediaLab::start("otr", "xdp = \"off\"");
    let caller_steps = vec![
        Invite { sdp: true },
        Recv {
            code: 100,
            optional: true,
        },
        Recv {
            code: 486,
            optional: false,
        },
        AckNon2xx,
    ];
    let callee_steps = vec![
        RecvRequest { method: "INVITE" },
        Respond {
            code: 486,
            reason: "Busy Here",
            sdp: None,
        },
        RecvRequest { method: "ACK" },
    ];
    let callee = sipp::write_scenario(
        "busy-callee",
        &sipp::scenario("callee", false, &callee_steps),
    );
    let caller = sipp::write_scenario(
        "busy-caller",
        &sipp::scenario("caller", true, &caller_steps),
    );
    let callee = sipp::run(&lab.lab.carrier, callee.path(), CARRIER_SIP, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let caller = sipp::run(
        &lab.lab.pbx,
        caller.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &[],
    );
    sipp::wait_ok(caller, "caller");
    sipp::wait_ok(callee, "callee");
    // The capture task runs beside the call; give it a moment.
    thread::sleep(Duration::from_millis(300));

    let trace = trace_by_number(&lab);
    let legs = trace["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 2, "{trace}");
    for leg in legs {
        assert_eq!(leg["final_status"], 486, "{trace}");
        assert_eq!(leg["ended"], true, "{trace}");
        assert_eq!(leg["called"], NUMBER, "{trace}");
        let summaries: Vec<&str> = leg["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["summary"].as_str())
            .filter(|s| *s != "100 Trying")
            .collect();
        assert_eq!(summaries, ["INVITE", "486 Busy Here", "ACK"], "{trace}");
    }
    let (inside, outside) = call_ids(&trace);
    let by_call_id = lab.json(
        "GET",
        &format!("/api/v1/calls/{outside}/trace?by=call_id"),
        None,
        200,
    );
    assert_eq!(call_ids(&by_call_id), (inside.clone(), outside.clone()));

    let r = lab
        .request(
            "GET",
            &format!("/api/v1/calls/{inside}/trace?format=text"),
            None,
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    eprintln!("{}", r.body);
    let arrows: Vec<&str> = r.body.lines().filter(|l| l.contains('|')).collect();
    let count = |needle: &str, right: bool| {
        arrows
            .iter()
            .filter(|l| l.contains(needle) && l.contains(if right { "->|" } else { "|<-" }))
            .count()
    };
    // INVITE and ACK go PBX → SBC → carrier; 486 comes back carrier → SBC → PBX.
    assert_eq!(count("INVITE-", true), 2, "{}", r.body);
    assert_eq!(count("ACK-", true), 2, "{}", r.body);
    assert_eq!(count("486 Busy Here (INVITE)", false), 2, "{}", r.body);
    assert!(r.body.contains(&format!("inside leg Call-ID {inside}")));
    assert!(r.body.contains(", final 486"));

    let r = lab
        .request("GET", "/api/v1/calls/no-such-call/trace", None)
        .expect("admin API");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = lab
        .request("GET", "/api/v1/calls/1/trace?by=phase", None)
        .expect("admin API");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn one_way_audio_is_diagnosed_with_the_silent_side_and_the_refused_source() {
    if !sbc_e2e::require_root("operator_view") {
        return;
    }
    const PBX_RTP: &str = "198.18.1.2:4000";
    const CARRIER_RTP: &str = "198.18.2.2:6000";
    /// A second address of the carrier host that neither its SDP nor its signaling names.
    const CARRIER_OTHER: &str = "198.18.2.3";
    let lab = MediaLab::start("oow", "xdp = \"off\"");
    let ok = Command::new("ip")
        .args([
            "-n",
            &lab.lab.carrier,
            "addr",
            "add",
            &format!("{CARRIER_OTHER}/24"),
            "dev",
            "car0",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "second carrier address");
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    let callee = sipp::write_scenario(
        "ow-callee",
        &sipp::scenario("callee", false, &sipp::answering_callee())
            .replace("[media_port]", &port(CARRIER_RTP)),
    );
    let caller = sipp::write_scenario(
        "ow-caller",
        &sipp::scenario("caller", true, &basic_caller(8_000))
            .replace("[media_port]", &port(PBX_RTP)),
    );
    let callee = sipp::run(
        &lab.lab.carrier,
        callee.path(),
        CARRIER_SIP,
        None,
        &["-mp", "30000"],
    );
    thread::sleep(Duration::from_millis(300));
    let caller = sipp::run(
        &lab.lab.pbx,
        caller.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    let (call, in_relay) = answered_call(&lab);

    // Only the PBX talks (1 s of 20 ms frames); the carrier is silent.
    let pbx = lab.socket(true, PBX_RTP);
    send_rtp(&pbx, in_relay, 0, 50, 0x1111_1111);
    let media = lab.json("GET", &format!("/api/v1/calls/{call}/media"), None, 200);
    eprintln!("{media:#}");
    assert_eq!(media["verdict"], "one_way", "{media}");
    let st = &media["streams"][0];
    assert_eq!(st["path"], "userspace", "{media}");
    assert_eq!(st["inside"]["sending"], true, "{media}");
    assert_eq!(st["inside"]["packets"], 50, "{media}");
    assert_eq!(st["inside"]["latched"], PBX_RTP, "{media}");
    assert_eq!(st["outside"]["sending"], false, "{media}");
    assert_eq!(st["outside"]["packets"], 0, "{media}");
    assert_eq!(st["outside"]["sdp"], CARRIER_RTP, "{media}");
    assert!(
        media["summary"].as_str().is_some_and(|s| s
            .contains("the PBX sends, the carrier has sent nothing")
            && s.contains("no RTP at all")),
        "{media}"
    );

    // The dashboard's gauge counts the stream under the silent side.
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert_eq!(
        metric(&metrics, "sbc_media_silent_streams{silent=\"carrier\"}"),
        1,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "sbc_media_silent_streams{silent=\"pbx\"}"),
        0
    );

    // The carrier's media now comes from another address: refused by the latch, and named.
    let other = lab.socket(false, &format!("{CARRIER_OTHER}:6000"));
    let out_relay: SocketAddr = st["outside"]["relay"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("outside relay address");
    send_rtp(&other, out_relay, 0, 10, 0x2222_2222);
    let media = lab.json("GET", &format!("/api/v1/calls/{call}/media"), None, 200);
    eprintln!("{media:#}");
    let out = &media["streams"][0]["outside"];
    assert_eq!(media["verdict"], "one_way", "{media}");
    assert_eq!(
        out["refused_from"],
        format!("{CARRIER_OTHER}:6000"),
        "{media}"
    );
    assert_eq!(out["refused_reason"], "not_allowed", "{media}");
    assert_eq!(out["dropped"], 10, "{media}");
    assert_eq!(out["nat_suspected"], true, "{media}");
    assert!(
        out["findings"][0]
            .as_str()
            .is_some_and(|f| f.contains(&format!("from {CARRIER_OTHER}:6000"))),
        "{media}"
    );

    sipp::wait_ok(caller, "caller");
    sipp::wait_ok(callee, "callee");
}

/// Waits for the answered call; returns its id and the inside relay RTP address.
fn answered_call(lab: &MediaLab) -> (u64, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let calls = lab.json("GET", "/api/v1/calls", None, 200);
        if let Some(c) = calls["calls"]
            .as_array()
            .and_then(|a| a.first())
            .filter(|c| c["state"] == "answered")
        {
            let id = c["id"].as_u64().expect("id");
            let media = lab.json("GET", &format!("/api/v1/calls/{id}/media"), None, 200);
            let relay = media["streams"][0]["inside"]["relay"]
                .as_str()
                .expect("relay")
                .parse()
                .expect("relay address");
            return (id, relay);
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("no answered call within 15 s");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
