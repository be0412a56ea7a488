//! Master key and salt (RFC 3711 §3.2.1): what an `a=crypto` `inline:` carries.
//!
//! The bytes are never printed: `Debug` shows only the lengths, and the only way out is the
//! base64 `inline:` form the SDP writer needs ([`MasterKey::to_inline`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::suite::Suite;
use crate::ids::Rng;

/// Longest salt of any supported suite (AES-CM: 112 bits).
const MAX_SALT: usize = 14;

/// A master key and master salt for one suite.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; 16],
    salt: [u8; MAX_SALT],
    salt_len: usize,
}

impl fmt::Debug for MasterKey {
    // Whoever reads the key can decrypt the leg: logs and panics never see it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MasterKey(hidden, {}+{} bytes)",
            self.key.len(),
            self.salt_len
        )
    }
}

/// Why key material could not be used for a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not base64 (RFC 4568 §6.1: the key||salt is base64-encoded).
    #[error("key is not base64")]
    NotBase64,
    /// Decodes to a length other than key + salt of the suite.
    #[error("key material is {got} bytes, the suite needs {want}")]
    BadLength {
        /// Bytes decoded.
        got: usize,
        /// Bytes the suite needs.
        want: usize,
    },
}

impl MasterKey {
    /// A master key from raw key and salt bytes; the lengths must fit `suite`.
    pub fn new(suite: Suite, key: &[u8], salt: &[u8]) -> Result<Self, KeyError> {
        let want = suite.key_len() + suite.salt_len();
        if key.len() != suite.key_len() || salt.len() != suite.salt_len() {
            return Err(KeyError::BadLength {
                got: key.len() + salt.len(),
                want,
            });
        }
        let mut out = Self {
            key: [0; 16],
            salt: [0; MAX_SALT],
            salt_len: salt.len(),
        };
        out.key.copy_from_slice(key);
        out.salt[..salt.len()].copy_from_slice(salt);
        Ok(out)
    }

    /// Fresh key material for `suite` from the CSPRNG (RFC 4568 §8.1: keys must be random
    /// and never reused across legs).
    pub fn generate(suite: Suite, rng: &mut Rng) -> Self {
        let mut key = [0u8; 16];
        let mut salt = [0u8; MAX_SALT];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut salt[..suite.salt_len()]);
        Self {
            key,
            salt,
            salt_len: suite.salt_len(),
        }
    }

    /// Parses the base64 key||salt of an `inline:` parameter for `suite`. Padding is
    /// optional: some endpoints send the 40 characters of a 30-byte key without `=`.
    pub fn from_inline(suite: Suite, text: &str) -> Result<Self, KeyError> {
        let mut buf = [0u8; 64];
        let want = suite.key_len() + suite.salt_len();
        // Bound the input before decoding: the buffer is fixed and nothing longer can fit.
        if text.len() > 4 * buf.len() / 3 {
            return Err(KeyError::BadLength {
                got: 3 * text.len() / 4,
                want,
            });
        }
        let engine = if text.ends_with('=') {
            &STANDARD
        } else {
            &STANDARD_NO_PAD
        };
        let got = engine
            .decode_slice(text, &mut buf)
            .map_err(|_| KeyError::NotBase64)?;
        if got != want {
            return Err(KeyError::BadLength { got, want });
        }
        Self::new(suite, &buf[..suite.key_len()], &buf[suite.key_len()..got])
    }

    /// The base64 key||salt for an `inline:` parameter (with padding, as RFC 4568's
    /// examples and most implementations write it).
    pub fn to_inline(&self) -> String {
        let mut raw = [0u8; 16 + MAX_SALT];
        raw[..16].copy_from_slice(&self.key);
        raw[16..16 + self.salt_len].copy_from_slice(self.salt());
        STANDARD.encode(&raw[..16 + self.salt_len])
    }

    /// The master key.
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.salt_len]
    }
}

impl Drop for MasterKey {
    // Best effort: do not leave the key in freed memory for the next allocation to read.
    fn drop(&mut self) {
        self.key.fill(0);
        self.salt.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_round_trip_and_lengths() {
        let mut rng = Rng::from_test_seed(1);
        for suite in Suite::ALL {
            let key = MasterKey::generate(suite, &mut rng);
            let text = key.to_inline();
            assert_eq!(MasterKey::from_inline(suite, &text), Ok(key.clone()));
            assert_eq!(
                MasterKey::from_inline(suite, text.trim_end_matches('=')),
                Ok(key.clone())
            );
        }
        // RFC 4568 §6.1's example key: 30 bytes for AES_CM_128_HMAC_SHA1_80.
        let k = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        assert!(MasterKey::from_inline(Suite::AesCm128HmacSha1_80, k).is_ok());
        assert_eq!(
            MasterKey::from_inline(Suite::AeadAes128Gcm, k),
            Err(KeyError::BadLength { got: 30, want: 28 })
        );
        assert_eq!(
            MasterKey::from_inline(Suite::AesCm128HmacSha1_80, "not*base64"),
            Err(KeyError::NotBase64)
        );
        assert!(MasterKey::from_inline(Suite::AesCm128HmacSha1_80, &"A".repeat(400)).is_err());
    }

    #[test]
    fn debug_never_shows_key() {
        let key = MasterKey::new(Suite::AeadAes128Gcm, &[0xab; 16], &[0xcd; 12]).expect("sizes");
        let shown = format!("{key:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
