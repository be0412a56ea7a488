//! With `xdp = "off"` the userspace relay carries real RTP both ways between the pbx and the
//! carrier namespaces: packets arrive in order, from the SBC's relay addresses, and the PBX is
//! reached at its latched source although its SDP named an unreachable private address.

mod media_common;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    thread,
    time::Duration,
};

use media_common::{MediaLab, receiver, send_rtp};

const N: u16 = 150;

#[test]
fn userspace_relay_carries_rtp_both_ways_with_latching() {
    if !sbc_e2e::require_root("media_userspace") {
        return;
    }
    let lab = MediaLab::start("smu", "xdp = \"off\"\ntimeout_s = 30");
    assert!(
        lab.media()["xdp"]["state"] == "off",
        "xdp off reported: {}",
        lab.media()
    );
    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    // The PBX is "behind NAT": its SDP address is private and unreachable from the SBC. Its
    // media may latch because it comes from the address the PBX signals from (which the call
    // layer passes as the inside peer); a stranger's would not.
    let private: SocketAddr = "10.255.0.9:4000".parse().expect("literal");
    let (id, in_relay, out_relay) = lab.call_with_peers(
        private,
        "198.18.2.2:6000".parse().expect("literal"),
        r#"{"inside":"198.18.1.2","outside":"198.18.2.2","trunk":"carrier"}"#,
    );
    assert_eq!(in_relay.ip().to_string(), "198.18.1.1");
    assert_eq!(out_relay.ip().to_string(), "198.18.2.1");

    let stop = Arc::new(AtomicBool::new(false));
    let at_carrier = receiver(
        carrier.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(20),
    );
    let at_pbx = receiver(
        pbx.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(20),
    );
    // The PBX speaks first (that latches it), then both directions run concurrently.
    send_rtp(&pbx, in_relay, 0, 1, 0x1111);
    thread::sleep(Duration::from_millis(100));
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 1, N - 1, 0x1111))
    };
    send_rtp(&carrier, out_relay, 0, N, 0x2222);
    up.join().expect("sender");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got_carrier = at_carrier.join().expect("receiver");
    let got_pbx = at_pbx.join().expect("receiver");

    assert_eq!(
        got_carrier.seqs.len(),
        usize::from(N),
        "carrier got every packet"
    );
    assert_eq!(got_pbx.seqs.len(), usize::from(N), "pbx got every packet");
    assert!(got_carrier.in_order() && got_pbx.in_order(), "in order");
    assert!(
        got_carrier.sources.iter().all(|s| *s == out_relay),
        "rewritten to the outside relay"
    );
    assert!(
        got_pbx.sources.iter().all(|s| *s == in_relay),
        "rewritten to the inside relay"
    );

    let v = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
    let s = &v["streams"][0];
    assert_eq!(s["inside"]["latched"], "198.18.1.2:4000", "{v}");
    assert_eq!(s["outside"]["latched"], "198.18.2.2:6000", "{v}");
    assert_eq!(s["inside"]["userspace_packets"], u64::from(N));
    assert_eq!(s["outside"]["userspace_packets"], u64::from(N));
    assert_eq!(s["inside"]["rtp_lost"], 0);
    assert!(lab.userspace_packets() >= 2 * u64::from(N));

    lab.json("DELETE", &format!("/api/v1/media/sessions/{id}"), None, 204);
    assert_eq!(lab.media()["relay"]["sessions"], 0);
    lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 404);
}

/// When the SBC runs out of descriptors while ended streams' sockets are parked for reuse, new
/// streams still get their sockets (the parked ones are closed and the bind retried) and the
/// admin API keeps answering. Before the cache had a bound, a signaling benchmark at 2,000
/// calls/s parked 20,000 sockets: every later call got 503 and the admin API accepted nothing.
#[test]
fn parked_sockets_give_way_when_descriptors_run_out() {
    if !sbc_e2e::require_root("media_userspace") {
        return;
    }
    // A cache larger than the headroom left below (it is lowered at start to half the
    // descriptors the limit then leaves, thousands here).
    let lab = MediaLab::start(
        "smd",
        "xdp = \"off\"\ntimeout_s = 30\nrelay_idle_sockets = 100000",
    );
    let pbx: SocketAddr = "198.18.1.2:4000".parse().expect("literal");
    let carrier: SocketAddr = "198.18.2.2:6000".parse().expect("literal");
    let call = |lab: &MediaLab| {
        let (id, _, _) = lab.call(pbx, carrier);
        lab.json("DELETE", &format!("/api/v1/media/sessions/{id}"), None, 204);
    };
    // Warm up: the relay workers start (with their epoll and eventfd) on the first streams.
    for _ in 0..4 {
        call(&lab);
    }
    let pid = lab.sbc.as_ref().expect("sbc running").pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    // 40 descriptors of headroom: about ten streams' sockets (four each).
    let limit = format!("--nofile={}", open + 40);
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit {limit}");
    // Each call parks four more sockets; thirty calls need three times the headroom.
    for _ in 0..30 {
        call(&lab);
    }
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    let shed = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sbc_media_relay_idle_sockets_closed_total{reason=\"descriptors\"} ")
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(shed > 0, "parked sockets closed for descriptors");
    let open_now = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    assert!(
        open_now <= open + 40,
        "{open_now} descriptors under the limit"
    );
}
