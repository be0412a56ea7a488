//! `cargo xtask bench signaling`: calls per second and CPU per call of the SBC against Kamailio
//! (a stateful proxy), against Kamailio + rtpengine (the same job as the SBC: media anchored,
//! SDP rewritten) and against SIPp talking directly (the harness ceiling), side by side in one
//! run on the lab:
//! SIPp UAC (pbx) → system under test (sbc namespace) → SIPp UAS (carrier). Also the SBC's
//! memory per concurrent call and the response-time overhead. See shared BENCHMARKING.md for
//! why CPU per call (from the SUT's own per-thread schedstat) is the comparable figure on a
//! 2-vCPU machine, and why the systems are interleaved and repeated.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use sbc_lab::{
    lab::Lab,
    process::Owned,
    sipp::{self, Step},
};

/// The systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    /// Userspace media: the relay binds its sockets per call.
    Sbc,
    /// The SBC's default media mode: XDP attached, streams latched in the kernel without a
    /// socket per port (`media.xdp_latch`).
    SbcXdp,
    Kamailio,
    /// Kamailio driving rtpengine (`rtpengine_offer`/`_answer`/`_delete`): media anchoring with
    /// SDP rewrite, the job the SBC does. Its CPU is both process trees together.
    KamailioRtpengine,
    /// Kernel IP forwarding between the namespaces: SIPp talking to SIPp.
    Direct,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Sbc => "sbc (B2BUA, topology hiding, SDP rewrite, media ports)",
            System::SbcXdp => "sbc, XDP media (as above; socketless kernel latching, the default)",
            System::Kamailio => "Kamailio 5.6 (stateful proxy, dialog, topoh, nathelper)",
            System::KamailioRtpengine => {
                "Kamailio 5.6 + rtpengine (as above, media anchored, SDP rewritten)"
            }
            System::Direct => "SIPp direct (harness ceiling)",
        }
    }

    /// Its key in the JSON report.
    fn key(self) -> &'static str {
        match self {
            System::Sbc => "sbc",
            System::SbcXdp => "sbc_xdp",
            System::Kamailio => "kamailio",
            System::KamailioRtpengine => "kamailio_rtpengine",
            System::Direct => "direct",
        }
    }
}

/// Sizes of one benchmark run.
#[derive(Debug, Clone)]
pub struct Plan {
    ladder: Vec<u64>,
    trial: Duration,
    reps: usize,
    fixed_rate: u64,
    concurrent: u64,
    /// The rate of the INVITE forwarding delay step; `None`: half the SBC's clean rate.
    delay_rate: Option<u64>,
}

/// A numeric benchmark knob from the environment: `None` when unset, and also when it does
/// not parse or lies outside `range`, which is then said on stderr (a run with a silently
/// ignored knob would measure something other than what was asked).
fn knob(name: &str, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse::<u64>() {
        Ok(v) if range.contains(&v) => Some(v),
        _ => {
            eprintln!(
                "bench signaling: {name}={raw:?} ignored: it must be a whole number in {}..={}",
                range.start(),
                range.end()
            );
            None
        }
    }
}

impl Plan {
    /// The full run (about 33 minutes) or `--quick` (about 7 minutes).
    /// `SBC_BENCH_LADDER=<calls/s,…>` replaces the step ladder (e.g. a finer one to place a
    /// knee between two of the default steps); it must hold the fixed rate (500).
    /// `SBC_BENCH_STEP_S` replaces the step length. `SBC_BENCH_DELAY_RATE=<calls/s>` measures
    /// the INVITE forwarding delay at that rate instead of half the SBC's clean rate (to
    /// compare two builds at the same rate).
    pub fn new(quick: bool) -> Self {
        let mut plan = Self::default_for(quick);
        if let Ok(list) = std::env::var("SBC_BENCH_LADDER") {
            let mut ladder: Vec<u64> = list
                .split(',')
                .filter_map(|r| r.trim().parse().ok())
                .collect();
            ladder.sort_unstable();
            ladder.dedup();
            if ladder.contains(&plan.fixed_rate) {
                plan.ladder = ladder;
            } else {
                eprintln!(
                    "bench signaling: SBC_BENCH_LADDER ignored: it must contain {} calls/s",
                    plan.fixed_rate
                );
            }
        }
        // SBC_BENCH_STEP_S=<seconds>: each step's length (a sustained overload needs more
        // than the 3-5 s that find the clean rate).
        if let Some(secs) = knob("SBC_BENCH_STEP_S", 1..=120) {
            plan.trial = Duration::from_secs(secs);
        }
        plan.delay_rate = knob("SBC_BENCH_DELAY_RATE", 100..=20_000);
        plan
    }

    fn default_for(quick: bool) -> Self {
        if quick {
            Plan {
                ladder: vec![500, 1000, 2000],
                trial: Duration::from_secs(3),
                reps: 1,
                fixed_rate: 500,
                concurrent: 2000,
                delay_rate: None,
            }
        } else {
            Plan {
                ladder: vec![500, 1000, 2000, 3000, 4000, 5000, 6000, 8000],
                trial: Duration::from_secs(5),
                reps: 3,
                fixed_rate: 500,
                concurrent: 10_000,
                delay_rate: None,
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Trial {
    rate: u64,
    calls: u64,
    ok: u64,
    failed: u64,
    retrans: u64,
    cpu_s: f64,
    rtt_ms: Vec<f64>,
}

impl Trial {
    /// < 0.1 % failed calls and no more than 0.1 % retransmissions.
    fn clean(&self) -> bool {
        self.calls > 0
            && self.failed * 1000 <= self.calls
            && self.retrans * 1000 <= self.calls.max(1)
            && self.ok >= self.calls * 999 / 1000
    }

    fn cpu_per_1000(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.cpu_s / self.ok as f64 * 1000.0
        }
    }
}

/// Runs the benchmark and writes `bench/results/signaling-<date>.{md,json}`.
pub fn signaling(root: &Path, quick: bool) -> Result<()> {
    let plan = Plan::new(quick);
    // SBC_BENCH_SBC_BIN=<path> measures a prebuilt binary instead (an A/B against an older
    // build: run once with each, SBC_BENCH_ONLY=sbc, alternating).
    let sbc_bin = match std::env::var_os("SBC_BENCH_SBC_BIN") {
        Some(bin) => std::path::PathBuf::from(bin),
        None => {
            crate::cargo(&["build", "--release", "--package", "sbc", "--bin", "sbc"])?;
            root.join("target/release/sbc")
        }
    };
    let work = std::env::temp_dir().join(format!("sbc-bench-sig-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    // Every file a system under test writes (pidfiles, SIPp's logs) belongs in `work`; a file
    // that appears in the repository during the run is a bug in this benchmark.
    let before = repo_files(root);
    let result = run_all(&plan, &sbc_bin, &work, quick);
    let _ = std::fs::remove_dir_all(&work);
    let (md, json) = result?;
    let left: Vec<String> = repo_files(root)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if !left.is_empty() {
        bail!("the benchmark left files in the repository: {left:?}");
    }
    // SBC_BENCH_OUT=<dir>: the report goes there instead (`bench signaling --shards` collects
    // its runs so).
    let dir =
        std::env::var_os("SBC_BENCH_OUT").map_or_else(|| root.join("bench/results"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let shards = match sbc_shards() {
        (1, cpus) if cpus == "1" => String::new(),
        (n, cpus) => format!("-shards{n}-cpus{}", cpus.replace(',', "_")),
    };
    let quota = std::env::var("SBC_BENCH_SBC_CPU_QUOTA")
        .map(|q| format!("-quota{q}"))
        .unwrap_or_default();
    let suffix = format!("{shards}{quota}{}", if quick { "-quick" } else { "" });
    let date = date();
    std::fs::write(dir.join(format!("signaling-{date}{suffix}.md")), &md)?;
    std::fs::write(dir.join(format!("signaling-{date}{suffix}.json")), &json)?;
    println!("{md}");
    Ok(())
}

/// Untracked and ignored files of the repository (`git status`), to catch leftovers.
fn repo_files(root: &Path) -> Vec<String> {
    Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--ignored",
            "--untracked-files=all",
        ])
        .arg("--")
        .arg(".")
        .arg(":(exclude)target")
        .current_dir(root)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("??") || l.starts_with("!!"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// How rtpengine forwards media in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarding {
    /// In the kernel (its `xt_RTPENGINE` module loaded, table [`RTPENGINE_TABLE`]).
    Kernel,
    /// In its own threads.
    Userspace,
}

impl Forwarding {
    /// Kernel forwarding where rtpengine's kernel module loads, else userspace.
    fn detect() -> Self {
        let _ = Command::new("modprobe")
            .arg("xt_RTPENGINE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if Path::new("/proc/rtpengine/control").exists() {
            Forwarding::Kernel
        } else {
            Forwarding::Userspace
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Forwarding::Kernel => "kernel forwarding (xt_RTPENGINE loaded)",
            Forwarding::Userspace => {
                "userspace forwarding (its kernel module xt_RTPENGINE does not load on this kernel)"
            }
        }
    }
}

/// rtpengine's kernel table when it forwards in the kernel (not the default 0, so a system
/// rtpengine is left alone).
const RTPENGINE_TABLE: u32 = 42;
/// rtpengine's ng control socket, on the loopback of the system-under-test namespace.
const RTPENGINE_NG_PORT: u16 = 22_223;

/// Everything a trial needs: the lab, the files in the work directory, the binaries.
struct Setup<'a> {
    lab: Lab,
    work: &'a Path,
    uac: PathBuf,
    sbc_bin: &'a Path,
    sbc_cfg: PathBuf,
    /// The same SBC with XDP media ([`System::SbcXdp`]).
    sbc_xdp_cfg: PathBuf,
    kam_cfg: PathBuf,
    rtpengine: Forwarding,
}

/// INVITE forwarding delay of one system: rate, (p50 µs, p99 µs, INVITEs paired).
/// One system's INVITE forwarding delay step.
#[derive(Debug, Clone)]
struct DelayStep {
    /// Median delay (µs); NaN when nothing paired.
    p50: f64,
    /// 99th percentile (µs); NaN when nothing paired.
    p99: f64,
    /// INVITEs seen on both interfaces.
    paired: usize,
    /// Calls of the step that failed: above 0, the system was over its capacity at this rate
    /// and its figures are an overloaded system's (said in the report, not hidden).
    failed: u64,
    /// Why the step could not be measured at all (the capture or the load failed).
    error: Option<String>,
}

type Delay = (System, u64, DelayStep);

impl DelayStep {
    /// The repetitions of one system's step in one figure: medians of the measured ones'
    /// p50, p99 and INVITEs paired, the sum of their failed calls; not measured when none was.
    fn median(steps: &[DelayStep]) -> DelayStep {
        let measured: Vec<&DelayStep> = steps.iter().filter(|s| s.error.is_none()).collect();
        let of = |f: fn(&DelayStep) -> f64| median(measured.iter().map(|s| f(s)).collect());
        DelayStep {
            p50: of(|s| s.p50),
            p99: of(|s| s.p99),
            paired: of(|s| s.paired as f64).max(0.0) as usize,
            failed: measured.iter().map(|s| s.failed).sum(),
            error: if measured.is_empty() {
                steps.iter().find_map(|s| s.error.clone())
            } else {
                None
            },
        }
    }
}

/// `json` with every repetition's p99 INVITE forwarding delay per system
/// (`invite_delay_p99_us_runs`, null for a repetition not measured).
fn with_delay_runs(json: String, runs: &[(System, Vec<DelayStep>)]) -> String {
    let body = json.trim_end().trim_end_matches('}').trim_end();
    let map = crate::bench::json_map(runs.iter().map(|(system, steps)| {
        let each = steps.iter().map(|s| num(s.p99)).collect::<Vec<_>>();
        (system.key(), format!("[{}]", each.join(", ")))
    }));
    format!("{body},\n  \"invite_delay_p99_us_runs\": {map}\n}}\n")
}

fn run_all(plan: &Plan, sbc_bin: &Path, work: &Path, quick: bool) -> Result<(String, String)> {
    let lab = Lab::up("bsig").context("lab up (needs root)")?;
    let caller = sipp::scenario(
        "bench-uac",
        true,
        &[sipp::answered_caller(), sipp::hang_up(true).to_vec()].concat(),
    );
    let uac = work.join("uac.xml");
    std::fs::write(
        &uac,
        caller
            .replace(
                "<recv response=\"200\" optional=\"false\" rrs=\"true\"/>",
                "<recv response=\"200\" optional=\"false\" rrs=\"true\" rtd=\"true\"/>",
            )
            .replacen(
                "<send retrans=\"500\">",
                "<send retrans=\"500\" start_rtd=\"true\">",
                1,
            )
            .replacen("INVITE sip:[service]@", CALL_TAG, 1),
    )?;
    let kam_cfg = work.join("kamailio.cfg");
    std::fs::write(&kam_cfg, KAMAILIO_CFG)?;
    let sbc_cfg = work.join("sbc.toml");
    // SBC_BENCH_SHARDS=<n> runs the SBC with n signaling shards (default: 1, the SBC's CPU
    // set is one CPU); SBC_BENCH_SBC_CPUS=<list> is the SBC's CPU set (taskset -c; default 1).
    let (shards, sbc_cpus) = sbc_shards();
    let sbc_text = SBC_CFG.replace(
        "instance = \"benchsig\"",
        &format!("instance = \"benchsig\"\nsignaling_shards = {shards}"),
    );
    std::fs::write(&sbc_cfg, &sbc_text)?;
    // The same SBC in its default media mode, under its own instance name (bpffs pins).
    let sbc_xdp_cfg = work.join("sbc-xdp.toml");
    let xdp_text = sbc_text
        .replace(
            "instance = \"benchsig\"",
            &format!("instance = \"{XDP_INSTANCE}\""),
        )
        .replace(
            "xdp = \"off\"",
            "xdp = \"native\"\ninterfaces = [\"in0\", \"out0\"]\nxdp_latch = true",
        );
    std::fs::write(&sbc_xdp_cfg, xdp_text)?;
    eprintln!("bench signaling: sbc with {shards} signaling shard(s) on CPU(s) {sbc_cpus}");
    let setup = Setup {
        lab,
        work,
        uac,
        sbc_bin,
        sbc_cfg,
        sbc_xdp_cfg,
        kam_cfg,
        rtpengine: Forwarding::detect(),
    };
    eprintln!("bench signaling: rtpengine: {}", setup.rtpengine.describe());
    let _quota = CpuQuota::from_env()?;
    let _table = (setup.rtpengine == Forwarding::Kernel).then(|| KernelTable(RTPENGINE_TABLE));

    // Step search per system, repetitions interleaved (A B C D A B C D …) against drift.
    let systems: Vec<System> = [
        System::Sbc,
        System::SbcXdp,
        System::Kamailio,
        System::KamailioRtpengine,
        System::Direct,
    ]
    .into_iter()
    // SBC_BENCH_ONLY=kamailio (or sbc, kamailio_rtpengine, direct, or a comma-separated
    // list of them) runs only those systems, for diagnosing them.
    .filter(|s| {
        std::env::var("SBC_BENCH_ONLY").map_or(true, |o| o.split(',').any(|k| k == s.key()))
    })
    .collect();
    let mut best: Vec<(System, Vec<Trial>)> = systems.iter().map(|s| (*s, Vec::new())).collect();
    let mut fixed: Vec<(System, Vec<Trial>)> = systems.iter().map(|s| (*s, Vec::new())).collect();
    // The first step that was not clean, per system and repetition: how each system fares
    // past its capacity (completed, failed, retransmitted).
    let mut past: Vec<(System, Vec<Trial>)> = systems.iter().map(|s| (*s, Vec::new())).collect();
    for rep in 0..plan.reps {
        for (i, system) in systems.iter().enumerate() {
            eprintln!(
                "bench signaling: repetition {}/{}, {}",
                rep + 1,
                plan.reps,
                system.name()
            );
            let mut last_clean = None;
            for &rate in &plan.ladder {
                let t = trial(&setup, *system, rate, plan.trial)?;
                eprintln!(
                    "  {rate:>5}/s: {} ok, {} failed, {} retransmissions, CPU {:.3} s",
                    t.ok, t.failed, t.retrans, t.cpu_s
                );
                if rate == plan.fixed_rate {
                    fixed[i].1.push(t.clone());
                }
                if !t.clean() {
                    past[i].1.push(t);
                    break;
                }
                last_clean = Some(t);
            }
            best[i].1.push(last_clean.unwrap_or_default());
        }
    }
    // Added delay at half the SBC's highest clean rate (the issue's operating point), or at
    // SBC_BENCH_DELAY_RATE.
    // (The XDP SBC's when the userspace one did not run.)
    let sbc_max = [System::Sbc, System::SbcXdp]
        .iter()
        .find_map(|want| best.iter().find(|(s, _)| s == want))
        .map_or(0.0, |(_, t)| {
            median(t.iter().map(|t| t.rate as f64).collect())
        });
    let delay_rate = plan
        .delay_rate
        .unwrap_or(((sbc_max / 2.0 / 100.0).round() * 100.0).max(100.0) as u64);
    // One delay step per system and repetition, interleaved like the ladder (A B C D A B C D
    // …); the report takes the medians, and shows every run.
    let mut runs: Vec<(System, Vec<DelayStep>)> = [
        System::Sbc,
        System::SbcXdp,
        System::Kamailio,
        System::KamailioRtpengine,
    ]
    .into_iter()
    .filter(|s| systems.contains(s))
    .map(|s| (s, Vec::new()))
    .collect();
    for rep in 0..plan.reps {
        for (system, steps) in &mut runs {
            let system = *system;
            eprintln!(
                "bench signaling: INVITE forwarding delay of {} at {delay_rate} calls/s, \
                 repetition {}/{}",
                system.name(),
                rep + 1,
                plan.reps
            );
            // A system that fails calls at this rate (a reference system past its
            // capacity) is reported as such; it does not throw away the other systems'
            // figures measured before it.
            let step = forward_delay(&setup, system, delay_rate, plan.trial).unwrap_or_else(|e| {
                eprintln!(
                    "bench signaling: INVITE forwarding delay of {} not measured: {e:#}",
                    system.name()
                );
                DelayStep {
                    p50: f64::NAN,
                    p99: f64::NAN,
                    paired: 0,
                    failed: 0,
                    error: Some(format!("{e:#}")),
                }
            });
            if step.failed > 0 {
                eprintln!(
                    "bench signaling: {} failed {} calls in the delay step at {delay_rate}/s \
                     ({} INVITEs paired): over its capacity there",
                    system.name(),
                    step.failed,
                    step.paired
                );
            }
            steps.push(step);
        }
    }
    let delays: Vec<Delay> = runs
        .iter()
        .map(|(system, steps)| (*system, delay_rate, DelayStep::median(steps)))
        .collect();
    eprintln!(
        "bench signaling: {} concurrent calls held open on the sbc",
        plan.concurrent
    );
    let memory = concurrency(&setup.lab, plan.concurrent, sbc_bin, &setup.sbc_cfg, work)?;
    let (mut md, json) = render(
        plan,
        &best,
        &fixed,
        &delays,
        &memory,
        setup.rtpengine,
        quick,
    );
    let _ = writeln!(
        md,
        "\n## Signaling added delay (INVITE in → INVITE out)\n\nBoth interfaces of the system's namespace captured with tshark (on the load generator's CPU, not the system's) during a {}-s step; each INVITE (CSeq 1, first sighting) arriving on the inside pairs with the one of the same call leaving on the outside (the call's number rides in the Request-URI user, which every system forwards unchanged). Capture timestamps, so kernel receive and send are included. With rtpengine the delay includes Kamailio's round trip to it (the offer). A system with failed calls in its step was over its capacity at this rate: its delays are an overloaded system's.\n\nOne step per system and repetition, interleaved; p50, p99 and INVITEs paired are the medians of the repetitions measured, failed calls their sum, and the last column every repetition's p99.\n\n| system | rate (calls/s) | INVITEs paired | p50 (µs) | p99 (µs) | failed calls | p99 per repetition (µs) |\n| --- | ---: | ---: | ---: | ---: | --- | --- |",
        plan.trial.as_secs()
    );
    for ((system, rate, d), (_, steps)) in delays.iter().zip(&runs) {
        let failed = match &d.error {
            Some(e) => format!("not measured: {e}"),
            None if d.failed > 0 => format!("{} (over capacity)", d.failed),
            None => "0".to_owned(),
        };
        let each = steps
            .iter()
            .map(|s| match &s.error {
                Some(_) => "not measured".to_owned(),
                None => format!("{:.0}", s.p99),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "| {} | {rate} | {} | {:.0} | {:.0} | {failed} | {each} |",
            system.name(),
            d.paired,
            d.p50,
            d.p99
        );
    }
    let json = with_past_steps(&mut md, json, &past);
    let json = with_delay_runs(json, &runs);
    Ok((md, json))
}

/// rtpengine's kernel forwarding table, deleted on drop (rtpengine leaves it behind).
struct KernelTable(u32);

impl Drop for KernelTable {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/rtpengine/control", format!("del {}\n", self.0));
    }
}

fn trial(s: &Setup<'_>, system: System, rate: u64, length: Duration) -> Result<Trial> {
    let lab = &s.lab;
    // Declared before the processes, so dropped after them: the XDP links and maps pinned
    // for the instance go (and the program detaches) once the SBC has stopped.
    let _pins = (system == System::SbcXdp)
        .then(|| crate::bench::PinDir(PathBuf::from("/sys/fs/bpf/sbc").join(XDP_INSTANCE)));
    // The processes of the system under test; its CPU is theirs and their descendants'.
    let (suts, dest) = match system {
        System::Sbc => (
            vec![start_sbc(lab, s.sbc_bin, &s.sbc_cfg)?],
            "198.18.1.1:5060",
        ),
        System::SbcXdp => {
            let sbc = start_sbc(lab, s.sbc_bin, &s.sbc_xdp_cfg)?;
            // A row that says XDP must have had it.
            let attached = {
                let _in = sbc_lab::netns::enter(&lab.sbc)?;
                sbc_lab::http::request(([127, 0, 0, 1], 8080).into(), "GET", "/metrics", None)
                    .is_some_and(|r| r.body.lines().any(|l| l == "sbc_xdp_attached 1"))
            };
            if !attached {
                bail!("the XDP SBC started without XDP attached");
            }
            (vec![sbc], "198.18.1.1:5060")
        }
        System::Kamailio => (
            vec![start_kamailio(lab, &s.kam_cfg, false)?],
            "198.18.1.1:5060",
        ),
        System::KamailioRtpengine => {
            // rtpengine first: Kamailio's module takes an engine that does not answer at start
            // out of service for a minute.
            let rtpengine = start_rtpengine(s)?;
            let kamailio = start_kamailio(lab, &s.kam_cfg, true)?;
            (vec![kamailio, rtpengine], "198.18.1.1:5060")
        }
        System::Direct => {
            sysctl(&lab.sbc, "net.ipv4.ip_forward=1")?;
            (Vec::new(), "198.18.2.2:5060")
        }
    };
    let cpu = |suts: &[Owned]| suts.iter().map(|p| tree_cpu_ns(p.pid())).sum::<u64>();
    let uas = spawn(Command::new("ip").args([
        "netns",
        "exec",
        &lab.carrier,
        "sipp",
        "-nostdin",
        "-sn",
        "uas",
        "-i",
        "198.18.2.2",
        "-p",
        "5060",
        "-timeout",
        "120",
    ]))?;
    thread::sleep(Duration::from_millis(300));
    let calls = rate * length.as_secs();
    let stat = s.work.join(format!("stat-{}.csv", std::process::id()));
    let _ = std::fs::remove_file(&stat);
    let cpu0 = cpu(&suts);
    // SBC_BENCH_SIPP_CPUS=<list>: the UAC's CPU set (default 0).
    let sipp_cpus = std::env::var("SBC_BENCH_SIPP_CPUS").unwrap_or_else(|_| "0".into());
    let mut uac_p = spawn(
        Command::new("ip")
            .args([
                "netns", "exec", &lab.pbx, "taskset", "-c", &sipp_cpus, "sipp", "-nostdin", "-sf",
            ])
            .arg(&s.uac)
            .args([
                "-i",
                "198.18.1.2",
                "-p",
                "5060",
                "-s",
                "15551234567",
                "-r",
                &rate.to_string(),
                "-m",
                &calls.to_string(),
            ])
            .args([
                "-l",
                &(rate * 4).to_string(),
                "-timeout",
                &(length.as_secs() + 40).to_string(),
                "-trace_stat",
                "-stf",
            ])
            .arg(&stat)
            .args([
                "-trace_rtt",
                "-rtt_freq",
                "1",
                "-max_recv_loops",
                "10000",
                dest,
            ])
            .current_dir(s.work),
    )?;
    let _ = uac_p.wait_timeout(length + Duration::from_secs(45));
    let cpu1 = cpu(&suts);
    drop(uas);
    for sut in suts {
        stop_tree(sut);
    }
    if system == System::Direct {
        sysctl(&lab.sbc, "net.ipv4.ip_forward=0")?;
    }
    let (ok, failed, retrans) = parse_stat(&stat)?;
    keep_errors(s.work, uac_p.pid(), failed);
    let rtt_ms = parse_rtt(s.work, uac_p.pid());
    Ok(Trial {
        rate,
        calls,
        ok,
        failed,
        retrans,
        cpu_s: (cpu1.saturating_sub(cpu0)) as f64 / 1e9,
        rtt_ms,
    })
}

/// INVITE forwarding delay of `system` at `rate`, from a capture of both of its interfaces,
/// with the step's failed calls.
fn forward_delay(s: &Setup<'_>, system: System, rate: u64, length: Duration) -> Result<DelayStep> {
    // The capture runs on the load generator's CPUs: on the system's own CPU its work would
    // be added to the delays it measures.
    let sipp_cpus = std::env::var("SBC_BENCH_SIPP_CPUS").unwrap_or_else(|_| "0".into());
    let cap = sbc_lab::capture::Capture::start_pinned(
        &s.lab.sbc,
        &["in0", "out0"],
        "udp port 5060",
        Some(&sipp_cpus),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let t = trial(s, system, rate, length)?;
    let bytes = cap.stop();
    let file = s.work.join("delay.pcap");
    std::fs::write(&file, bytes)?;
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            "sip.Method == \"INVITE\" && sip.CSeq.seq == 1",
            "-T",
            "fields",
            "-e",
            "frame.interface_id",
            "-e",
            "frame.time_epoch",
            "-e",
            "sip.r-uri.user",
        ])
        .output()
        .context("reading the capture with tshark")?;
    // SBC_BENCH_KEEP_PCAP=<path> keeps the capture there, to look into the delays.
    if let Some(keep) = std::env::var_os("SBC_BENCH_KEEP_PCAP") {
        std::fs::copy(&file, keep).context("keeping the capture")?;
    }
    let _ = std::fs::remove_file(&file);
    // Each call's Request-URI user carries its number ([`CALL_TAG`]), which every system
    // forwards unchanged: an INVITE pairs with the one that left for the same call, so a
    // packet the capture missed costs one pair, not the order of all later ones.
    let mut inside = std::collections::HashMap::new();
    let mut outside = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(iface), Some(ts), Some(user)) = (
            f.next(),
            f.next().and_then(|t| t.parse::<f64>().ok()),
            f.next(),
        ) else {
            continue;
        };
        let side = if iface == "0" {
            &mut inside
        } else {
            &mut outside
        };
        // The first sighting: a retransmission is not the forwarding.
        side.entry(user.to_owned()).or_insert(ts);
    }
    let delays: Vec<f64> = inside
        .iter()
        .filter_map(|(user, i)| outside.get(user).map(|o| (o - i) * 1e6))
        .collect();
    let paired = delays.len();
    let (p50, p99) = if paired == 0 {
        (f64::NAN, f64::NAN)
    } else {
        (percentile(&delays, 0.5), percentile(&delays, 0.99))
    };
    Ok(DelayStep {
        p50,
        p99,
        paired,
        failed: t.failed,
        error: None,
    })
}

/// Holds `n` calls open on the SBC and reads its RSS before and at the peak.
fn concurrency(
    lab: &Lab,
    n: u64,
    sbc_bin: &Path,
    sbc_cfg: &Path,
    work: &Path,
) -> Result<(u64, u64, u64, f64)> {
    let sbc = start_sbc(lab, sbc_bin, sbc_cfg)?;
    let idle = rss_kib(sbc.pid());
    let uas = spawn(Command::new("ip").args([
        "netns",
        "exec",
        &lab.carrier,
        "sipp",
        "-nostdin",
        "-sn",
        "uas",
        "-i",
        "198.18.2.2",
        "-p",
        "5060",
        "-timeout",
        "200",
    ]))?;
    thread::sleep(Duration::from_millis(300));
    let hold = sipp::scenario(
        "bench-hold",
        true,
        &[
            sipp::answered_caller(),
            vec![Step::Pause { ms: 60_000 }],
            sipp::hang_up(true).to_vec(),
        ]
        .concat(),
    );
    let hold_xml = work.join("hold.xml");
    std::fs::write(&hold_xml, hold)?;
    let rate = 500;
    let cpu0 = tree_cpu_ns(sbc.pid());
    let mut uac = spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.pbx, "sipp", "-nostdin", "-sf"])
            .arg(&hold_xml)
            .args([
                "-i",
                "198.18.1.2",
                "-p",
                "5060",
                "-s",
                "15551234567",
                "-r",
                &rate.to_string(),
                "-m",
                &n.to_string(),
            ])
            .args(["-l", &n.to_string(), "-timeout", "150", "198.18.1.1:5060"])
            .current_dir(work),
    )?;
    // Ramp: n / rate seconds; then the calls are all up for the rest of their 60 s.
    let ramp = Duration::from_secs(n / rate + 3);
    thread::sleep(ramp);
    let peak = rss_kib(sbc.pid());
    let cpu1 = tree_cpu_ns(sbc.pid());
    // Steady state: all calls held, nothing new arriving.
    thread::sleep(Duration::from_secs(5));
    let cpu2 = tree_cpu_ns(sbc.pid());
    let steady_cpu = (cpu2.saturating_sub(cpu1)) as f64 / 1e9 / 5.0;
    let _ = cpu0;
    let _ = uac.wait_timeout(Duration::from_secs(120));
    drop(uas);
    stop_tree(sbc);
    Ok((n, idle, peak, steady_cpu))
}

/// Stops a system under test and everything it forked. Kamailio's workers are separate
/// processes that outlive a SIGKILLed main process (each holding the 1 GB pre-faulted shared
/// memory), so: SIGTERM (Kamailio then stops its workers), wait, then SIGKILL any descendant
/// still there, by PID.
fn stop_tree(mut p: Owned) {
    let mut tree = vec![p.pid()];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        {
            tree.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    // (pid, start time): a PID reused after the wait is never signalled.
    let tree: Vec<(u32, Option<u64>)> = tree
        .into_iter()
        .skip(1)
        .map(|pid| (pid, start_time(pid)))
        .collect();
    p.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = p.wait_timeout(Duration::from_secs(10));
    for (pid, started) in tree {
        if started.is_some()
            && start_time(pid) == started
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    drop(p);
}

/// Start time of a process (clock ticks since boot; field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The SBC's signaling shards and CPU set for this run (`SBC_BENCH_SHARDS`,
/// `SBC_BENCH_SBC_CPUS`).
fn sbc_shards() -> (u16, String) {
    let shards = std::env::var("SBC_BENCH_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let cpus = std::env::var("SBC_BENCH_SBC_CPUS").unwrap_or_else(|_| "1".into());
    (shards, cpus)
}

fn start_sbc(lab: &Lab, bin: &Path, cfg: &Path) -> Result<Owned> {
    let cpus = sbc_shards().1;
    let mut p = spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.sbc, "taskset", "-c", &cpus])
            .arg(bin)
            .args(["run", "--config"])
            .arg(cfg)
            .env("SBC_LOG", "error"),
    )?;
    wait_port(&lab.sbc, 5060, &mut p)?;
    if let Some(quota) = CpuQuota::path() {
        // `ip netns exec` and `taskset` exec: the child is the SBC itself, and its threads
        // (those to come too) follow the process.
        std::fs::write(quota.join("cgroup.procs"), p.pid().to_string())
            .with_context(|| format!("moving the SBC into {}", quota.display()))?;
    }
    Ok(p)
}

/// `SBC_BENCH_SBC_CPU_QUOTA=<percent of one CPU>`: the SBC runs in a CPU cgroup with that
/// quota (cgroup v1 `cpu` controller or v2), so that a load the generator can still produce
/// overloads it (SIPp's own ceiling here is about 4,000 calls/s, below the SBC's clean rate):
/// how it behaves past its capacity becomes measurable. The cgroup is removed on drop.
struct CpuQuota(PathBuf);

impl CpuQuota {
    /// Period of the quota: short, so the SBC is throttled in small slices rather than
    /// stopped for most of a long period.
    const PERIOD_US: u64 = 10_000;

    /// The cgroup asked for by the environment, created; `None` without the variable.
    fn from_env() -> Result<Option<Self>> {
        let Some(percent) = std::env::var("SBC_BENCH_SBC_CPU_QUOTA")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|p| (1..=100).contains(p))
        else {
            return Ok(None);
        };
        let name = format!("sbc-bench-{}", std::process::id());
        let quota = Self::PERIOD_US * percent / 100;
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let dir = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.cfs_period_us"), Self::PERIOD_US.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            dir
        } else {
            let dir = Path::new("/sys/fs/cgroup").join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {}", Self::PERIOD_US))?;
            dir
        };
        eprintln!(
            "bench signaling: the SBC runs with {percent} % of one CPU ({})",
            dir.display()
        );
        Ok(Some(Self(dir)))
    }

    /// The cgroup of this run, if it has one.
    fn path() -> Option<PathBuf> {
        std::env::var_os("SBC_BENCH_SBC_CPU_QUOTA")?;
        let name = format!("sbc-bench-{}", std::process::id());
        [
            Path::new("/sys/fs/cgroup/cpu").join(&name),
            Path::new("/sys/fs/cgroup").join(&name),
        ]
        .into_iter()
        .find(|d| d.is_dir())
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Empty by now (every SBC of the run has stopped); a cgroup dir goes with rmdir.
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn start_kamailio(lab: &Lab, cfg: &Path, rtpengine: bool) -> Result<Owned> {
    // At its best per BENCHMARKING.md: tlsf allocator, shared memory pre-faulted, 1 worker.
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", &lab.sbc, "taskset", "-c", "1", "kamailio", "-f",
    ])
    .arg(cfg)
    .args([
        "-DD", "-E", "-x", "tlsf", "-X", "tlsf", "-m", "1024", "-M", "16",
    ])
    .stderr(Stdio::null());
    if rtpengine {
        cmd.args(["-A", "WITH_RTPENGINE"]);
    }
    let mut p = spawn(&mut cmd)?;
    wait_port(&lab.sbc, 5060, &mut p)?;
    Ok(p)
}

/// rtpengine in the SUT namespace on the SUT's CPU, anchoring media between the inside
/// (`internal`) and outside (`external`) addresses, controlled over ng on loopback. Its files
/// (pidfile) go to the work directory, which is also its working directory.
fn start_rtpengine(s: &Setup<'_>) -> Result<Owned> {
    let table = match s.rtpengine {
        Forwarding::Kernel => i64::from(RTPENGINE_TABLE),
        Forwarding::Userspace => -1,
    };
    let mut p = spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &s.lab.sbc,
                "taskset",
                "-c",
                "1",
                "rtpengine",
            ])
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--log-level=3",
                "--interface=internal/198.18.1.1",
                "--interface=external/198.18.2.1",
                // One worker on one CPU: the configuration BENCHMARKING.md found best.
                "--num-threads=1",
                "--port-min=10000",
                "--port-max=60000",
                // Release ports at the delete (the default keeps a call 30 s): the step search
                // runs thousands of calls a second.
                "--delete-delay=0",
            ])
            .arg(format!("--table={table}"))
            .arg(format!("--listen-ng=127.0.0.1:{RTPENGINE_NG_PORT}"))
            .arg(format!(
                "--pidfile={}",
                s.work.join("rtpengine.pid").display()
            ))
            .current_dir(s.work)
            .stderr(Stdio::null()),
    )?;
    wait_port(&s.lab.sbc, RTPENGINE_NG_PORT, &mut p)?;
    Ok(p)
}

/// Waits until something listens on UDP `port` in the SUT's namespace.
fn wait_port(ns: &str, port: u16, p: &mut Owned) -> Result<()> {
    for _ in 0..100 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hlun", "sport", "="])
            .arg(format!(":{port}"))
            .output()?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            thread::sleep(Duration::from_millis(200));
            return Ok(());
        }
        if !p.running() {
            bail!("the system under test exited during start-up");
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("the system under test did not listen on UDP {port} within 10 s")
}

fn spawn(cmd: &mut Command) -> Result<Owned> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok(Owned::new("bench", child))
}

fn sysctl(ns: &str, kv: &str) -> Result<()> {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", kv])
        .status()?
        .success();
    if !ok {
        bail!("sysctl {kv} failed");
    }
    Ok(())
}

/// CPU time (ns) of a process and all its descendants (Kamailio forks workers), from each
/// task's schedstat: exact on this VM, where tick sampling under-counts.
fn tree_cpu_ns(root: u32) -> u64 {
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    pids.into_iter().map(crate::bench::task_cpu_ns).sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// (successful, failed, retransmissions) from the last line of SIPp's statistics CSV.
fn parse_stat(path: &Path) -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading SIPp statistics {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("empty statistics")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .context("no statistics line")?
        .split(';')
        .collect();
    let col = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((
        col("SuccessfulCall(C)"),
        col("FailedCall(C)"),
        col("Retransmissions(C)"),
    ))
}

/// Keeps SIPp's error log of a trial with failed calls where a person can read it.
fn keep_errors(work: &Path, pid: u32, failed: u64) {
    let Ok(dir) = std::fs::read_dir(work) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains(&format!("_{pid}_errors")) {
            if failed > 0 {
                let keep = std::env::temp_dir().join("sbc-bench-signaling-errors.log");
                if std::fs::copy(e.path(), &keep).is_ok() {
                    eprintln!("  failed calls: SIPp's errors are in {}", keep.display());
                }
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Response times (ms) of every call from SIPp's `-trace_rtt` file.
fn parse_rtt(work: &Path, pid: u32) -> Vec<f64> {
    let Ok(dir) = std::fs::read_dir(work) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains(&format!("_{pid}_rtt")) {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                out.extend(
                    text.lines()
                        .skip(1)
                        .filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok()),
                );
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// A figure of a system's row.
#[derive(Debug, Clone, Copy)]
enum Figure {
    /// Highest clean calls/s.
    Cps,
    /// CPU per 1,000 calls at the fixed rate.
    CpuFixed,
    /// CPU per 1,000 calls at the highest clean rate.
    CpuKnee,
}

/// The ratios in the JSON report: key, system, reference system, figure. "Against the same
/// job" is the SBC over Kamailio + rtpengine.
const RATIOS: [(&str, System, System, Figure); 10] = [
    (
        "ratio_cps_sbc_over_kamailio",
        System::Sbc,
        System::Kamailio,
        Figure::Cps,
    ),
    (
        "ratio_cpu_fixed_sbc_over_kamailio",
        System::Sbc,
        System::Kamailio,
        Figure::CpuFixed,
    ),
    (
        "ratio_cpu_knee_sbc_over_kamailio",
        System::Sbc,
        System::Kamailio,
        Figure::CpuKnee,
    ),
    (
        "ratio_cpu_sbc_over_kamailio_rtpengine",
        System::Sbc,
        System::KamailioRtpengine,
        Figure::CpuFixed,
    ),
    (
        "ratio_cpu_knee_sbc_over_kamailio_rtpengine",
        System::Sbc,
        System::KamailioRtpengine,
        Figure::CpuKnee,
    ),
    (
        "ratio_cps_sbc_over_kamailio_rtpengine",
        System::Sbc,
        System::KamailioRtpengine,
        Figure::Cps,
    ),
    (
        "ratio_cpu_fixed_sbc_xdp_over_kamailio",
        System::SbcXdp,
        System::Kamailio,
        Figure::CpuFixed,
    ),
    (
        "ratio_cpu_knee_sbc_xdp_over_kamailio",
        System::SbcXdp,
        System::Kamailio,
        Figure::CpuKnee,
    ),
    (
        "ratio_cpu_sbc_xdp_over_kamailio_rtpengine",
        System::SbcXdp,
        System::KamailioRtpengine,
        Figure::CpuFixed,
    ),
    (
        "ratio_cpu_knee_sbc_xdp_over_kamailio_rtpengine",
        System::SbcXdp,
        System::KamailioRtpengine,
        Figure::CpuKnee,
    ),
];

/// The Markdown report (without the delay section) and the JSON next to it.
fn render(
    plan: &Plan,
    best: &[(System, Vec<Trial>)],
    fixed: &[(System, Vec<Trial>)],
    delays: &[Delay],
    memory: &(u64, u64, u64, f64),
    rtpengine: Forwarding,
    quick: bool,
) -> (String, String) {
    let machine = machine_line();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Signaling benchmark (`cargo xtask bench signaling{}`)\n",
        if quick { " --quick" } else { "" }
    );
    let _ = writeln!(md, "{machine}\n");
    let _ = writeln!(
        md,
        "SBC signaling shards: {}; SBC CPU set: {}; load average at the end: {}.\n\nHarness: SIPp UAC (pbx namespace, CPU 0) → system under test (sbc namespace, CPU 1 unless the SBC CPU set says otherwise) → SIPp UAS (carrier namespace); UDP; short calls: INVITE with SDP, 180, 200 with SDP, ACK, BYE, 200. The caller honours Record-Route. Step search over {:?} calls/s, {} s per step; a step is clean with < 0.1 % failed calls and ≤ 0.1 % retransmissions. CPU: the system's own per-task schedstat (all threads, all Kamailio processes, and for Kamailio + rtpengine both process trees summed) during the step. rtpengine 1 worker thread, {}; no RTP is sent, so the figure is the media set-up and tear-down cost (offer, answer, delete, ports) on top of Kamailio's. Medians of {} interleaved repetitions.\n",
        sbc_shards().0,
        sbc_shards().1,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
        plan.ladder,
        plan.trial.as_secs(),
        rtpengine.describe(),
        plan.reps
    );
    let _ = writeln!(
        md,
        "| system | highest clean rate (calls/s) | CPU s per 1,000 calls at {} calls/s | CPU s per 1,000 calls at the highest clean rate | response time p50 / p99 at {} calls/s (ms) |",
        plan.fixed_rate, plan.fixed_rate
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    let mut rows = Vec::new();
    // (system, clean calls/s, CPU per 1,000 calls at the fixed rate, at the knee)
    let mut figures = Vec::new();
    for ((system, b), (_, f)) in best.iter().zip(fixed) {
        let rate = median(b.iter().map(|t| t.rate as f64).collect());
        let cpu_fixed = median(f.iter().map(Trial::cpu_per_1000).collect());
        let cpu_knee = median(b.iter().map(Trial::cpu_per_1000).collect());
        let rtts: Vec<f64> = f.iter().flat_map(|t| t.rtt_ms.iter().copied()).collect();
        let (p50, p99) = (percentile(&rtts, 0.5), percentile(&rtts, 0.99));
        let cpu = |x: f64| {
            if *system == System::Direct || !x.is_finite() {
                "n/a".to_owned()
            } else {
                format!("{x:.3}")
            }
        };
        // SIPp direct has no system under test to measure: no figure, not zero.
        let cpu_json = |x: f64| {
            if *system == System::Direct {
                "null".to_owned()
            } else {
                num(x)
            }
        };
        let _ = writeln!(
            md,
            "| {} | {rate:.0} | {} | {} | {} / {} |",
            system.name(),
            cpu(cpu_fixed),
            cpu(cpu_knee),
            rtt(p50),
            rtt(p99)
        );
        let delay = delays.iter().find(|d| d.0 == *system);
        rows.push(format!(
            "    {{\"system\": {:?}, \"clean_cps\": {rate}, \"cpu_s_per_1000_fixed\": {}, \"cpu_s_per_1000_knee\": {}, \"invite_delay_p50_us\": {}, \"invite_delay_p99_us\": {}, \"rtt_p50_ms\": {}, \"rtt_p99_ms\": {}}}",
            system.key(),
            cpu_json(cpu_fixed),
            cpu_json(cpu_knee),
            num(delay.map_or(f64::NAN, |d| d.2.p50)),
            num(delay.map_or(f64::NAN, |d| d.2.p99)),
            num(p50),
            num(p99)
        ));
        figures.push((*system, rate, cpu_fixed, cpu_knee));
    }
    let get = |s: System| figures.iter().find(|f| f.0 == s).copied();
    let figure = |s: System, which: Figure| {
        get(s).map(|f| match which {
            Figure::Cps => f.1,
            Figure::CpuFixed => f.2,
            Figure::CpuKnee => f.3,
        })
    };
    let ratios: Vec<(&str, f64)> = RATIOS
        .iter()
        .map(|&(key, a, b, which)| {
            let v = match (figure(a, which), figure(b, which)) {
                (Some(a), Some(b)) => a / b,
                _ => f64::NAN,
            };
            (key, v)
        })
        .collect();
    let r = |key: &str| {
        ratios
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    let _ = writeln!(
        md,
        "\nRatios SBC/Kamailio: clean calls/s {:.2}× (target ≥ 1.5×); CPU per call at {} calls/s {:.2}× (target ≤ 0.67×); CPU per call at the knee {:.2}×.",
        r("ratio_cps_sbc_over_kamailio"),
        plan.fixed_rate,
        r("ratio_cpu_fixed_sbc_over_kamailio"),
        r("ratio_cpu_knee_sbc_over_kamailio"),
    );
    let _ = writeln!(
        md,
        "\nRatios SBC/(Kamailio + rtpengine), the same job: CPU per call at {} calls/s {:.2}× (target ≤ 0.5×); at the knee {:.2}×; clean calls/s {:.2}×.",
        plan.fixed_rate,
        r("ratio_cpu_sbc_over_kamailio_rtpengine"),
        r("ratio_cpu_knee_sbc_over_kamailio_rtpengine"),
        r("ratio_cps_sbc_over_kamailio_rtpengine"),
    );
    let _ = writeln!(
        md,
        "\nThe same with the SBC in its default media mode (XDP, socketless latching): CPU per call at {} calls/s {:.2}× Kamailio's and {:.2}× Kamailio + rtpengine's; at the knee {:.2}× and {:.2}×.",
        plan.fixed_rate,
        r("ratio_cpu_fixed_sbc_xdp_over_kamailio"),
        r("ratio_cpu_sbc_xdp_over_kamailio_rtpengine"),
        r("ratio_cpu_knee_sbc_xdp_over_kamailio"),
        r("ratio_cpu_knee_sbc_xdp_over_kamailio_rtpengine"),
    );
    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"machine\": {machine:?},");
    let _ = writeln!(json, "  \"date\": {:?},", date());
    let _ = writeln!(json, "  \"quick\": {quick},");
    let (shards, sbc_cpus) = sbc_shards();
    let _ = writeln!(json, "  \"sbc_signaling_shards\": {shards},");
    let _ = writeln!(json, "  \"sbc_cpus\": {sbc_cpus:?},");
    let _ = writeln!(
        json,
        "  \"load_average\": {:?},",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let _ = writeln!(json, "  \"repetitions\": {},", plan.reps);
    let _ = writeln!(json, "  \"fixed_rate_cps\": {},", plan.fixed_rate);
    let _ = writeln!(
        json,
        "  \"rtpengine_forwarding\": {:?},",
        match rtpengine {
            Forwarding::Kernel => "kernel",
            Forwarding::Userspace => "userspace",
        }
    );
    for (k, v) in ratios {
        let _ = writeln!(json, "  {k:?}: {},", num(v));
    }
    // Per-system maps of the figures other tools read most.
    let _ = writeln!(
        json,
        "  \"clean_cps\": {},",
        crate::bench::json_map(
            figures
                .iter()
                .map(|x| (x.0.key(), num(get(x.0).map_or(f64::NAN, |f| f.1))))
        )
    );
    let _ = writeln!(
        json,
        "  \"invite_delay_p99_us\": {},",
        crate::bench::json_map(delays.iter().map(|d| (d.0.key(), num(d.2.p99))))
    );
    let _ = writeln!(
        json,
        "  \"invite_delay_failed_calls\": {},",
        crate::bench::json_map(delays.iter().map(|d| (d.0.key(), d.2.failed.to_string())))
    );
    let _ = writeln!(json, "  \"systems\": [\n{}\n  ],", rows.join(",\n"));
    let (n, idle, peak, steady) = *memory;
    let per_call = (peak.saturating_sub(idle)) as f64 * 1024.0 / n as f64;
    let _ = writeln!(
        md,
        "\nConcurrency: {n} calls held open on the sbc (media ports allocated for each): RSS {:.1} MB idle, {:.1} MB with all calls up — {:.0} bytes per call (target: 10,000 calls in < 200 MB); CPU at steady state {:.3} cores.",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        per_call,
        steady
    );
    let _ = writeln!(
        json,
        "  \"concurrency\": {{\"calls\": {n}, \"rss_idle_kib\": {idle}, \"rss_peak_kib\": {peak}, \"bytes_per_call\": {}, \"steady_cpu_cores\": {}}}\n}}",
        num(per_call),
        num(steady)
    );
    let _ = writeln!(
        md,
        "\nResponse time is SIPp's INVITE → 200 OK per call (`-trace_rtt`, millisecond resolution), so it includes the callee and both hops; the added delay of a system is its figure minus the direct row's.\n"
    );
    (md, json)
}

/// The first step past each system's clean rate, per repetition, into the Markdown and as
/// `past_clean_step` in the JSON (added before its closing brace).
fn with_past_steps(md: &mut String, json: String, past: &[(System, Vec<Trial>)]) -> String {
    let _ = writeln!(
        md,
        "\n## The first step past the clean rate\n\nPer repetition: calls offered, completed, failed (for the SBC this includes the 503s of its overload control) and the caller's retransmissions. Past its capacity a system should keep completing about its capacity and refuse or fail the rest quickly, not slow every call down.\n\n| system | rate (calls/s) | offered | completed | failed | retransmissions |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut entries = Vec::new();
    for (system, trials) in past {
        for t in trials {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                system.name(),
                t.rate,
                t.calls,
                t.ok,
                t.failed,
                t.retrans
            );
            entries.push(format!(
                "{{\"system\": {:?}, \"rate_cps\": {}, \"offered\": {}, \"completed\": {}, \"failed\": {}, \"retransmissions\": {}}}",
                system.key(),
                t.rate,
                t.calls,
                t.ok,
                t.failed,
                t.retrans
            ));
        }
    }
    let quota = std::env::var("SBC_BENCH_SBC_CPU_QUOTA").unwrap_or_default();
    let body = json.trim_end().trim_end_matches('}').trim_end();
    format!(
        "{body},\n  \"sbc_cpu_quota_percent\": {},\n  \"past_clean_step\": [{}]\n}}\n",
        quota
            .parse::<u64>()
            .map_or("null".into(), |q| q.to_string()),
        entries.join(", ")
    )
}

/// A response time of SIPp's (whole milliseconds): 0 is below its resolution, "< 1".
fn rtt(ms: f64) -> String {
    if ms == 0.0 {
        "< 1".to_owned()
    } else {
        format!("{ms:.2}")
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "null".into()
    }
}

/// The caller's Request-URI with the call's number after the dialled one (`…4567x12`), so
/// the delay step pairs each INVITE in with the same call's INVITE out.
const CALL_TAG: &str = "INVITE sip:[service]x[call_number]@";

/// The XDP SBC's instance name (its bpffs pin directory).
const XDP_INSTANCE: &str = "benchsigx";

const SBC_CFG: &str = r#"# sbc for the signaling benchmark: the lab's addresses, userspace media (no RTP is sent), a
# port range large enough for the concurrency run.
[general]
instance = "benchsig"
[log]
level = "error"
[inside]
udp = ["198.18.1.1:5060"]
media_address = "198.18.1.1"
[outside]
udp = ["198.18.2.1:5060"]
media_address = "198.18.2.1"
[pbx]
address = "198.18.1.2:5060"
allow = ["198.18.1.0/24"]
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
# The benchmark measures the SBC, not its admission defaults (500 calls, 50/s per trunk).
max_calls = 1000000
max_cps = 100000
[limits]
max_calls = 1000000
max_cps = 100000
max_transactions = 10000000
max_stored_mib = 4096
# Nor its flood guard: the PBX's default budget (2,000 messages/s, about 650 calls/s of
# INVITE + ACK + BYE) drops new INVITEs above it, and SIPp's retransmissions then made every
# step from 2,000 calls/s up "unclean" (session 13: `sbc_sip_dropped_total{reason=
# "peer_over_budget"}`). Kamailio's configuration has no such limit either.
peer_rate = 0
[media]
xdp = "off"
port_min = 10000
port_max = 60000
timeout_s = 300
[admin]
listen = "127.0.0.1:8080"
"#;

const KAMAILIO_CFG: &str = r#"#!KAMAILIO
# Reference for the signaling benchmark: stateful proxy with dialog tracking (dialog),
# topology hiding (topoh) and NAT fixing (nathelper) — the closest open-source equivalent of
# the SBC's B2BUA. One worker per socket was best on this machine kind.
# With `-A WITH_RTPENGINE` it also anchors media in rtpengine and rewrites the SDP, the job the
# SBC does: a call whose offer, answer or delete fails, fails (503 / reply dropped / 500), so a
# clean step proves every call went through rtpengine.
debug=0
log_stderror=yes
# Pre-fault shared memory (BENCHMARKING.md: configure the reference at its best).
shm_force_alloc=yes
fork=yes
children=1
auto_aliases=no
mhomed=1
listen=udp:198.18.1.1:5060
listen=udp:198.18.2.1:5060
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "nathelper.so"
loadmodule "dialog.so"
loadmodule "topoh.so"
#!ifdef WITH_RTPENGINE
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:22223")
#!endif
modparam("rr", "enable_full_lr", 1)
modparam("topoh", "mask_key", "sbc-bench-key")
modparam("topoh", "mask_ip", "192.0.2.254")
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (has_totag()) {
#!ifdef WITH_RTPENGINE
        if (is_method("BYE") && !rtpengine_delete()) {
            sl_send_reply("500", "Media Release Failed");
            exit;
        }
#!endif
        if (loose_route()) { t_relay(); exit; }
        # topoh folds the route set into the masked Contact and restores the Request-URI
        # on the way back, so in-dialog requests go to the restored target.
        if (is_method("ACK") && !t_check_trans()) { forward(); exit; }
        t_relay();
        exit;
    }
    t_check_trans();
    if (is_method("INVITE")) { dlg_manage(); }
    record_route();
    if ($si == "198.18.1.2") {
        fix_nated_contact();
        $du = "sip:198.18.2.2:5060";
        force_send_socket(udp:198.18.2.1:5060);
#!ifdef WITH_RTPENGINE
        if (is_method("INVITE") && has_body("application/sdp")
                && !rtpengine_offer("direction=internal direction=external replace-origin replace-session-connection")) {
            sl_send_reply("503", "Media Unavailable");
            exit;
        }
#!endif
    } else {
        $du = "sip:198.18.1.2:5060";
        force_send_socket(udp:198.18.1.1:5060);
#!ifdef WITH_RTPENGINE
        if (is_method("INVITE") && has_body("application/sdp")
                && !rtpengine_offer("direction=external direction=internal replace-origin replace-session-connection")) {
            sl_send_reply("503", "Media Unavailable");
            exit;
        }
#!endif
    }
#!ifdef WITH_RTPENGINE
    if (is_method("INVITE")) {
        t_on_reply("MEDIA_ANSWER");
        t_on_failure("MEDIA_FAILED");
    }
#!endif
    t_relay();
}
#!ifdef WITH_RTPENGINE
onreply_route[MEDIA_ANSWER] {
    if (has_body("application/sdp")
            && !rtpengine_answer("replace-origin replace-session-connection")) {
        drop;
    }
}
failure_route[MEDIA_FAILED] {
    rtpengine_delete();
}
#!endif
"#;

/// Today's date (UTC), as the reports name it.
pub(crate) fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown-date".into())
}

/// Machine, kernel, date and versions of the systems compared.
fn machine_line() -> String {
    let out = |p: &str, a: &[&str]| {
        Command::new(p)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "Machine: {cpu}, {cores} vCPUs, Linux {}; date {}; sbc {}; Kamailio {}; rtpengine {}; SIPp {}.",
        out("uname", &["-r"]),
        out("date", &["-u", "+%Y-%m-%dT%H:%MZ"]),
        env!("CARGO_PKG_VERSION"),
        out("dpkg-query", &["-W", "-f", "${Version}", "kamailio"]),
        out(
            "dpkg-query",
            &["-W", "-f", "${Version}", "rtpengine-daemon"]
        ),
        out("dpkg-query", &["-W", "-f", "${Version}", "sip-tester"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(p99: f64, failed: u64, error: bool) -> DelayStep {
        DelayStep {
            p50: p99 / 2.0,
            p99,
            paired: 100,
            failed,
            error: error.then(|| "capture failed".to_owned()),
        }
    }

    #[test]
    fn the_delay_figure_is_the_median_of_the_repetitions_measured() {
        let steps = [
            step(100.0, 0, false),
            step(f64::NAN, 0, true),
            step(300.0, 2, false),
            step(200.0, 1, false),
        ];
        let d = DelayStep::median(&steps);
        assert_eq!((d.p50, d.p99, d.paired, d.failed), (100.0, 200.0, 100, 3));
        assert!(d.error.is_none());
        // None measured: not measured, with the reason.
        let d = DelayStep::median(&[step(f64::NAN, 0, true)]);
        assert!(d.p99.is_nan());
        assert_eq!(d.error.as_deref(), Some("capture failed"));
        // Every repetition's p99 goes into the JSON, null where not measured.
        let json = with_delay_runs(
            "{\n  \"a\": 1\n}\n".to_owned(),
            &[(System::Sbc, steps.to_vec())],
        );
        assert!(
            json.contains(
                "\"invite_delay_p99_us_runs\": {\"sbc\": [100.0000, null, 300.0000, 200.0000]}"
            ),
            "{json}"
        );
        assert!(json.trim_end().ends_with('}'));
    }

    #[test]
    fn sipp_direct_has_no_cpu_figure_in_the_json() {
        let plan = Plan {
            ladder: vec![500],
            trial: Duration::from_secs(5),
            reps: 1,
            fixed_rate: 500,
            concurrent: 10,
            delay_rate: None,
        };
        let trial = Trial {
            rate: 500,
            calls: 2500,
            ok: 2500,
            failed: 0,
            retrans: 0,
            cpu_s: 0.5,
            rtt_ms: vec![0.0, 0.0],
        };
        let trials = vec![
            (System::Sbc, vec![trial.clone()]),
            (System::Direct, vec![trial]),
        ];
        let (md, json) = render(
            &plan,
            &trials,
            &trials,
            &[],
            &(10, 1000, 2000, 0.0),
            Forwarding::Userspace,
            true,
        );
        assert!(
            json.contains("{\"system\": \"direct\", \"clean_cps\": 500, \"cpu_s_per_1000_fixed\": null, \"cpu_s_per_1000_knee\": null,"),
            "{json}"
        );
        assert!(
            json.contains(
                "{\"system\": \"sbc\", \"clean_cps\": 500, \"cpu_s_per_1000_fixed\": 0.2000,"
            ),
            "{json}"
        );
        assert!(md.contains("| < 1 / < 1 |"), "{md}");
    }

    #[test]
    fn a_response_time_below_sipp_s_millisecond_is_said_so() {
        assert_eq!(rtt(0.0), "< 1");
        assert_eq!(rtt(2.0), "2.00");
        assert_eq!(rtt(f64::NAN), "NaN");
    }
}
