//! Digest pass-through end to end (`auth = "passthrough"`): the PBX authenticates to a carrier
//! that challenges (407 and 401), and the carrier to a PBX that challenges, through the real
//! `sbc` in the namespace lab. The challenged side's SIPp answers the challenge it received
//! with SIPp's own digest (`[authentication]`), and the challenger's SIPp recomputes it
//! (`verifyauth`, for 401; SIPp cannot verify a Proxy-Authorization, so for 407 it checks the
//! credentials arrived): a challenge altered on the way, a retry not continuing the challenged
//! dialog, or credentials not relayed intact fail the call.

mod media_common;

use std::{thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::sipp::{self, Dir, Step::*};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";

fn ok(code: u16) -> sipp::Step {
    Recv {
        code,
        optional: false,
    }
}

fn maybe(code: u16) -> sipp::Step {
    Recv {
        code,
        optional: true,
    }
}

/// The challenged caller: INVITE, the challenge `code`, ACK, the authenticated INVITE (CSeq
/// 2), then an answered call ended with BYE.
fn challenged_caller(code: u16, user: &'static str, password: &'static str) -> Vec<sipp::Step> {
    vec![
        Invite { sdp: true },
        maybe(100),
        RecvChallenge { code },
        AckNon2xx,
        InviteAuthenticated { user, password },
        maybe(100),
        maybe(180),
        ok(200),
        Ack2xx {
            sdp: false,
            cseq: 2,
        },
        Pause { ms: 200 },
        InDialog {
            method: "BYE",
            cseq: 3,
            sdp: None,
            uac: true,
        },
        ok(200),
    ]
}

/// The challenging callee: challenges the INVITE with `code`, verifies the retry's digest.
fn challenging_callee(code: u16, user: &'static str, password: &'static str) -> Vec<sipp::Step> {
    vec![
        RecvRequest { method: "INVITE" },
        Challenge { code },
        RecvRequest { method: "ACK" },
        // SIPp verifies only `Authorization` (401); for 407 it checks the
        // Proxy-Authorization is there for `user` (the digest itself is checked by the
        // simulated-time tests: relayed byte for byte).
        if code == 401 {
            RecvVerified {
                method: "INVITE",
                user,
                password,
            }
        } else {
            RecvAuthorized {
                method: "INVITE",
                header: "Proxy-Authorization",
                user,
            }
        },
        Respond {
            code: 180,
            reason: "Ringing",
            sdp: None,
        },
        Respond {
            code: 200,
            reason: "OK",
            sdp: Some(Dir::SendRecv),
        },
        RecvRequest { method: "ACK" },
        RecvRequest { method: "BYE" },
        Respond {
            code: 200,
            reason: "OK",
            sdp: None,
        },
    ]
}

/// One call: `callee` starts in `callee_ns`, then `caller` in `caller_ns` toward the SBC.
fn run_call(
    lab: &MediaLab,
    (caller_ns, caller_addr, sbc): (&str, &str, &str),
    (callee_ns, callee_addr): (&str, &str),
    caller: &[sipp::Step],
    callee: &[sipp::Step],
) -> Result<(), String> {
    let callee_xml = sipp::write_scenario("callee", &sipp::scenario("callee", false, callee));
    let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, caller));
    let mut callee = sipp::run(callee_ns, callee_xml.path(), callee_addr, None, &[]);
    thread::sleep(Duration::from_millis(300));
    // SIPp signs `sip:<remote ip:port>` unless told the Request-URI it sends: the challenger
    // verifies against the Request-URI it receives (which the SBC passes through unchanged).
    let auth_uri = format!("15551234567@{sbc}");
    let mut caller = sipp::run(
        caller_ns,
        caller_xml.path(),
        caller_addr,
        Some(sbc),
        &["-auth_uri", &auth_uri],
    );
    let a = caller.wait_timeout(Duration::from_secs(70));
    let b = callee.wait_timeout(Duration::from_secs(10));
    let _ = lab;
    if a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()) {
        Ok(())
    } else {
        Err(format!("caller {a:?}, callee {b:?}"))
    }
}

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn digest_passes_through_both_ways_and_the_challenger_verifies_it() {
    if !sbc_e2e::require_root("auth_passthrough") {
        return;
    }
    let lab = MediaLab::start("sap", "xdp = \"off\"");
    // No `auth` and no credentials: pass-through is the trunk's default.
    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060"}]}"#),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "PATCH: {}", r.body);
    let (pbx_ns, car_ns) = (lab.lab.pbx.clone(), lab.lab.carrier.clone());

    // Outbound: the carrier challenges the PBX, with 407 and with 401.
    for code in [407, 401] {
        run_call(
            &lab,
            (&pbx_ns, PBX, SBC_INSIDE),
            (&car_ns, CARRIER),
            &challenged_caller(code, "pbx-account", "pbx-secret"),
            &challenging_callee(code, "pbx-account", "pbx-secret"),
        )
        .unwrap_or_else(|e| panic!("outbound call challenged with {code}: {e}"));
    }
    // Inbound: the PBX challenges the carrier, with 401 and with 407.
    for code in [401, 407] {
        run_call(
            &lab,
            (&car_ns, CARRIER, SBC_OUTSIDE),
            (&pbx_ns, PBX),
            &challenged_caller(code, "carrier-account", "carrier-secret"),
            &challenging_callee(code, "carrier-account", "carrier-secret"),
        )
        .unwrap_or_else(|e| panic!("inbound call challenged with {code}: {e}"));
    }
    assert_eq!(
        metric(&lab, "sbc_trunk_auth_total{result=\"relayed\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric(&lab, "sbc_trunk_auth_total{result=\"relayed_retry\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric(&lab, "sbc_trunk_auth_total{result=\"retry\"}"),
        Some(0.0),
        "the SBC answered nothing itself"
    );
}
