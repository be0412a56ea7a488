//! `[state]`: answered calls persisted in Redis so a restarted SBC continues them (issue 19,
//! `sbc/src/state/`, docs/scaling.md). Absent: no persistence.

use serde::{Deserialize, Serialize};

use super::Password;

/// `[state]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// `redis://[user:password@]HOST:PORT/DB` or `unix:///path/redis.sock?db=N`.
    pub redis: Password,
    /// This node's name: its records live under `sbc:<node>:call:<key>`. Two SBCs must never
    /// share a name (each would restore, and hang up, the other's calls).
    pub node: String,
    /// Seconds a record outlives its last write or refresh (live records are refreshed every
    /// third of it; a node that never comes back leaves nothing behind for longer).
    #[serde(default = "State::default_ttl_s")]
    pub ttl_s: u64,
    /// Writes waiting for Redis; when full, new writes are dropped and counted
    /// (`sbc_state_writes_dropped_total`) and a full rewrite follows — signaling never waits.
    #[serde(default = "State::default_queue")]
    pub queue: usize,
    /// Most milliseconds one Redis command may take before it counts as failed.
    #[serde(default = "State::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most seconds the start-up may spend loading this node's records before it gives up
    /// (the calls are then not restored).
    #[serde(default = "State::default_load_timeout_s")]
    pub load_timeout_s: u64,
    /// The other node of an active/standby pair: on takeover (`POST /api/v1/state/takeover`,
    /// called by keepalived when this node gets the virtual address) its records move to this
    /// node and its calls are restored here. `None`: no pair.
    #[serde(default)]
    pub peer: Option<String>,
    /// Seconds the registration lease of a pair lasts without renewal (renewed every third
    /// of it): after a crash of the registering node, the other registers at most this late.
    #[serde(default = "State::default_lease_s")]
    pub lease_s: u64,
    /// A secret `POST /api/v1/state/takeover` must carry in `X-Takeover-Token` besides the
    /// admin token (keepalived's notify has it; an admin token alone cannot move a live
    /// node's calls). `None`: the admin token suffices.
    #[serde(default)]
    pub takeover_token: Option<Password>,
    /// Milliseconds a pair node's heartbeat (`sbc:alive:<node>`, renewed every quarter of
    /// it) lives: a takeover waits at most this long for a peer with calls to go silent and
    /// is refused (409) if it does not, unless forced (`?force=true`).
    #[serde(default = "State::default_peer_alive_ms")]
    pub peer_alive_ms: u64,
    /// `[state.cluster]`: trunk `max_calls` counted with the other active nodes on this
    /// Redis. `None`: this node's limits are its own.
    #[serde(default)]
    pub cluster: Option<super::Cluster>,
}

impl State {
    const fn default_ttl_s() -> u64 {
        300
    }
    const fn default_queue() -> usize {
        10_000
    }
    const fn default_timeout_ms() -> u64 {
        500
    }
    const fn default_load_timeout_s() -> u64 {
        5
    }
    const fn default_lease_s() -> u64 {
        15
    }
    const fn default_peer_alive_ms() -> u64 {
        1000
    }

    /// `(key path, reason)` for every value out of range.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: &str| out.push((format!("state.{k}"), m.to_owned()));
        if redis::Client::open(self.redis.0.as_str()).is_err() {
            bad("redis", "not a redis:// or unix:// URL");
        }
        if !node_name_ok(&self.node) {
            bad("node", "must be 1-64 characters of A-Z a-z 0-9 - _ .");
        }
        if let Some(peer) = &self.peer {
            if !node_name_ok(peer) {
                bad("peer", "must be 1-64 characters of A-Z a-z 0-9 - _ .");
            } else if *peer == self.node {
                bad(
                    "peer",
                    "must differ from node (a node cannot take over its own calls)",
                );
            }
        }
        if !(30..=86_400).contains(&self.ttl_s) {
            bad("ttl_s", "must be 30-86400");
        }
        if !(1..=1_000_000).contains(&self.queue) {
            bad("queue", "must be 1-1000000");
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            bad("timeout_ms", "must be 10-60000");
        }
        if !(1..=300).contains(&self.load_timeout_s) {
            bad("load_timeout_s", "must be 1-300");
        }
        if !(3..=3600).contains(&self.lease_s) {
            bad("lease_s", "must be 3-3600");
        }
        if let Some(t) = &self.takeover_token {
            if t.0.len() < 16 || t.0.bytes().any(|b| !b.is_ascii_graphic()) {
                bad(
                    "takeover_token",
                    "must be at least 16 printable characters without spaces",
                );
            } else if self.peer.is_none() {
                bad("takeover_token", "needs peer (only a pair node takes over)");
            }
        }
        if !(200..=10_000).contains(&self.peer_alive_ms) {
            bad("peer_alive_ms", "must be 200-10000");
        }
        if let Some(c) = &self.cluster {
            out.extend(c.problems());
        }
        out
    }
}

/// A node name fits a Redis key segment and a log line.
fn node_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
