//! Holding the border at the transport (issue 13, items 4, 5 and 7), with the real `sbc` in the
//! lab: an unknown host (its own namespace, 198.18.3.2, on no allowlist) cannot hold TCP slots
//! while the PBX's and the carrier's TCP calls go through; a ban closes the banned source's
//! open connection; an outsider spoofing inside addresses on the outside gets those addresses
//! banned on the outside only; stateless replies go to allowed sources only, rate-limited.

mod media_common;

use sbc_lab::sipp::{run_args as sipp, wait_ok};
use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use sbc_e2e::netns::{self, Netns, ip};

/// Connections the unknown host opens to each listener.
const IDLE_CONNECTIONS: usize = 2_000;
const INSIDE_SIP: &str = "198.18.1.1:5060";
const OUTSIDE_SIP: &str = "198.18.2.1:5060";

/// The unknown host: its own namespace with a veth into the SBC's namespace
/// (198.18.3.2 ↔ 198.18.3.1), routed to both SBC addresses. Removed on drop (its veth end in
/// the SBC namespace goes with the pair).
fn attacker(lab: &MediaLab, prefix: &str) -> Netns {
    let ns = Netns::new(prefix).expect("attacker netns");
    let a_if = netns::unique("ba");
    let s_if = netns::unique("bs");
    ip(&[
        "link",
        "add",
        &a_if,
        "netns",
        ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        &s_if,
        "netns",
        &lab.lab.sbc,
    ])
    .expect("veth");
    ns.exec_ip(&["addr", "add", "198.18.3.2/24", "dev", &a_if])
        .expect("addr");
    ns.exec_ip(&["link", "set", &a_if, "up"]).expect("up");
    let sbc = ["-n", lab.lab.sbc.as_str()];
    ip(&[sbc[0], sbc[1], "addr", "add", "198.18.3.1/24", "dev", &s_if]).expect("addr");
    ip(&[sbc[0], sbc[1], "link", "set", &s_if, "up"]).expect("up");
    ns.exec_ip(&["route", "add", "default", "via", "198.18.3.1"])
        .expect("route");
    ns
}

/// The value of one `sbc_sip_dropped_total` series (0 when absent).
fn dropped(lab: &MediaLab, side: &str, transport: &str, reason: &str) -> u64 {
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    let series = format!(
        "sbc_sip_dropped_total{{reason=\"{reason}\",side=\"{side}\",transport=\"{transport}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Raises this process's open-file limit: the test holds thousands of sockets.
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= want {
        return;
    }
    // Root may raise the hard limit too.
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
}

/// What the idle-connection flood saw.
struct Flood {
    /// Connections whose handshake completed (a connect that raced the reset may report an
    /// error; those are in `attempts` only).
    opened: usize,
    attempts: usize,
    /// Connections still open 5 s after the last one was opened.
    still_open: usize,
    /// Longest time from opening a connection to seeing it closed.
    longest: Duration,
}

/// Opens up to `IDLE_CONNECTIONS` connections to each of `targets` from the attacker namespace
/// (bounded in count and by a 60 s budget), sends a CRLF keep-alive on each, then watches them
/// for 5 s after the last one was opened.
fn idle_flood(ns: &str, targets: &[SocketAddr]) -> Flood {
    let _in = netns::enter(ns).expect("enter attacker netns");
    let budget = Instant::now() + Duration::from_secs(60);
    let mut open: Vec<(TcpStream, Instant)> = Vec::new();
    let mut opened = 0;
    let mut attempts = 0;
    let mut longest = Duration::ZERO;
    for target in targets {
        for _ in 0..IDLE_CONNECTIONS {
            if Instant::now() > budget {
                break;
            }
            attempts += 1;
            let Ok(mut s) = TcpStream::connect_timeout(target, Duration::from_secs(1)) else {
                continue;
            };
            opened += 1;
            // A keep-alive, as today's attack did; a refused connection may already be reset.
            let _ = s.write_all(b"\r\n\r\n");
            s.set_nonblocking(true).expect("nonblocking");
            open.push((s, Instant::now()));
        }
    }
    let watch_until = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    loop {
        let now = Instant::now();
        open.retain_mut(|(s, since)| {
            let closed = match s.read(&mut buf) {
                Ok(0) => true,
                // Pongs and anything else: still open.
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            if closed {
                longest = longest.max(now.duration_since(*since));
            }
            !closed
        });
        if open.is_empty() || now >= watch_until {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Flood {
        opened,
        attempts,
        still_open: open.len(),
        longest,
    }
}

#[test]
fn idle_connections_from_an_unknown_host_are_refused_and_tcp_calls_complete() {
    if !sbc_e2e::require_root("border_tcp_idle") {
        return;
    }
    raise_fd_limit(16_384);
    let lab = MediaLab::start_with_transport("btc", "xdp = \"off\"", true);
    let atk = attacker(&lab, "bta");
    let ns = atk.name().to_owned();
    let targets: Vec<SocketAddr> = [INSIDE_SIP, OUTSIDE_SIP]
        .iter()
        .map(|a| a.parse().expect("literal"))
        .collect();
    let flood = thread::spawn(move || idle_flood(&ns, &targets));
    // Let the flood take whatever it can before the calls start.
    thread::sleep(Duration::from_millis(1500));

    // PBX → carrier and carrier → PBX over TCP, while the flood runs.
    let out_uas = sipp(
        &lab.lab.carrier,
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
            "-m",
            "5",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let out_uac = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-t",
            "t1",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            "5",
            "-r",
            "5",
            "-d",
            "200",
            INSIDE_SIP,
        ],
    );
    wait_ok(out_uac, "PBX's TCP calls during the flood");
    wait_ok(out_uas, "carrier's side of the PBX's TCP calls");

    let flood = flood.join().expect("flood thread");
    eprintln!(
        "flood: {} opened, {} still open after 5 s, longest lived {:?}",
        flood.opened, flood.still_open, flood.longest
    );
    assert!(
        flood.opened >= IDLE_CONNECTIONS,
        "the flood opened only {}",
        flood.opened
    );
    assert_eq!(flood.still_open, 0, "connections still open after 5 s");
    assert!(
        flood.longest <= Duration::from_secs(5),
        "{:?}",
        flood.longest
    );
    // Every one of them was refused at accept for the ACL, on both sides.
    let refused = dropped(&lab, "inside", "tcp", "acl") + dropped(&lab, "outside", "tcp", "acl");
    let refused = usize::try_from(refused).unwrap_or(usize::MAX);
    assert!(
        (flood.opened..=flood.attempts).contains(&refused),
        "{refused} refused, {} opened, {} attempts",
        flood.opened,
        flood.attempts
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"outbound\"} 5"),
        "{metrics}"
    );
}

#[test]
fn the_carriers_tcp_calls_complete_while_an_unknown_host_floods_the_outside() {
    if !sbc_e2e::require_root("border_tcp_carrier") {
        return;
    }
    raise_fd_limit(16_384);
    let lab = MediaLab::start_with_transport("btd", "xdp = \"off\"", true);
    let atk = attacker(&lab, "btb");
    let ns = atk.name().to_owned();
    let targets: Vec<SocketAddr> = [OUTSIDE_SIP, INSIDE_SIP]
        .iter()
        .map(|a| a.parse().expect("literal"))
        .collect();
    let flood = thread::spawn(move || idle_flood(&ns, &targets));
    thread::sleep(Duration::from_millis(1500));
    let uas = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-m",
            "5",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        &lab.lab.carrier,
        &[
            "-sn",
            "uac",
            "-t",
            "t1",
            "-i",
            "198.18.2.2",
            "-p",
            "5060",
            "-s",
            "4930123456",
            "-m",
            "5",
            "-r",
            "5",
            "-d",
            "200",
            OUTSIDE_SIP,
        ],
    );
    wait_ok(uac, "carrier's TCP calls during the flood");
    wait_ok(uas, "PBX's side of the carrier's TCP calls");
    let flood = flood.join().expect("flood thread");
    assert!(flood.opened >= IDLE_CONNECTIONS, "{}", flood.opened);
    assert_eq!(flood.still_open, 0);
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_answered_total{direction=\"inbound\"} 5"),
        "{metrics}"
    );
}

/// A valid OPTIONS to the SBC from `from` over `transport` (Via sent-by = `from`).
fn options(from: SocketAddr, to: &str, transport: &str, tag: &str) -> String {
    format!(
        "OPTIONS sip:sbc@{to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch=z9hG4bK{tag};rport\r\n\
         From: <sip:probe@{ip}>;tag=f{tag}\r\n\
         To: <sip:sbc@{to}>\r\n\
         Call-ID: {tag}@probe\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        ip = from.ip()
    )
}

/// A UDP socket bound to `from` inside `ns`.
fn udp_in(ns: &str, from: &str) -> UdpSocket {
    let _in = netns::enter(ns).expect("enter netns");
    let s = UdpSocket::bind(from).expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s
}

/// Whether an OPTIONS from `from` (in `ns`) to the inside gets a 200 over UDP.
fn inside_answers(ns: &str, from: &str, tag: &str) -> bool {
    let s = udp_in(ns, from);
    let local = s.local_addr().expect("local");
    let mut buf = [0u8; 4096];
    for i in 0..3 {
        s.send_to(
            options(local, "198.18.1.1", "UDP", &format!("{tag}{i}")).as_bytes(),
            INSIDE_SIP,
        )
        .expect("send");
        if let Ok(n) = s.recv(&mut buf) {
            return buf[..n].starts_with(b"SIP/2.0 200");
        }
    }
    false
}

/// Sends `n` OPTIONS from `from` (in `ns`) to `to` as fast as it can: a flood over the
/// default `source_rate` 50 + `source_burst` 100.
fn udp_flood(ns: &str, from: &str, to: &str, n: usize) {
    let s = udp_in(ns, from);
    let local = s.local_addr().expect("local");
    let host = to.split(':').next().unwrap_or(to);
    for i in 0..n {
        let _ = s.send_to(
            options(local, host, "UDP", &format!("fl{i}")).as_bytes(),
            to,
        );
    }
}

fn bans(lab: &MediaLab) -> Vec<(String, IpAddr)> {
    let v = lab.json("GET", "/api/v1/bans", None, 200);
    v["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .map(|b| {
            (
                b["side"].as_str().unwrap_or("?").to_owned(),
                b["address"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("address"),
            )
        })
        .collect()
}

#[test]
fn spoofing_inside_addresses_on_the_outside_bans_them_on_the_outside_only() {
    if !sbc_e2e::require_root("border_ban_poisoning") {
        return;
    }
    let lab = MediaLab::start_with_transport("bbp", "xdp = \"off\"", true);
    // 198.18.1.3: an inside host (inside [pbx] allow, not the configured PBX address), e.g.
    // a second PBX node the PBX routes calls to.
    ip(&[
        "-n",
        &lab.lab.pbx,
        "addr",
        "add",
        "198.18.1.3/24",
        "dev",
        "pbx0",
    ])
    .expect("addr");
    // The outsider on the carrier link uses the PBX's and that host's addresses as sources.
    for a in ["198.18.1.2/32", "198.18.1.3/32"] {
        ip(&["-n", &lab.lab.carrier, "addr", "add", a, "dev", "car0"]).expect("addr");
    }
    // Spoofed sources arrive on out0 although they route via in0: no reverse-path filter.
    for key in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.out0.rp_filter=0",
    ] {
        let ok = Command::new("ip")
            .args(["netns", "exec", &lab.lab.sbc, "sysctl", "-qw", key])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sysctl {key}");
    }
    assert!(inside_answers(&lab.lab.pbx, "198.18.1.3:0", "before"));

    for victim in ["198.18.1.2:0", "198.18.1.3:0"] {
        udp_flood(&lab.lab.carrier, victim, OUTSIDE_SIP, 400);
    }
    thread::sleep(Duration::from_millis(300));
    let list = bans(&lab);
    for victim in ["198.18.1.2", "198.18.1.3"] {
        let victim: IpAddr = victim.parse().expect("literal");
        assert!(
            list.contains(&("outside".to_owned(), victim)),
            "{victim} banned on the outside: {list:?}"
        );
        assert!(
            !list.contains(&("inside".to_owned(), victim)),
            "{victim} banned on the inside: {list:?}"
        );
    }
    // Both still talk to the SBC on the inside.
    assert!(inside_answers(&lab.lab.pbx, "198.18.1.3:0", "after"));
    assert!(inside_answers(&lab.lab.pbx, "198.18.1.2:0", "pbx"));
}

#[test]
fn a_ban_closes_the_banned_sources_open_tcp_connection() {
    if !sbc_e2e::require_root("border_ban_closes") {
        return;
    }
    let lab = MediaLab::start_with_transport("bbc", "xdp = \"off\"", true);
    ip(&[
        "-n",
        &lab.lab.pbx,
        "addr",
        "add",
        "198.18.1.3/24",
        "dev",
        "pbx0",
    ])
    .expect("addr");
    // An established connection from 198.18.1.3: an OPTIONS answered on it.
    let mut conn = {
        let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let from: SocketAddr = "198.18.1.3:0".parse().expect("literal");
        sock.bind(&from.into()).expect("bind");
        let to: SocketAddr = INSIDE_SIP.parse().expect("literal");
        sock.connect_timeout(&to.into(), Duration::from_secs(2))
            .expect("connect");
        TcpStream::from(sock)
    };
    let local = conn.local_addr().expect("local");
    conn.write_all(options(local, "198.18.1.1", "TCP", "tcp1").as_bytes())
        .expect("write");
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).expect("answer on the connection");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"), "{:?}", &buf[..n]);

    // The same source floods over UDP and is banned on the inside.
    udp_flood(&lab.lab.pbx, "198.18.1.3:0", INSIDE_SIP, 400);
    let start = Instant::now();
    let closed = match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    assert!(closed, "the banned source's connection is still open");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(dropped(&lab, "inside", "tcp", "banned") >= 1);
    // And a new one is refused.
    let _in = netns::enter(&lab.lab.pbx).expect("enter pbx netns");
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: SocketAddr = "198.18.1.3:0".parse().expect("literal");
    sock.bind(&from.into()).expect("bind");
    let to: SocketAddr = INSIDE_SIP.parse().expect("literal");
    // The reset at accept can reach the client while its connect is still returning: a
    // connect that fails with a reset is refused just the same.
    let refused = match sock.connect_timeout(&to.into(), Duration::from_secs(2)) {
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
        ),
        Ok(()) => {
            let mut again = TcpStream::from(sock);
            again
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            match again.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            }
        }
    };
    assert!(refused, "a new connection from a banned source is accepted");
}

#[test]
fn stateless_replies_go_to_allowed_sources_only_and_are_rate_limited() {
    if !sbc_e2e::require_root("border_stateless") {
        return;
    }
    let lab = MediaLab::start("bsr", "xdp = \"off\"");
    let atk = attacker(&lab, "bsa");
    // Two Call-ID headers: malformed, answerable (400 Multiple Call-ID Headers).
    let malformed = |from: SocketAddr, to: &str, tag: &str| {
        options(from, to, "UDP", tag).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nCall-ID: two\r\n",
        )
    };
    // The unknown outside source hears nothing.
    let s = udp_in(atk.name(), "198.18.3.2:0");
    let local = s.local_addr().expect("local");
    let mut buf = [0u8; 4096];
    for i in 0..3 {
        s.send_to(
            malformed(local, "198.18.2.1", &format!("u{i}")).as_bytes(),
            OUTSIDE_SIP,
        )
        .expect("send");
    }
    assert!(s.recv(&mut buf).is_err(), "the outsider got an answer");
    assert_eq!(dropped(&lab, "outside", "udp", "reply_acl"), 3);
    // The PBX gets its 400.
    let pbx = udp_in(&lab.lab.pbx, "198.18.1.2:0");
    let local = pbx.local_addr().expect("local");
    pbx.send_to(malformed(local, "198.18.1.1", "p").as_bytes(), INSIDE_SIP)
        .expect("send");
    let n = pbx.recv(&mut buf).expect("400 for the PBX");
    assert!(buf[..n].starts_with(b"SIP/2.0 400"), "{:?}", &buf[..n]);
    // 200 at once: the default budget is 20/s with a burst of 40; the rest is suppressed.
    for i in 0..200 {
        let _ = pbx.send_to(
            malformed(local, "198.18.1.1", &format!("b{i}")).as_bytes(),
            INSIDE_SIP,
        );
    }
    let mut answered = 0;
    while pbx.recv(&mut buf).is_ok() {
        answered += 1;
    }
    let suppressed = dropped(&lab, "inside", "udp", "reply_rate");
    eprintln!("burst of 200: {answered} answered, {suppressed} suppressed");
    assert!(answered <= 70, "{answered} answered");
    assert!(suppressed >= 130, "{suppressed} suppressed");
}
