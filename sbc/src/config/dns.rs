//! `[dns]`: the resolver used for trunk proxies given by name (RFC 3263).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[dns]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Name servers (`ip:port`) asked, in order; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Shortest time between two lookups of one name, seconds: records with a shorter TTL
    /// are re-resolved this often, and a failed lookup is retried after it.
    pub refresh_s: u64,
    /// How long one query may take before the next attempt, milliseconds.
    pub timeout_ms: u64,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            refresh_s: 60,
            timeout_ms: 2_000,
        }
    }
}
