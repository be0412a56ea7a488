//! HEP version 3 (the Homer Encapsulation Protocol, "EEP"): a captured packet with its
//! addresses, time and payload, framed as a list of chunks for a capture server such as Homer
//! or Kamailio's `sipcapture` module.
//!
//! Wire format: the ASCII id `HEP3`, the total length (u16, network order, header included),
//! then chunks of `vendor id (u16) | type id (u16) | length (u16, chunk header included) |
//! value`. All chunks used here are the generic ones (vendor 0). Integers are in network byte
//! order. The encoder is a pure function of its input: the caller supplies the capture time.
//!
//! [`decode`] reads a packet back into its chunks. It exists for tests and tools (it is not on
//! the SBC's path); it refuses anything malformed with a typed error and never panics.

use std::net::{IpAddr, SocketAddr};

/// The packet id that starts every HEP v3 packet.
pub const MAGIC: &[u8; 4] = b"HEP3";
/// Bytes of the packet header (id + length).
const HEADER: usize = 6;
/// Bytes of a chunk header (vendor, type, length).
const CHUNK_HEADER: usize = 6;
/// The generic vendor id (chunks defined by the HEP specification itself).
const VENDOR_GENERIC: u16 = 0;

/// Generic chunk type ids of the HEP v3 specification.
pub mod chunk {
    /// IP protocol family (u8): 2 = IPv4, 10 = IPv6.
    pub const IP_FAMILY: u16 = 0x0001;
    /// IP protocol id (u8): 17 = UDP, 6 = TCP.
    pub const IP_PROTO: u16 = 0x0002;
    /// IPv4 source address (4 bytes).
    pub const IPV4_SRC: u16 = 0x0003;
    /// IPv4 destination address (4 bytes).
    pub const IPV4_DST: u16 = 0x0004;
    /// IPv6 source address (16 bytes).
    pub const IPV6_SRC: u16 = 0x0005;
    /// IPv6 destination address (16 bytes).
    pub const IPV6_DST: u16 = 0x0006;
    /// Source port (u16).
    pub const SRC_PORT: u16 = 0x0007;
    /// Destination port (u16).
    pub const DST_PORT: u16 = 0x0008;
    /// Capture time, seconds since the Unix epoch (u32).
    pub const TIME_SEC: u16 = 0x0009;
    /// Capture time, microseconds within the second (u32).
    pub const TIME_USEC: u16 = 0x000a;
    /// Payload protocol type (u8), see [`super::PayloadType`].
    pub const PROTO_TYPE: u16 = 0x000b;
    /// Capture agent id (u32).
    pub const CAPTURE_ID: u16 = 0x000c;
    /// Authentication key (the collector's password), a string.
    pub const AUTH_KEY: u16 = 0x000e;
    /// The captured payload.
    pub const PAYLOAD: u16 = 0x000f;
    /// Correlation id (a string), e.g. the other leg's Call-ID of a B2BUA.
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// Address family values of the [`chunk::IP_FAMILY`] chunk.
const FAMILY_V4: u8 = 2;
const FAMILY_V6: u8 = 10;

/// The transport the captured packet travelled on ([`chunk::IP_PROTO`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProto {
    /// TCP (6), also TLS: HEP carries the decrypted SIP.
    Tcp,
    /// UDP (17).
    Udp,
}

impl IpProto {
    /// The IANA protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// What the payload is ([`chunk::PROTO_TYPE`]); unknown values are kept verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadType(pub u8);

impl PayloadType {
    /// A SIP message.
    pub const SIP: Self = Self(1);
    /// An RTCP report as JSON (how capture agents send RTCP to Homer).
    pub const RTCP_JSON: Self = Self(5);
}

/// One captured packet to encode.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    /// Transport of the captured packet.
    pub proto: IpProto,
    /// Its source.
    pub src: SocketAddr,
    /// Its destination. Must be of the same address family as `src`.
    pub dst: SocketAddr,
    /// Capture time: seconds since the Unix epoch.
    pub time_sec: u32,
    /// Capture time: microseconds within that second (0..1_000_000).
    pub time_usec: u32,
    /// What the payload is.
    pub payload_type: PayloadType,
    /// The capture agent id configured for this SBC.
    pub capture_id: u32,
    /// The collector's password, if it wants one.
    pub auth_key: Option<&'a str>,
    /// Correlation id linking this packet to others (the other leg of the call).
    pub correlation_id: Option<&'a str>,
    /// The captured bytes.
    pub payload: &'a [u8],
}

/// Why a packet cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HepError {
    /// Source and destination are of different address families.
    #[error("source and destination address families differ")]
    MixedFamilies,
    /// The packet would exceed the 16-bit length field.
    #[error("HEP packet of {len} bytes exceeds 65535")]
    TooLarge {
        /// The length it would have had.
        len: usize,
    },
    /// The input does not start with `HEP3`.
    #[error("not a HEP3 packet")]
    NotHep3,
    /// The length field disagrees with the input.
    #[error("HEP length {declared} but {actual} bytes")]
    BadLength {
        /// Declared total length.
        declared: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A chunk's length is shorter than its header or runs past the packet.
    #[error("chunk at offset {offset} has a bad length")]
    BadChunk {
        /// Offset of the chunk in the packet.
        offset: usize,
    },
}

/// Encodes `c` into `out` (cleared first, so a buffer can be reused for every packet).
pub fn encode(c: &Capture<'_>, out: &mut Vec<u8>) -> Result<(), HepError> {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0, 0]); // length, patched at the end
    match (c.src.ip(), c.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IP_FAMILY, &[FAMILY_V4]);
            put(out, chunk::IP_PROTO, &[c.proto.number()]);
            put(out, chunk::IPV4_SRC, &s.octets());
            put(out, chunk::IPV4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put(out, chunk::IP_FAMILY, &[FAMILY_V6]);
            put(out, chunk::IP_PROTO, &[c.proto.number()]);
            put(out, chunk::IPV6_SRC, &s.octets());
            put(out, chunk::IPV6_DST, &d.octets());
        }
        _ => return Err(HepError::MixedFamilies),
    }
    put(out, chunk::SRC_PORT, &c.src.port().to_be_bytes());
    put(out, chunk::DST_PORT, &c.dst.port().to_be_bytes());
    put(out, chunk::TIME_SEC, &c.time_sec.to_be_bytes());
    put(out, chunk::TIME_USEC, &c.time_usec.to_be_bytes());
    put(out, chunk::PROTO_TYPE, &[c.payload_type.0]);
    put(out, chunk::CAPTURE_ID, &c.capture_id.to_be_bytes());
    if let Some(key) = c.auth_key {
        put(out, chunk::AUTH_KEY, key.as_bytes());
    }
    if let Some(id) = c.correlation_id {
        put(out, chunk::CORRELATION_ID, id.as_bytes());
    }
    put(out, chunk::PAYLOAD, c.payload);
    let len = out.len();
    let Ok(len16) = u16::try_from(len) else {
        return Err(HepError::TooLarge { len });
    };
    // Bytes 4..6 were reserved above.
    out[4..HEADER].copy_from_slice(&len16.to_be_bytes());
    Ok(())
}

/// Appends one generic chunk. A chunk longer than 65535 bytes gets a wrapped length, but then
/// the packet itself is too large and [`encode`] refuses it.
fn put(out: &mut Vec<u8>, type_id: u16, value: &[u8]) {
    let len = u16::try_from(CHUNK_HEADER + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&VENDOR_GENERIC.to_be_bytes());
    out.extend_from_slice(&type_id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// One chunk of a decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Vendor id (0 = generic).
    pub vendor: u16,
    /// Type id.
    pub type_id: u16,
    /// The value.
    pub value: &'a [u8],
}

/// Splits a HEP v3 packet (exactly one, no trailing bytes) into its chunks, in wire order.
pub fn decode(packet: &[u8]) -> Result<Vec<Chunk<'_>>, HepError> {
    if packet.get(..4) != Some(MAGIC.as_slice()) {
        return Err(HepError::NotHep3);
    }
    let declared = be16(packet, 4).ok_or(HepError::NotHep3)?;
    if declared != packet.len() || declared < HEADER {
        return Err(HepError::BadLength {
            declared,
            actual: packet.len(),
        });
    }
    let mut chunks = Vec::new();
    let mut at = HEADER;
    while at < packet.len() {
        let bad = HepError::BadChunk { offset: at };
        let (Some(vendor), Some(type_id), Some(len)) =
            (be16(packet, at), be16(packet, at + 2), be16(packet, at + 4))
        else {
            return Err(bad);
        };
        let value = packet
            .get(at + CHUNK_HEADER..at + len)
            .filter(|_| len >= CHUNK_HEADER)
            .ok_or(bad)?;
        chunks.push(Chunk {
            vendor: u16::try_from(vendor).unwrap_or(u16::MAX),
            type_id: u16::try_from(type_id).unwrap_or(u16::MAX),
            value,
        });
        at += len;
    }
    Ok(chunks)
}

/// A big-endian u16 at `at`, widened.
fn be16(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([s[0], s[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip_capture<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Capture<'a> {
        Capture {
            proto: IpProto::Udp,
            src: src.parse().expect("literal"),
            dst: dst.parse().expect("literal"),
            time_sec: 1_764_800_000,
            time_usec: 123_456,
            payload_type: PayloadType::SIP,
            capture_id: 2001,
            auth_key: Some("s3cret"),
            correlation_id: Some("other-leg@sbc"),
            payload,
        }
    }

    fn value<'a>(chunks: &'a [Chunk<'a>], type_id: u16) -> Option<&'a [u8]> {
        chunks
            .iter()
            .find(|c| c.vendor == 0 && c.type_id == type_id)
            .map(|c| c.value)
    }

    #[test]
    fn ipv4_packet_has_every_chunk_in_network_order() {
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let mut out = Vec::new();
        encode(
            &sip_capture("192.0.2.1:5060", "198.51.100.2:5080", payload),
            &mut out,
        )
        .expect("encodes");
        assert_eq!(&out[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len());
        // The first chunk byte for byte: vendor 0, type 1, length 7, family 2.
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        let c = decode(&out).expect("decodes");
        assert_eq!(value(&c, chunk::IP_PROTO), Some(&[17u8][..]));
        assert_eq!(value(&c, chunk::IPV4_SRC), Some(&[192u8, 0, 2, 1][..]));
        assert_eq!(value(&c, chunk::IPV4_DST), Some(&[198u8, 51, 100, 2][..]));
        assert_eq!(value(&c, chunk::SRC_PORT), Some(&5060u16.to_be_bytes()[..]));
        assert_eq!(value(&c, chunk::DST_PORT), Some(&5080u16.to_be_bytes()[..]));
        assert_eq!(
            value(&c, chunk::TIME_SEC),
            Some(&1_764_800_000u32.to_be_bytes()[..])
        );
        assert_eq!(
            value(&c, chunk::TIME_USEC),
            Some(&123_456u32.to_be_bytes()[..])
        );
        assert_eq!(value(&c, chunk::PROTO_TYPE), Some(&[1u8][..]));
        assert_eq!(
            value(&c, chunk::CAPTURE_ID),
            Some(&2001u32.to_be_bytes()[..])
        );
        assert_eq!(value(&c, chunk::AUTH_KEY), Some(&b"s3cret"[..]));
        assert_eq!(
            value(&c, chunk::CORRELATION_ID),
            Some(&b"other-leg@sbc"[..])
        );
        assert_eq!(value(&c, chunk::PAYLOAD), Some(&payload[..]));
    }

    #[test]
    fn ipv6_tcp_packet_and_optional_chunks_left_out() {
        let mut c = sip_capture("[2001:db8::1]:5061", "[2001:db8::2]:40000", b"x");
        c.proto = IpProto::Tcp;
        c.auth_key = None;
        c.correlation_id = None;
        let mut out = Vec::new();
        encode(&c, &mut out).expect("encodes");
        let chunks = decode(&out).expect("decodes");
        assert_eq!(value(&chunks, chunk::IP_FAMILY), Some(&[10u8][..]));
        assert_eq!(value(&chunks, chunk::IP_PROTO), Some(&[6u8][..]));
        let src: std::net::Ipv6Addr = "2001:db8::1".parse().expect("literal");
        assert_eq!(value(&chunks, chunk::IPV6_SRC), Some(&src.octets()[..]));
        assert_eq!(value(&chunks, chunk::AUTH_KEY), None);
        assert_eq!(value(&chunks, chunk::CORRELATION_ID), None);
        assert_eq!(value(&chunks, chunk::IPV4_SRC), None);
    }

    #[test]
    fn buffer_is_reused_and_mixed_families_or_oversize_are_refused() {
        let mut out = b"stale bytes".to_vec();
        encode(&sip_capture("192.0.2.1:1", "192.0.2.2:2", b"y"), &mut out).expect("encodes");
        assert_eq!(&out[..4], b"HEP3", "cleared before encoding");
        assert_eq!(
            encode(
                &sip_capture("192.0.2.1:1", "[2001:db8::2]:2", b"y"),
                &mut out
            ),
            Err(HepError::MixedFamilies)
        );
        let big = vec![b'a'; 65_500];
        assert!(matches!(
            encode(&sip_capture("192.0.2.1:1", "192.0.2.2:2", &big), &mut out),
            Err(HepError::TooLarge { .. })
        ));
    }

    #[test]
    fn decoder_refuses_malformed_packets_without_panicking() {
        let mut good = Vec::new();
        encode(&sip_capture("192.0.2.1:1", "192.0.2.2:2", b"z"), &mut good).expect("encodes");
        assert_eq!(decode(b"HEP2\0\x06"), Err(HepError::NotHep3));
        assert_eq!(decode(b"HEP3\0"), Err(HepError::NotHep3));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(HepError::BadLength { .. })));
        // A chunk length below its own header, and one running past the end.
        let mut short = good.clone();
        short[10..12].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(decode(&short), Err(HepError::BadChunk { offset: 6 }));
        let mut long = good.clone();
        long[10..12].copy_from_slice(&60_000u16.to_be_bytes());
        assert_eq!(decode(&long), Err(HepError::BadChunk { offset: 6 }));
        // Every truncation of a good packet, with its length patched, is refused or decodes;
        // none panics.
        for n in 0..good.len() {
            let mut cut = good[..n].to_vec();
            if n >= HEADER {
                let len = u16::try_from(n).expect("small");
                cut[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let _ = decode(&cut);
        }
    }
}
