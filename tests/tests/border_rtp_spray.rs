//! RTP hijack attempt (issue 13): an outsider host on the carrier side (its own namespace and
//! address, routed through the carrier's network, no party to any call) sprays small RTP
//! packets at the whole relay port range of both relay addresses, starting before a call is set
//! up and going on through it. The call is real: SIPp as the PBX and as the carrier, RTP both
//! ways from UDP sockets at the addresses their SDP names, through the real `sbc`.
//!
//! The outsider must receive nothing, each party must get every packet of the other and only
//! those (sequence, SSRC and length are the sender's), and the SBC must count the outsider's
//! packets in `sbc_media_packets_dropped_total`. Run once with the XDP fast path and once with
//! the userspace relay only, and once with XDP behind sockets (`xdp_latch = false`: the first
//! packets latch in userspace). With socketless streams (the XDP default) the program drops
//! the spray itself: not allowed before the latch, strict source after it. On the
//! first-packet-latches code all fail: the outsider latches the relay ports before the parties'
//! first packets and receives the PBX's audio.

mod media_common;

use std::{
    net::{SocketAddr, UdpSocket},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use media_common::{MediaLab, receiver, send_rtp};
use sbc_e2e::{
    netns::{self, Netns, ip},
    sipp,
};

const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 20_199;
/// RTP packets each party sends.
const N: u16 = 150;
const PBX_SIP: &str = "198.18.1.2:5060";
const CARRIER_SIP: &str = "198.18.2.2:5060";
const SBC_INSIDE_SIP: &str = "198.18.1.1:5060";
const PBX_RTP: &str = "198.18.1.2:4000";
const CARRIER_RTP: &str = "198.18.2.2:6000";
const OUTSIDER: &str = "198.18.3.2:7078";
/// The spray stops after this long at the latest, whatever happens.
const SPRAY_LIMIT: Duration = Duration::from_secs(40);

#[test]
fn rtp_spray_from_outsider_is_dropped_with_xdp() {
    if !sbc_e2e::require_root("border_rtp_spray") {
        return;
    }
    spray_during_call("brx", "xdp = \"auto\"", true);
}

/// XDP with sockets: the first packets latch in userspace, then the mappings follow.
#[test]
fn rtp_spray_from_outsider_is_dropped_with_xdp_after_userspace_latch() {
    if !sbc_e2e::require_root("border_rtp_spray") {
        return;
    }
    spray_during_call("brs", "xdp = \"auto\"\nxdp_latch = false", true);
}

#[test]
fn rtp_spray_from_outsider_is_dropped_in_userspace() {
    if !sbc_e2e::require_root("border_rtp_spray") {
        return;
    }
    spray_during_call("bru", "xdp = \"off\"", false);
}

fn spray_during_call(prefix: &str, xdp: &str, fast_path: bool) {
    let lab = MediaLab::start(
        prefix,
        &format!("{xdp}\nport_min = {PORT_MIN}\nport_max = {PORT_MAX}\ntimeout_s = 30"),
    );
    let want_state = if fast_path { "attached" } else { "off" };
    // Socketless streams (`media.xdp_latch`, on by default) latch in XDP.
    let socketless = fast_path && !xdp.contains("xdp_latch = false");
    assert_eq!(lab.media()["xdp"]["state"], want_state, "{}", lab.media());
    // Declared after the lab: dropped (namespace and veth deleted) before it.
    let outsider_ns = outsider_host(&lab);

    let pbx = lab.socket(true, PBX_RTP);
    let carrier = lab.socket(false, CARRIER_RTP);
    let stop = Arc::new(AtomicBool::new(false));
    let spray = Spray::start(&outsider_ns, stop.clone());
    // The spray runs for a while before the call exists (it would latch the ports at once).
    thread::sleep(Duration::from_millis(500));

    // The call: PBX → SBC → carrier, answered, BYE after the RTP phase.
    let callee_steps = sipp::answering_callee();
    let mut caller_steps = sipp::answered_caller();
    caller_steps.extend(sipp::ending(true, Some(9_000)));
    // Fixed media ports in the SDP: the test's own RTP sockets listen there (SIPp's media
    // sockets go to -mp, out of the way).
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    let callee_xml = sipp::write_scenario(
        "spray-callee",
        &sipp::scenario("callee", false, &callee_steps).replace("[media_port]", &port(CARRIER_RTP)),
    );
    let caller_xml = sipp::write_scenario(
        "spray-caller",
        &sipp::scenario("caller", true, &caller_steps).replace("[media_port]", &port(PBX_RTP)),
    );
    let mut callee = sipp::run(
        &lab.lab.carrier,
        callee_xml.path(),
        CARRIER_SIP,
        None,
        &["-mp", "30000"],
    );
    thread::sleep(Duration::from_millis(300));
    let mut caller = sipp::run(
        &lab.lab.pbx,
        caller_xml.path(),
        PBX_SIP,
        Some(SBC_INSIDE_SIP),
        &["-mp", "30000"],
    );

    // The answered call's relay endpoints, from the admin API.
    let (session, in_relay, out_relay) = lab.answered_session();
    // Phones start talking a moment after the answer; the spray has hit the ports meanwhile.
    thread::sleep(Duration::from_millis(300));
    let at_pbx = receiver(
        pbx.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(30),
    );
    let at_carrier = receiver(
        carrier.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(30),
    );
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, N, 0x1111_1111))
    };
    send_rtp(&carrier, out_relay, 0, N, 0x2222_2222);
    up.join().expect("PBX sender");
    thread::sleep(Duration::from_millis(400));

    let view = lab.json(
        "GET",
        &format!("/api/v1/media/sessions/{session}"),
        None,
        200,
    );
    let stream = &view["streams"][0];
    assert_eq!(stream["inside"]["latched"], PBX_RTP, "{view}");
    assert_eq!(stream["outside"]["latched"], CARRIER_RTP, "{view}");
    if fast_path {
        // Socketless: latched and relayed in XDP, RTP and RTCP both ways; else RTP only.
        assert_eq!(stream["socketless"], socketless, "{view}");
        assert_eq!(
            stream["xdp_mappings"],
            if socketless { 4 } else { 2 },
            "fast path carried the call: {view}"
        );
    }
    let xdp_dropped = lab.xdp_counter("drop_strict_source");

    let caller_status = caller.wait_timeout(Duration::from_secs(60));
    let callee_status = callee.wait_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let got_pbx = at_pbx.join().expect("PBX receiver");
    let got_carrier = at_carrier.join().expect("carrier receiver");
    let (sent, outsider_got) = spray.finish();
    assert!(
        caller_status.is_some_and(|s| s.success()) && callee_status.is_some_and(|s| s.success()),
        "SIPp call failed: caller {caller_status:?}, callee {callee_status:?}"
    );

    assert_eq!(
        outsider_got, 0,
        "the outsider received media from the relay"
    );
    for (who, got, ssrc, relay) in [
        ("carrier", &got_carrier, 0x1111_1111, out_relay),
        ("PBX", &got_pbx, 0x2222_2222, in_relay),
    ] {
        assert_eq!(
            got.seqs.len(),
            usize::from(N),
            "{who} got {} of {N} packets",
            got.seqs.len()
        );
        assert!(got.in_order(), "{who}: out of order");
        assert!(
            got.ssrcs.iter().all(|s| *s == ssrc) && got.lens.iter().all(|l| *l == 172),
            "{who} got packets that are not the other party's"
        );
        assert!(got.sources.iter().all(|s| *s == relay), "{who}: sources");
    }

    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    let not_allowed = metric(
        &metrics,
        "sbc_media_packets_dropped_total{reason=\"not_allowed\"}",
    );
    let xdp_strict = metric(
        &metrics,
        "sbc_media_packets_dropped_total{reason=\"xdp_strict_source\"}",
    );
    let xdp_not_allowed = metric(
        &metrics,
        "sbc_media_packets_dropped_total{reason=\"xdp_not_allowed\"}",
    );
    eprintln!(
        "outsider sent {sent} packets; dropped: not_allowed {not_allowed}, \
         xdp_strict_source {xdp_strict} (program counter {xdp_dropped}), \
         xdp_not_allowed {xdp_not_allowed}"
    );
    // The call's four relay ports were hit every spray pass while they existed.
    assert!(
        not_allowed + xdp_strict + xdp_not_allowed >= 40,
        "outsider's packets not counted as drops: {not_allowed} + {xdp_strict} + \
         {xdp_not_allowed}"
    );
    if fast_path {
        assert!(
            xdp_dropped > 0 && xdp_strict > 0 && (xdp_not_allowed > 0 || !socketless),
            "XDP dropped the spray at the call's ports before (not allowed) and after the \
             latch (strict source)"
        );
    }
    assert_eq!(
        metric(&metrics, "sbc_media_relatched_total"),
        0,
        "no latch moved"
    );
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A host behind the carrier's router: 198.18.3.2/24 in its own namespace, a veth into the
/// carrier namespace (198.18.3.1), which forwards; the SBC routes 198.18.3.0/24 back via the
/// carrier, so whatever the relay would send the outsider does reach it.
fn outsider_host(lab: &MediaLab) -> Netns {
    let ns = Netns::new("bro").expect("outsider netns");
    let o_if = netns::unique("bo");
    let c_if = netns::unique("bc");
    ip(&[
        "link",
        "add",
        &o_if,
        "netns",
        ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        &c_if,
        "netns",
        &lab.lab.carrier,
    ])
    .expect("outsider veth");
    ns.exec_ip(&["addr", "add", "198.18.3.2/24", "dev", &o_if])
        .expect("outsider address");
    ns.exec_ip(&["link", "set", &o_if, "up"]).expect("up");
    ns.exec_ip(&["route", "add", "default", "via", "198.18.3.1"])
        .expect("outsider route");
    let car = lab.lab.carrier.as_str();
    ip(&["-n", car, "addr", "add", "198.18.3.1/24", "dev", &c_if]).expect("carrier address");
    ip(&["-n", car, "link", "set", &c_if, "up"]).expect("up");
    ip(&[
        "-n",
        &lab.lab.sbc,
        "route",
        "add",
        "198.18.3.0/24",
        "via",
        "198.18.2.2",
    ])
    .expect("sbc route to the outsider");
    for (ns_name, args) in [
        (car, ["sysctl", "-qw", "net.ipv4.ip_forward=1"].as_slice()),
        (
            ns.name(),
            ["ethtool", "-K", o_if.as_str(), "tx", "off"].as_slice(),
        ),
    ] {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", ns_name])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{args:?} in {ns_name}");
    }
    ns
}

/// The outsider's sprayer and listener threads.
struct Spray {
    sender: thread::JoinHandle<u64>,
    listener: thread::JoinHandle<()>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Spray {
    /// Every 20 ms, one 12-byte RTP header to every port of the relay range on both relay
    /// addresses, from one socket (the address the relay would latch), until `stop` or
    /// [`SPRAY_LIMIT`]. A second thread counts whatever arrives on that socket.
    fn start(ns: &Netns, stop: Arc<AtomicBool>) -> Self {
        let socket = {
            let _in = ns.enter().expect("enter outsider netns");
            UdpSocket::bind(OUTSIDER).expect("bind outsider")
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let received = Arc::new(AtomicU64::new(0));
        let listener = {
            let socket = socket.try_clone().expect("clone");
            let (received, stop) = (received.clone(), stop.clone());
            thread::spawn(move || {
                let start = Instant::now();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) && start.elapsed() < SPRAY_LIMIT {
                    if socket.recv_from(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let sender = {
            let stop = stop.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let mut sent = 0u64;
                let mut seq = 0u16;
                while !stop.load(Ordering::Relaxed) && start.elapsed() < SPRAY_LIMIT {
                    for relay in ["198.18.1.1", "198.18.2.1"] {
                        for port in PORT_MIN..=PORT_MAX {
                            let mut p = [0u8; 12];
                            p[0] = 0x80;
                            p[2..4].copy_from_slice(&seq.to_be_bytes());
                            p[8..12].copy_from_slice(&0xbad0_bad0u32.to_be_bytes());
                            let to = SocketAddr::new(relay.parse().expect("ip"), port);
                            if socket.send_to(&p, to).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    seq = seq.wrapping_add(1);
                    thread::sleep(Duration::from_millis(20));
                }
                sent
            })
        };
        Self {
            sender,
            listener,
            received,
            stop,
        }
    }

    /// Stops both threads; returns (packets sent, packets received).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("sprayer");
        self.listener.join().expect("listener");
        (sent, self.received.load(Ordering::Relaxed))
    }
}
