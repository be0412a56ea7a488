//! Errors at the transport layer's boundaries: starting it, and sending through it.

use std::net::SocketAddr;

use sbc_proto::net::{Side, TransportKind};

use super::tls::TlsError;

/// Why a message could not be handed to the network. `send` never blocks; every error is
/// counted in `sbc_sip_send_errors_total` under [`SendError::reason`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The side has no socket for this transport and address family.
    #[error("no {transport:?} socket on the {side:?} side for {addr}")]
    NoSocket {
        /// Side asked for.
        side: Side,
        /// Transport asked for.
        transport: TransportKind,
        /// Destination.
        addr: SocketAddr,
    },
    /// The connection's write queue is full: the peer reads too slowly (backpressure).
    #[error("send queue of the connection to {0} is full")]
    QueueFull(SocketAddr),
    /// The UDP socket buffer is full; the datagram was not sent (transactions retransmit).
    #[error("UDP socket buffer full sending to {0}")]
    WouldBlock(SocketAddr),
    /// The total connection limit is reached, so no new connection can be opened.
    #[error("connection limit reached; cannot connect to {0}")]
    ConnectionLimit(SocketAddr),
    /// TLS toward this peer is impossible: TLS is not configured, or the name is invalid.
    #[error("TLS unavailable toward {addr}: {why}")]
    TlsUnavailable {
        /// Destination.
        addr: SocketAddr,
        /// Why.
        why: &'static str,
    },
    /// The message is larger than a UDP datagram can carry.
    #[error("message of {len} bytes is too large for UDP")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The transport layer is shut down.
    #[error("transport is shut down")]
    Shutdown,
    /// The operating system refused the send.
    #[error("sending to {addr}: {source}")]
    Io {
        /// Destination.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SendError {
    /// Bounded label value for metrics.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::NoSocket { .. } => "no_socket",
            Self::QueueFull(_) => "queue_full",
            Self::WouldBlock(_) => "would_block",
            Self::ConnectionLimit(_) => "connection_limit",
            Self::TlsUnavailable { .. } => "tls_unavailable",
            Self::TooLarge { .. } => "too_large",
            Self::Shutdown => "shutdown",
            Self::Io { .. } => "io",
        }
    }
}

/// Why the transport layer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind SIP {transport:?} on {addr} ({side:?} side): {source}")]
    Bind {
        /// Side.
        side: Side,
        /// Transport.
        transport: TransportKind,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS listeners are configured but TLS settings are missing.
    #[error("TLS listeners are configured but [tls] has no certificate")]
    TlsNotConfigured,
    /// The TLS certificates or keys could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}
