//! Simulated-time tests of socketless streams: with in-kernel latching on, a plain stream binds
//! nothing and asks for awaiting mappings carrying the latching policy; the kernel's latches
//! come back into the table; a stream the program cannot carry alone is bound and relayed in
//! userspace, and every socket-bound port gets a pass-through mapping.

use super::tests::{call, drain, installs, ip, key, peers, policy, sa, settings, srtp_keys};
use super::*;
use crate::media::fast_path::KernelLatch;
use std::net::IpAddr;

fn kernel_table(strict: bool) -> MediaTable {
    let mut s = settings();
    s.strict_source = strict;
    let mut t = MediaTable::new(s, policy(), true, 64, Rng::from_test_seed(1));
    t.set_kernel_latch(true);
    t
}

fn binds(cmds: &[MediaCommand]) -> usize {
    cmds.iter()
        .filter(|c| matches!(c, MediaCommand::Bind { .. }))
        .count()
}

fn kernel_of(m: &FastPath) -> KernelLatch {
    match m.mode {
        PathMode::Kernel(k) => k,
        other => panic!("not a kernel mapping: {other:?}"),
    }
}

fn relay(a: &Allocation, leg: Side, rtcp: bool) -> SocketAddr {
    let (bind, port) = match leg {
        Side::Inside => (IN_ADDR, a.streams[0].inside.rtp_port),
        Side::Outside => (OUT_ADDR, a.streams[0].outside.rtp_port),
    };
    SocketAddr::new(bind, port + u16::from(rtcp))
}

const IN_ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
const OUT_ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 1));

#[test]
fn plain_stream_binds_nothing_and_awaits_its_latch_in_the_kernel() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let cmds = drain(&mut t);
    assert_eq!(
        binds(&cmds),
        0,
        "no socket for a socketless stream: {cmds:?}"
    );
    let m = installs(&cmds);
    let last = |ingress: SocketAddr| {
        *m.iter()
            .rev()
            .find(|f| f.ingress == ingress)
            .expect("mapping")
    };
    // RTP and RTCP, both ways.
    let mut ingresses: Vec<_> = m.iter().map(|f| f.ingress).collect();
    ingresses.sort();
    ingresses.dedup();
    assert_eq!(ingresses.len(), 4, "{m:?}");
    let pbx_rtp = last(relay(&a, Side::Inside, false));
    let k = kernel_of(&pbx_rtp);
    assert!(k.awaiting);
    assert_eq!(
        pbx_rtp.dst,
        sa("198.51.100.7:5000"),
        "towards the answer's SDP"
    );
    assert_eq!(k.reverse, relay(&a, Side::Outside, false));
    // The PBX: its SDP address and its signaling address; no inside media network.
    assert_eq!(
        k.sources,
        [Some((ip("10.0.0.5"), 32)), Some((ip("10.0.0.5"), 32)), None]
    );
    let carrier_rtcp = last(relay(&a, Side::Outside, true));
    let k = kernel_of(&carrier_rtcp);
    assert!(k.awaiting);
    assert_eq!(
        carrier_rtcp.dst,
        sa("10.0.0.5:4001"),
        "RTCP to the PBX's RTCP port"
    );
    assert_eq!(
        k.sources,
        [
            Some((ip("198.51.100.7"), 32)),
            Some((ip("198.51.100.1"), 32)),
            Some((ip("198.51.100.0"), 24))
        ]
    );
    assert_eq!(
        t.session(a.session).map(|s| s.streams[0].kernel),
        Some(true)
    );
    t.release(a.session);
    let cmds = drain(&mut t);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCommand::Remove { .. }))
            .count(),
        4
    );
    assert!(
        !cmds.iter().any(|c| matches!(c, MediaCommand::Close { .. })),
        "nothing to close: {cmds:?}"
    );
    assert!(t.holds_nothing());
}

/// A socketless call is indexed once per leg (issue 16: 10,000 calls held 40,000 `SocketAddr`
/// keys, one per mapping): a latch on the RTCP port finds its stream by its leg's RTP key.
#[test]
fn a_socketless_call_is_indexed_once_per_leg() {
    assert!(std::mem::size_of::<LegKey>() <= 20);
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    drain(&mut t);
    assert_eq!(t.kernel_ports.len(), 2);
    let t1 = t0 + Duration::from_millis(20);
    assert!(t.handle_kernel_latch(t1, relay(&a, Side::Outside, true), sa("198.51.100.7:5001")));
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(
        st.path.lock().peers[1].latch[1].latched(),
        Some(sa("198.51.100.7:5001"))
    );
    // A port of no leg is no stream's.
    let other = SocketAddr::new(OUT_ADDR, relay(&a, Side::Outside, false).port() + 2);
    assert!(!t.handle_kernel_latch(t1, other, sa("198.51.100.7:5001")));
    t.release(a.session);
    drain(&mut t);
    assert!(t.kernel_ports.is_empty());
}

/// What one socketless call costs in map writes (issue 16): each command is one or two `bpf`
/// syscalls, so the answer must change only what it changes. Offer: four awaiting mappings
/// (RTP and RTCP, both ways). Answer: the offerer's two mappings learn their destination (the
/// answer's SDP), the answerer's two their policy (its SDP address may latch); nothing is
/// installed again. Release: four removals.
#[test]
fn one_call_writes_each_map_entry_only_where_it_changes() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let count = |cmds: &[MediaCommand]| {
        let mut n = [0usize; 4];
        for c in cmds {
            match c {
                MediaCommand::Install(_) => n[0] += 1,
                MediaCommand::Update(_) => n[1] += 1,
                MediaCommand::Policy(_) => n[2] += 1,
                MediaCommand::Remove { .. } => n[3] += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        n
    };
    let a = call(&mut t, t0, None);
    let offer = drain(&mut t);
    assert_eq!(count(&offer), [4, 0, 0, 0], "{offer:?}");
    t.commit(
        t0,
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.7"), 5000)],
    )
    .expect("answer");
    let answer = drain(&mut t);
    assert_eq!(count(&answer), [0, 2, 2, 0], "{answer:?}");
    for c in &answer {
        match c {
            MediaCommand::Update(m) => {
                assert_eq!(m.egress.ip(), OUT_ADDR, "towards the answerer: {m:?}");
                assert_eq!(m.dst.ip(), ip("198.51.100.7"));
            }
            MediaCommand::Policy(m) => {
                assert_eq!(m.ingress.ip(), OUT_ADDR, "the answerer's: {m:?}");
                assert_eq!(kernel_of(m).sources[0], Some((ip("198.51.100.7"), 32)));
            }
            _ => {}
        }
    }
    // The same answer again (a 200 after a 183 with the same SDP): nothing to write.
    t.commit(
        t0,
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.7"), 5000)],
    )
    .expect("answer again");
    assert_eq!(drain(&mut t), []);
    t.release(a.session);
    let end = drain(&mut t);
    assert_eq!(count(&end), [0, 0, 0, 4]);
    assert!(
        end.iter()
            .all(|c| matches!(c, MediaCommand::Remove { policy: true, .. })),
        "the policies go with the mappings: {end:?}"
    );
    assert!(t.holds_nothing());
}

#[test]
fn kernel_latches_reach_the_table_without_rewriting_the_kernel() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    drain(&mut t);
    let t1 = t0 + Duration::from_secs(5);
    // A NAT'd PBX latched from its public port.
    assert!(t.handle_kernel_latch(t1, relay(&a, Side::Inside, false), sa("10.0.0.5:4010")));
    let cmds = drain(&mut t);
    assert!(cmds.is_empty(), "the kernel already holds this: {cmds:?}");
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(
        st.path.lock().peers[0].latch[0].latched(),
        Some(sa("10.0.0.5:4010"))
    );
    assert_eq!(
        st.path.lock().peers[0].last_seen,
        Some(t1),
        "a latch is activity"
    );
    let back = st
        .installed
        .iter()
        .find(|m| m.ingress == relay(&a, Side::Outside, false))
        .expect("reverse");
    assert_eq!(back.dst, sa("10.0.0.5:4010"), "the reverse mapping follows");
    assert_eq!(
        t.poll_event(),
        Some(MediaEvent::Latched(a.session)),
        "reported for the call's persisted state"
    );
    assert!(!t.handle_kernel_latch(t1, sa("198.18.1.1:9"), sa("10.0.0.5:4010")));
    t.release(a.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn provisional_kernel_latch_is_rearmed_when_the_sdp_names_another_address() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, None);
    drain(&mut t);
    let out = relay(&a, Side::Outside, false);
    // Early media from the trunk's proxy before the answer: latched, provisionally.
    assert!(t.handle_kernel_latch(t0, out, sa("198.51.100.1:6000")));
    assert!(drain(&mut t).is_empty());
    // The answer names another media server: the latch goes, the mapping awaits again.
    t.commit(
        t0,
        a.session,
        Side::Outside,
        &[StreamDesc::new(ip("198.51.100.7"), 5000)],
    )
    .expect("answer");
    let cmds = drain(&mut t);
    let m = installs(&cmds);
    let rearmed = m.iter().find(|f| f.ingress == out).expect("re-armed");
    assert!(kernel_of(rearmed).awaiting, "{m:?}");
    // The new policy before the mapping awaits on it.
    let policy = cmds
        .iter()
        .position(|c| matches!(c, MediaCommand::Policy(f) if f.ingress == out));
    let rearm = cmds
        .iter()
        .position(|c| matches!(c, MediaCommand::Update(f) if f.ingress == out));
    assert!(
        matches!((policy, rearm), (Some(p), Some(u)) if p < u),
        "{cmds:?}"
    );
    let towards = m
        .iter()
        .find(|f| f.ingress == relay(&a, Side::Inside, false))
        .expect("reverse");
    assert_eq!(towards.dst, sa("198.51.100.7:5000"));
    t.release(a.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn stream_that_turns_encrypted_is_bound_and_passed_up() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    drain(&mut t);
    assert!(t.handle_kernel_latch(t0, relay(&a, Side::Inside, false), sa("10.0.0.5:4000")));
    t.set_crypto(t0, a.session, Side::Outside, &[Some(srtp_keys(1))])
        .expect("keys");
    let cmds = drain(&mut t);
    assert_eq!(binds(&cmds), 2, "{cmds:?}");
    let m = installs(&cmds);
    assert_eq!(m.len(), 4);
    assert!(m.iter().all(|f| f.mode == PathMode::Pass), "{m:?}");
    let st = &t.session(a.session).expect("session").streams[0];
    assert!(!st.kernel);
    assert_eq!(
        st.path.lock().peers[0].latch[0].latched(),
        Some(sa("10.0.0.5:4000")),
        "the kernel's latch carries over to userspace"
    );
    t.release(a.session);
    let cmds = drain(&mut t);
    assert!(cmds.contains(&MediaCommand::Close { stream: key(&a) }));
    // Its pass mappings replaced the socketless ones, whose policies go with them.
    assert!(
        cmds.iter()
            .all(|c| !matches!(c, MediaCommand::Remove { policy: false, .. })),
        "{cmds:?}"
    );
    assert!(t.holds_nothing());
}

/// A socketless stream holds no socket on its ports, so another program may bind one of them;
/// when the stream later needs its sockets (it turned encrypted), the peers already send there:
/// it must not move to another pair behind their back. The bind fails for good and the call
/// layer is told to end the call.
#[test]
fn a_socketless_stream_whose_ports_were_taken_ends_the_call_instead_of_moving() {
    let t0 = crate::media::test_origin();
    let mut t = kernel_table(true);
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    drain(&mut t);
    t.set_crypto(t0, a.session, Side::Outside, &[Some(srtp_keys(1))])
        .expect("keys");
    let cmds = drain(&mut t);
    assert_eq!(binds(&cmds), 2, "{cmds:?}");
    let err = t
        .handle_bind_failed(key(&a), Side::Inside)
        .expect_err("the advertised port cannot move");
    assert_eq!(err.status_code(), 503);
    let st = &t.session(a.session).expect("session").streams[0];
    assert_eq!(st.relay, a.streams[0], "the ports the peers were told stay");
    assert!(
        drain(&mut t)
            .iter()
            .all(|c| !matches!(c, MediaCommand::Bind { .. })),
        "no other pair is tried"
    );
    assert_eq!(t.poll_event(), Some(MediaEvent::Failed(a.session)));
    t.release(a.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn socket_bound_streams_get_pass_mappings_in_the_kernel_range() {
    let t0 = crate::media::test_origin();
    // Loose source is a userspace-only rule: such streams keep their sockets.
    let mut t = kernel_table(false);
    let a = t
        .allocate(
            t0,
            Side::Inside,
            &[StreamDesc::new(ip("10.0.0.5"), 4000)],
            &peers(),
        )
        .expect("offer");
    let cmds = drain(&mut t);
    assert_eq!(binds(&cmds), 2);
    let m = installs(&cmds);
    assert_eq!(m.len(), 4, "RTP and RTCP ports of both sides: {m:?}");
    assert!(m.iter().all(|f| f.mode == PathMode::Pass));
    assert_eq!(t.mappings(), 0, "pass-through mappings forward nothing");
    t.release(a.session);
    let cmds = drain(&mut t);
    let removes: Vec<bool> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Remove { policy, .. } => Some(*policy),
            _ => None,
        })
        .collect();
    assert_eq!(
        removes, [false; 4],
        "a stream never socketless has no policies: {cmds:?}"
    );
    assert!(t.holds_nothing());
}

#[test]
fn without_kernel_latch_streams_bind_as_before() {
    let t0 = crate::media::test_origin();
    let mut t = MediaTable::new(settings(), policy(), true, 64, Rng::from_test_seed(1));
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let cmds = drain(&mut t);
    assert_eq!(binds(&cmds), 2);
    assert!(installs(&cmds).is_empty(), "{cmds:?}");
    t.release(a.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

/// Sized from the port range (as the runtime sizes the XDP maps), the statistics slots outlast
/// the ports: every socketless stream the widest range admits (32,255 calls, more than the
/// 16,384 that a fixed 65,536-mapping map held) gets its four kernel mappings, and the call
/// after the last one is refused for ports, not left without a path.
#[test]
fn mapping_slots_sized_from_the_port_range_outlast_the_ports() {
    let t0 = crate::media::test_origin();
    let mut s = settings();
    s.port_min = 1024;
    s.port_max = 65_535;
    let slots = s.fast_path_mappings();
    assert_eq!(slots, 32_256 * 2 * 2);
    // The trunk quota lifted: ports, not the quota (half the range by default), are the bound.
    let mut p = policy();
    if let Some(trunk) = p.trunks.get_mut("carrier") {
        trunk.max_ports = Some(usize::MAX);
    }
    let mut t = MediaTable::new(s, p, true, slots, Rng::from_test_seed(3));
    t.set_kernel_latch(true);
    let mut calls = 0u32;
    loop {
        let offer = t.allocate(
            t0,
            Side::Inside,
            &[StreamDesc::new(ip("10.0.0.5"), 4000)],
            &peers(),
        );
        let Ok(a) = offer else {
            assert!(
                matches!(offer, Err(MediaError::PortsExhausted(_))),
                "{offer:?}"
            );
            break;
        };
        calls += 1;
        let cmds = drain(&mut t);
        let kernel = installs(&cmds)
            .iter()
            .filter(|m| matches!(m.mode, PathMode::Kernel(_)))
            .count();
        assert_eq!(
            kernel, 4,
            "call {calls} ({:?}) has no full kernel path",
            a.session
        );
    }
    assert_eq!(calls, 32_256);
    assert_eq!(t.mappings(), 4 * 32_256);
}
