//! DTMF the relay terminates (`sbc_proto::media::dtmf`): which legs, set by the call layer
//! after every answer, and digits to send as RFC 4733 events (the `GenerateDtmf` commands of
//! converted SIP INFO, executed by the signaling driver). The stream's relay task sends the
//! packets (`relay.rs`).

use std::time::Instant;

use sbc_proto::net::Side;
use sbc_proto::{
    dtmf::Digit,
    media::{SessionId, StreamKey, dtmf::GenerateRefusal},
};

use super::MediaManager;

impl MediaManager {
    /// Sends `digit` (held `duration_ms`) as RFC 4733 telephone-events with `payload_type`
    /// toward `toward` on stream `stream` of `session`. Refusals are counted
    /// (`sbc_media_dtmf_generated_total`) and logged without the digit.
    pub fn generate_dtmf(
        &self,
        session: SessionId,
        stream: usize,
        toward: Side,
        payload_type: u8,
        digit: Digit,
        duration_ms: u32,
    ) {
        let now = Instant::now();
        let key = StreamKey {
            session,
            index: stream,
        };
        let mut core = self.owner(session).lock();
        let result = core
            .table
            .generate_dtmf(now, key, toward, payload_type, digit, duration_ms);
        // Wakes the stream's relay task.
        self.inner.run(&mut core, now);
        drop(core);
        let label = match result {
            Ok(()) => "queued",
            Err(GenerateRefusal::QueueFull(_)) => "queue_full",
            Err(_) => "not_terminated",
        };
        self.inner
            .metrics
            .dtmf_generated
            .with_label_values(&[label])
            .inc();
        if let Err(e) = result {
            tracing::info!(session = %session, stream, side = toward.as_str(), error = %e,
                "DTMF digit not generated");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
        time::Duration,
    };

    use sbc_proto::media::{
        MediaEvent, MediaPeers, MediaTable, RelaySettings, SideAddress, StreamDesc,
        dtmf::StreamDtmf,
    };

    use super::*;
    use crate::{
        media::{MediaSettings, policy::MediaPolicy},
        metrics::Metrics,
    };

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const SSRC: [u8; 4] = [0xca, 0xfe, 0, 1];

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&SSRC);
        p.extend_from_slice(payload);
        p
    }

    fn peer() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Generous: the relay runs on its own thread, which a loaded 2-vCPU CI machine can
        // starve for most of a second (seen once at 800 ms); a pass never waits for it.
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    /// Through the real relay on loopback: a digit handed to the manager reaches the carrier
    /// as RFC 4733 events inside the PBX's stream (its SSRC, the next sequence numbers, the
    /// carrier's payload type, the end three times), and the carrier's own events are consumed
    /// and reported to the call layer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_relay_sends_generated_events_and_reports_detected_ones() {
        let side = SideAddress {
            bind: LO,
            advertised: LO,
        };
        let settings = MediaSettings {
            relay: RelaySettings {
                inside: side.into(),
                outside: side.into(),
                port_min: 42_100,
                port_max: 42_199,
                strict_source: false,
                relatch_window: Duration::from_secs(2),
                max_streams: 4,
                dtmf_queue: 1,
                timeout: Some(Duration::from_secs(60)),
                hold_timeout: Some(Duration::from_secs(3600)),
            },
            policy: MediaPolicy::default(),
            kernel_latch: false,
            prime_neighbours: false,
            relay_workers: 1,
            relay_poll: Duration::ZERO,
            relay_idle_sockets: 4_096,
            warm_pairs: 2,
            xsk_interfaces: Vec::new(),
            xsk_poll: Duration::ZERO,
            xsk_busy_poll: None,
        };
        let metrics = Metrics::new().expect("metrics");
        let m = MediaManager::new(settings, None, metrics.media.clone());
        let (pbx, carrier) = (peer(), peer());
        let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
        let a = m
            .allocate(
                Instant::now(),
                Side::Inside,
                &[StreamDesc::new(LO, port(&pbx))],
                &MediaPeers::default(),
            )
            .expect("offer");
        m.commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, port(&carrier))],
        )
        .expect("answer");
        let now = Instant::now();
        m.drive(now, |t| {
            t.set_dtmf(
                now,
                a.session,
                &[StreamDtmf {
                    terminated: [None, Some(96)],
                }],
            )
        })
        .expect("dtmf");
        let relay = |leg: Side| {
            let r = a.streams[0].facing(leg);
            SocketAddr::new(LO, r.rtp_port)
        };
        let mut buf = [0u8; 256];
        // Audio both ways (latches both legs).
        pbx.send_to(&rtp(0, 500, 8000, &[0xff; 160]), relay(Side::Inside))
            .expect("send");
        let (n, _) = carrier.recv_from(&mut buf).expect("audio relayed");
        assert_eq!(&buf[2..4], &500u16.to_be_bytes());
        assert_eq!(n, 172);
        carrier
            .send_to(&rtp(0, 7, 0, &[0xff; 160]), relay(Side::Outside))
            .expect("send");
        pbx.recv_from(&mut buf).expect("audio relayed");

        let digit = Digit::from_char('4').expect("digit");
        m.generate_dtmf(a.session, 0, Side::Outside, 96, digit, 100);
        let mut got = Vec::new();
        for _ in 0..5 {
            let (n, _) = carrier.recv_from(&mut buf).expect("generated packet");
            got.push(buf[..n].to_vec());
        }
        let shown: Vec<_> = got
            .iter()
            .map(|p| {
                assert_eq!(p.len(), 16);
                assert_eq!(&p[8..12], &SSRC, "the PBX's stream");
                assert_eq!(p[12], 4, "event 4");
                assert_eq!(p[13] & 0x3f, 10, "volume");
                (
                    p[1],
                    u16::from_be_bytes([p[2], p[3]]),
                    p[13] & 0x80 != 0,
                    u16::from_be_bytes([p[14], p[15]]),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (0x80 | 96, 501, false, 400),
                (96, 502, false, 800),
                (96, 503, true, 800),
                (96, 504, true, 800),
                (96, 505, true, 800),
            ]
        );
        // One timestamp for the event, after the audio's 8000.
        let ts: Vec<u32> = got
            .iter()
            .map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
            .collect();
        assert!(ts.iter().all(|t| *t == ts[0] && *t >= 8000), "{ts:?}");
        // The PBX's next audio follows the events without a gap.
        pbx.send_to(&rtp(0, 501, 9600, &[0xff; 160]), relay(Side::Inside))
            .expect("send");
        carrier.recv_from(&mut buf).expect("audio relayed");
        assert_eq!(&buf[2..4], &506u16.to_be_bytes());
        let generated = &metrics.media.dtmf_generated;
        assert_eq!(generated.with_label_values(&["queued"]).get(), 1);
        assert_eq!(
            metrics
                .media
                .dtmf_packets
                .with_label_values(&["generated"])
                .get(),
            5
        );

        // The carrier's own digit (an end packet): consumed, reported once.
        let end = [9, 0x8a, 3, 32];
        for seq in 8..11 {
            carrier
                .send_to(&rtp(96, seq, 160, &end), relay(Side::Outside))
                .expect("send");
        }
        let event = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match m.drive(Instant::now(), MediaTable::poll_event) {
                    // The first packets' latches are reported too; this test is about digits.
                    Some(MediaEvent::Latched(_)) => {}
                    Some(e) => return e,
                    None => m.event_ready().await,
                }
            }
        })
        .await
        .expect("digit reported");
        assert_eq!(
            event,
            MediaEvent::Dtmf {
                session: a.session,
                leg: Side::Outside,
                digit: Digit::from_char('9').expect("digit"),
                duration_ms: 100,
            }
        );
        pbx.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(
            pbx.recv_from(&mut buf).is_err(),
            "events reached the INFO side"
        );
        // (A latch reported late, under load, may still be queued: only digits count here.)
        let digits = std::iter::from_fn(|| m.drive(Instant::now(), MediaTable::poll_event))
            .filter(|e| !matches!(e, MediaEvent::Latched(_)))
            .count();
        assert_eq!(digits, 0, "retransmitted ends are one digit");
        m.release(Instant::now(), a.session);
    }
}
