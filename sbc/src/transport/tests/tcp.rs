//! TCP: framing, keep-alives, limits, timeouts and connection reuse.

use std::time::Duration;

use bytes::Bytes;
use sbc_proto::net::{Peer, Side, TransportKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{Harness, any_port, ok_response, options};
use crate::transport::TransportConfig;

const TCP: TransportKind = TransportKind::Tcp;

fn inside_tcp() -> TransportConfig {
    let mut c = TransportConfig::new();
    c.inside.tcp = vec![any_port("127.0.0.1")];
    c.outside.tcp = vec![any_port("127.0.0.2")];
    c
}

async fn connect(h: &Harness) -> TcpStream {
    let s = TcpStream::connect(h.addr(Side::Inside, TCP))
        .await
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads until `n` bytes arrived (bounded by 5 s real time).
async fn read_n(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("bytes within 5 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads until the peer closes; returns the bytes read. Bounded by count, not by time, so it
/// also works on paused time.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    panic!("connection not closed");
}

#[tokio::test]
async fn framing_across_split_reads_and_two_messages_in_one_read() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    let two = format!("{}{}", options("a"), options("b"));
    // Arbitrary split points, including inside "\r\n\r\n" and inside the start line.
    let mut pos = 0;
    for (i, size) in [1usize, 2, 3, 5, 7, 11, 13, 64, 3]
        .iter()
        .cycle()
        .enumerate()
    {
        if pos >= two.len() || i > 10_000 {
            break;
        }
        let end = (pos + size).min(two.len());
        s.write_all(&two.as_bytes()[pos..end]).await.expect("write");
        pos = end;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let a = h.next().await;
    let b = h.next().await;
    assert_eq!(a.message.call_id(), "a@pbx");
    assert_eq!(b.message.call_id(), "b@pbx");
    assert_eq!(a.peer.transport, TCP);
    assert!(a.peer.conn.is_some());
    assert_eq!(a.peer.conn, b.peer.conn);

    // Two messages (with a body) in one write.
    let with_body = options("c")
        .replace("Content-Length: 0", "Content-Length: 5")
        .replace("\r\n\r\n", "\r\n\r\nhello");
    s.write_all(format!("{with_body}{}", options("d")).as_bytes())
        .await
        .expect("write");
    let c = h.next().await;
    assert_eq!(c.message.body(), b"hello");
    assert_eq!(h.next().await.message.call_id(), "d@pbx");
}

#[tokio::test]
async fn crlf_ping_gets_pong_and_response_goes_back_on_the_same_connection() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    s.write_all(b"\r\n\r\n").await.expect("ping");
    assert_eq!(read_n(&mut s, 2).await, "\r\n");
    // A lone pong from the peer is accepted silently.
    s.write_all(b"\r\n").await.expect("pong");
    s.write_all(options("r").as_bytes()).await.expect("write");
    let m = h.next().await;
    // Another connection from the same host must not receive the response.
    let mut other = connect(&h).await;
    other
        .write_all(options("o").as_bytes())
        .await
        .expect("write");
    let o = h.next().await;
    assert_ne!(o.peer.conn, m.peer.conn);
    let resp = ok_response("r");
    h.transport
        .send(&m.peer, Bytes::from(resp.clone()))
        .expect("send");
    assert_eq!(read_n(&mut s, resp.len()).await, resp);
    let keepalives = h
        .metrics
        .sip_keepalives
        .with_label_values(&["inside", "tcp"])
        .get();
    assert_eq!(keepalives, 1);
}

#[tokio::test]
async fn malformed_request_on_tcp_gets_400_on_the_connection() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    let bad = options("x").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nCall-ID: two\r\n",
    );
    s.write_all(bad.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("SIP/2.0 400 Multiple Call-ID Headers\r\n"),
        "{text}"
    );
    // The connection stays usable.
    s.write_all(options("y").as_bytes()).await.expect("write");
    assert_eq!(h.next().await.message.call_id(), "y@pbx");
}

#[tokio::test]
async fn oversize_message_closes_the_connection_and_is_counted() {
    let mut config = inside_tcp();
    config.limits.max_message = 1500;
    let h = Harness::start(config);
    let mut s = connect(&h).await;
    let big = options("big").replace("Content-Length: 0", "Content-Length: 5000");
    s.write_all(big.as_bytes()).await.expect("write");
    read_to_close(&mut s).await;
    h.eventually("counter", |h| {
        h.dropped(Side::Inside, TCP, "stream_too_large") == 1
    })
    .await;
    // Headers that never end are bounded too.
    let mut s = connect(&h).await;
    let _ = s.write_all(&[b'A'; 4000]).await;
    read_to_close(&mut s).await;
    h.eventually("counter", |h| {
        h.dropped(Side::Inside, TCP, "stream_too_large") == 2
    })
    .await;
    // A missing Content-Length cannot be framed (RFC 3261 §18.3): the request gets its 400
    // before the close.
    let mut s = connect(&h).await;
    let no_len = options("n").replace("Content-Length: 0\r\n", "");
    s.write_all(no_len.as_bytes()).await.expect("write");
    let answer = String::from_utf8(read_to_close(&mut s).await).expect("text");
    assert!(
        answer.starts_with("SIP/2.0 400 Missing Content-Length Header\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Call-ID: "), "{answer}");
    h.eventually("counter", |h| {
        h.dropped(Side::Inside, TCP, "missing_content_length") == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    // A valid first message: from then on only the idle timeout applies.
    s.write_all(options("i").as_bytes()).await.expect("write");
    h.next().await;
    let start = tokio::time::Instant::now();
    read_to_close(&mut s).await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(120), "{waited:?}");
    assert!(waited < Duration::from_secs(125), "{waited:?}");
    assert_eq!(h.dropped(Side::Inside, TCP, "idle_timeout"), 1);
}

#[tokio::test(start_paused = true)]
async fn slowloris_message_is_cut_at_the_message_deadline() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    s.write_all(options("first").as_bytes())
        .await
        .expect("write");
    h.next().await;
    let start = tokio::time::Instant::now();
    // The first bytes of a message, then a byte every 5 s: never idle, never complete.
    s.write_all(b"OPTIONS sip:x SIP/2.0\r\n")
        .await
        .expect("write");
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if s.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), trickle)
        .await
        .ok();
    read_to_close(&mut s).await;
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(61), "{waited:?}");
    assert_eq!(h.dropped(Side::Inside, TCP, "message_timeout"), 1);
    assert_eq!(h.dropped(Side::Inside, TCP, "idle_timeout"), 0);
}

#[tokio::test]
async fn connections_beyond_the_listener_limit_are_refused() {
    let mut config = inside_tcp();
    config.stream.max_per_listener = 2;
    let mut h = Harness::start(config);
    let mut a = connect(&h).await;
    let mut b = connect(&h).await;
    a.write_all(options("a").as_bytes()).await.expect("write");
    b.write_all(options("b").as_bytes()).await.expect("write");
    h.next().await;
    h.next().await;
    let mut c = connect(&h).await;
    let _ = c.write_all(options("c").as_bytes()).await;
    tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut c))
        .await
        .expect("third connection closed");
    h.eventually("counter", |h| {
        h.dropped(Side::Inside, TCP, "connection_limit") == 1
    })
    .await;
    assert_eq!(h.transport.connection_count(), 2);
    let open = h
        .metrics
        .sip_connections
        .with_label_values(&["inside", "tcp"])
        .get();
    assert_eq!(open, 2);
    // The first two still work.
    a.write_all(options("a2").as_bytes()).await.expect("write");
    assert_eq!(h.next().await.message.call_id(), "a2@pbx");
    // Closing one frees a slot.
    drop(b);
    h.eventually("slot freed", |h| h.transport.connection_count() == 1)
        .await;
    let mut d = connect(&h).await;
    d.write_all(options("d").as_bytes()).await.expect("write");
    assert_eq!(h.next().await.message.call_id(), "d@pbx");
}

#[tokio::test]
async fn outbound_requests_reuse_an_open_connection() {
    let mut h = Harness::start(inside_tcp());
    let carrier = TcpListener::bind(any_port("127.0.0.1"))
        .await
        .expect("bind");
    let to = Peer {
        side: Side::Outside,
        transport: TCP,
        addr: carrier.local_addr().expect("addr"),
        conn: None,
        local: None,
    };
    let first = options("1");
    h.transport
        .send(&to, Bytes::from(first.clone()))
        .expect("send 1");
    // Sent while the connection is still being established: queued on it.
    let second = options("2");
    h.transport
        .send(&to, Bytes::from(second.clone()))
        .expect("send 2");
    let (mut s, from) = tokio::time::timeout(Duration::from_secs(5), carrier.accept())
        .await
        .expect("connect within 5 s")
        .expect("accept");
    // The outside side connects from its own address.
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    let got = read_n(&mut s, first.len() + second.len()).await;
    assert_eq!(got, format!("{first}{second}"));
    let third = options("3");
    h.transport
        .send(&to, Bytes::from(third.clone()))
        .expect("send 3");
    assert_eq!(read_n(&mut s, third.len()).await, third);
    // No second connection was opened.
    let more = tokio::time::timeout(Duration::from_millis(100), carrier.accept()).await;
    assert!(more.is_err(), "connection reused");
    assert_eq!(h.transport.connection_count(), 1);
    // The carrier's response arrives tagged with that connection.
    s.write_all(ok_response("1").as_bytes())
        .await
        .expect("write");
    let m = h.next().await;
    assert_eq!(m.peer.side, Side::Outside);
    assert_eq!(m.peer.addr, to.addr);
    assert!(m.peer.conn.is_some());
    assert_eq!(m.message.status().map(|s| s.as_u16()), Some(200));
}

#[tokio::test]
async fn connect_failure_and_full_queue_are_errors_not_memory() {
    let mut config = inside_tcp();
    config.stream.send_queue = 2;
    let h = Harness::start(config);
    // Nothing listens on this port: the connect fails asynchronously and is counted.
    let closed = TcpListener::bind(any_port("127.0.0.1"))
        .await
        .expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let to = Peer {
        side: Side::Inside,
        transport: TCP,
        addr,
        conn: None,
        local: None,
    };
    h.transport
        .send(&to, Bytes::from_static(b"x"))
        .expect("queued while connecting");
    h.transport
        .send(&to, Bytes::from_static(b"y"))
        .expect("queued while connecting");
    let err = h
        .transport
        .send(&to, Bytes::from_static(b"z"))
        .expect_err("queue of 2 is full");
    assert_eq!(err.reason(), "queue_full");
    h.eventually("connect failure counted", |h| {
        h.send_errors(Side::Inside, TCP, "connect_failed") == 2
    })
    .await;
    h.eventually("unregistered", |h| h.transport.connection_count() == 0)
        .await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_refuses_sends() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    s.write_all(options("s").as_bytes()).await.expect("write");
    let m = h.next().await;
    h.transport.shutdown();
    tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("closed by shutdown");
    let err = h
        .transport
        .send(&m.peer, Bytes::from_static(b"x"))
        .expect_err("shut down");
    assert_eq!(err.reason(), "shutdown");
    h.eventually("unregistered", |h| h.transport.connection_count() == 0)
        .await;
}

#[tokio::test]
async fn an_outbound_connection_connects_from_the_peers_local_address() {
    let h = Harness::start(inside_tcp());
    let carrier = TcpListener::bind(any_port("127.0.0.1"))
        .await
        .expect("bind");
    // A trunk with its own local address (127.0.0.3) instead of the side's default.
    let to = Peer {
        side: Side::Outside,
        transport: TCP,
        addr: carrier.local_addr().expect("addr"),
        conn: None,
        local: Some("127.0.0.3:5080".parse().expect("literal")),
    };
    h.transport
        .send(&to, Bytes::from(options("l")))
        .expect("send");
    let (_s, from) = tokio::time::timeout(Duration::from_secs(5), carrier.accept())
        .await
        .expect("connect within 5 s")
        .expect("accept");
    assert_eq!(from.ip().to_string(), "127.0.0.3");
}

/// RFC 4475 `dblreq` on a stream: a REGISTER, then an INVITE, then stray octets up
/// to an empty line. Both requests reach the core, the stray octets are dropped as not SIP,
/// and the connection stays open for the answers.
#[tokio::test]
async fn rfc4475_dblreq_on_tcp_is_delivered_and_the_connection_stays_open() {
    let mut h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    let dblreq = include_bytes!("../../../proto/testdata/rfc4475/dblreq.dat");
    s.write_all(dblreq).await.expect("write");
    let first = h.next().await.message;
    assert_eq!(first.method(), Some(&sbc_proto::sip::Method::Register));
    let second = h.next().await.message;
    assert_eq!(second.method(), Some(&sbc_proto::sip::Method::Invite));
    h.eventually("stray octets dropped", |h| {
        h.dropped(Side::Inside, TCP, "not_sip") == 1
    })
    .await;
    s.write_all(options("after").as_bytes())
        .await
        .expect("write");
    assert_eq!(h.next().await.message.call_id(), "after@pbx");
    assert_eq!(h.dropped(Side::Inside, TCP, "missing_content_length"), 0);
}

/// RFC 4475 `baddn` on a stream: its header section never ends. At the message deadline the
/// request is answered 400 on the connection before it closes (never silence).
#[tokio::test(start_paused = true)]
async fn rfc4475_baddn_on_tcp_gets_400_before_the_close() {
    let h = Harness::start(inside_tcp());
    let mut s = connect(&h).await;
    let baddn = include_bytes!("../../../proto/testdata/rfc4475/baddn.dat");
    s.write_all(baddn).await.expect("write");
    let got = read_to_close(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("SIP/2.0 400 Incomplete Header Section\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Call-ID: baddn.31415@c.example.com\r\n"),
        "{text}"
    );
    // Whichever deadline cut it (the first-message one when it is shorter): one close.
    assert_eq!(
        h.dropped(Side::Inside, TCP, "message_timeout")
            + h.dropped(Side::Inside, TCP, "first_message_timeout"),
        1
    );
}
