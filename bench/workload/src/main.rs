//! A fixed call workload through the sans-I/O SBC core, for `cargo xtask bench check`.
//!
//! `sbc-bench-workload N` places N outbound calls PBX → carrier, one after the other at
//! 500 calls/s of simulated time, each with the whole flow a short call has on the wire: INVITE
//! with SDP, 100, 180, 200 with SDP, ACK, BYE, 200, on both legs. Then simulated time runs on
//! until every transaction and timer is gone. Every call must complete and nothing may be left,
//! else it exits with an error: a broken flow must not pass as a cheap one.
//!
//! Everything is deterministic (seeded RNG, simulated time, no I/O in the loop), so callgrind
//! counts the same instructions and allocations on every run of the same binary. What the SBC
//! itself does per message — copy the datagram, parse it, handle it, hand out what it sends —
//! happens in the functions of [`measured`]; the check counts only inside them
//! (`--toggle-collect`), so the workload's own work (building the peers' messages, checking what
//! the SBC sent) does not dilute the figure.
//!
//! It drives the whole core (`sbc_proto::sbc::Sbc`: the source ACL, the guard, the drain
//! bookkeeping and the B2BUA), as the daemon's driver does, so that per-message work outside
//! the B2BUA is counted too (a scan of every transaction on every datagram once hid there).
//! It uses as little of the API as it can (construction, `handle_datagram`, `handle_timeout`,
//! `poll_*`, `stats`), so that it keeps working as the core is restructured.
//!
//! Media runs on the real media table (`SimMedia`: the table the daemon runs, its commands
//! executed in memory instead of on sockets and XDP maps), so the measured work per message
//! includes the table's verbs the call makes — allocate on the INVITE, commit on the 200,
//! release on the BYE — with their port pools, latching set-up and fast-path planning. What
//! the daemon's executor does with the commands (binding sockets, writing maps) is not
//! counted; the in-memory stand-in for it is, and is small. No media flows and no media
//! timeout is set, so the table's timers have nothing to do and are not run.

use std::{
    net::SocketAddr,
    process::ExitCode,
    time::{Duration, Instant},
};

use sbc_proto::{
    b2bua::{B2buaConfig, LocalAddr, Rng, Stats, Target, Transmit, TrunkConfig},
    media::SimMedia,
    net::{Peer, Side, TransportKind},
    overload::OverloadConfig,
    protect::GuardConfig,
    sbc::{AclConfig, Sbc, SbcConfig, TrunkProxy},
    sip::{HeaderName, Limits, Message, StatusCode},
};

/// Calls the check runs (`cargo xtask bench check`): enough that per-call figures do not move
/// with the constant costs, and 8 s of simulated calls so that completed transactions pile up
/// as under load (Timer D keeps them 32 s): per-message work that grows with the live state
/// raises the per-call figure. About 25 s under callgrind.
const CALLS: u64 = 4000;
/// Simulated time between two calls (500 calls/s, the benchmark's fixed rate).
const CALL_GAP: Duration = Duration::from_millis(2);
/// Simulated time the drain runs past the last call: every RFC 3261 timer (64·T1 = 32 s at
/// most) has run out by then.
const DRAIN: Duration = Duration::from_secs(120);

const SBC_INSIDE: &str = "10.0.0.1:5060";
const SBC_OUTSIDE: &str = "203.0.113.1:5060";
const PBX: &str = "10.0.0.10:5070";
const CARRIER: &str = "198.51.100.7:5090";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--hold") {
        return hold_main();
    }
    if std::env::args().nth(1).as_deref() == Some("--turns") {
        return turns_main();
    }
    let calls = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => CALLS,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: sbc-bench-workload [CALLS]: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(calls) {
        Ok(messages) => {
            println!("{calls} calls, {messages} messages handled");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sbc-bench-workload: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sbc-bench-workload --hold N`: sets up N calls (INVITE to ACK, no BYE) at 500 calls/s of
/// simulated time, lets 3 s more pass (where `cargo xtask bench signaling` reads the daemon's
/// RSS) and exits with them all up: run under `heaptrack`, its "leaked" figure is the B2BUA's
/// heap with N established calls (issue 16, memory per concurrent call), and since 2026-12-05
/// the media table's sessions too: the figures in `bench/results/memory-*2026-12-04*.md` were
/// taken with a media stand-in that only recorded what it was told, and are not comparable.
fn hold_main() -> ExitCode {
    let Some(calls) = calls_arg("--hold") else {
        return ExitCode::FAILURE;
    };
    let mut sim = sim_for(calls);
    for i in 0..calls {
        if let Err(e) = establish(&mut sim, i).and_then(|_| sim.advance(CALL_GAP)) {
            eprintln!("sbc-bench-workload: call {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = sim.advance(Duration::from_secs(3)) {
        eprintln!("sbc-bench-workload: {e}");
        return ExitCode::FAILURE;
    }
    let stats = sim.sbc.b2bua().stats();
    println!("{calls} calls held: {stats:?}");
    // Exit with the calls up: what is still allocated is what the calls hold.
    std::process::exit(0)
}

/// `sbc-bench-workload --turns N`: N short calls at 1,000 calls/s of simulated time (the
/// transactions of the last 32 s pile up to ~64,000 as under that load), timing each message's
/// handling by the wall clock; prints the distribution of those turn times. Not part of the
/// check (wall-clock figures vary from run to run): it shows the stalls a growing map puts
/// into single turns (`bench/results/signaling-growth-2026-12-05.md`).
fn turns_main() -> ExitCode {
    let Some(calls) = calls_arg("--turns") else {
        return ExitCode::FAILURE;
    };
    let mut sim = sim_for(calls);
    sim.turns = Some(Vec::with_capacity(usize::try_from(calls * 7).unwrap_or(0)));
    for i in 0..calls {
        if let Err(e) = call(&mut sim, i).and_then(|_| sim.advance(CALL_GAP / 2)) {
            eprintln!("sbc-bench-workload: call {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut turns = sim.turns.take().unwrap_or_default();
    turns.sort_unstable();
    let at = |q: f64| {
        let i = ((turns.len() as f64 * q) as usize).min(turns.len().saturating_sub(1));
        turns.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let over = |us: u64| {
        turns
            .iter()
            .filter(|d| **d > Duration::from_micros(us))
            .count()
    };
    println!(
        "{calls} calls, {} turns: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, p99.99 {:.1} µs, \
         max {:.1} µs; over 250 µs: {}, over 1 ms: {}",
        turns.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(0.9999),
        at(1.0),
        over(250),
        over(1000)
    );
    ExitCode::SUCCESS
}

/// The call count after `flag` (the second argument); `None`, with the usage printed, when
/// it is missing or not a number.
fn calls_arg(flag: &str) -> Option<u64> {
    let calls = std::env::args().nth(2).and_then(|a| a.parse::<u64>().ok());
    if calls.is_none() {
        eprintln!("usage: sbc-bench-workload {flag} CALLS");
    }
    calls
}

/// A simulation with room for `calls` calls' transactions: the default cap (20,000) is what a
/// deployment configures, not what `--hold` and `--turns` measure. Each call opens four
/// (INVITE and BYE, each side), all alive at once under `--turns`, and new calls may use only
/// seven eighths of the cap (the rest is kept for the calls up): five per call leaves room.
fn sim_for(calls: u64) -> Sim {
    let mut sim = new_sim(Rng::from_test_seed(0x5eed));
    let mut cfg = config();
    cfg.b2bua.caps.max_transactions = usize::try_from(calls * 5).unwrap_or(usize::MAX);
    sim.sbc = Sbc::new(cfg, Rng::from_test_seed(0x5eed), sim.now);
    sim
}

fn new_sim(rng: Rng) -> Sim {
    // An origin for simulated time; nothing reads the clock afterwards.
    let now = Instant::now();
    Sim {
        sbc: Sbc::new(config(), rng, now),
        // 25,000 port pairs per side: room for the calls `--hold` keeps up.
        media: SimMedia::new(
            addr(SBC_INSIDE).ip(),
            addr(SBC_OUTSIDE).ip(),
            10_000,
            60_000,
        ),
        now,
        last_request: [None, None],
        last_response: [None, None],
        handled: 0,
        sent: Vec::new(),
        turns: None,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn udp(side: Side, a: &str) -> Peer {
    Peer {
        side,
        transport: TransportKind::Udp,
        addr: addr(a),
        conn: None,
        local: None,
    }
}

/// The core as the daemon configures it for one PBX and one carrier: both are configured
/// peers of the ACL, and the guard has its defaults (the PBX's budget, 2,000 new requests/s,
/// is well above the workload's 500 calls/s).
fn config() -> SbcConfig {
    let target = |a: &str| Target {
        addr: addr(a),
        transport: TransportKind::Udp,
    };
    let local = |a: &str| LocalAddr {
        addr: addr(a),
        transport: TransportKind::Udp,
    };
    SbcConfig {
        b2bua: B2buaConfig {
            user_agent: "sbc-bench".into(),
            ..B2buaConfig::new(
                local(SBC_INSIDE),
                local(SBC_OUTSIDE),
                target(PBX),
                vec![TrunkConfig::new("carrier", target(CARRIER))],
            )
        },
        acl: AclConfig {
            inside: vec![addr(PBX).ip().into()],
            outside: vec![addr(CARRIER).ip()],
            peers: vec![addr(PBX).ip()],
            user_agent_deny: vec!["friendly-scanner".into()],
            deny: Vec::new(),
        },
        guard: GuardConfig::default(),
        overload: OverloadConfig::default(),
        trunks: vec![TrunkProxy {
            name: "carrier".into(),
            proxy: CARRIER.into(),
            static_addr: Some(addr(CARRIER)),
            transport: TransportKind::Udp,
        }],
        registrations: Vec::new(),
        health: Vec::new(),
        registrations_held: false,
    }
}

/// The SBC's own work, the only code callgrind counts (`cargo xtask bench check` collects
/// inside `sbc_bench_workload::measured::*`): out of line so that it keeps its name.
mod measured {
    use std::time::Instant;

    use bytes::Bytes;
    use sbc_proto::{
        b2bua::Transmit,
        media::SimMedia,
        net::Peer,
        sbc::Sbc,
        sip::{Limits, Message, ParseError},
    };

    /// A datagram from `from`: copied out of the receive buffer as the driver does, parsed and
    /// handled.
    #[inline(never)]
    pub fn receive(
        sbc: &mut Sbc,
        media: &mut SimMedia,
        now: Instant,
        from: Peer,
        datagram: &[u8],
    ) -> Result<(), ParseError> {
        let msg = Message::parse(Bytes::copy_from_slice(datagram), &Limits::default())?;
        media.drive(now, |t| {
            sbc.handle_datagram(now, from, msg, std::time::Duration::ZERO, t)
        });
        Ok(())
    }

    /// The timers due at `now`.
    #[inline(never)]
    pub fn timeout(sbc: &mut Sbc, media: &mut SimMedia, now: Instant) {
        media.drive(now, |t| sbc.handle_timeout(now, t));
    }

    /// When the next timer is due (the driver asks after every message).
    #[inline(never)]
    pub fn next_timer(sbc: &Sbc) -> Option<Instant> {
        sbc.poll_timeout()
    }

    /// Everything the SBC has to send, into `out`; its events are dropped.
    #[inline(never)]
    pub fn transmits(sbc: &mut Sbc, out: &mut Vec<Transmit>) {
        while let Some(t) = sbc.poll_transmit() {
            out.push(t);
        }
        while sbc.poll_event().is_some() {}
    }
}

/// The core, its media table, simulated time and what it last sent to each side.
struct Sim {
    sbc: Sbc,
    media: SimMedia,
    now: Instant,
    /// Last request and last response sent to [inside, outside].
    last_request: [Option<Message>; 2],
    last_response: [Option<Message>; 2],
    handled: u64,
    /// What the SBC sent since the last collect (reused).
    sent: Vec<Transmit>,
    /// Wall-clock time of each message's handling, kept by `--turns` only.
    turns: Option<Vec<Duration>>,
}

impl Sim {
    fn deliver(&mut self, from: Peer, text: &str) -> Result<(), String> {
        // Wall-clock timing around the core (which never reads the clock), for `--turns`.
        let started = self.turns.is_some().then(Instant::now);
        measured::receive(
            &mut self.sbc,
            &mut self.media,
            self.now,
            from,
            text.as_bytes(),
        )
        .map_err(|e| format!("workload message does not parse ({e}):\n{text}"))?;
        if let (Some(turns), Some(started)) = (&mut self.turns, started) {
            turns.push(started.elapsed());
        }
        self.handled += 1;
        self.collect()
    }

    fn collect(&mut self) -> Result<(), String> {
        measured::transmits(&mut self.sbc, &mut self.sent);
        for t in self.sent.drain(..) {
            let side = usize::from(t.to.side == Side::Outside);
            let msg = Message::parse(t.data, &Limits::default())
                .map_err(|e| format!("the SBC sent an unparseable message: {e}"))?;
            if msg.is_request() {
                self.last_request[side] = Some(msg);
            } else {
                self.last_response[side] = Some(msg);
            }
        }
        Ok(())
    }

    fn advance(&mut self, by: Duration) -> Result<(), String> {
        let until = self.now + by;
        while let Some(at) = measured::next_timer(&self.sbc) {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            measured::timeout(&mut self.sbc, &mut self.media, self.now);
            self.collect()?;
        }
        self.now = until;
        Ok(())
    }

    /// Takes the last request the SBC sent to `side`, which must be `method`.
    fn take_request(&mut self, side: Side, method: &str) -> Result<Message, String> {
        let m = self.last_request[usize::from(side == Side::Outside)]
            .take()
            .ok_or_else(|| format!("no {method} sent to the {side:?}"))?;
        if m.as_bytes().starts_with(method.as_bytes()) {
            Ok(m)
        } else {
            Err(format!("expected {method} to the {side:?}, got {m:?}"))
        }
    }

    /// Takes the last response the SBC sent to `side`, which must have `code`.
    fn take_response(&mut self, side: Side, code: u16) -> Result<Message, String> {
        let m = self.last_response[usize::from(side == Side::Outside)]
            .take()
            .ok_or_else(|| format!("no {code} sent to the {side:?}"))?;
        if m.status().map(StatusCode::as_u16) == Some(code) {
            Ok(m)
        } else {
            Err(format!("expected {code} to the {side:?}, got {m:?}"))
        }
    }
}

fn header(m: &Message, name: HeaderName) -> &str {
    m.headers()
        .first(name)
        .and_then(|h| h.value_str())
        .unwrap_or_default()
}

/// The carrier's response `status` to `request` (its To tag added, an SDP answer if given).
fn carrier_response(request: &Message, status: &str, sdp: Option<&str>) -> String {
    let to = header(request, HeaderName::To);
    let to = if status.starts_with("100") || to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=ctag")
    };
    let (content_type, body) = match sdp {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:gw@198.51.100.7:5090>\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        header(request, HeaderName::Via),
        header(request, HeaderName::From),
        header(request, HeaderName::CallId),
        header(request, HeaderName::CSeq),
        body.len()
    )
}

const PBX_SDP: &str = "v=0\r\no=pbx 1234 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
const CARRIER_SDP: &str = "v=0\r\no=switch 777 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// One call from the PBX through the SBC to the carrier and back, checked at every step.
fn call(sim: &mut Sim, i: u64) -> Result<(), String> {
    let to = establish(sim, i)?;
    let pbx = udp(Side::Inside, PBX);
    let carrier = udp(Side::Outside, CARRIER);
    let dialog = dialog(i);
    sim.deliver(
        pbx,
        &format!(
            "BYE sip:15551234567@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{i}c;rport\r\n{dialog}To: {to}\r\nCSeq: 11 BYE\r\nContent-Length: 0\r\n\r\n"
        ),
    )?;
    let bye = sim.take_request(Side::Outside, "BYE")?;
    sim.deliver(carrier, &carrier_response(&bye, "200 OK", None))?;
    sim.take_response(Side::Inside, 200)?;
    Ok(())
}

fn dialog(i: u64) -> String {
    format!(
        "Max-Forwards: 70\r\nFrom: \"Alice\" <sip:100@pbx.lan>;tag=ptag{i}\r\nCall-ID: pbx-call-{i}\r\n"
    )
}

/// The call's set-up, INVITE to ACK; returns the caller-side To (with the SBC's tag).
fn establish(sim: &mut Sim, i: u64) -> Result<String, String> {
    let pbx = udp(Side::Inside, PBX);
    let carrier = udp(Side::Outside, CARRIER);
    let dialog = dialog(i);
    sim.deliver(
        pbx,
        &format!(
            "INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{i}a;rport\r\n{dialog}To: <sip:15551234567@10.0.0.1>\r\nCSeq: 10 INVITE\r\nContact: <sip:100@10.0.0.10:5070>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PBX_SDP}",
            PBX_SDP.len()
        ),
    )?;
    let invite = sim.take_request(Side::Outside, "INVITE")?;
    sim.deliver(carrier, &carrier_response(&invite, "100 Trying", None))?;
    sim.deliver(carrier, &carrier_response(&invite, "180 Ringing", None))?;
    sim.deliver(
        carrier,
        &carrier_response(&invite, "200 OK", Some(CARRIER_SDP)),
    )?;
    let ok = sim.take_response(Side::Inside, 200)?;
    let to = header(&ok, HeaderName::To).to_owned();
    sim.deliver(
        pbx,
        &format!(
            "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{i}b;rport\r\n{dialog}To: {to}\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n"
        ),
    )?;
    sim.take_request(Side::Outside, "ACK")?;
    Ok(to)
}

/// Runs `calls` calls and the drain; returns the messages handled.
fn run(calls: u64) -> Result<u64, String> {
    let mut sim = new_sim(Rng::from_test_seed(0x5eed));
    for i in 0..calls {
        call(&mut sim, i).map_err(|e| format!("call {i}: {e}"))?;
        sim.advance(CALL_GAP)?;
    }
    sim.advance(DRAIN)?;
    // The media table must hold nothing either: no session, every port pair and slot back.
    if sim.sbc.b2bua().stats() != Stats::default() || !sim.media.holds_nothing() {
        return Err(format!(
            "state left after the drain: {:?}, {} media sessions, media table empty: {}",
            sim.sbc.b2bua().stats(),
            sim.media.len(),
            sim.media.holds_nothing()
        ));
    }
    Ok(sim.handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_completes_and_nothing_is_left() {
        assert_eq!(run(20), Ok(20 * 7));
    }

    #[test]
    fn a_message_the_sbc_did_not_send_is_an_error() {
        // The workload checks every step: a flow the SBC stops answering must fail the run,
        // not pass as a cheaper call.
        let mut sim = new_sim(Rng::from_test_seed(1));
        assert!(sim.take_response(Side::Inside, 200).is_err());
        assert!(call(&mut sim, 0).is_ok());
        // Each message is taken once: the BYE of the finished call is gone.
        assert!(sim.take_request(Side::Outside, "BYE").is_err());
    }
}
