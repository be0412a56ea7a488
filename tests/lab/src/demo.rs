//! The demo: the lab, the real `sbc` on the shipped configuration adjusted to the lab, SIPp as
//! the PBX and as the carrier placing calls both ways with real RTP (the caller plays SIPp's
//! G.711 pcap, the callee echoes it), and a metrics snapshot every second. `cargo xtask demo`
//! prints the snapshots; a test runs a short version and checks the outcome. Everything it
//! starts is stopped by PID and the lab is removed when it returns, also on error.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use crate::{
    http,
    lab::Lab,
    netns::{self, NetnsError},
    process::Owned,
    sipp::{self, Step},
};

/// The RTP the callers play (shipped with Debian's sip-tester).
pub const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
const ADMIN_IN_NS: &str = "127.0.0.1:8080";

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `sbc` binary.
    pub sbc_bin: PathBuf,
    /// How long to place calls.
    pub duration: Duration,
    /// New calls per second in each direction.
    pub rate: f64,
    /// Length of each call, seconds.
    pub call_seconds: u32,
    /// Use the XDP fast path (`media.xdp = "auto"`), else userspace only.
    pub xdp: bool,
    /// Forward this root-namespace address to the SBC's admin API (for curl, Prometheus).
    pub admin_forward: Option<SocketAddr>,
}

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Lab set-up failed.
    #[error("lab: {0}")]
    Lab(#[from] NetnsError),
    /// A program could not be started or failed at once.
    #[error("{0}")]
    Start(String),
}

/// What the SBC's metrics said at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Time since the calls started.
    pub elapsed: Duration,
    /// Calls started, PBX → carrier.
    pub outbound_started: f64,
    /// Calls started, carrier → PBX.
    pub inbound_started: f64,
    /// Calls answered (both directions).
    pub answered: f64,
    /// Calls in progress.
    pub active: f64,
    /// Ended calls by reason (`bye`, `rejected`, `timeout`, …).
    pub ended: Vec<(String, f64)>,
    /// RTP packets forwarded by XDP.
    pub xdp_packets: f64,
    /// RTP packets forwarded by the userspace relay.
    pub userspace_packets: f64,
    /// Free relay port pairs (both sides).
    pub ports_free: f64,
    /// Media sessions.
    pub media_sessions: f64,
}

impl Snapshot {
    fn from_metrics(text: &str, elapsed: Duration) -> Self {
        let mut ended: Vec<(String, f64)> = Vec::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("sbc_calls_ended_total{"))
        {
            if let (Some(reason), Some(v)) = (label(line, "reason"), value(line)) {
                match ended.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += v,
                    None => ended.push((reason, v)),
                }
            }
        }
        Self {
            elapsed,
            outbound_started: sum(text, "sbc_calls_started_total", "direction=\"outbound\""),
            inbound_started: sum(text, "sbc_calls_started_total", "direction=\"inbound\""),
            answered: sum(text, "sbc_calls_answered_total", ""),
            active: sum(text, "sbc_calls_active", ""),
            ended,
            xdp_packets: sum(text, "sbc_xdp_packets_total", "outcome=\"redirected\""),
            userspace_packets: sum(text, "sbc_media_userspace_packets_total", ""),
            ports_free: sum(text, "sbc_media_ports_free", ""),
            media_sessions: sum(text, "sbc_media_sessions", ""),
        }
    }

    /// Calls that ended other than by a normal BYE.
    pub fn failed(&self) -> f64 {
        // fold from +0.0: an empty f64 `sum` is -0.0, which prints as "-0".
        self.ended
            .iter()
            .filter(|(r, _)| r != "bye")
            .fold(0.0, |acc, (_, n)| acc + n)
    }
}

/// Sum of the samples of metric `name` whose labels contain `filter`.
fn sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(filter)
        })
        .filter_map(value)
        .sum()
}

fn value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

/// Runs the demo until `opts.duration` has passed or `stop` is set, calling `on_tick` with a
/// snapshot about every second; returns the last snapshot, taken after the calls drained.
pub fn run(
    opts: &Options,
    stop: &AtomicBool,
    mut on_tick: impl FnMut(&Snapshot),
) -> Result<Snapshot, DemoError> {
    let lab = Lab::up("demo")?;
    let instance = format!("demo{}", lab.id.replace('x', ""));
    prepare_links(&lab)?;
    let mut owned: Vec<Owned> = Vec::new();
    if opts.xdp {
        // Native redirect into a veth needs a program on the receiving end too.
        for (ns, ifname) in [(&lab.pbx, "pbx0"), (&lab.carrier, "car0")] {
            owned.push(spawn(
                "xdp pass",
                Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(&opts.sbc_bin)
                    .args(["xdp", "pass", ifname]),
            )?);
        }
    }
    let config = std::env::temp_dir().join(format!("{instance}.toml"));
    let log = std::env::temp_dir().join(format!("{instance}.log"));
    std::fs::write(&config, config_text(&instance, opts.xdp))
        .map_err(|e| DemoError::Start(format!("writing {}: {e}", config.display())))?;
    let _cleanup = Cleanup(vec![config.clone()]);
    let log_file = std::fs::File::create(&log)
        .map_err(|e| DemoError::Start(format!("creating {}: {e}", log.display())))?;
    // nsenter keeps the host's /sys (and bpffs) visible, unlike `ip netns exec`.
    let mut sbc = spawn(
        "sbc",
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.sbc))
            .arg(&opts.sbc_bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("SBC_LOG", "warn")
            .stderr(Stdio::from(log_file)),
    )?;
    wait_ready(&lab.sbc, &mut sbc)?;

    let forward_stop = Arc::new(AtomicBool::new(false));
    let forwarder = match opts.admin_forward {
        Some(addr) => Some(forward(addr, lab.sbc.clone(), forward_stop.clone())?),
        None => None,
    };

    let calls = ((opts.duration.as_secs_f64() * opts.rate).ceil() as u64)
        .max(1)
        .to_string();
    // `-r <n> -rp <ms>`: n calls per period; a 10 s period expresses fractional rates.
    let per_period = ((opts.rate * 10.0).round() as u64).max(1).to_string();
    let limit = (opts.timeout_secs()).to_string();
    let caller = sipp::scenario(
        "demo-caller",
        true,
        &[
            sipp::answered_caller(),
            vec![
                Step::PlayPcap { path: PCAP },
                Step::Pause {
                    ms: opts.call_seconds * 1000,
                },
            ],
            sipp::hang_up(true).to_vec(),
        ]
        .concat(),
    );
    let caller_xml = sipp::write_scenario("demo-caller", &caller);
    let sipp_cmd = |ns: &str, args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "sipp", "-nostdin", "-timeout", &limit])
            .args(args);
        c
    };
    // Callees: SIPp's built-in UAS, echoing the RTP it receives back through the relay.
    owned.push(spawn(
        "sipp carrier uas",
        &mut sipp_cmd(
            &lab.carrier,
            &[
                "-sn",
                "uas",
                "-rtp_echo",
                "-i",
                "198.18.2.2",
                "-p",
                "5060",
                "-mi",
                "198.18.2.2",
                "-mp",
                "6000",
            ],
        ),
    )?);
    owned.push(spawn(
        "sipp pbx uas",
        &mut sipp_cmd(
            &lab.pbx,
            &[
                "-sn",
                "uas",
                "-rtp_echo",
                "-i",
                "198.18.1.2",
                "-p",
                "5060",
                "-mi",
                "198.18.1.2",
                "-mp",
                "6000",
            ],
        ),
    )?);
    thread::sleep(Duration::from_millis(300));
    let scenario = caller_xml.path().display().to_string();
    let caller_args = |ip: &'static str, dest: &'static str, number: &'static str| {
        vec![
            "-sf".to_owned(),
            scenario.clone(),
            "-i".into(),
            ip.into(),
            "-p".into(),
            "5062".into(),
            "-mi".into(),
            ip.into(),
            "-mp".into(),
            "6100".into(),
            "-s".into(),
            number.into(),
            "-m".into(),
            calls.clone(),
            "-r".into(),
            per_period.clone(),
            "-rp".into(),
            "10000".into(),
            dest.into(),
        ]
    };
    for (ns, ip, dest, number) in [
        (&lab.pbx, "198.18.1.2", "198.18.1.1:5060", "15551234567"),
        (&lab.carrier, "198.18.2.2", "198.18.2.1:5060", "4930123456"),
    ] {
        let args = caller_args(ip, dest, number);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        owned.push(spawn("sipp caller", &mut sipp_cmd(ns, &args))?);
    }

    let started = Instant::now();
    let mut last = Snapshot::default();
    // Place calls for `duration`, then let them drain (bounded).
    let drain_until = opts.duration + Duration::from_secs(u64::from(opts.call_seconds) + 10);
    while started.elapsed() < drain_until && !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(1000));
        if let Some(text) = scrape(&lab.sbc) {
            last = Snapshot::from_metrics(&text, started.elapsed());
            on_tick(&last);
            let placed = last.outbound_started + last.inbound_started;
            let all = 2.0 * calls.parse::<f64>().unwrap_or(0.0);
            if started.elapsed() > opts.duration && placed >= all && last.active == 0.0 {
                break;
            }
        }
        if !sbc.running() {
            return Err(DemoError::Start(format!(
                "sbc exited; see {}",
                log.display()
            )));
        }
    }
    if let Some(text) = scrape(&lab.sbc) {
        last = Snapshot::from_metrics(&text, started.elapsed());
    }
    for p in owned.iter().rev() {
        p.signal(Signal::SIGTERM);
    }
    sbc.signal(Signal::SIGTERM);
    let _ = sbc.wait_timeout(Duration::from_secs(5));
    // A stopped sbc deliberately leaves its pinned fast path in bpffs (media survives
    // restarts); the demo is over, so remove it.
    let _ = Command::new(&opts.sbc_bin)
        .args(["xdp", "detach", "--instance", &instance])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    forward_stop.store(true, Ordering::Relaxed);
    if let Some(h) = forwarder {
        let _ = h.join();
    }
    drop(owned);
    let _ = std::fs::remove_file(&log);
    Ok(last)
}

impl Options {
    fn timeout_secs(&self) -> u64 {
        self.duration.as_secs() + u64::from(self.call_seconds) + 30
    }
}

struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn spawn(what: &str, cmd: &mut Command) -> Result<Owned, DemoError> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            DemoError::Start(format!(
                "cannot start {what}: {e} (run `cargo xtask setup`)"
            ))
        })?;
    let mut owned = Owned::new(what, child);
    thread::sleep(Duration::from_millis(100));
    if !owned.running() {
        return Err(DemoError::Start(format!("{what} exited at once")));
    }
    Ok(owned)
}

/// Forwarding on the SBC's media interfaces (bpf_fib_lookup needs it) and full UDP checksums
/// from the peers (as a real NIC would send them).
fn prepare_links(lab: &Lab) -> Result<(), DemoError> {
    for ifname in ["in0", "out0"] {
        let key = format!("net.ipv4.conf.{ifname}.forwarding=1");
        run_ok(Command::new("ip").args(["netns", "exec", &lab.sbc, "sysctl", "-qw", &key]))?;
    }
    for (ns, ifname) in [(&lab.pbx, "pbx0"), (&lab.carrier, "car0")] {
        run_ok(
            Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"]),
        )?;
    }
    Ok(())
}

fn run_ok(cmd: &mut Command) -> Result<(), DemoError> {
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(DemoError::Start(format!("{cmd:?} failed")))
    }
}

/// The shipped default's structure with the lab's addresses.
fn config_text(instance: &str, xdp: bool) -> String {
    let xdp = if xdp { "auto" } else { "off" };
    format!(
        r#"# Written by the demo: config/sbc.toml adjusted to the lab.
[general]
instance = "{instance}"
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
xdp = "{xdp}"
interfaces = ["in0", "out0"]
[admin]
listen = "{ADMIN_IN_NS}"
"#
    )
}

fn scrape(sbc_ns: &str) -> Option<String> {
    let _inside = netns::enter(sbc_ns).ok()?;
    let addr = ADMIN_IN_NS.parse().ok()?;
    http::get(addr, "/metrics")
        .filter(|r| r.status == 200)
        .map(|r| r.body)
}

fn wait_ready(sbc_ns: &str, sbc: &mut Owned) -> Result<(), DemoError> {
    for _ in 0..100 {
        let ready = {
            let _inside = netns::enter(sbc_ns)?;
            ADMIN_IN_NS
                .parse()
                .ok()
                .and_then(|a| http::get(a, "/readyz"))
                .is_some_and(|r| r.status == 200)
        };
        if ready {
            return Ok(());
        }
        if !sbc.running() {
            return Err(DemoError::Start("sbc exited during start-up".into()));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(DemoError::Start("sbc not ready within 10 s".into()))
}

/// Forwards TCP connections from `addr` (root namespace) to the admin API inside `sbc_ns`.
fn forward(
    addr: SocketAddr,
    sbc_ns: String,
    stop: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<()>, DemoError> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| DemoError::Start(format!("cannot listen on {addr} for the admin API: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| DemoError::Start(e.to_string()))?;
    Ok(thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => {
                    let ns = sbc_ns.clone();
                    thread::spawn(move || proxy(client, &ns));
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }))
}

fn proxy(client: TcpStream, sbc_ns: &str) {
    let upstream = {
        let Ok(_inside) = netns::enter(sbc_ns) else {
            return;
        };
        let Ok(a) = ADMIN_IN_NS.parse::<SocketAddr>() else {
            return;
        };
        TcpStream::connect_timeout(&a, Duration::from_secs(2))
    };
    let Ok(upstream) = upstream else { return };
    let _ = client.set_nonblocking(false);
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c, mut u) = (client, upstream);
    let t = thread::spawn(move || copy(&mut c2, &mut u2));
    copy(&mut u, &mut c);
    let _ = t.join();
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_the_metrics_it_shows() {
        let text = "sbc_calls_started_total{direction=\"outbound\"} 3\n\
                    sbc_calls_started_total{direction=\"inbound\"} 2\n\
                    sbc_calls_active{direction=\"outbound\"} 1\n\
                    sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"} 2\n\
                    sbc_calls_ended_total{direction=\"inbound\",reason=\"bye\"} 2\n\
                    sbc_calls_ended_total{direction=\"inbound\",reason=\"timeout\"} 1\n\
                    sbc_xdp_packets_total{outcome=\"redirected\"} 500\n\
                    sbc_xdp_packets_total{outcome=\"rx\"} 900\n";
        let s = Snapshot::from_metrics(text, Duration::ZERO);
        assert_eq!(
            (s.outbound_started, s.inbound_started, s.active),
            (3.0, 2.0, 1.0)
        );
        assert_eq!(
            s.ended,
            vec![("bye".to_owned(), 4.0), ("timeout".to_owned(), 1.0)]
        );
        assert_eq!((s.xdp_packets, s.failed()), (500.0, 1.0));
    }
}
