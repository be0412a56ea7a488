//! Network vocabulary shared by the sans-I/O core and the transports: which side, which
//! transport, which peer. No sockets here — only the values the core reasons about.

use std::{fmt, net::SocketAddr};

/// Which side of the SBC a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Toward the PBX (the LAN).
    Inside,
    /// Toward the carrier.
    Outside,
}

impl Side {
    /// Label used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }

    /// 0 inside, 1 outside: the index of per-side arrays.
    pub const fn index(self) -> usize {
        match self {
            Side::Inside => 0,
            Side::Outside => 1,
        }
    }

    /// The other side.
    pub const fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
}

/// A SIP transport protocol (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP: unreliable; transactions retransmit.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl TransportKind {
    /// Whether the transport is reliable (no retransmissions, zero wait timers).
    pub const fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// The Via transport token (`SIP/2.0/UDP`…).
    pub const fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }

    /// Lower-case name for metrics and `transport=` URI parameters.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }
}

/// Identifies one stream connection (TCP/TLS) inside the transport layer, so responses go back
/// on the connection the request came in on (RFC 3261 §18.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a message came from, or where it must go: side, transport, remote address, and the
/// stream connection when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Side of the SBC.
    pub side: Side,
    /// Transport protocol.
    pub transport: TransportKind,
    /// Remote address (for received messages: the observed source, which is what NAT
    /// traversal trusts — RFC 3581).
    pub addr: SocketAddr,
    /// The connection, for stream transports.
    pub conn: Option<ConnId>,
    /// The SBC's own (bound) address to send from, or that a received message arrived at;
    /// None: the side's first listener of the peer's address family.
    pub local: Option<SocketAddr>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.side.as_str(),
            self.transport.as_str(),
            self.addr
        )
    }
}
