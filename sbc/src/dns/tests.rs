//! The resolver and its task against a fake authoritative server on 127.0.0.1 (never a real
//! DNS server): SRV ordering and ports, A fallback, explicit ports, TTL-driven re-resolution,
//! failures keeping the last addresses, and how the signaling side applies the result.

use std::{net::SocketAddr, time::Duration};

use hickory_resolver::proto::rr::RecordType;
use tokio::sync::{mpsc, watch};

use super::{testing::FakeDns, *};
use crate::{
    config::{Dns, ProxyAddr, Transport},
    signaling::{Command, SignalingHandle},
};

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("literal")
}

fn settings(server: &FakeDns) -> Dns {
    Dns {
        servers: vec![server.addr()],
        refresh_s: 1,
        timeout_ms: 300,
    }
}

/// carrier.test: SRV for UDP (two priorities) and TLS, none for TCP; A records for all.
fn carrier_zone(dns: &FakeDns, ttl: u32) {
    dns.set_srv(
        "_sip._udp.carrier.test",
        &[
            (20, 1, 5080, "b.carrier.test"),
            (10, 1, 5070, "a.carrier.test"),
        ],
        ttl,
    )
    .expect("zone");
    dns.set_srv(
        "_sips._tcp.carrier.test",
        &[(0, 0, 5062, "t.carrier.test")],
        ttl,
    )
    .expect("zone");
    dns.set_addrs("a.carrier.test", &[ip("127.0.0.2")], ttl)
        .expect("zone");
    dns.set_addrs("b.carrier.test", &[ip("127.0.0.3")], ttl)
        .expect("zone");
    dns.set_addrs("t.carrier.test", &[ip("127.0.0.4")], ttl)
        .expect("zone");
    dns.set_addrs("carrier.test", &[ip("127.0.0.9")], ttl)
        .expect("zone");
}

fn host(h: &str) -> ProxyAddr {
    ProxyAddr::Host(h.into())
}

#[tokio::test]
async fn srv_gives_targets_in_priority_order_with_their_ports() {
    let dns = FakeDns::bind_loopback().expect("fake DNS");
    carrier_zone(&dns, 300);
    let mut r =
        Resolver::new(&settings(&dns), sbc_proto::b2bua::Rng::from_test_seed(1)).expect("resolver");
    let res = r
        .resolve(&host("carrier.test"), Transport::Udp)
        .await
        .expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.2:5070"), sa("127.0.0.3:5080")]);
    // TLS asks _sips._tcp and gets its own target and port.
    let res = r
        .resolve(&host("carrier.test"), Transport::Tls)
        .await
        .expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.4:5062")]);
    // TCP has no SRV record: the name's own A record on 5060.
    let res = r
        .resolve(&host("carrier.test"), Transport::Tcp)
        .await
        .expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.9:5060")]);
    let asked = dns.queries();
    for want in [
        "_sip._udp.carrier.test",
        "_sips._tcp.carrier.test",
        "_sip._tcp.carrier.test",
    ] {
        assert!(
            asked
                .iter()
                .any(|(n, t)| n == want && *t == RecordType::SRV),
            "{want} not asked: {asked:?}"
        );
    }
}

#[tokio::test]
async fn a_records_on_the_default_port_without_srv() {
    let dns = FakeDns::bind_loopback().expect("fake DNS");
    dns.set_addrs("plain.test", &[ip("127.0.0.5"), ip("127.0.0.6")], 300)
        .expect("zone");
    let mut r =
        Resolver::new(&settings(&dns), sbc_proto::b2bua::Rng::from_test_seed(1)).expect("resolver");
    let res = r
        .resolve(&host("plain.test"), Transport::Udp)
        .await
        .expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.5:5060"), sa("127.0.0.6:5060")]);
    let res = r
        .resolve(&host("plain.test"), Transport::Tls)
        .await
        .expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.5:5061"), sa("127.0.0.6:5061")]);
}

#[tokio::test]
async fn an_explicit_port_skips_srv() {
    let dns = FakeDns::bind_loopback().expect("fake DNS");
    carrier_zone(&dns, 300);
    let mut r =
        Resolver::new(&settings(&dns), sbc_proto::b2bua::Rng::from_test_seed(1)).expect("resolver");
    let proxy = ProxyAddr::HostPort {
        host: "carrier.test".into(),
        port: 5099,
    };
    let res = r.resolve(&proxy, Transport::Udp).await.expect("resolves");
    assert_eq!(res.addrs, [sa("127.0.0.9:5099")]);
    assert!(
        dns.queries().iter().all(|(_, t)| *t != RecordType::SRV),
        "{:?}",
        dns.queries()
    );
}

#[tokio::test]
async fn failures_are_typed() {
    let dns = FakeDns::bind_loopback().expect("fake DNS");
    dns.set_srv("_sip._udp.gone.test", &[(0, 0, 0, ".")], 300)
        .expect("zone");
    let mut r =
        Resolver::new(&settings(&dns), sbc_proto::b2bua::Rng::from_test_seed(1)).expect("resolver");
    let e = r
        .resolve(&host("nowhere.test"), Transport::Udp)
        .await
        .expect_err("unknown");
    assert_eq!(e.label(), "no_records", "{e}");
    let e = r
        .resolve(&host("gone.test"), Transport::Udp)
        .await
        .expect_err("'.' target");
    assert_eq!(e.label(), "not_available", "{e}");
    dns.set_failing(true);
    let e = r
        .resolve(&host("carrier.test"), Transport::Udp)
        .await
        .expect_err("SERVFAIL");
    assert_eq!(e.label(), "error", "{e}");
}

/// The next `DnsResolved` the task hands to the signaling side, within `wait`.
async fn next_resolved(rx: &mut mpsc::Receiver<Command>, wait: Duration) -> Option<Resolved> {
    let deadline = tokio::time::Instant::now() + wait;
    // Bounded by the deadline; the task sends nothing else on this channel.
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Command::DnsResolved(r))) => return Some(r),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn ttl_expiry_re_resolves_and_a_failure_keeps_the_last_addresses() {
    let dns = FakeDns::bind_loopback().expect("fake DNS");
    carrier_zone(&dns, 1);
    let (handle, mut rx) = SignalingHandle::channel();
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).expect("metrics");
    handle.set_dns_trunks(DnsTrunks {
        settings: settings(&dns),
        trunks: vec![
            DnsTrunk {
                name: "carrier".into(),
                proxy: host("carrier.test"),
                transport: Transport::Udp,
                tls_name: None,
            },
            DnsTrunk {
                name: "never".into(),
                proxy: host("nowhere.test"),
                transport: Transport::Udp,
                tls_name: None,
            },
        ],
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(
        handle.dns_trunks(),
        handle.clone(),
        None,
        metrics.clone(),
        stop_rx,
    ));

    let first = next_resolved(&mut rx, Duration::from_secs(5))
        .await
        .expect("first answer");
    assert_eq!(first.trunk, "carrier");
    assert_eq!(first.addrs, [sa("127.0.0.2:5070"), sa("127.0.0.3:5080")]);

    // The records (TTL 1 s) change: the task looks again once they expire.
    dns.set_srv(
        "_sip._udp.carrier.test",
        &[(10, 1, 5072, "c.carrier.test")],
        1,
    )
    .expect("zone");
    dns.set_addrs("c.carrier.test", &[ip("127.0.0.7")], 1)
        .expect("zone");
    let second = next_resolved(&mut rx, Duration::from_secs(5))
        .await
        .expect("re-resolved");
    assert_eq!(second.addrs, [sa("127.0.0.7:5072")]);

    // The server fails: nothing is handed over (the signaling side keeps what it has), and
    // the failures are counted.
    dns.set_failing(true);
    assert_eq!(
        next_resolved(&mut rx, Duration::from_millis(2500)).await,
        None
    );
    let count =
        |trunk: &str, result: &str| metrics.lookups.with_label_values(&[trunk, result]).get();
    assert!(count("carrier", "error") >= 1);
    assert!(count("carrier", "ok") >= 2);
    assert!(count("never", "no_records") >= 1);
    assert_eq!(count("never", "ok"), 0);

    // Back: the same addresses as before are not handed over again; new ones are.
    dns.set_failing(false);
    dns.set_addrs("c.carrier.test", &[ip("127.0.0.8")], 1)
        .expect("zone");
    let third = next_resolved(&mut rx, Duration::from_secs(5))
        .await
        .expect("recovered");
    assert_eq!(third.addrs, [sa("127.0.0.8:5072")]);

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("task stops")
        .expect("task ran");
}

#[test]
fn resolved_names_open_the_acl_and_attribute_calls_until_replaced() {
    let text = crate::config::SHIPPED_DEFAULT
        .replace("proxy = \"127.0.0.1:5090\"", "proxy = \"carrier.test\"");
    let cfg = crate::config::parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
    let now = std::time::Instant::now();
    let mut sbc = sbc_proto::sbc::Sbc::new(
        crate::config::sbc_config(&cfg),
        sbc_proto::b2bua::Rng::from_test_seed(1),
        now,
    );
    let peer = |a: &str| sbc_proto::net::Peer {
        side: sbc_proto::net::Side::Outside,
        transport: sbc_proto::net::TransportKind::Udp,
        addr: sa(a),
        conn: None,
        local: None,
    };
    assert!(
        !sbc.acl().allows(&peer("127.0.0.1:5090")),
        "nothing resolved yet"
    );

    let proxy = host("carrier.test");
    sbc.handle_dns(
        now,
        Resolved {
            trunk: "default".into(),
            proxy: proxy.clone(),
            addrs: vec![sa("127.0.0.2:5070"), sa("127.0.0.3:5080")],
        }
        .into(),
    );
    // Every SRV target may send, not only the first.
    assert!(sbc.acl().allows(&peer("127.0.0.2:5070")));
    assert!(sbc.acl().allows(&peer("127.0.0.3:9999")));
    assert!(
        sbc.acl()
            .is_configured_peer(sbc_proto::net::Side::Outside, ip("127.0.0.3"))
    );
    assert!(
        !sbc.acl()
            .is_configured_peer(sbc_proto::net::Side::Inside, ip("127.0.0.3"))
    );
    assert!(!sbc.acl().allows(&peer("127.0.0.4:5060")));
    assert_eq!(sbc.trunk_ips(0), [ip("127.0.0.2"), ip("127.0.0.3")]);

    // An empty answer never replaces good addresses.
    sbc.handle_dns(
        now,
        Resolved {
            trunk: "default".into(),
            proxy: proxy.clone(),
            addrs: Vec::new(),
        }
        .into(),
    );
    assert_eq!(sbc.trunk_ips(0), [ip("127.0.0.2"), ip("127.0.0.3")]);
    // A new answer replaces the old one entirely.
    sbc.handle_dns(
        now,
        Resolved {
            trunk: "default".into(),
            proxy,
            addrs: vec![sa("127.0.0.5:5060")],
        }
        .into(),
    );
    assert!(sbc.acl().allows(&peer("127.0.0.5:5060")));
    assert!(!sbc.acl().allows(&peer("127.0.0.2:5070")));

    // An answer for a proxy the trunk no longer has is ignored.
    sbc.handle_dns(
        now,
        Resolved {
            trunk: "default".into(),
            proxy: host("old.test"),
            addrs: vec![sa("127.0.0.6:5060")],
        }
        .into(),
    );
    assert!(!sbc.acl().allows(&peer("127.0.0.6:5060")));
}
