//! `cargo xtask bench signaling --shards 1,2`: the clean calls/s of the SBC alone with each
//! signaling shard count (issue 16: ≥ 1.7× with 2 shards on 2 cores when the harness is not
//! the limit), from the signaling benchmark's own ladder run once per shard count, the
//! counts interleaved per repetition (1, 2, 1, 2, …) because this VM's speed drifts.
//!
//! CPU sets, so the load generator does not share the SBC's cores (taskset):
//! `SBC_BENCH_SIPP_CPUS` (SIPp's UAC, default `0`) and `SBC_BENCH_SHARD_CPUS_<n>` (the SBC with
//! `n` shards; defaults `1` for one shard and `0-1`-style "all but none" for more: `0,1` on a
//! 2-vCPU machine, where SIPp then shares CPU 0 and the figure is a lower bound). On a machine
//! with ≥ 3 vCPUs: `SBC_BENCH_SIPP_CPUS=0 SBC_BENCH_SHARD_CPUS_1=1 SBC_BENCH_SHARD_CPUS_2=1,2`.
//!
//! Writes `bench/results/signaling-shards-<date>[-quick].{md,json}` with `clean_cps` per shard
//! count, CPU-s per 1,000 calls at the fixed rate, and the load average before and after each
//! run: above 1.5 on this machine the report says the figures are from a loaded machine.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result, bail};

/// One run of the ladder with `shards` shards.
#[derive(Debug, Clone)]
struct Run {
    shards: u16,
    cpus: String,
    clean_cps: Option<f64>,
    cpu_per_1000_fixed: Option<f64>,
    load_before: f64,
    load_after: f64,
}

/// Runs the SBC-only signaling ladder for each of `counts` (repetitions interleaved) and
/// writes the scaling report.
pub fn shards(root: &Path, quick: bool, counts: &[u16]) -> Result<()> {
    if counts.is_empty() {
        bail!("--shards needs at least one shard count");
    }
    // SBC_BENCH_SHARD_REPS=<n> interleaves n repetitions of the ladder per count, also with
    // --quick (quick children: one repetition each, the short ladder unless SBC_BENCH_LADDER).
    let reps = std::env::var("SBC_BENCH_SHARD_REPS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|r| (1..=9).contains(r))
        .unwrap_or(if quick { 1 } else { 3 });
    let sipp_cpus = std::env::var("SBC_BENCH_SIPP_CPUS").unwrap_or_else(|_| "0".into());
    let exe = std::env::current_exe().context("the xtask binary")?;
    let out = std::env::temp_dir().join(format!("sbc-bench-shards-{}", std::process::id()));
    let mut runs = Vec::new();
    for rep in 0..reps {
        for &n in counts {
            let cpus = std::env::var(format!("SBC_BENCH_SHARD_CPUS_{n}"))
                .unwrap_or_else(|_| if n <= 1 { "1".into() } else { "0,1".into() });
            let dir = out.join(format!("rep{rep}-shards{n}"));
            std::fs::create_dir_all(&dir)?;
            eprintln!("bench shards: repetition {rep}, {n} shard(s) on CPU(s) {cpus}");
            let load_before = load_average();
            let mut cmd = Command::new(&exe);
            cmd.args(["bench", "signaling"])
                .env("SBC_BENCH_ONLY", "sbc")
                .env("SBC_BENCH_SHARDS", n.to_string())
                .env("SBC_BENCH_SBC_CPUS", &cpus)
                .env("SBC_BENCH_SIPP_CPUS", &sipp_cpus)
                .env("SBC_BENCH_OUT", &dir)
                .current_dir(root);
            if quick {
                cmd.arg("--quick");
            }
            let status = cmd.status().context("running the signaling benchmark")?;
            if !status.success() {
                bail!("the signaling benchmark with {n} shard(s) failed ({status})");
            }
            let json = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "json"))
                .context("the signaling benchmark wrote no JSON")?;
            let text = std::fs::read_to_string(&json)?;
            runs.push(Run {
                shards: n,
                cpus,
                clean_cps: sbc_field(&text, "clean_cps"),
                cpu_per_1000_fixed: sbc_field(&text, "cpu_s_per_1000_fixed"),
                load_before,
                load_after: load_average(),
            });
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    let (md, json) = render(&runs, counts, quick, &sipp_cpus);
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let suffix = if quick { "-quick" } else { "" };
    let date = crate::bench_signaling::date();
    std::fs::write(dir.join(format!("signaling-shards-{date}{suffix}.md")), &md)?;
    std::fs::write(
        dir.join(format!("signaling-shards-{date}{suffix}.json")),
        &json,
    )?;
    println!("{md}");
    Ok(())
}

/// A number of the SBC's row in the signaling benchmark's JSON (`"system": "sbc"`), if it is
/// one (`null` and a missing row are `None`).
fn sbc_field(json: &str, key: &str) -> Option<f64> {
    let row = json.lines().find(|l| l.contains("\"system\": \"sbc\""))?;
    let pat = format!("\"{key}\": ");
    let rest = &row[row.find(&pat)? + pat.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |x| format!("{x:.4}"))
}

fn render(runs: &[Run], counts: &[u16], quick: bool, sipp_cpus: &str) -> (String, String) {
    let loaded = runs
        .iter()
        .any(|r| r.load_before.max(r.load_after) > 1.5 || r.load_before.is_nan());
    let per = |n: u16, f: fn(&Run) -> Option<f64>| {
        median(
            runs.iter()
                .filter(|r| r.shards == n)
                .filter_map(f)
                .collect(),
        )
    };
    let clean: Vec<(u16, Option<f64>)> = counts
        .iter()
        .map(|&n| (n, per(n, |r| r.clean_cps)))
        .collect();
    let base = clean.first().and_then(|c| c.1).filter(|b| *b > 0.0);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Signaling shards: clean calls/s per shard count ({}{})\n",
        crate::bench_signaling::date(),
        if quick { ", quick" } else { "" }
    );
    if loaded {
        let _ = writeln!(
            md,
            "**From a loaded machine** (1-minute load average above 1.5 during a run): the \
             figures measure the load as much as the SBC. Rerun on a quiet machine with the \
             command below.\n"
        );
    }
    let mut ladder = std::env::var("SBC_BENCH_LADDER")
        .map(|l| format!("SBC_BENCH_LADDER={l} "))
        .unwrap_or_default();
    if let Ok(r) = std::env::var("SBC_BENCH_SHARD_REPS") {
        ladder.push_str(&format!("SBC_BENCH_SHARD_REPS={r} "));
    }
    let _ = writeln!(
        md,
        "Command: `{ladder}SBC_BENCH_SIPP_CPUS={sipp_cpus} cargo xtask bench signaling --shards {}{}` \
         (SIPp UAC on CPUs {sipp_cpus}; the SBC's CPU set per shard count below; the ladder \
         (`SBC_BENCH_LADDER` when given) and the clean rule of `bench signaling`).\n",
        counts
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        if quick { " --quick" } else { "" }
    );
    let _ = writeln!(
        md,
        "| shards | SBC CPUs | clean calls/s | CPU-s per 1,000 calls at 500/s | load before → after |\n|---|---|---|---|---|"
    );
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} → {:.1} |",
            r.shards,
            r.cpus,
            r.clean_cps
                .map_or("none clean".into(), |c| format!("{c:.0}")),
            r.cpu_per_1000_fixed
                .map_or("—".into(), |c| format!("{c:.3}")),
            r.load_before,
            r.load_after
        );
    }
    for &n in counts {
        let _ = writeln!(
            md,
            "\nMedians with {n} shard(s): clean {} calls/s, {} CPU-s per 1,000 calls at 500/s.",
            per(n, |r| r.clean_cps).map_or("none".into(), |c| format!("{c:.0}")),
            per(n, |r| r.cpu_per_1000_fixed).map_or("—".into(), |c| format!("{c:.3}"))
        );
    }
    for &(n, c) in clean.iter().skip(1) {
        let ratio = c.zip(base).map(|(c, b)| c / b);
        let _ = writeln!(
            md,
            "\nClean calls/s with {n} shards over 1: {} (target ≥ 1.7 with 2 shards on 2 cores \
             when the harness is not the limit).",
            ratio.map_or(
                "no ratio (no clean step at one of the counts)".into(),
                |r| { format!("{r:.2}") }
            )
        );
    }
    let mut json = String::from("{\n  \"benchmark\": \"signaling_shards\",\n");
    let _ = writeln!(json, "  \"date\": {:?},", crate::bench_signaling::date());
    let _ = writeln!(json, "  \"quick\": {quick},");
    let _ = writeln!(json, "  \"loaded_machine\": {loaded},");
    let _ = writeln!(json, "  \"sipp_cpus\": {sipp_cpus:?},");
    let _ = writeln!(
        json,
        "  \"clean_cps\": {},",
        crate::bench::json_map(clean.iter().map(|(n, c)| (n, num(*c))))
    );
    let _ = writeln!(
        json,
        "  \"cpu_s_per_1000_fixed\": {},",
        crate::bench::json_map(
            counts
                .iter()
                .map(|&n| (n, num(per(n, |r| r.cpu_per_1000_fixed))))
        )
    );
    let ratio = clean.get(1).and_then(|c| c.1).zip(base).map(|(c, b)| c / b);
    let _ = writeln!(json, "  \"ratio_clean_cps_2_over_1\": {},", num(ratio));
    let _ = writeln!(
        json,
        "  \"runs\": [\n{}\n  ]\n}}",
        runs.iter()
            .map(|r| format!(
                "    {{\"shards\": {}, \"sbc_cpus\": {:?}, \"clean_cps\": {}, \"cpu_s_per_1000_fixed\": {}, \"load_before\": {:.2}, \"load_after\": {:.2}}}",
                r.shards,
                r.cpus,
                num(r.clean_cps),
                num(r.cpu_per_1000_fixed),
                r.load_before,
                r.load_after
            ))
            .collect::<Vec<_>>()
            .join(",\n")
    );
    (md, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sbc_row_of_the_signaling_json() {
        let json = "{\n  \"clean_cps\": {\"sbc\": 0.0000},\n  \"systems\": [\n    {\"system\": \"sbc\", \"clean_cps\": 1000, \"cpu_s_per_1000_fixed\": 1.6945, \"cpu_s_per_1000_knee\": null}\n  ]\n}";
        assert_eq!(sbc_field(json, "clean_cps"), Some(1000.0));
        assert_eq!(sbc_field(json, "cpu_s_per_1000_fixed"), Some(1.6945));
        assert_eq!(sbc_field(json, "cpu_s_per_1000_knee"), None);
        assert_eq!(sbc_field("{}", "clean_cps"), None);
    }

    #[test]
    fn the_ratio_is_the_median_of_two_over_the_median_of_one() {
        let run = |shards, clean| Run {
            shards,
            cpus: "1".into(),
            clean_cps: clean,
            cpu_per_1000_fixed: Some(0.5),
            load_before: 0.3,
            load_after: 0.4,
        };
        let runs = [
            run(1, Some(1000.0)),
            run(2, Some(2000.0)),
            run(1, Some(1200.0)),
            run(2, Some(1800.0)),
            run(1, Some(900.0)),
            run(2, None),
        ];
        let (md, json) = render(&runs, &[1, 2], false, "0");
        assert!(
            json.contains("\"clean_cps\": {\"1\": 1000.0000, \"2\": 2000.0000}"),
            "{json}"
        );
        assert!(
            json.contains("\"ratio_clean_cps_2_over_1\": 2.0000"),
            "{json}"
        );
        assert!(json.contains("\"loaded_machine\": false"));
        assert!(!md.contains("loaded machine"));
    }
}
