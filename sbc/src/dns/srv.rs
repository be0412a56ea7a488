//! RFC 2782 target selection: SRV records in priority order, and within one priority in a
//! weighted random order, so that load spreads over the targets by their weights.

use sbc_proto::b2bua::Rng;

/// One SRV record's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Share of the load among targets of equal priority.
    pub weight: u16,
    /// Port of the service at the target.
    pub port: u16,
    /// Host name of the target (no trailing dot).
    pub target: String,
}

/// The records in the order to try them (RFC 2782, "Usage rules"): by ascending priority;
/// within a priority repeatedly pick one at random with probability proportional to its
/// weight (zero-weight records first in the running sum, so they have a small chance).
pub fn order(mut records: Vec<SrvRecord>, rng: &mut Rng) -> Vec<SrvRecord> {
    // Stable sort: zero weights before the others within a priority, as the RFC asks.
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(len);
        let mut group = group.to_vec();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = rng.next_u64() % (total + 1);
            let mut sum = 0u64;
            let index = group
                .iter()
                .position(|r| {
                    sum += u64::from(r.weight);
                    sum >= pick
                })
                // The running sum reaches `total` >= `pick` at the last record at the latest.
                .unwrap_or(group.len() - 1);
            out.push(group.remove(index));
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn lower_priority_always_first() {
        let mut rng = Rng::from_test_seed(7);
        for _ in 0..100 {
            let o = order(
                vec![
                    rec(20, 100, "c"),
                    rec(10, 1, "a"),
                    rec(30, 0, "d"),
                    rec(10, 1, "b"),
                ],
                &mut rng,
            );
            let names: Vec<_> = o.iter().map(|r| r.target.as_str()).collect();
            assert!(
                names[..2].contains(&"a") && names[..2].contains(&"b"),
                "{names:?}"
            );
            assert_eq!(&names[2..], ["c", "d"]);
        }
    }

    #[test]
    fn weights_share_the_first_place() {
        // Weights 60/30/10 in one priority: with a seeded generator the first-place counts
        // over 10,000 draws land close to the shares.
        let mut rng = Rng::from_test_seed(42);
        let mut first = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let o = order(
                vec![rec(1, 60, "a"), rec(1, 30, "b"), rec(1, 10, "c")],
                &mut rng,
            );
            *first.entry(o[0].target.clone()).or_insert(0u32) += 1;
            assert_eq!(o.len(), 3);
        }
        let share = |t: &str| f64::from(first.get(t).copied().unwrap_or(0)) / 10_000.0;
        assert!((share("a") - 0.6).abs() < 0.03, "{first:?}");
        assert!((share("b") - 0.3).abs() < 0.03, "{first:?}");
        assert!((share("c") - 0.1).abs() < 0.03, "{first:?}");
    }

    #[test]
    fn seeded_order_is_reproducible_and_zero_weights_rarely_win() {
        let records = vec![rec(5, 0, "zero"), rec(5, 100, "heavy"), rec(5, 50, "mid")];
        let a = order(records.clone(), &mut Rng::from_test_seed(3));
        let b = order(records.clone(), &mut Rng::from_test_seed(3));
        assert_eq!(a, b);
        let mut rng = Rng::from_test_seed(9);
        let zero_first = (0..1_000)
            .filter(|_| order(records.clone(), &mut rng)[0].target == "zero")
            .count();
        // Picked first only when the draw is exactly 0: about 1 in 151.
        assert!(zero_first < 30, "{zero_first}");
    }

    #[test]
    fn all_zero_weights_still_yield_every_record() {
        let o = order(
            vec![rec(1, 0, "a"), rec(1, 0, "b")],
            &mut Rng::from_test_seed(1),
        );
        assert_eq!(o.len(), 2);
        assert!(order(Vec::new(), &mut Rng::from_test_seed(1)).is_empty());
    }
}
