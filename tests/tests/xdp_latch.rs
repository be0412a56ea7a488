//! In-kernel latching, proven on the real XDP object with `BPF_PROG_TEST_RUN`: crafted frames run
//! through the loaded program inside a namespace this test creates (so `bpf_fib_lookup` resolves
//! next hops there), and the verdict, the rewritten frame, the maps, the latch events and the
//! counters are checked.
//!
//! A stream awaiting its latch latches only from a source its policy allows (here: the PBX's
//! signaling address, any port, as for a NAT'd PBX); the learned peer becomes the reverse
//! mapping's destination. An outsider spraying the relay port is dropped before and after the
//! latch; a relay port without a mapping is dropped; anything else is passed.

use sbc_e2e::{
    frame::{endpoints as addresses, udp_v4 as udp},
    xdp_run::{FibLab, TestRelay},
};
use sbc_ebpf_common::{
    AllowedSource, FLAG_AWAITING_LATCH, FLAG_FORWARD_RTCP, FLAG_IPV4, FLAG_PASS,
    FLAG_STRICT_SOURCE, LATCH_HAS_REVERSE, LatchEvent, LatchPolicy, Mapping, MappingKey,
    MappingStats, Stat, ipv4_mapped,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// The SBC's relay address (inside this test's namespace) and the ports of one stream.
const RELAY: [u8; 4] = [198, 18, 9, 1];
const IN_PORT: u16 = 30_000;
const OUT_PORT: u16 = 30_002;
/// The PBX's SDP names 198.18.9.2:4000, but it sits behind a NAT: its media and signaling come
/// from 198.18.9.3 (its signaling peer address), media from port 4010.
const PBX_SDP: ([u8; 4], u16) = ([198, 18, 9, 2], 4000);
const PBX_NAT: ([u8; 4], u16) = ([198, 18, 9, 3], 4010);
const PBX_SIGNALING: [u8; 4] = [198, 18, 9, 3];
/// The carrier sends from the address and port its SDP names.
const CARRIER: ([u8; 4], u16) = ([198, 18, 9, 4], 6000);
/// Someone else on the network, spraying relay ports.
const OUTSIDER: ([u8; 4], u16) = ([198, 18, 9, 66], 4000);

#[test]
fn awaiting_stream_latches_in_kernel_only_from_allowed_sources() {
    if !sbc_e2e::require_root("xdp_latch") {
        return;
    }
    let lab = lab("sxl");
    let mut x = TestRelay::load();
    let in_key = key(RELAY, IN_PORT);
    let out_key = key(RELAY, OUT_PORT);
    // PBX → relay:IN → (from relay:OUT) → carrier's SDP address; carrier → relay:OUT → PBX's
    // SDP address until the PBX latches. Both await their latch.
    x.put_mapping(
        in_key,
        mapping((RELAY, OUT_PORT), CARRIER, FLAG_IPV4 | FLAG_AWAITING_LATCH),
    );
    x.put_mapping(
        out_key,
        mapping((RELAY, IN_PORT), PBX_SDP, FLAG_IPV4 | FLAG_AWAITING_LATCH),
    );
    x.put_policy(
        in_key,
        policy([exact(PBX_SDP), address(PBX_SIGNALING), unused()], out_key),
    );
    x.put_policy(
        out_key,
        policy([exact(CARRIER), unused(), unused()], in_key),
    );
    x.put_range(0, RELAY, 30_000, 30_099);

    // 1. Before any latch, the outsider gets nothing and latches nothing: from a foreign
    //    address, and from the PBX's SDP address with the wrong port.
    let before = x.stats();
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, IN_PORT), 0)).0, XDP_DROP);
    assert_eq!(
        x.run(&udp(([198, 18, 9, 2], 4001), (RELAY, IN_PORT), 0)).0,
        XDP_DROP
    );
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, OUT_PORT), 0)).0, XDP_DROP);
    assert_eq!(x.delta(&before, Stat::DropNotAllowed), 3);
    assert_eq!(x.delta(&before, Stat::Latched), 0);
    assert_eq!(
        x.mapping(in_key).flags & FLAG_AWAITING_LATCH,
        FLAG_AWAITING_LATCH
    );
    assert!(x.events().is_empty(), "no latch, no event");

    // 2. The PBX (from its signaling address, NAT'd port) latches the inside port: forwarded in
    //    the kernel to the carrier, from the outside relay port, with valid checksums.
    let before = x.stats();
    let (verdict, out) = x.run(&udp(PBX_NAT, (RELAY, IN_PORT), 0));
    assert_eq!(
        verdict,
        XDP_REDIRECT,
        "latched and redirected: {}",
        x.changed(&before)
    );
    assert_eq!(addresses(&out), ((RELAY, OUT_PORT), CARRIER));
    assert!(
        sbc_e2e::frame::checksums_valid(&out),
        "checksums after the rewrite"
    );
    assert_eq!(x.delta(&before, Stat::Latched), 1);
    assert_eq!(x.delta(&before, Stat::Redirected), 1);
    let latched = x.mapping(in_key);
    assert_eq!(latched.flags, FLAG_IPV4 | FLAG_STRICT_SOURCE);
    assert_eq!(latched.expect_addr, ipv4_mapped(PBX_NAT.0));
    assert_eq!(latched.expect_port, PBX_NAT.1.to_be());
    // The reverse mapping now sends to where the PBX really is, and still awaits the carrier.
    let reverse = x.mapping(out_key);
    assert_eq!(reverse.dst_addr, ipv4_mapped(PBX_NAT.0));
    assert_eq!(reverse.dst_port, PBX_NAT.1.to_be());
    assert_eq!(reverse.flags & FLAG_AWAITING_LATCH, FLAG_AWAITING_LATCH);
    assert_eq!(
        x.events(),
        vec![LatchEvent {
            key: in_key,
            peer_addr: ipv4_mapped(PBX_NAT.0),
            peer_port: PBX_NAT.1.to_be(),
            pad: 0,
        }]
    );

    // 3. Latched means strict: the outsider (and the PBX's SDP address, also allowed before
    //    the latch) can no longer take the port over.
    let before = x.stats();
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, IN_PORT), 0)).0, XDP_DROP);
    assert_eq!(x.run(&udp(PBX_SDP, (RELAY, IN_PORT), 0)).0, XDP_DROP);
    assert_eq!(x.delta(&before, Stat::DropStrictSource), 2);
    assert_eq!(x.mapping(in_key).expect_addr, ipv4_mapped(PBX_NAT.0));

    // 4. The carrier latches the outside port; its media reaches the PBX's NAT address learned
    //    in step 2, not the address in the PBX's SDP.
    let (verdict, out) = x.run(&udp(CARRIER, (RELAY, OUT_PORT), 0));
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(addresses(&out), ((RELAY, IN_PORT), PBX_NAT));
    assert!(
        sbc_e2e::frame::checksums_valid(&out),
        "checksums after the rewrite"
    );
    assert_eq!(x.mapping(in_key).dst_port, CARRIER.1.to_be());
    assert_eq!(x.events().len(), 1);

    // 5. Relay ports without a mapping are dropped; ports outside the range are passed.
    let before = x.stats();
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, 30_050), 0)).0, XDP_DROP);
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, 5060), 0)).0, XDP_PASS);
    assert_eq!(
        x.run(&udp(OUTSIDER, ([198, 18, 9, 9], 30_050), 0)).0,
        XDP_PASS
    );
    assert_eq!(x.delta(&before, Stat::DropUnallocated), 1);
    assert_eq!(x.delta(&before, Stat::PassNoMapping), 2);
    drop(lab);
}

#[test]
fn pass_flag_rtcp_and_unknown_destination() {
    if !sbc_e2e::require_root("xdp_latch") {
        return;
    }
    let _lab = lab("sxm");
    let mut x = TestRelay::load();
    x.put_range(0, RELAY, 30_000, 30_099);

    // A stream userspace must handle (SRTP, diagnosis) keeps its port allocated but passed.
    let srtp = key(RELAY, 30_010);
    x.put_mapping(
        srtp,
        mapping((RELAY, 30_012), CARRIER, FLAG_IPV4 | FLAG_PASS),
    );
    let before = x.stats();
    assert_eq!(x.run(&udp(OUTSIDER, (RELAY, 30_010), 0)).0, XDP_PASS);
    assert_eq!(x.delta(&before, Stat::PassFlagged), 1);

    // RTCP on an awaiting mux port latches, then is passed for its reports (today's
    // behaviour) unless the stream asks for in-kernel forwarding.
    let mux = key(RELAY, 30_020);
    x.put_mapping(
        mux,
        mapping((RELAY, 30_022), CARRIER, FLAG_IPV4 | FLAG_AWAITING_LATCH),
    );
    x.put_policy(mux, lone_policy(exact(PBX_SDP)));
    let before = x.stats();
    assert_eq!(x.run(&udp(PBX_SDP, (RELAY, 30_020), 200)).0, XDP_PASS);
    assert_eq!(x.delta(&before, Stat::Latched), 1);
    assert_eq!(x.delta(&before, Stat::PassRtcp), 1);
    let mut m = x.mapping(mux);
    m.flags |= FLAG_FORWARD_RTCP;
    x.put_mapping(mux, m);
    assert_eq!(x.run(&udp(PBX_SDP, (RELAY, 30_020), 200)).0, XDP_REDIRECT);

    // The allowed source latches a mapping whose destination is unknown (the other side has
    // no SDP yet): latched, but the packet has nowhere to go.
    let early = key(RELAY, 30_030);
    x.put_mapping(
        early,
        mapping(
            (RELAY, 30_032),
            ([0; 4], 0),
            FLAG_IPV4 | FLAG_AWAITING_LATCH,
        ),
    );
    x.put_policy(early, lone_policy(exact(CARRIER)));
    let before = x.stats();
    assert_eq!(x.run(&udp(CARRIER, (RELAY, 30_030), 0)).0, XDP_DROP);
    assert_eq!(x.delta(&before, Stat::Latched), 1);
    assert_eq!(x.delta(&before, Stat::DropNoDestination), 1);

    // An awaiting mapping without a policy fails closed.
    let orphan = key(RELAY, 30_040);
    x.put_mapping(
        orphan,
        mapping((RELAY, 30_042), CARRIER, FLAG_IPV4 | FLAG_AWAITING_LATCH),
    );
    assert_eq!(x.run(&udp(PBX_SDP, (RELAY, 30_040), 0)).0, XDP_DROP);
    assert_eq!(
        x.mapping(orphan).flags & FLAG_AWAITING_LATCH,
        FLAG_AWAITING_LATCH
    );
}

/// A statistics slot is reused without zeroing it (issue 16: one `bpf` syscall less per
/// mapping installed): the program starts the counters of a mapping of a new generation from
/// zero on each CPU where it counts, and the other CPUs' counters stay the former mapping's,
/// which userspace leaves out by their generation.
#[test]
fn reused_stats_slot_counts_from_zero_for_a_new_generation() {
    if !sbc_e2e::require_root("xdp_latch") {
        return;
    }
    let _lab = lab("sxg");
    let mut x = TestRelay::load();
    let k = key(RELAY, IN_PORT);
    let latched = |generation: u32| Mapping {
        expect_addr: ipv4_mapped(PBX_SDP.0),
        expect_port: PBX_SDP.1.to_be(),
        slot: 3,
        generation,
        ..mapping((RELAY, OUT_PORT), CARRIER, FLAG_IPV4 | FLAG_STRICT_SOURCE)
    };
    // A former mapping's counters on every CPU.
    let former = MappingStats {
        packets: 1000,
        bytes: 90_000,
        last_seen_ns: 1,
        generation: 6,
        pad: 0,
    };
    x.put_slot_stats(3, former);
    x.put_mapping(k, latched(7));
    let frame = udp(PBX_SDP, (RELAY, IN_PORT), 0);
    // (Summed over the CPUs of generation 7: the test thread may move between runs.)
    for n in 1..=2 {
        assert_eq!(x.run(&frame).0, XDP_REDIRECT);
        let cpus = x.slot_stats(3);
        let mine = cpus.iter().filter(|s| s.generation == 7);
        let (packets, bytes) = mine.fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
        assert_eq!((packets, bytes), (n, n * frame.len() as u64), "{cpus:?}");
        assert!(
            cpus.iter().all(|s| s.generation == 7 || *s == former),
            "the CPUs that did not count keep the former counters: {cpus:?}"
        );
    }
    // Rewritten in place (same generation): the counters go on.
    x.put_mapping(k, latched(7));
    assert_eq!(x.run(&frame).0, XDP_REDIRECT);
    let packets = |x: &mut TestRelay, g: u32| -> u64 {
        x.slot_stats(3)
            .iter()
            .filter(|s| s.generation == g)
            .map(|s| s.packets)
            .sum()
    };
    assert_eq!(packets(&mut x, 7), 3);
    // A new mapping on the slot: from zero again.
    x.put_mapping(k, latched(8));
    assert_eq!(x.run(&frame).0, XDP_REDIRECT);
    assert_eq!(packets(&mut x, 8), 1);
    assert!(
        packets(&mut x, 7) < 3,
        "the CPU that counted 8 dropped its count of 7"
    );
}

/// The SBC's namespace, with next hops for the PBX and carrier addresses. 198.18.0.0/15
/// (benchmarking range) exists only inside the namespaces this creates.
fn lab(prefix: &str) -> FibLab {
    FibLab::new(
        prefix,
        "198.18.9.1/24",
        "198.18.9.2/24",
        &[PBX_SDP.0, PBX_NAT.0, CARRIER.0],
    )
}

fn key(addr: [u8; 4], port: u16) -> MappingKey {
    MappingKey {
        addr: ipv4_mapped(addr),
        port: port.to_be(),
        pad: 0,
    }
}

/// A mapping that sends from `via` to `to`, with no expected source yet.
fn mapping(via: ([u8; 4], u16), to: ([u8; 4], u16), flags: u16) -> Mapping {
    Mapping {
        src_addr: ipv4_mapped(via.0),
        dst_addr: if to.1 == 0 {
            [0; 16]
        } else {
            ipv4_mapped(to.0)
        },
        expect_addr: [0; 16],
        src_port: via.1.to_be(),
        dst_port: to.1.to_be(),
        expect_port: 0,
        flags,
        slot: 0,
        generation: 0,
    }
}

fn policy(sources: [AllowedSource; 3], reverse: MappingKey) -> LatchPolicy {
    LatchPolicy {
        sources,
        reverse,
        flags: LATCH_HAS_REVERSE,
    }
}

/// One allowed source and no reverse mapping.
fn lone_policy(source: AllowedSource) -> LatchPolicy {
    LatchPolicy {
        sources: [source, unused(), unused()],
        reverse: MappingKey::default(),
        flags: 0,
    }
}

/// The address and port a peer's SDP names.
fn exact(peer: ([u8; 4], u16)) -> AllowedSource {
    AllowedSource {
        addr: ipv4_mapped(peer.0),
        port: peer.1.to_be(),
        prefix_len: 128,
    }
}

/// A signaling peer: its address, any port.
fn address(addr: [u8; 4]) -> AllowedSource {
    AllowedSource {
        addr: ipv4_mapped(addr),
        port: 0,
        prefix_len: 128,
    }
}

fn unused() -> AllowedSource {
    AllowedSource::default()
}
