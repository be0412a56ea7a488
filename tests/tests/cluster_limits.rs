//! Three active SBC nodes on one Redis (issue 19, `[state.cluster]`, docs/scaling.md): a
//! trunk's `max_calls` holds for the three together. The PBX spreads its calls over the
//! three nodes (its outbound-proxy list: one SIPp caller per node), each node alone stays
//! under the limit, yet no more than `MAX` calls are up at once in all; the rest get the
//! configured refusal (503) and are counted. Then Redis dies: every node falls back to its
//! local share (`fallback_percent`), says so in `sbc_cluster_fallback`. Before that, bans
//! are shared (`share_bans`): a scanner banned by one node is dropped by the others.
//!
//! Lab: the usual pbx/sbc/carrier namespaces (node 0 is the lab's SBC, 198.18.x.1) plus two
//! SBC namespaces (198.18.x.12, .13); the pbx and the carrier each get a bridge joining their
//! links to all three nodes. Redis runs on a unix socket in a temporary directory. Everything
//! the test starts is ended by PID and removed on drop, also when it fails.
//!
//! `SBC_E2E_CLUSTER_OFF=1` leaves `[state.cluster]` out of the nodes' configurations: the test
//! must then fail (each node admits `MAX` on its own).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
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

const ADMIN: &str = "127.0.0.1:8080";
/// The trunk's `max_calls`, for all nodes together.
const MAX: u32 = 6;
/// Calls the PBX sends to each node (each node alone would admit them all: 5 < 6).
const PER_NODE: u32 = 5;
/// How long an admitted call stays up (all calls arrive within about half a second).
const HOLD_MS: u32 = 5000;
/// `[state.cluster] fallback_percent`: the local share is ceil(6 × 34 %) = 3.
const FALLBACK_PERCENT: u32 = 34;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(args: &[&str]) {
    netns::ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
}

/// One SBC node: its namespace, addresses and process (killed by PID on drop).
struct Node {
    ns: String,
    inside: String,
    sbc: Option<Owned>,
}

impl Node {
    fn start(&mut self, config: &Path) {
        let sbc = sbc_e2e::start_sbc_in(&self.ns, config, "info", || {
            self.request("GET", "/readyz")
                .is_some_and(|r| r.status == 200)
        });
        self.sbc = Some(sbc);
    }

    fn request(&self, method: &str, path: &str) -> Option<http::Response> {
        let _in = netns::enter(&self.ns).expect("enter sbc netns");
        http::request(ADMIN.parse().expect("literal"), method, path, None)
    }

    fn metrics(&self) -> String {
        self.request("GET", "/metrics")
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// The sum of every series of `name` whose labels contain `label` ("" for any).
    fn metric_sum(&self, name: &str, label: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// The node's call counters that are not zero (for a failure's message).
    fn nonzero_calls_metrics(&self) -> String {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("sbc_calls_") || l.starts_with("sbc_cluster_"))
            .filter(|l| !l.contains("_bucket"))
            .filter(|l| l.rsplit_once(' ').is_some_and(|(_, v)| v != "0"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn calls_up(&self) -> u32 {
        let Some(r) = self.request("GET", "/api/v1/calls") else {
            return 0;
        };
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        v["calls"]
            .as_array()
            .map_or(0, |c| u32::try_from(c.len()).unwrap_or(u32::MAX))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut sbc) = self.sbc.take() {
            sbc.signal(Signal::SIGKILL);
            let _ = sbc.wait_timeout(Duration::from_secs(5));
        }
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

/// Two more SBC namespaces; the pbx's and the carrier's links become bridges reaching all
/// three nodes (node 0 keeps the lab's .1 addresses).
fn three_node_topology(lab: &Lab, extra: &[&Netns]) {
    for (peer, peer_if, peer_ip) in [
        (&lab.pbx, "pbx0", "198.18.1.2/24"),
        (&lab.carrier, "car0", "198.18.2.2/24"),
    ] {
        ip(&["-n", peer, "addr", "flush", "dev", peer_if]);
        ip(&["-n", peer, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", peer, "link", "set", peer_if, "master", "br0"]);
        ip(&["-n", peer, "addr", "add", peer_ip, "dev", "br0"]);
        ip(&["-n", peer, "link", "set", "br0", "up"]);
    }
    for (k, ns) in extra.iter().enumerate() {
        let host = 12 + k;
        for (peer, side, net) in [
            (&lab.pbx, "in0", "198.18.1"),
            (&lab.carrier, "out0", "198.18.2"),
        ] {
            let port = format!("ton{host}");
            ip(&[
                "link",
                "add",
                &port,
                "netns",
                peer,
                "type",
                "veth",
                "peer",
                "name",
                side,
                "netns",
                ns.name(),
            ]);
            ip(&["-n", peer, "link", "set", &port, "master", "br0"]);
            ip(&["-n", peer, "link", "set", &port, "up"]);
            ip(&["-n", ns.name(), "link", "set", side, "up"]);
            ip(&[
                "-n",
                ns.name(),
                "addr",
                "add",
                &format!("{net}.{host}/24"),
                "dev",
                side,
            ]);
        }
    }
}

fn sbc_config(dir: &Path, node: &str, host: &str, redis: &Path, cluster: bool) -> PathBuf {
    let path = dir.join(format!("{node}.toml"));
    let cluster = if cluster {
        format!(
            "[state.cluster]\nsync_ms = 50\ngrant_ttl_ms = 1000\nheadroom = 2\n\
             fallback_percent = {FALLBACK_PERCENT}\ntimeout_ms = 200\n"
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"[general]
instance = "{node}"
[inside]
udp = ["198.18.1.{host}:5060"]
media_address = "198.18.1.{host}"
[outside]
udp = ["198.18.2.{host}:5060"]
media_address = "198.18.2.{host}"
[pbx]
address = "198.18.1.2:5060"
allow = ["198.18.1.0/24"]
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
max_calls = {MAX}
[media]
interfaces = ["in0", "out0"]
xdp = "off"
timeout_s = 30
[admin]
listen = "{ADMIN}"
[state]
redis = "unix://{}"
node = "{node}"
{cluster}"#,
        redis.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_redis(dir: &Path) -> (Owned, PathBuf) {
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
    let owned = Owned::new("redis-server", child);
    wait_until("redis-server up", Duration::from_secs(10), || {
        socket.exists()
    });
    (owned, socket)
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

/// The PBX's call: answered, hung up by the PBX after `HOLD_MS`.
fn caller() -> Vec<Step> {
    let mut s = sipp::answered_caller();
    s.extend(sipp::ending(true, Some(HOLD_MS)));
    s
}

/// A call that must be refused with 503 (ACKed like any non-2xx final).
fn refused_caller() -> Vec<Step> {
    vec![
        Step::Invite { sdp: true },
        Step::Recv {
            code: 100,
            optional: true,
        },
        Step::Recv {
            code: 503,
            optional: false,
        },
        Step::AckNon2xx,
    ]
}

#[test]
fn three_nodes_share_a_trunks_max_calls_through_redis() {
    if !sbc_e2e::require_root("cluster_limits") {
        return;
    }
    let shared = std::env::var_os("SBC_E2E_CLUSTER_OFF").is_none();
    let dir = TempDir(std::env::temp_dir().join(format!("sbc-cl-e2e-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let (mut redis, socket) = start_redis(&dir.0);
    let lab = Lab::up("cl").expect("lab up");
    let extra = [
        Netns::new("clb").expect("netns of node 1"),
        Netns::new("clc").expect("netns of node 2"),
    ];
    three_node_topology(&lab, &[&extra[0], &extra[1]]);
    let tag = lab.id.clone();
    let mut nodes: Vec<Node> = [
        (lab.sbc.clone(), "1"),
        (extra[0].name().to_owned(), "12"),
        (extra[1].name().to_owned(), "13"),
    ]
    .into_iter()
    .enumerate()
    .map(|(k, (ns, host))| {
        let mut node = Node {
            ns,
            inside: format!("198.18.1.{host}:5060"),
            sbc: None,
        };
        let config = sbc_config(&dir.0, &format!("{tag}-{k}"), host, &socket, shared);
        node.start(&config);
        node
    })
    .collect();

    if shared {
        // Every node renews its grant before the load (they start one after the other).
        wait_until("every node holds a grant", Duration::from_secs(5), || {
            nodes
                .iter()
                .all(|n| n.metric_sum("sbc_cluster_syncs_total", "outcome=\"ok\"") >= 2.0)
        });
    }

    let callee = sipp::write_scenario(&format!("{tag}-callee"), &{
        let mut s = sipp::answered_callee();
        s.extend(sipp::answer_bye());
        sipp::scenario("carrier", false, &s)
    });
    let caller_xml = sipp::write_scenario(
        &format!("{tag}-caller"),
        &sipp::scenario("pbx", true, &caller()),
    );
    let total = PER_NODE * 3;
    let _carrier = sipp::run(
        &lab.carrier,
        callee.path(),
        "198.18.2.2:5060",
        None,
        &["-m", &total.to_string()],
    );
    thread::sleep(Duration::from_millis(300));
    // The PBX spreads its calls over the three nodes: one caller per node, 10 calls/s each.
    let started = Instant::now();
    let callers: Vec<Owned> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            sipp::run(
                &lab.pbx,
                caller_xml.path(),
                &format!("198.18.1.2:{}", 5071 + k),
                Some(&n.inside),
                &["-m", &PER_NODE.to_string(), "-r", "10"],
            )
        })
        .collect();

    // The most calls up at once, over all nodes, while the calls are held.
    let mut peak = 0;
    let mut per_node = Vec::new();
    while started.elapsed() < Duration::from_millis(u64::from(HOLD_MS) - 1500) {
        let up: Vec<u32> = nodes.iter().map(Node::calls_up).collect();
        let sum = up.iter().sum::<u32>();
        if sum > peak {
            peak = sum;
            per_node = up;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // Still full: one more call to node 0 gets the configured refusal.
    let probe_xml = sipp::write_scenario(
        &format!("{tag}-probe"),
        &sipp::scenario("probe", true, &refused_caller()),
    );
    let probe = sipp::run(
        &lab.pbx,
        probe_xml.path(),
        "198.18.1.2:5080",
        Some(&nodes[0].inside),
        &[],
    );
    let probe_ok = probe_result(probe);
    let refused: f64 = nodes
        .iter()
        .map(|n| {
            n.metric_sum(
                "sbc_calls_admission_rejected_total",
                "limit=\"trunk_max_calls\"",
            )
        })
        .sum();
    eprintln!(
        "cluster (shared = {shared}): peak {peak} calls up {per_node:?} of {total} offered, \
         max_calls {MAX}; {refused} refused (trunk_max_calls)"
    );
    assert!(
        peak <= MAX,
        "the trunk's max_calls ({MAX}) held across nodes: {peak} up {per_node:?}"
    );
    assert!(
        peak + 1 >= MAX,
        "the nodes together used the trunk's places: only {peak} of {MAX} up {per_node:?}"
    );
    assert!(probe_ok, "a call over the shared limit gets 503");
    // Every offered call was either up at the peak or refused (and counted), plus the probe.
    let refused = u32::try_from(refused as u64).unwrap_or(u32::MAX);
    // Seen once in CI: 7 of 10. What every node counted tells whether the rest were refused
    // under another limit, or came up and ended before the peak was sampled.
    let breakdown = || {
        nodes
            .iter()
            .map(|n| n.nonzero_calls_metrics())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert_eq!(
        refused,
        total - peak + 1,
        "refusals counted in sbc_calls_admission_rejected_total; per node:\n{}",
        breakdown()
    );
    for c in callers {
        // Refused calls fail the callers' runs: only wait for them to end.
        let mut c = c;
        let _ = c.wait_timeout(Duration::from_secs(20));
    }
    wait_until("calls ended", Duration::from_secs(10), || {
        nodes.iter().all(|n| n.calls_up() == 0)
    });

    // Measured: one renewal's latency, and what the grants cost in Redis.
    let (sum, count) = nodes.iter().fold((0.0, 0.0), |(s, c), n| {
        (
            s + n.metric_sum("sbc_cluster_sync_seconds_sum", ""),
            c + n.metric_sum("sbc_cluster_sync_seconds_count", ""),
        )
    });
    eprintln!(
        "grant renewal mean {:.2} ms over {count} renewals; MEMORY USAGE of the trunk's hash {} B",
        sum / count * 1000.0,
        redis_cli(&socket, &["MEMORY", "USAGE", "sbc:cluster:calls:carrier"])
    );

    // Shared bans: a scanner (an unknown address on the PBX's LAN) floods node 0 and is
    // banned there; nodes 1 and 2 install the ban from Redis and drop what it sends them.
    ip(&[
        "-n",
        &lab.pbx,
        "addr",
        "add",
        &format!("{SCANNER}/24"),
        "dev",
        "br0",
    ]);
    scan(&lab.pbx, &nodes[0].inside, 0..300);
    wait_until("node 0 banned the scanner", Duration::from_secs(5), || {
        nodes[0].metric_sum("sbc_bans_active", "") >= 1.0
    });
    let spread = wait_until(
        "nodes 1 and 2 banned the scanner from Redis",
        Duration::from_secs(5),
        || {
            nodes[1..].iter().all(|n| {
                n.metric_sum("sbc_cluster_bans_total", "result=\"installed\"") >= 1.0
                    && n.metric_sum("sbc_bans_active", "") >= 1.0
            })
        },
    );
    let banned = |n: &Node| n.metric_sum("sbc_sip_dropped_total", "reason=\"banned\"");
    let before = banned(&nodes[1]);
    scan(&lab.pbx, &nodes[1].inside, 300..305);
    wait_until(
        "node 1 drops the scanner's messages as banned",
        Duration::from_secs(3),
        || banned(&nodes[1]) >= before + 5.0,
    );
    assert_eq!(
        nodes[0].metric_sum("sbc_cluster_bans_total", "result=\"published\""),
        1.0,
        "node 0 published its ban once"
    );
    assert_eq!(
        nodes[0].metric_sum("sbc_cluster_bans_total", "result=\"installed\""),
        0.0,
        "node 0's own ban coming back from Redis is not installed again"
    );
    eprintln!("shared ban: on the other nodes {spread:?} after node 0's");

    // An operator lifts the ban on node 0: the other nodes lift their copies too, and node 1
    // answers the scanner again instead of dropping it.
    let lifted = nodes[0]
        .request("DELETE", &format!("/api/v1/bans/{SCANNER}"))
        .map(|r| r.status);
    assert_eq!(lifted, Some(204), "node 0 lifts the ban");
    let took = wait_until(
        "nodes 1 and 2 lift the scanner's ban from Redis",
        Duration::from_secs(5),
        || {
            nodes[1..].iter().all(|n| {
                n.metric_sum("sbc_cluster_bans_total", "result=\"lifted\"") >= 1.0
                    && n.metric_sum("sbc_bans_active", "") == 0.0
            })
        },
    );
    assert_eq!(
        nodes[0].metric_sum("sbc_cluster_bans_total", "result=\"lift_published\""),
        1.0,
        "node 0 published the lift once"
    );
    let before = banned(&nodes[1]);
    scan(&lab.pbx, &nodes[1].inside, 305..308);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        banned(&nodes[1]),
        before,
        "node 1 no longer drops the scanner as banned"
    );
    eprintln!("lifted ban: on the other nodes {took:?} after the operator's DELETE");

    // Redis dies: every node admits its local share alone and says so.
    redis.signal(Signal::SIGKILL);
    let _ = redis.wait_timeout(Duration::from_secs(5));
    let share = (MAX * FALLBACK_PERCENT).div_ceil(100);
    let took = wait_until(
        "every node on its local share",
        Duration::from_secs(5),
        || {
            nodes.iter().all(|n| {
                n.metric_sum("sbc_cluster_fallback", "") == 1.0
                    && n.metric_sum("sbc_cluster_trunk_grant", "trunk=\"carrier\"")
                        == f64::from(share)
            })
        },
    );
    eprintln!("fallback to the local share ({share}) {took:?} after Redis died");
    for n in &mut nodes {
        assert!(
            n.sbc.as_mut().is_some_and(Owned::running),
            "sbc still running"
        );
    }
}

/// An unknown source on the PBX's LAN (allowed by the ACL, no configured peer).
const SCANNER: &str = "198.18.1.66";

/// Sends OPTIONS numbered `range` from [`SCANNER`] in namespace `ns` to `to`, back to back.
fn scan(ns: &str, to: &str, range: std::ops::Range<u32>) {
    let _in = netns::enter(ns).expect("enter the scanner's netns");
    let socket = std::net::UdpSocket::bind(format!("{SCANNER}:0")).expect("scanner socket");
    let port = socket.local_addr().expect("local address").port();
    for k in range {
        let options = format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {SCANNER}:{port};branch=z9hG4bKscan{k}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:scan@{SCANNER}>;tag=s{k}\r\n\
             To: <sip:{to}>\r\n\
             Call-ID: scan-{k}@{SCANNER}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        socket
            .send_to(options.as_bytes(), to)
            .expect("send OPTIONS");
    }
}

/// Whether the probe got its 503 (SIPp exits 0 when the scenario completed).
fn probe_result(mut p: Owned) -> bool {
    p.wait_timeout(Duration::from_secs(10))
        .is_some_and(|s| s.success())
}
