//! RTCP (RFC 3550 §6) as the media relay reads it: telling RTCP from RTP on a multiplexed port
//! (RFC 5761 §4) and taking the first reception report block of a compound packet for the
//! per-call quality view. Pure functions over untrusted bytes: any input gives an answer,
//! never a panic.

/// RTCP packet types are 192..=223 in the second byte (RFC 5761 §4), which RTP payload types
/// (with the marker bit) avoid in practice; this is how rtcp-mux demultiplexes.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// The first report block of an RTCP SR or RR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// Fraction lost since the previous report, out of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed, RFC 3550 §6.4.1).
    pub cumulative_lost: i32,
    /// Interarrival jitter, RTP timestamp units.
    pub jitter: u32,
}

/// Packet type of a sender report (RFC 3550 §6.4.1).
const SR: u8 = 200;
/// Packet type of a receiver report (RFC 3550 §6.4.2).
const RR: u8 = 201;
/// Bytes of one report block.
const BLOCK: usize = 24;

/// Finds the first reception report block in a compound RTCP packet: walks the packets by
/// their length fields and stops at the first SR or RR that carries a block. Anything that
/// does not add up (version, a length past the end, a block past its packet) is no report.
pub fn first_report(mut packet: &[u8]) -> Option<ReportBlock> {
    while packet.len() >= 8 {
        if packet[0] >> 6 != 2 {
            return None;
        }
        let count = packet[0] & 0x1f;
        let pt = packet[1];
        // The length is in 32-bit words minus one, so it is never zero and the walk advances.
        let len = (usize::from(u16::from_be_bytes([packet[2], packet[3]])) + 1) * 4;
        let body = packet.get(..len)?;
        // Report blocks follow the SSRC (RR) or the SSRC and 20 bytes of sender info (SR).
        let start = match pt {
            SR => 28,
            RR => 8,
            _ => {
                packet = &packet[len..];
                continue;
            }
        };
        if count == 0 {
            packet = &packet[len..];
            continue;
        }
        let b = body.get(start..start + BLOCK)?;
        // Sign-extend the 24-bit count: shift it into the top of an i32 and back.
        let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
        return Some(ReportBlock {
            fraction_lost: b[4],
            cumulative_lost: lost,
            jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(lost: [u8; 3]) -> Vec<u8> {
        let mut rr = vec![0x81, RR, 0, 7];
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&2u32.to_be_bytes()); // reportee SSRC
        rr.extend_from_slice(&[25, lost[0], lost[1], lost[2]]);
        rr.extend_from_slice(&100u32.to_be_bytes());
        rr.extend_from_slice(&77u32.to_be_bytes()); // jitter
        rr.extend_from_slice(&[0; 8]);
        rr
    }

    #[test]
    fn rtcp_is_told_apart_from_rtp() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        assert!(!is_rtcp(&rtp));
        assert!(is_rtcp(&rr([0, 0, 1])));
        assert!(!is_rtcp(&[0x81, RR, 0]), "too short");
    }

    #[test]
    fn parses_receiver_report_block() {
        let r = first_report(&rr([0, 0, 42])).expect("report");
        assert_eq!(
            r,
            ReportBlock {
                fraction_lost: 25,
                cumulative_lost: 42,
                jitter: 77
            }
        );
        // Negative cumulative loss (duplicates) is sign-extended from 24 bits.
        let r = first_report(&rr([0xff, 0xff, 0xfe])).expect("report");
        assert_eq!(r.cumulative_lost, -2);
    }

    #[test]
    fn skips_packets_without_blocks_in_a_compound() {
        // An SDES chunk first, then the RR.
        let mut p = vec![0x81, 202, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&rr([0, 0, 5]));
        assert_eq!(first_report(&p).map(|r| r.cumulative_lost), Some(5));
    }

    #[test]
    fn truncated_or_garbage_input_is_no_report() {
        let full = rr([0, 0, 42]);
        for n in 0..full.len() {
            assert_eq!(first_report(&full[..n]), None, "{n} bytes");
        }
        assert_eq!(first_report(&[0xff; 40]), None);
        // A count claiming a block the packet's length does not hold.
        assert_eq!(first_report(&[0x81, RR, 0, 1, 0, 0, 0, 1]), None);
    }
}
