//! Graceful drain of the core: new calls refused while the calls in progress go on; at the
//! drain timeout (or on a second signal) BYE on both legs of what is left; drained once the
//! answers are in or the BYE wait is over; registrations removed only after that.

use super::*;
use crate::{protect::GuardConfig, sip::Method};

const DRAIN: DrainConfig = DrainConfig {
    timeout: Duration::from_secs(30),
    retry_after_s: 120,
    bye_wait: Duration::from_secs(2),
};

/// The lab with the default per-source budgets (a call's few messages never hit them).
pub(super) fn lab() -> Lab {
    let mut cfg = config();
    cfg.guard = GuardConfig::default();
    Lab::new(cfg)
}

pub(super) fn invite(n: u32) -> String {
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bKinv{n}\n\
         Max-Forwards: 70\n\
         From: <sip:100@10.0.0.2>;tag=f{n}\n\
         To: <sip:15551234567@10.0.0.1>\n\
         Call-ID: call-{n}@10.0.0.2\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:100@{PBX}>\n\
         Content-Type: application/sdp\n\
         Content-Length: {}\n\n{sdp}",
        sdp.len()
    )
    .replace("\r\n", "\n")
}

/// A response to `req` with `status`, a To tag, and an SDP answer on a 200 to an INVITE.
pub(super) fn answer(req: &Message, status: u16) -> String {
    let text = String::from_utf8_lossy(req.as_bytes()).to_string();
    let mut out = format!("SIP/2.0 {status} Whatever\n");
    for line in text.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push('\n');
        } else if lower.starts_with("to:") {
            out.push_str(line);
            if !line.contains("tag=") {
                out.push_str(";tag=callee1");
            }
            out.push('\n');
        }
    }
    if status == 200 && req.method() == Some(&Method::Invite) {
        let sdp = "v=0\no=c 1 1 IN IP4 198.51.100.1\ns=-\nc=IN IP4 198.51.100.1\nt=0 0\n\
                   m=audio 30000 RTP/AVP 0\n";
        out.push_str(&format!(
            "Contact: <sip:gw@{CARRIER}>\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
            sdp.replace('\n', "\r\n").len()
        ));
    } else {
        out.push_str("Content-Length: 0\n\n");
    }
    out
}

pub(super) fn header(m: &Message, name: &str) -> String {
    m.headers()
        .all_named(name)
        .find_map(|h| h.value_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A PBX → carrier call, answered and ACKed. Returns the To the PBX got (with our tag).
pub(super) fn establish(lab: &mut Lab, n: u32) -> String {
    let pbx = peer(Side::Inside, PBX);
    let carrier = peer(Side::Outside, CARRIER);
    assert_eq!(lab.deliver(pbx, &invite(n)), Received::Call);
    let sent = lab.sent();
    let out = sent
        .iter()
        .find(|(to, m)| to.side == Side::Outside && m.method() == Some(&Method::Invite))
        .map(|(_, m)| m.clone())
        .expect("INVITE to the carrier");
    lab.deliver(carrier, &answer(&out, 200));
    let ok = lab
        .sent()
        .into_iter()
        .find(|(to, m)| to.side == Side::Inside && m.status().map(|s| s.as_u16()) == Some(200))
        .map(|(_, m)| m)
        .expect("200 to the PBX");
    let ack = format!(
        "ACK sip:sbc@10.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bKack{n}\n\
         Max-Forwards: 70\n\
         From: <sip:100@10.0.0.2>;tag=f{n}\n\
         To: {}\n\
         Call-ID: call-{n}@10.0.0.2\n\
         CSeq: 1 ACK\n\
         Content-Length: 0\n\n",
        header(&ok, "To")
    );
    lab.deliver(pbx, &ack);
    lab.sent();
    header(&ok, "To")
}

/// The PBX's BYE of call `n`, whose To (with our tag) is `to`.
pub(super) fn pbx_bye(n: u32, to: &str) -> String {
    format!(
        "BYE sip:15551234567@10.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bKbye{n}\n\
         Max-Forwards: 70\n\
         From: <sip:100@10.0.0.2>;tag=f{n}\n\
         To: {to}\n\
         Call-ID: call-{n}@10.0.0.2\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    )
}

fn byes(sent: &[(Peer, Message)]) -> Vec<(Side, Message)> {
    sent.iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .map(|(to, m)| (to.side, m.clone()))
        .collect()
}

#[test]
fn a_new_call_during_the_drain_gets_503_with_the_drain_retry_after() {
    let mut lab = lab();
    establish(&mut lab, 1);
    assert!(lab.sbc.drain(lab.now, DRAIN));
    assert!(!lab.sbc.drain(lab.now, DRAIN), "one drain at a time");
    assert_eq!(lab.sbc.drain_state().as_str(), "draining");
    lab.deliver(peer(Side::Inside, PBX), &invite(2));
    let sent = lab.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (to, refused) = &sent[0];
    assert_eq!(to.side, Side::Inside);
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503));
    let retry: Vec<_> = refused
        .headers()
        .all_named("Retry-After")
        .filter_map(|h| h.value_str())
        .collect();
    assert_eq!(retry, ["120"]);
    assert_eq!(lab.sbc.calls().len(), 1, "the established call goes on");
}

#[test]
fn calls_that_end_by_themselves_end_the_drain_without_a_bye_of_ours() {
    let mut lab = lab();
    let to = establish(&mut lab, 1);
    lab.sbc.drain(lab.now, DRAIN);
    lab.advance(Duration::from_secs(10));
    assert!(byes(&lab.sent()).is_empty());
    // The PBX hangs up; the carrier answers the relayed BYE.
    lab.deliver(peer(Side::Inside, PBX), &pbx_bye(1, &to));
    let relayed = byes(&lab.sent());
    assert_eq!(relayed.len(), 1);
    assert!(
        matches!(lab.sbc.drain_state(), DrainState::Waiting { .. }),
        "the relayed BYE still waits for its answer"
    );
    lab.deliver(peer(Side::Outside, CARRIER), &answer(&relayed[0].1, 200));
    assert_eq!(lab.sbc.drain_state(), DrainState::Drained);
}

#[test]
fn at_the_timeout_both_legs_get_bye_and_the_answers_end_the_drain() {
    let mut lab = lab();
    establish(&mut lab, 1);
    lab.events();
    // Past every transaction timer of the set-up: nothing else is due before the drain's
    // timeout (the session timer's refresh is later).
    lab.advance(Duration::from_secs(40));
    let later = lab.sbc.poll_timeout();
    assert!(
        later.is_none_or(|t| t > lab.now + DRAIN.timeout),
        "{:?}",
        later.map(|t| t - lab.now)
    );
    lab.sbc.drain(lab.now, DRAIN);
    assert_eq!(
        lab.sbc.poll_timeout(),
        Some(lab.now + DRAIN.timeout),
        "the drain timeout is a deadline of the core (the driver sleeps until it)"
    );
    lab.advance(Duration::from_secs(29));
    assert!(
        byes(&lab.sent()).is_empty(),
        "calls go on until the timeout"
    );
    lab.advance(Duration::from_secs(1));
    let sent = byes(&lab.sent());
    let sides: Vec<Side> = sent.iter().map(|(s, _)| *s).collect();
    assert_eq!(sides, [Side::Inside, Side::Outside], "BYE on both legs");
    assert!(
        lab.events()
            .contains(&Event::Call(crate::b2bua::Event::CallEnded {
                call: 1,
                reason: crate::b2bua::EndReason::Drain,
            }))
    );
    assert_eq!(lab.sbc.drain_state().as_str(), "ending_calls");
    lab.deliver(peer(Side::Inside, PBX), &answer(&sent[0].1, 200));
    assert_eq!(lab.sbc.drain_state().as_str(), "ending_calls");
    lab.deliver(peer(Side::Outside, CARRIER), &answer(&sent[1].1, 200));
    assert_eq!(lab.sbc.drain_state(), DrainState::Drained);
}

#[test]
fn unanswered_byes_are_retransmitted_until_the_bye_wait_ends_the_drain() {
    let mut lab = lab();
    establish(&mut lab, 1);
    lab.sbc.drain(lab.now, DRAIN);
    lab.advance(DRAIN.timeout);
    assert_eq!(byes(&lab.sent()).len(), 2);
    let mut resent = 0;
    for _ in 0..19 {
        lab.advance(Duration::from_millis(100));
        resent += byes(&lab.sent()).len();
    }
    // Timer E (RFC 3261 §17.1.2.2): 0.5 s, then 1 s later; both legs.
    assert_eq!(resent, 4, "both BYEs resent while waiting");
    assert_eq!(lab.sbc.drain_state().as_str(), "ending_calls");
    lab.advance(Duration::from_millis(100));
    assert_eq!(lab.sbc.drain_state(), DrainState::Drained);
}

#[test]
fn end_now_byes_at_once_and_does_nothing_without_a_drain() {
    let mut lab = lab();
    establish(&mut lab, 1);
    assert!(
        !lab.with_media(|s, now, m| s.end_now(now, m)),
        "not draining"
    );
    assert!(byes(&lab.sent()).is_empty());
    lab.sbc.drain(lab.now, DRAIN);
    lab.advance(Duration::from_secs(1));
    assert!(lab.with_media(|s, now, m| s.end_now(now, m)));
    assert_eq!(byes(&lab.sent()).len(), 2, "BYE on both legs at once");
    assert!(!lab.with_media(|s, now, m| s.end_now(now, m)), "once");
}

#[test]
fn without_calls_the_drain_is_over_at_once_and_registrations_go_after() {
    let mut lab = Lab::new(with_registration_and_health(config()));
    lab.advance(Duration::from_millis(1));
    lab.sent();
    lab.sbc.drain(lab.now, DRAIN);
    assert_eq!(lab.sbc.drain_state(), DrainState::Drained);
    // The drain itself leaves the registrations alone; the shutdown removes them.
    assert!(
        lab.sent()
            .iter()
            .all(|(_, m)| m.method() != Some(&Method::Register))
    );
    assert_eq!(lab.sbc.shutdown(lab.now), 1);
    let expires: Vec<_> = lab
        .sent()
        .into_iter()
        .filter(|(_, m)| m.method() == Some(&Method::Register))
        .filter_map(|(_, m)| {
            m.headers()
                .all_named("Expires")
                .find_map(|h| h.value_str().map(str::to_owned))
        })
        .collect();
    assert_eq!(expires, ["0"]);
}
