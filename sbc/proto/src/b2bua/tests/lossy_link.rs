//! Calls complete over links that lose, duplicate and reorder datagrams both ways: every
//! retransmission path of the SBC is exercised (Timer A/E resends, absorbed request
//! retransmissions, 2xx retransmitted until the ACK, the ACK resent for a retransmitted 2xx),
//! and nothing is left behind once the timers run out.

use super::{
    agents::Outcome,
    net::{Impairment, Net},
    *,
};

/// 10 % loss and 5 % duplicates on every link, 10 ms ± 20 ms one way (so datagrams overtake
/// each other).
const LOSSY: Impairment = Impairment {
    loss: 100,
    duplicate: 50,
    latency: Duration::from_millis(10),
    jitter: Duration::from_millis(20),
};

fn run(seed: u64, imp: Impairment, calls: usize) -> Net {
    let mut net = Net::new(seed, imp, calls, Duration::from_millis(150));
    let until = net.now + Duration::from_secs(120);
    net.drive_bounded(until, 200_000)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    net
}

#[test]
fn calls_complete_with_ten_percent_loss_both_ways_across_seeds() {
    for seed in 1..=8 {
        let mut net = run(seed, LOSSY, 15);
        assert!(net.pbx.done(), "seed {seed}: calls still open");
        let outcomes = net.pbx.outcomes();
        assert!(
            outcomes.iter().all(|o| *o == Some(Outcome::Completed)),
            "seed {seed}: every call answered and hung up: {outcomes:?}"
        );
        assert_eq!(
            net.carrier.ended(),
            15,
            "seed {seed}: the carrier saw ACK and BYE"
        );
        assert!(
            net.dropped() > 0 && net.duplicated() > 0,
            "seed {seed}: the links impaired"
        );
        // The leak check every simulation ends with: all timers run out, nothing left.
        let until = net.now + Duration::from_secs(300);
        net.drive_bounded(until, 200_000)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(net.sbc.stats(), Stats::default(), "seed {seed}: state left");
        assert!(net.media.holds_nothing(), "seed {seed}: media left");
    }
}

#[test]
fn a_clean_link_needs_no_retransmission() {
    let clean = Impairment {
        loss: 0,
        duplicate: 0,
        latency: Duration::from_millis(10),
        jitter: Duration::ZERO,
    };
    let net = run(1, clean, 15);
    assert!(
        net.pbx
            .outcomes()
            .iter()
            .all(|o| *o == Some(Outcome::Completed))
    );
    assert_eq!(net.sbc.counters().retransmissions_sent, 0);
    assert_eq!(net.sbc.counters().retransmissions_received, 0);
}
