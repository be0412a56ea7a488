//! Several relay addresses per side (`media_addresses`): streams spread over them, a full
//! address hands over to the next, the SDP and the fast path name the chosen one, quotas count
//! over all of them, and a snapshot brings a stream back on its address.

use std::net::{IpAddr, Ipv4Addr};

use super::tests::{drain, installs, ip, peers, policy, sa};
use super::*;
use crate::media::{SideAddress, SideAddresses};

const IN: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
const IN2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const OUT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1));
const OUT2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
/// What SDP names for `OUT2` (1:1 NAT in front of the second outside address).
const OUT2_PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));

/// Two addresses per side with two port pairs each (20000-20003).
fn settings() -> RelaySettings {
    let mut s = super::tests::settings();
    let side = |list: &[(IpAddr, IpAddr)]| {
        SideAddresses::new(
            list.iter()
                .map(|&(bind, advertised)| SideAddress { bind, advertised })
                .collect(),
        )
        .expect("non-empty")
    };
    s.inside = side(&[(IN, IN), (IN2, IN2)]);
    s.outside = side(&[(OUT, OUT), (OUT2, OUT2_PUBLIC)]);
    s.port_min = 20_000;
    s.port_max = 20_003;
    s
}

fn table(fast_path: bool) -> MediaTable {
    MediaTable::new(settings(), policy(), fast_path, 64, Rng::from_test_seed(9))
}

fn offer(t: &mut MediaTable, now: Instant, peers: &MediaPeers) -> Result<Allocation, MediaError> {
    t.allocate(
        now,
        Side::Inside,
        &[StreamDesc::new(ip("10.0.0.5"), 4000)],
        peers,
    )
}

fn no_trunk() -> MediaPeers {
    MediaPeers {
        trunk: None,
        ..peers()
    }
}

#[test]
fn a_full_address_hands_over_to_the_next_and_sdp_names_it() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    assert_eq!(t.ports_total(Side::Outside), 4, "two pairs on each address");
    let calls: Vec<Allocation> = (0..4)
        .map(|_| offer(&mut t, t0, &no_trunk()).expect("offer"))
        .collect();
    assert!(matches!(
        offer(&mut t, t0, &no_trunk()),
        Err(MediaError::PortsExhausted(Side::Inside))
    ));
    assert_eq!(t.ports_free(Side::Inside), 0);
    let cmds = drain(&mut t);
    for a in &calls {
        let st = &t.session(a.session).expect("session").streams[0];
        let r = a.streams[0];
        // The SDP names the advertised address of the address the ports are bound to.
        assert_eq!(r.inside.addr, st.binds[0]);
        let want = if st.binds[1] == OUT2 {
            OUT2_PUBLIC
        } else {
            OUT
        };
        assert_eq!(r.outside.addr, want);
        for (leg, bound) in [Side::Inside, Side::Outside].into_iter().zip(st.bound()) {
            assert!(cmds.contains(&MediaCommand::Bind {
                stream: StreamKey {
                    session: a.session,
                    index: 0,
                },
                leg,
                addr: bound,
            }));
        }
    }
    let on = |bind: IpAddr| {
        calls
            .iter()
            .filter(|a| {
                t.session(a.session).expect("s").streams[0]
                    .binds
                    .contains(&bind)
            })
            .count()
    };
    assert_eq!([on(IN), on(IN2), on(OUT), on(OUT2)], [2, 2, 2, 2]);
    // A call on the second address ends: the next one takes its pairs there.
    let second = calls
        .iter()
        .find(|a| t.session(a.session).expect("s").streams[0].binds[0] == IN2)
        .expect("a call on IN2");
    t.release(second.session);
    let next = offer(&mut t, t0, &no_trunk()).expect("room again");
    assert_eq!(t.session(next.session).expect("s").streams[0].binds[0], IN2);
    for a in calls.iter().chain([&next]) {
        t.release(a.session);
    }
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn the_default_trunk_quota_counts_every_outside_address() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let mut p = peers();
    // A trunk without a configured quota gets half the outside ports: 4 pairs over two
    // addresses = 4 ports = two calls (one address alone would allow one).
    p.trunk = Some("unlisted".into());
    let a = offer(&mut t, t0, &p).expect("first");
    let b = offer(&mut t, t0, &p).expect("second");
    assert!(matches!(
        offer(&mut t, t0, &p),
        Err(MediaError::QuotaExhausted(_))
    ));
    t.release(a.session);
    t.release(b.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn the_fast_path_keys_on_the_chosen_address() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    t.set_kernel_latch(true);
    // Two calls: the second lands on the second address of each side.
    let _first = offer(&mut t, t0, &no_trunk()).expect("first");
    let a = offer(&mut t, t0, &no_trunk()).expect("second");
    let st = &t.session(a.session).expect("s").streams[0];
    assert_eq!(st.binds, [IN2, OUT2]);
    let bound = st.bound();
    let maps: Vec<FastPath> = installs(&drain(&mut t))
        .into_iter()
        .filter(|m| bound.iter().any(|b| b.ip() == m.ingress.ip()))
        .collect();
    assert!(!maps.is_empty());
    for m in &maps {
        assert!(
            [IN2, OUT2].contains(&m.ingress.ip()) && [IN2, OUT2].contains(&m.egress.ip()),
            "{m:?}"
        );
    }
    // A latch the kernel reports on the second address reaches the stream.
    let ingress = SocketAddr::new(OUT2, bound[1].port());
    assert!(t.handle_kernel_latch(t0, ingress, sa("198.51.100.7:5000")));
    assert_eq!(
        t.session(a.session).expect("s").streams[0]
            .path
            .lock()
            .peers[1]
            .latch[0]
            .latched(),
        Some(sa("198.51.100.7:5000"))
    );
}

#[test]
fn a_snapshot_restores_the_stream_on_its_address() {
    let t0 = crate::media::test_origin();
    let mut old = table(false);
    let _first = offer(&mut old, t0, &no_trunk()).expect("first");
    let a = offer(&mut old, t0, &no_trunk()).expect("second");
    let snap = old.snapshot(a.session).expect("snapshot");
    assert_eq!(snap.streams[0].relay_inside.bind, Some(IN2));
    assert_eq!(snap.streams[0].relay_outside.bind, Some(OUT2));
    assert_eq!(snap.streams[0].relay_outside.addr, OUT2_PUBLIC);

    for legacy in [false, true] {
        let mut snap = snap.clone();
        if legacy {
            // Written before sides had several addresses: found by the advertised address.
            snap.streams[0].relay_inside.bind = None;
            snap.streams[0].relay_outside.bind = None;
        }
        let mut t = table(false);
        let id = t.restore(t0, &snap).expect("restore");
        let st = &t.session(id).expect("restored").streams[0];
        assert_eq!(st.binds, [IN2, OUT2], "legacy record: {legacy}");
        assert_eq!(st.relay, a.streams[0]);
        let bound = st.bound();
        let binds: Vec<SocketAddr> = drain(&mut t)
            .into_iter()
            .filter_map(|c| match c {
                MediaCommand::Bind { addr, .. } => Some(addr),
                _ => None,
            })
            .collect();
        assert_eq!(binds, bound);
        // The same port on the first address is still free: pairs are per address.
        assert_eq!(t.ports_free(Side::Inside), 3);
        t.release(id);
        drain(&mut t);
        assert!(t.holds_nothing());
    }
}
