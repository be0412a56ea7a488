//! Hard caps on transactions and stored bytes (`caps.rs`), and the timer queue's pruning:
//! a flood of new requests from an allowed peer is refused with a defined answer, calls
//! already up keep working, and every map drains to zero afterwards.

use super::*;

fn sim_with_caps(max_transactions: usize, max_stored_bytes: usize) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.caps = Caps {
        max_transactions,
        max_stored_bytes,
    };
    sim.sbc.set_config(cfg);
    sim
}

/// A new call from the PBX with its own Call-ID, tag and branch.
fn invite(i: u32, sdp: Option<&str>) -> String {
    pbx_invite(&format!("z9hG4bKflood{i}"), sdp)
        .replace("pbx-call-1", &format!("flood-{i}"))
        .replace("tag=ptag1", &format!("tag=fl{i}"))
}

fn rejections(sim: &mut Sim) -> Vec<&'static str> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::AdmissionRejected { limit, .. } => Some(limit),
            Event::Dropped { reason } if reason.starts_with("max_") => Some(reason),
            _ => None,
        })
        .collect()
}

fn transactions(sim: &Sim) -> usize {
    let s = sim.sbc.stats();
    s.server_transactions + s.client_transactions
}

#[test]
fn invite_flood_beyond_the_transaction_cap_gets_stateless_503_and_calls_up_still_end() {
    let mut sim = sim_with_caps(80, usize::MAX);
    // A call that is up before the flood.
    let _ = establish_outbound(&mut sim);
    let our_tag = sim.sbc.calls()[0].legs[0].local_tag.clone();
    let _ = (sim.take_pbx(), sim.take_carrier(), rejections(&mut sim));

    let (mut admitted, mut refused) = (0, 0);
    for i in 0..500 {
        sim.deliver(pbx(), &invite(i, None));
        for m in sim.take_pbx() {
            match status(&m) {
                100 => admitted += 1,
                503 => {
                    assert_eq!(hdr(&m, HeaderName::RetryAfter), "5");
                    assert!(m.to().tag().is_some());
                    refused += 1;
                }
                s => panic!("unexpected {s}"),
            }
        }
        // New calls stop at 7/8 of the cap (each admitted one holds two transactions).
        assert!(
            transactions(&sim) <= 71,
            "{} transactions",
            transactions(&sim)
        );
    }
    let _ = sim.take_carrier();
    assert_eq!(admitted + refused, 500);
    assert!((30..=35).contains(&admitted), "{admitted} admitted");
    assert_eq!(sim.sbc.stats().calls, 1 + admitted);
    let r = rejections(&mut sim);
    assert_eq!(r.len(), refused);
    assert!(r.iter().all(|l| *l == "max_transactions"));

    // The reserve: the call that was up can still be hung up.
    sim.deliver(
        pbx(),
        &format!(
            "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
        ),
    );
    let out = sim.take_carrier();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].method(),
        Some(&Method::Bye),
        "BYE relayed despite the flood"
    );
    sim.deliver(carrier(), &carrier_response(&out[0], 200, "OK", None, None));
    assert_eq!(status(&sim.take_pbx()[0]), 200);

    // Nothing answers the flood's INVITEs: Timer B ends them; everything drains.
    sim.assert_clean();
}

#[test]
fn other_new_requests_are_dropped_at_the_full_cap() {
    let mut sim = sim_with_caps(100, usize::MAX);
    let options = |i: u32| {
        format!(
            "OPTIONS sip:10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKopt{i};rport
Max-Forwards: 70
From: <sip:pbx@pbx.lan>;tag=o{i}
To: <sip:10.0.0.1>
Call-ID: opt-{i}
CSeq: 1 OPTIONS
Content-Length: 0

"
        )
    };
    let mut answered = 0;
    for i in 0..300 {
        sim.deliver(pbx(), &options(i));
        answered += sim.take_pbx().len();
    }
    assert_eq!(answered, 100, "one answer per transaction the cap allows");
    assert_eq!(sim.sbc.stats().server_transactions, 100);
    let r = rejections(&mut sim);
    assert_eq!(r.len(), 200);
    assert!(r.iter().all(|l| *l == "max_transactions"));
    // Timer J frees them; then OPTIONS are answered again.
    sim.advance(Duration::from_secs(40));
    sim.deliver(pbx(), &options(1000));
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    sim.assert_clean();
}

#[test]
fn stored_bytes_cap_refuses_new_calls_with_many_media_lines() {
    // An offer with many m= lines makes each INVITE (and the one relayed) large.
    let mut big = String::from(SDP_PBX);
    for i in 0..12 {
        big.push_str(&format!(
            "m=audio {} RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n",
            40_002 + 2 * i
        ));
    }
    let mut sim = sim_with_caps(usize::MAX, 16_000);
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..40 {
        sim.deliver(pbx(), &invite(i, Some(&big)));
        for m in sim.take_pbx() {
            match status(&m) {
                100 => ok += 1,
                503 => refused += 1,
                s => panic!("unexpected {s}"),
            }
        }
        assert!(
            sim.sbc.stored_bytes() < 16_000 + 8_000,
            "{} bytes held",
            sim.sbc.stored_bytes()
        );
    }
    let _ = sim.take_carrier();
    assert!(ok > 0 && refused > 0, "{ok} admitted, {refused} refused");
    assert_eq!(ok + refused, 40);
    let r = rejections(&mut sim);
    assert_eq!(r.len(), refused);
    assert!(r.iter().all(|l| *l == "max_stored_bytes"));
    sim.assert_clean();
}

#[test]
fn a_finished_calls_timers_are_pruned_at_once() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.max_call_duration = Some(Duration::from_secs(3600));
    sim.sbc.set_config(cfg);
    let invite = establish_outbound(&mut sim);
    // The 2xx retransmission timer has run: the call's next deadline is its end in an hour.
    sim.advance(Duration::from_secs(2));
    assert!(sim.sbc.poll_timeout().is_some());
    sim.deliver(
        carrier(),
        &format!(
            "BYE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKcarbye;rport
Max-Forwards: 70
From: {};tag=ctag1
To: {}
Call-ID: {}
CSeq: 5 BYE
Content-Length: 0

",
            hdr(&invite, HeaderName::To),
            hdr(&invite, HeaderName::From),
            invite.call_id()
        ),
    );
    let bye = sim.take_pbx().remove(0);
    sim.deliver(
        pbx(),
        &format!(
            "SIP/2.0 200 OK\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: {}\nContent-Length: 0\n\n",
            hdr(&bye, HeaderName::Via),
            hdr(&bye, HeaderName::From),
            hdr(&bye, HeaderName::To),
            bye.call_id(),
            hdr(&bye, HeaderName::CSeq)
        ),
    );
    assert!(sim.sbc.calls().is_empty());
    // Transactions finish within 32 s (Timer J/K); the call's one-hour deadline must not
    // outlive the call.
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.sbc.stats(), Stats::default(), "nothing armed or held");
    assert_eq!(sim.sbc.poll_timeout(), None);
}

#[test]
fn a_flood_its_trunk_refuses_holds_no_state_and_leaves_the_global_rate_to_others() {
    use crate::{
        limit::CallLimits,
        routing::{NumberMatch, OutboundRoute},
    };
    const OTHER: &str = "198.51.100.8:5090";
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.limits = CallLimits {
        max_calls: Some(1000),
        max_cps: Some(10),
    };
    cfg.trunks[0].limits = CallLimits {
        max_calls: Some(1000),
        max_cps: Some(2),
    };
    cfg.trunks.push(TrunkConfig::new(
        "other",
        Target {
            addr: addr(OTHER),
            transport: TransportKind::Udp,
        },
    ));
    cfg.routes = vec![OutboundRoute {
        name: "all".into(),
        matcher: NumberMatch::Prefix(String::new()),
        trunks: vec![0],
        weights: None,
    }];
    sim.sbc.set_config(cfg);

    // 1,000 INVITEs within one second from the PBX: its trunk takes two.
    let mut refused = 0;
    for i in 0..1000 {
        sim.deliver(pbx(), &invite(i, None));
        refused += sim.take_pbx().iter().filter(|m| status(m) == 503).count();
    }
    let _ = sim.take_carrier();
    assert_eq!(refused, 998);
    let s = sim.sbc.stats();
    assert_eq!(s.calls, 2);
    assert_eq!(
        (s.server_transactions, s.client_transactions),
        (2, 2),
        "refusals keep no transaction"
    );
    // Within the same second, the other trunk's calls still find the global rate free.
    let other = Peer {
        addr: addr(OTHER),
        ..carrier()
    };
    for i in 0..5 {
        let inv = with_body(
            &format!(
                "INVITE sip:5557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP {OTHER};branch=z9hG4bKother{i};rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.8>;tag=o{i}
To: <sip:5557654321@203.0.113.1>
Call-ID: other-{i}
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.8:5090>
"
            ),
            SDP_CARRIER,
        );
        sim.deliver(other, &inv);
        let answers: Vec<u16> = sim.take_carrier().iter().map(status).collect();
        assert_eq!(answers, vec![100], "call {i} from the other trunk admitted");
        assert_eq!(sim.take_pbx().len(), 1, "and sent to the PBX");
    }
    sim.assert_clean();
}

#[test]
fn an_answered_call_keeps_no_whole_invite_until_timer_l_and_m() {
    // RFC 6026: in Accepted the INVITE transactions only match retransmissions; their
    // requests (both INVITEs, buffer and header index) went with the 2xx.
    let mut sim = Sim::new();
    let before = sim.sbc.stats().stored_bytes;
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let _ = (sim.take_pbx(), sim.take_carrier());
    assert_eq!(sim.sbc.tx.whole_requests(), 2, "INVITE in, INVITE out");
    let held_ringing = sim.sbc.stats().stored_bytes;
    let mut sim = Sim::new();
    let _ = establish_outbound(&mut sim);
    assert_eq!(
        transactions(&sim),
        2,
        "both INVITE transactions wait for Timer L/M"
    );
    assert_eq!(sim.sbc.tx.whole_requests(), 0);
    let held_answered = sim.sbc.stats().stored_bytes;
    assert!(
        held_answered - before < held_ringing - before,
        "{held_answered} < {held_ringing}"
    );
}

#[test]
fn the_carrier_offer_is_let_go_once_the_call_is_answered() {
    // Failover and redirect recursion resend the offer to another trunk or target until the
    // call is answered; after that, a call held for minutes must not keep it (issue 16).
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let invite = sim
        .take_carrier()
        .into_iter()
        .next()
        .expect("the INVITE to the carrier");
    let kept = |sim: &Sim| {
        sim.sbc
            .calls
            .values()
            .map(|c| (c.offer.is_some(), c.relays.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&sim), [(true, 1)], "kept for failover while ringing");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(kept(&sim), [(false, 0)], "let go with the answer");
    assert_eq!(sim.sbc.calls.len(), 1, "the call goes on");
}

#[test]
fn the_2xx_ack_is_kept_for_64_t1_then_let_go() {
    // The ACK answers the callee's 2xx retransmissions (RFC 3261 §13.2.2.4); they reach the
    // call only while the INVITE client transaction is in Accepted (Timer M, 64·T1 from the
    // 2xx): kept any longer, it would be held for the call's whole life.
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let held = |sim: &Sim| {
        sim.sbc
            .calls
            .values()
            .map(|c| c.acks.iter().flatten().count())
            .sum::<usize>()
    };
    assert_eq!(held(&sim), 1, "the carrier leg's ACK");
    let with_ack = sim.sbc.stats().stored_bytes;
    sim.advance(Duration::from_secs(31));
    let ok = carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER));
    sim.deliver(carrier(), &ok);
    let acks = sim.take_carrier();
    assert_eq!(
        acks.len(),
        1,
        "a 2xx retransmission within 64·T1 is ACKed again"
    );
    assert_eq!(acks[0].method(), Some(&Method::Ack));
    sim.advance(Duration::from_secs(2));
    assert_eq!(held(&sim), 0, "64·T1 after it was sent");
    assert_eq!(
        transactions(&sim),
        0,
        "Timer M ended the INVITE client transaction too"
    );
    assert!(sim.sbc.stats().stored_bytes < with_ack);
    sim.deliver(carrier(), &ok);
    assert!(
        sim.take_carrier().is_empty(),
        "a 2xx after Timer M is a stray"
    );
    assert_eq!(sim.sbc.calls.len(), 1, "the call goes on");
}

#[test]
fn the_branch_indexes_hold_a_hash_and_a_handle_per_transaction() {
    // They owned every branch a second time, the server index a list per branch as well:
    // ~130 bytes and two allocations per server transaction, ~70 and one per client one.
    let mut sim = sim_with_caps(1000, usize::MAX);
    for i in 0..200 {
        sim.deliver(pbx(), &invite(i, Some(SDP_PBX)));
        // A retransmission still finds its transaction (answered again, no new call).
        if i % 50 == 0 {
            sim.deliver(pbx(), &invite(i, Some(SDP_PBX)));
        }
    }
    assert_eq!(sim.sbc.stats().calls, 200);
    assert_eq!(sim.sbc.tx.len(), (200, 200));
    // 16 bytes and a control byte per slot, at most half the slots empty (hashbrown's
    // power-of-two tables, 7/8 full at most), plus a group of control bytes each.
    let bytes = sim.sbc.tx.index_bytes();
    assert!(
        bytes <= 400 * 2 * 17 + 2 * 16,
        "{bytes} bytes for 400 transactions"
    );
}

#[test]
fn a_call_and_its_transactions_are_small() {
    // Every concurrent call holds its `Call` and, for Timer L/M's 32 s after the 2xx, two
    // INVITE transactions: state set for a moment only (a pending 2xx or reliable provisional,
    // a request let go, the 2xx ACK kept for 64·T1) is boxed, so is state few calls ever have
    // (redirects followed, SRTP), and timer tables have a few slots, not one per RFC timer.
    // Each machine keeps its timer values in 16 bytes (`Timings`), not a 64-byte `TimerConfig`
    // (600 and 512 bytes before).
    let sizes = [
        (
            "redirect::Tried",
            std::mem::size_of::<super::super::redirect::Tried>(),
            8,
        ),
        (
            "srtp_policy::CallSrtp",
            std::mem::size_of::<super::super::srtp_policy::CallSrtp>(),
            8,
        ),
        ("Call", std::mem::size_of::<call::Call>(), 1336),
        (
            "ServerEntry",
            std::mem::size_of::<transactions::ServerEntry>(),
            552,
        ),
        (
            "ClientEntry",
            std::mem::size_of::<transactions::ClientEntry>(),
            464,
        ),
    ];
    for (what, size, limit) in sizes {
        assert!(size <= limit, "a {what} is {size} bytes");
    }
}
