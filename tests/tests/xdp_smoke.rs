//! The project's own XDP object, loaded with aya onto a veth in namespaces this test creates,
//! counts the UDP packets sent across — and stops counting once detached.

use std::{net::UdpSocket, thread, time::Duration};

use sbc::{config::XdpMode, media::xdp::XdpRelay};
use sbc_e2e::netns::{Netns, veth_pair};
use sbc_ebpf_common::Stat;

const PACKETS: u64 = 200;

#[test]
fn xdp_program_counts_udp_on_veth_and_stops_when_detached() {
    if !sbc_e2e::require_root("xdp_smoke") {
        return;
    }
    let tx = Netns::new("sxt").expect("create tx netns");
    let rx = Netns::new("sxr").expect("create rx netns");
    // 198.18.0.0/15 (benchmarking range) exists only inside these two namespaces.
    let (_tx_if, rx_if) =
        veth_pair(&tx, "198.18.7.1/24", &rx, "198.18.7.2/24").expect("create veth pair");

    let mut relay =
        XdpRelay::load(None, sbc_ebpf_common::MAX_MAPPINGS).expect("load the embedded XDP object");
    {
        let _in_rx = rx.enter().expect("enter rx netns");
        let mode = relay
            .attach(&rx_if, XdpMode::Native)
            .expect("attach in native mode");
        eprintln!("attached to {rx_if} in {mode} mode");
    }
    let before = relay.stats().expect("read counters");

    let socket = {
        let _in_tx = tx.enter().expect("enter tx netns");
        UdpSocket::bind("198.18.7.1:0").expect("bind sender")
    };
    send(&socket, PACKETS);
    let after = wait_for(&relay, &before, PACKETS);
    let delta = |s: Stat| after[s as usize] - before[s as usize];
    assert!(
        delta(Stat::Rx) >= PACKETS,
        "rx {} < {PACKETS}",
        delta(Stat::Rx)
    );
    assert!(
        delta(Stat::RxUdp) >= PACKETS,
        "rx_udp {} < {PACKETS}",
        delta(Stat::RxUdp)
    );
    // No mapping is installed, so every UDP packet must be handed to the kernel, not forwarded.
    assert!(delta(Stat::PassNoMapping) >= PACKETS);
    assert_eq!(delta(Stat::Redirected), 0);

    // Negative control: detached, the program must see nothing, so the assertions above depend
    // on the program really being attached.
    relay.detach_all();
    let detached = relay.stats().expect("read counters");
    send(&socket, PACKETS);
    thread::sleep(Duration::from_millis(300));
    let later = relay.stats().expect("read counters");
    assert_eq!(
        later[Stat::Rx as usize],
        detached[Stat::Rx as usize],
        "counted while detached"
    );
}

fn send(socket: &UdpSocket, n: u64) {
    // RTP-sized payload with a valid-looking RTP header (version 2, PT 0).
    let mut payload = [0u8; 172];
    payload[0] = 0x80;
    for seq in 0..n {
        payload[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        socket.send_to(&payload, "198.18.7.2:40000").expect("send");
    }
}

/// Polls the counters until `want` more UDP packets were seen, for at most 5 s.
fn wait_for(relay: &XdpRelay, before: &[u64], want: u64) -> [u64; Stat::COUNT as usize] {
    for _ in 0..50 {
        let now = relay.stats().expect("read counters");
        if now[Stat::RxUdp as usize] - before[Stat::RxUdp as usize] >= want {
            return now;
        }
        thread::sleep(Duration::from_millis(100));
    }
    relay.stats().expect("read counters")
}

/// A test's pin directory, removed with whatever is pinned in it when the test ends, also
/// when it fails.
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = sbc::media::xdp::remove_pins(&self.0);
    }
}

/// Maps pinned by an instance with another port range (another size) are refused rather than
/// reused: a smaller pinned map would run out of mappings before the ports do.
#[test]
fn pinned_maps_of_another_size_are_refused() {
    if !sbc_e2e::require_root("xdp_smoke") {
        return;
    }
    let pins = Pins(sbc::media::xdp::pin_dir(&format!(
        "sxp-{}",
        std::process::id()
    )));
    let first = XdpRelay::load(Some(&pins.0), 2_048).expect("load and pin");
    drop(first);
    XdpRelay::load(Some(&pins.0), 2_048).expect("the same size is reused");
    let other = XdpRelay::load(Some(&pins.0), 4_096);
    assert!(
        matches!(
            other,
            Err(sbc::media::xdp::XdpError::PinnedSize {
                pinned: 2_048,
                wanted: 4_096,
                ..
            })
        ),
        "{other:?}"
    );
}

/// Pinned maps an SBC of another version left, with values of another layout (before the
/// statistics generation: 60-byte mappings), are refused with a message naming `sbc xdp
/// detach` before the program loads, rather than the verifier refusing the program.
#[test]
fn pinned_maps_of_another_layout_are_refused() {
    if !sbc_e2e::require_root("xdp_smoke") {
        return;
    }
    let pins = Pins(sbc::media::xdp::pin_dir(&format!(
        "sxl-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&pins.0).expect("pin directory");
    // The mappings map as the SBC before this layout created it.
    let old = pins.0.join(sbc_ebpf_common::MAP_MAPPINGS);
    let created = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&old)
        .args([
            "type", "hash", "key", "20", "value", "60", "entries", "2048",
        ])
        .args(["name", "SBC_MAPPINGS"])
        .status()
        .expect("bpftool");
    assert!(created.success(), "bpftool map create: {created}");
    let loaded = XdpRelay::load(Some(&pins.0), 2_048);
    let Err(e) = loaded else {
        panic!("an old layout was reused");
    };
    assert!(
        matches!(
            e,
            sbc::media::xdp::XdpError::PinnedLayout {
                pinned: 60,
                wanted: 64,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("sbc xdp detach"), "{e}");
}
