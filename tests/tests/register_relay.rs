//! REGISTER from the PBX relayed to the carrier (`[pbx] register = "relay"`), end to end: a
//! SIPp PBX registers AOR 100 through the real `sbc` at Kamailio (registrar with digest auth,
//! `auth = "sbc"`: the SBC answers the 401 with the trunk's credentials). Kamailio stores the
//! SBC's Contact, never the PBX's; then a carrier call for 100 sent to Kamailio is routed by
//! the registrar to the SBC, and by the SBC to the address the PBX registered from (not
//! `[pbx] address`), where a SIPp callee answers it.

mod media_common;

use std::{
    fs::File,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use media_common::MediaLab;
use nix::sys::signal::Signal;
use sbc_e2e::{
    process::Owned,
    sipp::{self, Step::*},
};

const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=no
auto_aliases=no
listen=udp:198.18.2.2:5060
alias="sip.carrier.example"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("auth", "qop", "auth")
request_route {
    if (is_method("REGISTER")) {
        if (!pv_www_authenticate("$td", "s3cret-pw", "0")) {
            xlog("L_NOTICE", "REGCHALLENGE cseq=$cs\n");
            www_challenge("$td", "1");
            exit;
        }
        if ($au != "4930123") { sl_send_reply("403", "Forbidden"); exit; }
        consume_credentials();
        xlog("L_NOTICE", "REGAUTHOK aor=$tu contact=$ct\n");
        save("location");
        exit;
    }
    if (is_method("INVITE")) {
        if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
        xlog("L_NOTICE", "INVITE-TO $ru\n");
        t_relay();
        exit;
    }
    # SIPp sends every request to Kamailio: in-dialog ones go on to their Request-URI.
    if (has_totag()) { t_relay(); exit; }
    sl_send_reply("405", "Method Not Allowed");
}
"#;

/// The PBX's REGISTER for AOR 100 (from 198.18.1.2:5062, not `[pbx] address`); the 200 must
/// list the PBX's own Contact.
const PBX_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
<send retrans="500"><![CDATA[
REGISTER sip:sip.carrier.example SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:100@sip.carrier.example>;tag=[pid]reg
To: <sip:100@sip.carrier.example>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:100@[local_ip]:[local_port]>;expires=120
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"><action><ereg regexp="sip:100@198.18.1.2:5062>;expires=" search_in="hdr" header="Contact:" check_it="true" assign_to="c"/><log message="[$c]"/></action></recv>
</scenario>
"#;

const PBX_REG_ADDR: &str = "198.18.1.2:5062";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const KAMAILIO: &str = "198.18.2.2:5060";
const CARRIER_UA: &str = "198.18.2.2:5070";

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn pbx_registers_through_the_sbc_and_a_call_for_the_aor_reaches_it() {
    if !sbc_e2e::require_root("register_relay") {
        return;
    }
    let lab = MediaLab::start("srr", "xdp = \"off\"");
    let dir = std::env::temp_dir().join(sbc_e2e::netns::unique("kamrr"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, KAMAILIO_CFG).expect("write kamailio.cfg");
    let log_path = dir.join("kamailio.log");
    let log = File::create(&log_path).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.lab.carrier, "kamailio", "-f"])
        .arg(&cfg)
        .args(["-DD", "-E", "-Y"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start kamailio");
    let mut kamailio = Owned::new("kamailio", child);
    thread::sleep(Duration::from_millis(700));
    assert!(kamailio.running(), "kamailio runs: {}", read(&log_path));

    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(
                r#"{"pbx":{"address":"198.18.1.2:5060","allow":["198.18.1.0/24"],
                "register":"relay"},
                "trunk":[{"name":"carrier","proxy":"198.18.2.2:5060","username":"4930123",
                "password":"s3cret-pw","from_domain":"sip.carrier.example"}]}"#,
            ),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);

    let xml = sipp::write_scenario("register", PBX_REGISTER);
    let mut reg = sipp::run(
        &lab.lab.pbx,
        xml.path(),
        PBX_REG_ADDR,
        Some(SBC_INSIDE),
        &[],
    );
    let status = reg.wait_timeout(Duration::from_secs(30));
    let log = read(&log_path);
    assert!(
        status.is_some_and(|s| s.success()),
        "PBX REGISTER answered 200 with its own binding: {status:?}; kamailio: {log}"
    );
    assert!(log.contains("REGCHALLENGE"), "challenged: {log}");
    assert!(
        log.contains("REGAUTHOK aor=sip:100@sip.carrier.example contact=<sip:100@198.18.2.1:5060>"),
        "the registrar holds the SBC's Contact: {log}"
    );
    assert!(
        !log.contains("198.18.1."),
        "the PBX's Contact never reached the carrier: {log}"
    );

    // A carrier call for 100, routed by the registrar to the SBC and by the SBC to the PBX's
    // registered address.
    let callee_xml = sipp::write_scenario(
        "callee",
        &sipp::scenario("callee", false, &sipp::answering_callee()),
    );
    let mut callee = sipp::run(&lab.lab.pbx, callee_xml.path(), PBX_REG_ADDR, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let caller_steps = vec![
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
        Pause { ms: 200 },
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
    ];
    let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, &caller_steps));
    let mut caller = sipp::run_service(
        &lab.lab.carrier,
        caller_xml.path(),
        CARRIER_UA,
        Some(KAMAILIO),
        "100",
        &[],
    );
    let a = caller.wait_timeout(Duration::from_secs(70));
    let b = callee.wait_timeout(Duration::from_secs(10));
    let log = read(&log_path);
    assert!(
        a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()),
        "call for the AOR reaches the PBX's registered address: caller {a:?}, callee {b:?}; \
         kamailio: {log}"
    );
    assert!(log.contains("INVITE-TO sip:100@198.18.2.1:5060"), "{log}");

    kamailio.signal(Signal::SIGTERM);
    let _ = kamailio.wait_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}
