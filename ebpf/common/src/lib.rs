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
/// Name of the hash map from [`MappingKey`] to [`LatchPolicy`]: who may latch a mapping that
/// awaits its latch ([`FLAG_AWAITING_LATCH`]), and which mapping learns the latched peer.
pub const MAP_LATCH_POLICIES: &str = "SBC_LATCH_POLICIES";
/// Name of the ring buffer of [`LatchEvent`]s: one per latch made in the kernel. A ring buffer
/// rather than a scan of [`MAP_MAPPINGS`]: latches are rare (one per direction per call), so the
/// control plane wakes once per latch instead of walking up to [`MAX_MAPPINGS`] entries on a
/// timer, and learns the latch within one wake-up instead of one scan period.
pub const MAP_LATCH_EVENTS: &str = "SBC_LATCH_EVENTS";
/// Name of the array of [`RelayRange`]s: the relay addresses and port ranges the SBC owns.
/// A UDP packet to one of them with no mapping is dropped in XDP instead of passed.
pub const MAP_RELAY_RANGES: &str = "SBC_RELAY_RANGES";
/// Name of the `XSKMAP` of AF_XDP sockets that take the packets of [`FLAG_XSK`] mappings,
/// indexed by an interface's base ([`MAP_XSK_IFACES`]) plus the packet's RX queue.
pub const MAP_XSKS: &str = "SBC_XSKS";
/// Name of the hash map from an ingress ifindex (`u32`) to its first index in [`MAP_XSKS`]
/// (an XSKMAP is indexed by queue only, and a socket receives only from the interface and
/// queue it is bound to, so each interface gets its own run of entries).
pub const MAP_XSK_IFACES: &str = "SBC_XSK_IFACES";
/// Entries of [`MAP_XSKS`]: interfaces × RX queues.
pub const MAX_XSKS: u32 = 256;
/// Entries of [`MAP_XSK_IFACES`].
pub const MAX_XSK_IFACES: u32 = 64;
/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "sbc_relay";
/// The object file's size of the mapping maps (each RTP or RTCP direction of a stream is one
/// mapping). The SBC's loader resizes them to what its media port range needs (one mapping
/// per relay port and media address), so this is only the default of the bare object.
pub const MAX_MAPPINGS: u32 = 65_536;

/// Mapping flag: drop packets whose source differs from the latched peer (`expect_*`).
/// Without it such packets are passed to userspace, never forwarded by XDP.
pub const FLAG_STRICT_SOURCE: u16 = 1;
/// Mapping flag: the egress side is IPv4 (addresses are IPv4-mapped).
pub const FLAG_IPV4: u16 = 2;
/// Mapping flag: the ingress peer is not latched yet. The first packet from a source that the
/// mapping's [`LatchPolicy`] allows latches it in the kernel (sets `expect_*`, clears this flag,
/// sets [`FLAG_STRICT_SOURCE`], writes the peer into the reverse mapping's destination, emits a
/// [`LatchEvent`]) and is forwarded; packets from any other source are dropped. A mapping with
/// this flag and no policy drops everything (fails closed).
pub const FLAG_AWAITING_LATCH: u16 = 4;
/// Mapping flag: every packet goes to userspace (`XDP_PASS`), e.g. SRTP or a stream under
/// diagnosis whose relay port has a socket. It keeps the port "allocated" so that the
/// [`RelayRange`] drop does not apply.
pub const FLAG_PASS: u16 = 8;
/// Mapping flag: RTCP (packet types 192-223) is forwarded in XDP like RTP. Without it RTCP is
/// passed to userspace, which reads the reports (the behaviour before in-kernel latching); a
/// stream whose relay port has no socket sets it, or its RTCP would be lost.
pub const FLAG_FORWARD_RTCP: u16 = 16;

/// Mapping flag (with [`FLAG_PASS`]): the packets go to the SBC's AF_XDP socket on the
/// ingress interface and queue (`bpf_redirect_map` on [`MAP_XSKS`]) instead of up the network
/// stack to the relay socket; without a registered socket they still go up (`XDP_PASS`), so
/// the socket relay stays the fallback. Used for streams userspace must transform (SRTP).
pub const FLAG_XSK: u16 = 32;

/// Number of [`AllowedSource`] entries in a [`LatchPolicy`]: the peer's SDP address and port,
/// the leg's signaling peer, and one configured media network (issue 13's latching policy).
pub const LATCH_SOURCES: usize = 3;
/// [`LatchPolicy::flags`] bit: `reverse` names the mapping that sends towards this peer.
pub const LATCH_HAS_REVERSE: u32 = 1;
/// Maximum number of [`RelayRange`] entries: one per relay address, up to eight per side
/// (`media_addresses`). The program walks them only for packets that match no mapping.
pub const MAX_RELAY_RANGES: u32 = 16;
/// Size in bytes of the [`MAP_LATCH_EVENTS`] ring buffer (a power of two and a multiple of the
/// page size): about 1,300 latches between two reads by the control plane.
pub const LATCH_EVENTS_BYTES: u32 = 64 * 1024;

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
    /// Index of this mapping's counters in [`MAP_MAPPING_STATS`] (below the map's size),
    /// allocated by the control plane. A slot is reused once its mapping is gone.
    pub slot: u32,
    /// Which use of the slot this mapping is ([`MappingStats::generation`]): the control plane
    /// gives every newly installed mapping a new one and keeps it while it rewrites that
    /// mapping in place. The program starts the slot's counters from zero on a CPU whose
    /// counters carry another generation, and userspace sums only those carrying this one,
    /// so reusing a slot needs no map write to zero it.
    pub generation: u32,
}

/// One source allowed to latch an awaiting mapping: an address prefix and an optional port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AllowedSource {
    /// Address, network byte order, IPv4-mapped for IPv4. Bits past `prefix_len` are ignored.
    pub addr: [u8; 16],
    /// Required source port, network byte order; 0 means any port (a signaling peer or a
    /// network: the RTP port is not known in advance).
    pub port: u16,
    /// Number of leading bits of `addr` that must match, host byte order: 128 for one IPv6
    /// address, 96 + n for an IPv4 /n (IPv4-mapped). 0 marks an unused entry (a /0 would let
    /// anyone latch, which the policy never allows); values above 128 are unused entries too.
    pub prefix_len: u16,
}

/// Who may latch an awaiting mapping, and which mapping learns the latched peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LatchPolicy {
    /// Allowed sources; a packet latches if it matches any used entry.
    pub sources: [AllowedSource; LATCH_SOURCES],
    /// The reverse-direction mapping (the other side's relay address and port, whose packets
    /// go to this peer): the latch writes the peer into its `dst_*`. Valid with
    /// [`LATCH_HAS_REVERSE`].
    pub reverse: MappingKey,
    /// `LATCH_*` bits.
    pub flags: u32,
}

/// Reported on [`MAP_LATCH_EVENTS`] for each latch made in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LatchEvent {
    /// The mapping that latched (relay address and port the packet arrived on).
    pub key: MappingKey,
    /// The latched peer's address, network byte order, IPv4-mapped for IPv4.
    pub peer_addr: [u8; 16],
    /// The latched peer's port, network byte order.
    pub peer_port: u16,
    /// Always zero; keeps the event free of implicit padding.
    pub pad: u16,
}

/// Relay ports the SBC owns on one relay address: a packet to them that matches no mapping is
/// dropped in XDP (nobody else listens there once relay ports have no sockets).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RelayRange {
    /// Relay address, network byte order, IPv4-mapped for IPv4.
    pub addr: [u8; 16],
    /// First port of the range, host byte order (compared numerically).
    pub port_min: u16,
    /// Last port of the range (inclusive), host byte order; 0 marks an unused entry.
    pub port_max: u16,
}

/// Per-CPU counters of one mapping. Userspace sums packets and bytes and takes the maximum
/// `last_seen_ns` over the CPUs whose `generation` is the mapping's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MappingStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (UDP payload and headers, as received).
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last forwarded packet.
    pub last_seen_ns: u64,
    /// The [`Mapping::generation`] these counters belong to; counters of another generation
    /// are a former mapping's on this slot.
    pub generation: u32,
    /// Always zero; keeps the value free of implicit padding.
    pub pad: u32,
}

/// Indexes of the global per-CPU counters in [`MAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every frame the program saw.
    Rx = 0,
    /// UDP datagrams (IPv4 or IPv6) that were looked up (a packet that latches a mapping is
    /// looked up twice: before and after its latch).
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
    /// An awaiting mapping latched in the kernel (a [`LatchEvent`] was emitted or lost).
    Latched = 11,
    /// Dropped: a packet to an awaiting mapping from a source its policy does not allow (an
    /// outsider spraying relay ports), or to an awaiting mapping without a policy.
    DropNotAllowed = 12,
    /// Dropped: a packet to a relay port in a [`RelayRange`] with no mapping.
    DropUnallocated = 13,
    /// Passed: the mapping has [`FLAG_PASS`] (userspace handles the stream).
    PassFlagged = 14,
    /// The ring buffer was full: a latch happened in the map but its event was lost (the
    /// control plane finds it by reading the mapping).
    LatchEventLost = 15,
    /// Dropped: the packet latched (or matched) a mapping whose destination is not known yet
    /// (the other side has neither SDP nor a latch).
    DropNoDestination = 16,
    /// Redirected to the SBC's AF_XDP socket ([`FLAG_XSK`]).
    ToXsk = 17,
}

impl Stat {
    /// Number of counters in [`MAP_STATS`].
    pub const COUNT: u32 = 18;
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
        Stat::Latched,
        Stat::DropNotAllowed,
        Stat::DropUnallocated,
        Stat::PassFlagged,
        Stat::LatchEventLost,
        Stat::DropNoDestination,
        Stat::ToXsk,
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
            Stat::Latched => "latched",
            Stat::DropNotAllowed => "drop_not_allowed",
            Stat::DropUnallocated => "drop_unallocated",
            Stat::PassFlagged => "pass_flagged",
            Stat::LatchEventLost => "latch_event_lost",
            Stat::DropNoDestination => "drop_no_destination",
            Stat::ToXsk => "to_xsk",
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
    // SAFETY: as above; 3×16 + 4×2 + 2×4 bytes, no implicit padding.
    unsafe impl aya::Pod for super::Mapping {}
    // SAFETY: three u64 and two u32, no implicit padding, every bit pattern valid.
    unsafe impl aya::Pod for super::MappingStats {}
    // SAFETY: 16 + 2 + 2 bytes of integers, alignment 2, no implicit padding.
    unsafe impl aya::Pod for super::AllowedSource {}
    // SAFETY: 3 × 20 + 20 + 4 bytes of integers; the u32 sits at offset 80 (aligned), no
    // implicit padding.
    unsafe impl aya::Pod for super::LatchPolicy {}
    // SAFETY: 20 + 16 + 2 + 2 bytes of integers with an explicit padding field.
    unsafe impl aya::Pod for super::LatchEvent {}
    // SAFETY: 16 + 2 + 2 bytes of integers, no implicit padding.
    unsafe impl aya::Pod for super::RelayRange {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<MappingKey>(), 20);
        assert_eq!(core::mem::size_of::<Mapping>(), 64);
        assert_eq!(core::mem::offset_of!(Mapping, generation), 60);
        assert_eq!(core::mem::size_of::<MappingStats>(), 32);
        assert_eq!(core::mem::size_of::<AllowedSource>(), 20);
        assert_eq!(core::mem::size_of::<LatchPolicy>(), 84);
        assert_eq!(core::mem::offset_of!(LatchPolicy, reverse), 60);
        assert_eq!(core::mem::offset_of!(LatchPolicy, flags), 80);
        assert_eq!(core::mem::size_of::<LatchEvent>(), 40);
        assert_eq!(core::mem::size_of::<RelayRange>(), 20);
    }

    #[test]
    fn flags_are_distinct_bits() {
        let all = [
            FLAG_STRICT_SOURCE,
            FLAG_IPV4,
            FLAG_AWAITING_LATCH,
            FLAG_PASS,
            FLAG_FORWARD_RTCP,
            FLAG_XSK,
        ];
        for (i, f) in all.iter().enumerate() {
            assert_eq!(f.count_ones(), 1);
            for g in &all[i + 1..] {
                assert_eq!(f & g, 0);
            }
        }
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
