//! Two signaling shards' tables over one relay range (`share.rs`): they never hand out the
//! same port, statistics slot or session id, each port and id names its owner, and a trunk's
//! port quota holds for both together.

use std::collections::HashSet;

use super::tests::{drain, installs, peers, policy, settings};
use super::*;
use crate::media::share::{owner_of_port, owner_of_session};

fn pair() -> [MediaTable; 2] {
    let whole = settings();
    let slots = whole.fast_path_mappings();
    let quotas = SharedQuotas::default();
    [0, 1].map(|k| {
        let share = MediaShare::new(k, 2).expect("share");
        let rng = Rng::from_test_seed(u64::from(k) + 7);
        let mut p = policy();
        // No quota in the way of exhausting the ports.
        if let Some(t) = p.trunks.get_mut("carrier") {
            t.max_ports = Some(usize::MAX);
        }
        let mut t = MediaTable::for_share(&whole, p, (true, slots), rng, (share, quotas.clone()));
        // Socketless streams: their awaiting mappings take slots at the offer.
        t.set_kernel_latch(true);
        t
    })
}

fn offer(t: &mut MediaTable, now: Instant) -> Result<Allocation, MediaError> {
    t.allocate(
        now,
        Side::Inside,
        &[StreamDesc::new("10.0.0.5".parse().expect("ip"), 4000)],
        &peers(),
    )
}

#[test]
fn two_shards_tables_never_hand_out_the_same_port_slot_or_session() {
    let now = crate::media::test_origin();
    let whole = settings();
    let mut tables = pair();
    let mut ports = HashSet::new();
    // Slot → the relay endpoint whose mapping counts into it (an update names it again).
    let mut slots = std::collections::HashMap::new();
    let mut sessions = HashSet::new();
    let mut calls = [0usize; 2];
    for (k, t) in tables.iter_mut().enumerate() {
        while let Ok(a) = offer(t, now) {
            calls[k] += 1;
            assert!(sessions.insert(a.session), "session {} twice", a.session);
            assert_eq!(usize::from(owner_of_session(a.session, 2)), k);
            for e in [a.streams[0].inside, a.streams[0].outside] {
                assert!(
                    ports.insert((e.addr, e.rtp_port)),
                    "port {} twice",
                    e.rtp_port
                );
                for port in [e.rtp_port, e.rtp_port + 1] {
                    assert_eq!(owner_of_port(&whole, 2, port).map(usize::from), Some(k));
                }
            }
            let answer = StreamDesc::new("198.51.100.1".parse().expect("ip"), 5000);
            t.commit(now, a.session, Side::Outside, &[answer])
                .expect("answer");
            for m in installs(&drain(t)) {
                let owner = *slots.entry(m.slot).or_insert(m.ingress);
                assert_eq!(owner, m.ingress, "slot {} given to two mappings", m.slot);
            }
        }
        assert_eq!(
            offer(t, now).map(|a| a.session),
            Err(MediaError::PortsExhausted(Side::Inside)),
            "shard {k} ends out of its own ports"
        );
    }
    // 50 pairs per address: 25 calls each (one pair per side and call).
    assert_eq!(calls, [25, 25]);
    assert!(!slots.is_empty(), "the fast path was asked for");
}

#[test]
fn a_trunk_port_quota_holds_for_both_shards_together() {
    let now = crate::media::test_origin();
    let whole = settings();
    let slots = whole.fast_path_mappings();
    let quotas = SharedQuotas::default();
    // `policy()`: the carrier may hold 8 ports, 4 one-stream calls (RTP and RTCP each).
    let mut tables = [0u16, 1].map(|k| {
        let share = MediaShare::new(k, 2).expect("share");
        let rng = Rng::from_test_seed(u64::from(k));
        MediaTable::for_share(
            &whole,
            policy(),
            (true, slots),
            rng,
            (share, quotas.clone()),
        )
    });
    let first = [
        offer(&mut tables[0], now).expect("1"),
        offer(&mut tables[1], now).expect("2"),
        offer(&mut tables[0], now).expect("3"),
        offer(&mut tables[1], now).expect("4"),
    ];
    for t in &mut tables {
        assert_eq!(
            offer(t, now).map(|a| a.session),
            Err(MediaError::QuotaExhausted("carrier".into())),
            "the fifth call is over the quota on either shard"
        );
    }
    tables[0].release(first[0].session);
    let fifth = offer(&mut tables[1], now).expect("a place the other shard freed");
    assert_eq!(quotas.held("carrier"), 8);
    for (t, a) in [(0, &first[2]), (1, &first[1]), (1, &first[3])] {
        tables[t].release(a.session);
    }
    assert_eq!(
        quotas.held("carrier"),
        2,
        "the call on shard 1 still holds its two"
    );
    tables[1].release(fifth.session);
    assert_eq!(quotas.held("carrier"), 0);
    for t in &mut tables {
        drain(t);
        assert!(
            t.holds_nothing(),
            "ports, slots, quota and sessions all back"
        );
    }
}
