//! Several relay addresses per side (`media_addresses`, issue 16's media scale): with two
//! addresses on each side and two port pairs per address, the second call's streams are
//! placed on the second address of each side (the one with more free pairs); its relay
//! endpoints name that address, its RTP is latched and relayed by the XDP program on it (no
//! userspace packet) with the second address as the source the peers see, and the free-pair
//! gauges count per address and per side. Filling every pair of both addresses refuses the
//! next call, and releasing the calls leaves no mapping behind. Without XDP the userspace
//! relay's sockets are bound to the second address and relay from it.

mod media_common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use media_common::{MediaLab, receiver, send_rtp};
use sbc_e2e::{lab::Lab, netns::ip};

/// Two pairs per relay address (the smallest range validation allows).
const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 20_003;
const IN_1: &str = "198.18.1.1";
const IN_2: &str = "198.18.1.11";
const OUT_1: &str = "198.18.2.1";
const OUT_2: &str = "198.18.2.11";
const N: u16 = 150;

#[test]
fn second_relay_address_carries_a_call_through_xdp() {
    if !sbc_e2e::require_root("media_addresses") {
        return;
    }
    let sides = [
        format!("media_addresses = [\"{IN_1}\", \"{IN_2}\"]"),
        format!("media_addresses = [\"{OUT_1}\", {{ address = \"{OUT_2}\" }}]"),
    ];
    let lab = MediaLab::start_sides(
        "sma",
        &format!("xdp = \"auto\"\nport_min = {PORT_MIN}\nport_max = {PORT_MAX}\ntimeout_s = 30"),
        &sides,
        add_second_addresses,
    );
    let media = lab.media();
    assert_eq!(media["xdp"]["state"], "attached", "{media}");
    assert_eq!(
        media["relay"]["ports_total_inside"], 4,
        "two pairs per address: {media}"
    );
    assert_eq!(
        media["relay"]["addresses"].as_array().map(Vec::len),
        Some(4),
        "{media}"
    );

    // The first call takes the first address of each side (a tie goes to the first) ...
    let sa = |s: &str| -> SocketAddr { s.parse().expect("literal") };
    let (first, in_a, out_a) = lab.call(sa("198.18.1.2:4100"), sa("198.18.2.2:6100"));
    assert_eq!(
        (in_a.ip().to_string(), out_a.ip().to_string()),
        (IN_1.to_owned(), OUT_1.to_owned())
    );
    // ... the second the second address, which has more free pairs now.
    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    let (id, in_relay, out_relay) = lab.call(sa("198.18.1.2:4000"), sa("198.18.2.2:6000"));
    assert_eq!(
        (in_relay.ip().to_string(), out_relay.ip().to_string()),
        (IN_2.to_owned(), OUT_2.to_owned()),
        "the relay endpoints (what SDP names) are on the second address"
    );
    let view_path = format!("/api/v1/media/sessions/{id}");
    let view = lab.json("GET", &view_path, None, 200);
    assert_eq!(view["streams"][0]["inside"]["bind"], IN_2, "{view}");
    assert_eq!(view["streams"][0]["outside"]["bind"], OUT_2, "{view}");
    assert_eq!(view["streams"][0]["socketless"], true, "{view}");

    // RTP both ways on the second addresses: latched and relayed in XDP.
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(30);
    let at_pbx = receiver(pbx.try_clone().expect("clone"), stop.clone(), limit);
    let at_carrier = receiver(carrier.try_clone().expect("clone"), stop.clone(), limit);
    let user_before = lab.userspace_packets();
    let redirected_before = lab.xdp_counter("redirected");
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, N, 0x1111_1111))
    };
    send_rtp(&carrier, out_relay, 0, N, 0x2222_2222);
    up.join().expect("PBX sender");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got_pbx = at_pbx.join().expect("PBX receiver");
    let got_carrier = at_carrier.join().expect("carrier receiver");
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
        assert!(
            got.sources.iter().all(|s| *s == relay),
            "{who}: sources are the second relay address"
        );
    }
    assert!(
        lab.xdp_counter("redirected") >= redirected_before + 2 * u64::from(N),
        "XDP carried the media: {}",
        lab.media()
    );
    assert_eq!(
        lab.userspace_packets(),
        user_before,
        "the userspace relay forwarded nothing"
    );
    let view = lab.json("GET", &view_path, None, 200);
    assert_eq!(
        view["streams"][0]["inside"]["latched"], "198.18.1.2:4000",
        "{view}"
    );
    assert!(
        view["streams"][0]["outside"]["xdp_packets"].as_u64() >= Some(u64::from(N)),
        "per-mapping counters found on the second address: {view}"
    );

    // Free pairs: one left on each address, two per side; the gauge has each address.
    let media = lab.media();
    assert_eq!(media["relay"]["ports_free_inside"], 2, "{media}");
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    for address in [IN_1, IN_2, OUT_1, OUT_2] {
        let line = format!("sbc_media_address_ports_free{{address=\"{address}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("sbc_media_ports_free{side=\"inside\"} 2"));

    // Two more calls fill both addresses; the fifth is refused.
    let more: Vec<u64> = (0..2u16)
        .map(|i| {
            let (id, _, _) = lab.call(
                sa(&format!("198.18.1.2:{}", 4200 + 2 * i)),
                sa(&format!("198.18.2.2:{}", 6200 + 2 * i)),
            );
            id
        })
        .collect();
    let offer = r#"{"from":"inside","streams":[{"addr":"198.18.1.2","rtp_port":4300}]}"#;
    let refused = lab
        .request("POST", "/api/v1/media/sessions", Some(offer))
        .expect("admin API");
    assert_eq!(refused.status, 503, "{}", refused.body);

    for id in more.into_iter().chain([first, id]) {
        lab.json("DELETE", &format!("/api/v1/media/sessions/{id}"), None, 204);
    }
    let media = lab.media();
    assert_eq!(media["xdp_map_entries"], 0, "{media}");
    assert_eq!(media["relay"]["ports_free_outside"], 4, "{media}");
}

#[test]
fn second_relay_address_relays_in_userspace_without_xdp() {
    if !sbc_e2e::require_root("media_addresses") {
        return;
    }
    let sides = [
        format!("media_addresses = [\"{IN_1}\", \"{IN_2}\"]"),
        format!("media_addresses = [\"{OUT_1}\", \"{OUT_2}\"]"),
    ];
    let lab = MediaLab::start_sides(
        "smu",
        &format!("xdp = \"off\"\nport_min = {PORT_MIN}\nport_max = {PORT_MAX}\ntimeout_s = 30"),
        &sides,
        add_second_addresses,
    );
    let sa = |s: &str| -> SocketAddr { s.parse().expect("literal") };
    let (first, _, _) = lab.call(sa("198.18.1.2:4100"), sa("198.18.2.2:6100"));
    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    let (id, in_relay, out_relay) = lab.call(sa("198.18.1.2:4000"), sa("198.18.2.2:6000"));
    assert_eq!(
        (in_relay.ip().to_string(), out_relay.ip().to_string()),
        (IN_2.to_owned(), OUT_2.to_owned())
    );
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(30);
    let at_pbx = receiver(pbx.try_clone().expect("clone"), stop.clone(), limit);
    let at_carrier = receiver(carrier.try_clone().expect("clone"), stop.clone(), limit);
    let user_before = lab.userspace_packets();
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, 50, 0x1111_1111))
    };
    send_rtp(&carrier, out_relay, 0, 50, 0x2222_2222);
    up.join().expect("PBX sender");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got_pbx = at_pbx.join().expect("PBX receiver");
    let got_carrier = at_carrier.join().expect("carrier receiver");
    // The relay sockets are bound to the second address: that is the source the peers see.
    // (A peer's first packet may arrive before its latch lets the other way through.)
    for (who, got, relay) in [
        ("carrier", &got_carrier, out_relay),
        ("PBX", &got_pbx, in_relay),
    ] {
        assert!(got.seqs.len() >= 48, "{who}: {} of 50", got.seqs.len());
        assert!(got.sources.iter().all(|s| *s == relay), "{who}: sources");
    }
    assert!(lab.userspace_packets() >= user_before + 96);
    for id in [first, id] {
        lab.json("DELETE", &format!("/api/v1/media/sessions/{id}"), None, 204);
    }
}

/// The second relay address of each side on the SBC's interfaces (same subnets as the
/// first, so the peers reach it without routes). They go with the lab's namespaces.
fn add_second_addresses(lab: &Lab) {
    for (addr, dev) in [(IN_2, "in0"), (OUT_2, "out0")] {
        ip(&[
            "-n",
            &lab.sbc,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            dev,
        ])
        .unwrap_or_else(|e| panic!("add {addr} to {dev}: {e:?}"));
    }
}
