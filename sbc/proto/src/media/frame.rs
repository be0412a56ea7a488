//! Ethernet + IPv4/IPv6 + UDP frames for the AF_XDP relay path: reading a received frame's
//! addresses and payload, and writing the headers of a frame to send (lengths and checksums
//! computed afresh: SRTP changes the payload and its length, so nothing can be patched
//! incrementally). Pure functions over byte slices; the sockets and rings live in the
//! runtime (`sbc/src/sys/xsk.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ethernet header bytes (no VLAN tag: a tagged frame is not parsed).
pub const ETH_HLEN: usize = 14;
/// IPv4 header bytes without options (the only form written).
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header bytes.
pub const IPV6_HLEN: usize = 40;
/// UDP header bytes.
pub const UDP_HLEN: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
/// TTL / hop limit of frames the relay originates (the kernel's default for UDP).
const TTL: u8 = 64;

/// A received UDP datagram inside an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    /// Sender (IP source, UDP source port).
    pub src: SocketAddr,
    /// Destination (IP destination, UDP destination port): the relay endpoint.
    pub dst: SocketAddr,
    /// Offset of the UDP payload in the frame.
    pub payload: usize,
    /// UDP payload length (from the UDP header, bounded by the frame).
    pub len: usize,
}

/// Reads a frame's UDP datagram: `None` for anything but unfragmented IPv4 (any header length)
/// or IPv6 without extension headers carrying UDP, and for truncated or inconsistent lengths.
pub fn parse_udp(frame: &[u8]) -> Option<UdpFrame> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETH_HLEN..)?;
    let (src_ip, dst_ip, udp_at, ip_payload): (IpAddr, IpAddr, usize, usize) = match ethertype {
        ETH_P_IP => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if ip.first()? >> 4 != 4 || ihl < IPV4_HLEN || frag & 0x3fff != 0 {
                return None;
            }
            if *ip.get(9)? != IPPROTO_UDP {
                return None;
            }
            // The kernel drops an IPv4 header whose checksum fails (`ip_rcv_core`); so does
            // this path, or a damaged or forged header would reach the relay here only.
            if fold(add_bytes(0, ip.get(..ihl)?)) != 0xffff {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                Ipv4Addr::from(src).into(),
                Ipv4Addr::from(dst).into(),
                ETH_HLEN + ihl,
                total.checked_sub(ihl)?,
            )
        }
        ETH_P_IPV6 => {
            if ip.first()? >> 4 != 6 || *ip.get(6)? != IPPROTO_UDP {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                ETH_HLEN + IPV6_HLEN,
                payload,
            )
        }
        _ => return None,
    };
    // The IP packet the header declares must have arrived whole (Ethernet padding may follow):
    // the kernel drops a shorter one before UDP sees it (`ip_rcv_core`, `ipv6_rcv`), and a
    // datagram the AF_XDP relay takes must be one the socket relay could have received.
    // (The IP packet spans `ETH_HLEN..udp_at + ip_payload`; both terms are at most 16 bits.)
    if udp_at + ip_payload > frame.len() {
        return None;
    }
    let udp = frame.get(udp_at..udp_at + UDP_HLEN)?;
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    // The UDP length must fit the IP payload and the frame (Ethernet pads short frames, so
    // the frame may be longer).
    if udp_len < UDP_HLEN || udp_len > ip_payload || udp_at + udp_len > frame.len() {
        return None;
    }
    Some(UdpFrame {
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        payload: udp_at + UDP_HLEN,
        len: udp_len - UDP_HLEN,
    })
}

/// Link-layer addresses of a frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Macs {
    /// Next hop's address.
    pub dst: [u8; 6],
    /// The egress interface's address.
    pub src: [u8; 6],
}

/// Bytes of Ethernet, IP and UDP headers before the payload of a datagram from `src`.
pub const fn header_len(src: &SocketAddr) -> usize {
    match src {
        SocketAddr::V4(_) => ETH_HLEN + IPV4_HLEN + UDP_HLEN,
        SocketAddr::V6(_) => ETH_HLEN + IPV6_HLEN + UDP_HLEN,
    }
}

/// Writes the headers of a datagram `src` → `dst` whose `len` payload bytes already sit at
/// [`header_len`] in `frame`, with fresh lengths and checksums; returns the frame's length.
/// `None` if the families differ, the datagram is too long for the length fields or `frame`
/// is too short.
pub fn write_udp(
    frame: &mut [u8],
    macs: Macs,
    src: SocketAddr,
    dst: SocketAddr,
    len: usize,
) -> Option<usize> {
    let hlen = header_len(&src);
    let total = hlen.checked_add(len)?;
    if frame.len() < total {
        return None;
    }
    let udp_len = u16::try_from(UDP_HLEN + len).ok()?;
    frame[0..6].copy_from_slice(&macs.dst);
    frame[6..12].copy_from_slice(&macs.src);
    let udp_at = hlen - UDP_HLEN;
    // Pseudo-header sum (RFC 768, RFC 8200 §8.1): addresses, protocol, UDP length.
    let mut sum = u32::from(IPPROTO_UDP) + u32::from(udp_len);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip_total = u16::try_from(IPV4_HLEN + UDP_HLEN + len).ok()?;
            frame[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
            let ip = &mut frame[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
            // Identification 0 with DF set: never fragmented (RFC 6864 §4.1).
            ip[4..6].copy_from_slice(&0u16.to_be_bytes());
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = TTL;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = !fold(add_bytes(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            sum = add_bytes(sum, &s.octets());
            sum = add_bytes(sum, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
            let ip = &mut frame[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            sum = add_bytes(sum, &s.octets());
            sum = add_bytes(sum, &d.octets());
        }
        _ => return None,
    }
    let udp = &mut frame[udp_at..total];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let c = !fold(add_bytes(sum, udp));
    // A computed 0 is sent as all ones (RFC 768; mandatory for IPv6, RFC 8200 §8.1).
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with zero) to `sum`.
fn add_bytes(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        // Folded as it goes: a jumbo datagram cannot overflow the accumulator.
        if sum > 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: Macs = Macs {
        dst: [2, 0, 0, 0, 0, 1],
        src: [2, 0, 0, 0, 0, 2],
    };

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    /// A checksummed region sums to 0xffff including its checksum (RFC 1071).
    fn verifies(sum: u32) -> bool {
        fold(sum) == 0xffff
    }

    #[test]
    fn ipv4_frame_round_trips_with_valid_checksums() {
        let mut frame = [0u8; 256];
        let (src, dst) = (sa("198.18.2.1:20002"), sa("198.18.2.2:5000"));
        let hlen = header_len(&src);
        let payload = b"\x80\x00\x00\x01 an odd-length payload";
        frame[hlen..hlen + payload.len()].copy_from_slice(payload);
        let n = write_udp(&mut frame, MACS, src, dst, payload.len()).expect("fits");
        assert_eq!(n, hlen + payload.len());
        let got = parse_udp(&frame[..n]).expect("parses");
        assert_eq!((got.src, got.dst), (src, dst));
        assert_eq!(&frame[got.payload..got.payload + got.len], payload);
        assert!(verifies(add_bytes(
            0,
            &frame[ETH_HLEN..ETH_HLEN + IPV4_HLEN]
        )));
        let pseudo = add_bytes(
            add_bytes(0, &[198, 18, 2, 1, 198, 18, 2, 2]),
            &[0, IPPROTO_UDP],
        ) + (UDP_HLEN + payload.len()) as u32;
        assert!(verifies(add_bytes(pseudo, &frame[ETH_HLEN + IPV4_HLEN..n])));
    }

    #[test]
    fn ipv6_frame_round_trips_with_valid_checksum() {
        let mut frame = [0u8; 256];
        let (src, dst) = (sa("[2001:db8::1]:20002"), sa("[2001:db8::2]:5000"));
        let hlen = header_len(&src);
        frame[hlen..hlen + 3].copy_from_slice(b"abc");
        let n = write_udp(&mut frame, MACS, src, dst, 3).expect("fits");
        let got = parse_udp(&frame[..n]).expect("parses");
        assert_eq!((got.src, got.dst, got.len), (src, dst, 3));
        let mut pseudo = add_bytes(0, &frame[ETH_HLEN + 8..ETH_HLEN + 40]);
        pseudo += u32::from(IPPROTO_UDP) + (UDP_HLEN + 3) as u32;
        assert!(verifies(add_bytes(pseudo, &frame[ETH_HLEN + IPV6_HLEN..n])));
    }

    /// The checksum of a known packet (computed by hand with RFC 1071's method).
    #[test]
    fn ipv4_header_checksum_matches_a_known_value() {
        let mut frame = [0u8; 64];
        let n = write_udp(
            &mut frame,
            MACS,
            sa("10.0.0.1:1000"),
            sa("10.0.0.2:2000"),
            4,
        )
        .expect("fits");
        assert_eq!(n, 46);
        // 4500 0020 0000 4000 4011 0000 0a00 0001 0a00 0002 sums to 0xd934; !0xd934 = 0x26cb.
        assert_eq!(&frame[ETH_HLEN + 10..ETH_HLEN + 12], &[0x26, 0xcb]);
    }

    #[test]
    fn mixed_families_and_short_frames_are_refused() {
        let mut frame = [0u8; 64];
        assert_eq!(
            write_udp(&mut frame, MACS, sa("10.0.0.1:1"), sa("[::1]:2"), 4),
            None
        );
        assert_eq!(
            write_udp(&mut frame, MACS, sa("10.0.0.1:1"), sa("10.0.0.2:2"), 60),
            None
        );
    }

    /// An IP header declaring more bytes than the frame holds is a truncated packet even when
    /// the UDP length fits (`fuzzing::frame` found these accepted; the kernel drops them).
    #[test]
    fn an_ip_packet_longer_than_the_frame_does_not_parse() {
        for (src, dst, len_at) in [
            ("10.0.0.1:1", "10.0.0.2:2", ETH_HLEN + 2),
            ("[2001:db8::1]:1", "[2001:db8::2]:2", ETH_HLEN + 4),
        ] {
            let mut frame = [0u8; 128];
            let n = write_udp(&mut frame, MACS, sa(src), sa(dst), 10).expect("fits");
            assert!(parse_udp(&frame[..n]).is_some());
            // The IP length grows by one byte the frame does not have; the UDP length is kept.
            let declared = u16::from_be_bytes([frame[len_at], frame[len_at + 1]]);
            frame[len_at..len_at + 2].copy_from_slice(&(declared + 1).to_be_bytes());
            if len_at == ETH_HLEN + 2 {
                reseal_ipv4(&mut frame);
            }
            assert_eq!(parse_udp(&frame[..n]), None, "{src}: truncated IP packet");
            // With the byte there (and the UDP datagram shorter than the IP payload, which the
            // kernel trims), it parses.
            assert_eq!(parse_udp(&frame[..=n]).map(|f| f.len), Some(10), "{src}");
        }
    }

    /// Recomputes the IPv4 header checksum of `frame` after a test changed a header field.
    fn reseal_ipv4(frame: &mut [u8]) {
        let header = ETH_HLEN..ETH_HLEN + IPV4_HLEN;
        frame[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
        let sum = !fold(add_bytes(0, &frame[header]));
        frame[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&sum.to_be_bytes());
    }

    /// A damaged IPv4 header (any flipped bit, the checksum's own included) does not parse,
    /// as the kernel's receive path drops it; resealed, the same change parses.
    #[test]
    fn an_ipv4_header_with_a_bad_checksum_does_not_parse() {
        let mut frame = [0u8; 128];
        let n = write_udp(&mut frame, MACS, sa("10.0.0.1:1"), sa("10.0.0.2:2"), 10).expect("fits");
        for byte in ETH_HLEN..ETH_HLEN + IPV4_HLEN {
            let mut bad = frame;
            bad[byte] ^= 0x01;
            assert_eq!(
                parse_udp(&bad[..n]),
                None,
                "bit flipped in header byte {byte}"
            );
        }
        // The TTL is free to change once the checksum follows it.
        let mut ttl = frame;
        ttl[ETH_HLEN + 8] = 3;
        reseal_ipv4(&mut ttl);
        assert!(parse_udp(&ttl[..n]).is_some());
    }

    #[test]
    fn malformed_frames_do_not_parse() {
        let mut frame = [0u8; 128];
        let n = write_udp(&mut frame, MACS, sa("10.0.0.1:1"), sa("10.0.0.2:2"), 10).expect("fits");
        assert!(parse_udp(&frame[..n]).is_some());
        // Truncated anywhere in the headers or payload.
        for cut in [0, 13, 20, 40, n - 1] {
            assert_eq!(parse_udp(&frame[..cut]), None, "cut at {cut}");
        }
        // A fragment, another protocol, a UDP length beyond the IP payload.
        let mut frag = frame;
        frag[ETH_HLEN + 6] = 0x20;
        assert_eq!(parse_udp(&frag[..n]), None);
        let mut tcp = frame;
        tcp[ETH_HLEN + 9] = 6;
        assert_eq!(parse_udp(&tcp[..n]), None);
        let mut long = frame;
        long[ETH_HLEN + IPV4_HLEN + 5] = 200;
        assert_eq!(parse_udp(&long[..n]), None);
        // Ethernet padding after the datagram is ignored.
        assert_eq!(
            parse_udp(&frame[..n + 6]).map(|f| f.len),
            Some(10),
            "padded frame"
        );
    }
}
