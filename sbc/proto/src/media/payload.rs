//! Payload-type rewriting in the relay: when the two legs number a codec differently (RFC
//! 3264 §6.1 lets an answerer choose its own dynamic numbers, e.g. `telephone-event` 101 inside
//! and 96 outside), the relay rewrites the RTP header's payload type of each packet it forwards
//! to the number the receiving leg declared. The call layer computes the maps from both legs'
//! SDP (`b2bua/codec_policy.rs`); RTCP and the marker bit are never touched.
//!
//! A packet of RFC 2198 redundancy (`red`, as used for `telephone-event` by RFC 4733 §2.5.1.3
//! senders) names the payload type of each block in its block headers: those are rewritten
//! with the same map, or the receiver would decode the redundant digits under the sender's
//! numbers.
//!
//! Such streams stay in userspace: the XDP program forwards bytes unchanged (a per-mapping
//! payload-type table in the kernel is not implemented).

use crate::sdp::PayloadMap;

/// The rewrites of one stream, per direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPayloadMaps {
    /// RTP from the PBX side toward the carrier side.
    pub inside_to_outside: PayloadMap,
    /// RTP from the carrier side toward the PBX side.
    pub outside_to_inside: PayloadMap,
}

impl StreamPayloadMaps {
    /// Whether no payload type changes in either direction.
    pub fn is_identity(&self) -> bool {
        self.inside_to_outside.is_identity() && self.outside_to_inside.is_identity()
    }

    /// The map for packets arriving from the leg with index `from` (0 inside, 1 outside).
    pub fn from_leg(&self, from: usize) -> &PayloadMap {
        if from == 0 {
            &self.inside_to_outside
        } else {
            &self.outside_to_inside
        }
    }
}

/// Rewrites the payload type of the RTP packet `packet` in place with `map` (the marker bit
/// kept). Returns whether it changed; too short or not RTP version 2: left alone.
pub fn rewrite(map: &PayloadMap, packet: &mut [u8]) -> bool {
    if map.is_identity() || packet.len() < 12 || packet[0] >> 6 != 2 {
        return false;
    }
    let pt = packet[1] & 0x7f;
    let blocks = map.red() == Some(pt) && rewrite_red_blocks(map, packet);
    let to = map.map(pt);
    if to == pt {
        return blocks;
    }
    packet[1] = (packet[1] & 0x80) | (to & 0x7f);
    true
}

/// Where the payload of RTP packet `packet` lies (after CSRCs and header extension, before
/// padding), if the header's lengths fit in the packet (RFC 3550 §5.1, §5.3.1).
fn payload_range(packet: &[u8]) -> Option<std::ops::Range<usize>> {
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let padding = if packet[0] & 0x20 != 0 {
        usize::from(*packet.last()?)
    } else {
        0
    };
    let end = packet.len().checked_sub(padding)?;
    (start <= end).then_some(start..end)
}

/// Rewrites the block payload types of an RFC 2198 packet (§3: a 4-byte header per redundant
/// block with the F bit set, then a 1-byte header for the primary block). A packet whose
/// headers run past its payload, or whose block lengths exceed it, is left entirely as it
/// is. Returns whether a block changed.
fn rewrite_red_blocks(map: &PayloadMap, packet: &mut [u8]) -> bool {
    let Some(range) = payload_range(packet) else {
        return false;
    };
    let payload = &mut packet[range];
    // Validate the whole header chain before touching a byte.
    let mut at = 0;
    let mut data = 0usize;
    let headers = loop {
        let Some(&first) = payload.get(at) else {
            return false;
        };
        if first & 0x80 == 0 {
            break at + 1;
        }
        let Some(h) = payload.get(at..at + 4) else {
            return false;
        };
        data += usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
        at += 4;
    };
    if headers + data > payload.len() {
        return false;
    }
    let mut changed = false;
    let mut at = 0;
    while at < headers {
        let pt = payload[at] & 0x7f;
        let to = map.map(pt);
        if to != pt {
            payload[at] = (payload[at] & 0x80) | (to & 0x7f);
            changed = true;
        }
        at += if payload[at] & 0x80 != 0 { 4 } else { 1 };
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn map_101_to_96() -> PayloadMap {
        let a = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let b = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
        let (a, b) = (Sdp::parse(a).expect("SDP"), Sdp::parse(b).expect("SDP"));
        PayloadMap::between(
            &a.media_at(0).expect("section"),
            &b.media_at(0).expect("section"),
        )
    }

    #[test]
    fn rewrites_the_payload_type_and_keeps_the_marker() {
        let map = map_101_to_96();
        let mut p = [0u8; 16];
        p[0] = 0x80;
        p[1] = 0x80 | 101;
        assert!(rewrite(&map, &mut p));
        assert_eq!(p[1], 0x80 | 96);
        p[1] = 0;
        assert!(!rewrite(&map, &mut p), "PCMU stays");
        assert_eq!(p[1], 0);
    }

    /// RFC 4733 §2.5.1.3 with RFC 2198: `red` 100 carrying `telephone-event` 101 inside;
    /// outside numbers them 110 and 96.
    fn map_red() -> PayloadMap {
        let a = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 100 101\r\na=rtpmap:100 red/8000\r\na=fmtp:100 101/101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
        let b = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 110 96\r\na=rtpmap:110 red/8000\r\na=fmtp:110 96/96\r\n\
a=rtpmap:96 telephone-event/8000\r\n";
        let (a, b) = (Sdp::parse(a).expect("SDP"), Sdp::parse(b).expect("SDP"));
        PayloadMap::between(
            &a.media_at(0).expect("section"),
            &b.media_at(0).expect("section"),
        )
    }

    /// An RTP packet of payload type `pt` with `payload` after a 12-byte header.
    fn rtp(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn redundancy_blocks_are_renumbered_with_the_packet() {
        let map = map_red();
        assert_eq!(map.red(), Some(100));
        // One redundant event block (offset 160, 4 bytes), then the primary event block.
        let blocks = [
            0x80 | 101,
            0x02,
            0x80,
            0x04, // F, PT 101, offset 160, length 4
            101,  // primary: PT 101
            1,
            0x0a,
            0x00,
            0xa0, // redundant event: digit 1
            1,
            0x8a,
            0x01,
            0x40, // primary event: digit 1, end
        ];
        let mut p = rtp(100, &blocks);
        assert!(rewrite(&map, &mut p));
        assert_eq!(p[1], 110, "the packet's own type");
        assert_eq!(p[12], 0x80 | 96, "the redundant block's type, F bit kept");
        assert_eq!(&p[13..16], &blocks[1..4], "offset and length untouched");
        assert_eq!(p[16], 96, "the primary block's type");
        assert_eq!(&p[17..], &blocks[5..], "the events untouched");
    }

    #[test]
    fn malformed_redundancy_is_left_as_it_is() {
        let map = map_red();
        // A redundant block longer than the packet: no block header is touched.
        let lying = [0x80 | 101, 0x02, 0x80, 0x40, 101, 1, 2, 3, 4];
        let mut p = rtp(100, &lying);
        assert!(rewrite(&map, &mut p), "the packet's type still maps");
        assert_eq!(p[1], 110);
        assert_eq!(&p[12..], &lying);
        // A chain of F bits that never ends.
        let endless = [0x80 | 101, 0, 0, 0, 0x80 | 101, 0, 0];
        let mut p = rtp(100, &endless);
        rewrite(&map, &mut p);
        assert_eq!(&p[12..], &endless);
        // Padding that claims more than the packet: left alone.
        let mut p = rtp(100, &[101, 9, 9, 200]);
        p[0] |= 0x20;
        rewrite(&map, &mut p);
        assert_eq!(&p[12..], &[101, 9, 9, 200]);
    }

    #[test]
    fn redundancy_after_csrcs_and_an_extension() {
        let map = map_red();
        // CC = 1 and an extension of one word: the blocks start at 12 + 4 (CSRC) + 4 + 4.
        let mut p = vec![0x80 | 0x10 | 1, 100, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // extension
        p.extend_from_slice(&[101, 1, 0x8a, 0x01, 0x40]);
        assert!(rewrite(&map, &mut p));
        assert_eq!(p[24], 96);
        assert_eq!(
            &p[16..24],
            &[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0],
            "the extension untouched"
        );
    }

    #[test]
    fn short_or_non_rtp_packets_are_left_alone() {
        let map = map_101_to_96();
        let mut short = [0x80, 101, 0, 0];
        assert!(!rewrite(&map, &mut short));
        let mut udptl = [0u8; 16];
        udptl[1] = 101;
        assert!(!rewrite(&map, &mut udptl));
        assert_eq!(udptl[1], 101);
    }
}
