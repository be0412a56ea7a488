//! Calls survive a crash of the SBC (issue 19): with `[state]` in Redis, answered calls are
//! restored by the restarted process — a re-INVITE and the BYE from the PBX reach the carrier,
//! a BYE from the carrier reaches the PBX. And with Redis gone, calls go on and the failures
//! are counted. Each test runs its own `redis-server` on a unix socket in a temporary
//! directory (the SBC's namespace reaches it through the file system) and kills it by PID.

mod media_common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::{
    process::Owned,
    sipp::{self, Dir, Step},
};

const CALLS: &str = "10";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of the test's own (no persistence), killed by PID on drop.
struct Redis {
    _process: Owned,
    socket: PathBuf,
}

impl Redis {
    fn start(dir: &std::path::Path) -> Self {
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
        let process = Owned::new("redis-server", child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Self {
            _process: process,
            socket,
        }
    }

    fn state_toml(&self, node: &str) -> String {
        format!(
            "\n[state]\nredis = \"unix://{}\"\nnode = \"{node}\"\n",
            self.socket.display()
        )
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// The value of metric `series` (exact name with labels) in the SBC's exposition.
fn metric(lab: &MediaLab, series: &str) -> f64 {
    let body = lab.request("GET", "/metrics", None).expect("metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not exported"))
}

fn answered_callee(then: &[Step]) -> Vec<Step> {
    let mut s = sipp::answered_callee();
    s.extend_from_slice(then);
    s
}

fn answered_caller(then: &[Step]) -> Vec<Step> {
    let mut s = sipp::answered_caller();
    s.extend_from_slice(then);
    s
}

/// The caller of an answered call that hangs up after `ms`.
fn caller_hanging_up_after(ms: u32) -> Vec<Step> {
    answered_caller(&sipp::ending(true, Some(ms)))
}

/// A re-INVITE by the caller (CSeq `cseq`) putting the call on hold, and its ACK.
fn hold(cseq: u32) -> [Step; 4] {
    [
        Step::InDialog {
            method: "INVITE",
            cseq,
            sdp: Some(Dir::SendOnly),
            uac: true,
        },
        Step::Recv {
            code: 100,
            optional: true,
        },
        Step::Recv {
            code: 200,
            optional: false,
        },
        Step::Ack2xx { sdp: false, cseq },
    ]
}

/// Calls PBX → carrier: the carrier's SIPp (`carrier_args`) answers, then the PBX's
/// (`pbx_args`) calls through the SBC.
fn outbound(
    lab: &MediaLab,
    carrier_xml: &sipp::TempFile,
    pbx_xml: &sipp::TempFile,
    carrier_args: &[&str],
    pbx_args: &[&str],
) -> (Owned, Owned) {
    let carrier = sipp::run(
        &lab.lab.carrier,
        carrier_xml.path(),
        "198.18.2.2:5060",
        None,
        carrier_args,
    );
    thread::sleep(Duration::from_millis(300));
    let pbx = sipp::run(
        &lab.lab.pbx,
        pbx_xml.path(),
        "198.18.1.2:5070",
        Some("198.18.1.1:5060"),
        pbx_args,
    );
    (carrier, pbx)
}

/// Waits until `n` calls are up (the admin API's list).
fn wait_calls(lab: &MediaLab, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = lab.json("GET", "/api/v1/calls", None, 200);
        let up = calls["calls"]
            .as_array()
            .or_else(|| calls.as_array())
            .map_or(0, Vec::len);
        if up >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {up} of {n} calls up: {calls}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn answered_calls_survive_kill9_and_restart() {
    if !sbc_e2e::require_root("state_restart") {
        return;
    }
    let dir = temp_dir("sbc-state-e2e");
    let redis = Redis::start(&dir.0);
    let mut lab = MediaLab::start_with_sections("srs", "xdp = \"off\"", &redis.state_toml("srs"));

    // Phase 1: 10 calls PBX → carrier. After the restart the PBX re-INVITEs, then hangs up.
    let carrier_xml = sipp::write_scenario(
        "srs-carrier",
        &sipp::scenario(
            "carrier",
            false,
            &answered_callee(&[
                Step::RecvRequest { method: "INVITE" },
                Step::Respond {
                    code: 200,
                    reason: "OK",
                    sdp: Some(Dir::SendRecv),
                },
                Step::RecvRequest { method: "ACK" },
            ])
            .into_iter()
            .chain(sipp::answer_bye())
            .collect::<Vec<_>>(),
        ),
    );
    let pbx_xml = sipp::write_scenario(
        "srs-pbx",
        &sipp::scenario(
            "pbx",
            true,
            &answered_caller(
                &[
                    vec![Step::Pause { ms: 9000 }],
                    hold(2).to_vec(),
                    vec![
                        Step::InDialog {
                            method: "BYE",
                            cseq: 3,
                            sdp: None,
                            uac: true,
                        },
                        Step::Recv {
                            code: 200,
                            optional: false,
                        },
                    ],
                ]
                .concat(),
            ),
        ),
    );
    let (carrier, pbx) = outbound(
        &lab,
        &carrier_xml,
        &pbx_xml,
        &["-m", CALLS],
        &["-m", CALLS, "-r", "20"],
    );
    wait_calls(&lab, 10);
    // Let the writer catch up with the last answer, then crash.
    thread::sleep(Duration::from_millis(500));
    lab.kill9();
    let restart = Instant::now();
    lab.start_sbc();
    let restart_took = restart.elapsed();
    assert_eq!(
        metric(&lab, "sbc_state_restored_total{outcome=\"restored\"}"),
        10.0,
        "every call restored"
    );
    assert_eq!(
        metric(&lab, "sbc_state_restored_total{outcome=\"hung_up\"}"),
        0.0
    );
    eprintln!(
        "restart to ready: {restart_took:?}; load+restore: {} s",
        metric(&lab, "sbc_state_restore_seconds")
    );
    sipp::wait_ok(pbx, "PBX: re-INVITE and BYE after the restart");
    sipp::wait_ok(
        carrier,
        "carrier: re-INVITE and BYE relayed after the restart",
    );

    // Phase 2: 10 calls carrier → PBX; after the restart the carrier hangs up.
    let pbx_xml = sipp::write_scenario(
        "srs-pbx-in",
        &sipp::scenario("pbx-in", false, &answered_callee(&sipp::answer_bye())),
    );
    let carrier_xml = sipp::write_scenario(
        "srs-carrier-in",
        &sipp::scenario("carrier-in", true, &caller_hanging_up_after(9000)),
    );
    let pbx = sipp::run(
        &lab.lab.pbx,
        pbx_xml.path(),
        "198.18.1.2:5060",
        None,
        &["-m", CALLS],
    );
    thread::sleep(Duration::from_millis(300));
    let carrier = sipp::run_service(
        &lab.lab.carrier,
        carrier_xml.path(),
        "198.18.2.2:5060",
        Some("198.18.2.1:5060"),
        "4930123456",
        &["-m", CALLS, "-r", "20"],
    );
    wait_calls(&lab, 10);
    thread::sleep(Duration::from_millis(500));
    lab.kill9();
    lab.start_sbc();
    assert_eq!(
        metric(&lab, "sbc_state_restored_total{outcome=\"restored\"}"),
        10.0
    );
    sipp::wait_ok(carrier, "carrier: BYE after the restart");
    sipp::wait_ok(pbx, "PBX: the carrier's BYE relayed after the restart");
    // Every record went with its call.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(metric(&lab, "sbc_state_records"), 0.0);
}

#[test]
fn calls_go_on_when_redis_is_gone_and_failures_are_counted() {
    if !sbc_e2e::require_root("state_redis_down") {
        return;
    }
    let dir = temp_dir("sbc-state-e2e-down");
    let redis = Redis::start(&dir.0);
    let lab = MediaLab::start_with_sections("srd", "xdp = \"off\"", &redis.state_toml("srd"));
    let carrier_xml = sipp::write_scenario(
        "srd-carrier",
        &sipp::scenario("carrier", false, &sipp::answering_callee()),
    );
    let pbx_xml = sipp::write_scenario(
        "srd-pbx",
        &sipp::scenario("pbx", true, &caller_hanging_up_after(3000)),
    );
    let (carrier, pbx) = outbound(
        &lab,
        &carrier_xml,
        &pbx_xml,
        &["-m", "3"],
        &["-m", "3", "-r", "10"],
    );
    wait_calls(&lab, 3);
    assert_eq!(metric(&lab, "sbc_state_redis_up"), 1.0);
    drop(redis);
    sipp::wait_ok(pbx, "PBX: calls end normally without Redis");
    sipp::wait_ok(carrier, "carrier: BYE relayed without Redis");
    let failed = metric(&lab, "sbc_state_write_failures_total")
        + metric(&lab, "sbc_state_writes_dropped_total");
    assert!(failed >= 1.0, "lost writes counted: {failed}");
    assert_eq!(metric(&lab, "sbc_state_redis_up"), 0.0);
}

/// Media through a crash on the XDP path: the PBX (SIPp with `-rtp_echo`) echoes what the
/// carrier side sends, so every packet crosses the relay twice; the gap in the echoes around
/// `kill -9` and the restart is measured from their arrival times.
#[test]
fn media_gap_through_kill9_on_the_xdp_path() {
    if !sbc_e2e::require_root("state_media_gap") {
        return;
    }
    let dir = temp_dir("sbc-state-e2e-media");
    let redis = Redis::start(&dir.0);
    let mut lab = MediaLab::start_with_sections(
        "srm",
        "xdp = \"auto\"\ntimeout_s = 30",
        &redis.state_toml("srm"),
    );
    let carrier_xml = sipp::write_scenario(
        "srm-carrier",
        &sipp::scenario("carrier", false, &sipp::answering_callee()),
    );
    let pbx_xml = sipp::write_scenario(
        "srm-pbx",
        &sipp::scenario("pbx", true, &caller_hanging_up_after(12_000)),
    );
    let (carrier, pbx) = outbound(&lab, &carrier_xml, &pbx_xml, &[], &["-rtp_echo"]);
    wait_calls(&lab, 1);
    let ids = lab.json("GET", "/api/v1/media/sessions", None, 200);
    let id = ids[0].as_u64().expect("session id");
    let s = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
    let port = u16::try_from(
        s["streams"][0]["outside"]["rtp_port"]
            .as_u64()
            .expect("port"),
    )
    .expect("port");
    let relay: std::net::SocketAddr = format!("198.18.2.1:{port}").parse().expect("relay");
    let sock = lab.socket(false, "198.18.2.2:7100");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echoes = media_common::receiver(
        sock.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(20),
    );
    let sender = {
        let sock = sock.try_clone().expect("clone");
        thread::spawn(move || media_common::send_rtp(&sock, relay, 0, 350, 7))
    };
    thread::sleep(Duration::from_secs(2));
    lab.kill9();
    lab.start_sbc();
    sender.join().expect("sender");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = echoes.join().expect("receiver");
    let gap = got
        .at
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or_default();
    eprintln!(
        "media gap across kill -9 and restart (XDP path): {gap:?}; {} of 350 echoed",
        got.seqs.len()
    );
    assert!(got.seqs.len() >= 300, "only {} echoes", got.seqs.len());
    assert!(gap <= Duration::from_secs(1), "media gap {gap:?}");
    sipp::wait_ok(pbx, "PBX: BYE after the restart");
    sipp::wait_ok(carrier, "carrier: BYE relayed after the restart");
}
