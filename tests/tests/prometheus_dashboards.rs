//! The dashboard and the alert rules against what the SBC really exports: the real `sbc` in the
//! lab carries SIPp calls both ways, a real Prometheus (Debian package, on the sbc namespace's
//! loopback, with the bearer token) scrapes it and loads the rules, and every dashboard and rule
//! expression is evaluated through Prometheus's HTTP API. Each must be valid, reference only
//! metrics the SBC exports, and the core panels must return data. `promtool check metrics`
//! must pass on the SBC's output and `promtool check rules` on the rule file.

mod media_common;

use sbc_lab::sipp::run_args as sipp;
use std::{
    collections::BTreeSet,
    io::Write,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use nix::sys::signal::Signal;
use sbc_e2e::{http, netns, process::Owned};
use serde_json::Value;

const TOKEN: &str = "prometheus-scrape-token-0123";
const PROMETHEUS: &str = "127.0.0.1:9090";

/// Panels that must show data after a few calls (the rest may be legitimately empty, e.g. XDP
/// share without XDP or rejected requests when none were malformed).
const CORE_PANELS: [&str; 18] = [
    "Call attempts per second (CPS)",
    "Active calls",
    "ASR per trunk",
    "ACD (average call duration)",
    "PDD (post-dial delay), p50 / p95",
    "Responses by class",
    "Requests by method",
    "Retransmissions and transactions",
    "Packets per second by path",
    "Streams by path, sessions",
    "Relay ports free",
    "SIP dropped by reason",
    "Bans",
    "Admission control rejections",
    "PBX digest authentication",
    "Trunk registration state",
    "Trunk failovers",
    "Trunk digest authentication",
];

fn calls(lab: &MediaLab, inbound: bool, count: &str, hold_ms: &str) {
    let (uas_ns, uas_ip, uac_ns, uac_ip, sbc) = if inbound {
        (
            &lab.lab.pbx,
            "198.18.1.2",
            &lab.lab.carrier,
            "198.18.2.2",
            "198.18.2.1:5060",
        )
    } else {
        (
            &lab.lab.carrier,
            "198.18.2.2",
            &lab.lab.pbx,
            "198.18.1.2",
            "198.18.1.1:5060",
        )
    };
    let uas = sipp(
        uas_ns,
        &["-sn", "uas", "-i", uas_ip, "-p", "5060", "-m", count],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        uac_ns,
        &[
            "-sn",
            "uac",
            "-i",
            uac_ip,
            "-p",
            "5060",
            "-s",
            "4930123456",
            "-m",
            count,
            "-r",
            "10",
            "-d",
            hold_ms,
            sbc,
        ],
    );
    for (mut p, what) in [(uac, "uac"), (uas, "uas")] {
        let st = p
            .wait_timeout(Duration::from_secs(90))
            .unwrap_or_else(|| panic!("SIPp {what} did not finish"));
        assert!(st.success(), "SIPp {what} failed: {st}");
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prom_get(lab: &MediaLab, path: &str) -> Option<Value> {
    let _in = netns::enter(&lab.lab.sbc).expect("enter sbc netns");
    let r = http::get(PROMETHEUS.parse().expect("literal"), path)?;
    serde_json::from_str(&r.body).ok()
}

fn query(lab: &MediaLab, expr: &str) -> Value {
    prom_get(
        lab,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )
    .unwrap_or_else(|| panic!("Prometheus unreachable for {expr}"))
}

/// The metric names an expression refers to: identifiers with the SBC's or the process
/// collector's prefix (label names and values never carry those prefixes).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("sbc_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Exported metric families, from the `# TYPE` lines of `/metrics`.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn is_exported(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|b| families.contains(b)))
}

#[test]
fn dashboard_and_rules_evaluate_against_a_live_sbc() {
    if !sbc_e2e::require_root("prometheus_dashboards") {
        return;
    }
    let root = sbc_e2e::workspace_root();
    let rules = root.join("dashboards/sbc-alerts.rules.yml");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("dashboards/sbc-overview.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let st = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .stdout(Stdio::null())
        .status()
        .expect("promtool (Debian prometheus; cargo xtask setup)");
    assert!(st.success(), "promtool check rules");

    let lab = MediaLab::start_admin(
        "prm",
        "xdp = \"off\"",
        &format!("token = \"{TOKEN}\""),
        Some(TOKEN),
    );
    // A second trunk whose proxy is an unused address in the lab's carrier network: it
    // registers (and fails) and is pinged (and goes down), so the registration and health
    // series the trunk panels and rules query exist. A third one is given by name, resolved
    // through a name server on the SBC namespace's own loopback where nothing listens: its
    // lookups fail (never leaving the namespace) and the DNS series exist. Calls still use
    // the first trunk.
    let r = lab
        .request(
            "PATCH",
            "/api/v1/config",
            Some(
                r#"{"trunk":[{"name":"carrier","proxy":"198.18.2.2:5060"},
                    {"name":"silent","proxy":"198.18.2.9:5060","username":"u","password":"p",
                     "register":true,"options_interval_s":1},
                    {"name":"byname","proxy":"carrier.lab.invalid:5060"}],
                    "dns":{"servers":["127.0.0.1:53"],"timeout_ms":200,"refresh_s":1}}"#,
            ),
        )
        .expect("admin API");
    assert_eq!(r.status, 200, "PATCH trunks: {}", r.body);
    let dir = TempDir::new(&lab.instance);
    let dir = &dir.0;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: sbc\n    authorization:\n      credentials: {TOKEN}\n    \
             static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            media_common::ADMIN
        ),
    )
    .expect("write prometheus.yml");
    let prometheus = Command::new("ip")
        .args(["netns", "exec", &lab.lab.sbc, "prometheus"])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus (Debian package; cargo xtask setup)");
    let mut prometheus = Owned::new("prometheus", prometheus);
    wait_for(&lab, "up{job=\"sbc\"} == 1", "Prometheus scraping the SBC");

    // Traffic: calls both ways, a garbage datagram (a drop) and a request from a source the
    // ACL does not know (drops by reason).
    calls(&lab, true, "3", "500");
    calls(&lab, false, "4", "3000");
    {
        let s = lab.socket(true, "198.18.1.2:0");
        s.send_to(b"\x00\x01 not sip", "198.18.1.1:5060")
            .expect("send garbage");
        // A request with a malformed Request-URI: answered 400 statelessly (rejected).
        s.send_to(
            b"OPTIONS bad^uri SIP/2.0\r\n\
              Via: SIP/2.0/UDP 198.18.1.2:5099;branch=z9hG4bKbad\r\n\
              From: <sip:a@198.18.1.2>;tag=1\r\nTo: <sip:b@198.18.1.1>\r\n\
              Call-ID: bad-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
              Content-Length: 0\r\n\r\n",
            "198.18.1.1:5060",
        )
        .expect("send malformed request");
    }
    thread::sleep(Duration::from_secs(3));

    // promtool check metrics on the SBC's own output.
    let text = lab.request("GET", "/metrics", None).expect("metrics").body;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let families = exported(&text);

    // Every dashboard expression.
    let mut exprs = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().expect("expr");
            exprs.push((p["title"].as_str().unwrap_or("").to_owned(), e.to_owned()));
        }
    }
    assert!(exprs.len() > 20, "dashboard has its panels");
    let mut core_with_data = BTreeSet::new();
    for (title, expr) in &exprs {
        let e = expr.replace("$__rate_interval", "30s");
        for name in metric_names(&e) {
            assert!(
                is_exported(&name, &families),
                "{title}: `{name}` is not exported"
            );
        }
        let v = query(&lab, &e);
        assert_eq!(v["status"], "success", "{title}: {e}: {v}");
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            core_with_data.insert(title.clone());
        }
    }
    for title in CORE_PANELS {
        assert!(exprs.iter().any(|(t, _)| t == title), "no panel `{title}`");
        assert!(
            core_with_data.contains(title),
            "core panel `{title}` has no data"
        );
    }

    // Every rule: valid, on exported metrics, loaded and evaluated by Prometheus.
    let text_rules = std::fs::read_to_string(&rules).expect("rules");
    let rule_exprs = rule_expressions(&text_rules);
    assert_eq!(rule_exprs.len(), 17, "{rule_exprs:?}");
    for e in &rule_exprs {
        for name in metric_names(e) {
            assert!(
                is_exported(&name, &families),
                "rule `{e}`: `{name}` is not exported"
            );
        }
        let v = query(&lab, e);
        assert_eq!(v["status"], "success", "{e}: {v}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = prom_get(&lab, "/api/v1/rules").expect("rules API");
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated =
            rules.len() == rule_exprs.len() && rules.iter().all(|r| r["health"] == "ok");
        if evaluated {
            break;
        }
        assert!(Instant::now() < deadline, "rules not all evaluated ok: {v}");
        thread::sleep(Duration::from_millis(500));
    }

    prometheus.signal(Signal::SIGTERM);
    let _ = prometheus.wait_timeout(Duration::from_secs(10));
}

/// The `expr:` values of a rule file (block scalars with `|` or single-line values).
fn rule_expressions(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let indent = line.len() - line.trim_start().len();
            if rest.trim() == "|" {
                let mut e = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    e.push_str(lines[i].trim());
                    e.push(' ');
                    i += 1;
                }
                out.push(e.trim().to_owned());
                continue;
            }
            out.push(rest.trim().to_owned());
        }
        i += 1;
    }
    out
}

fn wait_for(lab: &MediaLab, expr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = prom_get(
            lab,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )
        .is_some_and(|v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: timed out");
        thread::sleep(Duration::from_millis(300));
    }
}

/// Prometheus's configuration and data; removed on drop, also when the test fails.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(instance: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{instance}-prometheus"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create prometheus dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
