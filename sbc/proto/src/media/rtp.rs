//! Cheap per-direction RTP statistics (RFC 3550 §6.4.1 / A.3 / A.8) and the RTCP receiver
//! report as the call view shows it (the parser is [`crate::rtcp`]). Plain functions and
//! state with injected time; nothing here allocates per packet.

use std::time::Instant;

/// Whether a datagram on a multiplexed port is RTCP (the parser lives in [`crate::rtcp`]).
pub use crate::rtcp::is_rtcp;

/// Clock rate of static payload types we can compute jitter for (RFC 3551 table 4).
fn clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8_000),
        6 => Some(16_000),
        10 | 11 => Some(44_100),
        _ => None,
    }
}

/// Sequence and jitter tracking for RTP received from one peer.
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    /// Valid RTP packets seen.
    pub received: u64,
    base_seq: u32,
    /// Extended highest sequence number (cycles << 16 | seq).
    max_ext: u32,
    started: bool,
    ssrc: u32,
    /// Interarrival jitter in RTP timestamp units, scaled by 16 (RFC 3550 A.8).
    jitter_x16: u64,
    last_transit: Option<i64>,
    clock: Option<u32>,
    epoch: Option<Instant>,
}

impl RtpStats {
    /// Accounts a packet; non-RTP payloads are ignored.
    pub fn on_packet(&mut self, packet: &[u8], now: Instant) {
        if packet.len() < 12 || packet[0] >> 6 != 2 || is_rtcp(packet) {
            return;
        }
        let seq = u32::from(u16::from_be_bytes([packet[2], packet[3]]));
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if !self.started || ssrc != self.ssrc {
            // A new source restarts the statistics (RFC 3550 A.1 probation simplified).
            *self = Self {
                started: true,
                ssrc,
                base_seq: seq,
                max_ext: seq,
                clock: clock_rate(packet[1] & 0x7f),
                epoch: Some(now),
                ..Self::default()
            };
        } else {
            let max = self.max_ext & 0xffff;
            let delta = seq.wrapping_sub(max) & 0xffff;
            if delta != 0 && delta < 0x8000 {
                // In order, possibly wrapping: advance the cycle count on wrap.
                if seq < max {
                    self.max_ext = self.max_ext.wrapping_add(0x1_0000);
                }
                self.max_ext = (self.max_ext & 0xffff_0000) | seq;
            }
        }
        self.received += 1;
        if let (Some(clock), Some(epoch)) = (self.clock, self.epoch) {
            let arrival_ns = now.saturating_duration_since(epoch).as_nanos();
            let arrival =
                i64::try_from(arrival_ns * u128::from(clock) / 1_000_000_000).unwrap_or(i64::MAX);
            let transit = arrival.wrapping_sub(i64::from(ts));
            if let Some(last) = self.last_transit {
                let d = transit.wrapping_sub(last).unsigned_abs();
                // J += (|D| - J/16) in the x16 fixed-point form of RFC 3550 A.8.
                self.jitter_x16 =
                    self.jitter_x16 + d.min(u64::from(u32::MAX)) - (self.jitter_x16 + 8) / 16;
            }
            self.last_transit = Some(transit);
        }
    }

    /// Packets expected from the sequence numbers.
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        u64::from(self.max_ext.wrapping_sub(self.base_seq)) + 1
    }

    /// Packets lost (expected minus received; negative with duplicates, as in RFC 3550).
    pub fn lost(&self) -> i64 {
        i64::try_from(self.expected()).unwrap_or(i64::MAX)
            - i64::try_from(self.received).unwrap_or(i64::MAX)
    }

    /// Interarrival jitter in milliseconds, when the clock rate is known.
    pub fn jitter_ms(&self) -> Option<f64> {
        let clock = self.clock?;
        #[expect(clippy::cast_precision_loss, reason = "statistics; precision is ample")]
        Some(self.jitter_x16 as f64 / 16.0 * 1000.0 / f64::from(clock))
    }
}

/// The first report block of an RTCP SR or RR (RFC 3550 §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionReport {
    /// Fraction lost since the previous report, out of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Interarrival jitter, RTP timestamp units.
    pub jitter: u32,
}

/// Finds the first reception report block in a compound RTCP packet (parsed by
/// [`crate::rtcp::first_report`], which the `rtcp` fuzz target exercises).
pub fn parse_report(packet: &[u8]) -> Option<ReceptionReport> {
    crate::rtcp::first_report(packet).map(|b| ReceptionReport {
        fraction_lost: b.fraction_lost,
        cumulative_lost: b.cumulative_lost,
        jitter: b.jitter,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rtp(seq: u16, ts: u32) -> [u8; 172] {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        p
    }

    #[test]
    fn counts_loss_across_sequence_wrap() {
        let t0 = crate::media::test_origin();
        let mut s = RtpStats::default();
        let mut seq = 65_530u16;
        for i in 0..20u32 {
            // Lose two packets.
            if i != 3 && i != 11 {
                s.on_packet(
                    &rtp(seq, i * 160),
                    t0 + Duration::from_millis(u64::from(i) * 20),
                );
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.expected(), 20);
        assert_eq!(s.received, 18);
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn steady_stream_has_no_jitter_and_late_packets_add_some() {
        let t0 = crate::media::test_origin();
        let mut s = RtpStats::default();
        for i in 0..50u32 {
            s.on_packet(
                &rtp(i as u16, i * 160),
                t0 + Duration::from_millis(u64::from(i) * 20),
            );
        }
        assert!(s.jitter_ms().expect("PCMU clock") < 0.01);
        s.on_packet(&rtp(50, 50 * 160), t0 + Duration::from_millis(50 * 20 + 30));
        assert!(s.jitter_ms().expect("PCMU clock") > 1.0);
    }

    #[test]
    fn rtcp_is_told_apart_from_rtp() {
        assert!(!is_rtcp(&rtp(1, 1)));
        let mut rr = [0u8; 32];
        rr[0] = 0x81;
        rr[1] = 201;
        rr[3] = 7;
        assert!(is_rtcp(&rr));
    }

    #[test]
    fn parses_receiver_report_block() {
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&2u32.to_be_bytes()); // reportee SSRC
        rr.extend_from_slice(&[25, 0, 0, 42]); // fraction 25/256, 42 lost
        rr.extend_from_slice(&100u32.to_be_bytes());
        rr.extend_from_slice(&77u32.to_be_bytes()); // jitter
        rr.extend_from_slice(&[0; 8]);
        let r = parse_report(&rr).expect("report");
        assert_eq!(
            r,
            ReceptionReport {
                fraction_lost: 25,
                cumulative_lost: 42,
                jitter: 77
            }
        );
        // Truncated or garbage input is not a report, never a panic.
        assert_eq!(parse_report(&rr[..20]), None);
        assert_eq!(parse_report(&[0xff; 40]), None);
        assert_eq!(parse_report(&[]), None);
    }
}
