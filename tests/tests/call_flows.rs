//! Call flows end to end: SIPp as the PBX in the pbx namespace and as the carrier in the
//! carrier namespace, the real `sbc` in between. Each flow passes only if both SIPp instances
//! see exactly the messages their scenario expects. The whole carrier link is captured and
//! searched for anything of the inside: addresses, tags, branches, user agent.

mod media_common;

use std::{thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::sipp::{self, Dir, Step::*};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";

struct Flow {
    name: &'static str,
    /// true: the PBX calls (PBX is the UAC); false: the carrier calls.
    outbound: bool,
    caller: Vec<sipp::Step>,
    callee: Vec<sipp::Step>,
}

fn basic_caller() -> Vec<sipp::Step> {
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
    ]
}

fn basic_callee() -> Vec<sipp::Step> {
    sipp::answering_callee()
}

fn rejected(code: u16, reason: &'static str) -> Flow {
    Flow {
        name: reason,
        outbound: true,
        caller: vec![
            Invite { sdp: true },
            Recv {
                code: 100,
                optional: true,
            },
            Recv {
                code,
                optional: false,
            },
            AckNon2xx,
        ],
        callee: vec![
            RecvRequest { method: "INVITE" },
            Respond {
                code,
                reason,
                sdp: None,
            },
            RecvRequest { method: "ACK" },
        ],
    }
}

fn flows() -> Vec<Flow> {
    vec![
        Flow {
            name: "basic call, BYE from the PBX",
            outbound: true,
            caller: basic_caller(),
            callee: basic_callee(),
        },
        Flow {
            name: "inbound call from the carrier",
            outbound: false,
            caller: basic_caller(),
            callee: basic_callee(),
        },
        Flow {
            name: "early media 183 with SDP",
            outbound: true,
            caller: vec![
                Invite { sdp: true },
                Recv {
                    code: 100,
                    optional: true,
                },
                Recv {
                    code: 183,
                    optional: false,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
                Ack2xx {
                    sdp: false,
                    cseq: 1,
                },
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
            ],
            callee: vec![
                RecvRequest { method: "INVITE" },
                Respond {
                    code: 183,
                    reason: "Session Progress",
                    sdp: Some(Dir::SendRecv),
                },
                Pause { ms: 200 },
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
            ],
        },
        Flow {
            name: "CANCEL before answer",
            outbound: true,
            caller: vec![
                Invite { sdp: true },
                Recv {
                    code: 100,
                    optional: true,
                },
                Recv {
                    code: 180,
                    optional: false,
                },
                Cancel,
                Recv {
                    code: 200,
                    optional: false,
                },
                Recv {
                    code: 487,
                    optional: false,
                },
                AckNon2xx,
            ],
            callee: vec![
                RecvRequest { method: "INVITE" },
                Respond {
                    code: 180,
                    reason: "Ringing",
                    sdp: None,
                },
                RecvRequest { method: "CANCEL" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
                RespondToInvite {
                    code: 487,
                    reason: "Request Terminated",
                },
                RecvRequest { method: "ACK" },
            ],
        },
        Flow {
            name: "re-INVITE hold and unhold from the PBX",
            outbound: true,
            caller: vec![
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
                InDialog {
                    method: "INVITE",
                    cseq: 2,
                    sdp: Some(Dir::SendOnly),
                    uac: true,
                },
                Recv {
                    code: 100,
                    optional: true,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
                Ack2xx {
                    sdp: false,
                    cseq: 2,
                },
                InDialog {
                    method: "INVITE",
                    cseq: 3,
                    sdp: Some(Dir::SendRecv),
                    uac: true,
                },
                Recv {
                    code: 100,
                    optional: true,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
                Ack2xx {
                    sdp: false,
                    cseq: 3,
                },
                InDialog {
                    method: "BYE",
                    cseq: 4,
                    sdp: None,
                    uac: true,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
            ],
            callee: vec![
                RecvRequest { method: "INVITE" },
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
                RecvRequest { method: "INVITE" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: Some(Dir::RecvOnly),
                },
                RecvRequest { method: "ACK" },
                RecvRequest { method: "INVITE" },
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
            ],
        },
        Flow {
            name: "UPDATE from the carrier, BYE from the carrier",
            outbound: true,
            caller: vec![
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
                RecvRequest { method: "UPDATE" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: Some(Dir::SendRecv),
                },
                RecvRequest { method: "BYE" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
            ],
            callee: vec![
                RecvRequest { method: "INVITE" },
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
                Pause { ms: 200 },
                InDialog {
                    method: "UPDATE",
                    cseq: 1,
                    sdp: Some(Dir::SendRecv),
                    uac: false,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
                InDialog {
                    method: "BYE",
                    cseq: 2,
                    sdp: None,
                    uac: false,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
            ],
        },
        Flow {
            name: "reliable 180 with PRACK (RFC 3262)",
            outbound: true,
            caller: vec![
                InviteRel,
                Recv {
                    code: 100,
                    optional: true,
                },
                RecvReliable { code: 180 },
                Prack { cseq: 2 },
                Recv {
                    code: 200,
                    optional: false,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
                Ack2xx {
                    sdp: false,
                    cseq: 1,
                },
                InDialog {
                    method: "BYE",
                    cseq: 3,
                    sdp: None,
                    uac: true,
                },
                Recv {
                    code: 200,
                    optional: false,
                },
            ],
            callee: vec![
                RecvRequest { method: "INVITE" },
                RespondReliable {
                    code: 180,
                    reason: "Ringing",
                },
                RecvRequest { method: "PRACK" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
                RespondToSavedInvite {
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
            ],
        },
        rejected(486, "Busy Here"),
        rejected(503, "Service Unavailable"),
        rejected(603, "Decline"),
        rejected(404, "Not Found"),
    ]
}

#[test]
fn call_flows_through_the_sbc() {
    if !sbc_e2e::require_root("call_flows") {
        return;
    }
    let lab = MediaLab::start("scf", "xdp = \"off\"");
    let capture = sbc_e2e::capture::Capture::start(&lab.lab.carrier, "car0").expect("capture");

    let mut pbx_pids = Vec::new();
    let mut failures = Vec::new();
    // FLOW=<substring> runs only the matching flows (for debugging one flow).
    let only = std::env::var("FLOW").ok();
    for flow in flows()
        .into_iter()
        .filter(|f| only.as_deref().is_none_or(|o| f.name.contains(o)))
    {
        let (caller_ns, callee_ns, caller_addr, callee_addr, dest) = if flow.outbound {
            (&lab.lab.pbx, &lab.lab.carrier, PBX, CARRIER, SBC_INSIDE)
        } else {
            (&lab.lab.carrier, &lab.lab.pbx, CARRIER, PBX, SBC_OUTSIDE)
        };
        let callee_xml =
            sipp::write_scenario("callee", &sipp::scenario("callee", false, &flow.callee));
        let caller_xml =
            sipp::write_scenario("caller", &sipp::scenario("caller", true, &flow.caller));
        let mut callee = sipp::run(callee_ns, callee_xml.path(), callee_addr, None, &[]);
        thread::sleep(Duration::from_millis(300));
        let mut caller = sipp::run(caller_ns, caller_xml.path(), caller_addr, Some(dest), &[]);
        pbx_pids.push(if flow.outbound {
            caller.pid()
        } else {
            callee.pid()
        });
        let a = caller.wait_timeout(Duration::from_secs(70));
        let b = callee.wait_timeout(Duration::from_secs(10));
        if !a.is_some_and(|s| s.success()) || !b.is_some_and(|s| s.success()) {
            failures.push(format!("{}: caller {a:?}, callee {b:?}", flow.name));
        }
    }
    let bytes = capture.stop();
    assert!(
        failures.is_empty(),
        "flows failed:\n{}",
        failures.join("\n")
    );

    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("198.18.2.2"),
        "the capture holds the carrier's traffic"
    );
    let mut secrets = vec!["198.18.1.".to_owned()];
    for pid in pbx_pids {
        secrets.push(format!("SIPp-UA-{pid}"));
        secrets.push(format!("{pid}SIPpTag"));
        secrets.push(format!("z9hG4bK-{pid}-"));
    }
    for s in secrets {
        assert_eq!(
            text.matches(s.as_str()).count(),
            0,
            "{s:?} from the inside reached the carrier link"
        );
    }
    let calls = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        calls.contains("sbc_calls_active{direction=\"outbound\"} 0"),
        "{calls}"
    );
}
