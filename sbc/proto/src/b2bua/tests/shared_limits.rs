//! Two shards' B2BUAs sharing their call counts (`shared_calls.rs`): a trunk's and the
//! SBC's `max_calls` hold for their calls together, and a place is free again whichever
//! shard's call ends.

use super::*;
use crate::{limit::CallLimits, shard::ShardId};

const MAX: u32 = 4;

fn invite(i: u32) -> String {
    pbx_invite(&format!("z9hG4bKpbx{i}"), Some(SDP_PBX))
        .replace("pbx-call-1", &format!("pbx-call-1-{i}"))
        .replace("tag=ptag1", &format!("tag=ptag1-{i}"))
}

/// Two shards with `limits` globally and `trunk` on the trunk, sharing one set of counts.
fn two_shards(limits: CallLimits, trunk: CallLimits) -> (Sim, Sim, SharedCalls) {
    let shared = SharedCalls::default();
    let mut root = Rng::from_test_seed(3);
    let shards: Vec<Sim> = (0..2)
        .map(|k| {
            let mut sim = Sim::with_rng(root.for_shard(ShardId::new(k)));
            let mut cfg = config();
            cfg.limits = limits;
            cfg.trunks[0].limits = trunk;
            sim.sbc.set_config(cfg);
            sim.sbc.share_calls(shared.clone());
            sim
        })
        .collect();
    let [a, b] = <[Sim; 2]>::try_from(shards).unwrap_or_else(|_| unreachable!("two shards"));
    (a, b, shared)
}

fn answered(sim: &mut Sim) -> Vec<u16> {
    sim.take_pbx().iter().map(status).collect()
}

#[test]
fn two_shards_calls_together_hit_the_trunk_and_global_max_calls() {
    let limited = CallLimits {
        max_calls: Some(MAX),
        max_cps: None,
    };
    for (global, trunk, label) in [
        (CallLimits::default(), limited, "trunk_max_calls"),
        (limited, CallLimits::default(), "max_calls"),
    ] {
        let (mut a, mut b, shared) = two_shards(global, trunk);
        // Alternate between the shards: each alone stays under the limit.
        let mut invites = Vec::new();
        for i in 0..MAX {
            let sim = if i % 2 == 0 { &mut a } else { &mut b };
            sim.deliver(pbx(), &invite(i));
            assert_eq!(answered(sim), [100], "call {i} admitted");
            invites.push((i % 2, sim.take_carrier().remove(0)));
        }
        assert_eq!(shared.total(), MAX);
        assert_eq!(shared.trunk("carrier"), MAX);
        assert_eq!((a.sbc.stats().calls, b.sbc.stats().calls), (2, 2));
        // Either shard now refuses: together they are full.
        for (n, sim) in [(10, &mut a), (11, &mut b)] {
            sim.deliver(pbx(), &invite(n));
            assert_eq!(answered(sim), [503], "{label}: over the shared limit");
            assert!(sim.take_carrier().is_empty());
            let limits: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event())
                .filter_map(|e| match e {
                    Event::AdmissionRejected { limit, .. } => Some(limit),
                    _ => None,
                })
                .collect();
            assert_eq!(limits, [label]);
        }
        assert_eq!(shared.total(), MAX, "a refusal holds no place");
        // A call of shard a ends: shard b may take its place.
        let (_, first) = &invites[0];
        a.deliver(
            carrier(),
            &carrier_response(first, 486, "Busy Here", Some("busy"), None),
        );
        a.take_pbx();
        assert_eq!(shared.total(), MAX - 1);
        b.deliver(pbx(), &invite(12));
        assert_eq!(
            answered(&mut b),
            [100],
            "{label}: the freed place is shared"
        );
        assert_eq!(shared.total(), MAX);
        assert_eq!(shared.trunk("carrier"), MAX);
    }
}

#[test]
fn a_reload_keeps_the_shared_counts_by_trunk_name() {
    let limited = CallLimits {
        max_calls: Some(2),
        max_cps: None,
    };
    let (mut a, mut b, shared) = two_shards(CallLimits::default(), limited);
    a.deliver(pbx(), &invite(0));
    b.deliver(pbx(), &invite(1));
    assert_eq!(shared.trunk("carrier"), 2);
    // Shard a reloads (the same trunk, a new list): its call stays counted once.
    let mut cfg = config();
    cfg.trunks[0].limits = limited;
    a.sbc.set_config(cfg);
    assert_eq!(shared.trunk("carrier"), 2);
    assert_eq!(shared.total(), 2);
    a.take_pbx();
    a.deliver(pbx(), &invite(2));
    assert_eq!(answered(&mut a), [503]);
}

#[test]
fn two_shards_share_the_calls_per_second_of_a_trunk_and_of_the_sbc() {
    let two_per_s = CallLimits {
        max_calls: None,
        max_cps: Some(2),
    };
    for (global, trunk, label) in [
        (CallLimits::default(), two_per_s, "trunk_max_cps"),
        (two_per_s, CallLimits::default(), "max_cps"),
    ] {
        let (mut a, mut b, _) = two_shards(global, trunk);
        b.now = a.now;
        // A burst of one second's worth over both shards, then refusals on either.
        a.deliver(pbx(), &invite(0));
        b.deliver(pbx(), &invite(1));
        assert_eq!((answered(&mut a), answered(&mut b)), (vec![100], vec![100]));
        for (n, sim) in [(2, &mut a), (3, &mut b)] {
            sim.deliver(pbx(), &invite(n));
            assert_eq!(answered(sim), [503], "{label}: over the shared rate");
            let refused: Vec<_> = std::iter::from_fn(|| sim.sbc.poll_event())
                .filter_map(|e| match e {
                    Event::AdmissionRejected { limit, .. } => Some(limit),
                    _ => None,
                })
                .collect();
            assert_eq!(refused, [label]);
        }
        // Half a second later one token is back, for whichever shard asks first.
        a.advance(Duration::from_millis(500));
        b.advance(Duration::from_millis(500));
        a.take_pbx();
        b.take_pbx();
        b.deliver(pbx(), &invite(4));
        assert_eq!(answered(&mut b), [100], "{label}");
        a.deliver(pbx(), &invite(5));
        assert_eq!(answered(&mut a), [503], "{label}");
    }
}

#[test]
fn a_cluster_grant_caps_the_trunk_below_its_max_calls() {
    let limited = CallLimits {
        max_calls: Some(MAX),
        max_cps: None,
    };
    let (mut a, mut b, shared) = two_shards(CallLimits::default(), limited);
    assert_eq!(
        shared.trunk_shares(),
        [TrunkShare {
            name: "carrier".into(),
            calls: 0,
            max_calls: Some(MAX),
            max_cps: None,
            cps_left: None,
        }]
    );
    // The other nodes hold all but two places: this node takes two, whichever shard.
    shared.set_trunk_cap("carrier", Some(2));
    a.deliver(pbx(), &invite(0));
    assert_eq!(answered(&mut a), [100]);
    b.deliver(pbx(), &invite(1));
    assert_eq!(answered(&mut b), [100]);
    a.deliver(pbx(), &invite(2));
    assert_eq!(answered(&mut a), [503], "over the grant, under max_calls");
    assert_eq!(shared.trunk_shares()[0].calls, 2);
    // A bigger grant (or none: Redis gone, the node's own limit) admits again.
    shared.set_trunk_cap("carrier", Some(3));
    b.deliver(pbx(), &invite(3));
    assert_eq!(answered(&mut b), [100]);
    shared.set_trunk_cap("carrier", None);
    a.deliver(pbx(), &invite(4));
    assert_eq!(answered(&mut a), [100]);
    b.deliver(pbx(), &invite(5));
    assert_eq!(answered(&mut b), [503], "max_calls still holds");
}

#[test]
fn a_cluster_rate_grant_limits_new_calls_until_topped_up() {
    let (mut a, mut b, shared) = two_shards(CallLimits::default(), CallLimits::default());
    shared.set_trunk_cps_left("carrier", Some(2));
    a.deliver(pbx(), &invite(0));
    assert_eq!(answered(&mut a), [100]);
    b.deliver(pbx(), &invite(1));
    assert_eq!(answered(&mut b), [100]);
    a.deliver(pbx(), &invite(2));
    assert_eq!(
        answered(&mut a),
        [503],
        "this node's calls of the second are used up"
    );
    let limits: Vec<_> = std::iter::from_fn(|| a.sbc.poll_event())
        .filter_map(|e| match e {
            Event::AdmissionRejected { limit, .. } => Some(limit),
            _ => None,
        })
        .collect();
    assert_eq!(limits, ["trunk_max_cps"]);
    assert_eq!(
        shared.trunk("carrier"),
        2,
        "the refused call gave its place back"
    );
    shared.add_trunk_cps_left("carrier", 1);
    assert_eq!(shared.trunk_shares()[0].cps_left, Some(1));
    b.deliver(pbx(), &invite(3));
    assert_eq!(answered(&mut b), [100]);
    // No cluster rate (Redis gone and no local rate share): nothing more than the trunk's own.
    shared.set_trunk_cps_left("carrier", None);
    shared.add_trunk_cps_left("carrier", 5);
    assert_eq!(
        shared.trunk_shares()[0].cps_left,
        None,
        "adding to none stays none"
    );
    a.deliver(pbx(), &invite(4));
    assert_eq!(answered(&mut a), [100]);
}
