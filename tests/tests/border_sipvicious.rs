//! SIPVicious (Debian package `sipvicious`) against both sides of the SBC from an outsider: a
//! namespace of its own, linked to the SBC's namespace, whose address is neither a trunk's nor
//! in the PBX allowlist. `svmap` (SIP device discovery), `svwar` (extension enumeration) and
//! `svcrack` (password guessing) run against the outside listener and against the inside one,
//! each bounded in time, and must learn nothing: no device, no extension, no password.
//!
//! The SBC's User-Agent denylist is emptied first: SIPVicious announces itself as
//! `friendly-scanner`, which the shipped denylist drops, but an attacker changes that string
//! in one line; the defences under test are the ones an attacker cannot rename around (ACLs,
//! no answers to sources that are not peers).

mod media_common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use media_common::MediaLab;
use sbc_e2e::{netns, process::Owned};

const OUTSIDER: &str = "198.18.3.2";
const OUTSIDE_LISTENER: &str = "198.18.2.1";
const INSIDE_LISTENER: &str = "198.18.1.1";
/// Longest any one tool may run before it is ended (each also gets `--maximumtime` or a small
/// range, so this is a backstop).
const TOOL_LIMIT: Duration = Duration::from_secs(90);

/// The outsider's namespace, linked to the SBC's by a veth (198.18.3.0/24), plus a HOME for
/// SIPVicious's session files; both removed on drop.
struct Outsider {
    ns: netns::Netns,
    home: PathBuf,
}

impl Outsider {
    fn new(lab: &MediaLab) -> Self {
        let ns = netns::Netns::new("svo").expect("outsider netns");
        let (o_if, s_if) = (netns::unique("svo"), netns::unique("svs"));
        netns::ip(&[
            "link",
            "add",
            &o_if,
            "netns",
            ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            &s_if,
            "netns",
            &lab.lab.sbc,
        ])
        .expect("veth to the SBC");
        ns.exec_ip(&["addr", "add", &format!("{OUTSIDER}/24"), "dev", &o_if])
            .expect("outsider address");
        ns.exec_ip(&["link", "set", &o_if, "up"]).expect("up");
        netns::ip(&[
            "-n",
            &lab.lab.sbc,
            "addr",
            "add",
            "198.18.3.1/24",
            "dev",
            &s_if,
        ])
        .expect("sbc address");
        netns::ip(&["-n", &lab.lab.sbc, "link", "set", &s_if, "up"]).expect("up");
        ns.exec_ip(&["route", "add", "default", "via", "198.18.3.1"])
            .expect("route");
        let home = std::env::temp_dir().join(netns::unique("svhome"));
        std::fs::create_dir(&home).expect("home");
        Self { ns, home }
    }

    /// Runs a SIPVicious tool in the outsider namespace; its whole output (stdout and stderr).
    fn run(&self, tool: &str, args: &[&str]) -> String {
        self.run_in(self.ns.name(), tool, args)
    }

    /// The same in namespace `ns`.
    fn run_in(&self, ns: &str, tool: &str, args: &[&str]) -> String {
        let out = self.home.join(format!("{tool}.out"));
        let file = std::fs::File::create(&out).expect("output file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, tool])
            .args(args)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {tool} (install sipvicious: cargo xtask setup): {e}")
            });
        let mut p = Owned::new(tool, child);
        if p.wait_timeout(TOOL_LIMIT).is_none() {
            eprintln!("{tool} ran past {TOOL_LIMIT:?}; ended");
        }
        drop(p);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        eprintln!("--- {tool} {args:?} in {ns}:\n{text}");
        text
    }
}

impl Drop for Outsider {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Whether a SIPVicious report table (printed only when something was found) is in `output`.
fn found(output: &str, header: &str) -> bool {
    output
        .lines()
        .any(|l| l.contains('|') && l.contains(header))
}

/// SIP datagrams the SBC received on `side` so far.
fn received(lab: &MediaLab, side: &str) -> f64 {
    let series = format!("sbc_sip_received_total{{side=\"{side}\",transport=\"udp\"}}");
    let body = lab
        .request("GET", "/metrics", None)
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Password list for svcrack: a few usual ones (the PBX has no account on the SBC to find).
fn dictionary(dir: &Path) -> PathBuf {
    let p = dir.join("passwords.txt");
    std::fs::write(&p, "100\n1234\n12345\npassword\nsecret\nadmin\n100100\n").expect("dictionary");
    p
}

#[test]
fn sipvicious_learns_nothing_from_either_side() {
    if !sbc_e2e::require_root("border_sipvicious") {
        return;
    }
    let lab = MediaLab::start("svc", "xdp = \"off\"");
    lab.json(
        "PATCH",
        "/api/v1/config",
        Some(r#"{"limits": {"user_agent_deny": []}}"#),
        200,
    );
    let outsider = Outsider::new(&lab);
    let dict = dictionary(&outsider.home);
    let dict = dict.to_str().expect("utf-8 path");
    let mut failures = Vec::new();
    for (side, target) in [("outside", OUTSIDE_LISTENER), ("inside", INSIDE_LISTENER)] {
        let out = outsider.run("svmap", &["-p5060", "-t", "0.05", target]);
        if found(&out, "SIP Device") {
            failures.push(format!("svmap found the {side} listener:\n{out}"));
        }
        // A bogus extension first (svwar's sanity check), then 100-199 with REGISTER and INVITE;
        // --force keeps it going when the sanity check gets no answer.
        for method in ["REGISTER", "INVITE"] {
            let out = outsider.run(
                "svwar",
                &[
                    "-p5060",
                    "-e100-199",
                    "-m",
                    method,
                    "--force",
                    "--maximumtime=30",
                    "-t",
                    "0.05",
                    target,
                ],
            );
            if found(&out, "Extension") {
                failures.push(format!(
                    "svwar ({method}) found extensions on the {side}:\n{out}"
                ));
            }
        }
        let out = outsider.run(
            "svcrack",
            &[
                "-p5060",
                "-u100",
                "-d",
                dict,
                "--maximumtime=30",
                "-t",
                "0.05",
                target,
            ],
        );
        if found(&out, "Password") {
            failures.push(format!("svcrack found a password on the {side}:\n{out}"));
        }
    }
    // The probes did arrive (a tool that cannot reach the SBC also learns nothing): at least
    // the first request of each of the four runs per side. The tools give up when the first
    // requests get no answer.
    for side in ["outside", "inside"] {
        let n = received(&lab, side);
        assert!(n >= 4.0, "only {n} datagrams reached the {side} listener");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Control: the same svmap from the PBX (an allowed source) does find the SBC, so the
    // tool works and the silence above is the SBC's doing.
    let control = outsider.run_in(
        &lab.lab.pbx,
        "svmap",
        &["-p5060", "-t", "0.05", INSIDE_LISTENER],
    );
    assert!(
        found(&control, "SIP Device"),
        "svmap from the PBX found nothing:\n{control}"
    );
    assert_eq!(
        lab.request("GET", "/readyz", None).map(|r| r.status),
        Some(200)
    );
}
