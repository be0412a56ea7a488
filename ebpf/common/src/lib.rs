//! The ABI between the XDP relay program and the SBC: map names, key and value layouts.
//!
//! Every type is `#[repr(C)]` with explicit padding fields so that no byte of a key is left
//! uninitialised (the kernel hashes keys bytewise). Addresses and ports are stored in network
//! byte order exactly as they appear on the wire, so the XDP program never swaps bytes on the
//! fast path. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) in 16 bytes.
#![no_std]

/// Name of the hash map from [`MappingKey`] to [`Mapping`].
pub const MAP_MAPPINGS: &str = "SBC_MAPPINGS";
/// Name of the per-CPU array of [`MappingStats`], indexed by [`Mapping::slot`]. An array
/// rather than a hash keyed like the mappings: one computed index instead of a second hash
/// lookup per packet, and compact slots keep the counters of many streams in few cache lines.
pub const MAP_MAPPING_STATS: &str = "SBC_SLOT_STATS";
/// Name of the per-CPU array of global counters, indexed by [`Stat`].
pub const MAP_STATS: &str = "SBC_STATS";
/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "sbc_relay";
/// Maximum number of concurrent mappings (each RTP or RTCP direction of a stream is one).
pub const MAX_MAPPINGS: u32 = 65_536;

/// Mapping flag: drop packets whose source differs from the latched peer (`expect_*`).
/// Without it such packets are passed to userspace, never forwarded by XDP.
pub const FLAG_STRICT_SOURCE: u16 = 1;
/// Mapping flag: the egress side is IPv4 (addresses are IPv4-mapped).
pub const FLAG_IPV4: u16 = 2;

/// Where a relayed packet arrives: the SBC's relay address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MappingKey {
    /// Destination address, network byte order, IPv4-mapped for IPv4.
    pub addr: [u8; 16],
    /// Destination UDP port, network byte order.
    pub port: u16,
    /// Always zero; keeps the key free of implicit padding.
    pub pad: u16,
}

/// What to do with a packet that matched a [`MappingKey`]: rewrite and send it on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mapping {
    /// New source address (the SBC's relay address on the egress side).
    pub src_addr: [u8; 16],
    /// New destination address (the latched peer on the egress side).
    pub dst_addr: [u8; 16],
    /// Expected source of ingress packets (the latched peer on the ingress side).
    pub expect_addr: [u8; 16],
    /// New source port, network byte order.
    pub src_port: u16,
    /// New destination port, network byte order.
    pub dst_port: u16,
    /// Expected ingress source port, network byte order.
    pub expect_port: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Index of this mapping's counters in [`MAP_MAPPING_STATS`] (`< MAX_MAPPINGS`), allocated
    /// by the control plane, which zeroes the slot before installing the mapping.
    pub slot: u32,
}

/// Per-CPU counters of one mapping. Userspace sums packets and bytes and takes the maximum
/// `last_seen_ns` over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MappingStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (UDP payload and headers, as received).
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last forwarded packet.
    pub last_seen_ns: u64,
}

/// Indexes of the global per-CPU counters in [`MAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every frame the program saw.
    Rx = 0,
    /// UDP datagrams (IPv4 or IPv6) that were looked up.
    RxUdp = 1,
    /// Passed: not IPv4/IPv6 or not UDP.
    PassNotUdp = 2,
    /// Passed: IPv4 fragment or IPv4 header with options, or IPv6 extension headers.
    PassUnsupported = 3,
    /// Passed: no mapping for the destination.
    PassNoMapping = 4,
    /// Passed: the FIB lookup did not give a next hop (userspace will route it).
    PassFibMiss = 5,
    /// Dropped: source did not match a strict latched mapping.
    DropStrictSource = 6,
    /// Redirected to the egress interface.
    Redirected = 7,
    /// Passed: truncated or malformed headers.
    PassMalformed = 8,
    /// Passed: a non-strict mapping, but the source is not the latched peer (userspace decides
    /// whether the latch moves, e.g. after a NAT rebinding).
    PassOtherSource = 9,
    /// Passed: RTCP (RFC 5761 packet types 192-223, e.g. on an rtcp-mux port), so that the
    /// userspace relay reads receiver reports for loss and jitter.
    PassRtcp = 10,
}

impl Stat {
    /// Number of counters in [`MAP_STATS`].
    pub const COUNT: u32 = 11;
    /// All counters in index order.
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Rx,
        Stat::RxUdp,
        Stat::PassNotUdp,
        Stat::PassUnsupported,
        Stat::PassNoMapping,
        Stat::PassFibMiss,
        Stat::DropStrictSource,
        Stat::Redirected,
        Stat::PassMalformed,
        Stat::PassOtherSource,
        Stat::PassRtcp,
    ];

    /// Stable snake_case name used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Rx => "rx",
            Stat::RxUdp => "rx_udp",
            Stat::PassNotUdp => "pass_not_udp",
            Stat::PassUnsupported => "pass_unsupported",
            Stat::PassNoMapping => "pass_no_mapping",
            Stat::PassFibMiss => "pass_fib_miss",
            Stat::DropStrictSource => "drop_strict_source",
            Stat::Redirected => "redirected",
            Stat::PassMalformed => "pass_malformed",
            Stat::PassOtherSource => "pass_other_source",
            Stat::PassRtcp => "pass_rtcp",
        }
    }
}

/// Builds an IPv4-mapped IPv6 address from IPv4 octets.
pub const fn ipv4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: MappingKey is repr(C), made only of integers and integer arrays, with an explicit
    // padding field, so every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::MappingKey {}
    // SAFETY: as above; 3×16 + 4×2 + 4 bytes, no implicit padding.
    unsafe impl aya::Pod for super::Mapping {}
    // SAFETY: three u64, no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::MappingStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<MappingKey>(), 20);
        assert_eq!(core::mem::size_of::<Mapping>(), 60);
        assert_eq!(core::mem::size_of::<MappingStats>(), 24);
    }

    #[test]
    fn stat_names_are_unique_and_indexed_in_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            for t in &Stat::ALL[i + 1..] {
                assert_ne!(s.name(), t.name());
            }
        }
    }
}
