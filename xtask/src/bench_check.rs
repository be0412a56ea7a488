//! `cargo xtask bench check`: the CPU regression check that is not a timed test. Timings on a
//! shared 2-vCPU VM drift by ±25 % (shared BENCHMARKING.md); instruction counts do not.
//!
//! It builds `bench/workload` (a fixed call workload through the sans-I/O core) in release and
//! runs it with [`CALLS`] calls under `valgrind --tool=callgrind`, collecting only inside the
//! workload's `measured` functions (the SBC's own work per message: copy, parse, handle, send,
//! timers), and divides by the calls: instructions per call and heap allocations per call
//! (calls to `malloc`, `calloc`, `realloc`, `posix_memalign`, `aligned_alloc`, counted by
//! callgrind). Process start-up, the B2BUA's construction and the workload's own work (building
//! the peers' messages, checking what the SBC sent) are left out. Both are compared with the committed
//! baseline [`BASELINE`]; the check fails when either is more than the baseline's tolerance
//! above it. Same binary, same input → same counts; a rebuilt compiler or dependency can shift
//! them a little, which the tolerance absorbs.
//!
//! Re-baselining (after an intended change, or a new toolchain): `cargo xtask bench check
//! --rebaseline` rewrites the baseline with the counts measured now; commit it with the change
//! that explains it.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// The committed baseline, relative to the workspace root.
pub const BASELINE: &str = "bench/baseline/b2bua-calls.json";
/// Calls in the measured run (the workload's own default): 8 s of simulated calls at 500/s,
/// so that completed transactions pile up as under load (Timer D keeps them 32 s) and work
/// that grows with the live state per message shows in the per-call figure.
const CALLS: u64 = 4000;
/// The workload's functions that do the SBC's work (callgrind collects only inside them).
const MEASURED: &str = "sbc_bench_workload::measured::*";
/// Allowed increase over the baseline when the baseline file names none.
const DEFAULT_TOLERANCE: f64 = 0.10;
/// The allocation functions whose calls count as allocations.
const ALLOCATORS: [&str; 5] = [
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
];

/// Per-call counts of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counts {
    instructions: f64,
    allocations: f64,
}

/// Totals callgrind reported for one run.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    instructions: u64,
    allocations: u64,
}

/// Measures, compares with the baseline (or rewrites it with `rebaseline`), prints the numbers.
pub fn check(root: &Path, rebaseline: bool) -> Result<()> {
    let started = Instant::now();
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "sbc-bench-workload",
        "--quiet",
    ])?;
    let bin = root.join("target/release/sbc-bench-workload");
    let work = std::env::temp_dir().join(format!("sbc-bench-check-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let measured = measure(&bin, &work);
    let _ = std::fs::remove_dir_all(&work);
    let now = measured?;
    let path = root.join(BASELINE);
    eprintln!(
        "bench check: {CALLS} calls through the SBC core: {:.0} instructions and {:.1} allocations per call ({:.1?})",
        now.instructions,
        now.allocations,
        started.elapsed()
    );
    if rebaseline {
        std::fs::create_dir_all(path.parent().unwrap_or(root))?;
        std::fs::write(&path, baseline_json(now))?;
        eprintln!("bench check: baseline written to {}", path.display());
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the baseline {} (create it with `cargo xtask bench check --rebaseline`)",
            path.display()
        )
    })?;
    let base = Counts {
        instructions: json_number(&text, "instructions_per_call")
            .context("baseline without instructions_per_call")?,
        allocations: json_number(&text, "allocations_per_call")
            .context("baseline without allocations_per_call")?,
    };
    let tolerance = json_number(&text, "tolerance").unwrap_or(DEFAULT_TOLERANCE);
    let mut over = Vec::new();
    for (what, now, base) in [
        ("instructions per call", now.instructions, base.instructions),
        ("allocations per call", now.allocations, base.allocations),
    ] {
        let change = now / base - 1.0;
        eprintln!(
            "bench check:   {what}: {now:.1} now, {base:.1} baseline ({:+.1} %, limit +{:.0} %)",
            change * 100.0,
            tolerance * 100.0
        );
        if change > tolerance {
            over.push(format!("{what} {:+.1} %", change * 100.0));
        } else if change < -tolerance {
            eprintln!(
                "bench check:   {what} improved beyond the tolerance: re-baseline with `cargo xtask bench check --rebaseline` so the gain is kept"
            );
        }
    }
    if !over.is_empty() {
        bail!(
            "per-call cost above the baseline ({}): find the cause (`callgrind_annotate` on a run of target/release/sbc-bench-workload under valgrind --tool=callgrind), or, if intended, re-baseline with `cargo xtask bench check --rebaseline` and commit {BASELINE}",
            over.join(", ")
        );
    }
    Ok(())
}

/// Per-call counts of a run with [`CALLS`] calls.
fn measure(bin: &Path, work: &Path) -> Result<Counts> {
    let t = callgrind(bin, work, CALLS)?;
    if t.instructions == 0 {
        bail!(
            "callgrind counted nothing inside {MEASURED}: were the workload's measured functions renamed or inlined?"
        );
    }
    Ok(Counts {
        instructions: t.instructions as f64 / CALLS as f64,
        allocations: t.allocations as f64 / CALLS as f64,
    })
}

/// Runs the workload with `calls` under callgrind, counting inside [`MEASURED`] only, and reads
/// its totals.
fn callgrind(bin: &Path, work: &Path, calls: u64) -> Result<Totals> {
    let out: PathBuf = work.join(format!("callgrind-{calls}.out"));
    let run = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            // Names written out in full on every line, so the file parses line by line.
            "--compress-strings=no",
            "--compress-pos=no",
        ])
        .arg(format!("--toggle-collect={MEASURED}"))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .arg(calls.to_string())
        .output()
        .context("running valgrind (`cargo xtask setup` installs it)")?;
    if !run.status.success() {
        bail!(
            "the workload failed under callgrind ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("reading callgrind's output {}", out.display()))?;
    parse_callgrind(&text)
}

/// Total instructions (`summary:`/`totals:` line) and calls into the allocator functions (the
/// `calls=` line after each `cfn=` line naming one) of a callgrind output file written with
/// uncompressed names.
fn parse_callgrind(text: &str) -> Result<Totals> {
    let mut totals = Totals::default();
    let mut to_allocator = false;
    let mut summary = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("cfn=") {
            to_allocator = ALLOCATORS.contains(&name.trim());
        } else if let Some(rest) = line.strip_prefix("calls=") {
            if to_allocator {
                let n: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("bad calls line: {line}"))?;
                totals.allocations += n;
            }
            to_allocator = false;
        } else if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            summary = v.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    totals.instructions = summary.context("callgrind output without a summary line")?;
    Ok(totals)
}

fn baseline_json(c: Counts) -> String {
    let out = |p: &str, a: &[&str]| {
        Command::new(p)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"workload\": \"bench/workload: {CALLS} outbound calls (INVITE/100/180/200/ACK/BYE/200 on both legs) at 500 calls/s of simulated time through sbc_proto::sbc::Sbc (ACL, guard, drain, B2BUA) with the real media table (SimMedia), then the timers drained; counted inside the SBC's work only ({MEASURED}), divided by {CALLS}\","
    );
    let _ = writeln!(s, "  \"instructions_per_call\": {:.0},", c.instructions);
    let _ = writeln!(s, "  \"allocations_per_call\": {:.2},", c.allocations);
    let _ = writeln!(s, "  \"tolerance\": {DEFAULT_TOLERANCE},");
    let _ = writeln!(s, "  \"rustc\": {:?},", out("rustc", &["-V"]));
    let _ = writeln!(s, "  \"valgrind\": {:?},", out("valgrind", &["--version"]));
    let _ = writeln!(
        s,
        "  \"date\": {:?}",
        out("date", &["-u", "+%Y-%m-%dT%H:%MZ"])
    );
    s.push_str("}\n");
    s
}

/// The number after `"key":` in a flat JSON object.
fn json_number(text: &str, key: &str) -> Option<f64> {
    let rest = text.split(&format!("\"{key}\":")).nth(1)?;
    let value: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=main\n0 10\ncfn=malloc\ncalls=3 0\n0 300\ncfn=free\ncalls=2 0\n0 40\nfn=other\ncfn=realloc\ncalls=4 0\n0 80\ncfn=malloc_usable_size\ncalls=9 0\n0 9\nsummary: 12345\ntotals: 12345\n";

    #[test]
    fn allocations_are_the_calls_into_allocator_functions_only() {
        let t = parse_callgrind(SAMPLE).expect("parses");
        assert_eq!(
            t.allocations, 7,
            "malloc 3 + realloc 4; free and others not"
        );
        assert_eq!(t.instructions, 12_345);
    }

    #[test]
    fn output_without_summary_is_an_error() {
        assert!(parse_callgrind("events: Ir\nfn=main\n0 1\n").is_err());
    }

    #[test]
    fn baseline_numbers_are_read_back() {
        let b = baseline_json(Counts {
            instructions: 123_456.0,
            allocations: 78.25,
        });
        assert_eq!(json_number(&b, "instructions_per_call"), Some(123_456.0));
        assert_eq!(json_number(&b, "allocations_per_call"), Some(78.25));
        assert_eq!(json_number(&b, "tolerance"), Some(DEFAULT_TOLERANCE));
    }
}
