//! Outbound routes (called number → trunks) and inbound routes (DID → PBX target).

use super::NumberMatch;
use crate::{b2bua::Target, ids::Rng};

/// Calls from the PBX whose called number `matcher` selects use `trunks`, in order (or in a
/// weighted random order with `weights`); the next one is tried when a trunk fails (timeout,
/// 408, 5xx), is down, or is at its call admission limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    /// Name, for logs, metrics and the admin API.
    pub name: String,
    /// Which called numbers (as the PBX sent them) the route takes.
    pub matcher: NumberMatch,
    /// Trunk indices (positions in the trunk list), in order of preference.
    pub trunks: Vec<usize>,
    /// Relative weights, one per trunk: the order is drawn per call, a trunk coming first
    /// with probability weight / sum. None: the configured order.
    pub weights: Option<Vec<u32>>,
}

impl OutboundRoute {
    /// The order in which this call tries the route's trunks.
    pub fn order(&self, rng: &mut Rng) -> Vec<usize> {
        match &self.weights {
            Some(w) if w.len() == self.trunks.len() => weighted_order(&self.trunks, w, rng),
            _ => self.trunks.clone(),
        }
    }
}

/// Draws an order of `items` without replacement, each next item with probability
/// proportional to its weight among those left (RFC 2782's selection, repeated). Items with
/// weight 0 come last, in their given order.
pub fn weighted_order(items: &[usize], weights: &[u32], rng: &mut Rng) -> Vec<usize> {
    let mut left: Vec<(usize, u64)> = items
        .iter()
        .zip(weights)
        .map(|(i, w)| (*i, u64::from(*w)))
        .collect();
    let mut out = Vec::with_capacity(left.len());
    loop {
        let total: u64 = left.iter().map(|(_, w)| w).sum();
        if total == 0 {
            break;
        }
        let mut pick = rng.next_u64() % total;
        let pos = left
            .iter()
            .position(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        out.push(left.remove(pos).0);
    }
    out.extend(left.into_iter().map(|(i, _)| i));
    out
}

/// Calls from a carrier whose called number (after the trunk's inbound normalisation)
/// `matcher` selects go to `target` instead of the default PBX address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    /// Name, for logs and the admin API.
    pub name: String,
    /// Which DIDs the route takes.
    pub matcher: NumberMatch,
    /// Where the call goes.
    pub target: Target,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_order_follows_the_weights() {
        let mut rng = Rng::from_test_seed(7);
        let mut first = [0u32; 3];
        for _ in 0..10_000 {
            let o = weighted_order(&[0, 1, 2], &[70, 30, 0], &mut rng);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 2, "weight 0 comes last: {o:?}");
            first[o[0]] += 1;
        }
        assert_eq!(first[2], 0);
        // 70/30 within a generous margin (10,000 draws: σ ≈ 46).
        assert!((6_700..7_300).contains(&first[0]), "{first:?}");
    }

    #[test]
    fn unweighted_route_keeps_its_order() {
        let r = OutboundRoute {
            name: "r".into(),
            matcher: NumberMatch::Any,
            trunks: vec![2, 0, 1],
            weights: None,
        };
        assert_eq!(r.order(&mut Rng::from_test_seed(1)), vec![2, 0, 1]);
    }

    #[test]
    fn all_zero_weights_keep_the_given_order() {
        assert_eq!(
            weighted_order(&[4, 5], &[0, 0], &mut Rng::from_test_seed(3)),
            vec![4, 5]
        );
    }
}
