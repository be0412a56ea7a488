//! In-kernel latching, proven on the real XDP object with `BPF_PROG_TEST_RUN`: crafted frames run
//! through the loaded program inside a namespace this test creates (so `bpf_fib_lookup` resolves
//! next hops there), and the verdict, the rewritten frame, the maps, the latch events and the
//! counters are checked.
//!
//! A stream awaiting its latch latches only from a source its policy allows (here: the PBX's
//! signaling address, any port, as for a NAT'd PBX); the learned peer becomes the reverse
//! mapping's destination. An outsider spraying the relay port is dropped before and after the
//! latch; a relay port without a mapping is dropped; anything else is passed.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use sbc_e2e::netns::{Netns, veth_pair};
use sbc_ebpf_common::{
    AllowedSource, FLAG_AWAITING_LATCH, FLAG_FORWARD_RTCP, FLAG_IPV4, FLAG_PASS,
    FLAG_STRICT_SOURCE, LATCH_HAS_REVERSE, LatchEvent, LatchPolicy, MAP_LATCH_EVENTS,
    MAP_LATCH_POLICIES, MAP_MAPPINGS, MAP_RELAY_RANGES, MAP_STATS, Mapping, MappingKey,
    PROGRAM_NAME, RelayRange, Stat, ipv4_mapped,
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
    let lab = Lab::new("sxl");
    let mut x = Xdp1::load();
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
    assert_checksums_valid(&out);
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
    assert_checksums_valid(&out);
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
    let _lab = Lab::new("sxm");
    let mut x = Xdp1::load();
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

/// Two namespaces joined by a veth, the test thread inside the SBC's one: `BPF_PROG_TEST_RUN`
/// runs the program as if the frame arrived on that namespace's loopback, so its FIB lookups
/// resolve there. The peers' next hops are permanent neighbour entries (no ARP in a test run).
struct Lab {
    _enter: sbc_e2e::netns::EnterGuard,
    _peer: Netns,
    _sbc: Netns,
}

impl Lab {
    fn new(prefix: &str) -> Self {
        let sbc = Netns::new(&format!("{prefix}s")).expect("create sbc netns");
        let peer = Netns::new(&format!("{prefix}p")).expect("create peer netns");
        // 198.18.0.0/15 (benchmarking range) exists only inside these namespaces.
        let (sbc_if, _) =
            veth_pair(&sbc, "198.18.9.1/24", &peer, "198.18.9.2/24").expect("create veth pair");
        for (i, host) in [PBX_SDP.0, PBX_NAT.0, CARRIER.0].iter().enumerate() {
            let addr = Ipv4Addr::from(*host).to_string();
            let mac = format!("02:00:00:00:00:{:02x}", i + 2);
            let out = sbc
                .exec_ip(&[
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    &mac,
                    "dev",
                    &sbc_if,
                    "nud",
                    "permanent",
                ])
                .expect("add neighbour");
            assert!(out.status.success(), "ip neigh: {out:?}");
        }
        // A test run's frame arrives on the namespace's loopback, and bpf_fib_lookup needs
        // forwarding on the ingress interface (see docs/media.md).
        let up = sbc.exec_ip(&["link", "set", "lo", "up"]).expect("lo up");
        assert!(up.status.success(), "ip link set lo up: {up:?}");
        let ok = sbc
            .command("sysctl")
            .args(["-qw", "net.ipv4.conf.lo.forwarding=1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sysctl forwarding");
        let enter = sbc.enter().expect("enter sbc netns");
        Self {
            _enter: enter,
            _peer: peer,
            _sbc: sbc,
        }
    }
}

/// The embedded XDP object, loaded (not attached), with typed access to its maps.
struct Xdp1 {
    ebpf: Ebpf,
}

impl Xdp1 {
    fn load() -> Self {
        let mut ebpf = Ebpf::load(sbc::media::xdp::OBJECT).expect("load the embedded XDP object");
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("program")
            .try_into()
            .expect("an XDP program");
        program.load().expect("the verifier accepts the program");
        Self { ebpf }
    }

    /// Runs the program once on `frame`; returns the verdict and the frame as it left.
    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .expect("program")
            .try_into()
            .expect("an XDP program");
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn mappings(&mut self) -> HashMap<&mut MapData, MappingKey, Mapping> {
        HashMap::try_from(self.ebpf.map_mut(MAP_MAPPINGS).expect("mappings map")).expect("hash")
    }

    fn put_mapping(&mut self, k: MappingKey, m: Mapping) {
        self.mappings().insert(k, m, 0).expect("insert mapping");
    }

    fn mapping(&mut self, k: MappingKey) -> Mapping {
        self.mappings().get(&k, 0).expect("mapping present")
    }

    fn put_policy(&mut self, k: MappingKey, p: LatchPolicy) {
        let map = self.ebpf.map_mut(MAP_LATCH_POLICIES).expect("policies map");
        let mut h: HashMap<&mut MapData, MappingKey, LatchPolicy> =
            HashMap::try_from(map).expect("hash");
        h.insert(k, p, 0).expect("insert policy");
    }

    fn put_range(&mut self, index: u32, addr: [u8; 4], min: u16, max: u16) {
        let map = self.ebpf.map_mut(MAP_RELAY_RANGES).expect("ranges map");
        let mut a: Array<&mut MapData, RelayRange> = Array::try_from(map).expect("array");
        let range = RelayRange {
            addr: ipv4_mapped(addr),
            port_min: min,
            port_max: max,
        };
        a.set(index, range, 0).expect("set range");
    }

    /// Drains the latch events reported since the last call.
    fn events(&mut self) -> Vec<LatchEvent> {
        let map = self.ebpf.map_mut(MAP_LATCH_EVENTS).expect("events map");
        let mut ring = RingBuf::try_from(map).expect("ring buffer");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), size_of::<LatchEvent>());
            let mut e = LatchEvent::default();
            // Field by field from the wire layout the ABI fixes (see the layout test).
            e.key.addr.copy_from_slice(&item[0..16]);
            e.key.port = u16::from_ne_bytes([item[16], item[17]]);
            e.key.pad = u16::from_ne_bytes([item[18], item[19]]);
            e.peer_addr.copy_from_slice(&item[20..36]);
            e.peer_port = u16::from_ne_bytes([item[36], item[37]]);
            e.pad = u16::from_ne_bytes([item[38], item[39]]);
            out.push(e);
        }
        out
    }

    fn stats(&self) -> Vec<u64> {
        let map = self.ebpf.map(MAP_STATS).expect("stats map");
        let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).expect("per-cpu array");
        Stat::ALL
            .iter()
            .map(|s| a.get(&(*s as u32), 0).expect("counter").iter().sum::<u64>())
            .collect()
    }

    /// The counters that moved since `before`, for failure messages.
    fn changed(&self, before: &[u64]) -> String {
        let now = self.stats();
        Stat::ALL
            .iter()
            .filter(|s| now[**s as usize] != before[**s as usize])
            .map(|s| format!("{}+{} ", s.name(), now[*s as usize] - before[*s as usize]))
            .collect()
    }

    fn delta(&self, before: &[u64], s: Stat) -> u64 {
        self.stats()[s as usize] - before[s as usize]
    }
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

/// An Ethernet/IPv4/UDP frame with valid checksums and a 160-byte RTP (or, with `rtcp_pt`,
/// RTCP) payload.
fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), rtcp_pt: u8) -> Vec<u8> {
    let payload_len = 160usize;
    let udp_len = 8 + payload_len;
    let mut f = vec![0u8; 14 + 20 + udp_len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.0);
    ip[16..20].copy_from_slice(&dst.0);
    let c = checksum(&[&f[14..34]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&src.1.to_be_bytes());
    f[36..38].copy_from_slice(&dst.1.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[42] = 0x80;
    f[43] = if rtcp_pt != 0 { rtcp_pt } else { 0 };
    let c = udp_checksum(&f);
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

/// ((source address, port), (destination address, port)) of a frame.
fn addresses(f: &[u8]) -> (([u8; 4], u16), ([u8; 4], u16)) {
    let a = |o: usize| [f[o], f[o + 1], f[o + 2], f[o + 3]];
    let p = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    ((a(26), p(34)), (a(30), p(36)))
}

fn assert_checksums_valid(f: &[u8]) {
    assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
    let mut zeroed = f.to_vec();
    zeroed[40..42].copy_from_slice(&[0, 0]);
    let c = udp_checksum(&zeroed);
    assert_eq!(u16::from_be_bytes([f[40], f[41]]), c, "UDP checksum");
}

/// The UDP checksum of an Ethernet/IPv4/UDP frame whose checksum field is zero.
fn udp_checksum(f: &[u8]) -> u16 {
    let udp = &f[34..];
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    match checksum(&[&pseudo, udp]) {
        0 => 0xffff,
        c => c,
    }
}

/// RFC 1071 Internet checksum over the concatenation of `parts` (each of even length but the
/// last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for w in part.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
