//! SIP conformance end to end (issue 14): the real `sbc` between SIPp as the PBX and SIPp as
//! the carrier, in namespaces. Extension negotiation (420 with Unsupported), session timers
//! (a call refreshed by the SBC on both legs, a call whose refresher goes silent ended with BYE
//! on both legs), 3xx recursion to a second carrier address, and a forked call (two early
//! dialogs, the first 2xx wins, a late 2xx from the other dialog ACKed and BYEd). A flow passes
//! only if every SIPp instance sees exactly what its scenario expects.

mod media_common;

use std::{thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::sipp::{self, Step};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
/// A second carrier address (a redirect target).
const CARRIER2: &str = "198.18.2.2:5062";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"x\">\n";
const TAIL: &str = "<ResponseTimeRepartition value=\"10, 20, 50, 100, 500\"/>\n</scenario>\n";
const SDP: &str = "v=0\no=sipp 1 1 IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";

/// The UAC's INVITE with an offer and `extra` header lines.
fn invite(extra: &str) -> String {
    format!(
        "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n{extra}Content-Type: application/sdp\nContent-Length: [len]\n\n{SDP}]]></send>\n"
    )
}

/// A response to the last request: To tag `tag` added when given, `extra` header lines, SDP
/// when `sdp`.
fn respond(code: u16, reason: &str, tag: Option<&str>, extra: &str, sdp: bool) -> String {
    let to = tag.map_or_else(
        || "[last_To:]".to_owned(),
        |t| format!("[last_To:];tag={t}"),
    );
    let (ct, body) = if sdp {
        ("Content-Type: application/sdp\n", SDP)
    } else {
        ("", "")
    };
    format!(
        "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:sipp@[local_ip]:[local_port]>\n{extra}{ct}Content-Length: [len]\n\n{body}]]></send>\n"
    )
}

/// Expects a response (or request, with `request`), checking each `(header, regex)`.
fn recv_checked(kind: &str, what: &str, checks: &[(&str, &str)]) -> String {
    // rrs: a 2xx's Contact and Record-Route make SIPp's [next_url] and [routes].
    let rrs = if kind == "response" && what.starts_with('2') {
        " rrs=\"true\""
    } else {
        ""
    };
    if checks.is_empty() {
        return format!("<recv {kind}=\"{what}\"{rrs}/>\n");
    }
    let mut x = format!("<recv {kind}=\"{what}\"{rrs}><action>");
    let mut vars = Vec::new();
    for (i, (h, re)) in checks.iter().enumerate() {
        x.push_str(&format!(
            "<ereg regexp=\"{re}\" search_in=\"hdr\" header=\"{h}\" check_it=\"true\" assign_to=\"v{i}\"/>"
        ));
        vars.push(format!("[$v{i}]"));
    }
    x.push_str(&format!(
        "<log message=\"{}\"/></action></recv>\n",
        vars.join(" ")
    ));
    x
}

/// The start lines and To headers of the SIP messages in a capture (for failure reports).
fn start_lines(pcap: &[u8]) -> String {
    let text = String::from_utf8_lossy(pcap);
    text.split(['\r', '\n'])
        .filter(|l| l.contains(" SIP/2.0") || l.starts_with("SIP/2.0 ") || l.starts_with("To:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn scenario(parts: &[String]) -> String {
    format!("{HEAD}{}{TAIL}", parts.concat())
}

fn recv(code: u16, optional: bool) -> String {
    format!("<recv response=\"{code}\" optional=\"{optional}\" rrs=\"true\"/>\n")
}

/// The UAC's end: ACK the 2xx, wait, BYE and its 200.
fn ack_bye(pause_ms: u32) -> Vec<String> {
    let ack = sipp::scenario(
        "a",
        true,
        &[
            Step::Ack2xx {
                sdp: false,
                cseq: 1,
            },
            Step::Pause { ms: pause_ms },
            Step::InDialog {
                method: "BYE",
                cseq: 2,
                sdp: None,
                uac: true,
            },
            Step::Recv {
                code: 200,
                optional: false,
            },
        ],
    );
    vec![inner(&ack)]
}

/// The steps of a scenario built by `sipp::scenario`, without its head and tail.
fn inner(x: &str) -> String {
    x.lines()
        .filter(|l| {
            !l.starts_with("<?xml")
                && !l.starts_with("<scenario")
                && !l.starts_with("</scenario")
                && !l.starts_with("<ResponseTime")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `callees` (namespace, address, scenario, extra SIPp args) and then the caller; returns
/// the failures.
fn run_flow(
    name: &str,
    caller: (&str, &str, &str, String),
    callees: &[(&str, &str, String)],
    extra: &[&str],
) -> Vec<String> {
    let files: Vec<_> = callees
        .iter()
        .map(|(_, _, x)| sipp::write_scenario("callee", x))
        .collect();
    let mut running: Vec<_> = callees
        .iter()
        .zip(&files)
        .map(|((ns, addr, _), f)| sipp::run(ns, f.path(), addr, None, extra))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (ns, addr, dest, x) = caller;
    let file = sipp::write_scenario("caller", &x);
    let mut uac = sipp::run(ns, file.path(), addr, Some(dest), extra);
    let mut failures = Vec::new();
    let a = uac.wait_timeout(Duration::from_secs(100));
    if !a.is_some_and(|s| s.success()) {
        failures.push(format!("{name}: caller {a:?}"));
    }
    for (i, c) in running.iter_mut().enumerate() {
        let b = c.wait_timeout(Duration::from_secs(10));
        if !b.is_some_and(|s| s.success()) {
            failures.push(format!("{name}: callee {i} {b:?}"));
        }
    }
    failures
}

#[test]
fn extensions_redirects_and_forking() {
    if !sbc_e2e::require_root("conformance") {
        return;
    }
    let lab = MediaLab::start("scx", "xdp = \"off\"");
    let (pbx, car) = (lab.lab.pbx.as_str(), lab.lab.carrier.as_str());
    let capture = sbc_e2e::capture::Capture::start(car, "car0").expect("capture");
    let mut failures = Vec::new();

    // 420: OPTIONS from the carrier and INVITE from the PBX requiring what the SBC lacks.
    let options = scenario(&[
        "<send retrans=\"500\"><![CDATA[\nOPTIONS sip:[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: <sip:ping@[local_ip]:[local_port]>;tag=[pid]o[call_number]\nTo: <sip:[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nRequire: x-nonsense\nContent-Length: 0\n\n]]></send>\n".to_owned(),
        recv_checked("response", "420", &[("Unsupported:", "x-nonsense")]),
    ]);
    failures.extend(run_flow(
        "420 OPTIONS",
        (car, CARRIER, SBC_OUTSIDE, options),
        &[],
        &[],
    ));
    let inv420 = scenario(&[
        invite("Require: x-nonsense, 100rel\n"),
        recv(100, true),
        recv_checked("response", "420", &[("Unsupported:", "^ *x-nonsense *$")]),
        inner(&sipp::scenario("a", true, &[Step::AckNon2xx])),
    ]);
    failures.extend(run_flow(
        "420 INVITE",
        (pbx, PBX, SBC_INSIDE, inv420),
        &[],
        &[],
    ));

    // 302 recursion: the first carrier address redirects to the second, which answers.
    let basic_caller = scenario(
        &[
            vec![
                invite(""),
                recv(100, true),
                recv(180, true),
                recv(200, false),
            ],
            ack_bye(200),
        ]
        .concat(),
    );
    let redirecting = scenario(&[
        "<recv request=\"INVITE\"/>\n".to_owned(),
        format!(
            "<send><![CDATA[\nSIP/2.0 302 Moved Temporarily\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]r[call_number]\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:15551234567@{CARRIER2}>\nContent-Length: 0\n\n]]></send>\n"
        ),
        "<recv request=\"ACK\"/>\n".to_owned(),
    ]);
    let answering = sipp::scenario("callee", false, &sipp::answering_callee());
    failures.extend(run_flow(
        "302 recursion",
        (pbx, PBX, SBC_INSIDE, basic_caller.clone()),
        &[(car, CARRIER, redirecting), (car, CARRIER2, answering)],
        &[],
    ));

    // Forking: 180 from dialog A, 183 with SDP from dialog B, 200 from B, then a late 200
    // from A, which the SBC ACKs and BYEs; the PBX's BYE then ends dialog B. The late 200 is
    // built from the INVITE's Via, To and CSeq (SIPp's [last_*] are the ACK's by then).
    let late_200 = format!(
        "<send><![CDATA[\nSIP/2.0 200 OK\nVia: [$inv_via]\n[last_From:]\nTo: [$inv_to];tag=forkA[call_number]\n[last_Call-ID:]\nCSeq: [$inv_cseq]\nContact: <sip:sipp@[local_ip]:[local_port]>\nContent-Type: application/sdp\nContent-Length: [len]\n\n{SDP}]]></send>\n"
    );
    let forking = scenario(&[
        "<recv request=\"INVITE\" rrs=\"true\"><action><ereg regexp=\".*\" search_in=\"hdr\" header=\"Via:\" check_it=\"true\" assign_to=\"inv_via\"/><ereg regexp=\".*\" search_in=\"hdr\" header=\"To:\" check_it=\"true\" assign_to=\"inv_to\"/><ereg regexp=\".*\" search_in=\"hdr\" header=\"CSeq:\" check_it=\"true\" assign_to=\"inv_cseq\"/></action></recv>\n".to_owned(),
        respond(180, "Ringing", Some("forkA[call_number]"), "", false),
        respond(
            183,
            "Session Progress",
            Some("forkB[call_number]"),
            "",
            true,
        ),
        "<pause milliseconds=\"200\"/>\n".to_owned(),
        respond(200, "OK", Some("forkB[call_number]"), "", true),
        recv_checked("request", "ACK", &[("To:", "tag=forkB")]),
        late_200,
        recv_checked("request", "ACK", &[("To:", "tag=forkA")]),
        recv_checked("request", "BYE", &[("To:", "tag=forkA")]),
        respond(200, "OK", None, "", false),
        recv_checked("request", "BYE", &[("To:", "tag=forkB")]),
        respond(200, "OK", None, "", false),
    ]);
    let fork_caller = scenario(
        &[
            vec![
                invite(""),
                recv(100, true),
                recv(180, false),
                recv(183, false),
                recv(200, false),
            ],
            ack_bye(1500),
        ]
        .concat(),
    );
    failures.extend(run_flow(
        "forked call",
        (pbx, PBX, SBC_INSIDE, fork_caller),
        &[(car, CARRIER, forking)],
        &[],
    ));
    let bytes = capture.stop();
    assert!(
        failures.is_empty(),
        "flows failed:\n{}\ncarrier link:\n{}",
        failures.join("\n"),
        start_lines(&bytes)
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_redirects_total{outcome=\"followed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sbc_calls_active{direction=\"outbound\"} 0"),
        "{metrics}"
    );
}

/// A lab whose SBC runs session timers of 90 s (the RFC 4028 minimum).
fn timer_lab(prefix: &str) -> MediaLab {
    // The admin section is the config's last: a [sip] table after it is the SBC's [sip].
    MediaLab::start_admin(
        prefix,
        "xdp = \"off\"",
        "[sip]\nsession_expires = 90\nmin_se = 90\n",
        None,
    )
}

#[test]
fn session_timer_refreshed_by_the_sbc_on_both_legs() {
    if !sbc_e2e::require_root("conformance") {
        return;
    }
    let lab = timer_lab("sst");
    let (pbx, car) = (lab.lab.pbx.as_str(), lab.lab.carrier.as_str());
    // The PBX knows nothing of session timers: the SBC refreshes its leg. The carrier's 2xx
    // makes the SBC (its UAC) the refresher there too. Both get a body-less UPDATE at 45 s.
    let update_answered = |extra: &str| {
        vec![
            recv_checked(
                "request",
                "UPDATE",
                &[("Session-Expires:", "^ *90;refresher=uac")],
            ),
            respond(200, "OK", None, extra, false),
        ]
    };
    // The 2xx's To (with the SBC's tag) is kept for the BYE: after the UPDATE, SIPp's
    // [last_To:] is the UPDATE's.
    let ok_kept = "<recv response=\"200\" rrs=\"true\"><action><ereg regexp=\"^ *90;refresher=uas\" search_in=\"hdr\" header=\"Session-Expires:\" check_it=\"true\" assign_to=\"se\"/><ereg regexp=\".*\" search_in=\"hdr\" header=\"To:\" check_it=\"true\" assign_to=\"sbc_to\"/><log message=\"[$se] [$sbc_to]\"/></action></recv>\n";
    let bye = "<send retrans=\"500\"><![CDATA[\nBYE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: [$sbc_to]\nCall-ID: [call_id]\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n";
    let caller = scenario(
        &[
            vec![
                invite(""),
                recv(100, true),
                recv(180, true),
                ok_kept.to_owned(),
                inner(&sipp::scenario(
                    "a",
                    true,
                    &[Step::Ack2xx {
                        sdp: false,
                        cseq: 1,
                    }],
                )),
            ],
            update_answered(""),
            vec![
                "<pause milliseconds=\"500\"/>\n".to_owned(),
                bye.to_owned(),
                "<recv response=\"200\"/>\n".to_owned(),
            ],
        ]
        .concat(),
    );
    let callee = scenario(
        &[
            vec![
                recv_checked(
                    "request",
                    "INVITE",
                    &[("Session-Expires:", "^ *90"), ("Supported:", "timer")],
                ),
                respond(
                    200,
                    "OK",
                    Some("[pid]c[call_number]"),
                    "Require: timer\nSession-Expires: 90;refresher=uac\n",
                    true,
                ),
                "<recv request=\"ACK\"/>\n".to_owned(),
            ],
            update_answered("Session-Expires: 90;refresher=uac\n"),
            vec![
                "<recv request=\"BYE\"/>\n".to_owned(),
                respond(200, "OK", None, "", false),
            ],
        ]
        .concat(),
    );
    let failures = run_flow(
        "session refreshed",
        (pbx, PBX, SBC_INSIDE, caller),
        &[(car, CARRIER, callee)],
        &["-timeout", "90"],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"} 1"),
        "{metrics}"
    );
}

#[test]
fn session_timer_expiry_ends_both_legs_with_bye() {
    if !sbc_e2e::require_root("conformance") {
        return;
    }
    let lab = timer_lab("ssx");
    let (pbx, car) = (lab.lab.pbx.as_str(), lab.lab.carrier.as_str());
    // Both peers are refreshers (the PBX by supporting timers, the carrier by its 2xx) and
    // neither refreshes: at 90 - 30 = 60 s the SBC ends the call with BYE on both legs.
    let bye_answered = vec![
        "<recv request=\"BYE\"/>\n".to_owned(),
        respond(200, "OK", None, "", false),
    ];
    let caller = scenario(
        &[
            vec![
                invite("Supported: timer\n"),
                recv(100, true),
                recv(180, true),
            ],
            vec![recv_checked(
                "response",
                "200",
                &[
                    ("Session-Expires:", "^ *90;refresher=uac"),
                    ("Require:", "timer"),
                ],
            )],
            vec![inner(&sipp::scenario(
                "a",
                true,
                &[Step::Ack2xx {
                    sdp: false,
                    cseq: 1,
                }],
            ))],
            bye_answered.clone(),
        ]
        .concat(),
    );
    let callee = scenario(
        &[
            vec![
                "<recv request=\"INVITE\"/>\n".to_owned(),
                respond(
                    200,
                    "OK",
                    Some("[pid]c[call_number]"),
                    "Require: timer\nSession-Expires: 90;refresher=uas\n",
                    true,
                ),
                "<recv request=\"ACK\"/>\n".to_owned(),
            ],
            bye_answered,
        ]
        .concat(),
    );
    let failures = run_flow(
        "session expired",
        (pbx, PBX, SBC_INSIDE, caller),
        &[(car, CARRIER, callee)],
        &["-timeout", "90"],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics
            .contains("sbc_calls_ended_total{direction=\"outbound\",reason=\"session_expired\"} 1"),
        "{metrics}"
    );
}

/// Every response code of the issue's list (RFC 3261 §21; 100 is hop-by-hop and answered by
/// the SBC itself, so it is not in it), plus unknown codes of each class.
const SWEEP: [u16; 50] = [
    200, 202, 300, 301, 302, 305, 380, 399, 400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413,
    414, 415, 416, 420, 421, 423, 480, 481, 482, 483, 484, 485, 486, 487, 488, 491, 493, 499, 500,
    501, 502, 503, 504, 505, 513, 599, 600, 603, 604, 606, 699,
];

/// 401/407 reach the caller with their challenge: the sweep's trunk uses digest pass-through
/// (`auth = "passthrough"`), and a challenge from the PBX is always relayed.
const CHALLENGE_PASSTHROUGH: bool = true;

/// The header a relayed `code` must carry, as (header, regex), and the line the callee adds.
fn mandatory(code: u16) -> Option<(&'static str, &'static str, &'static str)> {
    match code {
        503 => Some(("Retry-After:", "^ *30", "Retry-After: 30\n")),
        423 => Some(("Min-Expires:", "^ *3600", "Min-Expires: 3600\n")),
        420 => Some(("Unsupported:", "x-sweep", "Unsupported: x-sweep\n")),
        405 => Some(("Allow:", "INVITE", "Allow: INVITE, ACK, BYE, CANCEL\n")),
        401 => Some((
            "WWW-Authenticate:",
            "Digest realm",
            "WWW-Authenticate: Digest realm=\"sweep\", nonce=\"n1\", algorithm=MD5\n",
        )),
        407 => Some((
            "Proxy-Authenticate:",
            "Digest realm",
            "Proxy-Authenticate: Digest realm=\"sweep\", nonce=\"n1\", algorithm=MD5\n",
        )),
        _ => None,
    }
}

/// The callee answering `code` (after the provisional `early`, if any); a 2xx call is then
/// ACKed and ended by the caller.
fn sweep_callee(code: u16, early: Option<u16>) -> String {
    let tag = Some("[pid]w[call_number]");
    let extra = mandatory(code).map_or("", |(_, _, line)| line);
    let mut parts = vec!["<recv request=\"INVITE\"/>\n".to_owned()];
    if let Some(p) = early {
        parts.push(respond(p, "Early", tag, "", false));
    }
    // A 3xx without Contact: nothing to recurse to, so the SBC relays it.
    let final_tag = if early.is_some() { None } else { tag };
    let reason = format!("Sweep {code}");
    if (200..300).contains(&code) {
        parts.push(respond(code, &reason, final_tag, "", true));
        parts.push("<recv request=\"ACK\"/>\n<recv request=\"BYE\"/>\n".to_owned());
        parts.push(respond(200, "OK", None, "", false));
    } else {
        // Without Contact (respond() adds one; a 3xx here must have none to be relayed as is).
        let to = final_tag.map_or_else(
            || "[last_To:]".to_owned(),
            |t| format!("[last_To:];tag={t}"),
        );
        parts.push(format!(
            "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n[last_CSeq:]\n{extra}Content-Length: 0\n\n]]></send>\n"
        ));
        parts.push("<recv request=\"ACK\"/>\n".to_owned());
    }
    scenario(&parts)
}

/// The caller expecting `code` (after `early`), with its mandatory header.
fn sweep_caller(code: u16, early: Option<u16>) -> String {
    let mut parts = vec![invite(""), recv(100, true)];
    if let Some(p) = early {
        parts.push(recv(p, false));
    }
    let check: Vec<(&str, &str)> = mandatory(code)
        .filter(|_| CHALLENGE_PASSTHROUGH || !matches!(code, 401 | 407))
        .map(|(h, re, _)| vec![(h, re)])
        .unwrap_or_default();
    parts.push(recv_checked("response", &code.to_string(), &check));
    let end: Vec<Step> = if (200..300).contains(&code) {
        vec![
            Step::Ack2xx {
                sdp: false,
                cseq: 1,
            },
            Step::InDialog {
                method: "BYE",
                cseq: 2,
                sdp: None,
                uac: true,
            },
            Step::Recv {
                code: 200,
                optional: false,
            },
        ]
    } else {
        vec![Step::AckNon2xx]
    };
    parts.push(inner(&sipp::scenario("end", true, &end)));
    scenario(&parts)
}

#[test]
fn every_response_code_is_relayed_both_ways_with_its_mandatory_headers() {
    if !sbc_e2e::require_root("conformance") {
        return;
    }
    let lab = MediaLab::start("scw", "xdp = \"off\"");
    // The carrier's 401/407 must reach the PBX with its challenge: pass-through on the trunk.
    lab.json(
        "PUT",
        "/api/v1/trunks/carrier",
        Some(r#"{"proxy":"198.18.2.2:5060","auth":"passthrough"}"#),
        200,
    );
    let (pbx, car) = (lab.lab.pbx.as_str(), lab.lab.carrier.as_str());
    let mut cases: Vec<(u16, Option<u16>)> = SWEEP.iter().map(|c| (*c, None)).collect();
    // 180-183 before a final answer.
    cases.extend((180..=183).map(|p| (486, Some(p))));
    let mut failures = Vec::new();
    for outbound in [true, false] {
        let (caller_ns, callee_ns, caller_addr, callee_addr, dest) = if outbound {
            (pbx, car, PBX, CARRIER, SBC_INSIDE)
        } else {
            (car, pbx, CARRIER, PBX, SBC_OUTSIDE)
        };
        for (code, early) in &cases {
            let name = format!(
                "{} {code} after {early:?}",
                if outbound { "outbound" } else { "inbound" }
            );
            failures.extend(run_flow(
                &name,
                (caller_ns, caller_addr, dest, sweep_caller(*code, *early)),
                &[(callee_ns, callee_addr, sweep_callee(*code, *early))],
                &[],
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "codes failed:\n{}",
        failures.join("\n")
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    for d in ["outbound", "inbound"] {
        assert!(
            metrics.contains(&format!("sbc_calls_active{{direction=\"{d}\"}} 0")),
            "{metrics}"
        );
    }
}
