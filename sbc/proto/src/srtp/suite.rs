//! The SRTP crypto suites the SBC speaks (RFC 4568 §6.2, RFC 7714 §14.1).

use std::fmt;
use std::str::FromStr;

/// A crypto suite: cipher, authentication and tag sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 GCM, 16-byte tag on SRTP and SRTCP, 12-byte salt (RFC 7714).
    AeadAes128Gcm,
    /// AES-128 counter mode, HMAC-SHA1 truncated to 80 bits (RFC 4568 §6.2.1).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 truncated to 32 bits on SRTP; SRTCP keeps 80 bits
    /// (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every supported suite, in the default order of preference.
    pub const ALL: [Self; 3] = [
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// The `a=crypto` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Master (and session) cipher key bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master (and session) salt bytes: 112 bits for AES-CM, 96 for GCM (RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => 12,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 14,
        }
    }

    /// Authentication tag bytes appended to SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => 16,
            Self::AesCm128HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 => 4,
        }
    }

    /// Authentication tag bytes appended to SRTCP packets.
    pub fn rtcp_tag_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => 16,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 10,
        }
    }

    /// Whether this is an AEAD (GCM) suite.
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm)
    }

    /// Largest number of SRTP packets one master key may protect (RFC 3711 §9.2: 2^48 for
    /// SRTP; RFC 4568 §6.2.1 repeats it for these suites).
    pub fn max_lifetime(self) -> u64 {
        1 << 48
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `a=crypto` suite name the SBC does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported SRTP crypto suite {0:?}")]
pub struct UnknownSuite(pub String);

impl FromStr for Suite {
    type Err = UnknownSuite;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Suite names are case-sensitive tokens (RFC 4568 §9.1 registers them as such).
        Self::ALL
            .into_iter()
            .find(|suite| suite.name() == s)
            .ok_or_else(|| UnknownSuite(s.to_owned()))
    }
}
