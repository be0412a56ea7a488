//! Transport tests on real loopback sockets. Every wait is bounded; timeout behaviour runs on
//! paused (virtual) time.

mod admission;
mod rfc4475;
mod tcp;
mod tls;
mod udp;

use std::{net::SocketAddr, time::Duration};

use sbc_proto::net::{Side, TransportKind};
use tokio::sync::mpsc;

use super::{Inbound, Transport, TransportConfig};
use crate::metrics::Metrics;

/// A running transport with its inbound channel and metrics.
struct Harness {
    transport: Transport,
    inbound: mpsc::Receiver<Inbound>,
    metrics: Metrics,
}

impl Harness {
    fn start(config: TransportConfig) -> Self {
        let metrics = Metrics::new().expect("metrics register");
        let (tx, inbound) = mpsc::channel(64);
        let transport = Transport::start(config, &metrics, tx).expect("transport starts");
        Self {
            transport,
            inbound,
            metrics,
        }
    }

    fn addr(&self, side: Side, kind: TransportKind) -> SocketAddr {
        self.transport.local_addrs(side, kind)[0]
    }

    /// The next inbound message, within 5 s (real time).
    async fn next(&mut self) -> Inbound {
        tokio::time::timeout(Duration::from_secs(5), self.inbound.recv())
            .await
            .expect("a message within 5 s")
            .expect("channel open")
    }

    fn dropped(&self, side: Side, kind: TransportKind, reason: &str) -> u64 {
        self.metrics
            .sip_dropped
            .with_label_values(&[side.as_str(), kind.as_str(), reason])
            .get()
    }

    fn send_errors(&self, side: Side, kind: TransportKind, reason: &str) -> u64 {
        self.metrics
            .sip_send_errors
            .with_label_values(&[side.as_str(), kind.as_str(), reason])
            .get()
    }

    /// Waits (bounded, real time) until `f` holds.
    async fn eventually(&self, what: &str, f: impl Fn(&Self) -> bool) {
        for _ in 0..500 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

fn any_port(ip: &str) -> SocketAddr {
    format!("{ip}:0").parse().expect("literal address")
}

/// A valid OPTIONS request; `tag` makes the Call-ID and branch unique.
fn options(tag: &str) -> String {
    format!(
        "OPTIONS sip:sbc@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{tag};rport\r\n\
         From: <sip:pbx@127.0.0.1>;tag=f{tag}\r\n\
         To: <sip:sbc@127.0.0.1>\r\n\
         Call-ID: {tag}@pbx\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A 200 response to [`options`].
fn ok_response(tag: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{tag};rport\r\n\
         From: <sip:pbx@127.0.0.1>;tag=f{tag}\r\n\
         To: <sip:sbc@127.0.0.1>;tag=t{tag}\r\n\
         Call-ID: {tag}@pbx\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
