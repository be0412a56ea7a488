//! Neighbour priming (issue 16): the XDP program forwards a socketless stream's packet only
//! when `bpf_fib_lookup` finds the next hop's MAC; toward a peer whose ARP entry is cold it
//! passes the packet up, where no socket takes it. The carrier's media here comes from an
//! address that never spoke to the SBC (198.18.2.77, not its signaling address), and the SBC's
//! neighbour table is flushed before the session is made: the PBX's very first RTP packet must
//! still reach the carrier, because the SBC resolved the carrier's media address when the
//! mapping went in (`media.xdp_prime_neighbours`, counted in
//! `sbc_media_neighbour_primes_total`). Without priming that packet is lost (checked by hand
//! with `xdp_prime_neighbours = false`: the carrier gets nothing, `pass_fib_miss` counts it).

mod media_common;

use std::{thread, time::Duration};

use media_common::{MediaLab, rtp};
use sbc_e2e::netns::ip;

const PBX_RTP: &str = "198.18.1.2:4000";
/// The carrier's media address: on its interface, but not the address SIP comes from.
const CARRIER_MEDIA_IP: &str = "198.18.2.77";
const CARRIER_RTP: &str = "198.18.2.77:6000";

#[test]
fn first_packet_toward_a_cold_neighbour_is_forwarded() {
    if !sbc_e2e::require_root("xdp_neighbour_priming") {
        return;
    }
    let lab = MediaLab::start(
        "snp",
        "xdp = \"auto\"\nport_min = 20000\nport_max = 20099\ntimeout_s = 30\n\
         xdp_prime_neighbours = true",
    );
    assert_eq!(lab.media()["xdp"]["state"], "attached", "{}", lab.media());
    add_carrier_media_address(&lab);
    let pbx = lab.socket(true, PBX_RTP);
    let carrier = lab.socket(false, CARRIER_RTP);
    carrier
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");

    // Nothing cached toward either peer.
    ip(&["-n", &lab.lab.sbc, "neigh", "flush", "all"]).expect("flush neighbours");
    assert!(
        !neighbour_resolved(&lab, CARRIER_MEDIA_IP),
        "cold before the session"
    );

    let (session, in_relay, _out_relay) = lab.call_with_peers(
        PBX_RTP.parse().expect("addr"),
        CARRIER_RTP.parse().expect("addr"),
        r#"{"inside":"198.18.1.2","outside":"198.18.2.2"}"#,
    );
    let view = lab.json(
        "GET",
        &format!("/api/v1/media/sessions/{session}"),
        None,
        200,
    );
    assert_eq!(view["streams"][0]["socketless"], true, "{view}");
    // ARP on veth answers within milliseconds; a real peer's first RTP comes later still.
    thread::sleep(Duration::from_millis(300));

    let before = lab.xdp_counter("pass_fib_miss");
    pbx.send_to(&rtp(0, 0x1111_1111), in_relay)
        .expect("send the first packet");
    let mut buf = [0u8; 256];
    let got = carrier.recv_from(&mut buf);
    let counters = lab.media()["xdp_counters"].clone();
    let (n, from) = got.unwrap_or_else(|e| {
        panic!(
            "the first packet toward a cold neighbour was lost ({e}); \
             pass_fib_miss {} -> {}; counters {counters}",
            before,
            lab.xdp_counter("pass_fib_miss")
        )
    });
    assert_eq!(&buf[..n], &rtp(0, 0x1111_1111)[..]);
    assert_eq!(from.port() % 2, 0, "from the outside relay port: {from}");
    assert_eq!(lab.xdp_counter("pass_fib_miss"), before, "{counters}");
    assert!(neighbour_resolved(&lab, CARRIER_MEDIA_IP));
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    let primed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sbc_media_neighbour_primes_total{result=\"resolving\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(primed >= 1, "priming counted: {metrics}");
}

/// A second address on the carrier's interface, for its media (the namespace, and the address
/// with it, goes with the lab).
fn add_carrier_media_address(lab: &MediaLab) {
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
        &format!("{CARRIER_MEDIA_IP}/24"),
        "dev",
        &dev,
    ])
    .expect("carrier media address");
}

/// Whether the SBC's namespace has a link-layer address for `peer`.
fn neighbour_resolved(lab: &MediaLab, peer: &str) -> bool {
    let out = ip(&["-n", &lab.lab.sbc, "neigh", "show", peer]).expect("neigh show");
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("lladdr")
}
