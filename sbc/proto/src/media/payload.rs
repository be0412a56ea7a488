//! Payload-type rewriting in the relay: when the two legs number a codec differently (RFC
//! 3264 §6.1 lets an answerer choose its own dynamic numbers, e.g. `telephone-event` 101 inside
//! and 96 outside), the relay rewrites the RTP header's payload type of each packet it forwards
//! to the number the receiving leg declared. The call layer computes the maps from both legs'
//! SDP (`b2bua/codec_policy.rs`); RTCP and the marker bit are never touched.
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
    let to = map.map(pt);
    if to == pt {
        return false;
    }
    packet[1] = (packet[1] & 0x80) | (to & 0x7f);
    true
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
