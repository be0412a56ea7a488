//! Crafted Ethernet/IPv4/UDP frames for running the XDP program with `BPF_PROG_TEST_RUN`, and
//! the checksums to build and verify them.

/// A UDP endpoint: IPv4 address octets and port.
pub type Endpoint = ([u8; 4], u16);

/// An Ethernet/IPv4/UDP frame from `src` to `dst` with valid checksums and a 160-byte payload
/// that starts like RTP (version 2); `pt` is its second byte (0 = PCMU, 200 = an RTCP SR).
pub fn udp_v4(src: Endpoint, dst: Endpoint, pt: u8) -> Vec<u8> {
    let udp_len = 8 + 160;
    let mut f = vec![0u8; 14 + 20 + udp_len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src.0);
    f[30..34].copy_from_slice(&dst.0);
    let c = checksum(&[&f[14..34]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&src.1.to_be_bytes());
    f[36..38].copy_from_slice(&dst.1.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[42] = 0x80;
    f[43] = pt;
    let c = udp_checksum(&f);
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

/// (source, destination) of a frame built like [`udp_v4`].
pub fn endpoints(f: &[u8]) -> (Endpoint, Endpoint) {
    let a = |o: usize| [f[o], f[o + 1], f[o + 2], f[o + 3]];
    let p = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    ((a(26), p(34)), (a(30), p(36)))
}

/// Whether the IPv4 header checksum and the UDP checksum of a frame are both right.
pub fn checksums_valid(f: &[u8]) -> bool {
    let mut zeroed = f.to_vec();
    zeroed[40..42].copy_from_slice(&[0, 0]);
    checksum(&[&f[14..34]]) == 0 && u16::from_be_bytes([f[40], f[41]]) == udp_checksum(&zeroed)
}

/// The UDP checksum of an Ethernet/IPv4/UDP frame whose checksum field is zero.
fn udp_checksum(f: &[u8]) -> u16 {
    let udp = &f[34..];
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    match checksum(&[&pseudo, udp]) {
        // A computed zero is sent as all-ones (RFC 768).
        0 => 0xffff,
        c => c,
    }
}

/// RFC 1071 Internet checksum over the concatenation of `parts` (all of even length but the
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_have_valid_checksums_and_corruption_is_seen() {
        let mut f = udp_v4(([198, 18, 0, 1], 4000), ([198, 18, 0, 2], 30_000), 0);
        assert!(checksums_valid(&f));
        assert_eq!(
            endpoints(&f),
            (([198, 18, 0, 1], 4000), ([198, 18, 0, 2], 30_000))
        );
        f[36] ^= 1;
        assert!(!checksums_valid(&f));
    }
}
