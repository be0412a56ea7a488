//! Wire frames as the AF_XDP relay meets them: arbitrary bytes off the RX ring through
//! [`parse_udp`], and frames built from the input through [`write_udp`] and back.
//!
//! The checksums are checked with a sum written here (plain RFC 1071 over a 64-bit accumulator)
//! rather than the writer's own helpers, so a mistake shared by writer and checker cannot hide.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::media::frame::{
    ETH_HLEN, IPV4_HLEN, IPV6_HLEN, Macs, UDP_HLEN, UdpFrame, header_len, parse_udp, write_udp,
};

const MACS: Macs = Macs {
    dst: [0x02, 0, 0, 0, 0, 0x01],
    src: [0x02, 0, 0, 0, 0, 0x02],
};

/// Input: the whole of it is a received frame, and it is also read as the description of a
/// frame to send (see `written`).
///
/// Properties of a received frame that parses (see [`received`]): its payload lies inside the
/// frame after the headers; addresses, ports and lengths are the header's; the parser needs
/// every byte of the IP packet the header declares and nothing after it; and written again
/// with the relay's writer it parses back to the same datagram, with checksums that verify.
pub fn frame(data: &[u8]) {
    received(data);
    // Random bytes rarely carry a right IPv4 header checksum, which the parser demands (as
    // the kernel does): the same input with its checksum made right reaches the properties
    // behind it.
    if let Some(sealed) = resealed(data) {
        received(&sealed);
    }
    written(data);
}

/// `data` with a right IPv4 header checksum, if it is long enough to be an IPv4 frame whose
/// header length fits.
fn resealed(data: &[u8]) -> Option<Vec<u8>> {
    let ihl = usize::from(data.get(ETH_HLEN)? & 0x0f) * 4;
    if ihl < IPV4_HLEN || data.len() < ETH_HLEN + ihl {
        return None;
    }
    let mut out = data.to_vec();
    out[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
    let sum = !ones_sum(&[&out[ETH_HLEN..ETH_HLEN + ihl]]);
    out[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

fn received(frame: &[u8]) {
    let Some(f) = parse_udp(frame) else {
        return;
    };
    let end = f.payload + f.len;
    assert!(
        end <= frame.len(),
        "payload {f:?} beyond a {}-byte frame",
        frame.len()
    );
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (min_ip, v4) = match (f.src.ip(), f.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (IPV4_HLEN, true),
        (IpAddr::V6(_), IpAddr::V6(_)) => (IPV6_HLEN, false),
        _ => panic!("mixed families: {f:?}"),
    };
    assert_eq!(ethertype, if v4 { 0x0800 } else { 0x86dd }, "{f:?}");
    if v4 {
        let ihl = usize::from(frame[ETH_HLEN] & 0x0f) * 4;
        assert_eq!(
            ones_sum(&[&frame[ETH_HLEN..ETH_HLEN + ihl]]),
            0xffff,
            "IPv4 header with a wrong checksum parsed: {f:?}"
        );
    }
    assert!(
        f.payload >= ETH_HLEN + min_ip + UDP_HLEN,
        "payload inside the headers: {f:?}"
    );
    let udp = &frame[f.payload - UDP_HLEN..f.payload];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), f.src.port());
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), f.dst.port());
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        f.len + UDP_HLEN
    );

    // The IP packet the header declares ends inside the frame (what follows is padding) and
    // holds the UDP datagram.
    let ip = &frame[ETH_HLEN..];
    let ip_end = if v4 {
        ETH_HLEN + usize::from(u16::from_be_bytes([ip[2], ip[3]]))
    } else {
        ETH_HLEN + IPV6_HLEN + usize::from(u16::from_be_bytes([ip[4], ip[5]]))
    };
    assert!(
        end <= ip_end && ip_end <= frame.len(),
        "IP packet ends at {ip_end}: {f:?}"
    );
    // Cut to the IP packet, the frame parses the same; one byte shorter, it does not. Padding
    // after it changes nothing.
    assert_eq!(parse_udp(&frame[..ip_end]), Some(f), "IP packet alone");
    assert_eq!(
        parse_udp(&frame[..ip_end - 1]),
        None,
        "truncated IP packet parsed"
    );
    let mut padded = frame.to_vec();
    padded.extend_from_slice(&[0xa5; 7]);
    assert_eq!(parse_udp(&padded), Some(f), "padding changed the datagram");

    round_trip(f.src, f.dst, &frame[f.payload..end]);
}

/// The second reading of the input: byte 0 picks the family (bit 0) and how much spare room
/// the send buffer has (the other bits); then the source and destination addresses, the two
/// ports, and the payload (the rest). Mixed families must be refused.
fn written(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let alen = if pick & 1 == 0 { 4 } else { 16 };
    let Some((head, payload)) = rest.split_at_checked(2 * alen + 4) else {
        return;
    };
    let (s, d, p) = (&head[..alen], &head[alen..2 * alen], &head[2 * alen..]);
    let addr = |a: &[u8], port: [u8; 2]| -> SocketAddr {
        let port = u16::from_be_bytes(port);
        match <[u8; 4]>::try_from(a) {
            Ok(v4) => SocketAddr::new(Ipv4Addr::from(v4).into(), port),
            Err(_) => {
                let mut v6 = [0u8; 16];
                v6.copy_from_slice(a);
                SocketAddr::new(Ipv6Addr::from(v6).into(), port)
            }
        }
    };
    let src = addr(s, [p[0], p[1]]);
    let dst = addr(d, [p[2], p[3]]);
    let spare = usize::from(pick >> 1);
    let hlen = header_len(&src);
    let mut buf = vec![0u8; hlen + payload.len() + spare];
    buf[hlen..hlen + payload.len()].copy_from_slice(payload);
    // One byte short of room: refused, whatever the headers.
    assert_eq!(
        write_udp(
            &mut buf[..hlen + payload.len() - 1],
            MACS,
            src,
            dst,
            payload.len()
        ),
        None,
        "wrote past the buffer"
    );
    round_trip(src, dst, payload);
    // Mixed families: refused.
    let other = match dst.ip() {
        IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), dst.port()),
        IpAddr::V6(_) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dst.port()),
    };
    assert_eq!(
        write_udp(&mut buf, MACS, src, other, payload.len()),
        None,
        "mixed families"
    );
}

/// Writes `payload` from `src` to `dst` as the relay does and checks the frame: it parses
/// back to the same addresses, ports and payload, and its checksums verify.
fn round_trip(src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let hlen = header_len(&src);
    let mut buf = vec![0u8; hlen + payload.len()];
    buf[hlen..].copy_from_slice(payload);
    let Some(n) = write_udp(&mut buf, MACS, src, dst, payload.len()) else {
        // Only a datagram too long for the 16-bit length fields is refused.
        let ip = if src.is_ipv4() { IPV4_HLEN } else { 0 };
        assert!(
            ip + UDP_HLEN + payload.len() > 0xffff,
            "refused {src} → {dst}"
        );
        return;
    };
    assert_eq!(n, buf.len());
    let back = parse_udp(&buf[..n]);
    let want = UdpFrame {
        src,
        dst,
        payload: hlen,
        len: payload.len(),
    };
    assert_eq!(back, Some(want), "written frame reads back differently");
    assert_eq!(&buf[hlen..n], payload, "payload changed in writing");
    assert_eq!(&buf[..12], &[MACS.dst, MACS.src].concat()[..]);

    let udp = &buf[hlen - UDP_HLEN..n];
    let udp_len = u16::try_from(udp.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut pseudo = Vec::with_capacity(40);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &buf[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
            assert_eq!(ones_sum(&[ip]), 0xffff, "IPv4 header checksum");
            // Never fragmented: DF, no offset.
            assert_eq!(u16::from_be_bytes([ip[6], ip[7]]), 0x4000);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        _ => unreachable!("write_udp refuses mixed families"),
    }
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len);
    assert_eq!(ones_sum(&[&pseudo, udp]), 0xffff, "UDP checksum");
    // Zero means "no checksum" (forbidden over IPv6): a computed zero is sent as all ones.
    assert_ne!(&udp[6..8], &[0, 0], "UDP checksum left out");
}

/// The one's-complement sum of `parts` taken as one byte string (each part but the last of
/// even length), folded to 16 bits: 0xffff over a region that includes its right checksum.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        for (i, b) in part.iter().enumerate() {
            sum += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{frame, ones_sum};

    /// The committed seeds hold the properties; those that are frames the relay takes parse.
    #[test]
    fn seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/frame/");
        for (name, parses) in [
            ("ipv4-rtp", true),
            ("ipv6-srtp", true),
            ("ipv4-options-padded", true),
            ("ipv4-fragment", false),
            ("vlan-tagged", false),
        ] {
            let bytes = std::fs::read(format!("{dir}{name}")).expect("seed");
            assert_eq!(
                crate::media::frame::parse_udp(&bytes).is_some(),
                parses,
                "{name}"
            );
            frame(&bytes);
        }
        frame(b"");
        frame(&[0; 64]);
    }

    /// The checker's sum agrees with RFC 1071's worked example (§3: 0x0001 f203 f4f5 f6f7
    /// sums to 0xddf2).
    #[test]
    fn ones_sum_matches_rfc_1071() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_sum(&[&data]), 0xddf2);
        assert_eq!(ones_sum(&[&data[..4], &data[4..]]), 0xddf2);
    }
}
