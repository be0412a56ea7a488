//! Measures what in-kernel latching costs and saves, on the real XDP object (root; runs in
//! namespaces it creates and removes):
//!
//! - program time per packet (`BPF_PROG_TEST_RUN`, kernel-measured mean over many runs) for a
//!   latched stream, a latching packet, and the drops an outsider meets;
//! - control-plane set-up and tear-down per stream (RTP + RTCP on both sides = four relay
//!   ports): four bound UDP sockets versus four awaiting mappings plus four latch policies.
//!
//! `cargo run -p sbc-e2e --release --example xdp_latch_cost -- [OUT_PREFIX]` prints Markdown and,
//! with `OUT_PREFIX`, also writes `OUT_PREFIX.md` and `OUT_PREFIX.json`.

use std::{net::UdpSocket, time::Instant};

use sbc_e2e::{
    frame::udp_v4,
    xdp_run::{FibLab, TestRelay},
};
use sbc_ebpf_common::{
    AllowedSource, FLAG_AWAITING_LATCH, FLAG_IPV4, LATCH_HAS_REVERSE, LatchPolicy, Mapping,
    MappingKey, ipv4_mapped,
};

const RELAY: [u8; 4] = [198, 18, 9, 1];
const PBX: ([u8; 4], u16) = ([198, 18, 9, 2], 4000);
const CARRIER: ([u8; 4], u16) = ([198, 18, 9, 4], 6000);
const OUTSIDER: ([u8; 4], u16) = ([198, 18, 9, 66], 4000);
/// Runs per `BPF_PROG_TEST_RUN` for the repeatable cases.
const REPEAT: u32 = 1_000_000;
/// Single runs measured for the paths that change state or the frame.
const LATCHES: usize = 2_000;
/// Streams set up and torn down per control-plane measurement.
const STREAMS: u16 = 2_000;
/// Repetitions of every measurement; the median is reported.
const REPS: usize = 5;

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (namespaces, BPF)"
    );
    let out = std::env::args().nth(1);
    let _lab = FibLab::new("sxc", "198.18.9.1/24", "198.18.9.2/24", &[PBX.0, CARRIER.0]);
    let mut x = TestRelay::load();
    x.put_range(0, RELAY, 30_000, 39_999);

    // Program time per packet.
    let k_in = key(30_000);
    let k_out = key(30_002);
    let latched = Mapping {
        expect_addr: ipv4_mapped(PBX.0),
        expect_port: PBX.1.to_be(),
        flags: FLAG_IPV4 | sbc_ebpf_common::FLAG_STRICT_SOURCE,
        ..mapping(30_002, CARRIER, 0)
    };
    x.put_mapping(k_in, latched);
    x.put_mapping(k_out, mapping(30_000, PBX, FLAG_IPV4 | FLAG_AWAITING_LATCH));
    x.put_policy(k_out, policy(CARRIER, k_in));
    // Forwarding rewrites the frame in place, and a repeated test run does not restore it (the
    // second run would see the rewritten frame): one run per syscall, median of many.
    let forward = udp_v4(PBX, (RELAY, 30_000), 0);
    let forward_ns = median((0..REPS).map(|_| {
        median((0..LATCHES).map(|_| {
            let (verdict, ns) = x.run_repeated(&forward, 1);
            assert_eq!(verdict, 4, "latched forward");
            ns as f64
        }))
    }));
    let mut per_packet = vec![("latched_forward", forward_ns)];
    // Drops and passes leave the frame alone: many runs per syscall.
    let cases: [(&str, Vec<u8>, u32); 4] = [
        (
            "latched_other_source_drop",
            udp_v4(OUTSIDER, (RELAY, 30_000), 0),
            1,
        ),
        (
            "awaiting_not_allowed_drop",
            udp_v4(OUTSIDER, (RELAY, 30_002), 0),
            1,
        ),
        (
            "unallocated_port_drop",
            udp_v4(OUTSIDER, (RELAY, 30_050), 0),
            1,
        ),
        ("no_mapping_pass", udp_v4(OUTSIDER, (RELAY, 5060), 0), 2),
    ];
    for (name, frame, want) in &cases {
        let ns = median((0..REPS).map(|_| {
            let (verdict, ns) = x.run_repeated(frame, REPEAT);
            assert_eq!(verdict, *want, "{name}: verdict");
            ns as f64
        }));
        per_packet.push((*name, ns));
    }
    // A latching packet: re-arm the mapping before each run (the re-arm is not timed: the
    // kernel times the program only).
    let latch_frame = udp_v4(CARRIER, (RELAY, 30_002), 0);
    let awaiting = mapping(30_000, PBX, FLAG_IPV4 | FLAG_AWAITING_LATCH);
    let latch_ns = median((0..REPS).map(|_| {
        median((0..LATCHES).map(|_| {
            x.put_mapping(k_out, awaiting);
            let (verdict, ns) = x.run_repeated(&latch_frame, 1);
            assert_eq!(verdict, 4, "latch and redirect");
            ns as f64
        }))
    }));
    let _ = x.events();
    per_packet.push(("latching_packet", latch_ns));

    // Control-plane set-up + tear-down of one stream's four relay ports.
    let sockets_us = median((0..REPS).map(|_| {
        let t = Instant::now();
        for s in 0..STREAMS {
            let base = 40_000 + s * 4;
            let socks: Vec<UdpSocket> = (0..4)
                .map(|i| {
                    let sock = UdpSocket::bind((std::net::Ipv4Addr::from(RELAY), base + i))
                        .expect("bind relay port");
                    sock.set_nonblocking(true).expect("non-blocking");
                    sock
                })
                .collect();
            drop(socks);
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(STREAMS)
    }));
    let maps_us = median((0..REPS).map(|_| {
        let t = Instant::now();
        for s in 0..STREAMS {
            let base = 30_000 + s * 4;
            let keys = [key(base), key(base + 1), key(base + 2), key(base + 3)];
            for (i, k) in keys.iter().enumerate() {
                let reverse = keys[(i + 2) % 4];
                x.put_mapping(*k, mapping(base, PBX, FLAG_IPV4 | FLAG_AWAITING_LATCH));
                x.put_policy(*k, policy(CARRIER, reverse));
            }
            for k in keys {
                x.remove_policy(k);
                x.remove_mapping(k);
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(STREAMS)
    }));

    let md = markdown(&per_packet, sockets_us, maps_us);
    let json = json(&per_packet, sockets_us, maps_us);
    println!("{md}\n{json}");
    if let Some(prefix) = out {
        std::fs::write(format!("{prefix}.md"), &md).expect("write Markdown");
        std::fs::write(format!("{prefix}.json"), &json).expect("write JSON");
    }
}

fn key(port: u16) -> MappingKey {
    MappingKey {
        addr: ipv4_mapped(RELAY),
        port: port.to_be(),
        pad: 0,
    }
}

fn mapping(via_port: u16, to: ([u8; 4], u16), flags: u16) -> Mapping {
    Mapping {
        src_addr: ipv4_mapped(RELAY),
        dst_addr: ipv4_mapped(to.0),
        expect_addr: [0; 16],
        src_port: via_port.to_be(),
        dst_port: to.1.to_be(),
        expect_port: 0,
        flags,
        slot: 0,
        generation: 0,
    }
}

fn policy(peer: ([u8; 4], u16), reverse: MappingKey) -> LatchPolicy {
    let exact = AllowedSource {
        addr: ipv4_mapped(peer.0),
        port: peer.1.to_be(),
        prefix_len: 128,
    };
    LatchPolicy {
        sources: [exact, AllowedSource::default(), AllowedSource::default()],
        reverse,
        flags: LATCH_HAS_REVERSE,
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn markdown(per_packet: &[(&str, f64)], sockets_us: f64, maps_us: f64) -> String {
    let mut s = String::from(
        "| XDP program path (BPF_PROG_TEST_RUN, kernel-timed) | ns/packet (median of 5) |\n\
         |---|---|\n",
    );
    for (name, ns) in per_packet {
        s.push_str(&format!("| {name} | {ns:.0} |\n"));
    }
    s.push_str(&format!(
        "\n| Per-stream set-up + tear-down (4 relay ports) | µs/stream | syscalls/stream |\n\
         |---|---|---|\n\
         | 4 bound UDP sockets (socket, bind, ioctl, fcntl, close; std, no epoll or task) | {sockets_us:.1} | 20 |\n\
         | 4 awaiting mappings + 4 latch policies (update ×8, delete ×8) | {maps_us:.1} | 16 |\n"
    ));
    s
}

fn json(per_packet: &[(&str, f64)], sockets_us: f64, maps_us: f64) -> String {
    let paths: Vec<String> = per_packet
        .iter()
        .map(|(name, ns)| format!("    \"{name}\": {ns:.1}"))
        .collect();
    format!(
        "{{\n  \"xdp_ns_per_packet\": {{\n{}\n  }},\n  \"setup_teardown_us_per_stream\": {{\n    \
         \"sockets\": {sockets_us:.2},\n    \"xdp_awaiting_mappings\": {maps_us:.2}\n  }},\n  \
         \"repeat_per_run\": {REPEAT},\n  \"latching_runs\": {LATCHES},\n  \"streams\": {STREAMS},\n  \
         \"reps\": {REPS}\n}}\n",
        paths.join(",\n")
    )
}
