//! UDP: receive and send on both sides, stateless 400s, garbage and oversize drops.

use std::time::Duration;

use bytes::Bytes;
use sbc_proto::net::{Peer, Side, TransportKind};
use tokio::net::UdpSocket;

use super::{Harness, any_port, options};
use crate::transport::TransportConfig;

fn two_sided() -> TransportConfig {
    let mut c = TransportConfig::new();
    // Multi-homed on loopback: the inside and outside use different addresses.
    c.inside.udp = vec![any_port("127.0.0.1")];
    c.outside.udp = vec![any_port("127.0.0.2")];
    c
}

async fn recv_text(socket: &UdpSocket) -> (String, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a datagram within 5 s")
        .expect("recv");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

#[tokio::test]
async fn receives_and_sends_on_both_sides_from_the_sides_own_address() {
    let mut h = Harness::start(two_sided());
    for (side, ip) in [(Side::Inside, "127.0.0.1"), (Side::Outside, "127.0.0.2")] {
        let sbc = h.addr(side, TransportKind::Udp);
        assert_eq!(sbc.ip().to_string(), ip);
        let client = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
        client
            .send_to(options(side.as_str()).as_bytes(), sbc)
            .await
            .expect("send");
        let m = h.next().await;
        assert_eq!(m.peer.side, side);
        assert_eq!(m.peer.transport, TransportKind::Udp);
        assert_eq!(m.peer.addr, client.local_addr().expect("addr"));
        assert_eq!(m.peer.conn, None);
        assert_eq!(m.peer.local, Some(sbc));
        assert_eq!(m.message.call_id(), format!("{}@pbx", side.as_str()));

        // Outbound leaves from the side's socket, so the peer sees the side's address.
        h.transport
            .send(&m.peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"))
            .expect("send");
        let (text, from) = recv_text(&client).await;
        assert_eq!(from, sbc);
        assert!(text.starts_with("SIP/2.0 200 OK"));
    }
    let sent = h
        .metrics
        .sip_sent
        .with_label_values(&["outside", "udp"])
        .get();
    assert_eq!(sent, 1);
    // Each datagram's kernel arrival time was read with it (SO_TIMESTAMPNS).
    for side in ["inside", "outside"] {
        let waits = h.metrics.sip_receive_wait.with_label_values(&[side]);
        assert_eq!(waits.get_sample_count(), 1, "{side}");
        assert!(waits.get_sample_sum() < 5.0, "{side}");
    }
}

#[tokio::test]
async fn malformed_request_gets_400_with_reason_and_service_continues() {
    let mut h = Harness::start(two_sided());
    let sbc = h.addr(Side::Inside, TransportKind::Udp);
    let client = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
    let bad = options("bad").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    client.send_to(bad.as_bytes(), sbc).await.expect("send");
    // rport was requested, so the answer goes to the source port (RFC 3581).
    let (text, from) = recv_text(&client).await;
    assert_eq!(from, sbc);
    assert!(
        text.starts_with("SIP/2.0 400 CSeq Method Does Not Match\r\n"),
        "{text}"
    );
    let port = client.local_addr().expect("addr").port();
    assert!(text.contains(&format!(";rport={port}")), "{text}");
    assert!(text.contains(";received=127.0.0.1"), "{text}");
    assert!(text.contains("Call-ID: bad@pbx"), "{text}");
    let rejected = h
        .metrics
        .sip_rejected
        .with_label_values(&["inside", "udp", "400"])
        .get();
    assert_eq!(rejected, 1);

    client
        .send_to(options("good").as_bytes(), sbc)
        .await
        .expect("send");
    assert_eq!(h.next().await.message.call_id(), "good@pbx");
}

#[tokio::test]
async fn garbage_and_oversize_are_dropped_and_counted() {
    let mut config = two_sided();
    config.limits.max_message = 1500;
    let mut h = Harness::start(config);
    let sbc = h.addr(Side::Outside, TransportKind::Udp);
    let client = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
    client
        .send_to(b"\x16\x03\x01 definitely not SIP", sbc)
        .await
        .expect("send");
    client.send_to(&[b'A'; 2000], sbc).await.expect("send");
    // A malformed response is never answered (RFC 3261 §18.1.2).
    client
        .send_to(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", sbc)
        .await
        .expect("send");
    client.send_to(b"\r\n\r\n", sbc).await.expect("send");
    let out = TransportKind::Udp;
    h.eventually("drops counted", |h| {
        h.dropped(Side::Outside, out, "not_sip") == 1
            && h.dropped(Side::Outside, out, "oversize") == 1
            && h.dropped(Side::Outside, out, "unanswerable") == 1
    })
    .await;
    client
        .send_to(options("after").as_bytes(), sbc)
        .await
        .expect("send");
    assert_eq!(h.next().await.message.call_id(), "after@pbx");
    // Nothing was sent back for any of the dropped datagrams.
    let mut buf = [0u8; 100];
    let nothing =
        tokio::time::timeout(Duration::from_millis(100), client.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "no response to dropped input");
}

#[tokio::test]
async fn reuseport_workers_share_one_address() {
    let mut config = two_sided();
    config.udp.workers = 3;
    let mut h = Harness::start(config);
    let addrs = h.transport.local_addrs(Side::Inside, TransportKind::Udp);
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    let client = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
    for i in 0..6 {
        client
            .send_to(options(&format!("w{i}")).as_bytes(), addrs[0])
            .await
            .expect("send");
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(h.next().await.message.call_id().to_owned());
    }
    seen.sort();
    assert_eq!(seen.len(), 6);
}

#[tokio::test]
async fn send_without_a_socket_for_the_family_is_an_error() {
    let h = Harness::start(two_sided());
    let to = Peer {
        side: Side::Inside,
        transport: TransportKind::Udp,
        addr: "[::1]:5060".parse().expect("literal"),
        conn: None,
        local: None,
    };
    let err = h
        .transport
        .send(&to, Bytes::from_static(b"x"))
        .expect_err("no IPv6 socket");
    assert_eq!(err.reason(), "no_socket");
    assert_eq!(
        h.send_errors(Side::Inside, TransportKind::Udp, "no_socket"),
        1
    );
}

#[tokio::test]
async fn ipv6_udp_and_tcp_listeners_work() {
    let mut config = TransportConfig::new();
    config.inside.udp = vec![any_port("[::1]")];
    config.inside.tcp = vec![any_port("[::1]")];
    config.outside.udp = vec![any_port("127.0.0.2")];
    let mut h = Harness::start(config);
    let sbc = h.addr(Side::Inside, TransportKind::Udp);
    assert!(sbc.is_ipv6());
    let client = UdpSocket::bind(any_port("[::1]")).await.expect("bind");
    client
        .send_to(options("v6").as_bytes(), sbc)
        .await
        .expect("send");
    let m = h.next().await;
    assert!(m.peer.addr.is_ipv6());
    h.transport
        .send(&m.peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"))
        .expect("send");
    let (_, from) = recv_text(&client).await;
    assert_eq!(from, sbc);

    let tcp = h.addr(Side::Inside, TransportKind::Tcp);
    let mut s = tokio::net::TcpStream::connect(tcp).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut s, options("v6t").as_bytes())
        .await
        .expect("write");
    let m = h.next().await;
    assert_eq!(m.peer.transport, TransportKind::Tcp);
    assert!(m.peer.local.is_some_and(|l| l.is_ipv6()));
}

#[tokio::test]
async fn udp_sends_from_the_listener_the_peer_names_and_inbound_carries_it() {
    let mut config = TransportConfig::new();
    config.inside.udp = vec![any_port("127.0.0.1")];
    config.outside.udp = vec![any_port("127.0.0.2"), any_port("127.0.0.4")];
    let mut h = Harness::start(config);
    let second = h
        .transport
        .local_addrs(Side::Outside, TransportKind::Udp)
        .into_iter()
        .find(|a| a.ip().to_string() == "127.0.0.4")
        .expect("second outside listener");
    let carrier = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
    let to = Peer {
        side: Side::Outside,
        transport: TransportKind::Udp,
        addr: carrier.local_addr().expect("addr"),
        conn: None,
        local: Some(second),
    };
    h.transport
        .send(&to, Bytes::from(options("src")))
        .expect("send");
    let mut buf = [0u8; 2048];
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), carrier.recv_from(&mut buf))
        .await
        .expect("within 5 s")
        .expect("recv");
    assert_eq!(
        from, second,
        "sent from the named listener, not the first one"
    );
    // What arrives at that listener says so, for the answer to leave from it again.
    carrier
        .send_to(options("back").as_bytes(), second)
        .await
        .expect("send back");
    let got = h.next().await;
    assert_eq!(got.peer.local, Some(second));
}
