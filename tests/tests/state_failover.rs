//! Active/standby pair (issue 19): two SBC nodes share a virtual address for SIP and media,
//! moved by keepalived (VRRP). `kill -9` of the active SBC → its keepalived sees the check
//! fail and gives the address up, the standby's keepalived takes it and calls the standby's
//! `POST /api/v1/state/takeover`, which moves the dead node's call records in Redis to the
//! standby and restores every call there: the media resumes at the same address and ports, and
//! a BYE from either side ends both legs. Then the other way round.
//!
//! Lab: the usual pbx/sbc/carrier namespaces plus a second SBC namespace; the pbx and the
//! carrier each get a bridge joining their links to both SBCs. Node A is 198.18.x.11, node B
//! 198.18.x.12, the virtual address 198.18.x.1 (both SBCs bind it: `ip_nonlocal_bind`).
//! Redis runs on a unix socket in a temporary directory (both namespaces reach it through the
//! file system); redis-server and both keepalived daemons are the test's own, ended by PID.

mod media_common;

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use sbc_e2e::{
    http,
    lab::Lab,
    netns::{self, Netns},
    process::Owned,
    sipp::{self, Step},
};
use serde_json::Value;

const ADMIN: &str = "127.0.0.1:8080";
const VIP_IN: &str = "198.18.1.1";
const VIP_OUT: &str = "198.18.2.1";
/// Calls up at each failover.
const CALLS: usize = 10;
/// `[state] takeover_token`: keepalived's notify carries it; the admin token alone does not
/// move a live node's calls.
const TAKEOVER_TOKEN: &str = "lab-takeover-token-0123";
/// RTP packets sent per call (20 ms apart: ~11 s).
const PACKETS: u16 = 550;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process ended by SIGTERM on drop (keepalived removes its addresses and ends its VRRP
/// child then); SIGKILL if it does not go within 5 s.
struct Daemon(Owned);

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.running() {
            self.0.signal(Signal::SIGTERM);
            if self.0.wait_timeout(Duration::from_secs(5)).is_none() {
                self.0.signal(Signal::SIGKILL);
            }
        }
    }
}

fn run(cmd: &mut Command, what: &str) {
    let ok = cmd
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{what}");
}

fn ip(args: &[&str]) {
    netns::ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
}

/// One SBC node of the pair: its namespace, configuration, process and keepalived.
struct Node {
    name: String,
    ns: String,
    config: PathBuf,
    sbc: Option<Owned>,
    keepalived: Option<Daemon>,
}

impl Node {
    fn start_sbc(&mut self) {
        let sbc = sbc_e2e::start_sbc_in(&self.ns, &self.config, "info", || {
            self.request("GET", "/readyz")
                .is_some_and(|r| r.status == 200)
        });
        self.sbc = Some(sbc);
    }

    fn kill9(&mut self) {
        if let Some(mut sbc) = self.sbc.take() {
            sbc.signal(Signal::SIGKILL);
            sbc.wait_timeout(Duration::from_secs(5))
                .expect("sbc gone after SIGKILL");
        }
    }

    /// keepalived in the node's namespace: VRRPv3 every 200 ms on in0, the virtual
    /// addresses on both sides, the SBC's /healthz as the check (a dead SBC → FAULT → the
    /// address goes), notify_master = the takeover.
    fn start_keepalived(&mut self, dir: &Path, priority: u8, router_id: u8) {
        let conf = dir.join(format!("{}-keepalived.conf", self.name));
        let text = format!(
            r#"global_defs {{
    router_id {name}
    vrrp_version 3
    script_user root
    vrrp_garp_master_repeat 2
}}
vrrp_script {name}_sbc {{
    script "/usr/bin/curl -sf -m 1 -o /dev/null http://{ADMIN}/healthz"
    interval 1
    fall 1
    rise 1
}}
vrrp_instance {name} {{
    state BACKUP
    nopreempt
    interface in0
    virtual_router_id {router_id}
    priority {priority}
    advert_int 0.2
    virtual_ipaddress {{
        {VIP_IN}/24 dev in0
        {VIP_OUT}/24 dev out0
    }}
    track_script {{
        {name}_sbc
    }}
    notify_master "/usr/bin/curl -sf -m 10 -H X-Takeover-Token:{TAKEOVER_TOKEN} -X POST http://{ADMIN}/api/v1/state/takeover"
}}
"#,
            name = self.name,
        );
        std::fs::write(&conf, text).expect("keepalived config");
        let pid = |what: &str| dir.join(format!("{}-{what}.pid", self.name));
        let log = std::fs::File::create(dir.join(format!("{}-keepalived.log", self.name)))
            .expect("keepalived log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "keepalived",
                "-n",
                "-l",
                "-P",
                "-G",
            ])
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(pid("keepalived"))
            .arg("-r")
            .arg(pid("vrrp"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("keepalived (Debian keepalived; cargo xtask setup)");
        self.keepalived = Some(Daemon(Owned::new("keepalived", child)));
    }

    fn holds_vip(&self) -> bool {
        netns::ip(&["-n", &self.ns, "-4", "addr", "show", "dev", "in0"])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{VIP_IN}/")))
    }

    fn request(&self, method: &str, path: &str) -> Option<http::Response> {
        let _in = netns::enter(&self.ns).expect("enter sbc netns");
        http::request(ADMIN.parse().expect("literal"), method, path, None)
    }

    /// `POST /api/v1/state/takeover` with `token` in `X-Takeover-Token`; the status.
    fn post_takeover(&self, token: Option<&str>) -> u16 {
        self.post_takeover_to("/api/v1/state/takeover", token)
    }

    fn post_takeover_to(&self, path: &str, token: Option<&str>) -> u16 {
        let _in = netns::enter(&self.ns).expect("enter sbc netns");
        let headers: Vec<(&str, &str)> =
            token.map(|t| ("X-Takeover-Token", t)).into_iter().collect();
        http::request_with(
            ADMIN.parse().expect("literal"),
            "POST",
            path,
            &headers,
            None,
        )
        .map_or(0, |r| r.status)
    }

    fn json(&self, path: &str) -> Value {
        let r = self
            .request("GET", path)
            .unwrap_or_else(|| panic!("{path}: admin API of {} unreachable", self.name));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }

    /// The value of metric `series` (exact name with labels); `None` if not reachable.
    fn metric(&self, series: &str) -> Option<f64> {
        let body = self.request("GET", "/metrics")?.body;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    fn calls_up(&self) -> usize {
        self.json("/api/v1/calls")["calls"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// The outside relay RTP port of every media session.
    fn outside_ports(&self) -> Vec<u16> {
        let ids = self.json("/api/v1/media/sessions");
        ids.as_array()
            .expect("session ids")
            .iter()
            .map(|id| {
                let id = id.as_u64().expect("id");
                let s = self.json(&format!("/api/v1/media/sessions/{id}"));
                u16::try_from(
                    s["streams"][0]["outside"]["rtp_port"]
                        .as_u64()
                        .expect("port"),
                )
                .expect("port")
            })
            .collect()
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Second SBC namespace and bridges: the pbx's and the carrier's links reach both nodes.
fn pair_topology(lab: &Lab, b: &Netns) {
    let b_ns = b.name();
    for (peer, peer_if, peer_ip, side, net) in [
        (&lab.pbx, "pbx0", "198.18.1.2/24", "in0", "198.18.1"),
        (&lab.carrier, "car0", "198.18.2.2/24", "out0", "198.18.2"),
    ] {
        ip(&["-n", peer, "addr", "flush", "dev", peer_if]);
        ip(&["-n", peer, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", peer, "link", "set", peer_if, "master", "br0"]);
        ip(&["-n", peer, "addr", "add", peer_ip, "dev", "br0"]);
        ip(&["-n", peer, "link", "set", "br0", "up"]);
        ip(&[
            "link", "add", "tob", "netns", peer, "type", "veth", "peer", "name", side, "netns",
            b_ns,
        ]);
        ip(&["-n", peer, "link", "set", "tob", "master", "br0"]);
        ip(&["-n", peer, "link", "set", "tob", "up"]);
        ip(&["-n", b_ns, "link", "set", side, "up"]);
        ip(&["-n", &lab.sbc, "addr", "flush", "dev", side]);
        ip(&[
            "-n",
            &lab.sbc,
            "addr",
            "add",
            &format!("{net}.11/24"),
            "dev",
            side,
        ]);
        ip(&[
            "-n",
            b_ns,
            "addr",
            "add",
            &format!("{net}.12/24"),
            "dev",
            side,
        ]);
    }
    for ns in [lab.sbc.as_str(), b_ns] {
        run(
            Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_nonlocal_bind=1",
            ]),
            "ip_nonlocal_bind",
        );
    }
}

fn sbc_config(dir: &Path, node: &str, peer: &str, redis: &Path) -> PathBuf {
    let path = dir.join(format!("{node}.toml"));
    let text = format!(
        r#"[general]
instance = "{node}"
[inside]
udp = ["{VIP_IN}:5060"]
media_address = "{VIP_IN}"
[outside]
udp = ["{VIP_OUT}:5060"]
media_address = "{VIP_OUT}"
[pbx]
address = "198.18.1.2:5060"
allow = ["198.18.1.0/24"]
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
[media]
interfaces = ["in0", "out0"]
xdp = "off"
timeout_s = 30
[admin]
listen = "{ADMIN}"
[state]
redis = "unix://{}"
node = "{node}"
peer = "{peer}"
takeover_token = "{TAKEOVER_TOKEN}"
peer_alive_ms = 600
"#,
        redis.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_redis(dir: &Path) -> (Daemon, PathBuf) {
    let socket = dir.join("redis.sock");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (Debian redis-server; cargo xtask setup)");
    let daemon = Daemon(Owned::new("redis-server", child));
    wait_until("redis-server up", Duration::from_secs(10), || {
        socket.exists()
    });
    (daemon, socket)
}

fn redis_cli(socket: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The callee of the carrier side: answers; hangs up itself after `bye_after_ms` when set,
/// else expects the BYE.
fn carrier_scenario(bye_after_ms: Option<u32>) -> Vec<Step> {
    let mut s = sipp::answered_callee();
    s.extend(sipp::ending(false, bye_after_ms));
    s
}

/// The PBX calling: hangs up itself after `bye_after_ms` when set, else expects the BYE.
fn pbx_scenario(bye_after_ms: Option<u32>) -> Vec<Step> {
    let mut s = sipp::answered_caller();
    s.extend(sipp::ending(true, bye_after_ms));
    s
}

/// What one failover showed.
struct Failover {
    /// From `kill -9` of the active SBC to the standby's completed takeover.
    takeover: Duration,
    /// What the standby reported the takeover itself took (claim + restore), seconds.
    takeover_s: f64,
    /// Largest gap between echoed RTP packets of any call.
    gap: Duration,
    /// Who held the registration lease right after the takeover.
    lease_after_takeover: String,
    /// Mean state write latency on the active node before the crash.
    write_latency: Duration,
    /// `MEMORY USAGE` of one call's record, bytes.
    record_bytes: String,
}

/// `CALLS` calls PBX → carrier through `active`, RTP both ways on each (the test sends from
/// the carrier side, SIPp echoes on the PBX side), then `kill -9` of `active`'s SBC: the
/// standby must take over every call; media must resume; `carrier_hangs_up` picks who sends
/// the BYE after the takeover.
fn failover(
    tag: &str,
    lab: &Lab,
    redis: &Path,
    active: &mut Node,
    standby: &Node,
    carrier_hangs_up: bool,
) -> Failover {
    assert!(active.holds_vip() && !standby.holds_vip());
    let bye_after = 10_000;
    let carrier_xml = sipp::write_scenario(
        &format!("{tag}-carrier"),
        &sipp::scenario(
            "carrier",
            false,
            &carrier_scenario(carrier_hangs_up.then_some(bye_after)),
        ),
    );
    let pbx_xml = sipp::write_scenario(
        &format!("{tag}-pbx"),
        &sipp::scenario(
            "pbx",
            true,
            &pbx_scenario((!carrier_hangs_up).then_some(bye_after)),
        ),
    );
    let n = CALLS.to_string();
    let carrier = sipp::run(
        &lab.carrier,
        carrier_xml.path(),
        "198.18.2.2:5060",
        None,
        &["-m", &n],
    );
    thread::sleep(Duration::from_millis(300));
    let pbx = sipp::run(
        &lab.pbx,
        pbx_xml.path(),
        "198.18.1.2:5070",
        Some(&format!("{VIP_IN}:5060")),
        &["-m", &n, "-r", "20", "-rtp_echo"],
    );
    wait_until(
        "calls up on the active node",
        Duration::from_secs(15),
        || active.calls_up() >= CALLS,
    );
    let ports = active.outside_ports();
    assert_eq!(ports.len(), CALLS, "one media session per call");

    // RTP from the carrier side to each call's relay port, echoed back by the PBX.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flows = Vec::new();
    let flows_started = Instant::now();
    for (i, port) in ports.iter().enumerate() {
        let local = format!("198.18.2.2:{}", 7100 + i);
        let sock = {
            let _in = netns::enter(&lab.carrier).expect("enter carrier netns");
            UdpSocket::bind(&local).expect("bind carrier RTP socket")
        };
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let relay: SocketAddr = format!("{VIP_OUT}:{port}").parse().expect("relay");
        let echoes = media_common::receiver(
            sock.try_clone().expect("clone"),
            stop.clone(),
            Duration::from_secs(30),
        );
        let ssrc = u32::try_from(i).expect("few calls") + 1;
        let sender = thread::spawn(move || media_common::send_rtp(&sock, relay, 0, PACKETS, ssrc));
        flows.push((sender, echoes));
    }
    // Let the writer catch up with the answers and the latches, then crash the active SBC.
    thread::sleep(Duration::from_secs(2));
    let takeovers_before = standby
        .metric("sbc_state_takeovers_total{outcome=\"ok\"}")
        .unwrap_or(0.0);
    let sum = active.metric("sbc_state_write_seconds_sum").unwrap_or(0.0);
    let count = active
        .metric("sbc_state_write_seconds_count")
        .unwrap_or(0.0);
    let write_latency = Duration::from_secs_f64(if count > 0.0 { sum / count } else { 0.0 });
    let records = redis_cli(redis, &["--scan", "--pattern", "sbc:*:call:*"]);
    assert_eq!(
        records.lines().count(),
        CALLS,
        "one record per call: {records}"
    );
    eprintln!(
        "{tag}: record writes before the crash: {:?} for {CALLS} calls",
        active.metric("sbc_state_writes_total{op=\"put\"}")
    );
    // The latches to the test's RTP sockets came without any SIP message: written too.
    for key in records.lines() {
        let rec = redis_cli(redis, &["HGET", key, "rec"]);
        assert!(
            rec.contains("\"198.18.2.2:710"),
            "the record holds the carrier side's latch: {rec}"
        );
    }
    let record_bytes = redis_cli(
        redis,
        &[
            "MEMORY",
            "USAGE",
            records.lines().next().unwrap_or_default(),
        ],
    );
    // The active node is alive: a takeover by the admin token alone is refused (403), and
    // with the takeover token too (409: the peer has calls and a fresh heartbeat).
    assert_eq!(
        standby.post_takeover(None),
        403,
        "takeover without its token"
    );
    assert_eq!(
        standby.post_takeover(Some(TAKEOVER_TOKEN)),
        409,
        "takeover of a live node with calls"
    );
    assert_eq!(active.calls_up(), CALLS, "the live node kept its calls");
    assert_eq!(
        redis_cli(
            redis,
            &[
                "--scan",
                "--pattern",
                &format!("sbc:{}:call:*", active.name)
            ]
        )
        .lines()
        .count(),
        CALLS,
        "its records stayed in its keyspace"
    );
    let crashed = Instant::now();
    active.kill9();
    let takeover = wait_until("the standby took over", Duration::from_secs(10), || {
        standby
            .metric("sbc_state_takeovers_total{outcome=\"ok\"}")
            .is_some_and(|v| v > takeovers_before)
    });
    let lease_after_takeover = redis_cli(redis, &["GET", "sbc:lease:register"]);
    assert!(standby.holds_vip(), "keepalived moved the address");
    assert!(!active.holds_vip(), "the failed node gave it up");
    let takeover_s = standby
        .metric("sbc_state_takeover_seconds")
        .expect("takeover seconds");
    assert_eq!(
        standby.calls_up(),
        CALLS,
        "every call continues on the standby"
    );
    let mut gap = Duration::ZERO;
    for (sender, echoes) in flows {
        sender.join().expect("sender");
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let got = echoes.join().expect("receiver");
        let call_gap = got
            .at
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or_default();
        let last = got.at.last().copied().unwrap_or_default();
        eprintln!(
            "{tag}: {} of {PACKETS} echoed, largest gap {call_gap:?}, last at {last:?}",
            got.seqs.len()
        );
        assert!(
            got.seqs.len() >= usize::from(PACKETS) / 2,
            "media resumed after the takeover: only {} echoes",
            got.seqs.len()
        );
        // Echoes go on after the takeover, not only up to the crash.
        let resumed = crashed.duration_since(flows_started) + takeover;
        assert!(
            last > resumed,
            "no echo after the takeover ({last:?} <= {resumed:?})"
        );
        gap = gap.max(call_gap);
    }
    let by = if carrier_hangs_up { "carrier" } else { "PBX" };
    sipp::wait_ok(
        pbx,
        &format!("{tag} PBX: calls continued, BYE from the {by}"),
    );
    sipp::wait_ok(
        carrier,
        &format!("{tag} carrier: calls continued, BYE from the {by}"),
    );
    wait_until("calls ended on the standby", Duration::from_secs(5), || {
        standby.calls_up() == 0
    });
    Failover {
        takeover,
        takeover_s,
        gap,
        lease_after_takeover,
        write_latency,
        record_bytes,
    }
}

#[test]
fn standby_takes_over_every_call_when_the_active_node_dies() {
    if !sbc_e2e::require_root("state_failover") {
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("sbc-ha-e2e-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let (_redis, socket) = start_redis(&dir.0);
    let lab = Lab::up("hf").expect("lab up");
    let b_ns = Netns::new("hfb").expect("netns of node B");
    pair_topology(&lab, &b_ns);
    let tag = lab.id.clone();
    let (a_name, b_name) = (format!("{tag}-a"), format!("{tag}-b"));
    let mut a = Node {
        config: sbc_config(&dir.0, &a_name, &b_name, &socket),
        name: a_name.clone(),
        ns: lab.sbc.clone(),
        sbc: None,
        keepalived: None,
    };
    let mut b = Node {
        config: sbc_config(&dir.0, &b_name, &a_name, &socket),
        name: b_name.clone(),
        ns: b_ns.name().to_owned(),
        sbc: None,
        keepalived: None,
    };
    a.start_sbc();
    b.start_sbc();
    a.start_keepalived(&dir.0, 150, 51);
    wait_until("node A holds the address", Duration::from_secs(10), || {
        a.holds_vip()
    });
    b.start_keepalived(&dir.0, 100, 51);
    // A's own takeover (nothing to take) made it the active one: it holds the lease.
    wait_until("node A holds the lease", Duration::from_secs(10), || {
        a.metric("sbc_state_registration_lease") == Some(1.0)
    });
    assert_eq!(b.metric("sbc_state_registration_lease"), Some(0.0));

    // A → B; the carrier hangs up after the takeover.
    let first = failover(&format!("{tag}-1"), &lab, &socket, &mut a, &b, true);
    // The lease follows once A's has run out in Redis (lease_s), not before: no double
    // registration.
    assert_eq!(
        first.lease_after_takeover, a_name,
        "the dead node's lease was still running at the takeover"
    );
    let lease_moved = wait_until("node B holds the lease", Duration::from_secs(20), || {
        b.metric("sbc_state_registration_lease") == Some(1.0)
    });

    // A comes back as the standby (nopreempt: B keeps the address); B → A, PBX hangs up.
    a.start_sbc();
    thread::sleep(Duration::from_secs(2));
    assert!(b.holds_vip() && !a.holds_vip(), "no preemption");
    let second = failover(&format!("{tag}-2"), &lab, &socket, &mut b, &a, false);

    for (n, f) in [(1, &first), (2, &second)] {
        eprintln!(
            "failover {n}: kill -9 → takeover done {:?} (claim+restore {:.1} ms), largest media \
             gap {:?}; state write mean {:?}; MEMORY USAGE of a record {} B",
            f.takeover,
            f.takeover_s * 1000.0,
            f.gap,
            f.write_latency,
            f.record_bytes
        );
        assert!(f.gap <= Duration::from_secs(2), "media gap {:?}", f.gap);
    }
    eprintln!("lease moved {lease_moved:?} after the first takeover");

    // Split brain: B comes back and is made active by force while A still believes it is
    // (both run, A keeps the address). B's takeover takes a newer epoch; A sees it and steps
    // down: fenced, no registration lease.
    b.start_sbc();
    wait_until("node A holds the lease", Duration::from_secs(20), || {
        a.metric("sbc_state_registration_lease") == Some(1.0)
    });
    assert_eq!(
        b.post_takeover_to("/api/v1/state/takeover?force=true", Some(TAKEOVER_TOKEN)),
        200,
        "a forced takeover"
    );
    let fenced = wait_until("node A stepped down", Duration::from_secs(5), || {
        a.metric("sbc_state_fenced") == Some(1.0)
            && a.metric("sbc_state_registration_lease") == Some(0.0)
    });
    assert_eq!(b.metric("sbc_state_fenced"), Some(0.0));
    eprintln!("split brain: the old active node stepped down {fenced:?} after the newer epoch");
    // And gives the address up: its /healthz fails, so its keepalived enters FAULT and B's
    // takes the address (B's own takeover then finds nothing left to claim).
    assert_eq!(
        a.request("GET", "/healthz").map(|r| r.status),
        Some(503),
        "a fenced node is not healthy"
    );
    let released = wait_until(
        "the fenced node gave the address to B",
        Duration::from_secs(10),
        || !a.holds_vip() && b.holds_vip(),
    );
    eprintln!("split brain: the address moved to the new active node {released:?} after fencing");
    assert_eq!(b.request("GET", "/healthz").map(|r| r.status), Some(200));
    assert_eq!(
        redis_cli(&socket, &["--scan", "--pattern", "sbc:*:call:*"]),
        "",
        "every record went with its call"
    );
    drop(a);
    drop(b);
}
