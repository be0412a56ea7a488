//! A trunk whose proxy is a DNS name, end to end: the real `sbc` in the lab asks a tiny
//! authoritative server of the test's own (in the sbc namespace, on its loopback: no real DNS
//! server is ever asked) for `_sip._udp.carrier.lab.test`, and a call from the SIPp PBX reaches
//! the SIPp carrier at the SRV target's address and port. The name is configured live through
//! the admin API, so the reconfiguration path is covered too.

mod media_common;

use std::{net::UdpSocket, thread, time::Duration};

use media_common::MediaLab;
use sbc::dns::testing::FakeDns;
use sbc_e2e::{
    netns,
    sipp::{self, Step::*},
};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn ok(code: u16) -> sipp::Step {
    Recv {
        code,
        optional: false,
    }
}

#[test]
fn call_reaches_a_trunk_given_by_srv_name() {
    if !sbc_e2e::require_root("trunk_dns") {
        return;
    }
    let lab = MediaLab::start("dns", "xdp = \"off\"");

    // The DNS server listens inside the sbc namespace (bound there, served from a thread).
    let socket = {
        let _in = netns::enter(&lab.lab.sbc).expect("enter sbc netns");
        UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket")
    };
    let dns = FakeDns::serve(socket).expect("fake DNS");
    // Priority 10 is the carrier; priority 20 is a backup nobody answers on (never used
    // while the first resolves, but its address must still be let through the ACL).
    dns.set_srv(
        "_sip._udp.carrier.lab.test",
        &[
            (20, 1, 5070, "backup.lab.test"),
            (10, 1, 5060, "car.lab.test"),
        ],
        60,
    )
    .expect("zone");
    dns.set_addrs(
        "car.lab.test",
        &["198.18.2.2".parse().expect("literal")],
        60,
    )
    .expect("zone");
    dns.set_addrs(
        "backup.lab.test",
        &["198.18.2.3".parse().expect("literal")],
        60,
    )
    .expect("zone");

    let body = format!(
        r#"{{"dns":{{"servers":["{}"],"refresh_s":1,"timeout_ms":500}},
            "trunk":[{{"name":"carrier","proxy":"carrier.lab.test"}}]}}"#,
        dns.addr()
    );
    let r = lab
        .request("PATCH", "/api/v1/config", Some(&body))
        .expect("admin API");
    assert_eq!(r.status, 200, "PATCH: {}", r.body);
    // Names and [dns] apply live: the resolver task follows the configuration.
    assert!(r.body.contains("\"restart_required\":[]"), "{}", r.body);

    // Bounded: 50 × 100 ms.
    let ok_series = "sbc_dns_lookups_total{result=\"ok\",trunk=\"carrier\"}";
    let resolved = (0..50).any(|_| {
        thread::sleep(Duration::from_millis(100));
        metric(&lab, ok_series).is_some_and(|v| v >= 1.0)
    });
    assert!(
        resolved,
        "the trunk name never resolved; queries: {:?}",
        dns.queries()
    );
    assert!(
        dns.queries()
            .iter()
            .any(|(n, _)| n == "_sip._udp.carrier.lab.test"),
        "{:?}",
        dns.queries()
    );
    let acls = lab.request("GET", "/api/v1/acls", None).expect("acls").body;
    assert!(acls.contains("carrier.lab.test"), "{acls}");

    let caller = vec![
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
        Pause { ms: 200 },
        InDialog {
            method: "BYE",
            cseq: 2,
            sdp: None,
            uac: true,
        },
        ok(200),
    ];
    let callee = sipp::answering_callee();
    let callee_xml = sipp::write_scenario("callee", &sipp::scenario("callee", false, &callee));
    let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, &caller));
    let mut callee_p = sipp::run(&lab.lab.carrier, callee_xml.path(), CARRIER, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let mut caller_p = sipp::run(&lab.lab.pbx, caller_xml.path(), PBX, Some(SBC_INSIDE), &[]);
    let a = caller_p.wait_timeout(Duration::from_secs(40));
    let b = callee_p.wait_timeout(Duration::from_secs(10));
    assert!(
        a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()),
        "call through the SRV-resolved trunk failed: caller {a:?}, callee {b:?}"
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_total{direction=\"outbound\",result=\"answered\",trunk=\"carrier\"}"
        ),
        Some(1.0)
    );
}
