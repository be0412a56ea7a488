//! `cargo xtask bench media`: packets per second and CPU cost per packet of the SBC's relay
//! paths against references, in the namespace lab, following `shared/BENCHMARKING.md`:
//!
//! - systems: (a) the SBC's userspace relay (`xdp = "off"`), (b) the SBC's XDP fast path,
//!   (c) rtpengine (Debian, userspace only, 1 worker, driven by its ng protocol) and (d) a bare
//!   XDP forwarder (one `bpf_redirect`, no lookup: the ceiling for any XDP relay on veth);
//! - 1 and 1,000 streams (pbx → carrier direction), flat out;
//! - the generator runs on CPU 0 in the pbx namespace; the whole forwarding path — the relay
//!   process, the veths' NAPI (threaded, pinned) and the receiving veth's XDP drop counter — on
//!   CPU 1. The CPU time of those tasks (per-task schedstat, so other load on this shared VM
//!   does not pollute it) divided by the packets that reached the carrier is the primary
//!   figure, µs/packet; pps is secondary (on 2 vCPUs the generator may be the limit);
//! - systems interleaved, 3 repetitions, medians; every trial bounded in time and packets.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sbc_lab::{http, lab::Lab, netns};

/// Seconds of traffic per trial.
pub(crate) const TRIAL: Duration = Duration::from_secs(2);
/// Packets per trial at most (bounds a trial whatever the machine's speed).
const MAX_PACKETS: u64 = 4_000_000;
/// Repetitions of the full run (`--quick` runs one).
const REPS: usize = 3;
const STREAMS: [usize; 2] = [1, 1000];
pub(crate) const FWD_CPU: usize = 1;
pub(crate) const GEN_CPU: usize = 0;
/// First UDP port of the pbx's and the carrier's stream sockets.
pub(crate) const PEER_PORT: u16 = 30_000;

/// Bare forwarder: every IPv4 UDP datagram to a port >= 10000 gets the next hop's MACs and is
/// redirected to the egress interface. No lookup, no rewrite of IP/UDP: the cheapest possible
/// XDP forwarding on this path.
const BARE_C: &str = r#"
#define SEC(n) __attribute__((section(n), used))
struct xdp_md { unsigned int data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex; };
static long (*bpf_redirect)(unsigned int ifindex, unsigned long long flags) = (void *)23;
SEC("xdp") int bare(struct xdp_md *ctx) {
    unsigned char *d = (unsigned char *)(long)ctx->data, *end = (unsigned char *)(long)ctx->data_end;
    if (d + 14 + 20 + 8 > end) return 2;
    if (d[12] != 0x08 || d[13] != 0x00 || d[14 + 9] != 17) return 2;
    unsigned int dport = (d[14 + 20 + 2] << 8) | d[14 + 20 + 3];
    if (dport < 10000) return 2;
    unsigned char dmac[6] = { DMAC }, smac[6] = { SMAC };
    for (int i = 0; i < 6; i++) { d[i] = dmac[i]; d[6 + i] = smac[i]; }
    return bpf_redirect(OUT_IFINDEX, 0);
}
char _license[] SEC("license") = "GPL";
"#;

/// The carrier's sink: drops (and so counts, in veth's `xdp_drops`) the relayed stream packets
/// (UDP to ports >= 10000; the bare forwarder leaves the relay port as destination).
const SINK_C: &str = r#"
#define SEC(n) __attribute__((section(n), used))
struct xdp_md { unsigned int data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex; };
SEC("xdp") int sink(struct xdp_md *ctx) {
    unsigned char *d = (unsigned char *)(long)ctx->data, *end = (unsigned char *)(long)ctx->data_end;
    if (d + 14 + 20 + 8 > end) return 2;
    if (d[12] != 0x08 || d[13] != 0x00 || d[14 + 9] != 17) return 2;
    unsigned int dport = (d[14 + 20 + 2] << 8) | d[14 + 20 + 3];
    return dport >= 10000 ? 1 : 2;
}
char _license[] SEC("license") = "GPL";
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Bare,
    Xdp,
    Userspace,
    Rtpengine,
}

impl System {
    const ALL: [System; 4] = [
        System::Bare,
        System::Xdp,
        System::Userspace,
        System::Rtpengine,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Bare => "bare XDP redirect",
            System::Xdp => "sbc XDP fast path",
            System::Userspace => "sbc userspace relay",
            System::Rtpengine => "rtpengine (userspace)",
        }
    }
}

/// Offered rates (packets/s) of the no-loss search for the userspace relays, which collapse
/// under overload (BENCHMARKING.md): the result is the highest rate forwarded with at most
/// [`MAX_LOSS`] loss, and its cost.
const LADDER: [u64; 6] = [10_000, 20_000, 40_000, 60_000, 80_000, 120_000];
/// The one rate of the single-stream userspace rows (sbc and rtpengine alike). rtpengine reads
/// at most 50 datagrams per readiness event of a socket (its compile-time `MAX_RECV_ITERS`;
/// Debian's 10.5 has no option for it); a longer queue is a strike, and after 5 strikes the
/// socket discards everything for good. One stream at 10,000 pps (200 real streams' worth on one
/// socket) queues 50 datagrams in any 5-ms scheduling stall of this shared 2-vCPU machine, so
/// rtpengine lost 88-99 % there (`media-2026-12-03-quick.md`, `media-srtp-2026-12-04.md`): its
/// burst guard, not its cost. At 2,000 pps a stall must last 25 ms to strike.
pub(crate) const LADDER_ONE_STREAM: [u64; 1] = [2_000];
/// Loss accepted as "no loss" in the search (veth rings are small and bursty).
pub(crate) const MAX_LOSS: f64 = 0.005;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Trial {
    /// Offered rate; `None` is flat out.
    pub(crate) offered: Option<u64>,
    pub(crate) sent: u64,
    pub(crate) forwarded: u64,
    pub(crate) secs: f64,
    /// CPU seconds of the forwarding path (NAPI kthreads + relay process).
    pub(crate) busy_secs: f64,
    /// The relay process's share of `busy_secs` (0 for the bare forwarder).
    pub(crate) relay_secs: f64,
}

impl Trial {
    pub(crate) fn pps(&self) -> f64 {
        self.forwarded as f64 / self.secs
    }
    pub(crate) fn us_per_packet(&self) -> f64 {
        if self.forwarded == 0 {
            return f64::INFINITY;
        }
        self.busy_secs * 1e6 / self.forwarded as f64
    }
    pub(crate) fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.forwarded as f64 / self.sent as f64
    }
}

/// Runs the media benchmark and writes `bench/results/media-<date>.{md,json}`, then the SRTP
/// rows (`media-srtp-<date>.{md,json}`); only the latter with `srtp_only`.
/// The SRTP rows run in the media benchmark's lab (`bench_srtp::run`), given by the caller so
/// that this module, whose harness they share, does not depend on theirs.
pub type SrtpRows = fn(&Path, &Lab, &[u32], &Path, &Path, usize, bool) -> Result<()>;

/// The media benchmark: the plain rows, then the SRTP rows (`srtp`); only those with
/// `srtp_only`.
pub fn media(root: &Path, quick: bool, srtp_only: bool, srtp: SrtpRows) -> Result<()> {
    let reps = if quick { 1 } else { REPS };
    if !nix::unistd::geteuid().is_root() {
        bail!("the media benchmark needs root (namespaces, XDP)");
    }
    // `SBC_BENCH_BINARY` measures another build (a before/after comparison on the same
    // machine in the same hour) instead of building this tree's.
    let sbc = match std::env::var_os("SBC_BENCH_BINARY") {
        Some(path) => PathBuf::from(path),
        None => {
            crate::cargo(&["build", "--release", "--package", "sbc", "--bin", "sbc"])?;
            root.join("target/release/sbc")
        }
    };
    let work = std::env::temp_dir().join(format!("sbc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run_all(root, &sbc, &work, (reps, quick), (srtp_only, srtp));
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(rtpengine_pidfile());
    result
}

fn run_all(
    root: &Path,
    sbc: &Path,
    work: &Path,
    (reps, quick): (usize, bool),
    (srtp_only, srtp): (bool, SrtpRows),
) -> Result<()> {
    let lab = Lab::up("bm").context("lab up")?;
    let _backlog = Sysctl::set("net.core.netdev_max_backlog", "10000")?;
    prepare_lab(&lab)?;
    let sink = compile(work, "sink", SINK_C, &[])?;
    sh_ns(
        &lab.carrier,
        &format!("ip link set dev car0 xdpdrv obj {} sec xdp", sink.display()),
    )?;
    let napi = pin_napi_threads()?;
    let out0_ifindex = ifindex(&lab.sbc, "out0")?;
    let car_mac = mac(&lab.carrier, "car0")?;
    let out_mac = mac(&lab.sbc, "out0")?;
    let bare = compile(
        work,
        "bare",
        BARE_C,
        &[
            format!("-DOUT_IFINDEX={out0_ifindex}"),
            format!("-DDMAC={}", c_mac(&car_mac)),
            format!("-DSMAC={}", c_mac(&out_mac)),
        ],
    )?;

    if srtp_only {
        return srtp(root, &lab, &napi, sbc, work, reps, quick);
    }
    // SBC_BENCH_ONLY=sbc_userspace (or bare_xdp, sbc_xdp, rtpengine, or a comma-separated
    // list) and SBC_BENCH_STREAMS=1000 (or 1) run only those rows, for an A/B of two builds or
    // a profile of one row; such a partial run prints its trials and writes no report.
    let only = std::env::var("SBC_BENCH_ONLY").ok();
    let only_streams = std::env::var("SBC_BENCH_STREAMS").ok();
    let partial = only.is_some() || only_streams.is_some();
    let systems: Vec<System> = System::ALL
        .into_iter()
        .filter(|s| {
            only.as_ref()
                .is_none_or(|o| o.split(',').any(|k| k == s.key()))
        })
        .collect();
    let streams_run: Vec<usize> = STREAMS
        .into_iter()
        .filter(|n| {
            only_streams
                .as_ref()
                .is_none_or(|o| o.split(',').any(|k| k == n.to_string()))
        })
        .collect();
    let mut results: BTreeMap<(usize, System), Vec<Trial>> = BTreeMap::new();
    for rep in 0..reps {
        for &streams in &streams_run {
            for &system in &systems {
                eprintln!(
                    "bench: rep {}/{reps}, {streams} stream(s), {}",
                    rep + 1,
                    system.name()
                );
                let trial = match system {
                    System::Bare => trial_bare(&lab, &napi, &bare, streams),
                    System::Xdp => trial_sbc(&lab, &napi, sbc, work, streams, true),
                    System::Userspace => trial_sbc(&lab, &napi, sbc, work, streams, false),
                    System::Rtpengine => {
                        search(streams, |rate| trial_rtpengine(&lab, &napi, streams, rate))
                    }
                }
                .with_context(|| format!("{} with {streams} streams", system.name()))?;
                eprintln!(
                    "bench:   sent {} forwarded {} ({:.0} pps, {:.2} µs/packet, loss {:.1}%)",
                    trial.sent,
                    trial.forwarded,
                    trial.pps(),
                    trial.us_per_packet(),
                    trial.loss() * 100.0
                );
                results.entry((streams, system)).or_default().push(trial);
            }
        }
    }
    if partial {
        eprintln!("bench: partial run (SBC_BENCH_ONLY / SBC_BENCH_STREAMS): no report written");
        return Ok(());
    }
    let report = render(&results, reps)?;
    println!("{report}");
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let date = cmd_out("date", &["-u", "+%Y-%m-%d"])?;
    let suffix = if quick { "-quick" } else { "" };
    let path = dir.join(format!("media-{}{suffix}.md", date.trim()));
    std::fs::write(&path, report)?;
    eprintln!("bench: written {}", path.display());
    let json = render_json(&results, reps, quick)?;
    let path = path.with_extension("json");
    std::fs::write(&path, json)?;
    eprintln!("bench: written {}", path.display());
    srtp(root, &lab, &napi, sbc, work, reps, quick)
}

impl System {
    /// The system's key in the JSON report.
    fn key(self) -> &'static str {
        match self {
            System::Bare => "bare_xdp",
            System::Xdp => "sbc_xdp",
            System::Userspace => "sbc_userspace",
            System::Rtpengine => "rtpengine",
        }
    }
}

/// A JSON number, or `null` for a figure that could not be measured (nothing forwarded).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".to_owned()
    }
}

/// The machine-readable report next to the Markdown one: medians of µs/packet and pps per
/// system and stream count, and the userspace relay's cost relative to rtpengine's measured in
/// the same run (below 1: the SBC is cheaper per packet).
fn render_json(
    results: &BTreeMap<(usize, System), Vec<Trial>>,
    reps: usize,
    quick: bool,
) -> Result<String> {
    let med = |streams: usize, system: System, f: fn(&Trial) -> f64| {
        results
            .get(&(streams, system))
            .map_or(f64::NAN, |t| median(t.iter().map(f).collect()))
    };
    let table = |f: fn(&Trial) -> f64| {
        let rows: Vec<String> = System::ALL
            .iter()
            .map(|&system| {
                let cells: Vec<String> = STREAMS
                    .iter()
                    .map(|&n| format!("\"{n}\": {}", json_num(med(n, system, f))))
                    .collect();
                format!("    \"{}\": {{{}}}", system.key(), cells.join(", "))
            })
            .collect();
        format!("{{\n{}\n  }}", rows.join(",\n"))
    };
    let ratio: Vec<String> = STREAMS
        .iter()
        .map(|&n| {
            let user = med(n, System::Userspace, Trial::us_per_packet);
            let rtpe = med(n, System::Rtpengine, Trial::us_per_packet);
            format!("\"{n}\": {}", json_num(user / rtpe))
        })
        .collect();
    let date = cmd_out("date", &["-u", "+%Y-%m-%dT%H:%MZ"])?;
    Ok(format!(
        "{{\n  \"benchmark\": \"media\",\n  \"date\": {:?},\n  \"quick\": {quick},\n  \
         \"repetitions\": {reps},\n  \"machine\": {:?},\n  \"us_per_packet\": {},\n  \
         \"pps\": {},\n  \"ratio_us_per_packet_sbc_userspace_over_rtpengine\": {{{}}}\n}}\n",
        date.trim(),
        machine()?,
        table(Trial::us_per_packet),
        table(Trial::pps),
        ratio.join(", ")
    ))
}

/// CPU, vCPUs, kernel and rtpengine version of this machine.
fn machine() -> Result<String> {
    let kernel = cmd_out("uname", &["-r"])?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let rtpengine = cmd_out(
        "dpkg-query",
        &["-W", "-f", "${Version}", "rtpengine-daemon"],
    )
    .unwrap_or_else(|_| "?".into());
    Ok(format!(
        "{cpu}, {} vCPUs, Linux {}; rtpengine {}",
        thread::available_parallelism().map_or(0, usize::from),
        kernel.trim(),
        rtpengine.trim()
    ))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A JSON object of already rendered values, `{"key": value, …}` in the given order: the
/// per-system and per-shard-count maps of the reports.
pub(crate) fn json_map<K: std::fmt::Display>(
    entries: impl IntoIterator<Item = (K, String)>,
) -> String {
    let body = entries
        .into_iter()
        .map(|(k, v)| format!("{:?}: {v}", k.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{{{body}}}")
}

fn render(results: &BTreeMap<(usize, System), Vec<Trial>>, reps: usize) -> Result<String> {
    let mut out = String::new();
    let kernel = cmd_out("uname", &["-r"])?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let rtpengine = cmd_out(
        "dpkg-query",
        &["-W", "-f", "${Version}", "rtpengine-daemon"],
    )
    .unwrap_or_else(|_| "?".into());
    writeln!(out, "# Media relay benchmark (`cargo xtask bench media`)\n")?;
    writeln!(
        out,
        "Machine: {cpu}, {} vCPUs, Linux {}; rtpengine {}. Lab: veth pairs between network \
         namespaces (pbx → sbc → carrier). Generator on CPU {GEN_CPU}; forwarding path (relay \
         process, threaded NAPI of the veths, the carrier's XDP sink) on CPU {FWD_CPU}. \
         CPU cost: per-task CPU time (schedstat) of the forwarding path's tasks (relay \
         process, NAPI kthreads), exact even when other work shares the CPU. \
         Offered load: {}-s trials of 172-byte RTP packets, round-robin over the streams; \
         XDP paths flat out (forwarded rate and cost), userspace relays by a no-loss search \
         (highest rate of {LADDER:?} pps with at most {}% loss, and its cost; {LADDER_ONE_STREAM:?} \
         with one stream, see `LADDER_ONE_STREAM` in xtask/src/bench.rs), since they \
         collapse under overload. Medians of {reps} interleaved repetitions.\n",
        thread::available_parallelism().map_or(0, usize::from),
        kernel.trim(),
        rtpengine.trim(),
        TRIAL.as_secs(),
        MAX_LOSS * 100.0
    )?;
    writeln!(
        out,
        "| streams | system | offered | forwarded pps | µs/packet | CPU s per 1M packets | loss |"
    )?;
    writeln!(out, "| ---: | --- | --- | ---: | ---: | ---: | ---: |")?;
    let mut med: BTreeMap<(usize, System), (f64, f64)> = BTreeMap::new();
    for ((streams, system), trials) in results {
        let pps = median(trials.iter().map(Trial::pps).collect());
        let us = median(trials.iter().map(Trial::us_per_packet).collect());
        let loss = median(trials.iter().map(Trial::loss).collect());
        med.insert((*streams, *system), (pps, us));
        let offered = match trials.first().and_then(|t| t.offered) {
            None => "flat out".to_owned(),
            Some(_) => "no-loss search".to_owned(),
        };
        writeln!(
            out,
            "| {streams} | {} | {offered} | {pps:.0} | {us:.2} | {us:.2} | {:.1}% |",
            system.name(),
            loss * 100.0
        )?;
    }
    writeln!(
        out,
        "\nRatios (by µs/packet; higher is better for the SBC):\n"
    )?;
    for &streams in &STREAMS {
        let get = |s| med.get(&(streams, s)).map_or(f64::NAN, |v| v.1);
        let (bare, xdp, user, rtpe) = (
            get(System::Bare),
            get(System::Xdp),
            get(System::Userspace),
            get(System::Rtpengine),
        );
        writeln!(
            out,
            "- {streams} stream(s): XDP at {:.0}% of bare (target ≥ 90%); XDP {:.1}× cheaper than \
             rtpengine (target ≥ 5×); userspace {:.2}× rtpengine's cost efficiency (target ≥ 1)",
            bare / xdp * 100.0,
            rtpe / xdp,
            rtpe / user
        )?;
    }
    writeln!(
        out,
        "\nRaw trials (offered pps: sent / forwarded / forwarding-path CPU seconds (of which \
         the relay process)):\n"
    )?;
    for ((streams, system), trials) in results {
        let raw: Vec<String> = trials
            .iter()
            .map(|t| {
                let offered = t.offered.map_or("max".to_owned(), |r| r.to_string());
                format!(
                    "{offered}: {}/{}/{:.3} ({:.3})",
                    t.sent, t.forwarded, t.busy_secs, t.relay_secs
                )
            })
            .collect();
        writeln!(out, "- {streams} × {}: {}", system.name(), raw.join(", "))?;
    }
    Ok(out)
}

/// Forwarding set-up that every system shares.
fn prepare_lab(lab: &Lab) -> Result<()> {
    for ifname in ["in0", "out0"] {
        sh_ns(
            &lab.sbc,
            &format!("sysctl -qw net.ipv4.conf.{ifname}.forwarding=1"),
        )?;
    }
    // Full checksums from the peers (a veth otherwise passes partial, offloaded ones).
    sh_ns(&lab.pbx, "ethtool -K pbx0 tx off >/dev/null")?;
    sh_ns(&lab.carrier, "ethtool -K car0 tx off >/dev/null")?;
    // NAPI on every receiving veth (GRO on makes veth use NAPI even without XDP), threaded so
    // that its work can be pinned to the forwarding CPU instead of the sender's.
    for (ns, ifname) in [
        (&lab.sbc, "in0"),
        (&lab.sbc, "out0"),
        (&lab.carrier, "car0"),
    ] {
        sh_ns(ns, &format!("ethtool -K {ifname} gro on >/dev/null"))?;
        sh_ns(ns, &format!("echo 1 > /sys/class/net/{ifname}/threaded"))?;
    }
    // Resolve neighbours once, so the FIB lookups and the bare forwarder find them.
    sh_ns(&lab.pbx, "ping -c1 -W1 198.18.1.1 >/dev/null")?;
    sh_ns(&lab.carrier, "ping -c1 -W1 198.18.2.1 >/dev/null")?;
    Ok(())
}

/// Pins the lab's NAPI kthreads (named `napi/<if>-<id>`) to the forwarding CPU; returns them.
fn pin_napi_threads() -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if ["napi/in0-", "napi/out0-", "napi/car0-"]
            .iter()
            .any(|p| comm.starts_with(p))
        {
            run("taskset", &["-pc", &FWD_CPU.to_string(), &pid.to_string()])?;
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!("no threaded NAPI kthreads found for the lab's veths");
    }
    Ok(pids)
}

/// CPU nanoseconds consumed so far by every thread of `pid` (`/proc/PID/task/*/schedstat`).
/// Charged per task, this stays exact while other work shares the CPU (the VM is shared).
pub(crate) fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The no-loss search: climbs [`LADDER`] ([`LADDER_ONE_STREAM`] for one stream) until loss exceeds [`MAX_LOSS`]; returns the last
/// rate that did not (or the lowest rate's trial if none did).
fn search(streams: usize, mut trial: impl FnMut(u64) -> Result<Trial>) -> Result<Trial> {
    let mut best = None;
    let ladder: &[u64] = if streams == 1 {
        &LADDER_ONE_STREAM
    } else {
        &LADDER
    };
    for &rate in ladder {
        let t = trial(rate)?;
        eprintln!(
            "bench:     offered {rate} pps: forwarded {} of {} ({:.2} µs/packet, of which the relay process {:.2})",
            t.forwarded,
            t.sent,
            t.us_per_packet(),
            if t.forwarded == 0 {
                f64::INFINITY
            } else {
                t.relay_secs * 1e6 / t.forwarded as f64
            }
        );
        if t.loss() > MAX_LOSS {
            return Ok(best.unwrap_or(t));
        }
        best = Some(t);
    }
    best.context("empty ladder")
}

fn trial_bare(lab: &Lab, napi: &[u32], obj: &Path, streams: usize) -> Result<Trial> {
    sh_ns(
        &lab.sbc,
        &format!("ip link set dev in0 xdpdrv obj {} sec xdp", obj.display()),
    )?;
    let targets: Vec<SocketAddr> = (0..streams)
        .map(|i| SocketAddr::from(([198, 18, 1, 1], 10_000 + 2 * port_off(i))))
        .collect();
    let t = measure(lab, napi, None, &targets, None);
    sh_ns(&lab.sbc, "ip link set dev in0 xdpdrv off")?;
    t
}

pub(crate) fn port_off(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

fn trial_sbc(
    lab: &Lab,
    napi: &[u32],
    sbc: &Path,
    work: &Path,
    streams: usize,
    xdp: bool,
) -> Result<Trial> {
    let instance = format!("bench{}", std::process::id());
    let config = work.join("sbc.toml");
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
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
[media]
xdp = "{}"
interfaces = ["in0", "out0"]
timeout_s = 0
[admin]
listen = "127.0.0.1:8080"
"#,
            if xdp { "native" } else { "off" }
        ),
    )?;
    // Removed on every exit from this function (pinned links and maps outlive sbc by design).
    let pins = PinDir(PathBuf::from("/sys/fs/bpf/sbc").join(&instance));
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
    let req = |method: &str, path: &str, body: Option<&str>| {
        let _in = netns::enter(&lab.sbc).ok()?;
        http::request(admin, method, path, body)
    };
    let ready = (0..100).any(|_| {
        if req("GET", "/readyz", None).is_some_and(|r| r.status == 200) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
        false
    });
    if !ready {
        bail!("sbc not ready");
    }
    let mut targets = Vec::with_capacity(streams);
    let mut backs = Vec::with_capacity(streams);
    for i in 0..streams {
        let pbx_port = PEER_PORT + port_off(i);
        let offer = format!(
            r#"{{"from":"inside","streams":[{{"addr":"198.18.1.2","rtp_port":{pbx_port}}}]}}"#
        );
        let r = req("POST", "/api/v1/media/sessions", Some(&offer)).context("POST session")?;
        if r.status != 201 {
            bail!("allocate: {} {}", r.status, r.body);
        }
        let id = json_u64(&r.body, "\"session\":").context("session id")?;
        let in_port = json_u64(&r.body, "\"rtp_port\":").context("inside port")?;
        let out_port = json_u64(
            r.body.split("\"outside\"").nth(1).unwrap_or(""),
            "\"rtp_port\":",
        )
        .context("outside port")?;
        let answer = format!(
            r#"{{"from":"outside","streams":[{{"addr":"198.18.2.2","rtp_port":{pbx_port}}}]}}"#
        );
        let r = req(
            "PUT",
            &format!("/api/v1/media/sessions/{id}"),
            Some(&answer),
        )
        .context("PUT session")?;
        if r.status != 200 {
            bail!("commit: {} {}", r.status, r.body);
        }
        targets.push(SocketAddr::from((
            [198, 18, 1, 1],
            u16::try_from(in_port).unwrap_or(0),
        )));
        backs.push(SocketAddr::from((
            [198, 18, 2, 1],
            u16::try_from(out_port).unwrap_or(0),
        )));
    }
    if xdp {
        // Latch both sides of every stream (again, if a latching packet was lost in a veth
        // ring), then wait for the mappings: two forwarding mappings per stream once the relay
        // latched in userspace, or, with socketless streams (the default `xdp_latch`), the
        // kernel's latch of both RTP legs (their four mappings, RTCP included, are installed
        // at the answer and await that latch).
        let want = 2 * streams as u64;
        let installed = (0..10).any(|_| {
            if send_once(&lab.pbx, [198, 18, 1, 2], &targets).is_err()
                || send_once(&lab.carrier, [198, 18, 2, 2], &backs).is_err()
            {
                return false;
            }
            (0..10).any(|_| {
                let body = req("GET", "/api/v1/media", None).map(|r| r.body);
                let field = |name: &str| body.as_deref().and_then(|b| json_u64(b, name));
                if field("\"xdp_mappings\":") == Some(want)
                    || field("\"latched\":").is_some_and(|n| n >= want)
                {
                    return true;
                }
                thread::sleep(Duration::from_millis(100));
                false
            })
        });
        if !installed {
            let n = req("GET", "/api/v1/media", None).map(|r| r.body);
            bail!("XDP mappings not installed: want {want}, /api/v1/media says {n:?}");
        }
    }
    let relay = Some(guard.0.id());
    let t = if xdp {
        measure(lab, napi, relay, &targets, None)
    } else {
        search(targets.len(), |rate| {
            measure(lab, napi, relay, &targets, Some(rate))
        })
    };
    guard.term();
    drop(pins);
    t
}

/// Where rtpengine writes its pidfile (one per benchmark run; `media` removes it at the end).
fn rtpengine_pidfile() -> PathBuf {
    std::env::temp_dir().join(format!("sbc-bench-rtpengine-{}.pid", std::process::id()))
}

/// Starts rtpengine (userspace, one thread, pinned to the forwarding CPU) in the lab's SBC
/// namespace and waits until it answers ng pings; the guard stops it, the socket talks ng.
pub(crate) fn start_rtpengine(lab: &Lab) -> Result<(ChildGuard, UdpSocket)> {
    start_rtpengine_with(lab, &[])
}

/// [`start_rtpengine`] with `extra` command-line options.
pub(crate) fn start_rtpengine_with(lab: &Lab, extra: &[&str]) -> Result<(ChildGuard, UdpSocket)> {
    let child = Command::new("taskset")
        .args(["-c", &FWD_CPU.to_string(), "nsenter"])
        .arg(format!("--net=/run/netns/{}", lab.sbc))
        .args([
            "rtpengine",
            "--config-file=none",
            "-f",
            "-E",
            "--log-level=3",
            "--table=-1",
            "--interface=in/198.18.1.1",
            "--interface=out/198.18.2.1",
            "--listen-ng=127.0.0.1:22222",
            "--num-threads=1",
            "--port-min=10000",
            "--port-max=20000",
        ])
        .args(extra)
        // rtpengine writes a pidfile; keep it out of the repository (it used to land at the
        // root as `none`).
        .arg(format!("--pidfile={}", rtpengine_pidfile().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rtpengine")?;
    let mut guard = ChildGuard(child);
    if let Some(err) = guard.0.stderr.take() {
        // Drain its log so a full pipe never blocks it.
        thread::spawn(move || for _ in BufReader::new(err).lines() {});
    }
    let ng = {
        let _in = netns::enter(&lab.sbc)?;
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s
    };
    let started = Instant::now();
    while ng_call(&ng, "ping", &[]).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("rtpengine not answering ng pings");
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok((guard, ng))
}

fn trial_rtpengine(lab: &Lab, napi: &[u32], streams: usize, rate: u64) -> Result<Trial> {
    // Restarted before each trial: it drops a stream for good after queue overflows.
    let (mut guard, ng) = start_rtpengine(lab)?;
    let mut targets = Vec::with_capacity(streams);
    for i in 0..streams {
        let port = PEER_PORT + port_off(i);
        let call = format!("bench-{i}");
        let sdp = |ip: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=sendrecv\r\n"
            )
        };
        ng_call(
            &ng,
            "offer",
            &[
                ("call-id", &call),
                ("from-tag", "a"),
                ("sdp", &sdp("198.18.1.2")),
                ("direction", "l2:in3:oute"),
            ],
        )?;
        let answer = ng_call(
            &ng,
            "answer",
            &[
                ("call-id", &call),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &sdp("198.18.2.2")),
            ],
        )?;
        let port = answer
            .split("m=audio ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse::<u16>().ok())
            .with_context(|| format!("rtpengine answer without m=audio port: {answer}"))?;
        targets.push(SocketAddr::from(([198, 18, 1, 1], port)));
    }
    let t = measure(lab, napi, Some(guard.0.id()), &targets, Some(rate));
    guard.term();
    t
}

/// Sends one ng command (bencode over UDP) and returns the reply text.
pub(crate) fn ng_call(s: &UdpSocket, command: &str, args: &[(&str, &str)]) -> Result<String> {
    // rtpengine answers a repeated cookie from its cache: every message needs its own.
    static COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cookie = COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut msg = format!("c{cookie} d7:command{}:{command}", command.len());
    for (k, v) in args {
        write!(msg, "{}:{k}", k.len())?;
        if v.starts_with('l') && v.ends_with('e') && *k == "direction" {
            msg.push_str(v);
        } else {
            write!(msg, "{}:{v}", v.len())?;
        }
    }
    msg.push('e');
    s.send_to(msg.as_bytes(), "127.0.0.1:22222")?;
    let mut buf = vec![0u8; 65_536];
    let n = s.recv(&mut buf)?;
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    if !reply.contains("6:result2:ok") && !reply.contains("6:result4:pong") {
        bail!("rtpengine {command}: {reply}");
    }
    Ok(reply)
}

/// One packet from each pbx/carrier stream socket to its relay port (latching).
fn send_once(ns: &str, ip: [u8; 4], targets: &[SocketAddr]) -> Result<()> {
    let _in = netns::enter(ns)?;
    for (i, t) in targets.iter().enumerate() {
        let s = UdpSocket::bind(SocketAddr::from((ip, PEER_PORT + port_off(i))))?;
        s.send_to(&rtp(0, 1), t)?;
        // A veth ring holds 256 frames: pace the burst.
        if i % 64 == 63 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    thread::sleep(Duration::from_millis(200));
    Ok(())
}

pub(crate) fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Sends flat out from the pbx namespace (pinned to the generator CPU) for [`TRIAL`], and
/// measures what reached the carrier's sink and the CPU time of the forwarding path's tasks
/// (`tasks`: the NAPI kthreads and the relay process).
fn measure(
    lab: &Lab,
    napi: &[u32],
    relay: Option<u32>,
    targets: &[SocketAddr],
    rate: Option<u64>,
) -> Result<Trial> {
    measure_with(lab, napi, relay, targets, rate, None)
}

/// The PBX's `n` stream sockets, bound in its namespace (stream `i` on
/// `PEER_PORT + port_off(i)`), as every media trial sends from them.
pub(crate) fn pbx_sockets(lab: &Lab, n: usize) -> Result<Vec<UdpSocket>> {
    let _in = netns::enter(&lab.pbx)?;
    Ok((0..n)
        .map(|i| UdpSocket::bind(SocketAddr::from(([198, 18, 1, 2], PEER_PORT + port_off(i)))))
        .collect::<std::io::Result<_>>()?)
}

/// [`measure`] sending `packets` (one per round, to every stream; the trial ends when they
/// run out) instead of generated plain RTP.
pub(crate) fn measure_with(
    lab: &Lab,
    napi: &[u32],
    relay: Option<u32>,
    targets: &[SocketAddr],
    rate: Option<u64>,
    packets: Option<std::sync::Arc<Vec<Vec<u8>>>>,
) -> Result<Trial> {
    let sockets = pbx_sockets(lab, targets.len())?;
    let targets = targets.to_vec();
    thread::sleep(Duration::from_millis(300));
    let drops0 = sink_drops(&lab.carrier)?;
    let napi0: u64 = napi.iter().map(|&p| task_cpu_ns(p)).sum();
    let relay0 = relay.map_or(0, task_cpu_ns);
    let start = Instant::now();
    let sent = thread::spawn(move || {
        let mut cpus = nix::sched::CpuSet::new();
        let _ = cpus.set(GEN_CPU);
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);
        let mut sent = 0u64;
        let mut seq = 0u16;
        let mut round = 0usize;
        'outer: while start.elapsed() < TRIAL && sent < MAX_PACKETS {
            let generated = rtp(seq, 7);
            let pkt: &[u8] = match &packets {
                Some(p) => match p.get(round) {
                    Some(p) => p,
                    None => break,
                },
                None => &generated,
            };
            round += 1;
            for (s, t) in sockets.iter().zip(&targets) {
                // A full socket buffer is the generator's limit, not an error.
                if s.send_to(pkt, t).is_ok() {
                    sent += 1;
                }
                if sent >= MAX_PACKETS {
                    break 'outer;
                }
                if let Some(rate) = rate {
                    // Paced: wait (spinning on the generator's own CPU) until this packet is due.
                    while sent as f64 > rate as f64 * start.elapsed().as_secs_f64() {
                        std::hint::spin_loop();
                    }
                }
            }
            seq = seq.wrapping_add(1);
        }
        sent
    })
    .join()
    .map_err(|_| anyhow::anyhow!("generator panicked"))?;
    let secs = start.elapsed().as_secs_f64();
    // Let the queues drain before reading the counters.
    thread::sleep(Duration::from_millis(300));
    let napi1: u64 = napi.iter().map(|&p| task_cpu_ns(p)).sum();
    let relay1 = relay.map_or(0, task_cpu_ns);
    let drops1 = sink_drops(&lab.carrier)?;
    Ok(Trial {
        offered: rate,
        sent,
        forwarded: drops1 - drops0,
        secs,
        busy_secs: (napi1.saturating_sub(napi0) + relay1.saturating_sub(relay0)) as f64 / 1e9,
        relay_secs: relay1.saturating_sub(relay0) as f64 / 1e9,
    })
}

/// Packets the carrier's sink dropped (= received relayed packets), from veth's stats.
pub(crate) fn sink_drops(ns: &str) -> Result<u64> {
    let out = cmd_out("ip", &["netns", "exec", ns, "ethtool", "-S", "car0"])?;
    Ok(out
        .lines()
        .filter(|l| l.trim_start().starts_with("rx_queue_") && l.contains("_xdp_drops:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .sum())
}

fn compile(work: &Path, name: &str, src: &str, defines: &[String]) -> Result<PathBuf> {
    let c = work.join(format!("{name}.c"));
    let o = work.join(format!("{name}.o"));
    std::fs::write(&c, src)?;
    let clang = ["clang-22", "clang"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .context("clang not found (cargo xtask setup installs clang-22)")?;
    let mut args = vec![
        "-O2".to_owned(),
        "-target".into(),
        "bpf".into(),
        "-c".into(),
    ];
    args.extend(defines.iter().cloned());
    args.push(c.display().to_string());
    args.push("-o".into());
    args.push(o.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(clang, &args)?;
    Ok(o)
}

fn c_mac(mac: &str) -> String {
    mac.split(':')
        .map(|b| format!("0x{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn ifindex(ns: &str, ifname: &str) -> Result<u32> {
    let out = cmd_out(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{ifname}/ifindex"),
        ],
    )?;
    Ok(out.trim().parse()?)
}

fn mac(ns: &str, ifname: &str) -> Result<String> {
    let out = cmd_out(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{ifname}/address"),
        ],
    )?;
    Ok(out.trim().to_owned())
}

fn json_u64(body: &str, key: &str) -> Option<u64> {
    let rest = body.split(key).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub(crate) fn sh_ns(ns: &str, script: &str) -> Result<()> {
    run("ip", &["netns", "exec", ns, "sh", "-c", script])
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn cmd_out(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child ended by its own PID on drop (SIGTERM, then SIGKILL).
pub(crate) struct ChildGuard(pub(crate) Child);

impl ChildGuard {
    pub(crate) fn term(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.term();
        }
    }
}

/// An sbc instance's bpffs pin directory, removed on drop.
pub(crate) struct PinDir(pub(crate) PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sysctl set for the benchmark and restored on drop.
struct Sysctl {
    key: &'static str,
    old: String,
}

impl Sysctl {
    fn set(key: &'static str, value: &str) -> Result<Self> {
        let old = cmd_out("sysctl", &["-n", key])?.trim().to_owned();
        run("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(Self { key, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = run("sysctl", &["-qw", &format!("{}={}", self.key, self.old)]);
    }
}
