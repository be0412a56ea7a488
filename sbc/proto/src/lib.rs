//! Sans-I/O protocol core of the SBC.
//!
//! Everything in this crate is a plain state machine or a pure function: it never opens a
//! socket, never reads a clock and never spawns a task. The `sbc` runtime crate feeds it with
//! received bytes and the current time and performs the actions it returns. This keeps every
//! call flow testable deterministically with simulated time (the approach of quinn-proto and
//! str0m).
//!
//! # Errors versus bugs
//! Errors come from bad input and are returned as typed values; a panic means a broken internal
//! invariant. Input-derived data is never `unwrap`ped.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod media;
