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
    media::manager::EndpointView,
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
