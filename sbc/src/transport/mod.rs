//! SIP transports (RFC 3261 §18): UDP, TCP and TLS on both sides of the SBC.
//!
//! The signaling core sees two things:
//! - inbound: every parsed message arrives as an [`Inbound`] on the `mpsc` channel given to
//!   [`Transport::start`], with the peer's observed source address and, on streams, the
//!   connection it came in on;
//! - outbound: [`Transport::send`] on a cloneable [`Transport`] handle, which never blocks.
//!
//! Everything else stays here: sockets and buffers, stream framing and CRLF keep-alives
//! (RFC 5626), connection reuse (responses on the incoming connection, requests on an open
//! connection to the peer), bounded queues and connection counts, timeouts against idle and
//! slowloris peers, TLS with certificate reload, and stateless error responses to malformed
//! requests (RFC 3261 §8.2.6 with RFC 3581 `received`/`rport`). Bad input is counted in
//! `sbc_sip_dropped_total` (see [`DropReason`]) and logged at debug level only.

mod admission;
mod connections;
mod counters;
mod drop_reason;
mod error;
mod handle;
mod inbound;
mod reject;
mod settings;
mod shared;
mod stream;
mod tcp;
mod tls;
mod udp;

#[cfg(test)]
mod tests;

pub use admission::{AdmissionPolicy, ReplyLimits};
pub use drop_reason::DropReason;
pub use error::{SendError, StartError};
pub use handle::Transport;
pub use inbound::Inbound;
pub use settings::{Listeners, StreamLimits, TlsSettings, TransportConfig, UdpSettings};
pub use tls::TlsError;
