//! The SRTP rows of `cargo xtask bench media` (issue 17): µs/packet of the forwarding path for
//! RTP→SRTP (plain PBX, SRTP carrier) and SRTP→SRTP (both legs SDES, a different key per leg),
//! the SBC's userspace relay against rtpengine in userspace doing the same job.
//!
//! Both systems terminate SDES on each leg with AES_CM_128_HMAC_SHA1_80 (the suite both
//! implement and carriers use most): each decrypts and authenticates what the PBX sends, and
//! a check before every SRTP→SRTP trial proves it (forged packets must not arrive,
//! [`check_forgeries_dropped`]). rtpengine would by default pass SRTP→SRTP through with the
//! PBX's key on both legs; see [`trial_rtpengine`] for how it is made to re-encrypt. The SBC's sessions come from real calls (SIP over UDP from
//! sockets in the pbx and carrier namespaces, its `srtp` policies doing the keying); rtpengine's
//! from its ng protocol (`transport-protocol` `RTP/SAVP` toward the carrier; for SRTP→SRTP the
//! PBX's offer is `RTP/SAVP` with its own `a=crypto`). The generator sends the same packets to
//! both: plain PCMU-sized RTP, or SRTP protected with the PBX's key (precomputed before each
//! trial, indices continuing across trials so no packet is a replay). The carrier's XDP sink
//! counts what arrives; the cost is the forwarding path's CPU time as in the other rows.
//!
//! Environment: `SBC_BENCH_SRTP_SYSTEMS` picks the rows ([`System::selected`]),
//! `SBC_BENCH_OUT` the report's directory (default `bench/results`), `SBC_BENCH_NAPI_DEFER`
//! and `SBC_BENCH_GRO_FLUSH_NS` the veths' NAPI knobs of the deferral and busy-poll rows
//! ([`NapiKnobs`]); `SBC_BENCH_BINARY` (bench.rs) measures a prebuilt `sbc`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sbc_lab::{http, lab::Lab, netns};
use sbc_proto::{
    sdp::Crypto,
    srtp::{MasterKey, SrtpContext, Suite},
};

use super::bench::{
    ChildGuard, FWD_CPU, GEN_CPU, LADDER_ONE_STREAM, MAX_LOSS, PEER_PORT, PinDir, TRIAL, Trial,
    cmd_out, measure_with, median, ng_call, port_off, rtp, sink_drops, task_cpu_ns,
};

/// Streams of the SRTP rows.
const STREAMS: [usize; 2] = [1, 100];
/// Offered rates of the SRTP rows' no-loss search with many streams (the plain userspace rows
/// top out at 20,000 pps on this machine; the generator precomputes each trial's SRTP packets).
const LADDER: [u64; 3] = [10_000, 20_000, 40_000];
/// The ladder for `streams` streams.
fn ladder(streams: usize) -> &'static [u64] {
    if streams == 1 {
        &LADDER_ONE_STREAM
    } else {
        &LADDER
    }
}
/// Loss above which a row's cost is not compared (the system did not forward the stream).
const COMPARABLE_LOSS: f64 = 0.1;
/// The one suite both systems use.
const SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// What the relay does to a packet from the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// Plain RTP in, SRTP out (encrypt).
    RtpToSrtp,
    /// SRTP in with one key, SRTP out with another (decrypt, encrypt).
    SrtpToSrtp,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::RtpToSrtp, Mode::SrtpToSrtp];

    fn name(self) -> &'static str {
        match self {
            Mode::RtpToSrtp => "RTP→SRTP",
            Mode::SrtpToSrtp => "SRTP→SRTP",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Mode::RtpToSrtp => "rtp_to_srtp",
            Mode::SrtpToSrtp => "srtp_to_srtp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Sbc,
    Rtpengine,
    /// The SBC with its AF_XDP relay woken per ready ring (`media.xsk_poll_us = 0`),
    /// interleaved with the default (polling every 1 ms) to show what the interval does.
    SbcEvent,
    /// The SBC without XDP (`media.xdp = "off"`): the relay sockets, as before AF_XDP.
    SbcSockets,
    /// The default SBC plus preferred busy polling (`media.xsk_busy_poll = "on"`) and the
    /// veths' NAPI deferral knobs set for the trial ([`NapiKnobs`]).
    SbcBusy,
    /// The default SBC with only the NAPI deferral knobs set (no busy polling): what the
    /// knobs alone do (interrupt moderation of the veths' NAPI by the kernel's timer).
    SbcDefer,
    /// rtpengine with the same NAPI deferral knobs: host tuning helps both relays, so the
    /// fair comparison for [`System::SbcDefer`] and [`System::SbcBusy`].
    RtpengineDefer,
    /// rtpengine as it runs by default in SRTP→SRTP: it offers the PBX's own key to the
    /// carrier (and the carrier's to the PBX), so it forwards the PBX's packets as they are
    /// and never decrypts them. Not the same job (the SBC keys each leg itself, and drops what
    /// fails authentication), shown for reference only: its rows never enter a ratio.
    RtpenginePassthrough,
}

impl System {
    const ALL: [System; 8] = [
        System::Sbc,
        System::Rtpengine,
        System::SbcEvent,
        System::SbcSockets,
        System::SbcBusy,
        System::SbcDefer,
        System::RtpengineDefer,
        System::RtpenginePassthrough,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Sbc => "sbc userspace relay",
            System::Rtpengine => "rtpengine (userspace)",
            System::SbcEvent => "sbc, AF_XDP event-driven",
            System::SbcSockets => "sbc, relay sockets (xdp off)",
            System::SbcBusy => "sbc, AF_XDP polling 1 ms + busy poll",
            System::SbcDefer => "sbc, AF_XDP polling 1 ms + NAPI deferral only",
            System::RtpengineDefer => "rtpengine + NAPI deferral",
            System::RtpenginePassthrough => "rtpengine, SDES pass-through (not the same job)",
        }
    }

    /// The system's key in `SBC_BENCH_SRTP_SYSTEMS`.
    fn key(self) -> &'static str {
        match self {
            System::Sbc => "sbc",
            System::Rtpengine => "rtpengine",
            System::SbcEvent => "sbc_event",
            System::SbcSockets => "sbc_sockets",
            System::SbcBusy => "sbc_busy",
            System::SbcDefer => "sbc_defer",
            System::RtpengineDefer => "rtpengine_defer",
            System::RtpenginePassthrough => "rtpengine_passthrough",
        }
    }

    /// The systems to run: `SBC_BENCH_SRTP_SYSTEMS=<key,…>` (e.g. `sbc,sbc_busy,rtpengine`
    /// for the busy-polling A/B), by default the four of the AF_XDP comparison.
    fn selected() -> Result<Vec<System>> {
        let Ok(list) = std::env::var("SBC_BENCH_SRTP_SYSTEMS") else {
            return Ok(vec![
                System::Sbc,
                System::Rtpengine,
                System::SbcEvent,
                System::SbcSockets,
            ]);
        };
        list.split(',')
            .map(|k| {
                System::ALL
                    .into_iter()
                    .find(|s| s.key() == k.trim())
                    .with_context(|| format!("SBC_BENCH_SRTP_SYSTEMS: unknown system {k:?}"))
            })
            .collect()
    }
}

/// The veths' NAPI deferral knobs for [`System::SbcBusy`] and [`System::SbcDefer`]:
/// `napi_defer_hard_irqs` (`SBC_BENCH_NAPI_DEFER`, default 2) and `gro_flush_timeout`
/// (`SBC_BENCH_GRO_FLUSH_NS`, default 2,000,000 ns: twice the relay's polling interval, so
/// the kernel's timer does not fire while the relay keeps polling). Set on the SBC's veths for
/// the trial and back to 0 (the veth default) when dropped.
struct NapiKnobs<'l> {
    lab: &'l Lab,
}

impl<'l> NapiKnobs<'l> {
    fn values() -> (u64, u64) {
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        (
            env("SBC_BENCH_NAPI_DEFER", 2),
            env("SBC_BENCH_GRO_FLUSH_NS", 2_000_000),
        )
    }

    fn set(lab: &'l Lab) -> Result<Self> {
        let (defer, flush) = Self::values();
        Self::write(lab, defer, flush)?;
        Ok(Self { lab })
    }

    fn write(lab: &Lab, defer: u64, flush: u64) -> Result<()> {
        for ifname in ["in0", "out0"] {
            // `ip netns exec` mounts the namespace's own sysfs, where the veths are.
            super::bench::sh_ns(
                &lab.sbc,
                &format!(
                    "echo {defer} > /sys/class/net/{ifname}/napi_defer_hard_irqs && \
                     echo {flush} > /sys/class/net/{ifname}/gro_flush_timeout"
                ),
            )?;
        }
        Ok(())
    }
}

impl Drop for NapiKnobs<'_> {
    fn drop(&mut self) {
        if let Err(e) = Self::write(self.lab, 0, 0) {
            eprintln!("bench: warning: resetting the NAPI knobs failed: {e:#}");
        }
    }
}

/// How long the idle cost is measured after a trial (the relay's calls up, no packets).
const IDLE: Duration = Duration::from_secs(3);

/// The PBX's key (what it protects its SRTP with). Fixed bench keys, not secrets: the lab's
/// traffic never leaves its namespaces.
fn pbx_key() -> Result<MasterKey> {
    MasterKey::new(SUITE, &[0x5b; 16], &[0xc1; 14]).map_err(|e| anyhow::anyhow!("key: {e}"))
}

/// The carrier's key.
fn carrier_key() -> Result<MasterKey> {
    MasterKey::new(SUITE, &[0x7e; 16], &[0x2a; 14]).map_err(|e| anyhow::anyhow!("key: {e}"))
}

/// The generator's packets: plain RTP, or SRTP under the PBX's key with indices that go on
/// from the last trial's (the relay's replay list would drop a repeated index).
struct Packets {
    mode: Mode,
    ctx: SrtpContext,
    seq: u16,
}

impl Packets {
    fn new(mode: Mode) -> Result<Self> {
        Ok(Self {
            mode,
            ctx: SrtpContext::new(SUITE, &pbx_key()?, None),
            seq: 0,
        })
    }

    /// `rounds` packets (each is sent once to every stream).
    fn next(&mut self, rounds: usize) -> Result<Arc<Vec<Vec<u8>>>> {
        let mut out = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut p = rtp(self.seq, 7).to_vec();
            self.seq = self.seq.wrapping_add(1);
            if self.mode == Mode::SrtpToSrtp {
                let len = p.len();
                p.resize(len + SUITE.rtp_tag_len(), 0);
                let n = self
                    .ctx
                    .protect_rtp(&mut p, len)
                    .map_err(|e| anyhow::anyhow!("protect: {e}"))?;
                p.truncate(n);
            }
            out.push(p);
        }
        Ok(Arc::new(out))
    }
}

/// The no-loss search of the SRTP rows.
fn search(streams: usize, mut trial: impl FnMut(u64) -> Result<Trial>) -> Result<Trial> {
    let mut best = None;
    for &rate in ladder(streams) {
        let t = trial(rate)?;
        eprintln!(
            "bench:     offered {rate} pps: forwarded {} of {} ({:.2} µs/packet)",
            t.forwarded,
            t.sent,
            t.us_per_packet()
        );
        if t.loss() > MAX_LOSS {
            return Ok(best.unwrap_or(t));
        }
        best = Some(t);
    }
    best.context("empty ladder")
}

/// How a relay keys the SRTP→SRTP legs, and so whether it must decrypt what it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keying {
    /// It decrypts every packet from the PBX and encrypts it again for the carrier (the SBC
    /// always: its own key per leg). Checked before every SRTP→SRTP trial
    /// ([`check_forgeries_dropped`]).
    Recrypt,
    /// It may forward the PBX's packets untouched (rtpengine's SDES pass-through): not
    /// checked.
    PassThrough,
}

/// Packets with a forged authentication tag sent before each checked SRTP→SRTP trial.
const FORGED: usize = 20;

/// One trial at `rate` with fresh packets from `packets`; with [`Keying::Recrypt`] in
/// SRTP→SRTP, first [`check_forgeries_dropped`].
fn trial_at(
    lab: &Lab,
    napi: &[u32],
    relay: u32,
    targets: &[SocketAddr],
    packets: &mut Packets,
    rate: u64,
    keying: Keying,
) -> Result<Trial> {
    if packets.mode == Mode::SrtpToSrtp && keying == Keying::Recrypt {
        check_forgeries_dropped(lab, targets, packets)?;
    }
    let rounds = (rate as f64 * TRIAL.as_secs_f64() * 1.1 / targets.len() as f64) as usize + 1;
    let pkts = packets.next(rounds)?;
    measure_with(lab, napi, Some(relay), targets, Some(rate), Some(pkts))
}

/// Proves the relay authenticates what it forwards, so that its cost is that of the job (a
/// relay that passes the PBX's SRTP through untouched does no crypto at all): [`FORGED`]
/// packets per stream with their authentication tag's last byte flipped must not reach the
/// carrier's sink. They use fresh indices from `packets`, so the trial's packets that follow
/// are no replays.
fn check_forgeries_dropped(lab: &Lab, targets: &[SocketAddr], packets: &mut Packets) -> Result<()> {
    let forged: Vec<Vec<u8>> = packets
        .next(FORGED)?
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(last) = p.last_mut() {
                *last ^= 0x01;
            }
            p
        })
        .collect();
    let sockets = crate::bench::pbx_sockets(lab, targets.len())?;
    let before = sink_drops(&lab.carrier)?;
    let mut sent = 0u64;
    for p in &forged {
        for (s, t) in sockets.iter().zip(targets) {
            if s.send_to(p, t).is_ok() {
                sent += 1;
            }
        }
        // Paced like a stream (1 ms apart) so that no queue overflows.
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(300));
    let through = sink_drops(&lab.carrier)?.saturating_sub(before);
    if through > 0 {
        bail!(
            "{through} of {sent} SRTP packets with a forged authentication tag reached the \
             carrier: the relay forwards without authenticating (SRTP pass-through), which is \
             not the job measured"
        );
    }
    eprintln!("bench:     {sent} forged packets: none reached the carrier");
    Ok(())
}

/// Runs the SRTP rows (`reps` interleaved repetitions) and writes
/// `bench/results/media-srtp-<date>[-quick].{md,json}`.
pub(crate) fn run(
    root: &Path,
    lab: &Lab,
    napi: &[u32],
    sbc: &Path,
    work: &Path,
    reps: usize,
    quick: bool,
) -> Result<()> {
    let systems = System::selected()?;
    let mut results: BTreeMap<(Mode, usize, System), Vec<Trial>> = BTreeMap::new();
    let mut idle: BTreeMap<(Mode, usize, System), Vec<f64>> = BTreeMap::new();
    for rep in 0..reps {
        for mode in Mode::ALL {
            for &streams in &STREAMS {
                for &system in &systems {
                    eprintln!(
                        "bench: rep {}/{reps}, {}, {streams} stream(s), {}",
                        rep + 1,
                        mode.name(),
                        system.name()
                    );
                    let run = |variant| trial_sbc(lab, napi, sbc, work, streams, mode, variant);
                    let trial = match system {
                        System::Sbc => run(Variant::Poll(1_000, false)),
                        System::SbcEvent => run(Variant::Poll(0, false)),
                        System::SbcSockets => run(Variant::Sockets),
                        System::SbcBusy => {
                            let _knobs = NapiKnobs::set(lab)?;
                            run(Variant::Poll(1_000, true))
                        }
                        System::SbcDefer => {
                            let _knobs = NapiKnobs::set(lab)?;
                            run(Variant::Poll(1_000, false))
                        }
                        System::Rtpengine => {
                            trial_rtpengine(lab, napi, streams, mode, Keying::Recrypt)
                                .map(|t| (t, None))
                        }
                        System::RtpengineDefer => {
                            let _knobs = NapiKnobs::set(lab)?;
                            trial_rtpengine(lab, napi, streams, mode, Keying::Recrypt)
                                .map(|t| (t, None))
                        }
                        System::RtpenginePassthrough => {
                            trial_rtpengine(lab, napi, streams, mode, Keying::PassThrough)
                                .map(|t| (t, None))
                        }
                    }
                    .with_context(|| {
                        format!("{} {} with {streams} streams", system.name(), mode.name())
                    })?;
                    let (trial, idle_cpu) = trial;
                    if let Some(cpu) = idle_cpu {
                        eprintln!("bench:   idle afterwards: {:.2} ms CPU/s", cpu * 1e3);
                        idle.entry((mode, streams, system)).or_default().push(cpu);
                    }
                    eprintln!(
                        "bench:   sent {} forwarded {} ({:.0} pps, {:.2} µs/packet, loss {:.1}%)",
                        trial.sent,
                        trial.forwarded,
                        trial.pps(),
                        trial.us_per_packet(),
                        trial.loss() * 100.0
                    );
                    results
                        .entry((mode, streams, system))
                        .or_default()
                        .push(trial);
                }
            }
        }
    }
    let (md, json) = render(&results, &idle, reps, quick)?;
    println!("{md}");
    // SBC_BENCH_OUT=<dir>: the report goes there instead of bench/results (A/B runs).
    let dir = std::env::var_os("SBC_BENCH_OUT")
        .map_or_else(|| root.join("bench/results"), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let date = cmd_out("date", &["-u", "+%Y-%m-%d"])?;
    let suffix = if quick { "-quick" } else { "" };
    for (ext, text) in [("md", md), ("json", json)] {
        let path = dir.join(format!("media-srtp-{}{suffix}.{ext}", date.trim()));
        std::fs::write(&path, text)?;
        eprintln!("bench: written {}", path.display());
    }
    Ok(())
}

fn render(
    results: &BTreeMap<(Mode, usize, System), Vec<Trial>>,
    idle: &BTreeMap<(Mode, usize, System), Vec<f64>>,
    reps: usize,
    quick: bool,
) -> Result<(String, String)> {
    let kernel = cmd_out("uname", &["-r"])?.trim().to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let vcpus = thread::available_parallelism().map_or(0, usize::from);
    let rtpengine = cmd_out(
        "dpkg-query",
        &["-W", "-f", "${Version}", "rtpengine-daemon"],
    )
    .unwrap_or_else(|_| "?".into());
    let date = cmd_out("date", &["-u", "+%Y-%m-%dT%H:%MZ"])?
        .trim()
        .to_owned();
    let command = if quick {
        "sudo cargo xtask bench media --srtp --quick"
    } else {
        "sudo cargo xtask bench media --srtp"
    };
    let mut md = String::new();
    writeln!(md, "# SRTP relay benchmark (`{command}`)\n")?;
    writeln!(
        md,
        "Date: {date}. Machine: {cpu}, {vcpus} vCPUs, Linux {kernel}; rtpengine {rtpengine} \
         (userspace, 1 thread). Same lab, generator and cost measure as the media rows \
         (`media-*.md`): generator on CPU {GEN_CPU}, forwarding path (relay process + veth NAPI \
         kthreads) on CPU {FWD_CPU}, its schedstat CPU time divided by the packets that reached \
         the carrier's XDP sink. Both relays terminate SDES per leg with {SUITE}: RTP→SRTP \
         encrypts the PBX's plain RTP toward the carrier, SRTP→SRTP decrypts the PBX's SRTP \
         (its key) and encrypts with the carrier leg's key. 172-byte RTP (PCMU 20 ms), \
         {}-s trials, no-loss search over {LADDER:?} pps, {LADDER_ONE_STREAM:?} with one \
         stream (rtpengine discards a socket for good after 5 wake-ups with over 50 datagrams \
         queued) (at most {}% loss), medians of \
         {reps} repetition(s). The SBC runs with XDP attached and `media.xsk = \"auto\"`: its \
         SRTP streams reach and leave the relay through AF_XDP sockets (copy mode) on the \
         veths, polling its rings every 1 ms while media flows (`xsk_poll_us = 1000`, the \
         default); the rows \"sbc, AF_XDP event-driven\" run the same relay woken per ready \
         ring (`xsk_poll_us = 0`), and \"sbc, relay sockets\" the SBC without XDP (its relay \
         sockets, as before AF_XDP). The SBC's sessions come from SIP calls with its `srtp` \
         policies; rtpengine's from ng offer/answer (`transport-protocol` RTP/SAVP, SDES). \
         In SRTP→SRTP rtpengine by default offers the PBX's own key to the carrier and \
         forwards the packets untouched (no crypto at all; the SBC never does that, it keys \
         each leg itself); the \"rtpengine\" rows therefore run it with `--dtmf-log-dest`, \
         which makes rtpengine 10.5 decrypt and re-encrypt every packet (13.4's ng flag \
         `recrypt`), and \"SDES pass-through\" rows, where present, show its default for \
         reference and enter no ratio. Before every SRTP→SRTP trial of a re-encrypting system, \
         {FORGED} packets per stream with a forged authentication tag are sent: the trial \
         fails if any reaches the carrier.\n",
        TRIAL.as_secs(),
        MAX_LOSS * 100.0
    )?;
    writeln!(
        md,
        "| mode | streams | system | offered pps | forwarded pps | µs/packet | loss |"
    )?;
    writeln!(md, "| --- | ---: | --- | ---: | ---: | ---: | ---: |")?;
    let mut rows = Vec::new();
    let mut med: BTreeMap<(Mode, usize, System), (f64, f64)> = BTreeMap::new();
    for ((mode, streams, system), trials) in results {
        let pps = median(trials.iter().map(Trial::pps).collect());
        let us = median(trials.iter().map(Trial::us_per_packet).collect());
        let loss = median(trials.iter().map(Trial::loss).collect());
        let offered = median(
            trials
                .iter()
                .map(|t| t.offered.map_or(0.0, |r| r as f64))
                .collect(),
        );
        med.insert((*mode, *streams, *system), (us, loss));
        writeln!(
            md,
            "| {} | {streams} | {} | {offered:.0} | {pps:.0} | {us:.2} | {:.1}% |",
            mode.name(),
            system.name(),
            loss * 100.0
        )?;
        rows.push(format!(
            "    {{\"mode\": \"{}\", \"streams\": {streams}, \"system\": \"{}\", \
             \"offered_pps\": {offered:.0}, \"forwarded_pps\": {pps:.0}, \
             \"us_per_packet\": {us:.3}, \"loss\": {loss:.4}}}",
            mode.key(),
            system.name()
        ));
    }
    let (defer, flush) = NapiKnobs::values();
    let busy = format!(
        "The SBC with busy polling (`xsk_busy_poll = \"on\"`, budget 64; the veths' \
         napi_defer_hard_irqs = {defer}, gro_flush_timeout = {flush} ns)"
    );
    let deferral = format!(
        "The SBC with the veths' NAPI deferral only (napi_defer_hard_irqs = {defer}, \
         gro_flush_timeout = {flush} ns; no busy polling)"
    );
    for (variant, system) in [
        (
            "The SBC's AF_XDP relay event-driven (`xsk_poll_us = 0`)",
            System::SbcEvent,
        ),
        (
            "The SBC's relay sockets (`xdp = \"off\"`, no AF_XDP)",
            System::SbcSockets,
        ),
        (busy.as_str(), System::SbcBusy),
        (deferral.as_str(), System::SbcDefer),
        (
            "rtpengine with the same NAPI deferral",
            System::RtpengineDefer,
        ),
    ] {
        if !results.keys().any(|k| k.2 == system) {
            continue;
        }
        writeln!(md, "\n{variant} ÷ rtpengine:\n")?;
        ratio_lines(&mut md, &med, system, System::Rtpengine)?;
    }
    // Host tuning applies to both relays: with the NAPI knobs on both, SBC ÷ rtpengine.
    if results.keys().any(|k| k.2 == System::RtpengineDefer) {
        for system in [System::SbcBusy, System::SbcDefer] {
            if !results.keys().any(|k| k.2 == system) {
                continue;
            }
            writeln!(
                md,
                "\n\"{}\" ÷ \"{}\" (both with the NAPI knobs):\n",
                system.name(),
                System::RtpengineDefer.name()
            )?;
            ratio_lines(&mut md, &med, system, System::RtpengineDefer)?;
        }
    }
    writeln!(md, "\nRatio SBC ÷ rtpengine by µs/packet (target ≤ 0.7):\n")?;
    let mut ratios = Vec::new();
    for mode in Mode::ALL {
        for &streams in &STREAMS {
            let get = |s| {
                med.get(&(mode, streams, s))
                    .copied()
                    .unwrap_or((f64::NAN, f64::NAN))
            };
            let ((sbc_us, sbc_loss), (rtpe_us, rtpe_loss)) =
                (get(System::Sbc), get(System::Rtpengine));
            // A system that lost most of the offered packets at the lowest rate did not do
            // the job: its cost per forwarded packet compares nothing.
            let ratio = if sbc_loss.max(rtpe_loss) > COMPARABLE_LOSS {
                f64::NAN
            } else {
                sbc_us / rtpe_us
            };
            let verdict = if ratio.is_nan() {
                format!(
                    "not comparable: loss {:.0}% (sbc) / {:.0}% (rtpengine) at the lowest rate",
                    sbc_loss * 100.0,
                    rtpe_loss * 100.0
                )
            } else if ratio <= 0.7 {
                format!("{ratio:.2}, meets")
            } else {
                format!("{ratio:.2}, misses")
            };
            writeln!(md, "- {} × {streams} stream(s): {verdict}", mode.name())?;
            let value = if ratio.is_nan() {
                "null".to_owned()
            } else {
                format!("{ratio:.3}")
            };
            ratios.push(format!(
                "    {{\"mode\": \"{}\", \"streams\": {streams}, \"sbc_over_rtpengine\": {value}}}",
                mode.key()
            ));
        }
    }
    if !idle.is_empty() {
        writeln!(
            md,
            "\nIdle cost ({} s after the last trial, calls up, no packets): forwarding-path CPU \
             ms per second, each repetition:\n",
            IDLE.as_secs()
        )?;
        for ((mode, streams, system), v) in idle {
            let v: Vec<String> = v.iter().map(|c| format!("{:.2}", c * 1e3)).collect();
            writeln!(
                md,
                "- {} × {streams} × {}: {}",
                mode.name(),
                system.name(),
                v.join(", ")
            )?;
        }
    }
    writeln!(
        md,
        "\nRaw trials (offered pps: sent / forwarded / forwarding-path CPU s (relay process)):\n"
    )?;
    for ((mode, streams, system), trials) in results {
        let raw: Vec<String> = trials
            .iter()
            .map(|t| {
                format!(
                    "{}: {}/{}/{:.3} ({:.3})",
                    t.offered.unwrap_or(0),
                    t.sent,
                    t.forwarded,
                    t.busy_secs,
                    t.relay_secs
                )
            })
            .collect();
        writeln!(
            md,
            "- {} × {streams} × {}: {}",
            mode.name(),
            system.name(),
            raw.join(", ")
        )?;
    }
    let json = format!(
        "{{\n  \"bench\": \"media-srtp\",\n  \"command\": \"{command}\",\n  \"date\": \"{date}\",\n  \
         \"machine\": {{\"cpu\": \"{cpu}\", \"vcpus\": {vcpus}, \"kernel\": \"{kernel}\"}},\n  \
         \"rtpengine\": \"{}\",\n  \"suite\": \"{SUITE}\",\n  \"repetitions\": {reps},\n  \
         \"target_ratio\": 0.7,\n  \"rows\": [\n{}\n  ],\n  \"ratios\": [\n{}\n  ]\n}}\n",
        rtpengine.trim(),
        rows.join(",\n"),
        ratios.join(",\n")
    );
    Ok((md, json))
}

/// A SIP message's header value (first occurrence).
/// One line per mode and stream count: `system`'s median µs/packet ÷ `reference`'s.
fn ratio_lines(
    md: &mut String,
    med: &BTreeMap<(Mode, usize, System), (f64, f64)>,
    system: System,
    reference: System,
) -> Result<()> {
    for mode in Mode::ALL {
        for &streams in &STREAMS {
            let us = |s| med.get(&(mode, streams, s)).map_or(f64::NAN, |m| m.0);
            writeln!(
                md,
                "- {} × {streams} stream(s): {:.2}",
                mode.name(),
                us(system) / us(reference)
            )?;
        }
    }
    Ok(())
}

fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn body(msg: &str) -> &str {
    msg.split("\r\n\r\n").nth(1).unwrap_or("")
}

fn sdp(ip: &str, port: u16, mode_srtp: Option<(u32, &MasterKey)>) -> String {
    let (proto, crypto) = match mode_srtp {
        Some((tag, key)) => (
            "RTP/SAVP",
            format!("a=crypto:{tag} {SUITE} inline:{}\r\n", key.to_inline()),
        ),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto}a=sendrecv\r\n"
    )
}

/// Waits on `sock` for a message satisfying `want` (bounded).
fn recv_until(sock: &UdpSocket, want: impl Fn(&str) -> bool) -> Result<String> {
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if want(&text) {
            return Ok(text);
        }
    }
    bail!("no expected SIP message within 5 s")
}

/// One call through the SBC (PBX → carrier); returns the SBC's inside RTP port for it.
fn sbc_call(pbx: &UdpSocket, car: &UdpSocket, i: usize, mode: Mode) -> Result<u16> {
    let port = PEER_PORT + port_off(i);
    let key = pbx_key()?;
    let offer = sdp(
        "198.18.1.2",
        port,
        (mode == Mode::SrtpToSrtp).then_some((1, &key)),
    );
    let call_id = format!("srtp-bench-{i}");
    let head = |method: &str, to: &str| {
        format!(
            "{method} sip:15551234567@198.18.1.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bKsb{i}{};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=p{i}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:100@198.18.1.2:5060>\r\n",
            method.to_lowercase()
        )
    };
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        head("INVITE", "<sip:15551234567@198.18.1.1>"),
        offer.len()
    );
    pbx.send_to(invite.as_bytes(), "198.18.1.1:5060")?;
    // The carrier answers the SBC's offer with the line of the bench's suite and its own key.
    let out = recv_until(car, |m| m.starts_with("INVITE "))?;
    let tag = body(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .filter_map(|v| Crypto::parse(v.trim()).ok())
        .find(|c| c.suite == SUITE)
        .map(|c| c.tag)
        .context("the SBC's offer lacks the bench suite")?;
    let answer = sdp("198.18.2.2", port, Some((tag, &carrier_key()?)));
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "Call-ID", "CSeq"] {
        for l in out.lines().filter(|l| l.starts_with(&format!("{h}:"))) {
            ok.push_str(l);
            ok.push_str("\r\n");
        }
    }
    let to = header(&out, "To").context("To")?;
    write!(
        ok,
        "To: {to};tag=c{i}\r\nContact: <sip:gw@198.18.2.2:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    )?;
    car.send_to(ok.as_bytes(), "198.18.2.1:5060")?;
    let ok = recv_until(pbx, |m| {
        m.starts_with("SIP/2.0 200") && m.contains(&format!("Call-ID: {call_id}"))
    })?;
    let relay_port = body(&ok)
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .context("200 without m=audio port")?;
    let to = header(&ok, "To").context("To")?;
    let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", to));
    pbx.send_to(ack.as_bytes(), "198.18.1.1:5060")?;
    Ok(relay_port)
}

/// How the SBC of a row runs.
#[derive(Debug, Clone, Copy)]
enum Variant {
    /// XDP and AF_XDP, polling every so many µs (0: event-driven), with busy polling or not.
    Poll(u32, bool),
    /// No XDP at all, so the relay sockets carry the streams.
    Sockets,
}

/// One SBC row; returns the trial and the forwarding path's idle CPU (seconds per second)
/// measured afterwards.
fn trial_sbc(
    lab: &Lab,
    napi: &[u32],
    sbc: &Path,
    work: &Path,
    streams: usize,
    mode: Mode,
    variant: Variant,
) -> Result<(Trial, Option<f64>)> {
    let (xdp, poll, busy) = match variant {
        Variant::Poll(us, busy) => ("auto", us, if busy { "on" } else { "off" }),
        Variant::Sockets => ("off", 0, "off"),
    };
    let instance = format!("benchsrtp{}", std::process::id());
    let config = work.join("sbc-srtp.toml");
    let pbx_srtp = match mode {
        Mode::RtpToSrtp => "off",
        Mode::SrtpToSrtp => "mandatory",
    };
    std::fs::write(
        &config,
        format!(
            r#"[general]
instance = "{instance}"
[log]
level = "warn"
[inside]
udp = ["198.18.1.1:5060"]
media_address = "198.18.1.1"
[outside]
udp = ["198.18.2.1:5060"]
media_address = "198.18.2.1"
[pbx]
address = "198.18.1.2:5060"
allow = ["198.18.1.0/24"]
srtp = "{pbx_srtp}"
srtp_suites = ["{SUITE}"]
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
srtp = "mandatory"
srtp_suites = ["{SUITE}"]
max_cps = 1000
[media]
xdp = "{xdp}"
xsk = "auto"
xsk_poll_us = {poll}
xsk_busy_poll = "{busy}"
interfaces = ["in0", "out0"]
timeout_s = 0
[limits]
max_cps = 1000
[admin]
listen = "127.0.0.1:8080"
"#
        ),
    )?;
    let pins = PinDir(std::path::PathBuf::from("/sys/fs/bpf/sbc").join(&instance));
    let child = Command::new("taskset")
        .args(["-c", &FWD_CPU.to_string(), "nsenter"])
        .arg(format!("--net=/run/netns/{}", lab.sbc))
        .arg(sbc)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting sbc")?;
    let mut guard = ChildGuard(child);
    let admin: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let req = |method: &str, path: &str| {
        let _in = netns::enter(&lab.sbc).ok()?;
        http::request(admin, method, path, None)
    };
    let ready = (0..100).any(|_| {
        if req("GET", "/readyz").is_some_and(|r| r.status == 200) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
        false
    });
    if !ready {
        bail!("sbc not ready");
    }
    let sip = |ns: &str, addr: [u8; 4]| -> Result<UdpSocket> {
        let _in = netns::enter(ns)?;
        let s = UdpSocket::bind(SocketAddr::from((addr, 5060)))?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(s)
    };
    let pbx = sip(&lab.pbx, [198, 18, 1, 2])?;
    let car = sip(&lab.carrier, [198, 18, 2, 2])?;
    let mut targets = Vec::with_capacity(streams);
    for i in 0..streams {
        let port = sbc_call(&pbx, &car, i, mode)?;
        targets.push(SocketAddr::from(([198, 18, 1, 1], port)));
    }
    // The calls really are encrypted as the mode says (the API names suites, never keys).
    let media = req("GET", "/api/v1/media/sessions/1")
        .map(|r| r.body)
        .unwrap_or_default();
    let suites = media.matches(SUITE.name()).count();
    let want = if mode == Mode::SrtpToSrtp { 2 } else { 1 };
    if suites != want {
        bail!("session 1 is not {} with {SUITE}: {media}", mode.name());
    }
    // SRTP streams go through the AF_XDP relay (`media.xsk`), or the row says otherwise.
    let metrics = req("GET", "/metrics").map(|r| r.body).unwrap_or_default();
    if matches!(variant, Variant::Poll(..))
        && !metrics.lines().any(|l| l == "sbc_media_xsk_active 1")
    {
        eprintln!("bench:   warning: the SBC's AF_XDP relay is not active (socket relay measured)");
    }
    drop((pbx, car));
    let relay = guard.0.id();
    let mut packets = Packets::new(mode)?;
    let t = search(streams, |rate| {
        trial_at(
            lab,
            napi,
            relay,
            &targets,
            &mut packets,
            rate,
            Keying::Recrypt,
        )
    });
    // Whether busy polling engaged (options set, and a NAPI id for the sockets that
    // received); and what the forwarding path costs once the packets stop.
    if matches!(variant, Variant::Poll(_, true)) {
        let metrics = req("GET", "/metrics").map(|r| r.body).unwrap_or_default();
        let gauge: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("sbc_media_xsk_busy_poll{") || l.starts_with("sbc_media_xsk_napi_id{")
            })
            .collect();
        eprintln!("bench:   busy polling: {gauge:?}");
    }
    thread::sleep(Duration::from_secs(1));
    let cpu = |p| -> u64 { napi.iter().map(|&n| task_cpu_ns(n)).sum::<u64>() + task_cpu_ns(p) };
    let idle0 = cpu(relay);
    thread::sleep(IDLE);
    let idle = cpu(relay).saturating_sub(idle0) as f64 / 1e9 / IDLE.as_secs_f64();
    guard.term();
    drop(pins);
    t.map(|t| (t, Some(idle)))
}

/// rtpengine's trials. With [`Keying::Recrypt`], rtpengine runs with `--dtmf-log-dest` (to
/// the discard port of the namespace's loopback, where no DTMF event is ever sent: the
/// packets carry none): rtpengine 10.5 (Debian 12) then decrypts and re-encrypts SRTP→SRTP
/// (its stream handler choice forces re-encryption whenever DTMF logging is on; from 13.4
/// on, the ng flag `recrypt` does the same), where by default it offers the PBX's key to
/// the carrier and forwards the packets untouched. It has no option to key the carrier leg
/// itself, so both legs keep the PBX's key; the per-packet work (authenticate, decrypt,
/// encrypt, tag) is the SBC's. RTP→SRTP is the same either way (it always encrypts).
fn trial_rtpengine(
    lab: &Lab,
    napi: &[u32],
    streams: usize,
    mode: Mode,
    keying: Keying,
) -> Result<Trial> {
    let mut packets = Packets::new(mode)?;
    let extra: &[&str] = match keying {
        Keying::Recrypt => &["--dtmf-log-dest=127.0.0.1:9"],
        Keying::PassThrough => &[],
    };
    search(streams, |rate| {
        // Restarted before each trial, as in the plain rows (it drops a stream for good after
        // queue overflows).
        let (mut guard, ng) = super::bench::start_rtpengine_with(lab, extra)?;
        // A fresh rtpengine has fresh contexts: the packets start again at index 0.
        packets = Packets::new(mode)?;
        let mut targets = Vec::with_capacity(streams);
        for i in 0..streams {
            let port = PEER_PORT + port_off(i);
            let call = format!("bench-srtp-{i}");
            let key = pbx_key()?;
            let offer = sdp(
                "198.18.1.2",
                port,
                (mode == Mode::SrtpToSrtp).then_some((1, &key)),
            );
            let to_carrier = ng_call(
                &ng,
                "offer",
                &[
                    ("call-id", &call),
                    ("from-tag", "a"),
                    ("sdp", &offer),
                    ("direction", "l2:in3:oute"),
                    ("transport-protocol", "RTP/SAVP"),
                ],
            )?;
            let tag = to_carrier
                .split("a=crypto:")
                .skip(1)
                .filter_map(|r| r.split("\r\n").next())
                .filter_map(|v| Crypto::parse(v.trim()).ok())
                .find(|c| c.suite == SUITE)
                .map(|c| c.tag)
                .with_context(|| format!("rtpengine's offer lacks {SUITE}: {to_carrier}"))?;
            if !to_carrier.contains("RTP/SAVP") {
                bail!("rtpengine's offer to the carrier is not RTP/SAVP: {to_carrier}");
            }
            let answer = ng_call(
                &ng,
                "answer",
                &[
                    ("call-id", &call),
                    ("from-tag", "a"),
                    ("to-tag", "b"),
                    (
                        "sdp",
                        &sdp("198.18.2.2", port, Some((tag, &carrier_key()?))),
                    ),
                ],
            )?;
            let want_crypto = mode == Mode::SrtpToSrtp;
            if answer.contains("a=crypto:") != want_crypto {
                bail!(
                    "rtpengine's answer to the PBX does not match {}: {answer}",
                    mode.name()
                );
            }
            let port = answer
                .split("m=audio ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse::<u16>().ok())
                .with_context(|| format!("rtpengine answer without m=audio port: {answer}"))?;
            targets.push(SocketAddr::from(([198, 18, 1, 1], port)));
        }
        let t = trial_at(
            lab,
            napi,
            guard.0.id(),
            &targets,
            &mut packets,
            rate,
            keying,
        );
        guard.term();
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's SRTP packets decrypt with the PBX's key, in order, and do not repeat
    /// an index across batches (the relays' replay lists would drop them).
    #[test]
    fn srtp_packets_decrypt_and_indices_go_on() {
        let mut p = Packets::new(Mode::SrtpToSrtp).expect("packets");
        let mut rx = SrtpContext::new(SUITE, &pbx_key().expect("key"), None);
        for batch in [3, 4] {
            for pkt in p.next(batch).expect("packets").iter() {
                let mut b = pkt.clone();
                let n = rx.unprotect_rtp(&mut b).expect("authentic, not a replay");
                assert_eq!(b[..n], rtp(u16::from_be_bytes([pkt[2], pkt[3]]), 7));
            }
        }
        let plain = Packets::new(Mode::RtpToSrtp)
            .and_then(|mut p| p.next(2))
            .expect("packets");
        assert_eq!(plain[1], rtp(1, 7).to_vec());
    }
}
