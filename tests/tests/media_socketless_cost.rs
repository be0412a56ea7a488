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
//! `SOCKETLESS_ONLY=1` skips the run with sockets. `SOCKETLESS_PORT_MIN`/`SOCKETLESS_PORT_MAX`
//! set the relay port range (default 10000-59998; the trunk's media port quota is lifted to
//! the whole range) and `SOCKETLESS_TIMEOUT_S` SIPp's bound (default 60) for runs at the
//! port range's limit. `SOCKETLESS_HEAPTRACK=/tmp/ht` attaches
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
    let (port_min, port_max) = (
        env("SOCKETLESS_PORT_MIN", 10_000),
        env("SOCKETLESS_PORT_MAX", 59_998),
    );
    let timeout_s = env("SOCKETLESS_TIMEOUT_S", 60).min(600);
    let mut lab = MediaLab::start_with_sections(
        prefix,
        &format!(
            "xdp = \"auto\"\nxdp_latch = {socketless}\nport_min = {port_min}\n\
             port_max = {port_max}\ntimeout_s = 0"
        ),
        "[limits]\nmax_transactions = 100000\nmax_calls = 60000\nmax_cps = 2000\n",
    );
    // The lab's trunk has the default call limits (500 calls, 50/s): lift them and restart.
    lab.kill9();
    let text = std::fs::read_to_string(&lab.config).expect("config");
    let text = text.replacen(
        "proxy = \"198.18.2.2:5060\"",
        &format!(
            "proxy = \"198.18.2.2:5060\"\nmax_calls = 60000\nmax_cps = 2000\n\
             max_media_ports = {}",
            port_max.saturating_sub(port_min) + 1
        ),
        1,
    );
    std::fs::write(&lab.config, text).expect("config");
    lab.start_sbc();
    let pid = lab.sbc.as_ref().expect("sbc").pid();
    let (fds_idle, rss_idle) = (fds(pid), rss_kib(pid));
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
    let timeout_str = timeout_s.to_string();
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
            "-timeout",
            &timeout_str,
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
            "-timeout",
            &timeout_str,
            "198.18.1.1:5060",
        ],
    );
    // The peak: every call placed and not yet hung up.
    let deadline = Instant::now() + Duration::from_secs(timeout_s.saturating_sub(5));
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
    let gauges = lab
        .request("GET", "/metrics", None)
        .map(|r| {
            [
                "sbc_media_xdp_mappings",
                "sbc_media_xdp_mappings_capacity",
                "sbc_media_ports_free{side=\"outside\"}",
                // Where the memory is: the traces (bounded by `[trace]`) and the B2BUA's
                // stored messages.
                "sbc_trace_stored_bytes",
                "sbc_trace_legs",
                "sbc_sip_stored_bytes",
            ]
            .map(|g| format!("{g} {}", gauge(&r.body, g).unwrap_or(0)))
            .join(", ")
        })
        .unwrap_or_default();
    let uac_status = uac.wait_timeout(Duration::from_secs(timeout_s));
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
         fds idle {fds_idle}, RSS idle {rss_idle} KiB; at peak {} media sessions: {} fds \
         ({:.2} per call), RSS {} KiB; after the peak: {gauges}; \
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

/// The media plane alone at its port range's limit (ignored; run by hand as root):
///
/// ```text
/// MEDIA_SCALE_SESSIONS=40000 MEDIA_SCALE_PORT_MIN=6000 MEDIA_SCALE_PORT_MAX=65535 \
///   cargo test -p sbc-e2e --test media_socketless_cost media_plane -- --ignored --nocapture
/// ```
///
/// `MEDIA_SCALE_ADDRESSES` (default 1, at most 8) relay addresses per side
/// (`media_addresses`: 198.18.1.1, .11, .12, … inside and 198.18.2.x outside, added to the
/// SBC's interfaces), each with the whole port range.
///
/// Sessions are made through the admin API (offer from the PBX, answer from the carrier, as
/// the call layer does for a call), not SIP: the count is bounded by the relay ports and the
/// XDP maps, not by how fast SIPp and the signaling path go on this machine. It stops at
/// `MEDIA_SCALE_SESSIONS` (default 1,000), at the first refusal (printed: ports exhausted
/// is the expected end), or after 400 s (`MEDIA_SCALE_BOUND_S`), and prints sessions,
/// descriptors, RSS and gauges.
#[test]
#[ignore = "measurement; run by hand (see the doc comment)"]
fn media_plane_sessions_up_to_the_port_range() {
    if !sbc_e2e::require_root("media_socketless_cost") {
        return;
    }
    let want = env("MEDIA_SCALE_SESSIONS", 1_000);
    let (port_min, port_max) = (
        env("MEDIA_SCALE_PORT_MIN", 10_000),
        env("MEDIA_SCALE_PORT_MAX", 59_998),
    );
    let addresses = env("MEDIA_SCALE_ADDRESSES", 1).clamp(1, 8);
    let bound_s = env("MEDIA_SCALE_BOUND_S", 400);
    // 198.18.<side>.1 is the lab's own; the extra ones are .11, .12, ...
    let list = |side: u8| -> Vec<String> {
        (0..addresses)
            .map(|i| match i {
                0 => format!("198.18.{side}.1"),
                i => format!("198.18.{side}.{}", 10 + i),
            })
            .collect()
    };
    let quoted = |side: u8| {
        list(side)
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sides = [
        format!("media_addresses = [{}]", quoted(1)),
        format!("media_addresses = [{}]", quoted(2)),
    ];
    let mut lab = MediaLab::start_sides(
        "smp",
        &format!("xdp = \"auto\"\nport_min = {port_min}\nport_max = {port_max}\ntimeout_s = 0"),
        &sides,
        |lab| {
            for (side, dev) in [(1, "in0"), (2, "out0")] {
                for a in list(side).iter().skip(1) {
                    sbc_e2e::netns::ip(&[
                        "-n",
                        &lab.sbc,
                        "addr",
                        "add",
                        &format!("{a}/24"),
                        "dev",
                        dev,
                    ])
                    .unwrap_or_else(|e| panic!("add {a}: {e:?}"));
                }
            }
        },
    );
    // The lab's trunk quota (half the outside ports by default) lifted to all of them.
    lab.kill9();
    let text = std::fs::read_to_string(&lab.config).expect("config");
    let text = text.replacen(
        "proxy = \"198.18.2.2:5060\"",
        &format!(
            "proxy = \"198.18.2.2:5060\"\nmax_media_ports = {}",
            (port_max.saturating_sub(port_min) + 1) * addresses
        ),
        1,
    );
    std::fs::write(&lab.config, text).expect("config");
    lab.start_sbc();
    let pid = lab.sbc.as_ref().expect("sbc").pid();
    let (fds_idle, rss_idle) = (fds(pid), rss_kib(pid));
    let peers = r#"{"inside":"198.18.1.2","outside":"198.18.2.2","trunk":"carrier"}"#;
    let started = Instant::now();
    let mut made = 0u64;
    let mut end = String::from("count reached");
    // Descriptors and RSS every 10,000 sessions: flat descriptors are the point.
    let mut samples = Vec::new();
    while made < want {
        if made.is_multiple_of(10_000) {
            samples.push(format!("{made}: {} fds, {} KiB", fds(pid), rss_kib(pid)));
        }
        if started.elapsed() > Duration::from_secs(bound_s) {
            end = format!("{bound_s} s bound");
            break;
        }
        // Distinct peer ports per session, as distinct calls would have.
        let port = 2 * (made % 30_000) + 2_000;
        let offer = format!(
            r#"{{"from":"inside","streams":[{{"addr":"198.18.1.2","rtp_port":{port}}}],"peers":{peers}}}"#
        );
        let Some(r) = lab.request("POST", "/api/v1/media/sessions", Some(&offer)) else {
            end = "admin API unreachable".into();
            break;
        };
        if r.status != 201 {
            end = format!("refused: {} {}", r.status, r.body);
            break;
        }
        let id = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["session"].as_u64())
            .expect("session id");
        let answer = format!(
            r#"{{"from":"outside","streams":[{{"addr":"198.18.2.2","rtp_port":{port}}}]}}"#
        );
        lab.json(
            "PUT",
            &format!("/api/v1/media/sessions/{id}"),
            Some(&answer),
            200,
        );
        made += 1;
    }
    let gauges = lab
        .request("GET", "/metrics", None)
        .map(|r| {
            [
                "sbc_media_sessions",
                "sbc_media_xdp_mappings",
                "sbc_media_xdp_mappings_capacity",
                "sbc_media_ports_free{side=\"inside\"}",
                "sbc_media_ports_free{side=\"outside\"}",
            ]
            .map(|g| format!("{g} {}", gauge(&r.body, g).unwrap_or(0)))
            .join(", ")
        })
        .unwrap_or_default();
    eprintln!(
        "== media plane, ports {port_min}-{port_max}, {addresses} relay address(es) per side: \
         {made} sessions in {:.0} s ({end}); fds idle {fds_idle} -> {}; RSS idle {rss_idle} KiB \
         -> {} KiB; {gauges}; samples [{}]",
        started.elapsed().as_secs_f64(),
        fds(pid),
        rss_kib(pid),
        samples.join("; ")
    );
}
