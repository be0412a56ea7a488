//! What the media table needs from the configuration: the relay addresses, the port range, the
//! latching rules, the stream limit and the media timeouts.

use std::{net::IpAddr, time::Duration};

use super::{Side, latch::Rules};

/// One side's relay address: bound locally, and written into SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideAddress {
    /// Address the relay sockets bind to (and XDP rewrites to).
    pub bind: IpAddr,
    /// Address put into SDP (differs from `bind` behind 1:1 NAT).
    pub advertised: IpAddr,
}

/// The relay's settings (`[inside]`, `[outside]`, `[media]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Inside relay address.
    pub inside: SideAddress,
    /// Outside relay address.
    pub outside: SideAddress,
    /// Lowest relay port.
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Strict-source latching.
    pub strict_source: bool,
    /// How long after an answer or re-offer another allowed source may take a latch.
    pub relatch_window: Duration,
    /// Most `m=` lines in one offer (488 beyond).
    pub max_streams: usize,
    /// Media timeout; `None` disables it.
    pub timeout: Option<Duration>,
    /// Media timeout while on hold; `None` disables it.
    pub hold_timeout: Option<Duration>,
    /// Most DTMF digits waiting per stream and leg for generation (`[media] dtmf_queue`).
    pub dtmf_queue: usize,
}

impl RelaySettings {
    /// The latching rules in force.
    pub fn rules(&self) -> Rules {
        Rules {
            strict: self.strict_source,
            relatch_window: self.relatch_window,
        }
    }

    /// The relay address of `leg`'s side.
    pub fn side(&self, leg: Side) -> SideAddress {
        match leg {
            Side::Inside => self.inside,
            Side::Outside => self.outside,
        }
    }

    /// Fast-path mappings the port range can ever need: one per relay port (RTP and RTCP, each
    /// direction's ingress) per media address. The XDP maps and their statistics slots are
    /// sized to this, so a socketless stream can never find its ports but no mapping slot
    /// (which would leave it with neither a socket nor a kernel path).
    pub fn fast_path_mappings(&self) -> u32 {
        let first = u32::from(self.port_min) + u32::from(self.port_min % 2);
        let max = u32::from(self.port_max);
        // Pairs (p, p + 1) with p even, p >= first, p + 1 <= max: two mappings each.
        let pairs = if max > first {
            (max - first).div_ceil(2)
        } else {
            0
        };
        let addresses = if self.outside.bind != self.inside.bind {
            2
        } else {
            1
        };
        pairs * 2 * addresses
    }

    /// Index of `leg`'s port pool: both sides share one when they bind the same address (as on
    /// the loopback default), since a port can only be bound once per address.
    pub fn pool(&self, leg: Side) -> usize {
        if leg == Side::Outside && self.outside.bind != self.inside.bind {
            1
        } else {
            0
        }
    }
}
