//! Graceful drain of the real `sbc` in the lab: SIPp as PBX and carrier with calls up; on
//! SIGTERM (or `POST /api/v1/drain`) a new call gets 503 + Retry-After and an OPTIONS ping 503,
//! the calls in progress go on; at the drain timeout (or on a second signal) both legs of
//! every call left get a BYE, which the SIPp scenarios expect; the process exits 0. A restart
//! with a short drain loses nothing: calls that end by themselves during the drain end
//! normally and the restarted SBC takes new calls.

mod media_common;

use std::{
    net::UdpSocket,
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use nix::sys::signal::Signal;
use sbc_e2e::sipp::{self, wait_ok};

/// An admin token, so `POST /api/v1/drain` is checked against the write role.
const TOKEN: &str = "drain-admin-token-0123456789";

/// The caller of an answered call that the SBC ends: INVITE, 200, ACK, then it expects the
/// SBC's BYE and answers it. `hangs_up_after_ms`: the caller hangs up by itself instead.
fn caller(hangs_up_after_ms: Option<u32>) -> String {
    let mut steps = sipp::answered_caller();
    steps.extend(sipp::ending(true, hangs_up_after_ms));
    sipp::scenario("drain-caller", true, &steps)
}

/// The callee: answers, then expects a BYE (from the SBC, or relayed) and answers it.
fn callee() -> String {
    sipp::scenario("drain-callee", false, &sipp::answering_callee())
}

fn start(prefix: &str, general: &str) -> MediaLab {
    MediaLab::start_general(
        prefix,
        general,
        "xdp = \"off\"",
        &format!("token = \"{TOKEN}\""),
        Some(TOKEN),
        false,
        false,
    )
}

/// Calls up: one PBX → carrier, one carrier → PBX. Returns the four SIPp processes.
struct Calls {
    procs: Vec<(sbc_e2e::process::Owned, &'static str)>,
    _files: Vec<sipp::TempFile>,
}

fn two_calls(lab: &MediaLab, caller_xml: &str) -> Calls {
    let (uac, uas) = (
        sipp::write_scenario(&format!("{}-uac", lab.instance), caller_xml),
        sipp::write_scenario(&format!("{}-uas", lab.instance), &callee()),
    );
    let l = &lab.lab;
    let carrier_uas = sipp::run(&l.carrier, uas.path(), "198.18.2.2:5060", None, &[]);
    let pbx_uas = sipp::run(&l.pbx, uas.path(), "198.18.1.2:5060", None, &[]);
    thread::sleep(Duration::from_millis(300));
    let pbx_uac = sipp::run(
        &l.pbx,
        uac.path(),
        "198.18.1.2:5062",
        Some("198.18.1.1:5060"),
        &[],
    );
    let carrier_uac = sipp::run(
        &l.carrier,
        uac.path(),
        "198.18.2.2:5062",
        Some("198.18.2.1:5060"),
        &[],
    );
    wait_for(
        || lab.json("GET", "/api/v1/calls", None, 200)["total"] == 2,
        "two calls up",
    );
    Calls {
        procs: vec![
            (pbx_uac, "PBX caller"),
            (carrier_uas, "carrier callee"),
            (carrier_uac, "carrier caller"),
            (pbx_uas, "PBX callee"),
        ],
        _files: vec![uac, uas],
    }
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if ok() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 15 s");
}

/// Sends `request` (LF line ends) from the PBX namespace and returns the final answer.
fn ask(lab: &MediaLab, local: &str, request: &str) -> String {
    let s: UdpSocket = lab.socket(true, local);
    let req = request.replace('\n', "\r\n");
    s.send_to(req.as_bytes(), "198.18.1.1:5060").expect("send");
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = s.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }
    panic!("no final answer to:\n{request}");
}

fn new_invite(local: &str) -> String {
    let sdp = "v=0\r\no=x 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\n\
               m=audio 41000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:15551234567@198.18.1.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKdrainnew1\n\
         Max-Forwards: 70\n\
         From: <sip:200@198.18.1.2>;tag=dn1\n\
         To: <sip:15551234567@198.18.1.1>\n\
         Call-ID: drain-new-1@198.18.1.2\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:200@{local}>\n\
         Content-Type: application/sdp\n\
         Content-Length: {}\n\n{sdp}",
        sdp.len()
    )
}

fn options(local: &str) -> String {
    format!(
        "OPTIONS sip:198.18.1.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKdrainopt1\n\
         Max-Forwards: 70\n\
         From: <sip:ping@198.18.1.2>;tag=do1\n\
         To: <sip:198.18.1.1>\n\
         Call-ID: drain-opt-1@198.18.1.2\n\
         CSeq: 1 OPTIONS\n\
         Content-Length: 0\n\n"
    )
}

fn metric(lab: &MediaLab, name: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn exits_0_within(lab: &mut MediaLab, within: Duration) -> Duration {
    let mut sbc = lab.sbc.take().expect("sbc running");
    let start = Instant::now();
    let status = sbc
        .wait_timeout(within)
        .unwrap_or_else(|| panic!("sbc still running after {within:?}"));
    assert!(status.success(), "sbc exit status {status}");
    start.elapsed()
}

#[test]
fn sigterm_refuses_new_calls_then_byes_both_legs_at_the_timeout_and_exits_0() {
    if !sbc_e2e::require_root("drain") {
        return;
    }
    let mut lab = start(
        "sdt",
        "drain_timeout_s = 4\ndrain_retry_after_s = 17\ndrain_bye_wait_ms = 2000",
    );
    let calls = two_calls(&lab, &caller(None));
    assert_eq!(metric(&lab, "sbc_draining"), Some(0.0));

    let t0 = Instant::now();
    lab.sbc.as_ref().expect("sbc").signal(Signal::SIGTERM);
    wait_for(
        || lab.json("GET", "/api/v1/status", None, 200)["state"] == "draining",
        "status draining",
    );
    assert_eq!(metric(&lab, "sbc_draining"), Some(1.0));
    let ready = lab.request("GET", "/readyz", None).expect("readyz");
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));

    // A new call: 503 with the drain's Retry-After; an OPTIONS ping: 503 too.
    let answer = ask(&lab, "198.18.1.2:5070", &new_invite("198.18.1.2:5070"));
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 17\r\n"), "{answer}");
    let answer = ask(&lab, "198.18.1.2:5072", &options("198.18.1.2:5072"));
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 17\r\n"), "{answer}");
    // The calls in progress go on until the timeout.
    let status = lab.json("GET", "/api/v1/status", None, 200);
    assert_eq!(status["calls"], 2, "{status}");

    // At the timeout every leg gets a BYE: each SIPp scenario expects one and answers it.
    for (p, what) in calls.procs {
        wait_ok(p, what);
    }
    let byes_after = t0.elapsed();
    assert!(
        byes_after >= Duration::from_secs(4),
        "no BYE before the drain timeout ({byes_after:?})"
    );
    let total = exits_0_within(&mut lab, Duration::from_secs(10)) + byes_after;
    assert!(
        total < Duration::from_secs(12),
        "exit {total:?} after SIGTERM"
    );
}

#[test]
fn api_drain_waits_and_a_second_signal_ends_the_calls_at_once() {
    if !sbc_e2e::require_root("drain") {
        return;
    }
    let mut lab = start("sda", "drain_timeout_s = 120\ndrain_bye_wait_ms = 2000");
    let calls = two_calls(&lab, &caller(None));
    // Draining is a write: the read role may not.
    let r = lab
        .request_as("POST", "/api/v1/drain", None, None)
        .expect("drain");
    assert_eq!(r.status, 401, "{}", r.body);
    let v = lab.json("POST", "/api/v1/drain", None, 202);
    assert_eq!(
        (v["started"].as_bool(), v["state"].as_str()),
        (Some(true), Some("draining")),
        "{v}"
    );
    let v = lab.json("POST", "/api/v1/drain", None, 202);
    assert_eq!(v["started"], false, "one drain at a time: {v}");

    // A SIGTERM during an API drain keeps draining (as systemd's stop would)...
    let sbc = lab.sbc.as_ref().expect("sbc");
    sbc.signal(Signal::SIGTERM);
    thread::sleep(Duration::from_secs(1));
    let status = lab.json("GET", "/api/v1/status", None, 200);
    assert_eq!(
        (status["state"].as_str(), status["calls"].as_u64()),
        (Some("draining"), Some(2)),
        "{status}"
    );
    // ... and the next signal ends the calls now, long before the 120 s timeout.
    let t0 = Instant::now();
    lab.sbc.as_ref().expect("sbc").signal(Signal::SIGINT);
    for (p, what) in calls.procs {
        wait_ok(p, what);
    }
    exits_0_within(&mut lab, Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[test]
fn restart_with_a_short_drain_loses_no_call() {
    if !sbc_e2e::require_root("drain") {
        return;
    }
    let mut lab = start("sdr", "drain_timeout_s = 10");
    // The callers hang up by themselves 2 s after the answer.
    let calls = two_calls(&lab, &caller(Some(2000)));
    let t0 = Instant::now();
    lab.sbc.as_ref().expect("sbc").signal(Signal::SIGTERM);
    // Their BYEs are relayed and answered normally; the drain is over with the last call.
    for (p, what) in calls.procs {
        wait_ok(p, what);
    }
    exits_0_within(&mut lab, Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the drain ends with the last call, not at its 10 s timeout ({:?})",
        t0.elapsed()
    );
    // The restarted SBC takes calls again.
    lab.start_sbc();
    let again = two_calls(&lab, &caller(Some(500)));
    for (p, what) in again.procs {
        wait_ok(p, what);
    }
}
