//! Project automation. `cargo xtask setup` installs the toolchain and test dependencies;
//! `cargo xtask test` runs the whole test suite the way CI does.

mod bench;
mod bench_check;
mod bench_latency;
mod bench_shards;
mod bench_signaling;
mod bench_srtp;
mod demo;
mod lab;
mod package;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Project tasks for the SBC workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install everything the project needs (idempotent: a second run changes nothing).
    Setup {
        /// Only report what is missing; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Run the full test suite as CI does: setup, format check, clippy, the per-call cost
    /// check (`bench check`), all tests.
    Test,
    /// Run the SBC on the shipped default configuration (config/sbc.toml), on loopback.
    Run,
    /// Bring up the lab, run the SBC in it, place calls both ways with RTP, and show a live
    /// summary until the time is up or Ctrl-C; then tear everything down.
    Demo {
        /// Seconds to place calls for.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// New calls per second in each direction.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds each call lasts.
        #[arg(long, default_value_t = 8)]
        call_seconds: u32,
        /// Relay media in userspace only (media.xdp = "off").
        #[arg(long)]
        no_xdp: bool,
        /// Root-namespace address forwarded to the SBC's admin API and /metrics.
        #[arg(long, default_value = "127.0.0.1:8080")]
        admin: std::net::SocketAddr,
    },
    /// Build the Debian package (binary, /etc/sbc/sbc.toml conffile, systemd unit, logrotate
    /// rule, dashboards) with dpkg-deb; prints its path.
    Package {
        /// Cargo profile of the binary (`release`; `dev` for a quick test build).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Directory for the .deb (default: target/package).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Benchmarks (need root); results go to bench/results/.
    Bench {
        /// Which benchmark (default: all).
        #[command(subcommand)]
        what: Option<BenchWhat>,
        /// A shorter run (fewer steps, one repetition) that still writes the report.
        #[arg(long, global = true)]
        quick: bool,
    },
    /// The network-namespace lab (pbx / sbc / carrier) for people; tests use the same code.
    Lab {
        #[command(subcommand)]
        action: lab::Action,
        /// Lab id: namespaces are `<id>-pbx`, `<id>-sbc`, `<id>-car`.
        #[arg(long, default_value = "sbclab", global = true)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Media relay packets/s and µs/packet: sbc userspace, sbc XDP, rtpengine, bare XDP;
    /// 1 and 1,000 streams; then the SRTP rows (RTP→SRTP, SRTP→SRTP: sbc userspace against
    /// rtpengine with SDES) (a few minutes, bounded).
    Media {
        /// Only the SRTP rows.
        #[arg(long)]
        srtp: bool,
    },
    /// Calls per second, CPU per 1,000 calls, memory per call and response time: sbc against
    /// Kamailio, Kamailio + rtpengine (the same job) and SIPp direct.
    Signaling {
        /// Instead: the SBC alone with each of these signaling shard counts (e.g. `1,2`),
        /// repetitions interleaved, `clean_cps` per count (bench/results/signaling-shards-*).
        #[arg(long, value_delimiter = ',')]
        shards: Vec<u16>,
    },
    /// One-way media latency through the relay: XDP fast path vs userspace.
    Latency,
    /// All of the above.
    All,
    /// CPU regression check (runs in `cargo xtask test`): instructions and allocations per
    /// call of a fixed workload through the B2BUA under callgrind, against the committed
    /// baseline (bench/baseline/b2bua-calls.json) with its tolerance. Not root, not timed.
    Check {
        /// Rewrite the baseline with the counts measured now (after an intended change).
        #[arg(long)]
        rebaseline: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup { check } => setup::run(check),
        Cmd::Test => test(),
        Cmd::Run => run_sbc(),
        Cmd::Package { profile, out } => package::run(&profile, out).map(|deb| {
            println!("{}", deb.display());
        }),
        Cmd::Lab { action, id } => lab::run(action, &id),
        Cmd::Demo {
            duration,
            rate,
            call_seconds,
            no_xdp,
            admin,
        } => demo::run(duration, rate, call_seconds, !no_xdp, admin),
        Cmd::Bench { what, quick } => match what.unwrap_or(BenchWhat::All) {
            BenchWhat::Media { srtp } => bench::media(&root(), quick, srtp, bench_srtp::run),
            BenchWhat::Signaling { shards } if !shards.is_empty() => {
                bench_shards::shards(&root(), quick, &shards)
            }
            BenchWhat::Signaling { .. } => bench_signaling::signaling(&root(), quick),
            BenchWhat::Latency => bench_latency::latency(&root()),
            BenchWhat::Check { rebaseline } => bench_check::check(&root(), rebaseline),
            BenchWhat::All => bench_signaling::signaling(&root(), quick)
                .and_then(|()| bench::media(&root(), quick, false, bench_srtp::run))
                .and_then(|()| bench_latency::latency(&root())),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The end-to-end suites where signaling shards change what happens (limits, bans, the
/// PBX's and the trunks' registrations, digest pass-through, drain; and each shard's own media
/// table: kernel latches by port, adoption after a restart, media timeouts, trunk port quotas,
/// the call records' last media views), run a second time with two shards (`SBC_E2E_SHARDS`,
/// read by the lab's configuration writer): the default is one.
const SHARDED_E2E: &[&str] = &[
    "sip_calls",
    "border_flood",
    "border_sipvicious",
    "border_tcp",
    "registration",
    "register_relay",
    "auth_passthrough",
    "drain",
    "media_socketless",
    "media_restart",
    "media_timeout",
    "media_policy",
    "cdr",
];

fn sharded_e2e() -> Result<()> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["test", "--package", "sbc-e2e", "--no-fail-fast"];
    for t in SHARDED_E2E {
        args.extend(["--test", t]);
    }
    eprintln!("xtask: SBC_E2E_SHARDS=2 cargo {}", args.join(" "));
    let status = Command::new(&cargo_bin)
        .args(&args)
        .env("SBC_E2E_SHARDS", "2")
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo_bin}"))?;
    if !status.success() {
        bail!("the e2e suites with two signaling shards failed ({status})");
    }
    Ok(())
}

fn test() -> Result<()> {
    setup::run(false)?;
    let started = std::time::Instant::now();
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Per-call CPU cost against the committed baseline (instruction counts, not timings).
    bench_check::check(&root(), false)?;
    // The end-to-end tests start the real `sbc` binary.
    cargo(&["build", "--package", "sbc", "--bin", "sbc"])?;
    cargo(&["test", "--workspace", "--all-targets", "--no-fail-fast"])?;
    sharded_e2e()?;
    eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

fn run_sbc() -> Result<()> {
    setup::run(false)?;
    cargo(&[
        "run",
        "--release",
        "--package",
        "sbc",
        "--bin",
        "sbc",
        "--",
        "run",
    ])
}
