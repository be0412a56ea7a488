//! Deterministic tests of the four transaction state machines: every state and timer
//! transition, then whole transactions over a seeded lossy link (10 %, 30 %, 50 % loss).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::*;

fn t0() -> Instant {
    #[allow(
        clippy::disallowed_methods,
        reason = "test origin only; all time is simulated"
    )]
    Instant::now()
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn drain_tx<T>(mut f: impl FnMut() -> Option<T>) -> Vec<T> {
    std::iter::from_fn(&mut f).collect()
}

/// Advances `handle_timeout` deadline by deadline up to `until`, collecting transmissions with
/// their times.
macro_rules! run_until {
    ($tx:expr, $until:expr) => {{
        let mut sent = Vec::new();
        while let Some(at) = $tx.poll_timeout() {
            if at > $until {
                break;
            }
            $tx.handle_timeout(at);
            while let Some(m) = $tx.poll_transmit() {
                sent.push((at, m));
            }
        }
        sent
    }};
}

// ---- INVITE client -------------------------------------------------------------------------

#[test]
fn invite_client_retransmits_with_doubling_then_times_out_with_b() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), false, TimerConfig::default());
    assert_eq!(drain_tx(|| tx.poll_transmit()), vec![b("INVITE")]);
    let sent = run_until!(tx, now + S(40));
    let offsets: Vec<_> = sent.iter().map(|(at, _)| *at - now).collect();
    // Timer A: 0.5, 1, 2, 4, 8, 16 s intervals; Timer B at 64·T1 = 32 s.
    assert_eq!(
        offsets,
        [MS(500), MS(1500), MS(3500), MS(7500), MS(15500), MS(31500)]
    );
    assert_eq!(
        drain_tx(|| tx.poll_event()),
        [TxEvent::TimedOut(Timer::B), TxEvent::Terminated]
    );
    assert_eq!(tx.state(), InviteClientState::Terminated);
}

#[test]
fn invite_client_on_reliable_transport_never_retransmits() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), true, TimerConfig::default());
    tx.poll_transmit();
    assert!(run_until!(tx, now + S(40)).is_empty());
    assert_eq!(tx.poll_event(), Some(TxEvent::TimedOut(Timer::B)));
}

#[test]
fn invite_client_provisional_stops_a_and_b_and_timer_c_fires() {
    let now = t0();
    let cfg = TimerConfig {
        timer_c: S(181),
        ..TimerConfig::default()
    };
    let mut tx = InviteClient::new(now, b("INVITE"), false, cfg);
    tx.poll_transmit();
    assert!(tx.handle_response(now + MS(100), 180, || unreachable!()));
    assert_eq!(tx.state(), InviteClientState::Proceeding);
    // A second provisional at 60 s restarts Timer C.
    assert!(tx.handle_response(now + S(60), 183, || unreachable!()));
    assert!(
        run_until!(tx, now + S(242)).is_empty(),
        "no retransmission in Proceeding"
    );
    assert_eq!(tx.poll_event(), Some(TxEvent::TimedOut(Timer::C)));
    // Timer C fired at 60 + 181 s, after which the transaction is bounded by 64·T1.
    assert_eq!(tx.poll_timeout(), Some(now + S(241) + S(32)));
    tx.cancel_sent(now + S(241));
    assert_eq!(tx.state(), InviteClientState::Proceeding);
    assert!(tx.handle_response(now + S(242), 487, || b("ACK")));
    assert_eq!(tx.poll_transmit(), Some(b("ACK")));
    assert_eq!(tx.state(), InviteClientState::Completed);
}

#[test]
fn invite_client_acks_non_2xx_and_absorbs_its_retransmissions_until_d() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.handle_response(now + MS(10), 486, || b("ACK")));
    assert_eq!(tx.state(), InviteClientState::Completed);
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("ACK")]);
    // The 486 retransmitted: ACK again, not shown to the TU.
    assert!(!tx.handle_response(now + MS(600), 486, || unreachable!()));
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("ACK")]);
    assert!(run_until!(tx, now + S(31)).is_empty());
    assert_eq!(tx.state(), InviteClientState::Completed);
    run_until!(tx, now + MS(32_010));
    assert_eq!(tx.state(), InviteClientState::Terminated);
    assert_eq!(drain_tx(|| tx.poll_event()), [TxEvent::Terminated]);
}

#[test]
fn invite_client_timer_d_is_zero_on_reliable_transport() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), true, TimerConfig::default());
    tx.poll_transmit();
    tx.handle_response(now, 603, || b("ACK"));
    assert_eq!(tx.poll_timeout(), Some(now));
    tx.handle_timeout(now);
    assert_eq!(tx.state(), InviteClientState::Terminated);
}

#[test]
fn invite_client_2xx_goes_to_accepted_and_retransmissions_reach_tu_until_m() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.handle_response(now + MS(5), 200, || unreachable!()));
    assert_eq!(tx.state(), InviteClientState::Accepted);
    assert!(
        tx.poll_transmit().is_none(),
        "the TU ACKs a 2xx, not the transaction"
    );
    assert!(tx.handle_response(now + MS(505), 200, || unreachable!()));
    assert!(!tx.handle_response(now + MS(600), 486, || unreachable!()));
    run_until!(tx, now + MS(32_005));
    assert_eq!(tx.state(), InviteClientState::Terminated);
}

#[test]
fn client_transactions_let_the_request_go_with_the_final_response() {
    // RFC 6026 §7.2: Accepted (and Completed) resend nothing of the request, so it is not
    // held for Timer M's (or D's, K's) 32 s.
    let now = t0();
    let invite = b("INVITE sip:x SIP/2.0");
    let mut tx = InviteClient::new(now, invite.clone(), false, TimerConfig::default());
    assert_eq!(tx.held_bytes(), invite.len());
    assert!(tx.handle_response(now + MS(5), 180, || unreachable!()));
    assert!(!tx.answered());
    assert_eq!(tx.held_bytes(), invite.len(), "CANCEL may still follow");
    assert!(tx.handle_response(now + MS(9), 200, || unreachable!()));
    assert!(tx.answered());
    assert_eq!(tx.held_bytes(), 0);
    let mut tx = InviteClient::new(now, invite.clone(), false, TimerConfig::default());
    assert!(tx.handle_response(now + MS(5), 486, || b("ACK")));
    assert_eq!(tx.held_bytes(), 3, "only the ACK it resends");
    let mut tx = NonInviteClient::new(now, b("BYE"), false, TimerConfig::default());
    assert!(tx.handle_response(now + MS(5), 200));
    assert!(tx.answered());
    assert_eq!(tx.held_bytes(), 0);
}

#[test]
fn invite_client_transport_error_terminates() {
    let now = t0();
    let mut tx = InviteClient::new(now, b("INVITE"), false, TimerConfig::default());
    tx.handle_transport_error();
    assert_eq!(
        drain_tx(|| tx.poll_event()),
        [TxEvent::TransportError, TxEvent::Terminated]
    );
    assert_eq!(tx.poll_timeout(), None);
}

// ---- non-INVITE client ---------------------------------------------------------------------

#[test]
fn non_invite_client_timer_e_doubles_to_t2_then_f_times_out() {
    let now = t0();
    let mut tx = NonInviteClient::new(now, b("BYE"), false, TimerConfig::default());
    tx.poll_transmit();
    let sent = run_until!(tx, now + S(40));
    let offsets: Vec<_> = sent.iter().map(|(at, _)| (*at - now).as_millis()).collect();
    assert_eq!(
        offsets,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ],
        "0.5, 1, 2, 4, then every T2 = 4 s"
    );
    assert_eq!(
        drain_tx(|| tx.poll_event()),
        [TxEvent::TimedOut(Timer::F), TxEvent::Terminated]
    );
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2() {
    let now = t0();
    let mut tx = NonInviteClient::new(now, b("OPTIONS"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.handle_response(now + MS(100), 100));
    assert_eq!(tx.state(), NonInviteClientState::Proceeding);
    let sent = run_until!(tx, now + S(10));
    let offsets: Vec<_> = sent.iter().map(|(at, _)| (*at - now).as_millis()).collect();
    assert_eq!(offsets, [500, 4500, 8500]);
}

#[test]
fn non_invite_client_final_completes_absorbs_retransmits_and_k_ends_it() {
    let now = t0();
    let mut tx = NonInviteClient::new(now, b("BYE"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.handle_response(now + MS(20), 200));
    assert!(!tx.handle_response(now + MS(520), 200));
    assert_eq!(tx.state(), NonInviteClientState::Completed);
    assert_eq!(tx.poll_timeout(), Some(now + MS(20) + S(5)), "Timer K = T4");
    run_until!(tx, now + S(6));
    assert_eq!(tx.state(), NonInviteClientState::Terminated);
    let mut reliable = NonInviteClient::new(now, b("BYE"), true, TimerConfig::default());
    reliable.handle_response(now, 404);
    assert_eq!(
        reliable.poll_timeout(),
        Some(now),
        "Timer K = 0 on reliable transports"
    );
}

// ---- INVITE server -------------------------------------------------------------------------

#[test]
fn invite_server_sends_100_at_once_and_repeats_last_provisional() {
    let now = t0();
    let mut tx = InviteServer::new(b("100"), false, TimerConfig::default());
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("100")]);
    assert_eq!(tx.handle_retransmission(), Absorbed::Yes);
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("100")]);
    assert!(tx.send_response(now, 180, b("180")));
    assert_eq!(tx.handle_retransmission(), Absorbed::Yes);
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("180"), b("180")]);
}

#[test]
fn invite_server_2xx_accepted_absorbs_invites_passes_ack_until_l() {
    let now = t0();
    let mut tx = InviteServer::new(b("100"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.send_response(now, 200, b("200")));
    assert_eq!(tx.state(), InviteServerState::Accepted);
    assert_eq!(tx.handle_retransmission(), Absorbed::Yes);
    assert_eq!(
        drain_tx(|| tx.poll_transmit()),
        [b("200")],
        "INVITE retransmission absorbed"
    );
    assert!(
        tx.send_response(now + MS(500), 200, b("200")),
        "TU retransmits the 2xx"
    );
    assert_eq!(tx.handle_ack(now + MS(600)), Absorbed::PassToTu);
    assert!(
        !tx.send_response(now, 486, b("486")),
        "no final after a final"
    );
    assert!(run_until!(tx, now + S(31)).is_empty());
    run_until!(tx, now + S(33));
    assert_eq!(tx.state(), InviteServerState::Terminated);
}

#[test]
fn invite_server_non_2xx_retransmits_with_g_until_ack_then_i() {
    let now = t0();
    let mut tx = InviteServer::new(b("100"), false, TimerConfig::default());
    tx.poll_transmit();
    assert!(tx.send_response(now, 486, b("486")));
    tx.poll_transmit();
    let sent = run_until!(tx, now + S(9));
    let offsets: Vec<_> = sent.iter().map(|(at, _)| (*at - now).as_millis()).collect();
    assert_eq!(offsets, [500, 1500, 3500, 7500], "G doubles up to T2");
    assert_eq!(tx.handle_retransmission(), Absorbed::Yes);
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("486")]);
    assert_eq!(tx.handle_ack(now + S(9)), Absorbed::Yes);
    assert_eq!(tx.state(), InviteServerState::Confirmed);
    assert_eq!(
        tx.handle_ack(now + S(9)),
        Absorbed::Yes,
        "ACK retransmission absorbed"
    );
    assert_eq!(tx.poll_timeout(), Some(now + S(9) + S(5)), "Timer I = T4");
    assert!(run_until!(tx, now + S(15)).is_empty());
    assert_eq!(tx.state(), InviteServerState::Terminated);
}

#[test]
fn invite_server_timer_h_reports_missing_ack() {
    let now = t0();
    let mut tx = InviteServer::new(b("100"), true, TimerConfig::default());
    tx.poll_transmit();
    tx.send_response(now, 503, b("503"));
    tx.poll_transmit();
    assert!(
        run_until!(tx, now + S(33)).is_empty(),
        "no Timer G on reliable transports"
    );
    assert_eq!(
        drain_tx(|| tx.poll_event()),
        [TxEvent::TimedOut(Timer::H), TxEvent::Terminated]
    );
}

// ---- non-INVITE server ---------------------------------------------------------------------

#[test]
fn non_invite_server_trying_absorbs_silently_then_answers_retransmissions_until_j() {
    let now = t0();
    let mut tx = NonInviteServer::new(false, TimerConfig::default());
    tx.handle_retransmission();
    assert!(tx.poll_transmit().is_none(), "nothing to resend in Trying");
    assert!(tx.send_response(now, 100, b("100")));
    assert_eq!(tx.state(), NonInviteServerState::Proceeding);
    tx.handle_retransmission();
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("100"), b("100")]);
    assert!(tx.send_response(now, 200, b("200")));
    assert!(!tx.send_response(now, 200, b("200")));
    tx.handle_retransmission();
    assert_eq!(drain_tx(|| tx.poll_transmit()), [b("200"), b("200")]);
    assert_eq!(tx.poll_timeout(), Some(now + S(32)), "Timer J = 64·T1");
    run_until!(tx, now + S(32));
    assert_eq!(tx.state(), NonInviteServerState::Terminated);
    let mut reliable = NonInviteServer::new(true, TimerConfig::default());
    reliable.send_response(now, 200, b("200"));
    assert_eq!(
        reliable.poll_timeout(),
        Some(now),
        "Timer J = 0 on reliable transports"
    );
}

// ---- whole transactions over a lossy link ---------------------------------------------------

/// splitmix64: a tiny seeded generator, so every loss pattern is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn lost(&mut self, loss_percent: u64) -> bool {
        self.next() % 100 < loss_percent
    }
}

/// A one-way link with fixed latency and random loss.
struct Link {
    queue: VecDeque<(Instant, Bytes)>,
    latency: Duration,
    loss: u64,
}

impl Link {
    fn send(&mut self, rng: &mut Rng, now: Instant, m: Bytes) {
        if !rng.lost(self.loss) {
            self.queue.push_back((now + self.latency, m));
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    client_finals_to_tu: usize,
    client_timed_out: bool,
    server_requests_to_tu: usize,
    server_timed_out: bool,
    steps: usize,
}

/// A non-INVITE request answered 200 by the server TU as soon as it sees it.
fn non_invite_over_lossy_link(seed: u64, loss: u64) -> Outcome {
    let now0 = t0();
    let cfg = TimerConfig::default();
    let mut rng = Rng(seed);
    let mut up = Link {
        queue: VecDeque::new(),
        latency: MS(20),
        loss,
    };
    let mut down = Link {
        queue: VecDeque::new(),
        latency: MS(20),
        loss,
    };
    let mut client = NonInviteClient::new(now0, b("BYE"), false, cfg);
    let mut server: Option<NonInviteServer> = None;
    let mut out = Outcome::default();
    let mut now = now0;
    loop {
        out.steps += 1;
        assert!(out.steps < 10_000, "livelock");
        while let Some(m) = client.poll_transmit() {
            up.send(&mut rng, now, m);
        }
        if let Some(s) = server.as_mut() {
            while let Some(m) = s.poll_transmit() {
                down.send(&mut rng, now, m);
            }
            while let Some(e) = s.poll_event() {
                assert_eq!(
                    e,
                    TxEvent::Terminated,
                    "a non-INVITE server never times out"
                );
            }
        }
        while let Some(e) = client.poll_event() {
            if e == TxEvent::TimedOut(Timer::F) {
                out.client_timed_out = true;
            }
        }
        let server_done = server
            .as_ref()
            .is_none_or(|s| s.state() == NonInviteServerState::Terminated);
        if client.state() == NonInviteClientState::Terminated && server_done {
            return out;
        }
        // Step to the earliest of the four event sources.
        let next = [
            client.poll_timeout(),
            server.as_ref().and_then(NonInviteServer::poll_timeout),
            up.next_at(),
            down.next_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            // Nothing left to happen: only legal if the request never arrived.
            assert!(server.is_none() || client.state() == NonInviteClientState::Terminated);
            return out;
        };
        now = next;
        client.handle_timeout(now);
        if let Some(s) = server.as_mut() {
            s.handle_timeout(now);
        }
        while up.next_at().is_some_and(|at| at <= now) {
            up.queue.pop_front();
            match server.as_mut() {
                None => {
                    let mut s = NonInviteServer::new(false, cfg);
                    out.server_requests_to_tu += 1;
                    assert!(s.send_response(now, 200, b("200")));
                    server = Some(s);
                }
                Some(s) => s.handle_retransmission(),
            }
        }
        while down.next_at().is_some_and(|at| at <= now) {
            down.queue.pop_front();
            if client.handle_response(now, 200) {
                out.client_finals_to_tu += 1;
            }
        }
    }
}

/// An INVITE rejected 486 by the server TU: exercises ACK generation, Timers A, D, G, H, I.
fn invite_486_over_lossy_link(seed: u64, loss: u64) -> Outcome {
    let now0 = t0();
    let cfg = TimerConfig::default();
    let mut rng = Rng(seed);
    let mut up = Link {
        queue: VecDeque::new(),
        latency: MS(20),
        loss,
    };
    let mut down = Link {
        queue: VecDeque::new(),
        latency: MS(20),
        loss,
    };
    let mut client = InviteClient::new(now0, b("INVITE"), false, cfg);
    let mut server: Option<InviteServer> = None;
    let mut out = Outcome::default();
    let mut now = now0;
    loop {
        out.steps += 1;
        assert!(out.steps < 10_000, "livelock");
        while let Some(m) = client.poll_transmit() {
            up.send(&mut rng, now, m);
        }
        while let Some(e) = client.poll_event() {
            if e == TxEvent::TimedOut(Timer::B) {
                out.client_timed_out = true;
            }
        }
        if let Some(s) = server.as_mut() {
            while let Some(m) = s.poll_transmit() {
                down.send(&mut rng, now, m);
            }
            while let Some(e) = s.poll_event() {
                if e == TxEvent::TimedOut(Timer::H) {
                    out.server_timed_out = true;
                }
            }
        }
        let server_done = server
            .as_ref()
            .is_none_or(|s| s.state() == InviteServerState::Terminated);
        if client.state() == InviteClientState::Terminated && server_done {
            return out;
        }
        let next = [
            client.poll_timeout(),
            server.as_ref().and_then(InviteServer::poll_timeout),
            up.next_at(),
            down.next_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return out };
        now = next;
        client.handle_timeout(now);
        if let Some(s) = server.as_mut() {
            s.handle_timeout(now);
        }
        while let Some((at, m)) = up.queue.front().cloned() {
            if at > now {
                break;
            }
            up.queue.pop_front();
            match (server.as_mut(), &m[..]) {
                (None, b"INVITE") => {
                    let mut s = InviteServer::new(b("100"), false, cfg);
                    out.server_requests_to_tu += 1;
                    assert!(s.send_response(now, 486, b("486")));
                    server = Some(s);
                }
                (Some(s), b"INVITE") => {
                    s.handle_retransmission();
                }
                (Some(s), b"ACK") => {
                    assert_eq!(s.handle_ack(now), Absorbed::Yes);
                }
                _ => {}
            }
        }
        while let Some((at, m)) = down.queue.front().cloned() {
            if at > now {
                break;
            }
            down.queue.pop_front();
            let status = if &m[..] == b"100" { 100 } else { 486 };
            if client.handle_response(now, status, || b("ACK")) && status == 486 {
                out.client_finals_to_tu += 1;
            }
        }
    }
}

fn check_loss(loss: u64, min_success_percent: usize, run: fn(u64, u64) -> Outcome) {
    let runs = 200;
    let mut ok = 0;
    let mut server_timeouts = 0;
    for seed in 0..runs {
        let o = run(seed * 7919 + loss, loss);
        // The TU hears the final response at most once, and either hears it or is told of
        // the timeout — never both, never neither.
        assert!(o.client_finals_to_tu <= 1, "seed {seed}: {o:?}");
        assert_ne!(
            o.client_finals_to_tu == 1,
            o.client_timed_out,
            "seed {seed}: {o:?}"
        );
        assert!(o.server_requests_to_tu <= 1, "seed {seed}: {o:?}");
        if o.client_finals_to_tu == 1 {
            assert_eq!(o.server_requests_to_tu, 1, "seed {seed}: {o:?}");
            ok += 1;
        }
        server_timeouts += usize::from(o.server_timed_out);
    }
    // Timer H fires only if every retransmission of the final (Timer G) or every ACK was lost:
    // about 0.75^11 ≈ 4 % of runs at 50 % loss, practically never at 10 %.
    let max_timeouts = match loss {
        0..=10 => 0,
        11..=30 => 2,
        _ => 10,
    };
    assert!(
        server_timeouts * 100 <= runs as usize * max_timeouts,
        "{server_timeouts}/{runs} server transactions never saw the ACK at {loss}% loss"
    );
    assert!(
        ok * 100 >= runs as usize * min_success_percent,
        "only {ok}/{runs} succeeded at {loss}% loss"
    );
}

#[test]
fn non_invite_survives_10_30_50_percent_loss() {
    // Success needs one request and one response through in ~10 tries: at 50 % loss each
    // try succeeds with p = 0.25, so ≈ 95 % of transactions complete.
    check_loss(10, 100, non_invite_over_lossy_link);
    check_loss(30, 99, non_invite_over_lossy_link);
    check_loss(50, 85, non_invite_over_lossy_link);
}

#[test]
fn invite_486_survives_10_30_50_percent_loss() {
    check_loss(10, 100, invite_486_over_lossy_link);
    check_loss(30, 99, invite_486_over_lossy_link);
    check_loss(50, 85, invite_486_over_lossy_link);
}

#[test]
fn lossless_invite_486_ends_with_ack_and_no_timeouts() {
    let o = invite_486_over_lossy_link(1, 0);
    assert_eq!(o.client_finals_to_tu, 1);
    assert!(!o.client_timed_out && !o.server_timed_out, "{o:?}");
}
