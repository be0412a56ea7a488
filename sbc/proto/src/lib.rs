//! Sans-I/O protocol core of the SBC.
//!
//! Everything in this crate is a plain state machine or a pure function: it never opens a
//! socket, never reads a clock and never spawns a task. The `sbc` runtime crate feeds it with
//! received bytes and the current time and performs the actions it returns. This keeps every
//! call flow testable deterministically with simulated time (the approach of quinn-proto and
//! str0m).
//!
//! # Modules
//! - [`sip`]: the SIP message layer: a zero-copy parser with typed header views, URIs,
//!   an editor/printer that copies untouched bytes verbatim, and a stream framer. Malformed
//!   input yields a [`sip::ParseError`] whose [`reaction`](sip::ParseError::reaction) says
//!   whether to answer (and with which status) or to drop. See `docs/sip-parser.md`.
//! - [`sdp`]: SDP as lines with typed accessors and an editor for offer/answer rewrites.
//! - [`dtmf`]: RFC 4733 telephone events and DTMF in SIP INFO, for interworking the two.
//! - [`sbc`]: the whole SBC as one state machine ([`sbc::Sbc`]): the receive-path policy
//!   (denylist, bans, ACL, User-Agent), the B2BUA, registrations and health checks behind one
//!   `handle_*` / `poll_*` surface. Its module doc states the drive loop. See
//!   `docs/architecture.md`.
//! - [`srtp`]: SRTP/SRTCP crypto contexts (RFC 3711, RFC 7714) for per-leg media encryption.
//!
//! # Errors versus bugs
//! Errors come from bad input and are returned as typed values; a panic means a broken internal
//! invariant. Input-derived data is never `unwrap`ped.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod b2bua;
pub mod dtmf;
pub mod health;
pub mod hep;
pub mod ids;
pub mod limit;
pub mod media;
pub mod net;
pub mod overload;
pub mod protect;
pub mod register;
pub mod routing;
pub mod rtcp;
pub mod sbc;
pub mod sdp;
pub mod shard;
pub mod sip;
pub mod srtp;
pub(crate) mod text;
pub mod transaction;

#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod testdata;

/// The origin of simulated time in unit tests: the one clock read, so that `now` values are
/// real `Instant`s; everything after it is simulated.
#[cfg(test)]
pub(crate) fn test_origin() -> std::time::Instant {
    #[allow(
        clippy::disallowed_methods,
        reason = "test origin only; time is simulated"
    )]
    std::time::Instant::now()
}
