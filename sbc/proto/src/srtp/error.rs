//! SRTP errors: each one means "drop this packet"; the relay counts them by kind.

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// Shorter than its header plus trailer, or the header's own lengths run past the end.
    #[error("packet too short or header lengths inconsistent")]
    Malformed,
    /// Not RTP/RTCP version 2.
    #[error("not version 2")]
    BadVersion,
    /// The caller's buffer has no room for the tag (and SRTCP index) protect appends.
    #[error("buffer too small for the SRTP trailer")]
    BufferTooSmall,
    /// The authentication tag does not verify (RFC 3711 §3.3 step 5): forged, corrupted or
    /// protected with another key.
    #[error("authentication failed")]
    AuthFailed,
    /// The index was seen already or is behind the replay window (RFC 3711 §3.3.2).
    #[error("replayed or too old")]
    Replayed,
    /// The key's lifetime (packets) is used up, or the SRTCP index would wrap (RFC 3711 §9.2):
    /// the key must not be used again; a re-key is needed.
    #[error("key lifetime exhausted")]
    KeyExhausted,
}

impl SrtpError {
    /// The metric label for this error (`sbc_media_srtp_dropped_total{reason}`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadVersion => "bad_version",
            Self::BufferTooSmall => "buffer_too_small",
            Self::AuthFailed => "auth_failed",
            Self::Replayed => "replayed",
            Self::KeyExhausted => "key_exhausted",
        }
    }
}
