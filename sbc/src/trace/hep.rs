//! The HEP v3 sender: encodes captured messages and RTCP-derived reports with the sans-I/O
//! encoder ([`sbc_proto::hep`]) and hands them to a task that owns the UDP socket or the TCP
//! connection to the collector. The hand-off is a bounded queue: a slow or unreachable
//! collector costs dropped packets (counted), never a delayed SIP message.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use sbc_proto::{
    hep::{self, Capture, IpProto, PayloadType},
    net::TransportKind,
};
use tokio::{io::AsyncWriteExt, sync::mpsc};

use super::{Captured, TraceMetrics};
use crate::{
    config::{Hep, HepTransport},
    media::view::EndpointView,
};

/// Wait before reconnecting to a TCP collector after a failure.
const RECONNECT: Duration = Duration::from_secs(1);
/// Longest TCP connect attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The encoding side, owned by the trace task.
#[derive(Debug)]
pub struct Sender {
    tx: mpsc::Sender<(Bytes, &'static str)>,
    buf: Vec<u8>,
    capture_id: u32,
    password: Option<String>,
    metrics: TraceMetrics,
}

impl Sender {
    /// Spawns the sending task for `collector` on the current runtime.
    pub fn start(collector: SocketAddr, cfg: &Hep, metrics: TraceMetrics) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let m = metrics.clone();
        match cfg.transport {
            HepTransport::Udp => {
                tokio::spawn(send_udp(collector, rx, m));
            }
            HepTransport::Tcp => {
                tokio::spawn(send_tcp(collector, rx, m));
            }
        }
        Self {
            tx,
            buf: Vec::with_capacity(2048),
            capture_id: cfg.capture_id,
            password: cfg.password.clone(),
            metrics,
        }
    }

    /// Exports one SIP message.
    pub fn send_sip(&mut self, c: &Captured, correlation: Option<&str>) {
        let since =
            c.at.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
        let proto = match c.transport {
            TransportKind::Udp => IpProto::Udp,
            TransportKind::Tcp | TransportKind::Tls => IpProto::Tcp,
        };
        let capture = Capture {
            proto,
            src: c.src,
            dst: c.dst,
            time_sec: u32::try_from(since.as_secs()).unwrap_or(u32::MAX),
            time_usec: since.subsec_micros(),
            payload_type: PayloadType::SIP,
            capture_id: self.capture_id,
            auth_key: self.password.as_deref(),
            correlation_id: correlation,
            payload: &c.data,
        };
        queue(&mut self.buf, &self.tx, &self.metrics, &capture, "sip");
    }

    /// Exports one RTCP-derived report, correlated with `call_id` (the leg's Call-ID, as Homer
    /// links RTCP to a call).
    pub fn send_rtcp(&mut self, r: &RtcpReport, call_id: &str) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let capture = Capture {
            proto: IpProto::Udp,
            src: r.src,
            dst: r.dst,
            time_sec: u32::try_from(since.as_secs()).unwrap_or(u32::MAX),
            time_usec: since.subsec_micros(),
            payload_type: PayloadType::RTCP_JSON,
            capture_id: self.capture_id,
            auth_key: self.password.as_deref(),
            correlation_id: Some(call_id),
            payload: r.json.as_bytes(),
        };
        queue(&mut self.buf, &self.tx, &self.metrics, &capture, "rtcp");
    }
}

/// Encodes `capture` into `buf` and queues it for the sending task.
fn queue(
    buf: &mut Vec<u8>,
    tx: &mpsc::Sender<(Bytes, &'static str)>,
    metrics: &TraceMetrics,
    capture: &Capture<'_>,
    kind: &'static str,
) {
    if hep::encode(capture, buf).is_err() {
        metrics.hep_dropped.with_label_values(&["encode"]).inc();
        return;
    }
    if tx.try_send((Bytes::copy_from_slice(buf), kind)).is_err() {
        metrics.hep_dropped.with_label_values(&["queue_full"]).inc();
    }
}

/// A quality report of one stream endpoint, from the last RTCP receiver report the peer sent
/// through the relay (what that peer says about the audio it receives from the SBC).
#[derive(Debug, Clone, PartialEq)]
pub struct RtcpReport {
    /// The peer that sent the RTCP (its latched address).
    pub src: SocketAddr,
    /// The relay's RTCP address it sent to.
    pub dst: SocketAddr,
    /// The report as the JSON Homer shows for HEP type 5.
    pub json: String,
}

impl RtcpReport {
    /// The report of stream `index`'s endpoint `ep`, if its peer sent one and is latched.
    pub fn from_endpoint(index: usize, ep: &EndpointView) -> Option<Self> {
        let r = ep.rtcp_report?;
        let src: SocketAddr = ep.latched.as_deref()?.parse().ok()?;
        let relay: std::net::IpAddr = ep.relay.parse().ok()?;
        let json = serde_json::json!({
            "type": 201,
            "report_count": 1,
            "report_blocks": [{
                "fraction_lost": r.fraction_lost,
                "packets_lost": r.cumulative_lost,
                "ia_jitter": r.jitter,
            }],
            "sbc": {
                "stream": index,
                "rtp_lost_seen": ep.rtp_lost,
                "rtp_jitter_ms_seen": ep.rtp_jitter_ms,
            },
        });
        Some(Self {
            src,
            dst: SocketAddr::new(relay, ep.rtcp_port),
            json: json.to_string(),
        })
    }
}

async fn send_udp(
    collector: SocketAddr,
    mut rx: mpsc::Receiver<(Bytes, &'static str)>,
    m: TraceMetrics,
) {
    let bind: SocketAddr = if collector.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "HEP: no UDP socket; not exporting");
            while let Some(_dropped) = rx.recv().await {
                m.hep_dropped.with_label_values(&["not_connected"]).inc();
            }
            return;
        }
    };
    m.hep_up.set(1);
    while let Some((packet, kind)) = rx.recv().await {
        match socket.send_to(&packet, collector).await {
            Ok(_) => m.hep_sent.with_label_values(&[kind]).inc(),
            Err(e) => {
                tracing::debug!(error = %e, %collector, "HEP send failed");
                m.hep_dropped.with_label_values(&["send_failed"]).inc();
            }
        }
    }
}

async fn send_tcp(
    collector: SocketAddr,
    mut rx: mpsc::Receiver<(Bytes, &'static str)>,
    m: TraceMetrics,
) {
    loop {
        let connect =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(collector));
        let mut stream = match connect.await {
            Ok(Ok(s)) => s,
            _ => {
                tracing::debug!(%collector, "HEP: collector unreachable; retrying");
                // Packets arriving meanwhile have nowhere to go.
                let until = tokio::time::Instant::now() + RECONNECT;
                loop {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(_)) => {
                            m.hep_dropped.with_label_values(&["not_connected"]).inc();
                        }
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(%collector, "HEP: connected to the collector");
        m.hep_up.set(1);
        loop {
            let Some((packet, kind)) = rx.recv().await else {
                return;
            };
            if stream.write_all(&packet).await.is_err() {
                m.hep_dropped.with_label_values(&["send_failed"]).inc();
                break;
            }
            m.hep_sent.with_label_values(&[kind]).inc();
        }
        m.hep_up.set(0);
        tracing::info!(%collector, "HEP: connection to the collector lost; reconnecting");
        tokio::time::sleep(RECONNECT).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use sbc_proto::{hep::chunk, net::Side};
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::trace::Direction;

    fn metrics() -> TraceMetrics {
        TraceMetrics::register(&prometheus::Registry::new()).expect("metrics")
    }

    fn cfg(transport: HepTransport, queue: usize) -> Hep {
        Hep {
            transport,
            capture_id: 77,
            password: Some("pw".into()),
            queue,
            ..Hep::default()
        }
    }

    fn captured() -> Captured {
        Captured {
            at: SystemTime::now(),
            now: Instant::now(),
            dir: Direction::In,
            side: Side::Inside,
            transport: TransportKind::Udp,
            src: "192.0.2.10:5060".parse().expect("literal"),
            dst: "192.0.2.1:5060".parse().expect("literal"),
            data: Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
        }
    }

    fn chunk_of<'a>(chunks: &'a [hep::Chunk<'a>], type_id: u16) -> Option<&'a [u8]> {
        chunks
            .iter()
            .find(|c| c.type_id == type_id)
            .map(|c| c.value)
    }

    #[tokio::test]
    async fn udp_collector_receives_decodable_packets() {
        let collector = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = collector.local_addr().expect("addr");
        let m = metrics();
        let mut s = Sender::start(addr, &cfg(HepTransport::Udp, 16), m.clone());
        s.send_sip(&captured(), Some("other-leg"));
        let mut buf = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), collector.recv_from(&mut buf))
            .await
            .expect("a packet within 5 s")
            .expect("recv");
        let chunks = hep::decode(&buf[..n]).expect("valid HEP3");
        assert_eq!(
            chunk_of(&chunks, chunk::CORRELATION_ID),
            Some(&b"other-leg"[..])
        );
        assert_eq!(chunk_of(&chunks, chunk::AUTH_KEY), Some(&b"pw"[..]));
        assert_eq!(
            chunk_of(&chunks, chunk::CAPTURE_ID),
            Some(&77u32.to_be_bytes()[..])
        );
        assert_eq!(
            chunk_of(&chunks, chunk::PAYLOAD),
            Some(&b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..])
        );
        assert_eq!(m.hep_sent.with_label_values(&["sip"]).get(), 1);
    }

    #[tokio::test]
    async fn tcp_collector_gets_a_stream_of_framed_packets_and_reconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let m = metrics();
        let mut s = Sender::start(addr, &cfg(HepTransport::Tcp, 16), m.clone());
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("connected within 5 s")
            .expect("accept");
        s.send_sip(&captured(), None);
        s.send_sip(&captured(), Some("c2"));
        // Two packets back to back on the stream, each framed by its own length field.
        for want in [None, Some(&b"c2"[..])] {
            let mut head = [0u8; 6];
            conn.read_exact(&mut head).await.expect("header");
            let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
            let mut packet = head.to_vec();
            packet.resize(len, 0);
            conn.read_exact(&mut packet[6..]).await.expect("rest");
            let chunks = hep::decode(&packet).expect("valid HEP3");
            assert_eq!(chunk_of(&chunks, chunk::CORRELATION_ID), want);
            assert_eq!(chunk_of(&chunks, chunk::IP_PROTO), Some(&[17u8][..]));
        }
        // The collector goes away; the sender connects again.
        drop(conn);
        let deadline = Instant::now() + Duration::from_secs(10);
        let again = loop {
            s.send_sip(&captured(), None);
            if let Ok(Ok((c, _))) =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
            {
                break c;
            }
            assert!(Instant::now() < deadline, "no reconnect within 10 s");
        };
        drop(again);
        assert!(m.hep_sent.with_label_values(&["sip"]).get() >= 2);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let m = metrics();
        let (tx, _rx) = mpsc::channel(2);
        let mut s = Sender {
            tx,
            buf: Vec::new(),
            capture_id: 1,
            password: None,
            metrics: m.clone(),
        };
        for _ in 0..5 {
            s.send_sip(&captured(), None);
        }
        assert_eq!(m.hep_dropped.with_label_values(&["queue_full"]).get(), 3);
    }
}
