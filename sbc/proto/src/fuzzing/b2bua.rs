//! The B2BUA driven from both sides by a fuzzed sequence of datagrams, with simulated time and
//! the real media table (`SimMedia`: its commands executed in memory, warm pairs on);
//! afterwards every timer runs out and nothing may be left behind.
//!
//! # Input
//! A sequence of at most [`MAX_OPS`] operations, each three bytes and a datagram ended by a NUL
//! byte (or the end of the input), so a seed is readable text:
//!
//! - side: `o` is the outside (carriers), anything else the inside (PBX);
//! - source, `0`–`3`: the side's main peer (the PBX / the first trunk), a second one (the PBX
//!   from another port / the second trunk), the main peer over TCP, a stranger address;
//! - time advance after the datagram, `0`–`9`: 0, 1 ms, 20 ms, 100 ms, 500 ms, 2 s, 8 s, 32 s,
//!   2 min, 1 h (timers due on the way fire);
//! - the datagram, in which placeholders stand for what the SBC last sent to that side, so a
//!   seed recorded from a real flow still matches whatever identifiers the SBC drew: `$V`
//!   top Via, `$C` Call-ID, `$F` From, `$T` To, `$S` CSeq of the last *request*; `$c`, `$f`,
//!   `$t` Call-ID, From and To of the last *response*.
//!
//! # Properties
//! No panic; everything the SBC sends parses; and after the sequence, once simulated time has
//! run two hours past the end (calls are limited to one hour), no call, dialog, transaction,
//! timer or media session is left, and the media table holds no port pair, statistics slot,
//! trunk quota, socket or fast-path mapping.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    b2bua::{B2bua, B2buaConfig, LocalAddr, Rng, Stats, Target, TrunkConfig},
    media::SimMedia,
    net::{ConnId, Peer, Side, TransportKind},
    sip::{HeaderName, Limits, Message},
};

/// Most operations taken from one input (bounds the time one input can take).
pub const MAX_OPS: usize = 64;
/// Most timer firings in one advance: more means timers re-arm without time passing.
const MAX_FIRINGS: usize = 100_000;
/// Longest call before the B2BUA ends it, so every call ends within the drain.
const MAX_CALL: Duration = Duration::from_secs(3600);
/// How far past the sequence time runs before the leak check.
const DRAIN: Duration = Duration::from_secs(2 * 3600);
/// Time advance per digit.
const ADVANCE_MS: [u64; 10] = [0, 1, 20, 100, 500, 2_000, 8_000, 32_000, 120_000, 3_600_000];

const PBX: &str = "10.0.0.10:5070";
const CARRIER: &str = "198.51.100.7:5090";
const CARRIER2: &str = "198.51.100.8:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn config() -> B2buaConfig {
    let udp = |a: &str| Target {
        addr: addr(a),
        transport: TransportKind::Udp,
    };
    let local = |a: &str| LocalAddr {
        addr: addr(a),
        transport: TransportKind::Udp,
    };
    B2buaConfig {
        user_agent: "sbc-fuzz".into(),
        max_call_duration: Some(MAX_CALL),
        ..B2buaConfig::new(
            local("10.0.0.1:5060"),
            local("203.0.113.1:5060"),
            udp(PBX),
            vec![
                TrunkConfig::new("carrier", udp(CARRIER)),
                TrunkConfig::new("carrier2", udp(CARRIER2)),
            ],
        )
    }
}

/// The peer a source digit stands for on `side`.
fn peer(side: Side, source: u8) -> Peer {
    let (main, second, stranger) = match side {
        Side::Inside => (PBX, "10.0.0.10:5999", "10.0.0.99:5060"),
        Side::Outside => (CARRIER, CARRIER2, "192.0.2.66:5060"),
    };
    let (a, transport, conn) = match source {
        0 => (main, TransportKind::Udp, None),
        1 => (second, TransportKind::Udp, None),
        2 => (main, TransportKind::Tcp, Some(ConnId(1))),
        _ => (stranger, TransportKind::Udp, None),
    };
    Peer {
        side,
        transport,
        addr: addr(a),
        conn,
        local: None,
    }
}

/// What the SBC last sent to one side, for the placeholders.
#[derive(Default)]
struct Seen {
    request: Option<Message>,
    response: Option<Message>,
}

impl Seen {
    fn expand(&self, datagram: &[u8]) -> Vec<u8> {
        let value = |m: &Option<Message>, name: HeaderName| -> Vec<u8> {
            m.as_ref()
                .and_then(|m| m.headers().first(name))
                .and_then(|h| h.value_str())
                .unwrap_or_default()
                .as_bytes()
                .to_vec()
        };
        let mut out = Vec::with_capacity(datagram.len() + 256);
        let mut i = 0;
        while i < datagram.len() {
            let with = match (datagram[i], datagram.get(i + 1)) {
                (b'$', Some(b'V')) => value(&self.request, HeaderName::Via),
                (b'$', Some(b'C')) => value(&self.request, HeaderName::CallId),
                (b'$', Some(b'F')) => value(&self.request, HeaderName::From),
                (b'$', Some(b'T')) => value(&self.request, HeaderName::To),
                (b'$', Some(b'S')) => value(&self.request, HeaderName::CSeq),
                (b'$', Some(b'c')) => value(&self.response, HeaderName::CallId),
                (b'$', Some(b'f')) => value(&self.response, HeaderName::From),
                (b'$', Some(b't')) => value(&self.response, HeaderName::To),
                (b, _) => {
                    out.push(b);
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&with);
            i += 2;
        }
        out
    }
}

/// What one run did, for tests that check a seed reaches the state it was written for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// Operations whose datagram parsed and reached the B2BUA.
    delivered: usize,
    /// Messages the SBC sent to the PBX and to the carriers.
    sent: [usize; 2],
    /// Most calls alive at once.
    max_calls: usize,
    /// Most media sessions alive at once.
    max_sessions: usize,
}

struct Harness {
    sbc: B2bua,
    media: SimMedia,
    now: Instant,
    seen: [Seen; 2],
    outcome: Outcome,
}

impl Harness {
    fn collect(&mut self) {
        while let Some(t) = self.sbc.poll_transmit() {
            let msg = Message::parse(t.data.clone(), &Limits::default()).unwrap_or_else(|e| {
                panic!(
                    "the SBC sent an unparseable message ({e}):\n{}",
                    String::from_utf8_lossy(&t.data)
                )
            });
            let i = usize::from(t.to.side == Side::Outside);
            self.outcome.sent[i] += 1;
            if msg.is_request() {
                self.seen[i].request = Some(msg);
            } else {
                self.seen[i].response = Some(msg);
            }
        }
        // The driver consumes events; they carry nothing the leak check needs.
        while self.sbc.poll_event().is_some() {}
        let stats = self.sbc.stats();
        self.outcome.max_calls = self.outcome.max_calls.max(stats.calls);
        self.outcome.max_sessions = self.outcome.max_sessions.max(self.media.len());
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        let mut firings = 0;
        while let Some(at) = self.sbc.poll_timeout() {
            if at > until {
                break;
            }
            firings += 1;
            assert!(firings <= MAX_FIRINGS, "timers fire without time passing");
            self.now = self.now.max(at);
            let now = self.now;
            self.media.drive(now, |t| self.sbc.handle_timeout(now, t));
            self.collect();
        }
        self.now = until;
        // The media table's own timers, as the daemon's tick task runs them.
        self.media.tick(self.now);
        self.collect();
    }
}

/// Runs one input (see the module documentation) and checks the properties.
pub fn b2bua(data: &[u8]) {
    run(data);
}

/// [`b2bua`], returning what the run did.
fn run(data: &[u8]) -> Outcome {
    #[allow(
        clippy::disallowed_methods,
        reason = "fuzzing entry point: an origin for simulated time"
    )]
    let now = Instant::now();
    let mut media = SimMedia::new(
        addr("10.0.0.1:0").ip(),
        addr("203.0.113.1:0").ip(),
        10_000,
        20_000,
    );
    // As the daemon runs a userspace relay: new streams take pairs bound ahead.
    media.set_warm_pairs(now, 2);
    let mut h = Harness {
        sbc: B2bua::new(config(), Rng::from_test_seed(0x5eed)),
        media,
        now,
        seen: [Seen::default(), Seen::default()],
        outcome: Outcome::default(),
    };
    let mut rest = data;
    for _ in 0..MAX_OPS {
        let [side, source, advance, tail @ ..] = rest else {
            break;
        };
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let datagram = &tail[..end];
        rest = tail.get(end + 1..).unwrap_or_default();
        let side = if *side == b'o' {
            Side::Outside
        } else {
            Side::Inside
        };
        let from = peer(side, source.wrapping_sub(b'0') % 4);
        let bytes = h.seen[usize::from(side == Side::Outside)].expand(datagram);
        if let Ok(msg) = Message::parse(Bytes::from(bytes), &Limits::default()) {
            h.outcome.delivered += 1;
            let now = h.now;
            h.media
                .drive(now, |t| h.sbc.handle_message(now, from, msg, t));
            // What the relay reported (a port that could not be bound), as the daemon's driver
            // handles it at once.
            if h.media.table().has_events() {
                h.media.drive(now, |t| h.sbc.handle_timeout(now, t));
            }
            h.collect();
        }
        let ms = ADVANCE_MS[usize::from(advance.wrapping_sub(b'0') % 10)];
        h.advance(Duration::from_millis(ms));
    }
    h.advance(DRAIN);
    assert_eq!(
        h.sbc.stats(),
        Stats::default(),
        "state left after every timer ran out"
    );
    assert!(
        h.media.is_empty(),
        "media sessions left: {:?}",
        h.media.ids()
    );
    assert!(
        h.media.holds_nothing(),
        "the media table holds ports, slots, quotas, sockets or mappings after every call ended"
    );
    assert_eq!(
        h.sbc.poll_timeout(),
        None,
        "timers left after every call ended"
    );
    h.outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds, recorded from real flows.
    fn seed(name: &str) -> &'static [u8] {
        match name {
            "outbound_call" => include_bytes!("../../../../fuzz/corpus/b2bua/outbound_call"),
            "outbound_call_carrier_hangs_up" => {
                include_bytes!("../../../../fuzz/corpus/b2bua/outbound_call_carrier_hangs_up")
            }
            "outbound_cancel" => include_bytes!("../../../../fuzz/corpus/b2bua/outbound_cancel"),
            "outbound_busy" => include_bytes!("../../../../fuzz/corpus/b2bua/outbound_busy"),
            "inbound_call" => include_bytes!("../../../../fuzz/corpus/b2bua/inbound_call"),
            "regression_bye_before_answer" => {
                include_bytes!("../../../../fuzz/corpus/b2bua/regression_bye_before_answer")
            }
            "regression_contact_scheme" => {
                include_bytes!("../../../../fuzz/corpus/b2bua/regression_contact_scheme")
            }
            _ => panic!("no seed {name}"),
        }
    }

    #[test]
    fn every_seed_reaches_a_call_through_both_sides_and_drains() {
        for (name, ops) in [
            ("outbound_call", 7),
            ("outbound_call_carrier_hangs_up", 6),
            ("outbound_cancel", 5),
            ("outbound_busy", 3),
            ("inbound_call", 9),
        ] {
            let o = run(seed(name));
            assert_eq!(o.delivered, ops, "{name}: every datagram parses");
            assert_eq!(o.max_calls, 1, "{name}");
            assert_eq!(o.max_sessions, 1, "{name}: media was allocated");
            assert!(o.sent[0] >= 2 && o.sent[1] >= 2, "{name}: {o:?}");
        }
    }

    #[test]
    fn answered_calls_reach_both_ends_with_the_placeholders() {
        // Up to the ACK, the outbound call is relayed both ways: INVITE, 180 and 200 on one
        // side, the 200 and ACK on the other; a wrong placeholder would stop it at the INVITE.
        let o = run(seed("outbound_call"));
        // To the carrier: INVITE, ACK, BYE; to the PBX: 100, 180, 200, 200 (BYE).
        assert_eq!(o.sent, [4, 3], "{o:?}");
    }

    #[test]
    fn a_call_left_up_is_ended_by_the_drain() {
        // The outbound call without its BYE: the one-hour limit ends it during the drain.
        let data = seed("outbound_call");
        let mut ends = data
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == 0)
            .map(|(i, _)| i);
        let after_ack = ends.nth(4).expect("five operations");
        let o = run(&data[..=after_ack]);
        assert_eq!(o.max_calls, 1);
    }

    #[test]
    fn garbage_is_no_operation() {
        assert_eq!(run(b"").delivered, 0);
        assert_eq!(run(b"o09not sip\0i1").delivered, 0);
    }

    #[test]
    fn regression_bye_before_answer() {
        run(seed("regression_bye_before_answer"));
    }

    #[test]
    fn regression_contact_scheme() {
        // A 2xx whose Contact is not a SIP URI: the ACK and BYE must still parse.
        run(seed("regression_contact_scheme"));
    }
}
