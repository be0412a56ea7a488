//! Socketless media (issue 16): with XDP attached, a real SIPp call (PBX → SBC → carrier) whose
//! RTP and RTCP the XDP program latches and relays on its own. The SBC process holds no UDP
//! socket in the relay port range at any point of the call (its `/proc/<pid>/fd` sockets
//! against `/proc/<pid>/net/udp`); both parties get every packet of the other (RTP and RTCP)
//! with the relay as source; the peers' latches reach the admin view through the kernel's
//! latch events; a stranger on the carrier's network who aims at the call's relay port before
//! and after the latch, and at an unallocated relay port, gets nothing and is dropped in XDP
//! and counted (`drop_not_allowed`, `drop_strict_source`, `drop_unallocated`, folded into
//! `sbc_media_packets_dropped_total`). The userspace relay forwards nothing.

mod media_common;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use media_common::{MediaLab, receiver, rtp, send_rtp};
use sbc_e2e::{
    netns::ip,
    process::Owned,
    sipp::{self, TempFile},
};

const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 20_199;
/// RTP packets each party sends.
const N: u16 = 150;
const PBX_SIP: &str = "198.18.1.2:5060";
const CARRIER_SIP: &str = "198.18.2.2:5060";
const SBC_INSIDE_SIP: &str = "198.18.1.1:5060";
const PBX_RTP: &str = "198.18.1.2:4000";
const PBX_RTCP: &str = "198.18.1.2:4001";
const CARRIER_RTP: &str = "198.18.2.2:6000";
const CARRIER_RTCP: &str = "198.18.2.2:6001";
/// On the carrier's network but party to no call: neither an SDP address nor a signaling peer.
const STRANGER: &str = "198.18.2.66";

#[test]
fn sipp_call_is_latched_and_relayed_in_xdp_without_relay_sockets() {
    if !sbc_e2e::require_root("media_socketless") {
        return;
    }
    let lab = MediaLab::start(
        "sxs",
        &format!("xdp = \"auto\"\nport_min = {PORT_MIN}\nport_max = {PORT_MAX}\ntimeout_s = 30"),
    );
    assert_eq!(lab.media()["xdp"]["state"], "attached", "{}", lab.media());
    let sbc_pid = lab.sbc.as_ref().expect("sbc").pid();
    add_stranger_address(&lab);

    let pbx = lab.socket(true, PBX_RTP);
    let pbx_rtcp = lab.socket(true, PBX_RTCP);
    let carrier = lab.socket(false, CARRIER_RTP);
    let carrier_rtcp = lab.socket(false, CARRIER_RTCP);
    let stranger = lab.socket(false, &format!("{STRANGER}:4000"));

    let (mut caller, mut callee, _scenarios) = start_call(&lab);
    let (session, in_relay, out_relay) = lab.answered_session();
    let view_path = format!("/api/v1/media/sessions/{session}");
    let view = lab.json("GET", &view_path, None, 200);
    assert_eq!(view["streams"][0]["socketless"], true, "{view}");
    assert_relay_range_unbound(sbc_pid, "after the answer");

    // Before any latch: the stranger aims at the call's outside port and at a free one.
    let free = (PORT_MIN..PORT_MAX)
        .step_by(2)
        .find(|p| *p != in_relay.port() && *p != out_relay.port())
        .expect("a free pair");
    let before = counters(&lab);
    for seq in 0..20u16 {
        stranger.send_to(&rtp(seq, 0xbad), out_relay).expect("send");
        stranger
            .send_to(&rtp(seq, 0xbad), SocketAddr::new(out_relay.ip(), free))
            .expect("send");
    }
    thread::sleep(Duration::from_millis(200));
    let after = counters(&lab);
    assert!(
        delta(&before, &after, "drop_not_allowed") >= 20,
        "stranger before the latch: {after:?}"
    );
    assert!(
        delta(&before, &after, "drop_unallocated") >= 20,
        "unallocated port: {after:?}"
    );

    // RTP both ways: the first packets latch in the kernel.
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(30);
    let at_pbx = receiver(pbx.try_clone().expect("clone"), stop.clone(), limit);
    let at_carrier = receiver(carrier.try_clone().expect("clone"), stop.clone(), limit);
    let at_stranger = receiver(stranger.try_clone().expect("clone"), stop.clone(), limit);
    let user_before = lab.userspace_packets();
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, N, 0x1111_1111))
    };
    send_rtp(&carrier, out_relay, 0, N, 0x2222_2222);
    up.join().expect("PBX sender");

    // RTCP on the port above: relayed in XDP too (no socket to pass it to).
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    rr.extend_from_slice(&[0; 24]);
    pbx_rtcp
        .send_to(&rr, SocketAddr::new(in_relay.ip(), in_relay.port() + 1))
        .expect("send RTCP");
    let mut buf = [0u8; 256];
    let (n, from) = carrier_rtcp.recv_from(&mut buf).expect("RTCP relayed");
    assert_eq!(&buf[..n], rr.as_slice());
    assert_eq!(from, SocketAddr::new(out_relay.ip(), out_relay.port() + 1));

    // After the latch: the stranger is still dropped in XDP.
    let before = counters(&lab);
    for seq in 0..20u16 {
        stranger.send_to(&rtp(seq, 0xbad), out_relay).expect("send");
        stranger.send_to(&rtp(seq, 0xbad), in_relay).expect("send");
    }
    thread::sleep(Duration::from_millis(300));
    let after = counters(&lab);
    assert!(
        delta(&before, &after, "drop_strict_source") + delta(&before, &after, "drop_not_allowed")
            >= 40,
        "stranger after the latch: {after:?}"
    );
    assert_relay_range_unbound(sbc_pid, "during media");

    let view = lab.json("GET", &view_path, None, 200);
    let stream = &view["streams"][0];
    assert_eq!(
        stream["inside"]["latched"], PBX_RTP,
        "kernel latch seen: {view}"
    );
    assert_eq!(stream["outside"]["latched"], CARRIER_RTP, "{view}");
    assert_eq!(stream["xdp_mappings"], 4, "RTP and RTCP both ways: {view}");
    assert_eq!(
        lab.userspace_packets(),
        user_before,
        "the userspace relay forwarded nothing"
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metric(
            &metrics,
            "sbc_media_packets_dropped_total{reason=\"xdp_not_allowed\"}"
        ) >= 20
            && metric(
                &metrics,
                "sbc_media_packets_dropped_total{reason=\"xdp_unallocated\"}"
            ) >= 20,
        "drops in /metrics"
    );
    assert!(metric(&metrics, "sbc_media_xdp_latches_total") >= 3);

    let caller_status = caller.wait_timeout(Duration::from_secs(60));
    let callee_status = callee.wait_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let got_pbx = at_pbx.join().expect("PBX receiver");
    let got_carrier = at_carrier.join().expect("carrier receiver");
    let got_stranger = at_stranger.join().expect("stranger receiver");
    assert!(
        caller_status.is_some_and(|s| s.success()) && callee_status.is_some_and(|s| s.success()),
        "SIPp call failed: caller {caller_status:?}, callee {callee_status:?}"
    );
    assert!(got_stranger.seqs.is_empty(), "the stranger received media");
    for (who, got, ssrc, relay) in [
        ("carrier", &got_carrier, 0x1111_1111, out_relay),
        ("PBX", &got_pbx, 0x2222_2222, in_relay),
    ] {
        assert_eq!(
            got.seqs.len(),
            usize::from(N),
            "{who}: {} of {N}",
            got.seqs.len()
        );
        assert!(got.in_order(), "{who}: out of order");
        assert!(
            got.ssrcs.iter().all(|s| *s == ssrc),
            "{who}: foreign packets"
        );
        assert!(got.sources.iter().all(|s| *s == relay), "{who}: sources");
    }
    // The BYE released the session: its mappings and their latch policies are gone from the
    // kernel's maps, its port is unallocated again.
    let media = lab.media();
    assert_eq!(media["xdp_map_entries"], 0, "{media}");
    assert_eq!(media["xdp_latch_policies"], 0, "{media}");
    let before = counters(&lab);
    stranger.send_to(&rtp(1, 0xbad), out_relay).expect("send");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(delta(&before, &counters(&lab), "drop_unallocated"), 1);
}

/// A second address on the carrier's interface, for the stranger.
fn add_stranger_address(lab: &MediaLab) {
    let out = ip(&["-n", &lab.lab.carrier, "-o", "-4", "addr", "show"]).expect("addresses");
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .lines()
        .find(|l| l.contains("198.18.2.2/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("carrier interface")
        .to_owned();
    ip(&[
        "-n",
        &lab.lab.carrier,
        "addr",
        "add",
        &format!("{STRANGER}/24"),
        "dev",
        &dev,
    ])
    .expect("stranger address");
    // The namespace (and the address with it) goes with the lab.
}

/// UDP ports the SBC process has sockets bound to: its socket inodes from `/proc/<pid>/fd`,
/// looked up in its namespace's `/proc/<pid>/net/udp` and `udp6`.
fn bound_udp_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            if let Some(port) = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

fn assert_relay_range_unbound(pid: u32, when: &str) {
    let ports = bound_udp_ports(pid);
    assert!(
        ports.contains(&5060),
        "the check sees the SBC's sockets (SIP on 5060): {ports:?}"
    );
    let relay: Vec<u16> = ports
        .into_iter()
        .filter(|p| (PORT_MIN..=PORT_MAX + 1).contains(p))
        .collect();
    assert!(
        relay.is_empty(),
        "{when}: the SBC has UDP sockets in the relay range: {relay:?}"
    );
}

fn counters(lab: &MediaLab) -> serde_json::Value {
    lab.media()["xdp_counters"].clone()
}

fn delta(before: &serde_json::Value, after: &serde_json::Value, name: &str) -> u64 {
    let v = |c: &serde_json::Value| c[name].as_u64().unwrap_or(0);
    v(after).saturating_sub(v(before))
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// SIPp as PBX (caller) and carrier (callee), SDP naming the test's RTP sockets; the caller
/// hangs up after 6 s. Returns (caller, callee, scenario files to keep until they end).
fn start_call(lab: &MediaLab) -> (Owned, Owned, [TempFile; 2]) {
    let callee_steps = sipp::answering_callee();
    let mut caller_steps = sipp::answered_caller();
    caller_steps.extend(sipp::ending(true, Some(6_000)));
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    let callee_xml = sipp::write_scenario(
        "socketless-callee",
        &sipp::scenario("callee", false, &callee_steps).replace("[media_port]", &port(CARRIER_RTP)),
    );
    let caller_xml = sipp::write_scenario(
        "socketless-caller",
        &sipp::scenario("caller", true, &caller_steps).replace("[media_port]", &port(PBX_RTP)),
    );
    let callee = sipp::run(
        &lab.lab.carrier,
        callee_xml.path(),
        CARRIER_SIP,
        None,
        &["-mp", "30000"],
    );
    thread::sleep(Duration::from_millis(300));
    let caller = sipp::run(
        &lab.lab.pbx,
        caller_xml.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );
    (caller, callee, [callee_xml, caller_xml])
}
