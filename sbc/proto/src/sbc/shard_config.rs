//! The core configuration of one signaling shard among several: the budgets and caps each
//! shard holds its share of, and which shard runs the trunks' registrations and health checks.
//! Routing messages to shards is `crate::shard`'s; this is what each shard's `Sbc` is given.

use crate::shard::ShardId;

/// The guard's budgets for one of `count` shards: new requests spread evenly over the shards,
/// so each gets its share of a source's rate and burst (rounded up), and a source over its
/// budget is banned on every shard (the driver mirrors the ban). Ban length and table sizes
/// are the same.
pub fn guard_share(cfg: crate::protect::GuardConfig, count: u16) -> crate::protect::GuardConfig {
    let n = u32::from(count.max(1));
    let share = |v: u32| v.div_ceil(n);
    crate::protect::GuardConfig {
        rate: share(cfg.rate),
        burst: share(cfg.burst),
        peer_rate: share(cfg.peer_rate),
        peer_burst: share(cfg.peer_burst),
        ..cfg
    }
}

/// The state caps of one of `count` shards: each shard holds its share of the transactions
/// and stored bytes, so the SBC as a whole holds no more than `[limits] max_transactions` and
/// `max_stored_mib` say, as with one shard (new calls spread evenly; at least 1 each).
pub fn caps_share(caps: crate::b2bua::Caps, count: u16) -> crate::b2bua::Caps {
    let n = usize::from(count.max(1));
    crate::b2bua::Caps {
        max_transactions: (caps.max_transactions / n).max(1),
        max_stored_bytes: (caps.max_stored_bytes / n).max(1),
    }
}

/// The core configuration of `shard` among `count`: the guard's budgets and the state caps
/// split evenly ([`guard_share`], [`caps_share`]), and the trunks' registrations and OPTIONS checks on shard 0 only (one
/// binding per trunk at the registrar; the other shards follow its health verdicts through
/// `Sbc::apply_health`). Call and CPS limits are not split: the shards count and rate-limit
/// their calls together (`b2bua::SharedCalls`).
pub fn config_for(
    mut cfg: crate::sbc::SbcConfig,
    shard: ShardId,
    count: u16,
) -> crate::sbc::SbcConfig {
    if count <= 1 {
        return cfg;
    }
    cfg.guard = guard_share(cfg.guard, count);
    cfg.b2bua.caps = caps_share(cfg.b2bua.caps, count);
    if shard.index() != 0 {
        cfg.registrations.clear();
        cfg.health.clear();
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_gets_its_share_of_the_source_budgets() {
        let cfg = crate::protect::GuardConfig::default();
        let half = guard_share(cfg, 2);
        assert_eq!((half.rate, half.burst), (25, 50));
        assert_eq!((half.peer_rate, half.peer_burst), (1_000, 2_000));
        assert_eq!(half.ban, cfg.ban);
        assert_eq!(guard_share(cfg, 1), cfg);
        // Rounded up, and off stays off.
        let odd = crate::protect::GuardConfig {
            rate: 5,
            peer_rate: 0,
            ..cfg
        };
        assert_eq!(
            (guard_share(odd, 4).rate, guard_share(odd, 4).peer_rate),
            (2, 0)
        );
    }

    #[test]
    fn each_shard_holds_its_share_of_the_state_caps() {
        let caps = crate::b2bua::Caps::default();
        let half = caps_share(caps, 2);
        assert_eq!(half.max_transactions, 10_000);
        assert_eq!(half.max_stored_bytes, 32 << 20);
        assert_eq!(caps_share(caps, 1), caps);
        let tiny = crate::b2bua::Caps {
            max_transactions: 1,
            max_stored_bytes: 3,
        };
        assert_eq!(caps_share(tiny, 4).max_transactions, 1, "never 0");
    }
}
