//! `[state.cluster]`: several active SBC nodes sharing one Redis count each trunk's
//! `max_calls` together (`sbc/src/state/cluster.rs`, docs/scaling.md). Absent: each node
//! enforces the trunk limits alone.

use serde::{Deserialize, Serialize};

/// `[state.cluster]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Milliseconds between two renewals of this node's grants (one Lua call per limited
    /// trunk, pipelined). Shorter: a node's unused places go to the others sooner.
    #[serde(default = "Cluster::default_sync_ms")]
    pub sync_ms: u64,
    /// Milliseconds a node's grant counts in Redis without renewal: a dead node's places are
    /// free again after this. The node itself stops trusting a grant it could not renew after
    /// half of it and falls back to `fallback_percent`.
    #[serde(default = "Cluster::default_grant_ttl_ms")]
    pub grant_ttl_ms: u64,
    /// Most places a node reserves above its calls in progress (taken by its next calls
    /// without asking Redis; the free places are split evenly among the live nodes first).
    #[serde(default = "Cluster::default_headroom")]
    pub headroom: u32,
    /// Percent of each trunk's `max_calls` a node admits on its own while Redis does not
    /// answer (its grant expired): set it to about 100 / number of nodes.
    #[serde(default = "Cluster::default_fallback_percent")]
    pub fallback_percent: u32,
    /// Most milliseconds one renewal may wait for Redis before it counts as failed.
    #[serde(default = "Cluster::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Share bans among the nodes (`sbc/src/state/bans.rs`): a source one node bans is
    /// banned on every node for the rest of its ban. Configured peers are never banned
    /// from another node's word.
    #[serde(default = "Cluster::default_share_bans")]
    pub share_bans: bool,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            sync_ms: Self::default_sync_ms(),
            grant_ttl_ms: Self::default_grant_ttl_ms(),
            headroom: Self::default_headroom(),
            fallback_percent: Self::default_fallback_percent(),
            timeout_ms: Self::default_timeout_ms(),
            share_bans: Self::default_share_bans(),
        }
    }
}

impl Cluster {
    const fn default_sync_ms() -> u64 {
        100
    }
    const fn default_grant_ttl_ms() -> u64 {
        3000
    }
    const fn default_headroom() -> u32 {
        2
    }
    const fn default_fallback_percent() -> u32 {
        50
    }
    const fn default_timeout_ms() -> u64 {
        200
    }
    const fn default_share_bans() -> bool {
        true
    }

    /// `(key path, reason)` for every value out of range.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: &str| out.push((format!("state.cluster.{k}"), m.to_owned()));
        if !(20..=5000).contains(&self.sync_ms) {
            bad("sync_ms", "must be 20-5000");
        }
        if !(200..=60_000).contains(&self.grant_ttl_ms) {
            bad("grant_ttl_ms", "must be 200-60000");
        } else if self.grant_ttl_ms < 4 * self.sync_ms {
            bad(
                "grant_ttl_ms",
                "must be at least 4 x sync_ms (a grant must survive a missed renewal)",
            );
        }
        if !(1..=1000).contains(&self.headroom) {
            bad("headroom", "must be 1-1000");
        }
        if !(1..=100).contains(&self.fallback_percent) {
            bad("fallback_percent", "must be 1-100");
        }
        if !(10..=5000).contains(&self.timeout_ms) {
            bad("timeout_ms", "must be 10-5000");
        } else if self.timeout_ms * 2 > self.grant_ttl_ms {
            bad(
                "timeout_ms",
                "must be at most half of grant_ttl_ms (a late answer must still be valid)",
            );
        }
        out
    }
}
