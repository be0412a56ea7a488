//! Outbound registration end to end: the real `sbc` registers a trunk with Kamailio (registrar,
//! usrloc in memory, auth with SHA-256 digest and qop=auth, configured by this test) in the
//! carrier namespace. Kamailio first challenges (401), then refuses the asked expiry with
//! 423 Min-Expires; the SBC answers both, is registered, refreshes before expiry, and removes
//! its binding (Expires: 0) when it stops. Kamailio logs every REGISTER it accepts; the test
//! reads that log.

mod media_common;

use std::{
    fs::File,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use nix::sys::signal::Signal;
use sbc_e2e::process::Owned;
use serde_json::Value;

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
modparam("registrar", "min_expires", 20)
modparam("registrar", "min_expires_mode", 1)
modparam("registrar", "max_expires", 3600)
modparam("auth", "algorithm", "SHA-256")
modparam("auth", "qop", "auth")
request_route {
    if (!is_method("REGISTER")) { sl_send_reply("405", "Method Not Allowed"); exit; }
    if (!pv_www_authenticate("$td", "s3cret-pw", "0")) {
        xlog("L_NOTICE", "REGCHALLENGE cseq=$cs\n");
        www_challenge("$td", "1");
        exit;
    }
    if ($au != "4930123") { sl_send_reply("403", "Forbidden"); exit; }
    consume_credentials();
    xlog("L_NOTICE", "REGAUTHOK cseq=$cs expires=$hdr(Expires) contact=$ct\n");
    save("location");
    exit;
}
"#;

fn trunk_registration(lab: &MediaLab) -> Value {
    let r = lab
        .request("GET", "/api/v1/trunks/carrier", None)
        .expect("admin API");
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    v["registration"].clone()
}

/// Polls until `pred` holds on the trunk's registration view, at most `within`.
fn wait_for(lab: &MediaLab, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = trunk_registration(lab);
        if pred(&v) || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn registers_with_a_challenging_registrar_handles_423_refreshes_and_deregisters() {
    if !sbc_e2e::require_root("registration") {
        return;
    }
    let mut lab = MediaLab::start("srg", "xdp = \"off\"");
    let dir = std::env::temp_dir().join(sbc_e2e::netns::unique("kam"));
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

    // Ask for 10 s: Kamailio wants at least 20 (423), and challenges first.
    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(
                r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060","username":"4930123",
                "password":"s3cret-pw","register":true,"register_expires_s":10,
                "from_domain":"sip.carrier.example"}]}"#,
            ),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);

    let v = wait_for(&lab, Duration::from_secs(10), |v| {
        v["state"] == "registered"
    });
    assert_eq!(
        v["state"],
        "registered",
        "{v}; kamailio: {}",
        read(&log_path)
    );
    assert_eq!(v["expires_s"], 20, "Min-Expires honoured: {v}");
    assert_eq!(
        metric(
            &lab,
            "sbc_trunk_registration_state{state=\"registered\",trunk=\"carrier\"}"
        ),
        Some(1.0)
    );
    let log = read(&log_path);
    assert!(log.contains("REGCHALLENGE"), "challenged first: {log}");
    assert!(
        log.contains("expires=20 contact=<sip:4930123@198.18.2.1:5060>"),
        "accepted with 20 s: {log}"
    );

    // Refreshed half-way through the 20 s binding, without falling out of `registered`.
    let refreshed = Instant::now() + Duration::from_secs(14);
    while Instant::now() < refreshed {
        let v = trunk_registration(&lab);
        assert_ne!(v["state"], "failed", "{v}");
        assert_ne!(v["state"], "backing_off", "{v}");
        thread::sleep(Duration::from_millis(500));
    }
    let log = read(&log_path);
    assert!(
        log.matches("REGAUTHOK").count() >= 3,
        "the 423 retry, the registration and at least one refresh were accepted: {log}"
    );
    assert_eq!(trunk_registration(&lab)["state"], "registered");

    // Stopping the SBC removes the binding.
    let mut sbc = lab.sbc.take().expect("sbc running");
    sbc.signal(Signal::SIGTERM);
    assert!(
        sbc.wait_timeout(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "sbc stops"
    );
    thread::sleep(Duration::from_millis(300));
    let log = read(&log_path);
    assert!(
        log.contains("expires=0 "),
        "de-registered on shutdown: {log}"
    );

    kamailio.signal(Signal::SIGTERM);
    let _ = kamailio.wait_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
