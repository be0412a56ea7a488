//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).
//!
//! Client side ([`digest`]): parsing `WWW-Authenticate`/`Proxy-Authenticate` challenges and
//! computing `Authorization`/`Proxy-Authorization` credentials for the SBC's requests toward a
//! carrier. Pure functions over strings: the caller supplies the client nonce (`cnonce`) and
//! keeps the nonce count, so every computation is reproducible in tests.
//!
//! Server side ([`server`]): challenging a peer (the PBX) and verifying its credentials, with
//! stateless-verifiable nonces and replay detection; time and randomness come from the caller.

pub mod digest;
mod error;
pub mod server;

pub use digest::{Algorithm, Challenge, Credentials, DigestResponse, Secret};
pub use error::DigestError;
pub use server::{AuthError, DigestCredentials, DigestServer};
