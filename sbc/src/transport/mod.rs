//! SIP transports. This first cut binds the configured listeners (so address conflicts are
//! start-up errors, not silent), receives with bounded buffers and counts what arrives; the
//! SIP stack that consumes the messages plugs in at [`Inbound`].

pub mod tcp;
pub mod udp;

use std::net::SocketAddr;

/// Which side of the SBC a socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Toward the PBX.
    Inside,
    /// Toward the carrier.
    Outside,
}

impl Side {
    /// Label value used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// A received SIP message (one datagram, or bytes read from a stream).
#[derive(Debug)]
pub struct Inbound<'a> {
    /// Side it arrived on.
    pub side: Side,
    /// Peer address.
    pub peer: SocketAddr,
    /// Local address it arrived at.
    pub local: SocketAddr,
    /// The bytes.
    pub data: &'a [u8],
}
