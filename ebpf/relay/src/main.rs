//! XDP media relay: forwards RTP/RTCP between the SBC's relay ports without waking userspace,
//! and latches streams that await their peer.
//!
//! Per packet: parse Ethernet / IPv4 or IPv6 / UDP, look the (destination address, destination
//! port) up in `SBC_MAPPINGS`. A mapping awaiting its latch is latched by a packet from a source
//! its `SBC_LATCH_POLICIES` entry allows (the peer's SDP address, the leg's signaling peer, a
//! configured network) and drops everything else; a latched strict mapping drops other sources.
//! Then resolve the next hop with `bpf_fib_lookup` for the rewritten addresses, and only then
//! rewrite addresses, ports and checksums and redirect. A packet to a relay port of
//! `SBC_RELAY_RANGES` without a mapping is dropped (no socket listens there); anything else
//! unexpected is `XDP_PASS`ed so the kernel and, where it has a socket, the userspace relay
//! handle it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_fib_lookup, bpf_ktime_get_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf, XskMap},
    programs::XdpContext,
};
use sbc_ebpf_common::{
    FLAG_AWAITING_LATCH, FLAG_FORWARD_RTCP, FLAG_IPV4, FLAG_PASS, FLAG_STRICT_SOURCE, FLAG_XSK,
    LATCH_EVENTS_BYTES, LATCH_HAS_REVERSE, LATCH_SOURCES, LatchEvent, LatchPolicy, MAX_MAPPINGS,
    MAX_RELAY_RANGES, MAX_XSK_IFACES, MAX_XSKS, Mapping, MappingKey, MappingStats, RelayRange,
    Stat,
};

/// (relay address, relay port) → rewrite. The loader pins it (by name, in the instance's bpffs
/// directory) so media survives a control-plane restart and a restarted SBC adopts the mappings.
#[map(name = "SBC_MAPPINGS")]
static SBC_MAPPINGS: HashMap<MappingKey, Mapping> = HashMap::with_max_entries(MAX_MAPPINGS, 0);

/// Per-mapping packet/byte counters and last-seen time, indexed by `Mapping::slot`.
#[map(name = "SBC_SLOT_STATS")]
static SBC_SLOT_STATS: PerCpuArray<MappingStats> = PerCpuArray::with_max_entries(MAX_MAPPINGS, 0);

/// Who may latch an awaiting mapping, keyed like `SBC_MAPPINGS`.
#[map(name = "SBC_LATCH_POLICIES")]
static SBC_LATCH_POLICIES: HashMap<MappingKey, LatchPolicy> =
    HashMap::with_max_entries(MAX_MAPPINGS, 0);

/// Latches made here, for the control plane.
#[map(name = "SBC_LATCH_EVENTS")]
static SBC_LATCH_EVENTS: RingBuf = RingBuf::with_byte_size(LATCH_EVENTS_BYTES, 0);

/// The relay addresses and port ranges the SBC owns (all-zero entries are unused).
#[map(name = "SBC_RELAY_RANGES")]
static SBC_RELAY_RANGES: Array<RelayRange> = Array::with_max_entries(MAX_RELAY_RANGES, 0);

/// Global counters indexed by `Stat`.
#[map(name = "SBC_STATS")]
static SBC_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// The SBC's AF_XDP sockets (see `sbc_ebpf_common::MAP_XSKS`).
#[map(name = "SBC_XSKS")]
static SBC_XSKS: XskMap = XskMap::with_max_entries(MAX_XSKS, 0);

/// Ingress ifindex to its first entry in `SBC_XSKS`.
#[map(name = "SBC_XSK_IFACES")]
static SBC_XSK_IFACES: HashMap<u32, u32> = HashMap::with_max_entries(MAX_XSK_IFACES, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;

#[xdp]
pub fn sbc_relay(ctx: XdpContext) -> u32 {
    count(Stat::Rx);
    let mut verdict = relay(&ctx);
    if verdict == Ok(NEEDS_LATCH) {
        // The mapping awaits its latch: latch (or drop), then relay the packet as latched.
        // Done from here, not from inside `relay_v4`/`relay_v6`, so that the latch's stack frame
        // and theirs are never on the call chain together (512 bytes in all).
        verdict = if latch_packet(&ctx) {
            relay(&ctx)
        } else {
            Ok(xdp_action::XDP_DROP)
        };
        // Still awaiting: the control plane re-armed the mapping in between. Fail closed.
        if verdict == Ok(NEEDS_LATCH) {
            verdict = Ok(xdp_action::XDP_DROP);
        }
    }
    match verdict {
        Ok(action) => action,
        Err(stat) => {
            count(stat);
            xdp_action::XDP_PASS
        }
    }
}

/// `relay` result for a packet to a mapping that awaits its latch (never an XDP action).
const NEEDS_LATCH: u32 = u32::MAX;

#[inline(always)]
fn count(stat: Stat) {
    if let Some(slot) = SBC_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: the pointer comes from a successful per-CPU array lookup, so it is valid for
        // this CPU and nothing else writes it concurrently (per-CPU, preemption disabled).
        unsafe { *slot += 1 };
    }
}

/// Returns a pointer to `len` bytes at `offset`, or `Err` if they are not all inside the packet.
/// The comparison against `data_end` is what the verifier needs to see before any access.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Result<*mut u8, Stat> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return Err(Stat::PassMalformed);
    }
    Ok((start + offset) as *mut u8)
}

/// Reads a big-endian-on-the-wire u16 without converting it (checksums work on raw words).
#[inline(always)]
fn raw16(p: *const u8, off: usize) -> u16 {
    // SAFETY: callers only pass offsets inside a range that `bytes_at` checked; the read is
    // unaligned-safe.
    unsafe { (p.add(off) as *const u16).read_unaligned() }
}

#[inline(always)]
fn write16(p: *mut u8, off: usize, v: u16) {
    // SAFETY: as in `raw16`, the range was bounds-checked by `bytes_at`.
    unsafe { (p.add(off) as *mut u16).write_unaligned(v) }
}

/// One's-complement incremental update (RFC 1624 eqn. 3): folds `!old + new` into `sum`.
/// Byte order does not matter as long as every word is taken the same way (RFC 1071 §2(B)).
#[inline(always)]
fn csum_diff(sum: u32, old: u16, new: u16) -> u32 {
    sum + u32::from(!old) + u32::from(new)
}

#[inline(always)]
fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

fn relay(ctx: &XdpContext) -> Result<u32, Stat> {
    let eth = bytes_at(ctx, 0, ETH_HLEN)?;
    let ethertype = u16::from_be(raw16(eth, 12));
    match ethertype {
        ETH_P_IP => relay_v4(ctx, eth),
        ETH_P_IPV6 => relay_v6(ctx, eth),
        _ => Err(Stat::PassNotUdp),
    }
}

// Not inlined (nor is `relay_v6`): each family's locals get their own frame instead of both
// adding up in `sbc_relay`'s, which with `latch`'s frame must stay within 512 bytes.
#[inline(never)]
fn relay_v4(ctx: &XdpContext, eth: *mut u8) -> Result<u32, Stat> {
    let ip = bytes_at(ctx, ETH_HLEN, IPV4_HLEN + UDP_HLEN)?;
    // SAFETY: `ip` points to IPV4_HLEN + UDP_HLEN checked bytes; all reads below are within it.
    let (ver_ihl, proto, frag) = unsafe { (*ip, *ip.add(9), raw16(ip, 6)) };
    if ver_ihl >> 4 != 4 {
        return Err(Stat::PassMalformed);
    }
    if proto != IPPROTO_UDP {
        return Err(Stat::PassNotUdp);
    }
    // IP options or a fragment (MF set or non-zero offset): leave to the kernel and userspace.
    if ver_ihl & 0x0f != 5 || u16::from_be(frag) & 0x3fff != 0 {
        return Err(Stat::PassUnsupported);
    }
    count(Stat::RxUdp);
    let udp = ip.wrapping_add(IPV4_HLEN);
    let mut key = MappingKey {
        addr: [0; 16],
        port: raw16(udp, 2),
        pad: 0,
    };
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    // SAFETY: destination address bytes 16..20 are inside the checked IPv4 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(16), key.addr.as_mut_ptr().add(12), 4) };

    // SAFETY: the value is copied out at once; see aya-ebpf's note on preallocated hash maps:
    // a concurrent update could at worst make us forward one packet with old or new values.
    let m: Mapping = match unsafe { SBC_MAPPINGS.get(&key) } {
        Some(m) => *m,
        None => return unmapped(&key),
    };
    if m.flags & FLAG_PASS != 0 {
        return pass_flagged(ctx, m.flags);
    }
    if m.flags & FLAG_IPV4 == 0 {
        // Family translation changes header sizes: userspace does it.
        return Err(Stat::PassUnsupported);
    }
    let sport = raw16(udp, 0);
    let mut src = [0u8; 4];
    // SAFETY: source address bytes 12..16 are inside the checked IPv4 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(12), src.as_mut_ptr(), 4) };
    if m.flags & FLAG_AWAITING_LATCH != 0 {
        return Ok(NEEDS_LATCH);
    }
    if src
        != [
            m.expect_addr[12],
            m.expect_addr[13],
            m.expect_addr[14],
            m.expect_addr[15],
        ]
        || sport != m.expect_port
    {
        return other_source(&m);
    }
    rtcp_check(ctx, ETH_HLEN + IPV4_HLEN + UDP_HLEN, m.flags)?;
    if m.dst_port == 0 {
        return no_destination();
    }

    // Resolve the next hop for the rewritten packet before touching it, so a miss leaves the
    // packet intact for the userspace relay.
    // SAFETY: FibParams is a plain C struct of integers and unions of integers; all-zero is valid.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.sport = m.src_port;
    fib.dport = m.dst_port;
    fib.__bindgen_anon_1.tot_len = u16::from_be(raw16(ip, 2));
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([
        m.src_addr[12],
        m.src_addr[13],
        m.src_addr[14],
        m.src_addr[15],
    ]);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([
        m.dst_addr[12],
        m.dst_addr[13],
        m.dst_addr[14],
        m.dst_addr[15],
    ]);
    let out_ifindex = fib_next_hop(ctx, &mut fib)?;

    // Rewrite addresses and ports, updating both checksums incrementally. The UDP checksum
    // covers the pseudo-header (addresses) as well as the ports.
    let mut ip_sum = u32::from(!raw16(ip, 10));
    let udp_csum = raw16(udp, 6);
    let mut udp_sum = u32::from(!udp_csum);
    let mut i = 0;
    while i < 4 {
        let off = 12 + i * 2;
        let new = raw16(
            if i < 2 {
                m.src_addr.as_ptr()
            } else {
                m.dst_addr.as_ptr()
            },
            12 + (i % 2) * 2,
        );
        let old = raw16(ip, off);
        ip_sum = csum_diff(ip_sum, old, new);
        udp_sum = csum_diff(udp_sum, old, new);
        write16(ip, off, new);
        i += 1;
    }
    udp_sum = csum_diff(udp_sum, sport, m.src_port);
    udp_sum = csum_diff(udp_sum, raw16(udp, 2), m.dst_port);
    write16(udp, 0, m.src_port);
    write16(udp, 2, m.dst_port);
    write16(ip, 10, !csum_fold(ip_sum));
    // A zero UDP checksum over IPv4 means "none" and must stay so; a computed zero is sent as
    // all-ones (RFC 768).
    if udp_csum != 0 {
        let c = !csum_fold(udp_sum);
        write16(udp, 6, if c == 0 { 0xffff } else { c });
    }
    finish(ctx, eth, &m, &fib, out_ifindex)
}

#[inline(never)]
fn relay_v6(ctx: &XdpContext, eth: *mut u8) -> Result<u32, Stat> {
    let ip = bytes_at(ctx, ETH_HLEN, IPV6_HLEN + UDP_HLEN)?;
    // SAFETY: `ip` points to IPV6_HLEN + UDP_HLEN checked bytes.
    let next = unsafe { *ip.add(6) };
    if next != IPPROTO_UDP {
        // Extension headers (incl. fragments) and non-UDP traffic go to the kernel.
        return Err(Stat::PassNotUdp);
    }
    count(Stat::RxUdp);
    let udp = ip.wrapping_add(IPV6_HLEN);
    let mut key = MappingKey {
        addr: [0; 16],
        port: raw16(udp, 2),
        pad: 0,
    };
    // SAFETY: destination address bytes 24..40 are inside the checked IPv6 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(24), key.addr.as_mut_ptr(), 16) };
    // SAFETY: copied out at once, as in `relay_v4`.
    let m: Mapping = match unsafe { SBC_MAPPINGS.get(&key) } {
        Some(m) => *m,
        None => return unmapped(&key),
    };
    if m.flags & FLAG_PASS != 0 {
        return pass_flagged(ctx, m.flags);
    }
    if m.flags & FLAG_IPV4 != 0 {
        return Err(Stat::PassUnsupported);
    }
    let sport = raw16(udp, 0);
    let mut src = [0u8; 16];
    // SAFETY: source address bytes 8..24 are inside the checked IPv6 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(8), src.as_mut_ptr(), 16) };
    if m.flags & FLAG_AWAITING_LATCH != 0 {
        return Ok(NEEDS_LATCH);
    }
    if src != m.expect_addr || sport != m.expect_port {
        return other_source(&m);
    }
    rtcp_check(ctx, ETH_HLEN + IPV6_HLEN + UDP_HLEN, m.flags)?;
    if m.dst_port == 0 {
        return no_destination();
    }

    // SAFETY: all-zero is a valid FibParams (plain integers).
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET6;
    fib.l4_protocol = IPPROTO_UDP;
    fib.sport = m.src_port;
    fib.dport = m.dst_port;
    fib.__bindgen_anon_1.tot_len = u16::from_be(raw16(ip, 4)) + IPV6_HLEN as u16;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let mut w = 0;
    while w < 4 {
        let s = u32::from_ne_bytes([
            m.src_addr[w * 4],
            m.src_addr[w * 4 + 1],
            m.src_addr[w * 4 + 2],
            m.src_addr[w * 4 + 3],
        ]);
        let d = u32::from_ne_bytes([
            m.dst_addr[w * 4],
            m.dst_addr[w * 4 + 1],
            m.dst_addr[w * 4 + 2],
            m.dst_addr[w * 4 + 3],
        ]);
        // SAFETY: writing plain integers into union fields of a local struct.
        unsafe {
            fib.__bindgen_anon_3.ipv6_src[w] = s;
        }
        // SAFETY: as above.
        unsafe {
            fib.__bindgen_anon_4.ipv6_dst[w] = d;
        }
        w += 1;
    }
    let out_ifindex = fib_next_hop(ctx, &mut fib)?;

    // No IP header checksum in IPv6; the UDP checksum is mandatory and covers the addresses.
    let mut udp_sum = u32::from(!raw16(udp, 6));
    let mut i = 0;
    while i < 16 {
        let off = 8 + i * 2;
        let new = if i < 8 {
            raw16(m.src_addr.as_ptr(), i * 2)
        } else {
            raw16(m.dst_addr.as_ptr(), (i - 8) * 2)
        };
        udp_sum = csum_diff(udp_sum, raw16(ip, off), new);
        write16(ip, off, new);
        i += 1;
    }
    udp_sum = csum_diff(udp_sum, sport, m.src_port);
    udp_sum = csum_diff(udp_sum, raw16(udp, 2), m.dst_port);
    write16(udp, 0, m.src_port);
    write16(udp, 2, m.dst_port);
    let c = !csum_fold(udp_sum);
    write16(udp, 6, if c == 0 { 0xffff } else { c });
    finish(ctx, eth, &m, &fib, out_ifindex)
}

/// A packet of a [`FLAG_PASS`] mapping: to the SBC's AF_XDP socket on this interface and queue
/// when the mapping asks for it and one is registered, else up the stack to the relay socket.
#[inline(always)]
fn pass_flagged(ctx: &XdpContext, flags: u16) -> Result<u32, Stat> {
    if flags & FLAG_XSK == 0 {
        return Err(Stat::PassFlagged);
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: the value is copied out at once.
    let Some(base) = (unsafe { SBC_XSK_IFACES.get(&ifindex) }).copied() else {
        return Err(Stat::PassFlagged);
    };
    // The lower bits of the flags are the verdict when no socket sits at that index: XDP_PASS
    // keeps the socket relay as the fallback.
    match SBC_XSKS.redirect(
        base.wrapping_add(ctx.rx_queue_index()),
        u64::from(xdp_action::XDP_PASS),
    ) {
        Ok(action) => {
            count(Stat::ToXsk);
            Ok(action)
        }
        Err(_) => Err(Stat::PassFlagged),
    }
}

/// A packet from someone other than the latched peer: dropped on a strict mapping; otherwise
/// handed to userspace, which forwards it and decides whether the latch moves (the fast path
/// never forwards for a source the control plane has not approved).
#[inline(always)]
fn other_source(m: &Mapping) -> Result<u32, Stat> {
    if m.flags & FLAG_STRICT_SOURCE != 0 {
        count(Stat::DropStrictSource);
        return Ok(xdp_action::XDP_DROP);
    }
    Err(Stat::PassOtherSource)
}

/// Reads the packet's relay key and source again (`relay` checked the headers; the bounds are
/// re-checked for the verifier) and latches its mapping if it still awaits its latch and the
/// source is allowed. Returns whether the packet may now be relayed.
#[inline(never)]
fn latch_packet(ctx: &XdpContext) -> bool {
    // SAFETY: `ctx.ctx` is the program's context pointer. Volatile reads keep the loads in this
    // function: LLVM would otherwise hoist them into the caller and pass the packet pointers as
    // arguments, which arrive as plain 64-bit values the verifier no longer bounds.
    let (start, end) = unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    };
    if start + ETH_HLEN > end {
        return false;
    }
    let eth = start as *const u8;
    let mut key = MappingKey::default();
    let mut peer = [0u8; 16];
    let sport;
    if u16::from_be(raw16(eth, 12)) == ETH_P_IP {
        if start + ETH_HLEN + IPV4_HLEN + UDP_HLEN > end {
            return false;
        }
        let ip = eth.wrapping_add(ETH_HLEN);
        let udp = ip.wrapping_add(IPV4_HLEN);
        key.addr[10] = 0xff;
        key.addr[11] = 0xff;
        peer[10] = 0xff;
        peer[11] = 0xff;
        // SAFETY: addresses at 12..20 lie inside the IPv4 header checked just above.
        unsafe {
            core::ptr::copy_nonoverlapping(ip.add(16), key.addr.as_mut_ptr().add(12), 4);
            core::ptr::copy_nonoverlapping(ip.add(12), peer.as_mut_ptr().add(12), 4);
        }
        key.port = raw16(udp, 2);
        sport = raw16(udp, 0);
    } else {
        if start + ETH_HLEN + IPV6_HLEN + UDP_HLEN > end {
            return false;
        }
        let ip = eth.wrapping_add(ETH_HLEN);
        let udp = ip.wrapping_add(IPV6_HLEN);
        // SAFETY: addresses at 8..40 lie inside the IPv6 header checked just above.
        unsafe {
            core::ptr::copy_nonoverlapping(ip.add(24), key.addr.as_mut_ptr(), 16);
            core::ptr::copy_nonoverlapping(ip.add(8), peer.as_mut_ptr(), 16);
        }
        key.port = raw16(udp, 2);
        sport = raw16(udp, 0);
    }
    let Some(mp) = SBC_MAPPINGS.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: from a successful lookup; one u16 read.
    if unsafe { (*mp).flags } & FLAG_AWAITING_LATCH == 0 {
        // Latched meanwhile (another CPU): relay it as latched, which checks the source.
        return true;
    }
    latch(&key, mp, &peer, sport)
}

/// Latches an awaiting mapping on a packet from `peer`:`sport` if its policy allows that
/// source, and returns whether it did. Otherwise it counts the drop and returns `false`: an
/// awaiting mapping never forwards for, nor passes up, a source nobody approved.
///
/// Two allowed sources latching at the same instant on two CPUs: the last writer wins and both
/// are allowed (an outsider cannot take part); each emits an event, and the map is the truth.
#[inline(always)]
fn latch(key: &MappingKey, mp: *mut Mapping, peer: &[u8; 16], sport: u16) -> bool {
    // SAFETY: a reference into a preallocated hash map value, read only during this call; a
    // concurrent update by the control plane could at worst mix old and new entries of one
    // policy, each of which it allowed.
    let Some(policy) = (unsafe { SBC_LATCH_POLICIES.get(key) }) else {
        count(Stat::DropNotAllowed);
        return false;
    };
    if !allowed(policy, peer, sport) {
        count(Stat::DropNotAllowed);
        return false;
    }
    // SAFETY: `mp` comes from the caller's successful lookup; one u16 read.
    let old_flags = unsafe { (*mp).flags };
    let flags = latched_flags(old_flags);
    // SAFETY: `mp` points into a preallocated hash map value (it stays valid for this program
    // run even if the entry is deleted concurrently). The expected source is written before
    // the flags, so another CPU that already sees the latch sees the new source too or, at
    // worst, drops one packet as a strict-source mismatch.
    unsafe {
        core::ptr::write_volatile(&mut (*mp).expect_addr, *peer);
        core::ptr::write_volatile(&mut (*mp).expect_port, sport);
        core::ptr::write_volatile(&mut (*mp).flags, flags);
    }
    if policy.flags & LATCH_HAS_REVERSE != 0
        && let Some(rp) = SBC_MAPPINGS.get_ptr_mut(&policy.reverse)
    {
        // The reverse mapping sends towards this peer; only within one address family.
        // SAFETY: from a successful lookup; one u16 read.
        let rflags = unsafe { (*rp).flags };
        if (rflags & FLAG_IPV4 != 0) == (old_flags & FLAG_IPV4 != 0) {
            // SAFETY: as for `mp` above; plain integer writes into the map value.
            unsafe {
                core::ptr::write_volatile(&mut (*rp).dst_addr, *peer);
                core::ptr::write_volatile(&mut (*rp).dst_port, sport);
            }
        }
    }
    count(Stat::Latched);
    // Reserved in the ring and written in place: no event copy on the stack.
    match SBC_LATCH_EVENTS.reserve::<LatchEvent>(0) {
        Some(mut entry) => {
            entry.write(LatchEvent {
                key: *key,
                peer_addr: *peer,
                peer_port: sport,
                pad: 0,
            });
            entry.submit(0);
        }
        None => count(Stat::LatchEventLost),
    }
    true
}

/// A mapping's flags once latched: no longer awaiting, strict from the first packet (re-latching
/// after a NAT rebinding is the control plane's decision: it re-arms the awaiting flag).
#[inline(always)]
fn latched_flags(flags: u16) -> u16 {
    (flags & !FLAG_AWAITING_LATCH) | FLAG_STRICT_SOURCE
}

/// Whether `peer`:`sport` matches a used entry of the policy (prefix and, if set, port).
#[inline(always)]
fn allowed(policy: &LatchPolicy, peer: &[u8; 16], sport: u16) -> bool {
    let mut e = 0;
    while e < LATCH_SOURCES {
        let s = &policy.sources[e];
        if s.prefix_len != 0
            && s.prefix_len <= 128
            && (s.port == 0 || s.port == sport)
            && prefix_matches(&s.addr, peer, s.prefix_len)
        {
            return true;
        }
        e += 1;
    }
    false
}

/// Whether the first `bits` bits of `a` and `b` are equal (`bits` ≤ 128).
#[inline(always)]
fn prefix_matches(a: &[u8; 16], b: &[u8; 16], bits: u16) -> bool {
    let mut i = 0;
    while i < 16 {
        let covered = i as u16 * 8;
        if covered >= bits {
            break;
        }
        let n = bits - covered;
        // The top `n` bits of this byte (all of it from 8 on).
        let mask = if n >= 8 { 0xff } else { (0xff00u16 >> n) as u8 };
        if (a[i] ^ b[i]) & mask != 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// A packet that matched no mapping: dropped if it is addressed to a relay port the SBC owns
/// (nothing listens there), passed otherwise (signaling, other services on the host).
#[inline(always)]
fn unmapped(key: &MappingKey) -> Result<u32, Stat> {
    let port = u16::from_be(key.port);
    let mut i = 0;
    while i < MAX_RELAY_RANGES {
        if let Some(r) = SBC_RELAY_RANGES.get(i)
            && r.port_max != 0
            && port >= r.port_min
            && port <= r.port_max
            && r.addr == key.addr
        {
            return drop_as(Stat::DropUnallocated);
        }
        i += 1;
    }
    Err(Stat::PassNoMapping)
}

/// Counts `stat` and drops the packet.
#[inline(always)]
fn drop_as(stat: Stat) -> Result<u32, Stat> {
    count(stat);
    Ok(xdp_action::XDP_DROP)
}

/// A mapping whose destination is unknown: nowhere to send the packet.
#[inline(always)]
fn no_destination() -> Result<u32, Stat> {
    drop_as(Stat::DropNoDestination)
}

/// RTCP (RFC 5761 §4: second byte 192..=223) goes to userspace, which reads receiver reports
/// for loss and jitter (a few packets per second; RTP is the volume), unless the stream asks
/// for it to be forwarded here ([`FLAG_FORWARD_RTCP`]: no socket to pass it to).
#[inline(always)]
fn rtcp_check(ctx: &XdpContext, payload: usize, flags: u16) -> Result<(), Stat> {
    if flags & FLAG_FORWARD_RTCP != 0 {
        return Ok(());
    }
    // Payloads shorter than two bytes are not RTP either: leave them to userspace.
    let p = bytes_at(ctx, payload, 2)?;
    // SAFETY: `bytes_at` checked two bytes at `p`.
    let pt = unsafe { *p.add(1) };
    if (192..=223).contains(&pt) {
        return Err(Stat::PassRtcp);
    }
    Ok(())
}

/// Looks the rewritten destination up in the kernel FIB; returns the egress ifindex.
#[inline(always)]
fn fib_next_hop(ctx: &XdpContext, fib: &mut FibParams) -> Result<u32, Stat> {
    // SAFETY: `ctx.ctx` is the program's context pointer and `fib` a valid, exclusively borrowed
    // struct of the size we pass.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            fib as *mut FibParams,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return Err(Stat::PassFibMiss);
    }
    Ok(fib.ifindex)
}

/// Writes the next-hop MAC addresses, counts the packet in `m`'s statistics slot and hands it
/// to the egress interface.
#[inline(always)]
fn finish(
    ctx: &XdpContext,
    eth: *mut u8,
    m: &Mapping,
    fib: &FibParams,
    out_ifindex: u32,
) -> Result<u32, Stat> {
    // SAFETY: `eth` points to ETH_HLEN checked bytes (see `relay`), and the MAC arrays are 6
    // bytes each; source and destination do not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(fib.dmac.as_ptr(), eth, 6);
    }
    // SAFETY: as above, bytes 6..12 of the Ethernet header.
    unsafe {
        core::ptr::copy_nonoverlapping(fib.smac.as_ptr(), eth.add(6), 6);
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    // An out-of-range slot (a control-plane bug) only loses statistics, never the packet.
    if let Some(s) = SBC_SLOT_STATS.get_ptr_mut(m.slot) {
        // SAFETY: reading the monotonic clock has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: per-CPU value pointer from a successful lookup; only this CPU writes it.
        let stale = unsafe { (*s).generation } != m.generation;
        if stale {
            // A former mapping's counters on this slot (the control plane does not zero a
            // reused slot): this mapping's start from zero on this CPU.
            // SAFETY: as above.
            unsafe {
                *s = MappingStats {
                    generation: m.generation,
                    ..MappingStats::default()
                };
            }
        }
        // SAFETY: as above.
        unsafe {
            (*s).packets += 1;
        }
        // SAFETY: as above.
        unsafe {
            (*s).bytes += len;
        }
        // SAFETY: as above.
        unsafe {
            (*s).last_seen_ns = now;
        }
    }
    count(Stat::Redirected);
    if out_ifindex == ctx.ingress_ifindex() as u32 {
        return Ok(xdp_action::XDP_TX);
    }
    // SAFETY: bpf_redirect takes an ifindex and flags; an invalid ifindex makes it return
    // XDP_ABORTED, which the kernel counts, so there is no memory-safety precondition.
    Ok(unsafe { bpf_redirect(out_ifindex, 0) } as u32)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs with a reachable panic, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
