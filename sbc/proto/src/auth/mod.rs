//! Client-side HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760): parsing
//! `WWW-Authenticate`/`Proxy-Authenticate` challenges and computing `Authorization`/
//! `Proxy-Authorization` credentials for the SBC's requests toward a carrier.
//!
//! Pure functions over strings: the caller supplies the client nonce (`cnonce`) and keeps the
//! nonce count, so every computation is reproducible in tests.

pub mod digest;
mod error;

pub use digest::{Algorithm, Challenge, Credentials, DigestResponse, Secret};
pub use error::DigestError;
