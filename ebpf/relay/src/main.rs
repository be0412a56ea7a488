//! XDP media relay: forwards RTP/RTCP of established (latched) streams between the SBC's relay
//! ports without waking userspace.
//!
//! Per packet: parse Ethernet / IPv4 or IPv6 / UDP, look the (destination address, destination
//! port) up in `SBC_MAPPINGS`, check the latched source when the mapping is strict, resolve the
//! next hop with `bpf_fib_lookup` for the rewritten addresses, and only then rewrite addresses,
//! ports and checksums and redirect. Anything unexpected is `XDP_PASS`ed so the userspace relay
//! (which also listens on every relay port) handles it: correctness never depends on this path.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_fib_lookup, bpf_ktime_get_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use sbc_ebpf_common::{
    FLAG_IPV4, FLAG_STRICT_SOURCE, MAX_MAPPINGS, Mapping, MappingKey, MappingStats, Stat,
};

/// (relay address, relay port) → rewrite. The loader pins it (by name, in the instance's bpffs
/// directory) so media survives a control-plane restart and a restarted SBC adopts the mappings.
#[map(name = "SBC_MAPPINGS")]
static SBC_MAPPINGS: HashMap<MappingKey, Mapping> = HashMap::with_max_entries(MAX_MAPPINGS, 0);

/// Per-mapping packet/byte counters and last-seen time, indexed by `Mapping::slot`.
#[map(name = "SBC_SLOT_STATS")]
static SBC_SLOT_STATS: PerCpuArray<MappingStats> = PerCpuArray::with_max_entries(MAX_MAPPINGS, 0);

/// Global counters indexed by `Stat`.
#[map(name = "SBC_STATS")]
static SBC_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

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
    match relay(&ctx) {
        Ok(action) => action,
        Err(stat) => {
            count(stat);
            xdp_action::XDP_PASS
        }
    }
}

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
    let mut key = MappingKey { addr: [0; 16], port: raw16(udp, 2), pad: 0 };
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    // SAFETY: destination address bytes 16..20 are inside the checked IPv4 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(16), key.addr.as_mut_ptr().add(12), 4) };

    // SAFETY: the value is copied out at once; see aya-ebpf's note on preallocated hash maps:
    // a concurrent update could at worst make us forward one packet with old or new values.
    let m: Mapping = match unsafe { SBC_MAPPINGS.get(&key) } {
        Some(m) => *m,
        None => return Err(Stat::PassNoMapping),
    };
    if m.flags & FLAG_IPV4 == 0 {
        // Family translation changes header sizes: userspace does it.
        return Err(Stat::PassUnsupported);
    }
    let sport = raw16(udp, 0);
    let mut src = [0u8; 4];
    // SAFETY: source address bytes 12..16 are inside the checked IPv4 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(12), src.as_mut_ptr(), 4) };
    if src != [m.expect_addr[12], m.expect_addr[13], m.expect_addr[14], m.expect_addr[15]]
        || sport != m.expect_port
    {
        return other_source(&m);
    }
    rtcp_check(ctx, ETH_HLEN + IPV4_HLEN + UDP_HLEN)?;

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
    fib.__bindgen_anon_3.ipv4_src =
        u32::from_ne_bytes([m.src_addr[12], m.src_addr[13], m.src_addr[14], m.src_addr[15]]);
    fib.__bindgen_anon_4.ipv4_dst =
        u32::from_ne_bytes([m.dst_addr[12], m.dst_addr[13], m.dst_addr[14], m.dst_addr[15]]);
    let out_ifindex = fib_next_hop(ctx, &mut fib)?;

    // Rewrite addresses and ports, updating both checksums incrementally. The UDP checksum
    // covers the pseudo-header (addresses) as well as the ports.
    let mut ip_sum = u32::from(!raw16(ip, 10));
    let udp_csum = raw16(udp, 6);
    let mut udp_sum = u32::from(!udp_csum);
    let mut i = 0;
    while i < 4 {
        let off = 12 + i * 2;
        let new = raw16(if i < 2 { m.src_addr.as_ptr() } else { m.dst_addr.as_ptr() }, 12 + (i % 2) * 2);
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
    finish(ctx, eth, m.slot, &fib, out_ifindex)
}

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
    let mut key = MappingKey { addr: [0; 16], port: raw16(udp, 2), pad: 0 };
    // SAFETY: destination address bytes 24..40 are inside the checked IPv6 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(24), key.addr.as_mut_ptr(), 16) };
    // SAFETY: copied out at once, as in `relay_v4`.
    let m: Mapping = match unsafe { SBC_MAPPINGS.get(&key) } {
        Some(m) => *m,
        None => return Err(Stat::PassNoMapping),
    };
    if m.flags & FLAG_IPV4 != 0 {
        return Err(Stat::PassUnsupported);
    }
    let sport = raw16(udp, 0);
    let mut src = [0u8; 16];
    // SAFETY: source address bytes 8..24 are inside the checked IPv6 header.
    unsafe { core::ptr::copy_nonoverlapping(ip.add(8), src.as_mut_ptr(), 16) };
    if src != m.expect_addr || sport != m.expect_port {
        return other_source(&m);
    }
    rtcp_check(ctx, ETH_HLEN + IPV6_HLEN + UDP_HLEN)?;

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
    finish(ctx, eth, m.slot, &fib, out_ifindex)
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

/// RTCP (RFC 5761 §4: second byte 192..=223) goes to userspace, which reads receiver reports
/// for loss and jitter; it is a few packets per second, RTP is the volume.
#[inline(always)]
fn rtcp_check(ctx: &XdpContext, payload: usize) -> Result<(), Stat> {
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

/// Writes the next-hop MAC addresses, counts the packet and hands it to the egress interface.
#[inline(always)]
fn finish(
    ctx: &XdpContext,
    eth: *mut u8,
    slot: u32,
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
    if let Some(s) = SBC_SLOT_STATS.get_ptr_mut(slot) {
        // SAFETY: reading the monotonic clock has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: per-CPU value pointer from a successful lookup; only this CPU writes it.
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
