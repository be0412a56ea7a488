//! `cargo xtask demo`: sets up, builds, and runs `sbc_lab::demo` with a live terminal summary.

use std::{
    io::{IsTerminal, Write},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// Runs the demo; see `sbc_lab::demo`.
pub fn run(
    duration: u64,
    rate: f64,
    call_seconds: u32,
    xdp: bool,
    admin: std::net::SocketAddr,
) -> Result<()> {
    if !(0.05..=50.0).contains(&rate) {
        bail!("--rate must be between 0.05 and 50 calls per second per direction");
    }
    crate::setup::run(false)?;
    crate::cargo(&["build", "--release", "--package", "sbc", "--bin", "sbc"])?;
    let sbc_bin = crate::root().join("target/release/sbc");
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())
        .context("SIGINT handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .context("SIGTERM handler")?;
    let opts = sbc_lab::demo::Options {
        sbc_bin,
        duration: Duration::from_secs(duration),
        rate,
        call_seconds,
        xdp,
        admin_forward: Some(admin),
    };
    println!(
        "demo: lab up, SBC starting (XDP {}), calls both ways at {rate}/s for {duration} s",
        if xdp { "on" } else { "off" }
    );
    println!(
        "demo: admin API and metrics on http://{admin}/ (e.g. curl http://{admin}/metrics); Ctrl-C stops"
    );
    let tty = std::io::stdout().is_terminal();
    let spinner = ['|', '/', '-', '\\'];
    let mut n = 0usize;
    let last = sbc_lab::demo::run(&opts, &stop, |s| {
        n += 1;
        let total = Duration::from_secs(duration);
        let pct = (s.elapsed.as_secs_f64() / total.as_secs_f64() * 100.0).min(100.0);
        let cps = (s.outbound_started + s.inbound_started) / s.elapsed.as_secs_f64().max(1.0);
        let ended: Vec<String> = s.ended.iter().map(|(r, v)| format!("{r}={v}")).collect();
        let media = s.xdp_packets + s.userspace_packets;
        let xdp_share = if media > 0.0 { s.xdp_packets / media * 100.0 } else { 0.0 };
        let line = format!(
            "{} {:>5.1}s {:>3.0}% | calls up {:>3} | out {} in {} | {:.1} cps | answered {} | ended {} | media pkts xdp {} user {} ({:.0}% XDP) | ports free {}",
            spinner[n % 4], s.elapsed.as_secs_f64(), pct, s.active, s.outbound_started, s.inbound_started,
            cps, s.answered, if ended.is_empty() { "-".into() } else { ended.join(",") },
            s.xdp_packets, s.userspace_packets, xdp_share, s.ports_free
        );
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else if n.is_multiple_of(5) {
            println!("{line}");
        }
    })
    .context("demo failed")?;
    println!();
    println!(
        "demo: done. calls placed {} (out {}, in {}), answered {}, not ended by BYE {}, RTP via XDP {}, via userspace {}. Lab removed.",
        last.outbound_started + last.inbound_started,
        last.outbound_started,
        last.inbound_started,
        last.answered,
        last.failed(),
        last.xdp_packets,
        last.userspace_packets
    );
    Ok(())
}
