//! The endpoint agents of the lossy network (`net.rs`): small but honest UAs over UDP. The PBX
//! retransmits its INVITE (Timer A) until a response and its BYE (Timer E) until the final, and
//! ACKs every 2xx it sees (a lost ACK is repaired by the SBC's 2xx retransmission); the carrier
//! answers retransmitted requests with its last response and retransmits its 2xx until the ACK
//! (RFC 3261 §13.3.1.4).

use std::collections::HashMap;

use super::*;

/// How one PBX call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered, then hung up by the PBX with a 200 to its BYE.
    Completed,
    /// A final response other than 2xx to the INVITE.
    Rejected(u16),
    /// The PBX's own Timer B or F ran out.
    TimedOut,
}

#[derive(Debug)]
struct Resend {
    data: Bytes,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct PbxCall {
    call_id: String,
    branch: String,
    start: Instant,
    invite: Option<Resend>,
    to_tag: Option<String>,
    ack: Option<Bytes>,
    hangup_at: Option<Instant>,
    bye: Option<Resend>,
    outcome: Option<Outcome>,
}

/// The PBX: places `calls` calls, `gap` apart, each hung up `hold` after its answer.
#[derive(Debug)]
pub(super) struct PbxAgent {
    calls: Vec<PbxCall>,
    hold: Duration,
    pub(super) out: Vec<Bytes>,
}

fn text(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

pub(super) fn parse(data: &Bytes) -> Option<Message> {
    Message::parse(data.clone(), &Limits::default()).ok()
}

/// RFC 3261 timers of the agents (those of the SBC's default configuration).
fn t1() -> Duration {
    TimerConfig::default().t1
}

fn t2() -> Duration {
    TimerConfig::default().t2
}

impl PbxAgent {
    pub(super) fn new(t0: Instant, calls: usize, gap: Duration, hold: Duration) -> Self {
        let calls = (0..calls)
            .map(|i| PbxCall {
                call_id: format!("pbx-call-1-{i}"),
                branch: format!("z9hG4bKpbx{i}"),
                start: t0 + gap * u32::try_from(i).unwrap_or(u32::MAX),
                invite: None,
                to_tag: None,
                ack: None,
                hangup_at: None,
                bye: None,
                outcome: None,
            })
            .collect();
        Self {
            calls,
            hold,
            out: Vec::new(),
        }
    }

    pub(super) fn outcomes(&self) -> Vec<Option<Outcome>> {
        self.calls.iter().map(|c| c.outcome).collect()
    }

    pub(super) fn done(&self) -> bool {
        self.calls.iter().all(|c| c.outcome.is_some())
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .iter()
            .filter(|c| c.outcome.is_none())
            .filter_map(|c| {
                if c.invite.is_none() && c.to_tag.is_none() && c.ack.is_none() {
                    return Some(c.start);
                }
                [
                    c.invite.as_ref().map(|r| r.next.min(r.deadline)),
                    c.hangup_at,
                    c.bye.as_ref().map(|r| r.next.min(r.deadline)),
                ]
                .into_iter()
                .flatten()
                .min()
            })
            .min()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for (i, c) in self.calls.iter_mut().enumerate() {
            if c.outcome.is_some() {
                continue;
            }
            if c.invite.is_none() && c.to_tag.is_none() && c.ack.is_none() && c.start <= now {
                let data =
                    text(&pbx_invite(&c.branch, Some(SDP_PBX)).replace("pbx-call-1", &c.call_id));
                self.out.push(data.clone());
                c.invite = Some(Resend {
                    data,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.invite.as_mut() {
                if r.deadline <= now {
                    c.invite = None;
                    c.outcome = Some(Outcome::TimedOut);
                    continue;
                }
                if r.next <= now {
                    // Timer A: T1, doubling (RFC 3261 §17.1.1.2).
                    self.out.push(r.data.clone());
                    r.interval *= 2;
                    r.next = now + r.interval;
                }
            }
            if c.hangup_at.is_some_and(|at| at <= now) {
                c.hangup_at = None;
                let tag = c.to_tag.clone().unwrap_or_default();
                let data = text(&format!(
                    "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye{i};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 11 BYE
Content-Length: 0

",
                    c.call_id
                ));
                self.out.push(data.clone());
                c.bye = Some(Resend {
                    data,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.bye.as_mut() {
                if r.deadline <= now {
                    c.bye = None;
                    c.outcome = Some(Outcome::TimedOut);
                    continue;
                }
                if r.next <= now {
                    // Timer E: T1, doubling up to T2 (§17.1.2.2).
                    self.out.push(r.data.clone());
                    r.interval = (r.interval * 2).min(t2());
                    r.next = now + r.interval;
                }
            }
        }
    }

    pub(super) fn handle(&mut self, now: Instant, msg: &Message) {
        let Some(c) = self.calls.iter_mut().find(|c| c.call_id == msg.call_id()) else {
            return;
        };
        let Some(status) = msg.status().map(|s| s.as_u16()) else {
            return; // the SBC sends the PBX no requests in these calls
        };
        match msg.cseq().method {
            Method::Invite if status < 200 => {
                // Proceeding: no more INVITE retransmissions (§17.1.1.2).
                if let Some(r) = c.invite.as_mut() {
                    r.next = r.deadline;
                }
            }
            Method::Invite if status < 300 => {
                c.invite = None;
                if c.ack.is_none() {
                    let tag = msg.to().tag().unwrap_or_default().to_owned();
                    c.ack = Some(text(&format!(
                        "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={}ack;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 10 ACK
Content-Length: 0

",
                        c.branch, c.call_id
                    )));
                    c.to_tag = Some(tag);
                    c.hangup_at = Some(now + self.hold);
                }
                // Every 2xx, also a retransmission, is ACKed (§13.2.2.4).
                if let Some(ack) = &c.ack {
                    self.out.push(ack.clone());
                }
            }
            Method::Invite => {
                // The transaction ACKs a non-2xx final hop by hop (§17.1.1.3).
                let tag = msg.to().tag().unwrap_or_default();
                self.out.push(text(&format!(
                    "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: {}
CSeq: 10 ACK
Content-Length: 0

",
                    c.branch, c.call_id
                )));
                if c.outcome.is_none() {
                    c.invite = None;
                    c.outcome = Some(Outcome::Rejected(status));
                }
            }
            Method::Bye if status >= 200 && c.bye.is_some() => {
                c.bye = None;
                c.outcome = Some(Outcome::Completed);
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
struct CarrierCall {
    tag: String,
    /// The last response to the INVITE, resent for a retransmitted INVITE.
    last: Option<Bytes>,
    answer_at: Option<Instant>,
    invite: Message,
    /// The 2xx retransmitted until the ACK.
    ok: Option<Resend>,
    acked: bool,
    byes: u32,
}

/// The carrier: rings at once, answers `answer_after` later, retransmits its 2xx until the
/// ACK, and answers every BYE with 200.
#[derive(Debug)]
pub(super) struct CarrierAgent {
    calls: HashMap<String, CarrierCall>,
    answer_after: Duration,
    pub(super) out: Vec<Bytes>,
}

impl CarrierAgent {
    pub(super) fn new(answer_after: Duration) -> Self {
        Self {
            calls: HashMap::new(),
            answer_after,
            out: Vec::new(),
        }
    }

    /// Calls whose 2xx was ACKed and that got a BYE.
    pub(super) fn ended(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.acked && c.byes > 0)
            .count()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| [c.answer_at, c.ok.as_ref().map(|r| r.next.min(r.deadline))])
            .flatten()
            .min()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for c in self.calls.values_mut() {
            if c.answer_at.is_some_and(|at| at <= now) {
                c.answer_at = None;
                let ok = text(&carrier_response(
                    &c.invite,
                    200,
                    "OK",
                    Some(&c.tag),
                    Some(SDP_CARRIER),
                ));
                self.out.push(ok.clone());
                c.last = Some(ok.clone());
                c.ok = Some(Resend {
                    data: ok,
                    next: now + t1(),
                    interval: t1(),
                    deadline: now + t1() * 64,
                });
            }
            if let Some(r) = c.ok.as_mut() {
                if r.deadline <= now {
                    c.ok = None;
                } else if r.next <= now {
                    self.out.push(r.data.clone());
                    r.interval = (r.interval * 2).min(t2());
                    r.next = now + r.interval;
                }
            }
        }
    }

    pub(super) fn handle(&mut self, now: Instant, msg: Message) {
        let Some(method) = msg.method().cloned() else {
            return; // the carrier sends no requests in these calls
        };
        let key = msg.call_id().to_owned();
        match method {
            Method::Invite => {
                if let Some(c) = self.calls.get(&key) {
                    // A retransmission: the last response again (§17.2.1).
                    if let Some(last) = &c.last {
                        self.out.push(last.clone());
                    }
                    return;
                }
                let tag = format!("ctag-{}", self.calls.len());
                let ringing = text(&carrier_response(&msg, 180, "Ringing", Some(&tag), None));
                self.out.push(ringing.clone());
                self.calls.insert(
                    key,
                    CarrierCall {
                        tag,
                        last: Some(ringing),
                        answer_at: Some(now + self.answer_after),
                        invite: msg,
                        ok: None,
                        acked: false,
                        byes: 0,
                    },
                );
            }
            Method::Ack => {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.ok = None;
                    c.acked = true;
                }
            }
            _ => {
                let tag = self.calls.get_mut(&key).map(|c| {
                    if method == Method::Bye {
                        c.byes += 1;
                    }
                    c.tag.clone()
                });
                self.out.push(text(&carrier_response(
                    &msg,
                    200,
                    "OK",
                    tag.as_deref(),
                    None,
                )));
            }
        }
    }
}
