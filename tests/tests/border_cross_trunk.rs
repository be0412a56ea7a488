//! Issue 13, dialogs bound to their peer: while a call runs on trunk A, a BYE from trunk B's
//! address carrying the call's exact Call-ID and tags (as an insider of trunk B, or anyone
//! sending from its address, could learn them) gets 481; the call stays up and ends normally.
//! A re-INVITE from there that would point the call's media at the sender gets 481 too, and the
//! parties' RTP keeps flowing between them only; a forged 200 OK from there to the INVITE
//! outstanding toward trunk A is dropped and counted, never reaches the PBX, and the real
//! answer sets the call up with media between the real parties.
//!
//! Each of these fails without the peer binding (`sbc/proto/src/b2bua/peer_binding.rs`): the
//! BYE would end the call; the re-INVITE (right Call-ID, tags and a higher CSeq) would be
//! relayed to the PBX (no 481; SIPp aborts the call on the unexpected INVITE) and its offer,
//! applied when relayed, would drop the outside latch and send the PBX's RTP to the sender;
//! the forged 200 (right branch) would answer the call: a 200 reaches the PBX before the
//! carrier answers and the PBX's RTP goes to the forger. (Checked by disabling the source
//! checks in `peer_binding.rs` locally: all three tests failed on their first signaling
//! assertion.)

mod media_common;

use sbc_lab::sipp::run_args as sipp;
use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use media_common::{MediaLab, Received, receiver, send_rtp};
use sbc_e2e::{netns, sipp as scenarios};

/// A second trunk, added to the carrier namespace by the test.
const EXTRA: &str = r#"
[[trunk]]
name = "carrier2"
proxy = "198.18.2.3:5060"
[[route]]
name = "all"
trunks = ["carrier"]
"#;

fn metric(lab: &MediaLab, series: &str) -> Option<f64> {
    let body = lab.request("GET", "/metrics", None)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn bye_from_another_trunks_address_gets_481_and_the_call_stays_up() {
    if !sbc_e2e::require_root("border_cross_trunk") {
        return;
    }
    let lab = MediaLab::start_admin("bxt", "xdp = \"off\"", EXTRA, None);
    add_trunk_b(&lab);

    // PBX → trunk A, a call of six seconds.
    let mut uas = sipp(
        &lab.lab.carrier,
        &["-sn", "uas", "-i", "198.18.2.2", "-p", "5060", "-m", "1"],
    );
    thread::sleep(Duration::from_millis(300));
    let mut uac = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            "1",
            "-d",
            "6000",
            "198.18.1.1:5060",
        ],
    );
    let (call_id, ours, theirs) = answered_outside_leg(&lab);

    // The forged BYE, from trunk B's address, with everything else right.
    let answer = {
        let _in = netns::enter(&lab.lab.carrier).expect("enter carrier netns");
        let sock = UdpSocket::bind("198.18.2.3:5060").expect("bind trunk B");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let bye = format!(
            "BYE sip:sbc@198.18.2.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.2.3:5060;branch=z9hG4bKforged1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@198.18.2.2>;tag={theirs}\r\n\
             To: <sip:y@198.18.2.1>;tag={ours}\r\nCall-ID: {call_id}\r\n\
             CSeq: 900 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(bye.as_bytes(), "198.18.2.1:5060")
            .expect("send BYE");
        let mut buf = [0u8; 2048];
        sock.recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).to_string())
            .unwrap_or_default()
    };
    assert!(answer.starts_with("SIP/2.0 481"), "answer: {answer:?}");
    let calls = lab.json("GET", "/api/v1/calls", None, 200);
    assert_eq!(calls["total"], 1, "the call is still up: {calls}");
    assert_eq!(
        metric(
            &lab,
            "sbc_sip_peer_mismatch_total{kind=\"request_source\",side=\"outside\"}"
        ),
        Some(1.0)
    );

    // The call ends normally: the PBX's BYE after six seconds reaches trunk A.
    let a = uac.wait_timeout(Duration::from_secs(30));
    let b = uas.wait_timeout(Duration::from_secs(10));
    assert!(
        a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()),
        "the call completes: uac {a:?}, uas {b:?}"
    );
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn reinvite_from_another_trunks_address_gets_481_and_media_stays_with_the_parties() {
    if !sbc_e2e::require_root("border_cross_trunk") {
        return;
    }
    let lab = MediaLab::start_admin("bxr", "xdp = \"off\"", EXTRA, None);
    add_trunk_b(&lab);
    let pbx = lab.socket(true, PBX_RTP);
    let carrier = lab.socket(false, CARRIER_RTP);
    let stop = Arc::new(AtomicBool::new(false));
    let at_attacker = receiver(
        bind_in(&lab.lab.carrier, ATTACKER_RTP),
        stop.clone(),
        Duration::from_secs(40),
    );

    // PBX → trunk A, answered; the PBX hangs up 8 s after its ACK, once the test is done.
    let mut callee_steps = scenarios::answered_callee();
    callee_steps.extend(scenarios::answer_bye());
    let mut caller_steps = scenarios::answered_caller();
    caller_steps.extend(scenarios::ending(true, Some(8_000)));
    // Fixed media ports in the SDP: the test's own RTP sockets listen there (SIPp's media
    // sockets go to -mp, out of the way).
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    let callee_xml = scenarios::write_scenario(
        "xt-callee",
        &scenarios::scenario("callee", false, &callee_steps)
            .replace("[media_port]", &port(CARRIER_RTP)),
    );
    let caller_xml = scenarios::write_scenario(
        "xt-caller",
        &scenarios::scenario("caller", true, &caller_steps).replace("[media_port]", &port(PBX_RTP)),
    );
    let mut callee = scenarios::run(
        &lab.lab.carrier,
        callee_xml.path(),
        CARRIER_SIP,
        None,
        &["-mp", "30000"],
    );
    thread::sleep(Duration::from_millis(300));
    let mut caller = scenarios::run(
        &lab.lab.pbx,
        caller_xml.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    let (session, in_relay, out_relay) = lab.answered_session();
    let (call_id, ours, theirs) = answered_outside_leg(&lab);

    // The forged re-INVITE, from trunk B's address, with the call's identifiers and a higher
    // CSeq: its offer would point the call's outside media at the attacker.
    let answer = {
        let sock = bind_in(&lab.lab.carrier, TRUNK_B_SIP);
        let head = format!(
            "INVITE sip:sbc@198.18.2.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {TRUNK_B_SIP};branch=z9hG4bKforgedre1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@198.18.2.2>;tag={theirs}\r\n\
             To: <sip:y@198.18.2.1>;tag={ours}\r\nCall-ID: {call_id}\r\n\
             CSeq: 900 INVITE\r\nContact: <sip:x@{TRUNK_B_SIP}>\r\n"
        );
        sock.send_to(with_sdp(&head, ATTACKER_RTP).as_bytes(), SBC_OUTSIDE_SIP)
            .expect("send re-INVITE");
        // A 100 Trying may come first; the 481 is not ACKed (its retransmissions go nowhere).
        recv_sip(&sock, Duration::from_secs(3), |m| {
            status(m).is_some_and(|c| c >= 200)
        })
        .unwrap_or_default()
    };
    assert!(answer.starts_with("SIP/2.0 481"), "answer: {answer:?}");
    let calls = lab.json("GET", "/api/v1/calls", None, 200);
    assert_eq!(calls["total"], 1, "the call is still up: {calls}");
    assert_eq!(
        metric(
            &lab,
            "sbc_sip_peer_mismatch_total{kind=\"request_source\",side=\"outside\"}"
        ),
        Some(1.0)
    );

    // The parties talk after the attempt: each hears the other, the attacker nothing.
    let (got_pbx, got_carrier) = talk(&pbx, &carrier, in_relay, out_relay);
    let view = lab.json(
        "GET",
        &format!("/api/v1/media/sessions/{session}"),
        None,
        200,
    );
    assert_eq!(
        view["streams"][0]["outside"]["latched"], CARRIER_RTP,
        "{view}"
    );
    assert_eq!(view["streams"][0]["inside"]["latched"], PBX_RTP, "{view}");

    let caller_status = caller.wait_timeout(Duration::from_secs(30));
    let callee_status = callee.wait_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let attacker_got = at_attacker.join().expect("attacker receiver");
    assert!(
        caller_status.is_some_and(|s| s.success()) && callee_status.is_some_and(|s| s.success()),
        "the call completes untouched: caller {caller_status:?}, callee {callee_status:?}"
    );
    assert_heard("PBX", &got_pbx, 0x2222_2222, in_relay);
    assert_heard("carrier", &got_carrier, 0x1111_1111, out_relay);
    assert_eq!(attacker_got.lens.len(), 0, "the attacker received RTP");
    assert_eq!(
        metric(
            &lab,
            "sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn forged_200_from_another_trunks_address_is_dropped_and_the_real_answer_wins() {
    if !sbc_e2e::require_root("border_cross_trunk") {
        return;
    }
    let lab = MediaLab::start_admin("bxf", "xdp = \"off\"", EXTRA, None);
    add_trunk_b(&lab);
    // Both signaling parties are the test's own sockets: the forger must see the branch of
    // the INVITE toward trunk A, and the PBX must be seen to get no answer from it.
    let pbx_sip = bind_in(&lab.lab.pbx, PBX_SIP);
    let trunk_a = bind_in(&lab.lab.carrier, CARRIER_SIP);
    let forger = bind_in(&lab.lab.carrier, TRUNK_B_SIP);
    let pbx = lab.socket(true, PBX_RTP);
    let carrier = lab.socket(false, CARRIER_RTP);
    let stop = Arc::new(AtomicBool::new(false));
    let at_attacker = receiver(
        bind_in(&lab.lab.carrier, ATTACKER_RTP),
        stop.clone(),
        Duration::from_secs(40),
    );

    let call_id = "forged-200@198.18.1.2";
    let from = "<sip:1000@198.18.1.2>;tag=pbx1";
    let invite = format!(
        "INVITE sip:15551234567@198.18.1.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PBX_SIP};branch=z9hG4bKpbxinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:15551234567@198.18.1.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{PBX_SIP}>\r\n"
    );
    pbx_sip
        .send_to(with_sdp(&invite, PBX_RTP).as_bytes(), SBC_INSIDE_SIP)
        .expect("send INVITE");
    let out = recv_sip(&trunk_a, Duration::from_secs(5), |m| {
        m.starts_with("INVITE ")
    })
    .expect("the INVITE reaches trunk A");
    send(&trunk_a, &response(&out, "180 Ringing", None, CARRIER_SIP));

    // The forged answer: the outstanding INVITE's branch and identifiers, from trunk B's
    // address, with media to the forger.
    send(
        &forger,
        &response(&out, "200 OK", Some(ATTACKER_RTP), TRUNK_B_SIP),
    );
    let early = recv_sip(&pbx_sip, Duration::from_millis(1500), |m| {
        status(m).is_some_and(|c| c >= 200)
    });
    assert!(
        early.is_none(),
        "the forged answer reached the PBX: {early:?}"
    );
    let calls = lab.json("GET", "/api/v1/calls", None, 200);
    assert_eq!(calls["calls"][0]["state"], "ringing", "{calls}");
    assert_eq!(
        metric(
            &lab,
            "sbc_sip_peer_mismatch_total{kind=\"response\",side=\"outside\"}"
        ),
        Some(1.0)
    );

    // Trunk A answers; the PBX gets that answer and ACKs it.
    send(
        &trunk_a,
        &response(&out, "200 OK", Some(CARRIER_RTP), CARRIER_SIP),
    );
    let ok = recv_sip(&pbx_sip, Duration::from_secs(5), |m| {
        status(m) == Some(200) && header(m, "CSeq").ends_with("INVITE")
    })
    .expect("trunk A's answer reaches the PBX");
    let to = header(&ok, "To").to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} sip:15551234567@198.18.1.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {PBX_SIP};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    pbx_sip
        .send_to(
            in_dialog("ACK", 1, "z9hG4bKpbxack1").as_bytes(),
            SBC_INSIDE_SIP,
        )
        .expect("send ACK");
    recv_sip(&trunk_a, Duration::from_secs(5), |m| m.starts_with("ACK "))
        .expect("trunk A gets the ACK");

    // The parties talk: each hears the other, the forger nothing.
    let (session, in_relay, out_relay) = lab.answered_session();
    let (got_pbx, got_carrier) = talk(&pbx, &carrier, in_relay, out_relay);
    let view = lab.json(
        "GET",
        &format!("/api/v1/media/sessions/{session}"),
        None,
        200,
    );
    assert_eq!(
        view["streams"][0]["outside"]["latched"], CARRIER_RTP,
        "{view}"
    );

    // The PBX hangs up; trunk A gets the BYE.
    pbx_sip
        .send_to(
            in_dialog("BYE", 2, "z9hG4bKpbxbye1").as_bytes(),
            SBC_INSIDE_SIP,
        )
        .expect("send BYE");
    let bye = recv_sip(&trunk_a, Duration::from_secs(5), |m| m.starts_with("BYE "))
        .expect("the BYE reaches trunk A");
    send(&trunk_a, &response(&bye, "200 OK", None, CARRIER_SIP));
    let done = recv_sip(&pbx_sip, Duration::from_secs(5), |m| {
        status(m) == Some(200) && header(m, "CSeq").ends_with("BYE")
    });
    stop.store(true, Ordering::Relaxed);
    let attacker_got = at_attacker.join().expect("attacker receiver");
    assert!(done.is_some(), "the PBX's BYE is answered");
    assert_heard("PBX", &got_pbx, 0x2222_2222, in_relay);
    assert_heard("carrier", &got_carrier, 0x1111_1111, out_relay);
    assert_eq!(attacker_got.lens.len(), 0, "the forger received RTP");
    assert_eq!(
        metric(
            &lab,
            "sbc_sip_peer_mismatch_total{kind=\"response\",side=\"outside\"}"
        ),
        Some(1.0)
    );
}

/// Trunk B's signaling address (the proxy of `carrier2`, on the carrier's link): what an
/// attacker at trunk B, or anyone able to send from its address, sends from.
const TRUNK_B_SIP: &str = "198.18.2.3:5060";
/// Where the attacker's SDP asks for the call's media.
const ATTACKER_RTP: &str = "198.18.2.3:7078";
const SBC_INSIDE_SIP: &str = "198.18.1.1:5060";
const SBC_OUTSIDE_SIP: &str = "198.18.2.1:5060";
const PBX_SIP: &str = "198.18.1.2:5060";
const CARRIER_SIP: &str = "198.18.2.2:5060";
const PBX_RTP: &str = "198.18.1.2:4000";
const CARRIER_RTP: &str = "198.18.2.2:6000";
/// RTP packets each party sends.
const N: u16 = 100;

/// Adds trunk B's address to the carrier's interface.
fn add_trunk_b(lab: &MediaLab) {
    let added = Command::new("ip")
        .args([
            "-n",
            &lab.lab.carrier,
            "addr",
            "add",
            "198.18.2.3/24",
            "dev",
            "car0",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(added, "second trunk address");
}

/// Waits (bounded) for the call to be answered; returns its outside leg's Call-ID, the SBC's
/// tag and the carrier's tag.
fn answered_outside_leg(lab: &MediaLab) -> (String, String, String) {
    let mut leg = None;
    for _ in 0..50 {
        let calls = lab.json("GET", "/api/v1/calls", None, 200);
        if let Some(c) = calls["calls"].as_array().and_then(|c| c.first())
            && c["state"] == "answered"
        {
            leg = c["legs"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["side"] == "outside"))
                .cloned();
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let leg = leg.expect("the call is answered within 5 s");
    let ids = (
        leg["call_id"].as_str().unwrap_or_default().to_owned(),
        leg["local_tag"].as_str().unwrap_or_default().to_owned(),
        leg["remote_tag"].as_str().unwrap_or_default().to_owned(),
    );
    assert!(!ids.0.is_empty() && !ids.2.is_empty(), "{leg}");
    ids
}

/// A UDP socket bound to `addr` in namespace `ns`.
fn bind_in(ns: &str, addr: &str) -> UdpSocket {
    let _in = netns::enter(ns).expect("enter netns");
    let s = UdpSocket::bind(addr).expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s
}

/// Sends a SIP message from `sock` to the SBC's outside address.
fn send(sock: &UdpSocket, msg: &str) {
    sock.send_to(msg.as_bytes(), SBC_OUTSIDE_SIP)
        .expect("send to the SBC");
}

/// The first message on `sock` within `limit` that `want` accepts (others, such as
/// provisionals and retransmissions, are skipped).
fn recv_sip(sock: &UdpSocket, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&text) {
                return Some(text);
            }
        }
    }
    None
}

/// The status code of a response.
fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Every value of header `name` (full form, any case) in `msg`'s head, in order.
fn header_values<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// The first value of header `name`, or "".
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    header_values(msg, name)
        .first()
        .copied()
        .unwrap_or_default()
}

/// An SDP offering PCMU at `media` (ip:port).
fn with_sdp(head: &str, media: &str) -> String {
    let (ip, port) = media.rsplit_once(':').expect("ip:port");
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A response to `req` (its Vias, From, Call-ID and CSeq; To with the tag `trunk` unless it
/// has one), with Contact `contact` and an SDP for `media` if given.
fn response(req: &str, status_line: &str, media: Option<&str>, contact: &str) -> String {
    let mut head = format!("SIP/2.0 {status_line}\r\n");
    for v in header_values(req, "Via") {
        head.push_str(&format!("Via: {v}\r\n"));
    }
    let to = header(req, "To");
    let tag = if to.contains("tag=") {
        ""
    } else {
        ";tag=trunk"
    };
    head.push_str(&format!(
        "From: {}\r\nTo: {to}{tag}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:gw@{contact}>\r\n",
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
    ));
    match media {
        Some(m) => with_sdp(&head, m),
        None => format!("{head}Content-Length: 0\r\n\r\n"),
    }
}

/// `N` RTP packets each way between the parties' sockets through the relay; returns what the
/// PBX and the carrier received.
fn talk(
    pbx: &UdpSocket,
    carrier: &UdpSocket,
    in_relay: SocketAddr,
    out_relay: SocketAddr,
) -> (Received, Received) {
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(20);
    let at_pbx = receiver(pbx.try_clone().expect("clone"), stop.clone(), limit);
    let at_carrier = receiver(carrier.try_clone().expect("clone"), stop.clone(), limit);
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, N, 0x1111_1111))
    };
    send_rtp(carrier, out_relay, 0, N, 0x2222_2222);
    up.join().expect("PBX sender");
    thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    (
        at_pbx.join().expect("PBX receiver"),
        at_carrier.join().expect("carrier receiver"),
    )
}

/// `who` got all `N` packets of the other party (`ssrc`), from its relay endpoint only.
fn assert_heard(who: &str, got: &Received, ssrc: u32, relay: SocketAddr) {
    assert_eq!(got.seqs.len(), usize::from(N), "{who}: packets");
    assert!(got.ssrcs.iter().all(|s| *s == ssrc), "{who}: SSRCs");
    assert!(got.sources.iter().all(|s| *s == relay), "{who}: sources");
}
