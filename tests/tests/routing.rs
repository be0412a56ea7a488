//! Routing and manipulation end to end, with the real `sbc` between a SIPp PBX and SIPp
//! carriers in the namespace lab: outbound routes by prefix to different trunks, number
//! normalisation and header rules seen on the carrier's wire, 404 for a number no route takes,
//! an inbound DID route to a second PBX target with inbound normalisation, a bad route
//! refused by the admin API with the old routes kept, and the source denylist.

mod media_common;

use std::{thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::sipp::{self, Step, Step::*};

const PBX: &str = "198.18.1.2:5060";
/// A second PBX target on the PBX host (an inbound route's target).
const PBX_SALES: &str = "198.18.1.2:5062";
const NATIONAL: &str = "198.18.2.2:5060";
const INTL: &str = "198.18.2.3:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";

fn ok(code: u16) -> Step {
    Recv {
        code,
        optional: false,
    }
}

fn caller() -> Vec<Step> {
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
        ok(200),
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
        ok(200),
    ]
}

/// One end of a test call: the SIPp instance's namespace, address and scenario.
struct Party<'a> {
    ns: &'a str,
    at: &'a str,
    steps: &'a [Step],
}

/// One call: the callee scenario, then the caller dialling `number` toward `sbc`; both must
/// succeed.
fn call(callee: Party<'_>, caller: Party<'_>, sbc: &str, number: &str) -> Result<(), String> {
    let callee_xml = sipp::write_scenario("callee", &sipp::scenario("callee", false, callee.steps));
    let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, caller.steps));
    let mut callee = sipp::run(callee.ns, callee_xml.path(), callee.at, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let mut caller = sipp::run_service(
        caller.ns,
        caller_xml.path(),
        caller.at,
        Some(sbc),
        number,
        &[],
    );
    let a = caller.wait_timeout(Duration::from_secs(70));
    let b = callee.wait_timeout(Duration::from_secs(10));
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

fn add_address(ns: &str, ifname: &str, cidr: &str) {
    let ok = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "ip", "addr", "add", cidr, "dev", ifname,
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "add {cidr} to {ifname} in {ns}");
}

#[test]
fn routes_normalisation_header_rules_and_did_routing() {
    if !sbc_e2e::require_root("routing") {
        return;
    }
    let lab = MediaLab::start("srt", "xdp = \"off\"");
    add_address(&lab.lab.carrier, "car0", "198.18.2.3/24");
    thread::sleep(Duration::from_millis(300));

    // Two trunks, routes by prefix, rules on the national trunk (German-style numbering: the
    // PBX dials 0…, the carrier wants +49…; inbound the reverse). The intl trunk says
    // auth = "sbc": without credentials it would default to pass-through, whose Request-URI is
    // the PBX's, not the one the SBC writes for the trunk.
    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(
                r#"{"trunk":[
                {"name":"national","proxy":"198.18.2.2:5060","from_domain":"sip.carrier.example",
                 "number":[{"number":"called","prefix":"0","strip":1,"add":"+49"},
                           {"number":"calling","add":"+4930555"},
                           {"direction":"inbound","number":"called","prefix":"+49","strip":3,"add":"0"}],
                 "header":[{"action":"add","name":"X-Account","value":"acct-${calling}"},
                           {"action":"remove","name":"Supported"}]},
                {"name":"intl","proxy":"198.18.2.3:5060","auth":"sbc"}],
             "route":[{"name":"intl","prefix":"00","trunks":["intl"]},
                      {"name":"national","match":"^0[1-9]","trunks":["national"]}],
             "inbound":[{"name":"sales","prefix":"030123","target":"198.18.1.2:5062"}]}"#,
            ),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(r#""restart_required":[]"#),
        "routes apply live: {}",
        r.body
    );
    let routes = lab.json("GET", "/api/v1/routes", None, 200);
    assert_eq!(routes["outbound"][0]["name"], "intl");
    assert_eq!(routes["outbound_default"]["reject"], 404);
    assert_eq!(routes["inbound"][0]["target"], "198.18.1.2:5062");

    // National: the carrier at .2 sees the normalised numbers, its from_domain, the added
    // header, and not the removed one (the PBX's INVITE has none, SIPp's answer path checks
    // the rest).
    call(
        Party {
            ns: &lab.lab.carrier,
            at: NATIONAL,
            steps: &sipp::answering_callee_checking(&[
                ("", r"^INVITE sip:\+49301234567@198\.18\.2\.2:5060 SIP/2\.0"),
                ("To:", r"<sip:\+49301234567@198\.18\.2\.2:5060>"),
                ("From:", r"<sip:\+4930555sipp@sip\.carrier\.example>"),
                ("X-Account:", r"^ *acct-\+4930555sipp$"),
            ]),
        },
        Party {
            ns: &lab.lab.pbx,
            at: PBX,
            steps: &caller(),
        },
        SBC_INSIDE,
        "0301234567",
    )
    .expect("national call via the national trunk with its rules");

    // International: the other trunk, numbers as dialled, no X-Account.
    call(
        Party {
            ns: &lab.lab.carrier,
            at: INTL,
            steps: &sipp::answering_callee_checking(&[
                ("", r"^INVITE sip:0044207946@198\.18\.2\.3:5060 SIP/2\.0"),
                ("From:", r"<sip:sipp@198\.18\.2\.1>"),
            ]),
        },
        Party {
            ns: &lab.lab.pbx,
            at: PBX,
            steps: &caller(),
        },
        SBC_INSIDE,
        "0044207946",
    )
    .expect("international call via the intl trunk");
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_total{direction=\"outbound\",result=\"answered\",trunk=\"national\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_total{direction=\"outbound\",result=\"answered\",trunk=\"intl\"}"
        ),
        Some(1.0)
    );

    // A number no route takes: 404 from the SBC, nothing to any carrier.
    let refused = [
        Invite { sdp: true },
        Recv {
            code: 100,
            optional: true,
        },
        ok(404),
        AckNon2xx,
    ];
    let xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, &refused));
    let mut pbx = sipp::run_service(
        &lab.lab.pbx,
        xml.path(),
        PBX,
        Some(SBC_INSIDE),
        "12345",
        &[],
    );
    assert!(
        pbx.wait_timeout(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "404 for an unrouted number"
    );
    assert_eq!(metric(&lab, "sbc_calls_no_route_total"), Some(1.0));

    // Inbound: +4930123999 from the national trunk becomes 030123999, which the sales route
    // sends to the second PBX target.
    call(
        Party {
            ns: &lab.lab.pbx,
            at: PBX_SALES,
            steps: &sipp::answering_callee_checking(&[
                ("", r"^INVITE sip:030123999@198\.18\.1\.2:5062 SIP/2\.0"),
                ("To:", r"<sip:030123999@198\.18\.1\.2:5062>"),
            ]),
        },
        Party {
            ns: &lab.lab.carrier,
            at: NATIONAL,
            steps: &caller(),
        },
        SBC_OUTSIDE,
        "+4930123999",
    )
    .expect("inbound DID routed to the sales target");
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_total{direction=\"inbound\",result=\"answered\",trunk=\"national\"}"
        ),
        Some(1.0)
    );

    // A route naming an unknown trunk is refused with its key path; the old routes stay.
    let r = lab
        .request(
            "PUT",
            "/api/v1/routes",
            Some(r#"{"outbound":[{"name":"x","prefix":"1","trunks":["nope"]}]}"#),
        )
        .expect("admin API");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("route[0].trunks"), "{}", r.body);
    let routes = lab.json("GET", "/api/v1/routes", None, 200);
    assert_eq!(routes["outbound"][0]["name"], "intl", "old routes kept");
    // A valid replacement goes in.
    let r = lab
        .request(
            "PUT",
            "/api/v1/routes",
            Some(r#"{"outbound":[{"name":"all","trunks":["intl","national"],"weights":[1,1]}]}"#),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    let routes = lab.json("GET", "/api/v1/routes", None, 200);
    assert_eq!(routes["outbound"][0]["name"], "all");
    assert_eq!(
        routes["inbound"][0]["name"], "sales",
        "inbound left as it was"
    );

    denylist(&lab);
}

/// An OPTIONS from the PBX host; whether the SBC answered it within a second.
fn options_answered(sock: &std::net::UdpSocket, n: u32) -> bool {
    let msg = format!(
        "OPTIONS sip:sbc@198.18.1.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2:5063;branch=z9hG4bKdeny{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@198.18.1.2>;tag=d{n}\r\nTo: <sip:sbc@198.18.1.1>\r\n\
         Call-ID: deny-{n}@198.18.1.2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), SBC_INSIDE)
        .expect("send OPTIONS");
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        if let Ok((len, _)) = sock.recv_from(&mut buf)
            && String::from_utf8_lossy(&buf[..len]).contains(&format!("deny-{n}@"))
        {
            return true;
        }
    }
    false
}

/// The denylist drops even a configured peer's messages without an answer, and is lifted
/// through the API; a malformed entry is refused.
fn denylist(lab: &MediaLab) {
    let sock = lab.socket(true, "198.18.1.2:5063");
    assert!(options_answered(&sock, 1), "answered before the denylist");
    let r = lab
        .request("PUT", "/api/v1/acls", Some(r#"{"deny":["198.18.1.2/32"]}"#))
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        lab.json("GET", "/api/v1/acls", None, 200)["deny"][0],
        "198.18.1.2/32"
    );
    assert!(!options_answered(&sock, 2), "denied: no answer at all");
    assert!(
        metric(
            lab,
            "sbc_sip_dropped_total{reason=\"denied\",side=\"inside\",transport=\"udp\"}"
        )
        .is_some_and(|v| v >= 1.0)
    );
    let r = lab
        .request("PUT", "/api/v1/acls", Some(r#"{"deny":["not-a-network"]}"#))
        .expect("admin API");
    assert_eq!(r.status, 422, "{}", r.body);
    let r = lab
        .request("PUT", "/api/v1/acls", Some(r#"{"deny":[]}"#))
        .expect("admin API");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(options_answered(&sock, 3), "answered again once lifted");
}
