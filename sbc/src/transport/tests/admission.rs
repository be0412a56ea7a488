//! Admission of stream connections (ACL, denylist, bans, per-source cap, first-message
//! deadline) and of stateless replies, on loopback: 127.0.0.1 is the allowed PBX, other
//! 127.0.0.x addresses are other hosts.

use std::{net::SocketAddr, time::Duration};

use sbc_proto::net::{Side, TransportKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream, UdpSocket},
};

use super::{Harness, any_port, options};
use crate::transport::{AdmissionPolicy, ReplyLimits, TransportConfig};

const TCP: TransportKind = TransportKind::Tcp;

/// Inside TCP and UDP on 127.0.0.1; only 127.0.0.1 is allowed inside, 127.0.0.3 is denied.
fn config() -> TransportConfig {
    let mut c = TransportConfig::new();
    c.inside.tcp = vec![any_port("127.0.0.1")];
    c.inside.udp = vec![any_port("127.0.0.1")];
    c.outside.udp = vec![any_port("127.0.0.2")];
    c.admission = policy("127.0.0.1/32");
    c
}

fn policy(inside: &str) -> AdmissionPolicy {
    AdmissionPolicy {
        inside: Some(vec![inside.parse().expect("literal")]),
        outside: Some(vec!["127.0.0.9".parse().expect("literal")]),
        deny: vec!["127.0.0.3/32".parse().expect("literal")],
    }
}

/// A TCP connection to the inside listener from `from`.
async fn connect_from(h: &Harness, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(any_port(from)).expect("bind");
    s.connect(h.addr(Side::Inside, TCP)).await.expect("connect")
}

/// True when the SBC closes (FIN or RST) within `within` of (virtual or real) time.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        for _ in 0..1000 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test]
async fn unknown_denied_and_banned_sources_are_refused_at_accept() {
    let mut h = Harness::start(config());
    // Not on the allowlist: reset at once, nothing reaches the core.
    let mut s = connect_from(&h, "127.0.0.2").await;
    let _ = s.write_all(options("x").as_bytes()).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    h.eventually("acl counted", |h| h.dropped(Side::Inside, TCP, "acl") == 1)
        .await;
    // On the denylist.
    let mut s = connect_from(&h, "127.0.0.3").await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    h.eventually("denied counted", |h| {
        h.dropped(Side::Inside, TCP, "denied") == 1
    })
    .await;
    assert!(h.inbound.try_recv().is_err(), "nothing delivered");

    // The allowed PBX connects and talks.
    let mut pbx = connect_from(&h, "127.0.0.1").await;
    pbx.write_all(options("a").as_bytes()).await.expect("write");
    assert_eq!(h.next().await.message.call_id(), "a@pbx");
    // A ban closes its open connection and refuses new ones; keyed by side.
    let ip = "127.0.0.1".parse().expect("literal");
    assert_eq!(
        h.transport.ban(Side::Outside, ip, Duration::from_secs(60)),
        0
    );
    assert_eq!(
        h.transport.ban(Side::Inside, ip, Duration::from_secs(60)),
        1
    );
    assert!(closed_within(&mut pbx, Duration::from_secs(2)).await);
    let mut again = connect_from(&h, "127.0.0.1").await;
    assert!(closed_within(&mut again, Duration::from_secs(2)).await);
    h.eventually("banned counted", |h| {
        h.dropped(Side::Inside, TCP, "banned") == 2
    })
    .await;
    h.eventually("unregistered", |h| h.transport.connection_count() == 0)
        .await;
    // Lifted: welcome again.
    h.transport.unban(Side::Inside, ip);
    let mut back = connect_from(&h, "127.0.0.1").await;
    back.write_all(options("b").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "b@pbx");

    // A live ACL change closes the connections it no longer admits.
    h.transport.set_admission(policy("127.0.0.2/32"));
    assert!(closed_within(&mut back, Duration::from_secs(2)).await);
    h.eventually("acl close counted", |h| {
        h.dropped(Side::Inside, TCP, "acl") == 2
    })
    .await;
    let mut newly = connect_from(&h, "127.0.0.2").await;
    newly
        .write_all(options("c").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "c@pbx");
}

#[tokio::test]
async fn connections_per_source_are_capped() {
    let mut c = config();
    c.admission = policy("127.0.0.0/8");
    c.stream.max_per_source = 2;
    let mut h = Harness::start(c);
    let mut a = connect_from(&h, "127.0.0.4").await;
    let mut b = connect_from(&h, "127.0.0.4").await;
    a.write_all(options("a").as_bytes()).await.expect("write");
    b.write_all(options("b").as_bytes()).await.expect("write");
    h.next().await;
    h.next().await;
    let mut third = connect_from(&h, "127.0.0.4").await;
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    h.eventually("counted", |h| {
        h.dropped(Side::Inside, TCP, "source_connection_limit") == 1
    })
    .await;
    // Another source is not affected.
    let mut other = connect_from(&h, "127.0.0.5").await;
    other
        .write_all(options("o").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "o@pbx");
    // A closed connection gives its slot back.
    drop(a);
    h.eventually("slot freed", |h| h.transport.connection_count() == 2)
        .await;
    let mut d = connect_from(&h, "127.0.0.4").await;
    d.write_all(options("d").as_bytes()).await.expect("write");
    assert_eq!(h.next().await.message.call_id(), "d@pbx");
}

#[tokio::test(start_paused = true)]
async fn keep_alives_alone_do_not_hold_a_connection_but_do_after_a_valid_message() {
    let mut h = Harness::start(config());
    let start = tokio::time::Instant::now();
    let mut idle = connect_from(&h, "127.0.0.1").await;
    let mut proven = connect_from(&h, "127.0.0.1").await;
    proven
        .write_all(options("p").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "p@pbx");
    // Both send a CRLF ping every second for 20 s.
    let mut idle_open = true;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if idle_open && idle.write_all(b"\r\n\r\n").await.is_err() {
            idle_open = false;
        }
        proven
            .write_all(b"\r\n\r\n")
            .await
            .expect("proven stays open");
    }
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    assert_eq!(h.dropped(Side::Inside, TCP, "first_message_timeout"), 1);
    // The proven connection is still usable after 20 s of keep-alives.
    proven
        .write_all(options("q").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "q@pbx");
    assert!(start.elapsed() >= Duration::from_secs(20));
    assert_eq!(h.dropped(Side::Inside, TCP, "idle_timeout"), 0);

    // A malformed request does not prove anything either: closed at the deadline.
    let mut bad = connect_from(&h, "127.0.0.1").await;
    let t = tokio::time::Instant::now();
    let malformed = options("m").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nCall-ID: two\r\n",
    );
    bad.write_all(malformed.as_bytes()).await.expect("write");
    assert!(closed_within(&mut bad, Duration::from_secs(6)).await);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(h.dropped(Side::Inside, TCP, "first_message_timeout"), 2);
}

async fn recv(socket: &UdpSocket, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(within, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn stateless_replies_only_to_admitted_sources_and_rate_limited() {
    let mut c = config();
    c.replies = ReplyLimits { rate: 1, burst: 4 };
    let h = Harness::start(c);
    let to: SocketAddr = h.addr(Side::Inside, TransportKind::Udp);
    let bad = |tag: &str| {
        options(tag).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nCall-ID: two\r\n",
        )
    };
    // An unknown source on the inside: no answer at all.
    let stranger = UdpSocket::bind(any_port("127.0.0.2")).await.expect("bind");
    stranger
        .send_to(bad("s").as_bytes(), to)
        .await
        .expect("send");
    assert_eq!(recv(&stranger, Duration::from_millis(300)).await, None);
    assert_eq!(h.dropped(Side::Inside, TransportKind::Udp, "reply_acl"), 1);
    // The PBX gets its 400.
    let pbx = UdpSocket::bind(any_port("127.0.0.1")).await.expect("bind");
    pbx.send_to(bad("p").as_bytes(), to).await.expect("send");
    let reply = recv(&pbx, Duration::from_secs(2)).await.expect("400");
    assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");
    // A burst of 20: rate + burst (5) answered in all, the rest suppressed and counted.
    for i in 0..20 {
        pbx.send_to(bad(&format!("b{i}")).as_bytes(), to)
            .await
            .expect("send");
    }
    let mut answered = 0;
    while recv(&pbx, Duration::from_millis(300)).await.is_some() {
        answered += 1;
    }
    assert!((3..=5).contains(&answered), "{answered} replies");
    let suppressed = h.dropped(Side::Inside, TransportKind::Udp, "reply_rate");
    assert_eq!(suppressed + answered + 1, 21, "{suppressed} suppressed");
}
