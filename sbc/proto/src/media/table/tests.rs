//! Simulated-time tests of the media table: latching through the table, the fast path it asks
//! for, timeouts, bind failures, adoption, and a leak check after every scenario.

use std::net::IpAddr;

use super::*;
use crate::media::{Direction, latch::DropReason, policy::TrunkMedia};

const IN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
const OUT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 1));

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal")
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

pub(super) fn settings() -> RelaySettings {
    RelaySettings {
        dtmf_queue: 4,
        inside: crate::media::SideAddress {
            bind: IN,
            advertised: IN,
        }
        .into(),
        outside: crate::media::SideAddress {
            bind: OUT,
            advertised: OUT,
        }
        .into(),
        port_min: 20_000,
        port_max: 20_099,
        strict_source: true,
        relatch_window: Duration::from_secs(2),
        max_streams: 4,
        timeout: Some(Duration::from_secs(60)),
        hold_timeout: Some(Duration::from_secs(3600)),
    }
}

/// A trunk "carrier" whose media may come from 198.51.100.0/24.
pub(super) fn policy() -> MediaPolicy {
    let mut p = MediaPolicy::default();
    p.trunks.insert(
        "carrier".into(),
        TrunkMedia {
            networks: vec!["198.51.100.0/24".parse().expect("net")].into(),
            max_ports: Some(8),
        },
    );
    p
}

pub(super) fn table(fast_path: bool) -> MediaTable {
    MediaTable::new(settings(), policy(), fast_path, 64, Rng::from_test_seed(1))
}

pub(super) fn peers() -> MediaPeers {
    MediaPeers {
        inside: Some(ip("10.0.0.5")),
        outside: Some(ip("198.51.100.1")),
        trunk: Some("carrier".into()),
    }
}

pub(super) fn drain(t: &mut MediaTable) -> Vec<MediaCommand> {
    std::iter::from_fn(|| t.poll_command()).collect()
}

const RTP: [u8; 12] = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];

pub(super) fn key(a: &Allocation) -> StreamKey {
    StreamKey {
        session: a.session,
        index: 0,
    }
}

/// An offer from the PBX at 10.0.0.5:4000, answered by the carrier at `answer`.
pub(super) fn call(t: &mut MediaTable, now: Instant, answer: Option<&str>) -> Allocation {
    let a = t
        .allocate(
            now,
            Side::Inside,
            &[StreamDesc::new(ip("10.0.0.5"), 4000)],
            &peers(),
        )
        .expect("offer");
    if let Some(answer) = answer {
        let s = sa(answer);
        t.commit(
            now,
            a.session,
            Side::Outside,
            &[StreamDesc::new(s.ip(), s.port())],
        )
        .expect("answer");
    }
    a
}

fn packet(t: &mut MediaTable, now: Instant, k: StreamKey, leg: Side, src: &str) -> PacketAction {
    let mut buf = [0u8; 64];
    buf[..RTP.len()].copy_from_slice(&RTP);
    let arrival = Arrival {
        stream: k,
        leg,
        port: RelayPort::Rtp,
        src: sa(src),
    };
    t.handle_packet(now, arrival, &mut buf, RTP.len())
}

pub(super) fn installs(cmds: &[MediaCommand]) -> Vec<FastPath> {
    cmds.iter()
        .filter_map(|c| match c {
            MediaCommand::Install(m) | MediaCommand::Update(m) | MediaCommand::Policy(m) => {
                Some(*m)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn allocation_binds_both_sides_and_release_leaves_nothing() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let cmds = drain(&mut t);
    let r = a.streams[0];
    assert_eq!(
        cmds[..2],
        [
            MediaCommand::Bind {
                stream: key(&a),
                leg: Side::Inside,
                addr: SocketAddr::new(IN, r.inside.rtp_port),
            },
            MediaCommand::Bind {
                stream: key(&a),
                leg: Side::Outside,
                addr: SocketAddr::new(OUT, r.outside.rtp_port),
            },
        ]
    );
    // Both peers latch: the fast path is asked for, with slots taken.
    packet(&mut t, t0, key(&a), Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, key(&a), Side::Outside, "198.51.100.7:5000");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    assert_eq!(t.mappings(), 2);
    assert!(!t.holds_nothing());
    t.release(a.session);
    let cmds = drain(&mut t);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCommand::Remove { .. }))
            .count(),
        2
    );
    assert!(cmds.contains(&MediaCommand::Close { stream: key(&a) }));
    assert!(
        t.holds_nothing(),
        "ports, slots, quota and session all returned"
    );
    t.release(a.session);
    assert_eq!(drain(&mut t), [], "release is idempotent");
}

#[test]
fn provisional_latch_before_the_answer_gets_no_fast_path_until_confirmed() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, None);
    let k = key(&a);
    drain(&mut t);
    assert!(matches!(
        packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000"),
        PacketAction::Forward { .. } | PacketAction::Drop(PacketDrop::NoDestination)
    ));
    // The carrier's media server (in its trunk network) sends before its answer: provisional.
    let early = packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    assert!(matches!(early, PacketAction::Forward { to, .. } if to == sa("10.0.0.5:4000")));
    assert_eq!(
        installs(&drain(&mut t)),
        [],
        "provisional: stays in userspace"
    );
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(
        st.path.lock().peers[1].latch[0].latched(),
        Some(sa("198.51.100.7:5000"))
    );
    assert_eq!(st.path.lock().peers[1].latch[0].confirmed(), None);
    // The answer names the same address: confirmed, and the fast path follows at once.
    t.commit(
        t0,
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.7"), 5000)],
    )
    .expect("answer");
    let fast = installs(&drain(&mut t));
    assert_eq!(fast.len(), 2);
    assert!(
        fast.iter().all(|m| !m.strict),
        "re-latch window open: not strict yet"
    );
    assert_eq!(fast[0].dst, sa("198.51.100.7:5000"));
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn provisional_latch_of_another_address_is_dropped_by_the_answer() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, None);
    let k = key(&a);
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    t.commit(
        t0,
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.9"), 6000)],
    )
    .expect("answer");
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(
        st.path.lock().peers[1].latch[0].latched(),
        None,
        "unconfirmed latch dropped"
    );
    assert_eq!(
        st.path.lock().peers[1].latch[0].target(),
        Some(sa("198.51.100.9:6000"))
    );
    assert_eq!(installs(&drain(&mut t)), []);
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn outsider_never_latches_and_gets_nothing() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, None);
    let k = key(&a);
    for leg in [Side::Inside, Side::Outside] {
        assert_eq!(
            packet(&mut t, t0, k, leg, "203.0.113.66:4000"),
            PacketAction::Drop(PacketDrop::Refused(DropReason::NotAllowed))
        );
    }
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(st.path.lock().peers[1].latch[0].latched(), None);
    assert_eq!(st.path.lock().peers[1].dropped, 1);
    // The last refusal is kept for the one-way-audio diagnosis.
    assert_eq!(
        st.path.lock().peers[1].refused(),
        Some((sa("203.0.113.66:4000"), DropReason::NotAllowed))
    );
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn relatch_window_lets_a_new_source_in_then_closes_and_the_fast_path_turns_strict() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    drain(&mut t);
    // Inside the window (2 s from the answer) the carrier's other media server takes over.
    let t1 = t0 + Duration::from_millis(500);
    let moved = packet(&mut t, t1, k, Side::Outside, "198.51.100.8:5000");
    assert!(matches!(
        moved,
        PacketAction::Forward {
            relatched: true,
            ..
        }
    ));
    let fast = installs(&drain(&mut t));
    assert!(
        fast.iter().any(|m| m.expect == sa("198.51.100.8:5000")),
        "{fast:?}"
    );
    // After the window: strict source drops another allowed source.
    let t2 = t0 + Duration::from_secs(3);
    assert_eq!(
        packet(&mut t, t2, k, Side::Outside, "198.51.100.7:5000"),
        PacketAction::Drop(PacketDrop::Refused(DropReason::StrictSource))
    );
    // The tick makes the installed mappings strict, in place (counters kept).
    t.handle_timeout(t2);
    let cmds = drain(&mut t);
    let updates: Vec<&FastPath> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Update(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), 2, "{cmds:?}");
    assert!(updates.iter().all(|m| m.strict));
    t.handle_timeout(t2 + TICK);
    assert_eq!(installs(&drain(&mut t)), [], "strict once, then quiet");
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn media_timeout_fires_once_uses_the_hold_value_and_counts_fast_path_packets() {
    let t0 = crate::media::test_origin();
    let s = Duration::from_secs;
    let mut t = table(true);
    let a = call(&mut t, t0, None);
    // Not committed: no timeout however long it rings.
    t.handle_timeout(t0 + s(120));
    assert_eq!(t.poll_event(), None);
    t.commit(
        t0 + s(120),
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.7"), 5000)],
    )
    .expect("answer");
    let t1 = t0 + s(120);
    assert_eq!(t.handle_timeout(t1 + s(59)), 0);
    assert_eq!(t.handle_timeout(t1 + s(60)), 1);
    assert_eq!(t.poll_event(), Some(MediaEvent::Timeout(a.session)));
    t.handle_timeout(t1 + s(61));
    assert_eq!(t.poll_event(), None, "reported once");

    // On hold (sendonly), the hold timeout applies instead.
    let b = call(&mut t, t1, None);
    let mut held = StreamDesc::new(ip("198.51.100.7"), 5002);
    held.direction = Direction::SendOnly;
    t.commit(t1, b.session, Side::Outside, &[held])
        .expect("answer");
    t.handle_timeout(t1 + s(61));
    assert_eq!(t.poll_event(), None);
    t.handle_timeout(t1 + s(3601));
    assert_eq!(t.poll_event(), Some(MediaEvent::Timeout(b.session)));

    // A stream that XDP carries: counters are asked for once idle for a quarter of the
    // timeout, and packets counted there keep the call up.
    let c = call(&mut t, t1, Some("198.51.100.7:5004"));
    let k = key(&c);
    packet(&mut t, t1, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t1, k, Side::Outside, "198.51.100.7:5004");
    drain(&mut t);
    assert_eq!(t.poll_event(), Some(MediaEvent::Latched(c.session)));
    let mut now = t1;
    for round in 1..=10u64 {
        now = t1 + s(15 * round);
        t.handle_timeout(now);
        let reads: Vec<StreamKey> = drain(&mut t)
            .into_iter()
            .filter_map(|c| match c {
                MediaCommand::ReadCounters { stream, slots } => {
                    assert!(slots.iter().all(Option::is_some));
                    Some(stream)
                }
                _ => None,
            })
            .collect();
        assert_eq!(reads, [k], "round {round}");
        t.handle_fast_path_packets(now, k, 750 * round);
    }
    assert_eq!(t.poll_event(), None, "XDP packets are activity");
    // The counters stop: the timeout follows.
    for _ in 0..5 {
        now += s(15);
        t.handle_timeout(now);
        t.handle_fast_path_packets(now, k, 7500);
    }
    assert_eq!(t.poll_event(), Some(MediaEvent::Timeout(c.session)));
    for id in [a.session, b.session, c.session] {
        t.release(id);
    }
    assert!(t.holds_nothing());
}

#[test]
fn a_busy_port_the_call_was_told_ends_the_call() {
    // The endpoints allocate returned are in the SDP before the binds run: a bind that fails
    // cannot move the stream, the call layer is told to end the call.
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, None);
    let k = key(&a);
    drain(&mut t);
    let e = t
        .handle_bind_failed(k, Side::Outside)
        .expect_err("the peers were told this port");
    assert_eq!(e.status_code(), 503);
    assert!(drain(&mut t).is_empty(), "no other pair drawn");
    assert_eq!(t.poll_event(), Some(MediaEvent::Failed(a.session)));
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(st.relay, a.streams[0], "the endpoints stay as told");
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// The call records read a released session's last statistics once, in the same turn: the
/// table keeps released sessions only when asked to, hands each over once, and a session
/// kept but never handed over counts as held (the leak check sees it).
#[test]
fn released_sessions_are_handed_over_once_and_only_when_kept() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, None);
    t.release(a.session);
    assert!(!t.has_released(), "nobody asked to keep them");
    assert_eq!(t.drain_released().count(), 0, "nobody asked to keep them");
    t.keep_released();
    assert!(!t.has_released(), "kept, none released yet");
    let b = call(&mut t, t0, None);
    let c = call(&mut t, t0, None);
    t.release(c.session);
    t.release(b.session);
    drain(&mut t);
    assert!(!t.holds_nothing(), "kept until handed over");
    assert!(t.has_released());
    let kept: Vec<SessionId> = t.drain_released().map(|(id, _)| id).collect();
    assert_eq!(kept, [c.session, b.session]);
    assert_eq!(t.drain_released().count(), 0, "handed over once");
    assert!(!t.has_released(), "handed over once");
    assert!(t.holds_nothing());
}

#[test]
fn refusals_leak_nothing() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let five = [StreamDesc::new(ip("10.0.0.5"), 4000); 5];
    assert_eq!(
        t.allocate(t0, Side::Inside, &five, &peers())
            .map_err(|e| e.status_code()),
        Err(488)
    );
    let v6 = [StreamDesc::new(ip("2001:db8::1"), 4000)];
    assert_eq!(
        t.allocate(t0, Side::Inside, &v6, &peers())
            .map_err(|e| e.status_code()),
        Err(488)
    );
    // The trunk's quota is 8 ports: two two-stream calls fit, a third is refused.
    let two = [StreamDesc::new(ip("10.0.0.5"), 4000); 2];
    let a = t
        .allocate(t0, Side::Inside, &two, &peers())
        .expect("4 ports");
    let b = t
        .allocate(t0, Side::Inside, &two, &peers())
        .expect("8 ports");
    assert_eq!(
        t.allocate(t0, Side::Inside, &two, &peers()),
        Err(MediaError::QuotaExhausted("carrier".into()))
    );
    // A re-offer with a third stream is over the quota as well; an answer must match.
    assert_eq!(
        t.update(
            t0,
            a.session,
            Side::Inside,
            &[StreamDesc::new(ip("10.0.0.5"), 4000); 3]
        )
        .map_err(|e| e.status_code()),
        Err(503)
    );
    assert_eq!(
        t.commit(
            t0,
            b.session,
            Side::Outside,
            &[StreamDesc::new(ip("198.51.100.7"), 1)]
        )
        .map_err(|e| e.status_code()),
        Err(488)
    );
    // Re-offer streams that cannot be bound are dropped again.
    t.set_peers(b.session, &MediaPeers::default());
    let three = [StreamDesc::new(ip("10.0.0.5"), 4000); 3];
    t.update(t0, b.session, Side::Inside, &three)
        .expect("no trunk, no quota");
    t.drop_streams_from(b.session, 2);
    assert_eq!(t.session(b.session).expect("b").streams.len(), 2);
    drain(&mut t);
    t.release(a.session);
    t.release(b.session);
    assert!(t.holds_nothing());
}

#[test]
fn adoption_pairs_mappings_and_removes_the_rest() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let fwd = FastPath {
        ingress: SocketAddr::new(IN, 20_010),
        expect: sa("10.0.0.5:4000"),
        egress: SocketAddr::new(OUT, 20_020),
        dst: sa("198.51.100.7:5000"),
        strict: true,
        slot: 3,
        generation: 7,
        mode: PathMode::Relay,
    };
    let back = FastPath {
        ingress: fwd.egress,
        expect: fwd.dst,
        egress: fwd.ingress,
        dst: fwd.expect,
        strict: true,
        slot: 4,
        generation: 8,
        mode: PathMode::Relay,
    };
    let stray = FastPath {
        ingress: SocketAddr::new(IN, 20_030),
        slot: 5,
        ..fwd
    };
    let ids = t.adopt(t0, &[fwd, back, stray]);
    assert_eq!(ids.len(), 1);
    let cmds = drain(&mut t);
    assert!(cmds.contains(&MediaCommand::Remove {
        ingress: stray.ingress,
        policy: false,
    }));
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCommand::Bind { .. }))
            .count(),
        2
    );
    let s = t.session(ids[0]).expect("adopted");
    assert!(s.adopted && s.committed);
    assert_eq!(
        s.streams[0].installed.iter().collect::<Vec<_>>(),
        [fwd, back]
    );
    // Its ports cannot be bound any more: no other pair will do.
    assert!(t.handle_bind_failed(key_of(ids[0]), Side::Inside).is_err());
    // Its media stops: the table releases it itself, no event for a call layer.
    t.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(t.poll_event(), None);
    assert!(t.session(ids[0]).is_none());
    assert!(t.holds_nothing());
}

fn key_of(session: SessionId) -> StreamKey {
    StreamKey { session, index: 0 }
}

#[test]
fn failover_moves_quota_and_allowed_sources() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, None);
    let k = key(&a);
    let other = MediaPeers {
        outside: Some(ip("192.0.2.50")),
        trunk: None,
        ..peers()
    };
    t.set_peers(a.session, &other);
    // The old trunk's network is no longer allowed; the new signaling peer is.
    assert_eq!(
        packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000"),
        PacketAction::Drop(PacketDrop::Refused(DropReason::NotAllowed))
    );
    assert!(matches!(
        packet(&mut t, t0, k, Side::Outside, "192.0.2.50:5000"),
        PacketAction::Forward { .. }
    ));
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn packets_of_a_released_stream_are_dropped() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    t.release(a.session);
    assert_eq!(
        packet(&mut t, t0, key(&a), Side::Inside, "10.0.0.5:4000"),
        PacketAction::Drop(PacketDrop::UnknownStream)
    );
}

pub(super) fn srtp_keys(seed: u64) -> crate::srtp::StreamKeys {
    use crate::srtp::{KeySpec, MasterKey, Suite};
    let suite = Suite::AesCm128HmacSha1_80;
    let mut rng = Rng::from_test_seed(seed);
    let mut spec = || KeySpec {
        suite,
        key: MasterKey::generate(suite, &mut rng),
        lifetime: None,
    };
    crate::srtp::StreamKeys {
        rx: spec(),
        tx: spec(),
    }
}

#[test]
fn encrypted_stream_leaves_the_fast_path_and_plain_again_takes_it() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    // Keys on the carrier leg: both mappings go (XDP cannot run AES).
    t.set_crypto(t0, a.session, Side::Outside, &[Some(srtp_keys(1))])
        .expect("keys");
    let cmds = drain(&mut t);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCommand::Remove { .. }))
            .count(),
        2,
        "{cmds:?}"
    );
    assert_eq!(t.mappings(), 0);
    // Re-latching an encrypted stream asks for no fast path either.
    let t1 = t0 + Duration::from_millis(100);
    t.update(
        t1,
        a.session,
        Side::Inside,
        &[StreamDesc::new(ip("10.0.0.6"), 4002)],
    )
    .expect("re-offer");
    drain(&mut t);
    assert_eq!(t.mappings(), 0);
    // Plain again (a re-INVITE without crypto): the fast path comes back.
    t.set_crypto(t1, a.session, Side::Outside, &[None])
        .expect("plain");
    packet(&mut t, t1, k, Side::Inside, "10.0.0.6:4002");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    assert_eq!(
        t.set_crypto(t1, SessionId(999), Side::Inside, &[None]),
        Err(MediaError::UnknownSession(SessionId(999)))
    );
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn srtp_is_authenticated_before_the_latch_and_transformed_in_place() {
    use crate::srtp::{SrtpContext, SrtpError};
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    let keys = srtp_keys(2);
    t.set_crypto(t0, a.session, Side::Outside, &[Some(keys.clone())])
        .expect("keys");
    let mut carrier = SrtpContext::new(keys.rx.suite, &keys.rx.key, None);
    let from_carrier = |src: &str| Arrival {
        stream: k,
        leg: Side::Outside,
        port: RelayPort::Rtp,
        src: sa(src),
    };
    // A forged packet from another allowed source (the trunk's network): dropped as an
    // authentication failure, and the latch does not move to it.
    let mut buf = [0u8; 64];
    buf[..RTP.len()].copy_from_slice(&RTP);
    let n = carrier.protect_rtp(&mut buf, RTP.len()).expect("protect");
    let mut forged = buf;
    forged[n - 1] ^= 1;
    assert_eq!(
        t.handle_packet(t0, from_carrier("198.51.100.9:5000"), &mut forged, n),
        PacketAction::Drop(PacketDrop::Srtp(SrtpError::AuthFailed))
    );
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(
        st.path.lock().peers[1].latch[0].latched(),
        None,
        "forgery did not latch"
    );
    assert_eq!(st.path.lock().peers[1].dropped, 1);
    assert_eq!(
        PacketDrop::Srtp(SrtpError::AuthFailed).label(),
        "srtp_auth_failed"
    );
    // The authentic packet is unprotected in place toward the plain PBX leg.
    assert_eq!(
        t.handle_packet(t0, from_carrier("198.51.100.7:5000"), &mut buf, n),
        PacketAction::Forward {
            port: RelayPort::Rtp,
            to: sa("10.0.0.5:4000"),
            relatched: false,
            len: RTP.len(),
        }
    );
    assert_eq!(buf[..RTP.len()], RTP);
    // PBX → carrier: protected in place, the tag appended in the headroom.
    let mut out = [0u8; 64];
    out[..RTP.len()].copy_from_slice(&RTP);
    let pbx = Arrival {
        stream: k,
        leg: Side::Inside,
        port: RelayPort::Rtp,
        src: sa("10.0.0.5:4000"),
    };
    let PacketAction::Forward { len, .. } = t.handle_packet(t0, pbx, &mut out, RTP.len()) else {
        panic!("not forwarded");
    };
    assert_eq!(len, RTP.len() + 10, "80-bit tag");
    let mut rx = SrtpContext::new(keys.tx.suite, &keys.tx.key, None);
    assert_eq!(rx.unprotect_rtp(&mut out[..len]), Ok(RTP.len()));
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn restored_session_rebinds_its_recorded_ports_and_keeps_latches() {
    let t0 = crate::media::test_origin();
    let mut old = table(false);
    let a = call(&mut old, t0, Some("198.51.100.7:5000"));
    packet(&mut old, t0, key(&a), Side::Inside, "10.0.0.5:4000");
    packet(&mut old, t0, key(&a), Side::Outside, "198.51.100.9:5002");
    let snap = old.snapshot(a.session).expect("snapshot");
    assert_eq!(
        snap.streams[0].latched_outside,
        Some(sa("198.51.100.9:5002")),
        "the NAT'd latch is recorded"
    );
    // A new process: an empty table.
    let mut t = table(false);
    let id = t.restore(t0, &snap).expect("restore");
    let r = a.streams[0];
    assert_eq!(
        drain(&mut t),
        [
            MediaCommand::Bind {
                stream: key_of(id),
                leg: Side::Inside,
                addr: SocketAddr::new(IN, r.inside.rtp_port),
            },
            MediaCommand::Bind {
                stream: key_of(id),
                leg: Side::Outside,
                addr: SocketAddr::new(OUT, r.outside.rtp_port),
            },
        ],
        "the ports the peers' SDP names"
    );
    let s = t.session(id).expect("restored");
    assert!(s.committed && !s.adopted);
    assert_eq!(s.streams[0].relay, r);
    assert_eq!(
        s.streams[0].path.lock().peers[1].latch[0].target(),
        Some(sa("198.51.100.9:5002")),
        "media goes where it went before"
    );
    // Recorded ports cannot move: the peers would send elsewhere.
    assert!(t.handle_bind_failed(key_of(id), Side::Inside).is_err());
    // A second restore of the same ports is refused without holding anything more.
    assert!(matches!(
        t.restore(t0, &snap),
        Err(MediaError::Unavailable(_))
    ));
    t.release(id);
    drain(&mut t);
    assert!(t.holds_nothing(), "ports and quota returned");
}

#[test]
fn restore_takes_over_the_session_adopted_from_the_fast_path() {
    let t0 = crate::media::test_origin();
    let mut old = table(true);
    let a = call(&mut old, t0, Some("198.51.100.7:5000"));
    packet(&mut old, t0, key(&a), Side::Inside, "10.0.0.5:4000");
    packet(&mut old, t0, key(&a), Side::Outside, "198.51.100.7:5000");
    let found = installs(&drain(&mut old));
    assert_eq!(found.len(), 2);
    let snap = old.snapshot(a.session).expect("snapshot");
    let mut t = table(true);
    let adopted = t.adopt(t0, &found);
    drain(&mut t);
    let id = t.restore(t0, &snap).expect("restore");
    assert_eq!(id, adopted[0], "the adopted session becomes the call's");
    let cmds = drain(&mut t);
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, MediaCommand::Bind { .. } | MediaCommand::Remove { .. })),
        "sockets and mappings stay as adopted: {cmds:?}"
    );
    let s = t.session(id).expect("session");
    assert!(
        !s.adopted,
        "a call owns it now: its timeout is the call's to act on"
    );
    assert_eq!(s.peers, peers());
    assert_eq!(s.streams[0].installed.len(), 2);
    t.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(t.poll_event(), Some(MediaEvent::Timeout(id)));
    t.release(id);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn a_leg_awaiting_srtp_keys_gets_no_plain_packet_and_no_fast_path() {
    use crate::srtp::SrtpContext;
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    // Both peers known and latched: a plain stream on the fast path.
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    // The SBC offers SRTP to the carrier: until the answer settles the keys, the PBX's plain
    // RTP must not reach the carrier link, in userspace or in the kernel.
    t.expect_crypto(t0, a.session, Side::Outside, &[true])
        .expect("expect");
    assert_eq!(t.mappings(), 0, "the kernel would forward it in clear");
    let mut buf = [0u8; 64];
    buf[..RTP.len()].copy_from_slice(&RTP);
    let pbx = Arrival {
        stream: k,
        leg: Side::Inside,
        port: RelayPort::Rtp,
        src: sa("10.0.0.5:4000"),
    };
    assert_eq!(
        t.handle_packet(t0, pbx, &mut buf, RTP.len()),
        PacketAction::Drop(PacketDrop::SrtpPending)
    );
    assert_eq!(PacketDrop::SrtpPending.label(), "srtp_pending");
    // The answer's keys: protected from then on.
    let keys = srtp_keys(3);
    t.set_crypto(t0, a.session, Side::Inside, &[None])
        .expect("plain inside");
    t.set_crypto(t0, a.session, Side::Outside, &[Some(keys.clone())])
        .expect("keys");
    let PacketAction::Forward { len, .. } = t.handle_packet(t0, pbx, &mut buf, RTP.len()) else {
        panic!("not forwarded once keyed");
    };
    let mut carrier = SrtpContext::new(keys.tx.suite, &keys.tx.key, None);
    assert_eq!(carrier.unprotect_rtp(&mut buf[..len]), Ok(RTP.len()));
    // A re-offer of SRTP on a keyed leg keeps its media flowing (no gap for a re-key).
    t.expect_crypto(t0, a.session, Side::Outside, &[true])
        .expect("re-offer");
    buf[..RTP.len()].copy_from_slice(&RTP);
    buf[3] = 2; // next sequence number
    assert!(matches!(
        t.handle_packet(t0, pbx, &mut buf, RTP.len()),
        PacketAction::Forward { .. }
    ));
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// The call layer fails over from a trunk that required SRTP to a plain one: its `false` for
/// the carrier leg releases the stream the first offer left awaiting keys (before, only a
/// `true` was heard, and the stream relayed nothing and stayed off the fast path until the
/// new trunk's answer).
#[test]
fn a_false_releases_a_leg_an_earlier_offer_left_awaiting_keys() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    t.expect_crypto(t0, a.session, Side::Outside, &[true])
        .expect("SRTP offered");
    assert!(
        t.path(k)
            .expect("stream")
            .lock()
            .srtp
            .awaiting(Side::Outside)
    );
    t.expect_crypto(t0, a.session, Side::Outside, &[false])
        .expect("plain offered");
    assert!(
        !t.path(k)
            .expect("stream")
            .lock()
            .srtp
            .awaiting(Side::Outside)
    );
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    assert_eq!(installs(&drain(&mut t)).len(), 2, "plain again: fast path");
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// `telephone-event` 101 inside, 96 outside (as `b2bua/codec_policy.rs` computes it).
fn event_maps() -> crate::media::StreamPayloadMaps {
    let sdp = |pt: u8| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0 {pt}\r\na=rtpmap:{pt} telephone-event/8000\r\n"
        )
    };
    let (inside, outside) = (sdp(101), sdp(96));
    let (i, o) = (
        crate::sdp::Sdp::parse(inside.as_bytes()).expect("SDP"),
        crate::sdp::Sdp::parse(outside.as_bytes()).expect("SDP"),
    );
    let (i, o) = (i.media_at(0).expect("m="), o.media_at(0).expect("m="));
    crate::media::StreamPayloadMaps {
        inside_to_outside: crate::sdp::PayloadMap::between(&i, &o),
        outside_to_inside: crate::sdp::PayloadMap::between(&o, &i),
    }
}

fn forward_pt(t: &mut MediaTable, now: Instant, k: StreamKey, leg: Side, src: &str, pt: u8) -> u8 {
    let mut buf = [0u8; 64];
    buf[..RTP.len()].copy_from_slice(&RTP);
    buf[1] = 0x80 | pt;
    let arrival = Arrival {
        stream: k,
        leg,
        port: RelayPort::Rtp,
        src: sa(src),
    };
    match t.handle_packet(now, arrival, &mut buf, RTP.len()) {
        PacketAction::Forward { .. } => buf[1],
        other => panic!("{other:?}"),
    }
}

#[test]
fn payload_types_are_rewritten_per_direction_and_keep_the_stream_off_the_fast_path() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    t.set_payload_maps(t0, a.session, &[event_maps()])
        .expect("maps");
    assert_eq!(
        forward_pt(&mut t, t0, k, Side::Inside, "10.0.0.5:4000", 101),
        0x80 | 96,
        "the carrier gets its 96, marker kept"
    );
    assert_eq!(
        forward_pt(&mut t, t0, k, Side::Outside, "198.51.100.7:5000", 96),
        0x80 | 101
    );
    assert_eq!(
        forward_pt(&mut t, t0, k, Side::Inside, "10.0.0.5:4000", 0),
        0x80,
        "PCMU is the same on both legs"
    );
    assert!(
        installs(&drain(&mut t)).is_empty(),
        "XDP would forward 101 unchanged: the stream stays in userspace"
    );
    assert_eq!(t.mappings(), 0);
    // Back to the same numbers (a re-INVITE): the fast path may take it.
    t.set_payload_maps(t0, a.session, &[]).expect("identity");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    assert_eq!(
        t.set_payload_maps(t0, SessionId(999), &[]),
        Err(MediaError::UnknownSession(SessionId(999)))
    );
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// An RFC 4733 event relayed across a payload-type mapping (101 inside, 96 outside) arrives
/// as it was sent but for the 7-bit payload type: the marker on its first packet only, every
/// packet with the event's one timestamp, sequence numbers and SSRC unchanged, and the payload
/// (event, E bit, volume, duration) untouched — including the end packet sent three times
/// (RFC 4733 §2.5.1.4), each relayed, none merged or dropped; the next event's new timestamp
/// and marker cross the same way.
#[test]
fn an_event_crosses_a_payload_type_mapping_with_its_timestamps_and_end_packets_intact() {
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    t.set_payload_maps(t0, a.session, &[event_maps()])
        .expect("maps");
    // (marker, seq, timestamp, payload): digit 5 for 400 samples then 3 end packets; digit #.
    let event = |code: u8, end: bool, duration: u16| {
        let d = duration.to_be_bytes();
        [code, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
    };
    let sent: Vec<(bool, u16, u32, [u8; 4])> = vec![
        (true, 100, 8000, event(5, false, 160)),
        (false, 101, 8000, event(5, false, 320)),
        (false, 102, 8000, event(5, true, 400)),
        (false, 103, 8000, event(5, true, 400)),
        (false, 104, 8000, event(5, true, 400)),
        (true, 105, 9600, event(11, false, 160)),
        (false, 106, 9600, event(11, true, 240)),
        (false, 107, 9600, event(11, true, 240)),
        (false, 108, 9600, event(11, true, 240)),
    ];
    for (i, (marker, seq, ts, payload)) in sent.iter().enumerate() {
        let mut buf = [0u8; 64];
        buf[..RTP.len()].copy_from_slice(&RTP);
        buf[1] = if *marker { 0x80 } else { 0 } | 101;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[4..8].copy_from_slice(&ts.to_be_bytes());
        buf[12..16].copy_from_slice(payload);
        let before = buf;
        let arrival = Arrival {
            stream: k,
            leg: Side::Inside,
            port: RelayPort::Rtp,
            src: sa("10.0.0.5:4000"),
        };
        let action = t.handle_packet(t0, arrival, &mut buf, 16);
        assert!(
            matches!(action, PacketAction::Forward { len: 16, .. }),
            "packet {i}: {action:?}"
        );
        assert_eq!(
            buf[1],
            if *marker { 0x80 } else { 0 } | 96,
            "packet {i}: the carrier's number, marker as sent"
        );
        assert_eq!(buf[0], before[0], "packet {i}: version and flags");
        assert_eq!(
            &buf[2..16],
            &before[2..16],
            "packet {i}: sequence number, timestamp, SSRC and event payload unchanged"
        );
    }
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// `payload` after an RTP header with `pt` and `seq` from `src` on `leg`.
fn rtp_from(
    t: &mut MediaTable,
    now: Instant,
    k: StreamKey,
    leg: Side,
    src: &str,
    (pt, seq, payload): (u8, u16, &[u8]),
) -> (PacketAction, Vec<u8>) {
    let mut buf = [0u8; 256];
    buf[..RTP.len()].copy_from_slice(&RTP);
    buf[1] = pt;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    let len = RTP.len() + payload.len();
    buf[RTP.len()..len].copy_from_slice(payload);
    let arrival = Arrival {
        stream: k,
        leg,
        port: RelayPort::Rtp,
        src: sa(src),
    };
    let action = t.handle_packet(now, arrival, &mut buf, len);
    (action, buf[..len].to_vec())
}

#[test]
fn a_terminated_event_is_read_in_its_senders_numbers_when_payload_types_are_rewritten() {
    use crate::{dtmf::Digit, media::dtmf::StreamDtmf};
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    let carrier = "198.51.100.7:5000";
    // telephone-event is 96 on the carrier's leg and 101 on the PBX's, and the relay
    // terminates the carrier's events (maps first, then DTMF: the call layer's order).
    t.set_payload_maps(t0, a.session, &[event_maps()])
        .expect("maps");
    let dtmf = StreamDtmf {
        terminated: [None, Some(96)],
    };
    t.set_dtmf(t0, a.session, &[dtmf]).expect("dtmf");
    let end = [8, 0x8a, 3, 32];
    let (action, _) = rtp_from(&mut t, t0, k, Side::Outside, carrier, (96, 3, &end));
    assert_eq!(
        action,
        PacketAction::Consumed,
        "not forwarded as 101 to the PBX"
    );
    assert_eq!(
        t.poll_event(),
        Some(MediaEvent::Dtmf {
            session: a.session,
            leg: Side::Outside,
            digit: Digit::from_char('8').expect("digit"),
            duration_ms: 100,
        })
    );
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn terminated_dtmf_is_generated_toward_and_detected_from_a_leg_in_userspace() {
    use crate::{dtmf::Digit, media::dtmf::StreamDtmf};
    let t0 = crate::media::test_origin();
    let mut t = table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    let (pbx, carrier) = ("10.0.0.5:4000", "198.51.100.7:5000");
    rtp_from(&mut t, t0, k, Side::Inside, pbx, (0, 1, &[0; 160]));
    rtp_from(&mut t, t0, k, Side::Outside, carrier, (0, 1, &[0; 160]));
    assert_eq!(installs(&drain(&mut t)).len(), 2, "both latched: XDP");
    // The carrier takes RFC 4733 (96), the PBX INFO.
    let dtmf = StreamDtmf {
        terminated: [None, Some(96)],
    };
    t.set_dtmf(t0, a.session, &[dtmf]).expect("set");
    let cmds = drain(&mut t);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCommand::Remove { .. }))
            .count(),
        2,
        "the stream leaves the fast path: {cmds:?}"
    );
    // Audio both ways: the PBX's is the stream the events join.
    for (leg, src) in [(Side::Inside, pbx), (Side::Outside, carrier)] {
        let (action, _) = rtp_from(&mut t, t0, k, leg, src, (0, 2, &[0; 160]));
        assert!(matches!(action, PacketAction::Forward { .. }), "{action:?}");
    }
    // A digit from an INFO: the relay's task is woken and sends the first event at once.
    let digit = Digit::from_char('3').expect("digit");
    t.generate_dtmf(t0, k, Side::Outside, 96, digit, 100)
        .expect("queued");
    assert_eq!(drain(&mut t), [MediaCommand::Wake { stream: k }]);
    assert_eq!(t.generated_deadline(k), Some(t0));
    let mut buf = [0u8; 256];
    let g = t.poll_generated(t0, k, &mut buf).expect("first packet");
    assert_eq!((g.toward, g.to, g.len), (Side::Outside, sa(carrier), 16));
    assert_eq!(buf[1], 0x80 | 96, "marker and the carrier's payload type");
    assert_eq!(&buf[2..4], &3u16.to_be_bytes(), "after the PBX's seq 2");
    assert_eq!(&buf[8..12], &RTP[8..12], "the PBX's SSRC");
    assert_eq!(&buf[12..16], &[3, 10, 1, 144]);
    assert_eq!(t.poll_generated(t0, k, &mut buf), None, "next one in 50 ms");
    // The PBX's audio waits while the event plays.
    let (action, _) = rtp_from(&mut t, t0, k, Side::Inside, pbx, (0, 3, &[0; 160]));
    assert_eq!(action, PacketAction::Consumed);
    // The carrier's own digit: consumed, reported for an INFO toward the PBX.
    let end = [8, 0x8a, 3, 32];
    let (action, _) = rtp_from(&mut t, t0, k, Side::Outside, carrier, (96, 3, &end));
    assert_eq!(action, PacketAction::Consumed);
    assert_eq!(
        t.poll_event(),
        Some(MediaEvent::Dtmf {
            session: a.session,
            leg: Side::Outside,
            digit: Digit::from_char('8').expect("digit"),
            duration_ms: 100,
        })
    );
    // Its audio still crosses, one sequence number lower (the gap is hidden).
    let (action, out) = rtp_from(&mut t, t0, k, Side::Outside, carrier, (0, 4, &[0; 160]));
    assert!(matches!(action, PacketAction::Forward { .. }), "{action:?}");
    assert_eq!(&out[2..4], &3u16.to_be_bytes());
    // Nothing terminated any more (a re-INVITE): the fast path may take it again.
    t.set_dtmf(t0, a.session, &[]).expect("set");
    assert_eq!(installs(&drain(&mut t)).len(), 2);
    assert_eq!(t.generated_deadline(k), None, "queued digits dropped");
    assert_eq!(
        t.generate_dtmf(t0, k, Side::Outside, 96, digit, 100),
        Err(crate::media::dtmf::GenerateRefusal::NotTerminated)
    );
    t.release(a.session);
    assert!(t.holds_nothing());
}

/// A T.38 stream (`m=image … udptl t38`, no rtcp-mux): a UDPTL datagram whose sequence number
/// happens to look like an RTCP header (0x80C8: version 2, "packet type" 200) arriving on the
/// RTP port is the stream's payload, and goes to the peer's RTP port, not its RTCP port. Only
/// a sender that multiplexes (rtcp-mux) sends RTCP on the RTP port.
#[test]
fn udptl_that_looks_like_rtcp_is_not_sent_to_the_rtcp_port_without_rtcp_mux() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    let udptl = |seq: u16| {
        let [hi, lo] = seq.to_be_bytes();
        [hi, lo, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0]
    };
    let send = |t: &mut MediaTable, leg, src: &str, bytes: &[u8]| {
        let mut buf = [0u8; 64];
        buf[..bytes.len()].copy_from_slice(bytes);
        let arrival = Arrival {
            stream: k,
            leg,
            port: RelayPort::Rtp,
            src: sa(src),
        };
        t.handle_packet(t0, arrival, &mut buf, bytes.len())
    };
    for seq in [0x80c8, 0x80c9, 0x0001] {
        match send(&mut t, Side::Inside, "10.0.0.5:4000", &udptl(seq)) {
            PacketAction::Forward { port, to, .. } => {
                assert_eq!(
                    (port, to),
                    (RelayPort::Rtp, sa("198.51.100.7:5000")),
                    "UDPTL seq {seq:#x}"
                );
            }
            other => panic!("UDPTL seq {seq:#x}: {other:?}"),
        }
    }
    // A PBX that multiplexes RTCP: its RTCP on the RTP port goes to the carrier's RTCP port.
    let mut mux = StreamDesc::new(ip("10.0.0.5"), 4000);
    mux.rtcp_mux = true;
    t.update(t0, a.session, Side::Inside, &[mux])
        .expect("re-offer");
    let mut rr = [0u8; 32];
    rr[..4].copy_from_slice(&[0x81, 201, 0, 7]);
    match send(&mut t, Side::Inside, "10.0.0.5:4000", &rr) {
        PacketAction::Forward { port, to, .. } => {
            assert_eq!((port, to), (RelayPort::Rtcp, sa("198.51.100.7:5001")));
        }
        other => panic!("muxed RTCP: {other:?}"),
    }
    t.release(a.session);
    assert!(t.holds_nothing());
}

#[test]
fn a_latch_is_reported_once_to_the_call_layer_and_a_steady_source_is_not() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let k = key(&a);
    assert_eq!(t.poll_event(), None);
    packet(&mut t, t0, k, Side::Inside, "10.0.0.5:4000");
    packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    // Both legs latched: one event for the session (the record holds both latches).
    assert_eq!(t.poll_event(), Some(MediaEvent::Latched(a.session)));
    assert_eq!(t.poll_event(), None);
    for _ in 0..10 {
        packet(&mut t, t0, k, Side::Outside, "198.51.100.7:5000");
    }
    assert_eq!(
        t.poll_event(),
        None,
        "the same source does not move the latch"
    );
    // A re-latch inside the window moves it: reported again.
    let t1 = t0 + Duration::from_millis(500);
    packet(&mut t, t1, k, Side::Outside, "198.51.100.8:5000");
    assert_eq!(t.poll_event(), Some(MediaEvent::Latched(a.session)));
    // A latch of a released session is not reported.
    packet(&mut t, t1, k, Side::Outside, "198.51.100.7:5000");
    t.release(a.session);
    assert_eq!(t.poll_event(), None);
}
