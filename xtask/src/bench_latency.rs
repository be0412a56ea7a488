//! `cargo xtask bench latency`: one-way media latency through the SBC's relay, XDP fast path vs
//! userspace, on the lab. A relay session is set up through the admin API (as the call layer
//! would), both peers latch, then timestamped RTP packets go from the pbx namespace to the
//! carrier namespace; both read the same CLOCK_MONOTONIC, so the difference is the one-way delay
//! (veth + relay). Bounded: 2,000 packets at 1,000 packets/s per mode.

use std::{
    fmt::Write as _,
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::time::{ClockId, clock_gettime};
use sbc_lab::{http, lab::Lab, netns, process::Owned};

const PACKETS: u64 = 2000;
const ADMIN: &str = "127.0.0.1:8080";

fn mono_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// Runs both modes and writes `bench/results/latency-<date>.md`.
pub fn latency(root: &Path) -> Result<()> {
    crate::cargo(&["build", "--release", "--package", "sbc", "--bin", "sbc"])?;
    let sbc = root.join("target/release/sbc");
    let mut rows = Vec::new();
    for xdp in [true, false] {
        let (p50, p99, xdp_pkts) = one_mode(&sbc, xdp)?;
        eprintln!(
            "bench latency: xdp={xdp}: p50 {p50:.1} µs, p99 {p99:.1} µs (XDP redirected {xdp_pkts})"
        );
        rows.push((xdp, p50, p99, xdp_pkts));
    }
    let mut md = String::from("# Media latency (`cargo xtask bench latency`)\n\n");
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%MZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "Machine: 2 vCPUs, Linux {kernel}; date {date}. One relay session (set up through the admin API), both peers latched; {PACKETS} RTP packets at 1,000/s from the pbx namespace to the carrier namespace through the SBC's namespace, each carrying a CLOCK_MONOTONIC timestamp; one-way delay = receive time − send time (veth hops included).\n"
    );
    let _ = writeln!(
        md,
        "| path | p50 (µs) | p99 (µs) | packets redirected by XDP |\n| --- | ---: | ---: | ---: |"
    );
    for (xdp, p50, p99, n) in &rows {
        let _ = writeln!(
            md,
            "| {} | {p50:.1} | {p99:.1} | {n} |",
            if *xdp {
                "XDP fast path"
            } else {
                "userspace relay"
            }
        );
    }
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let day = date.get(..10).unwrap_or("unknown").to_owned();
    std::fs::write(dir.join(format!("latency-{day}.md")), &md)?;
    println!("{md}");
    Ok(())
}

fn one_mode(sbc: &Path, xdp: bool) -> Result<(f64, f64, u64)> {
    let lab = Lab::up("blat").context("lab up (needs root)")?;
    let instance = format!("lat{}", lab.id.replace('x', ""));
    for ifname in ["in0", "out0"] {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &lab.sbc,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{ifname}.forwarding=1"),
        ]))?;
    }
    let mut owned = Vec::new();
    for (ns, ifname) in [(&lab.pbx, "pbx0"), (&lab.carrier, "car0")] {
        run(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"]))?;
        let c = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(sbc)
            .args(["xdp", "pass", ifname])
            .stdout(Stdio::null())
            .spawn()?;
        owned.push(Owned::new("xdp pass", c));
    }
    let cfg = std::env::temp_dir().join(format!("{instance}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[general]\ninstance = \"{instance}\"\n[log]\nlevel = \"error\"\n[inside]\nudp = [\"198.18.1.1:5060\"]\nmedia_address = \"198.18.1.1\"\n[outside]\nudp = [\"198.18.2.1:5060\"]\nmedia_address = \"198.18.2.1\"\n[pbx]\naddress = \"198.18.1.2:5060\"\nallow = [\"198.18.1.0/24\"]\n[[trunk]]\nname = \"carrier\"\nproxy = \"198.18.2.2:5060\"\n[media]\nxdp = \"{}\"\ninterfaces = [\"in0\", \"out0\"]\n[admin]\nlisten = \"{ADMIN}\"\n",
            if xdp { "auto" } else { "off" }
        ),
    )?;
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.sbc))
        .arg(sbc)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()?;
    let mut sbc_p = Owned::new("sbc", child);
    let admin = |method: &str, path: &str, body: Option<&str>| -> Option<http::Response> {
        let _in = netns::enter(&lab.sbc).ok()?;
        http::request(ADMIN.parse().ok()?, method, path, body)
    };
    let mut ready = false;
    for _ in 0..100 {
        if admin("GET", "/readyz", None).is_some_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        if !sbc_p.running() {
            bail!("sbc exited during start-up");
        }
        thread::sleep(Duration::from_millis(100));
    }
    if !ready {
        bail!("sbc not ready");
    }
    let offer = r#"{"from":"inside","streams":[{"addr":"198.18.1.2","rtp_port":40000}]}"#;
    let created = admin("POST", "/api/v1/media/sessions", Some(offer)).context("create session")?;
    let id = json_u64(&created.body, "session").context("session id")?;
    let answer = r#"{"from":"outside","streams":[{"addr":"198.18.2.2","rtp_port":40002}]}"#;
    admin("PUT", &format!("/api/v1/media/sessions/{id}"), Some(answer)).context("commit")?;
    let ports: Vec<u64> = created
        .body
        .split("\"rtp_port\":")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    let (Some(&in_port), Some(&out_port)) = (ports.first(), ports.get(1)) else {
        bail!("no relay ports in {}", created.body)
    };
    let inside: SocketAddr = format!("198.18.1.1:{in_port}").parse()?;
    let outside: SocketAddr = format!("198.18.2.1:{out_port}").parse()?;
    let pbx = {
        let _in = netns::enter(&lab.pbx)?;
        UdpSocket::bind("198.18.1.2:40000")?
    };
    let car = {
        let _in = netns::enter(&lab.carrier)?;
        UdpSocket::bind("198.18.2.2:40002")?
    };
    car.set_read_timeout(Some(Duration::from_millis(500)))?;
    // Latch both directions, then let the control plane install the XDP mappings.
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    for _ in 0..5 {
        pbx.send_to(&pkt, inside)?;
        car.send_to(&pkt, outside)?;
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(1500));
    let mut drain = [0u8; 2048];
    while car.recv(&mut drain).is_ok() {}
    let receiver = thread::spawn(move || {
        let mut delays = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = car.recv(&mut buf) {
            let now = mono_ns();
            if n >= 20 {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&buf[12..20]);
                delays.push(now.saturating_sub(u64::from_be_bytes(ts)) as f64 / 1000.0);
            }
        }
        delays
    });
    for seq in 0..PACKETS {
        pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        pkt[12..20].copy_from_slice(&mono_ns().to_be_bytes());
        pbx.send_to(&pkt, inside)?;
        thread::sleep(Duration::from_millis(1));
    }
    let mut delays = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    let media = admin("GET", "/api/v1/media", None)
        .map(|r| r.body)
        .unwrap_or_default();
    let redirected = json_u64(&media, "redirected").unwrap_or(0);
    admin("DELETE", &format!("/api/v1/media/sessions/{id}"), None);
    sbc_p.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = sbc_p.wait_timeout(Duration::from_secs(5));
    let _ = Command::new(sbc)
        .args(["xdp", "detach", "--instance", &instance])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&cfg);
    drop(owned);
    if delays.len() < (PACKETS as usize) * 9 / 10 {
        bail!("only {} of {PACKETS} packets arrived", delays.len());
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize];
    Ok((pct(0.5), pct(0.99), redirected))
}

fn json_u64(body: &str, key: &str) -> Option<u64> {
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    body[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn run(cmd: &mut Command) -> Result<()> {
    if !cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success()
    {
        bail!("{cmd:?} failed");
    }
    Ok(())
}
