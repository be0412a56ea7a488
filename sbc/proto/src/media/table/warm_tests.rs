//! Warm pairs through the table: userspace streams take pairs bound ahead, the pool is topped
//! up after them, failures go back without a loop, and streams that need one exact pair
//! (restored) or none (socketless) leave the warm pairs consistent.

use super::{
    tests::{call, drain, ip, peers, policy, settings, table},
    *,
};

const IN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
const OUT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 1));

fn prebinds(cmds: &[MediaCommand]) -> Vec<SocketAddr> {
    cmds.iter()
        .filter_map(|c| match c {
            MediaCommand::Prebind { addr } => Some(*addr),
            _ => None,
        })
        .collect()
}

fn binds(cmds: &[MediaCommand]) -> Vec<SocketAddr> {
    cmds.iter()
        .filter_map(|c| match c {
            MediaCommand::Bind { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect()
}

/// Answers every prebind of `cmds` with `bound`; returns their addresses.
fn answer(t: &mut MediaTable, cmds: &[MediaCommand], bound: bool) -> Vec<SocketAddr> {
    let asked = prebinds(cmds);
    for a in &asked {
        t.handle_prebound(*a, bound);
    }
    asked
}

fn warm_table(pairs: usize) -> (MediaTable, Vec<SocketAddr>) {
    let mut t = table(false);
    t.set_warm_pairs(pairs);
    let cmds = drain(&mut t);
    let warm = answer(&mut t, &cmds, true);
    (t, warm)
}

#[test]
fn a_userspace_stream_takes_a_pair_bound_ahead_and_the_pool_is_topped_up() {
    let t0 = crate::media::test_origin();
    let (mut t, warm) = warm_table(2);
    assert_eq!(warm.len(), 4, "two per relay address: {warm:?}");
    assert_eq!(warm.iter().filter(|a| a.ip() == IN).count(), 2);
    assert_eq!(t.warm_ready(), 4);
    // Held warm is still free for the operator's gauges.
    assert_eq!(t.ports_free(Side::Inside), t.ports_total(Side::Inside));
    let a = call(&mut t, t0, Some("198.51.100.7:5000"));
    let r = a.streams[0];
    let relay = [
        SocketAddr::new(IN, r.inside.rtp_port),
        SocketAddr::new(OUT, r.outside.rtp_port),
    ];
    assert!(relay.iter().all(|a| warm.contains(a)), "{relay:?} {warm:?}");
    let cmds = drain(&mut t);
    // The stream's binds take the warm sockets; then one pair per address is asked for.
    assert_eq!(binds(&cmds), relay);
    let again = answer(&mut t, &cmds, true);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|a| !warm.contains(a)));
    assert_eq!(t.warm_ready(), 4);
    assert_eq!(t.warm_misses_and_failures(), (0, 0));
    t.release(a.session);
    drain(&mut t);
    assert!(t.holds_nothing());
}

#[test]
fn without_a_bound_pair_the_stream_is_a_counted_miss() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    t.set_warm_pairs(1);
    // Asked, not answered yet: nothing is known to be bound.
    let asked = prebinds(&drain(&mut t));
    let a = call(&mut t, t0, None);
    let r = a.streams[0];
    assert!(!asked.contains(&SocketAddr::new(IN, r.inside.rtp_port)));
    assert_eq!(t.warm_misses_and_failures(), (2, 0));
    // Without a target there is no miss to count.
    let mut cold = table(false);
    call(&mut cold, t0, None);
    assert_eq!(cold.warm_misses_and_failures(), (0, 0));
    assert!(prebinds(&drain(&mut cold)).is_empty());
}

#[test]
fn pairs_that_cannot_be_bound_go_back_and_are_asked_again_on_the_tick_only() {
    let t0 = crate::media::test_origin();
    let mut t = table(false);
    t.set_warm_pairs(2);
    let cmds = drain(&mut t);
    assert_eq!(answer(&mut t, &cmds, false).len(), 4);
    assert_eq!(t.warm_misses_and_failures(), (0, 4));
    assert_eq!(t.warm_ready(), 0);
    // Back in the pool, and no new binds from the answers themselves: a range another
    // program holds costs one round per tick, not a loop.
    assert!(t.holds_nothing());
    assert!(drain(&mut t).is_empty());
    t.handle_timeout(t0);
    assert_eq!(prebinds(&drain(&mut t)).len(), 4);
}

#[test]
fn a_restored_stream_claims_its_pair_from_the_warm_pairs() {
    let t0 = crate::media::test_origin();
    // The same seed draws the same pairs: the first call's ports on one table are the
    // first warm pairs on the other.
    let mut before = table(false);
    let a = call(&mut before, t0, Some("198.51.100.7:5000"));
    let snap = before.snapshot(a.session).expect("snapshot");
    let (mut after, warm) = warm_table(1);
    let r = a.streams[0];
    let ports = [
        SocketAddr::new(IN, r.inside.rtp_port),
        SocketAddr::new(OUT, r.outside.rtp_port),
    ];
    assert_eq!(
        warm, ports,
        "precondition: the warm pairs are the recorded ones"
    );
    let id = after
        .restore(t0, &snap)
        .expect("restored from the warm pairs");
    let cmds = drain(&mut after);
    assert_eq!(binds(&cmds), ports);
    assert_eq!(after.warm_ready(), 0);
    after.release(id);
    drain(&mut after);
    assert!(after.holds_nothing());
}

#[test]
fn socketless_streams_take_warm_pairs_only_from_an_empty_pool_and_free_their_sockets() {
    let t0 = crate::media::test_origin();
    // Eight pairs per address: at most two held warm.
    let mut s = settings();
    s.port_max = 20_015;
    let mut t = MediaTable::new(s, policy(), true, 64, Rng::from_test_seed(1));
    t.set_kernel_latch(true);
    t.set_warm_pairs(2);
    let cmds = drain(&mut t);
    let warm = answer(&mut t, &cmds, true);
    assert_eq!(warm.len(), 4);
    // No trunk: its port quota would end the test before the pool does.
    let peers = MediaPeers {
        trunk: None,
        ..peers()
    };
    let mut calls = Vec::new();
    for n in 0..8 {
        let a = t
            .allocate(
                t0,
                Side::Inside,
                &[StreamDesc::new(ip("10.0.0.5"), 4000)],
                &peers,
            )
            .expect("offer");
        let cmds = drain(&mut t);
        assert!(binds(&cmds).is_empty(), "socketless: no sockets");
        let unbinds: Vec<SocketAddr> = cmds
            .iter()
            .filter_map(|c| match c {
                MediaCommand::Unbind { addr } => Some(*addr),
                _ => None,
            })
            .collect();
        let relay = SocketAddr::new(IN, a.streams[0].inside.rtp_port);
        if n < 6 {
            assert!(!warm.contains(&relay) && unbinds.is_empty(), "call {n}");
        } else {
            assert!(warm.contains(&relay), "call {n}: {relay}");
            assert_eq!(unbinds.len(), 2, "call {n}: both sides' sockets go");
        }
        calls.push(a.session);
    }
    assert_eq!(t.ports_free(Side::Inside), 0);
    for id in calls {
        t.release(id);
    }
    drain(&mut t);
    assert!(t.holds_nothing());
}
