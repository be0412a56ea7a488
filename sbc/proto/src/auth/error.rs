//! Errors of the digest module.

use crate::sip::HeaderError;

/// A challenge the SBC cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The header value does not parse as `scheme params` (RFC 3261 §25.1).
    #[error("malformed challenge: {0}")]
    Malformed(#[from] HeaderError),
    /// The scheme is not `Digest`.
    #[error("unsupported scheme")]
    NotDigest,
    /// A parameter the computation needs is absent.
    #[error("challenge without {name}")]
    MissingParam {
        /// The parameter's name.
        name: &'static str,
    },
    /// An `algorithm` the SBC does not implement (RFC 8760 §2.4: such challenges are ignored).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// A `qop` list without `auth` (e.g. only `auth-int`, which needs the body hash).
    #[error("unsupported qop")]
    UnsupportedQop,
    /// The challenge's realm is not the one the credentials are configured for.
    #[error("realm mismatch")]
    RealmMismatch,
    /// None of the challenges in a response could be answered.
    #[error("no usable challenge")]
    NoUsableChallenge,
}
