use std::{net::Ipv4Addr, time::Duration};

use super::*;
use crate::media::SideAddress;

fn whole(port_min: u16, port_max: u16, addresses: u8) -> RelaySettings {
    let addr = |i: u8| SideAddress {
        bind: Ipv4Addr::new(198, 18, 0, i).into(),
        advertised: Ipv4Addr::new(198, 18, 0, i).into(),
    };
    let outside = (1..=addresses).map(addr).collect();
    RelaySettings {
        inside: addr(100).into(),
        outside: crate::media::SideAddresses::new(outside).expect("an address"),
        port_min,
        port_max,
        strict_source: true,
        relatch_window: Duration::from_secs(2),
        max_streams: 4,
        dtmf_queue: 4,
        timeout: None,
        hold_timeout: None,
    }
}

#[test]
fn every_pair_of_the_range_has_one_owner_and_the_owners_range_holds_it() {
    for (min, max) in [
        (20_000, 20_099),
        (20_001, 20_100),
        (6_000, 6_009),
        (10_000, 10_003),
    ] {
        let w = whole(min, max, 1);
        for n in 1..=7u16 {
            let shares: Vec<MediaShare> = (0..n).filter_map(|k| MediaShare::new(k, n)).collect();
            let ranges: Vec<RelaySettings> = shares.iter().map(|s| s.ports(&w)).collect();
            let total: u32 = ranges.iter().map(RelaySettings::pairs_per_address).sum();
            assert_eq!(
                total,
                w.pairs_per_address(),
                "{min}-{max} over {n}: every pair once"
            );
            for port in min.saturating_sub(2)..=max.saturating_add(2) {
                let owner = owner_of_port(&w, n, port);
                let first = min + min % 2;
                let in_range = port >= first && port <= max && (port | 1) <= max;
                assert_eq!(owner.is_some(), in_range, "{min}-{max}/{n}: port {port}");
                if let Some(k) = owner {
                    let r = &ranges[usize::from(k)];
                    assert!(
                        r.port_min <= port && port <= r.port_max,
                        "{min}-{max}/{n}: port {port} owned by {k}, whose range is {}-{}",
                        r.port_min,
                        r.port_max
                    );
                }
            }
        }
    }
}

#[test]
fn the_slot_ranges_never_meet_and_each_holds_its_shards_mappings() {
    let w = whole(20_000, 20_099, 3);
    let total = w.fast_path_mappings();
    for n in 1..=5u16 {
        let mut end = 0;
        for k in 0..n {
            let share = MediaShare::new(k, n).expect("share");
            let slots = share.slots(&w, total);
            assert_eq!(slots.start, end, "contiguous, disjoint");
            end = slots.end;
            let own = share.ports(&w).fast_path_mappings();
            assert_eq!(slots.len(), own as usize, "{k}/{n}");
        }
        assert_eq!(end, total, "every slot has an owner");
    }
}

#[test]
fn session_ids_name_their_shard_and_one_shard_keeps_plain_ids() {
    assert_eq!(MediaShare::WHOLE.first_session(), 1);
    for n in [2u16, 3, 64] {
        for k in 0..n {
            let first = MediaShare::new(k, n).expect("share").first_session();
            assert_eq!(owner_of_session(SessionId(first), n), k);
            assert_eq!(owner_of_session(SessionId(first + 1_000_000), n), k);
        }
    }
    assert_eq!(owner_of_session(SessionId(7), 1), 0);
    assert!(MediaShare::new(2, 2).is_none());
}

#[test]
fn the_shared_ledger_holds_one_limit_for_all_takers() {
    let all = SharedQuotas::default();
    // Two tables find the same count by the trunk's name.
    let (a, b) = (
        TrunkPorts::new(all.counter("t")),
        TrunkPorts::new(all.counter("t")),
    );
    assert!(a.take(4, 6));
    assert!(!b.take(4, 6), "8 > 6 over both");
    assert!(b.take(2, 6));
    a.give(4);
    assert!(b.take(4, 6));
    assert_eq!(all.held("t"), 6);
    assert_eq!(all.held("other"), 0, "per trunk");
}

#[test]
fn racing_takers_never_pass_the_limit_together() {
    let all = SharedQuotas::default();
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = TrunkPorts::new(all.counter("t"));
                s.spawn(move || (0..1_000).filter(|_| t.take(2, 1_000)).count())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("taker")).sum()
    });
    assert_eq!(taken, 500, "exactly the limit's worth of takes succeeded");
    assert_eq!(all.held("t"), 1_000);
}
