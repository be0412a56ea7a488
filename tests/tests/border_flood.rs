//! Issue 13, bounded state: an INVITE flood of 100,000 distinct Call-IDs from the PBX's own
//! address (exempt from the per-source rate limit) — half late offer, half with twelve `m=`
//! lines — against the real `sbc`. Its memory stays bounded, the admission limits and caps
//! hold (metrics), and calls from a second trunk placed during the flood still complete.

mod media_common;

use sbc_lab::sipp::run_args as sipp;
use std::{
    net::UdpSocket,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{netns, process::Owned};

const SBC_INSIDE: &str = "198.18.1.1:5060";
/// The flood's socket: the PBX's own address (another port, SIPp holds 5060).
const FLOOD_FROM: &str = "198.18.1.2:5062";
/// A second trunk, added to the carrier namespace by the test.
const SECOND_TRUNK_IP: &str = "198.18.2.3";
const FLOOD: u32 = 100_000;
const SECOND_CALLS: &str = "20";

/// The second trunk, and a route sending the PBX's calls to the first trunk only (the flood
/// exhausts that trunk's limits, not the other's).
const EXTRA: &str = r#"
[[trunk]]
name = "carrier2"
proxy = "198.18.2.3:5060"
[[route]]
name = "all"
trunks = ["carrier"]
"#;

fn invite(i: u32, media_lines: usize) -> String {
    let head = format!(
        "INVITE sip:15551234567@{SBC_INSIDE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {FLOOD_FROM};branch=z9hG4bKfl{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=fl{i}\r\n\
         To: <sip:15551234567@198.18.1.1>\r\nCall-ID: flood-{i}@198.18.1.2\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:100@{FLOOD_FROM}>\r\n"
    );
    if media_lines == 0 {
        return format!("{head}Content-Length: 0\r\n\r\n");
    }
    let mut sdp = String::from(
        "v=0\r\no=fl 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\n",
    );
    for m in 0..media_lines {
        sdp.push_str(&format!(
            "m=audio {} RTP/AVP 0 8\r\na=sendrecv\r\n",
            40_000 + 2 * m
        ));
    }
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn metric(lab: &MediaLab, series: &str) -> f64 {
    lab.request("GET", "/metrics", None)
        .and_then(|r| {
            r.body
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {series} missing"))
}

/// Every series of metric `name` with a non-zero value, for a failure message.
fn series(lab: &MediaLab, name: &str) -> String {
    lab.request("GET", "/metrics", None)
        .map(|r| {
            r.body
                .lines()
                .filter(|l| l.starts_with(name) && !l.ends_with(" 0"))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

#[test]
fn invite_flood_from_the_pbx_stays_bounded_and_a_second_trunks_calls_complete() {
    if !sbc_e2e::require_root("border_flood") {
        return;
    }
    let lab = MediaLab::start_admin(
        "bfl",
        "xdp = \"off\"\nport_min = 10000\nport_max = 60000",
        EXTRA,
        None,
    );
    let added = Command::new("ip")
        .args([
            "-n",
            &lab.lab.carrier,
            "addr",
            "add",
            "198.18.2.3/24",
            "dev",
            "car0",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(added, "second trunk address");
    let pid = lab.sbc.as_ref().map(Owned::pid).expect("sbc running");
    thread::sleep(Duration::from_millis(500));
    let baseline = rss_kib(pid);
    assert!(baseline > 0, "VmRSS of the sbc");

    // RSS sampler, bounded by `stop` and a deadline.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(180);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The second source: the other trunk calls the PBX during the flood.
    let uas = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uas",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-m",
            SECOND_CALLS,
        ],
    );
    thread::sleep(Duration::from_millis(300));
    // Two calls a second for the flood's first ten seconds.
    let uac = sipp(
        &lab.lab.carrier,
        &[
            "-sn",
            "uac",
            "-i",
            SECOND_TRUNK_IP,
            "-p",
            "5060",
            "-s",
            "4930123456",
            "-m",
            SECOND_CALLS,
            "-r",
            "2",
            "-d",
            "500",
            "198.18.2.1:5060",
        ],
    );

    // The flood: 100,000 distinct Call-IDs at about 2,500/s (what a debug build processes; a
    // faster flood only overflows the transport's shared input queue, which drops the second
    // trunk's messages too — fair queueing per source is the transport's part of issue 13),
    // bounded in count and time.
    let refused = Arc::new(AtomicU64::new(0));
    let (sent, flood_time) = {
        let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
        let sock = UdpSocket::bind(FLOOD_FROM).expect("bind flood socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let reader = {
            let (sock, refused, stop) = (
                sock.try_clone().expect("clone socket"),
                refused.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(n) = sock.recv(&mut buf)
                        && buf[..n].starts_with(b"SIP/2.0 503")
                    {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let start = Instant::now();
        let deadline = start + Duration::from_secs(90);
        let mut sent = 0u32;
        while sent < FLOOD && Instant::now() < deadline {
            for _ in 0..100 {
                let media_lines = if sent < FLOOD / 2 { 0 } else { 12 };
                // A full socket buffer drops the datagram; the flood goes on.
                let _ = sock.send_to(invite(sent, media_lines).as_bytes(), SBC_INSIDE);
                sent += 1;
            }
            thread::sleep(Duration::from_millis(40));
        }
        let flood_time = start.elapsed();
        // Let the SBC work through its queue before the reader stops.
        thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let _ = reader.join();
        (sent, flood_time)
    };
    let _ = sampler.join();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "flood: {sent} INVITEs in {flood_time:?}; {} answered 503; RSS {baseline} kB before, \
         {peak} kB at most",
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(sent, FLOOD);

    // Bounded memory: the old unlimited core kept every call (two transactions each, 32 s).
    assert!(
        peak < baseline + 150 * 1024,
        "RSS grew from {baseline} kB to {peak} kB"
    );
    // The limits and caps held, and said so.
    let trunk_cps = metric(
        &lab,
        "sbc_calls_admission_rejected_total{direction=\"outbound\",limit=\"trunk_max_cps\"}",
    );
    let trunk_calls = metric(
        &lab,
        "sbc_calls_admission_rejected_total{direction=\"outbound\",limit=\"trunk_max_calls\"}",
    );
    assert!(
        trunk_cps + trunk_calls > 10_000.0,
        "refusals counted: {trunk_cps} + {trunk_calls}"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 10_000,
        "503s reached the PBX"
    );
    let server = metric(&lab, "sbc_sip_transactions{kind=\"server\"}");
    let client = metric(&lab, "sbc_sip_transactions{kind=\"client\"}");
    assert!(
        server + client <= 20_000.0,
        "{server} + {client} transactions"
    );
    assert!(metric(&lab, "sbc_sip_stored_bytes") <= f64::from(64u32 << 20));
    let active = metric(&lab, "sbc_calls_active{direction=\"outbound\"}");
    assert!(
        active <= 500.0,
        "{active} outbound calls: the trunk's default limit"
    );

    // The other trunk's calls, placed during the flood, all completed.
    let mut uac = uac;
    let mut uas = uas;
    let a = uac.wait_timeout(Duration::from_secs(120));
    let b = uas.wait_timeout(Duration::from_secs(30));
    assert!(
        a.is_some_and(|s| s.success()) && b.is_some_and(|s| s.success()),
        "second trunk's calls: uac {a:?}, uas {b:?}; {}; {}; kernel: {}",
        series(&lab, "sbc_sip_dropped_total"),
        series(&lab, "sbc_calls_admission_rejected_total"),
        String::from_utf8_lossy(
            &Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.lab.sbc,
                    "sh",
                    "-c",
                    "grep ^Udp: /proc/net/snmp"
                ])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
    );
    assert!(
        metric(&lab, "sbc_calls_answered_total{direction=\"inbound\"}") >= 20.0,
        "inbound calls answered"
    );
}
