//! The SBC runtime: configuration, transports, media relay (XDP and userspace), admin API.
//!
//! The protocol logic lives in the sans-I/O crate [`sbc_proto`]; this crate does the I/O.

pub mod admin;
pub mod cdr;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod entropy;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod signaling;
pub mod state;
pub mod sys;
pub mod trace;
pub mod transport;

pub use sbc_proto as proto;
