//! Measurement, not a pass/fail check (ignored by default; run as root):
//!
//! ```text
//! SOCKETLESS_CALLS=2000 cargo test -p sbc-e2e --test media_socketless_cost -- --ignored --nocapture
//! ```
//!
//! For socketless streams (`xdp_latch = true`) and for streams behind sockets
//! (`xdp_latch = false`), both with XDP attached: SIPp's built-in UAC/UAS place
//! `SOCKETLESS_CALLS` calls (default 200) at `SOCKETLESS_RATE` calls/s (default 100) that
//! stay up `SOCKETLESS_HOLD_MS` (default 10000); at the peak it prints the SBC's open file
//! descriptors and RSS. With `SOCKETLESS_STRACE=1` the SBC runs under `strace -c -f` for the
//! whole run and the syscall summary (total calls / calls placed) is printed. Every run is
//! bounded by SIPp's 60 s timeout. `SBC_BIN=target/release/sbc` measures a release build;
//! `SOCKETLESS_ONLY=1` skips the run with sockets. `SOCKETLESS_HEAPTRACK=/tmp/ht` attaches
//! `heaptrack -p` to the SBC once it is up (read the result with
//! `heaptrack_print --print-peaks /tmp/ht*.zst`; under heaptrack the SBC is several times slower).

mod media_common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{process::Owned, sipp};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "measurement; run by hand (see the file's header)"]
fn socketless_streams_cost_no_descriptors_per_call() {
    if !sbc_e2e::require_root("media_socketless_cost") {
        return;
    }
    for (prefix, socketless) in [("scs", true), ("scb", false)] {
        // SOCKETLESS_ONLY=1 skips the run with sockets (it runs out of descriptors at scale).
        if socketless || env("SOCKETLESS_ONLY", 0) != 1 {
            measure(prefix, socketless);
        }
    }
}

fn measure(prefix: &str, socketless: bool) {
    let calls = env("SOCKETLESS_CALLS", 200);
    let rate = env("SOCKETLESS_RATE", 100);
    let hold = env("SOCKETLESS_HOLD_MS", 10_000);
    let mut lab = MediaLab::start_with_sections(
        prefix,
        &format!(
            "xdp = \"auto\"\nxdp_latch = {socketless}\nport_min = 10000\nport_max = 59998\n\
             timeout_s = 0"
        ),
        "[limits]\nmax_transactions = 100000\nmax_calls = 60000\nmax_cps = 2000\n",
    );
    // The lab's trunk has the default call limits (500 calls, 50/s): lift them and restart.
    lab.kill9();
    let text = std::fs::read_to_string(&lab.config).expect("config");
    let text = text.replacen(
        "proxy = \"198.18.2.2:5060\"",
        "proxy = \"198.18.2.2:5060\"\nmax_calls = 60000\nmax_cps = 2000",
        1,
    );
    std::fs::write(&lab.config, text).expect("config");
    lab.start_sbc();
    let pid = lab.sbc.as_ref().expect("sbc").pid();
    let fds_idle = fds(pid);
    let strace_out =
        std::env::temp_dir().join(format!("{prefix}-strace-{}.txt", std::process::id()));
    let strace = (env("SOCKETLESS_STRACE", 0) == 1).then(|| {
        let child = Command::new("strace")
            .args(["-c", "-f", "-q", "-o"])
            .arg(&strace_out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace");
        thread::sleep(Duration::from_millis(500));
        Owned::new("strace", child)
    });
    let heaptrack = std::env::var_os("SOCKETLESS_HEAPTRACK").map(|out| {
        let child = Command::new("heaptrack")
            .arg("-o")
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("heaptrack");
        thread::sleep(Duration::from_secs(5));
        Owned::new("heaptrack", child)
    });
    let (calls_s, rate_s, hold_s) = (calls.to_string(), rate.to_string(), hold.to_string());
    let mut uas = sipp::run_args(
        &lab.lab.carrier,
        &[
            "-sn",
            "uas",
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
            "-m",
            &calls_s,
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let mut uac = sipp::run_args(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            &calls_s,
            "-l",
            &calls_s,
            "-r",
            &rate_s,
            "-d",
            &hold_s,
            "198.18.1.1:5060",
        ],
    );
    // The peak: every call placed and not yet hung up.
    let deadline = Instant::now() + Duration::from_secs(55);
    let mut peak = (0u64, 0usize, 0u64);
    let mut unreachable_polls = 0u32;
    while Instant::now() < deadline && uac.running() {
        // The sessions gauge, not a session list: `/api/v1/media` walks the XDP map (a syscall
        // per entry), which would swamp the syscall count, and a list of thousands of sessions
        // would itself grow the heap whose size is measured.
        // Unreachable (e.g. no descriptor left to accept with) counts as no answer.
        let Some(sessions) = lab
            .request("GET", "/metrics", None)
            .and_then(|r| gauge(&r.body, "sbc_media_sessions"))
        else {
            unreachable_polls += 1;
            thread::sleep(Duration::from_millis(250));
            continue;
        };
        if sessions >= peak.0 {
            peak = (sessions, fds(pid), rss_kib(pid));
        }
        if sessions >= calls {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    let uac_status = uac.wait_timeout(Duration::from_secs(60));
    let _ = uas.wait_timeout(Duration::from_secs(10));
    let syscalls = strace.map(|s| {
        s.signal(nix::sys::signal::Signal::SIGINT);
        let mut s = s;
        let _ = s.wait_timeout(Duration::from_secs(10));
        let text = std::fs::read_to_string(&strace_out).unwrap_or_default();
        let _ = std::fs::remove_file(&strace_out);
        text
    });
    eprintln!(
        "== xdp_latch = {socketless}: {calls} calls at {rate}/s held {hold} ms; SIPp uac {uac_status:?}\n\
         fds idle {fds_idle}; at peak {} media sessions: {} fds ({:.2} per call), RSS {} KiB; \
         admin API unreachable in {unreachable_polls} polls; fds at the end {}",
        peak.0,
        peak.1,
        (peak.1.saturating_sub(fds_idle)) as f64 / peak.0.max(1) as f64,
        peak.2,
        fds(pid)
    );
    if let Some(mut heaptrack) = heaptrack {
        // heaptrack writes its file once the SBC is gone; the file holds the peak.
        lab.kill9();
        let _ = heaptrack.wait_timeout(Duration::from_secs(120));
    }
    if let Some(text) = syscalls {
        let total = text
            .lines()
            .find(|l| l.trim_end().ends_with("total"))
            .unwrap_or("");
        eprintln!("strace -c -f total: {total}\n{text}");
    }
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
