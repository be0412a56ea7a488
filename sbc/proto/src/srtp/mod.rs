//! SRTP and SRTCP (RFC 3711) with the AES-GCM transforms of RFC 7714, as the media relay uses
//! them to terminate encrypted media per leg.
//!
//! Sans-I/O like the rest of the crate: a [`SrtpContext`] turns a packet in a caller-supplied
//! buffer into its protected or unprotected form in place, with no allocation per packet. The
//! primitives (AES, CTR, HMAC-SHA1, GCM) come from the RustCrypto crates; this module only
//! builds the SRTP constructions around them:
//! - [`suite`]: the three crypto suites the SBC supports and their sizes;
//! - [`key`]: master key and salt (from the CSPRNG or an `a=crypto` line), never printed;
//! - [`kdf`]: session keys from the master key (RFC 3711 §4.3, RFC 7714 §11);
//! - [`index`]: rollover counter and sequence estimation (RFC 3711 §3.3.1);
//! - [`replay`]: the replay list (RFC 3711 §3.3.2);
//! - [`cipher`]: one direction's session keys and the per-packet transforms;
//! - [`policy`] and [`keys`]: what a side's configuration asks for, and what a negotiated
//!   stream hands to the relay;
//! - [`context`]: the per-SSRC state around them and the public protect/unprotect calls.
//!
//! Unprotect authenticates before anything else: a packet whose tag does not verify changes no
//! state (no ROC, no replay list, no SSRC slot) and its payload is never decrypted.

pub mod cipher;
pub mod context;
pub mod error;
pub mod index;
pub mod kdf;
pub mod key;
pub mod keys;
pub mod policy;
pub mod replay;
pub mod suite;

pub use context::{MAX_SSRCS, SrtpContext};
pub use error::SrtpError;
pub use key::MasterKey;
pub use keys::{KeySpec, StreamKeys};
pub use policy::{SrtpMode, SrtpPolicy};
pub use suite::Suite;

#[cfg(test)]
mod tests;
