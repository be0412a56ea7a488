//! Trunk features end to end, with the real `sbc` between a PBX and a SIPp carrier in the
//! namespace lab: digest authentication on the PBX's behalf (a 407 to the INVITE and a 401 to
//! the BYE answered with credentials, the PBX seeing neither), and call admission control (a
//! burst above the trunk's CPS limit and a call above the global concurrency limit get 503 with
//! Retry-After, counted in the metrics).

mod media_common;

use std::{
    net::UdpSocket,
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{
    netns,
    sipp::{self, Dir, Step::*},
};

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
/// The raw-socket PBX of the admission tests (not 5060: SIPp may still hold it).
const RAW_PBX: &str = "198.18.1.2:5062";

/// Runs one call: the carrier scenario, then the PBX scenario; both must succeed.
fn run_call(lab: &MediaLab, caller: &[sipp::Step], callee: &[sipp::Step]) -> Result<(), String> {
    let callee_xml = sipp::write_scenario("callee", &sipp::scenario("callee", false, callee));
    let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, caller));
    let mut callee = sipp::run(&lab.lab.carrier, callee_xml.path(), CARRIER, None, &[]);
    thread::sleep(Duration::from_millis(300));
    let mut caller = sipp::run(&lab.lab.pbx, caller_xml.path(), PBX, Some(SBC_INSIDE), &[]);
    let a = caller.wait_timeout(Duration::from_secs(70));
    let b = callee.wait_timeout(Duration::from_secs(10));
    if a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()) {
        Ok(())
    } else {
        Err(format!("caller {a:?}, callee {b:?}"))
    }
}

fn ok(code: u16) -> sipp::Step {
    Recv {
        code,
        optional: false,
    }
}

/// Starts a carrier scenario alone (the PBX side is the raw socket).
fn carrier_only(lab: &MediaLab, steps: &[sipp::Step]) -> (sbc_e2e::process::Owned, sipp::TempFile) {
    let xml = sipp::write_scenario("callee", &sipp::scenario("callee", false, steps));
    let p = sipp::run(&lab.lab.carrier, xml.path(), CARRIER, None, &[]);
    thread::sleep(Duration::from_millis(300));
    (p, xml)
}

fn raw_invite(i: u32) -> String {
    let sdp = "v=0\r\no=raw 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n";
    format!(
        "INVITE sip:15551234567@{SBC_INSIDE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {RAW_PBX};branch=z9hG4bKraw{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=raw{i}\r\n\
         To: <sip:15551234567@198.18.1.1>\r\nCall-ID: raw-call-{i}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:100@{RAW_PBX}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Sends INVITEs `ids` from the raw PBX socket back to back, then collects the final status
/// of each (by Call-ID) for at most `wait`. Returns `(id, status, has Retry-After)`.
fn burst(lab: &MediaLab, ids: &[u32], wait: Duration) -> Vec<(u32, u16, bool)> {
    let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
    let sock = UdpSocket::bind(RAW_PBX).expect("bind raw PBX socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    for i in ids {
        sock.send_to(raw_invite(*i).as_bytes(), SBC_INSIDE)
            .expect("send INVITE");
    }
    let mut finals: Vec<(u32, u16, bool)> = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    // Bounded by the deadline and by one final per INVITE.
    while Instant::now() < deadline && finals.len() < ids.len() {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let id: Option<u32> = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: raw-call-"))
            .and_then(|v| v.trim().parse().ok());
        let Some(id) = id.filter(|i| ids.contains(i)) else {
            continue;
        };
        if status >= 300 {
            // RFC 3261 §17.1.1.3: ACK the non-2xx final (same branch), so it stops coming.
            let to = text
                .lines()
                .find(|l| l.starts_with("To: "))
                .unwrap_or("To: <sip:15551234567@198.18.1.1>");
            let ack = format!(
                "ACK sip:15551234567@{SBC_INSIDE} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {RAW_PBX};branch=z9hG4bKraw{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=raw{id}\r\n{to}\r\n\
                 Call-ID: raw-call-{id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(ack.as_bytes(), SBC_INSIDE);
        }
        if status >= 200 && !finals.iter().any(|(f, _, _)| *f == id) {
            finals.push((id, status, text.contains("\r\nRetry-After: 5\r\n")));
        }
    }
    finals
}

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn patch(lab: &MediaLab, json: &str) {
    let r = lab
        .request("PATCH", "/api/v1/config", Some(json))
        .expect("admin API");
    assert_eq!(r.status, 200, "PATCH {json}: {}", r.body);
}

#[test]
fn trunk_auth_and_call_admission() {
    if !sbc_e2e::require_root("trunk") {
        return;
    }
    let lab = MediaLab::start("stk", "xdp = \"off\"");

    // Credentials go in live; the API never shows the password.
    patch(
        &lab,
        r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060","username":"4930123","password":"s3cret-pw"}]}"#,
    );
    let config = lab
        .request("GET", "/api/v1/config", None)
        .expect("config")
        .body;
    assert!(config.contains("<redacted>"), "{config}");
    assert!(!config.contains("s3cret-pw"), "password leaked: {config}");

    // 407 to the INVITE and 401 to the BYE: answered by the SBC; the PBX scenario would fail
    // on either challenge (it expects only 100/180/200 and the BYE's 200).
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
    let callee = vec![
        RecvRequest { method: "INVITE" },
        Challenge { code: 407 },
        RecvRequest { method: "ACK" },
        RecvAuthorized {
            method: "INVITE",
            header: "Proxy-Authorization",
            user: "4930123",
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
        Challenge { code: 401 },
        RecvAuthorized {
            method: "BYE",
            header: "Authorization",
            user: "4930123",
        },
        Respond {
            code: 200,
            reason: "OK",
            sdp: None,
        },
    ];
    run_call(&lab, &caller, &callee).expect("challenged call completes");
    assert_eq!(
        metric(&lab, "sbc_trunk_auth_total{result=\"retry\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&lab, "sbc_trunk_auth_total{result=\"failure\"}"),
        Some(0.0)
    );

    // CPS: one call per second on the trunk; a burst of five gets one through (the carrier
    // answers it 486) and four 503s with Retry-After.
    patch(
        &lab,
        r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060","max_cps":1}]}"#,
    );
    let (mut carrier, _xml) = carrier_only(
        &lab,
        &[
            RecvRequest { method: "INVITE" },
            Respond {
                code: 486,
                reason: "Busy Here",
                sdp: None,
            },
            RecvRequest { method: "ACK" },
        ],
    );
    let finals = burst(&lab, &[1, 2, 3, 4, 5], Duration::from_secs(5));
    let rejected = finals
        .iter()
        .filter(|(_, s, retry)| *s == 503 && *retry)
        .count();
    let busy = finals.iter().filter(|(_, s, _)| *s == 486).count();
    assert_eq!((busy, rejected), (1, 4), "{finals:?}");
    assert!(
        carrier
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "the carrier saw exactly the one admitted call"
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_admission_rejected_total{direction=\"outbound\",limit=\"trunk_max_cps\"}"
        ),
        Some(4.0)
    );

    // Concurrency: one call at a time globally; a second INVITE while the first rings gets
    // 503, and the first one completes normally.
    patch(
        &lab,
        r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060"}],"limits":{"max_calls":1}}"#,
    );
    let (mut carrier, _xml) = carrier_only(
        &lab,
        &[
            RecvRequest { method: "INVITE" },
            Respond {
                code: 180,
                reason: "Ringing",
                sdp: None,
            },
            Pause { ms: 1500 },
            Respond {
                code: 486,
                reason: "Busy Here",
                sdp: None,
            },
            RecvRequest { method: "ACK" },
        ],
    );
    let finals = {
        let lab = &lab;
        thread::scope(|s| {
            let first = s.spawn(|| burst(lab, &[10], Duration::from_secs(5)));
            thread::sleep(Duration::from_millis(500));
            let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
            let second = UdpSocket::bind("198.18.1.2:5064").expect("bind");
            second
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            second
                .send_to(raw_invite(11).as_bytes(), SBC_INSIDE)
                .expect("send");
            let mut buf = [0u8; 4096];
            let mut second_final = 0;
            for _ in 0..5 {
                let Ok(n) = second.recv(&mut buf) else { break };
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(code) = text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3))
                    && code != "100"
                {
                    second_final = code.parse().unwrap_or(0);
                    break;
                }
            }
            let first = first.join().expect("first call thread");
            (first, second_final)
        })
    };
    assert_eq!(finals.1, 503, "second call while the first rings");
    assert_eq!(
        finals.0.first().map(|f| f.1),
        Some(486),
        "the first call completes"
    );
    assert!(
        carrier
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_admission_rejected_total{direction=\"outbound\",limit=\"max_calls\"}"
        ),
        Some(1.0)
    );
}

fn options(from: &str, i: u32, user_agent: &str) -> String {
    format!(
        "OPTIONS sip:sbc@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKopt{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{from}>;tag=o{i}\r\nTo: <sip:sbc@198.18.1.1>\r\n\
         Call-ID: opt-{i}@{from}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends `count` OPTIONS from `sock` to `to`, `gap` apart, and counts the responses that
/// arrive meanwhile and up to `linger` after. Bounded by `count` and time.
fn probe(sock: &UdpSocket, to: &str, first: u32, count: u32, gap: Duration, ua: &str) -> usize {
    let from = sock.local_addr().expect("bound").to_string();
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let mut answers = 0;
    let mut drain = |answers: &mut usize| {
        while sock.recv(&mut buf).is_ok() {
            *answers += 1;
        }
    };
    for i in first..first + count {
        let _ = sock.send_to(options(&from, i, ua).as_bytes(), to);
        drain(&mut answers);
        thread::sleep(gap);
    }
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        drain(&mut answers);
        thread::sleep(Duration::from_millis(20));
    }
    answers
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
fn flood_is_banned_while_pbx_calls_complete_and_unknown_sources_get_nothing() {
    if !sbc_e2e::require_root("trunk") {
        return;
    }
    let lab = MediaLab::start("sfl", "xdp = \"off\"");
    patch(
        &lab,
        r#"{"limits":{"source_rate":20,"source_burst":20,"ban_s":60}}"#,
    );
    // A second host in the PBX network (allowed by the ACL, not the configured PBX), and a
    // host on the carrier link that is not the trunk proxy.
    add_address(&lab.lab.pbx, "pbx0", "198.18.1.3/24");
    add_address(&lab.lab.carrier, "car0", "198.18.2.3/24");
    thread::sleep(Duration::from_millis(300));

    // The flood: 400 OPTIONS at ~1 ms intervals from 198.18.1.3, while the PBX places a call.
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
        Pause { ms: 1000 },
        InDialog {
            method: "BYE",
            cseq: 2,
            sdp: None,
            uac: true,
        },
        ok(200),
    ];
    let callee = sipp::answering_callee();
    let (answered, call) = thread::scope(|s| {
        let flood = s.spawn(|| {
            let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
            let sock = UdpSocket::bind("198.18.1.3:5070").expect("bind flood source");
            probe(
                &sock,
                SBC_INSIDE,
                0,
                400,
                Duration::from_millis(1),
                "flooder",
            )
        });
        let call = run_call(&lab, &caller, &callee);
        (flood.join().expect("flood thread"), call)
    });
    call.expect("the PBX call completes during the flood");
    // rate 20 + burst 20: about 40 answered before the ban, then nothing.
    assert!((30..=80).contains(&answered), "{answered} of 400 answered");
    let bans = lab.request("GET", "/api/v1/bans", None).expect("bans").body;
    assert!(bans.contains("\"address\":\"198.18.1.3\""), "{bans}");
    assert!(
        !bans.contains("198.18.1.2"),
        "the PBX is never banned: {bans}"
    );
    assert_eq!(metric(&lab, "sbc_bans_total"), Some(1.0));

    let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
    let sock = UdpSocket::bind("198.18.1.3:5071").expect("bind");
    drop(_in);
    {
        let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
        assert_eq!(
            probe(&sock, SBC_INSIDE, 1000, 1, Duration::ZERO, "x"),
            0,
            "banned: no answer"
        );
    }
    let r = lab
        .request("DELETE", "/api/v1/bans/198.18.1.3", None)
        .expect("delete");
    assert_eq!(r.status, 204, "{}", r.body);
    let r = lab
        .request("DELETE", "/api/v1/bans/198.18.1.3", None)
        .expect("delete");
    assert_eq!(r.status, 404, "already lifted");
    {
        let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
        assert_eq!(
            probe(&sock, SBC_INSIDE, 1001, 1, Duration::ZERO, "x"),
            1,
            "answered again once the ban is lifted"
        );
        // A scanner's User-Agent gets nothing.
        assert_eq!(
            probe(
                &sock,
                SBC_INSIDE,
                1002,
                1,
                Duration::ZERO,
                "friendly-scanner"
            ),
            0,
            "denied User-Agent"
        );
    }
    // An unknown source on the carrier side gets no response at all.
    {
        let _in = netns::enter(&lab.lab.carrier).expect("enter carrier netns");
        let sock = UdpSocket::bind("198.18.2.3:5060").expect("bind");
        assert_eq!(
            probe(
                &sock,
                "198.18.2.1:5060",
                2000,
                3,
                Duration::from_millis(50),
                "x"
            ),
            0,
            "unknown source"
        );
    }
}

/// A callee-side scenario that answers the INVITE with `code` and expects the ACK.
fn refuse(code: u16, reason: &'static str) -> Vec<sipp::Step> {
    vec![
        RecvRequest { method: "INVITE" },
        Respond {
            code,
            reason,
            sdp: None,
        },
        RecvRequest { method: "ACK" },
    ]
}

fn answered_call() -> (Vec<sipp::Step>, Vec<sipp::Step>) {
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
        InDialog {
            method: "BYE",
            cseq: 2,
            sdp: None,
            uac: true,
        },
        ok(200),
    ];
    let callee = sipp::answering_callee();
    (caller, callee)
}

#[test]
fn failover_from_a_dead_and_a_503_trunk_but_not_on_486_or_603() {
    if !sbc_e2e::require_root("trunk") {
        return;
    }
    let lab = MediaLab::start("sfo", "xdp = \"off\"");
    add_address(&lab.lab.carrier, "car0", "198.18.2.3/24");
    thread::sleep(Duration::from_millis(300));
    // T1 = 100 ms: Timer B (64·T1) gives up on the dead trunk after 6.4 s.
    patch(
        &lab,
        r#"{"sip":{"t1_ms":100},"trunk":[{"name":"dead","proxy":"198.18.2.9:5060"},
            {"name":"carrier","proxy":"198.18.2.2:5060"}]}"#,
    );
    let (caller, callee) = answered_call();
    run_call(&lab, &caller, &callee).expect("dead first trunk: the call completes on the second");
    assert_eq!(
        metric(&lab, "sbc_trunk_failovers_total{trunk=\"dead\"}"),
        Some(1.0)
    );

    // A first trunk answering 503: failover; answering 486 or 603: the PBX gets that answer.
    patch(
        &lab,
        r#"{"trunk":[{"name":"first","proxy":"198.18.2.3:5060"},
            {"name":"carrier","proxy":"198.18.2.2:5060"}]}"#,
    );
    let first_xml = sipp::write_scenario(
        "first",
        &sipp::scenario("first", false, &refuse(503, "Service Unavailable")),
    );
    let mut first = sipp::run(
        &lab.lab.carrier,
        first_xml.path(),
        "198.18.2.3:5060",
        None,
        &[],
    );
    run_call(&lab, &caller, &callee).expect("503 on the first trunk: completes on the second");
    assert!(
        first
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "the first trunk saw the INVITE and the ACK of its 503"
    );
    assert_eq!(
        metric(&lab, "sbc_trunk_failovers_total{trunk=\"first\"}"),
        Some(1.0)
    );

    for (code, reason) in [(486, "Busy Here"), (603, "Decline")] {
        let first_xml = sipp::write_scenario(
            "first",
            &sipp::scenario("first", false, &refuse(code, reason)),
        );
        let mut first = sipp::run(
            &lab.lab.carrier,
            first_xml.path(),
            "198.18.2.3:5060",
            None,
            &[],
        );
        thread::sleep(Duration::from_millis(300));
        let caller = vec![
            Invite { sdp: true },
            Recv {
                code: 100,
                optional: true,
            },
            ok(code),
            AckNon2xx,
        ];
        let caller_xml = sipp::write_scenario("caller", &sipp::scenario("caller", true, &caller));
        let mut pbx = sipp::run(&lab.lab.pbx, caller_xml.path(), PBX, Some(SBC_INSIDE), &[]);
        assert!(
            pbx.wait_timeout(Duration::from_secs(30))
                .is_some_and(|s| s.success()),
            "{code} reaches the PBX"
        );
        assert!(
            first
                .wait_timeout(Duration::from_secs(10))
                .is_some_and(|s| s.success())
        );
    }
    assert_eq!(
        metric(&lab, "sbc_trunk_failovers_total{trunk=\"first\"}"),
        Some(1.0),
        "no failover on 486 or 603"
    );
}

fn trunk_health(lab: &MediaLab, name: &str) -> String {
    let body = lab
        .request("GET", &format!("/api/v1/trunks/{name}"), None)
        .expect("admin API")
        .body;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["health"]["state"].as_str().unwrap_or("").to_owned()
}

fn wait_health(lab: &MediaLab, name: &str, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let s = trunk_health(lab, name);
        if s == want || Instant::now() >= deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn options_health_takes_a_dead_trunk_out_of_the_route_and_back() {
    if !sbc_e2e::require_root("trunk") {
        return;
    }
    let lab = MediaLab::start("shc", "xdp = \"off\"");
    add_address(&lab.lab.carrier, "car0", "198.18.2.3/24");
    thread::sleep(Duration::from_millis(300));
    patch(
        &lab,
        r#"{"trunk":[{"name":"first","proxy":"198.18.2.3:5060","options_interval_s":1,
            "options_down_after":2,"options_up_after":1},
            {"name":"carrier","proxy":"198.18.2.2:5060"}]}"#,
    );
    // Nobody answers on the first trunk: down after two failed pings.
    assert_eq!(
        wait_health(&lab, "first", "down", Duration::from_secs(10)),
        "down"
    );
    assert_eq!(
        metric(&lab, "sbc_trunk_health{state=\"down\",trunk=\"first\"}"),
        Some(1.0)
    );
    assert_eq!(trunk_health(&lab, "carrier"), "not_monitored");
    // A call goes straight to the second trunk: no failover needed.
    let (caller, callee) = answered_call();
    run_call(&lab, &caller, &callee).expect("call on the second trunk");
    assert_eq!(
        metric(&lab, "sbc_trunk_failovers_total{trunk=\"first\"}"),
        Some(0.0),
        "the down trunk was skipped, not tried (the series exists from the start, at 0)"
    );
    // The proxy comes back and answers a ping: up again.
    let xml = sipp::write_scenario(
        "options",
        &sipp::scenario(
            "options",
            false,
            &[
                RecvRequest { method: "OPTIONS" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
            ],
        ),
    );
    let mut proxy = sipp::run(&lab.lab.carrier, xml.path(), "198.18.2.3:5060", None, &[]);
    assert_eq!(
        wait_health(&lab, "first", "up", Duration::from_secs(10)),
        "up"
    );
    let _ = proxy.wait_timeout(Duration::from_secs(5));
}
