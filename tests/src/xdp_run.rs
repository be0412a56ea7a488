//! The SBC's XDP object loaded but not attached, run on crafted frames with
//! `BPF_PROG_TEST_RUN`, with typed access to its maps; and the namespace it runs in.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use sbc_ebpf_common::{
    LatchEvent, LatchPolicy, MAP_LATCH_EVENTS, MAP_LATCH_POLICIES, MAP_MAPPING_STATS, MAP_MAPPINGS,
    MAP_RELAY_RANGES, MAP_STATS, Mapping, MappingKey, MappingStats, PROGRAM_NAME, RelayRange, Stat,
    ipv4_mapped,
};

use crate::netns::{EnterGuard, Netns, veth_pair};

/// Two namespaces joined by a veth, the calling thread inside the SBC's one: a test run's frame
/// arrives on that namespace's loopback, so the program's FIB lookups resolve there. Next hops
/// are permanent neighbour entries (a test run cannot wait for ARP).
#[derive(Debug)]
pub struct FibLab {
    _enter: EnterGuard,
    _peer: Netns,
    _sbc: Netns,
}

impl FibLab {
    /// The SBC namespace gets `sbc_cidr`, the peer `peer_cidr` (e.g. "198.18.9.1/24"), and
    /// `hosts` (in the veth's subnet) get neighbour entries; then the thread enters it.
    pub fn new(prefix: &str, sbc_cidr: &str, peer_cidr: &str, hosts: &[[u8; 4]]) -> Self {
        let sbc = Netns::new(&format!("{prefix}s")).expect("create sbc netns");
        let peer = Netns::new(&format!("{prefix}p")).expect("create peer netns");
        let (sbc_if, _) = veth_pair(&sbc, sbc_cidr, &peer, peer_cidr).expect("create veth pair");
        for (i, host) in hosts.iter().enumerate() {
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
                .expect("run ip neigh");
            assert!(out.status.success(), "ip neigh: {out:?}");
        }
        // bpf_fib_lookup needs forwarding on the ingress interface (see docs/media.md).
        let up = sbc
            .exec_ip(&["link", "set", "lo", "up"])
            .expect("run ip link");
        assert!(up.status.success(), "ip link set lo up: {up:?}");
        let ok = sbc
            .command("sysctl")
            .args(["-qw", "net.ipv4.conf.lo.forwarding=1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sysctl net.ipv4.conf.lo.forwarding=1");
        let enter = sbc.enter().expect("enter sbc netns");
        Self {
            _enter: enter,
            _peer: peer,
            _sbc: sbc,
        }
    }
}

/// The embedded XDP object, loaded (verified) but attached nowhere.
pub struct TestRelay {
    ebpf: Ebpf,
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay").finish_non_exhaustive()
    }
}

impl TestRelay {
    /// Loads `sbc::media::xdp::OBJECT`; panics with the verifier log if it is refused.
    pub fn load() -> Self {
        let mut ebpf = Ebpf::load(sbc::media::xdp::OBJECT).expect("load the embedded XDP object");
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("program in object")
            .try_into()
            .expect("an XDP program");
        program.load().expect("the verifier accepts the program");
        Self { ebpf }
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM_NAME)
            .expect("program in object")
            .try_into()
            .expect("an XDP program")
    }

    /// Runs the program once on `frame`; returns the verdict and the frame as it left.
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let result = self.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// Runs the program `repeat` times on `frame` in one syscall; returns the verdict and the
    /// kernel's mean duration per run in nanoseconds.
    pub fn run_repeated(&self, frame: &[u8], repeat: u32) -> (u32, u64) {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let result = self.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
        let ns = u64::try_from(result.duration.as_nanos()).unwrap_or(u64::MAX);
        (result.return_value, ns)
    }

    fn mappings(&mut self) -> HashMap<&mut MapData, MappingKey, Mapping> {
        HashMap::try_from(self.ebpf.map_mut(MAP_MAPPINGS).expect("mappings map")).expect("hash")
    }

    fn policies(&mut self) -> HashMap<&mut MapData, MappingKey, LatchPolicy> {
        let map = self.ebpf.map_mut(MAP_LATCH_POLICIES).expect("policies map");
        HashMap::try_from(map).expect("hash")
    }

    /// Installs or replaces a mapping (one `bpf(BPF_MAP_UPDATE_ELEM)`).
    pub fn put_mapping(&mut self, k: MappingKey, m: Mapping) {
        self.mappings().insert(k, m, 0).expect("insert mapping");
    }

    /// Removes a mapping (one `bpf(BPF_MAP_DELETE_ELEM)`).
    pub fn remove_mapping(&mut self, k: MappingKey) {
        self.mappings().remove(&k).expect("remove mapping");
    }

    /// The installed mapping for `k`.
    pub fn mapping(&mut self, k: MappingKey) -> Mapping {
        self.mappings().get(&k, 0).expect("mapping present")
    }

    /// Installs or replaces a latch policy.
    pub fn put_policy(&mut self, k: MappingKey, p: LatchPolicy) {
        self.policies().insert(k, p, 0).expect("insert policy");
    }

    /// Removes a latch policy.
    pub fn remove_policy(&mut self, k: MappingKey) {
        self.policies().remove(&k).expect("remove policy");
    }

    /// Sets relay range `index` to `addr`, ports `min..=max`.
    pub fn put_range(&mut self, index: u32, addr: [u8; 4], min: u16, max: u16) {
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
    pub fn events(&mut self) -> Vec<LatchEvent> {
        let map = self.ebpf.map_mut(MAP_LATCH_EVENTS).expect("events map");
        let mut ring = RingBuf::try_from(map).expect("ring buffer");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), size_of::<LatchEvent>(), "event size");
            // Field by field at the offsets the ABI's layout test fixes.
            let u16_at = |o: usize| u16::from_ne_bytes([item[o], item[o + 1]]);
            let mut e = LatchEvent::default();
            e.key.addr.copy_from_slice(&item[0..16]);
            e.key.port = u16_at(16);
            e.key.pad = u16_at(18);
            e.peer_addr.copy_from_slice(&item[20..36]);
            e.peer_port = u16_at(36);
            e.pad = u16_at(38);
            out.push(e);
        }
        out
    }

    fn slots(&mut self) -> PerCpuArray<&mut MapData, MappingStats> {
        let map = self
            .ebpf
            .map_mut(MAP_MAPPING_STATS)
            .expect("slot stats map");
        PerCpuArray::try_from(map).expect("per-cpu array")
    }

    /// Statistics slot `slot` as each CPU holds it.
    pub fn slot_stats(&mut self, slot: u32) -> Vec<MappingStats> {
        self.slots()
            .get(&slot, 0)
            .expect("slot")
            .iter()
            .copied()
            .collect()
    }

    /// Writes `value` into statistics slot `slot` on every CPU.
    pub fn put_slot_stats(&mut self, slot: u32, value: MappingStats) {
        let cpus = aya::util::nr_cpus().expect("possible CPUs");
        let values =
            aya::maps::PerCpuValues::try_from(vec![value; cpus]).expect("one value per CPU");
        self.slots().set(slot, values, 0).expect("set slot");
    }

    /// The global counters, summed over CPUs, indexed like [`Stat::ALL`].
    pub fn stats(&self) -> Vec<u64> {
        let map = self.ebpf.map(MAP_STATS).expect("stats map");
        let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).expect("per-cpu array");
        Stat::ALL
            .iter()
            .map(|s| a.get(&(*s as u32), 0).expect("counter").iter().sum::<u64>())
            .collect()
    }

    /// How much counter `s` rose since `before`.
    pub fn delta(&self, before: &[u64], s: Stat) -> u64 {
        self.stats()[s as usize] - before[s as usize]
    }

    /// The counters that moved since `before`, for failure messages.
    pub fn changed(&self, before: &[u64]) -> String {
        let now = self.stats();
        Stat::ALL
            .iter()
            .filter(|s| now[**s as usize] != before[**s as usize])
            .map(|s| format!("{}+{} ", s.name(), now[*s as usize] - before[*s as usize]))
            .collect()
    }
}
