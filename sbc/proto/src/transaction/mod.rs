//! The RFC 3261 §17 transaction layer, sans-I/O.
//!
//! Four state machines — [`InviteClient`], [`NonInviteClient`], [`InviteServer`],
//! [`NonInviteServer`] — each fed with the current time, matched messages and timer expiries,
//! and drained through `poll_transmit` (bytes to send to the peer), `poll_event` (what the TU
//! must know) and `poll_timeout` (when to call `handle_timeout` next). They never read a clock:
//! tests run Timer B's 32 s in microseconds.
//!
//! Drain rule: after every `handle_*` or `send_*` call, drain `poll_transmit` and `poll_event`
//! until `None`, then re-read `poll_timeout`.
//!
//! Retransmission happens only on unreliable transports; on reliable ones the wait timers
//! (D, I, J, K) are zero. The INVITE machines include RFC 6026's Accepted state, so 2xx
//! responses and their ACKs are the TU's (the B2BUA's) business end to end (§13.3.1.4).

mod client_invite;
mod client_non_invite;
mod outbox;
mod server_invite;
mod server_non_invite;
mod timer;

#[cfg(test)]
mod tests;

pub use client_invite::{InviteClient, State as InviteClientState};
pub use client_non_invite::{NonInviteClient, State as NonInviteClientState};
pub use server_invite::{Absorbed, InviteServer, State as InviteServerState};
pub use server_non_invite::{NonInviteServer, State as NonInviteServerState};
pub(crate) use timer::Timings;
pub use timer::{Timer, TimerConfig, TimerTable};

/// What a transaction tells its TU, besides passing responses up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// A timer ran out: B or F (no response: the TU answers 408), C (INVITE unanswered for
    /// too long: the TU cancels), H (no ACK for a final response).
    TimedOut(Timer),
    /// The transport reported a failure (RFC 3261 §17.1.4, §17.2.4).
    TransportError,
    /// The transaction is over and can be removed.
    Terminated,
}
