//! Every RFC 4475 torture message over UDP and over TCP, judged strictly: a request is either
//! delivered to the core (valid) or answered by the transport with the status the parser
//! assigns it (the codes themselves are checked against the RFC in
//! `sbc-proto/tests/rfc4475.rs`), the answer read back over UDP and TCP; a request silently
//! dropped fails. Responses are never answered (RFC 3261 §18.1.2).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use bytes::Bytes;
use sbc_proto::{
    net::{Side, TransportKind},
    sip::{Headers, Limits, Message, Method, ParseError, Reaction},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::{Harness, any_port};
use crate::transport::TransportConfig;

/// What the transport must do with one torture message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Deliver,
    Respond(u16),
    Drop,
}

fn corpus() -> Vec<(String, Bytes)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/rfc4475");
    let mut out = Vec::new();
    for sub in [dir.clone(), dir.join("variants")] {
        let mut files: Vec<_> = std::fs::read_dir(&sub)
            .expect("testdata")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .collect();
        files.sort();
        for p in files {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let data = std::fs::read(&p).expect("read");
            out.push((name.unwrap_or_default(), Bytes::from(data)));
        }
    }
    assert!(out.len() >= 49, "the RFC's 49 messages are all there");
    out
}

fn expect(data: &Bytes) -> Expect {
    match Message::parse(data.clone(), &Limits::default()) {
        Ok(_) => Expect::Deliver,
        Err(e) => match e.reaction() {
            Reaction::Respond { code, .. } => Expect::Respond(code),
            Reaction::Drop => Expect::Drop,
        },
    }
}

/// The address this test sends its datagrams from (its own, so it can bind the ports the
/// answers go to).
const SENDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 44, 75, 1));

/// Where on [`SENDER`] a stateless UDP answer goes, read from the top Via independently of
/// the transport: its sent-by port (5060 when absent), or `None` with `rport` (the source
/// port).
fn answer_port(data: &Bytes) -> Option<u16> {
    let headers = match Message::parse(data.clone(), &Limits::default()) {
        Ok(m) => return via_port(m.headers()),
        Err(ParseError::Rejected { headers, .. }) => headers,
        Err(_) => return Some(5060),
    };
    via_port(&headers)
}

fn via_port(headers: &Headers) -> Option<u16> {
    match headers.top_via() {
        Ok(v) if v.rport().is_some() => None,
        Ok(v) => Some(v.port.unwrap_or(5060)),
        Err(_) => Some(5060),
    }
}

fn is_request(data: &Bytes) -> bool {
    !data.starts_with(b"SIP/")
}

fn rejected(h: &Harness, kind: TransportKind, code: u16) -> u64 {
    h.metrics
        .sip_rejected
        .with_label_values(&[Side::Inside.as_str(), kind.as_str(), &code.to_string()])
        .get()
}

fn config() -> TransportConfig {
    let mut c = TransportConfig::new();
    c.inside.udp = vec![any_port("127.0.0.1")];
    c.inside.tcp = vec![any_port("127.0.0.1")];
    // Long enough for the 64 KiB-ish torture messages to travel on loopback, short enough
    // for the unfinished ones (`baddn`, `clerr` on a stream) to be cut in a test.
    c.stream.message_timeout = Duration::from_millis(300);
    c
}

#[tokio::test]
async fn every_torture_message_is_delivered_or_answered_over_udp_and_tcp() {
    let mut h = Harness::start(config());
    let mut verdicts = Vec::new();
    for (name, data) in corpus() {
        let want = expect(&data);
        if is_request(&data) {
            assert_ne!(
                want,
                Expect::Drop,
                "{name}: a request must never go unanswered"
            );
        }
        // Without Content-Length a message cannot be framed on a stream (RFC 3261 §18.3): a
        // request (`inv2543`) gets 400 on the connection, which is then closed and counted.
        let parsed = Message::parse(data.clone(), &Limits::default()).ok();
        let no_length = parsed
            .as_ref()
            .is_some_and(|m| m.content_length().is_none());
        let answerable = parsed
            .as_ref()
            .is_some_and(|m| m.is_request() && m.method() != Some(&Method::Ack));
        for kind in [TransportKind::Udp, TransportKind::Tcp] {
            if no_length && kind == TransportKind::Tcp {
                let closed = h.dropped(Side::Inside, kind, "missing_content_length");
                let answered = rejected(&h, kind, 400);
                let mut s = TcpStream::connect(h.addr(Side::Inside, kind))
                    .await
                    .expect("connect");
                s.write_all(&data).await.expect("write");
                let got = read_to_close(&mut s).await;
                if answerable {
                    let text = String::from_utf8_lossy(&got);
                    assert!(
                        text.starts_with("SIP/2.0 400 Missing Content-Length Header\r\n"),
                        "{name} over TCP: {text}"
                    );
                    assert_eq!(rejected(&h, kind, 400), answered + 1, "{name}");
                    verdicts.push((name.clone(), kind, Expect::Respond(400)));
                } else {
                    assert!(got.is_empty(), "{name}: a response is never answered");
                }
                h.eventually(&format!("{name}: closed"), |h| {
                    h.dropped(Side::Inside, kind, "missing_content_length") > closed
                })
                .await;
                continue;
            }
            let before = want_count(&h, kind, want);
            let mut stream = None;
            let mut udp = None;
            match kind {
                TransportKind::Udp => {
                    // A stateless answer goes to the source address and the Via's sent-by port
                    // (RFC 3261 §18.2.2), or the source port with `rport` (RFC 3581 §4): send
                    // from there, on an address of its own, to read it back.
                    let from = match (want, answer_port(&data)) {
                        (Expect::Respond(_), Some(port)) => SocketAddr::new(SENDER, port),
                        _ => SocketAddr::new(SENDER, 0),
                    };
                    let sender = UdpSocket::bind(from).await.expect("bind the sender");
                    sender
                        .send_to(&data, h.addr(Side::Inside, kind))
                        .await
                        .expect("send");
                    udp = Some(sender);
                }
                _ => {
                    let mut s = TcpStream::connect(h.addr(Side::Inside, kind))
                        .await
                        .expect("connect");
                    s.write_all(&data).await.expect("write");
                    stream = Some(s);
                }
            }
            match want {
                Expect::Deliver => {
                    let got = tokio::time::timeout(Duration::from_secs(2), h.inbound.recv())
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| panic!("{name} over {kind:?} not delivered"));
                    assert_eq!(got.peer.transport, kind, "{name}");
                    if name == "dblreq" && kind == TransportKind::Tcp {
                        // On a stream the octets after the REGISTER are the next message
                        // (an INVITE), then stray octets dropped as not SIP.
                        let second = h.next().await;
                        assert_eq!(second.peer.conn, got.peer.conn, "{name}");
                    }
                }
                Expect::Respond(code) => {
                    h.eventually(&format!("{name} over {kind:?}: {code}"), |h| {
                        rejected(h, kind, code) > before
                    })
                    .await;
                    let head = format!("SIP/2.0 {code} ");
                    if let Some(udp) = &udp {
                        let mut buf = vec![0u8; 4096];
                        let (n, from) =
                            tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
                                .await
                                .unwrap_or_else(|_| panic!("{name} over UDP: no {code} within 5 s"))
                                .expect("recv");
                        assert_eq!(from, h.addr(Side::Inside, kind), "{name}: answered from");
                        assert!(
                            buf[..n].starts_with(head.as_bytes()),
                            "{name} over UDP: {}",
                            String::from_utf8_lossy(&buf[..n])
                        );
                    }
                    if let Some(s) = stream.as_mut() {
                        // On a stream the answer comes back on the connection.
                        let mut buf = vec![0u8; 4096];
                        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                            .await
                            .expect("answer within 5 s")
                            .expect("read");
                        assert!(
                            buf[..n].starts_with(head.as_bytes()),
                            "{name} over TCP: {}",
                            String::from_utf8_lossy(&buf[..n])
                        );
                    }
                }
                Expect::Drop => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            verdicts.push((name.clone(), kind, want));
        }
    }
    // Nothing else reached the core (a message delivered twice, or a dropped one delivered).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.inbound.try_recv().is_err(), "unexpected extra message");

    let answered = verdicts
        .iter()
        .filter(|(_, _, w)| matches!(w, Expect::Respond(_)))
        .count();
    assert!(answered >= 2 * 20, "{answered} answers: {verdicts:?}");
}

/// Reads until the SBC closes the connection (within 5 s); returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection not closed within 5 s"),
        }
    }
}

/// The count that proves `want` happened (rejections of that code).
fn want_count(h: &Harness, kind: TransportKind, want: Expect) -> u64 {
    match want {
        Expect::Respond(code) => rejected(h, kind, code),
        _ => 0,
    }
}
