//! With XDP attached behind sockets (`xdp_latch = false`; socketless streams, the default, are
//! `media_socketless.rs`), a stream's first packets latch in userspace, then the control plane
//! installs the mappings and the XDP program carries the stream: the receivers get every packet
//! in order with rewritten addresses, the program's counters move, the userspace relay's stay
//! flat. With strict source, packets from an intruder are dropped in XDP.

mod media_common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use media_common::{MediaLab, receiver, rtp, send_rtp};

const N: u16 = 200;

#[test]
fn xdp_carries_latched_stream_and_drops_strict_source_intruders() {
    if !sbc_e2e::require_root("media_xdp") {
        return;
    }
    let lab = MediaLab::start(
        "smx",
        "xdp = \"auto\"\nxdp_latch = false\nstrict_source = true\ntimeout_s = 30",
    );
    let media = lab.media();
    assert_eq!(media["xdp"]["state"], "attached", "{media}");

    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    let (id, in_relay, out_relay) = lab.call(
        "198.18.1.2:4000".parse().expect("literal"),
        "198.18.2.2:6000".parse().expect("literal"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let at_carrier = receiver(
        carrier.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(30),
    );
    let at_pbx = receiver(
        pbx.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(30),
    );

    // One packet each way latches both peers (userspace); the mappings follow.
    send_rtp(&pbx, in_relay, 0, 1, 0x1111);
    send_rtp(&carrier, out_relay, 0, 1, 0x2222);
    let session = format!("/api/v1/media/sessions/{id}");
    let mut installed = false;
    for _ in 0..50 {
        if lab.json("GET", &session, None, 200)["streams"][0]["xdp_mappings"] == 2 {
            installed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        installed,
        "mappings installed after latching: {}",
        lab.media()
    );
    let user_before = lab.userspace_packets();
    let redirected_before = lab.xdp_counter("redirected");

    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 1, N, 0x1111))
    };
    send_rtp(&carrier, out_relay, 1, N, 0x2222);
    up.join().expect("sender");
    thread::sleep(Duration::from_millis(300));

    let user_after = lab.userspace_packets();
    let redirected = lab.xdp_counter("redirected") - redirected_before;
    let media = lab.media();
    assert_eq!(
        user_after, user_before,
        "userspace relay stayed flat: {media}"
    );
    assert!(
        redirected >= 2 * u64::from(N),
        "XDP redirected {redirected} < {}: {media}",
        2 * N
    );
    let v = lab.json("GET", &session, None, 200);
    let s = &v["streams"][0];
    assert!(
        s["inside"]["xdp_packets"].as_u64() >= Some(u64::from(N)),
        "{v}"
    );
    assert!(
        s["outside"]["xdp_packets"].as_u64() >= Some(u64::from(N)),
        "{v}"
    );

    // The receiver report (fraction lost 25/256, 42 lost, jitter 77) on the RTCP port is read
    // and relayed. (This stream does not multiplex, so RTCP-looking bytes on its RTP port are
    // its own, RFC 5761 §4; XDP's hand-up of those is tested in `xdp_latch`.)
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&[25, 0, 0, 42]);
    rr.extend_from_slice(&100u32.to_be_bytes());
    rr.extend_from_slice(&77u32.to_be_bytes());
    rr.extend_from_slice(&[0; 8]);
    let in_rtcp = std::net::SocketAddr::new(in_relay.ip(), in_relay.port() + 1);
    pbx.send_to(&rr, in_rtcp).expect("send RTCP");
    let mut report = serde_json::Value::Null;
    for _ in 0..20 {
        report =
            lab.json("GET", &session, None, 200)["streams"][0]["inside"]["rtcp_report"].clone();
        if !report.is_null() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(report["fraction_lost"], 25, "{report}");
    assert_eq!(report["cumulative_lost"], 42, "{report}");
    assert_eq!(report["jitter"], 77, "{report}");
    let user_before = lab.userspace_packets();

    // Strict source: an intruder on the carrier side aims at the outside relay port.
    let intruder = lab.socket(false, "198.18.2.2:6666");
    let dropped_before = lab.xdp_counter("drop_strict_source");
    for seq in 0..20u16 {
        intruder
            .send_to(&rtp(60_000 + seq, 0xbad), out_relay)
            .expect("send");
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got_carrier = at_carrier.join().expect("receiver");
    let got_pbx = at_pbx.join().expect("receiver");
    assert!(
        lab.xdp_counter("drop_strict_source") - dropped_before >= 20,
        "{}",
        lab.media()
    );
    assert_eq!(
        lab.userspace_packets(),
        user_before,
        "intruder not relayed in userspace"
    );

    let want = usize::from(N) + 1;
    assert_eq!(got_carrier.seqs.len(), want, "carrier got every packet");
    assert_eq!(
        got_pbx.seqs.len(),
        want,
        "pbx got every packet, none of the intruder's"
    );
    assert!(got_carrier.in_order() && got_pbx.in_order(), "in order");
    assert!(got_carrier.sources.iter().all(|s| *s == out_relay));
    assert!(got_pbx.sources.iter().all(|s| *s == in_relay));

    // Ending the call removes the mappings from the kernel map.
    lab.json("DELETE", &session, None, 204);
    assert_eq!(lab.media()["xdp_map_entries"], 0, "{}", lab.media());
}
