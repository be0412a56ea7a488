//! `a=crypto` (SDES, RFC 4568 §9.1): parsing an offered or answered line into what the SBC can
//! use, and writing its own.
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> <key-params> [<session-param>]*
//! key-param = "inline:" <base64 key||salt> ["|" lifetime] ["|" MKI ":" length]
//! ```
//!
//! What the SBC supports of it, and refuses otherwise (the caller answers 488 when no line of
//! an offer is usable):
//! - the suites of [`Suite`] (unknown names are skipped, other lines may still be usable);
//! - one key per line, no MKI (with one key per context an MKI identifies nothing; lines that
//!   carry one are refused rather than relayed with a wrong trailer);
//! - a lifetime (`2^n` or a decimal count of packets), enforced by the crypto context;
//! - session parameters `KDR=0` (the default rate) and `WSH=n` (a window size hint; the replay
//!   window is larger than the 64 the RFC requires). Any other (`UNENCRYPTED_SRTP`,
//!   `UNENCRYPTED_SRTCP`, `UNAUTHENTICATED_SRTP`, `FEC_ORDER`, `FEC_KEY`, `KDR` ≠ 0, unknown
//!   ones) makes the line unusable (RFC 4568 §6.3: an answerer must not accept parameters it
//!   does not understand).

use std::fmt;

use crate::srtp::{MasterKey, Suite};

/// Longest tag the grammar allows (1*9DIGIT).
const MAX_TAG: u32 = 999_999_999;

/// A usable `a=crypto` line.
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The line's tag: an answer names the offered line it accepts by its tag.
    pub tag: u32,
    /// The crypto suite.
    pub suite: Suite,
    /// Master key and salt the line's sender protects its media with.
    pub key: MasterKey,
    /// Packets the key may protect, if the line limits it.
    pub lifetime: Option<u64>,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never appears (MasterKey's Debug hides it as well).
        write!(
            f,
            "Crypto(tag {}, {}, lifetime {:?})",
            self.tag, self.suite, self.lifetime
        )
    }
}

/// Why an `a=crypto` line cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoRefusal {
    /// Not `<tag> <suite> <key-params>` or a field out of its grammar.
    #[error("malformed a=crypto")]
    Malformed,
    /// A suite the SBC does not implement, or not allowed by configuration.
    #[error("unsupported crypto suite")]
    UnsupportedSuite,
    /// The key is not base64 or has the wrong length for the suite.
    #[error("bad key for the suite")]
    BadKey,
    /// More than one key (needs MKIs), or an MKI.
    #[error("MKI or multiple keys not supported")]
    Mki,
    /// A lifetime beyond the suite's maximum or of zero packets.
    #[error("bad key lifetime")]
    Lifetime,
    /// A session parameter the SBC does not implement.
    #[error("unsupported session parameter")]
    SessionParam,
}

impl CryptoRefusal {
    /// Metric label (bounded set).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "crypto_malformed",
            Self::UnsupportedSuite => "crypto_suite",
            Self::BadKey => "crypto_key",
            Self::Mki => "crypto_mki",
            Self::Lifetime => "crypto_lifetime",
            Self::SessionParam => "crypto_session_param",
        }
    }
}

impl Crypto {
    /// Parses the value of an `a=crypto` attribute (after `crypto:`).
    pub fn parse(value: &str) -> Result<Self, CryptoRefusal> {
        let mut fields = value.split([' ', '\t']).filter(|f| !f.is_empty());
        let tag = fields.next().ok_or(CryptoRefusal::Malformed)?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoRefusal::Malformed);
        }
        let tag: u32 = tag.parse().map_err(|_| CryptoRefusal::Malformed)?;
        debug_assert!(tag <= MAX_TAG);
        let suite: Suite = fields
            .next()
            .ok_or(CryptoRefusal::Malformed)?
            .parse()
            .map_err(|_| CryptoRefusal::UnsupportedSuite)?;
        let key_params = fields.next().ok_or(CryptoRefusal::Malformed)?;
        for param in fields {
            session_param(param)?;
        }
        if key_params.contains(';') {
            return Err(CryptoRefusal::Mki);
        }
        let inline = key_params
            .strip_prefix("inline:")
            .ok_or(CryptoRefusal::Malformed)?;
        let mut parts = inline.split('|');
        let key = parts.next().unwrap_or_default();
        let key = MasterKey::from_inline(suite, key).map_err(|_| CryptoRefusal::BadKey)?;
        let mut lifetime = None;
        for part in parts {
            // "|lifetime" comes before "|MKI:len"; an MKI has a colon, a lifetime never does.
            if part.contains(':') {
                return Err(CryptoRefusal::Mki);
            }
            if lifetime.is_some() {
                return Err(CryptoRefusal::Malformed);
            }
            lifetime = Some(parse_lifetime(part, suite)?);
        }
        Ok(Self {
            tag,
            suite,
            key,
            lifetime,
        })
    }

    /// The attribute value the SBC writes (`<tag> <suite> inline:<key>`), without a lifetime
    /// (the suite's maximum applies) or session parameters.
    pub fn to_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            self.key.to_inline()
        )
    }
}

/// `2^n` or a decimal number of packets, at most the suite's maximum (RFC 4568 §6.1).
fn parse_lifetime(text: &str, suite: Suite) -> Result<u64, CryptoRefusal> {
    let n = if let Some(exp) = text.strip_prefix("2^") {
        let exp: u32 = digits(exp)?;
        1u64.checked_shl(exp)
            .filter(|_| exp < 64)
            .ok_or(CryptoRefusal::Lifetime)?
    } else {
        digits(text)?
    };
    if n == 0 || n > suite.max_lifetime() {
        return Err(CryptoRefusal::Lifetime);
    }
    Ok(n)
}

fn digits<T: std::str::FromStr>(text: &str) -> Result<T, CryptoRefusal> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CryptoRefusal::Malformed);
    }
    text.parse().map_err(|_| CryptoRefusal::Lifetime)
}

/// Session parameters the SBC honours: the default key derivation rate and a window size hint.
fn session_param(param: &str) -> Result<(), CryptoRefusal> {
    match param.split_once('=') {
        Some(("KDR", "0")) => Ok(()),
        Some(("WSH", n)) if digits::<u32>(n).is_ok() => Ok(()),
        _ => Err(CryptoRefusal::SessionParam),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY30: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn parses_rfc4568_examples() {
        let c = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20"))
            .expect("usable");
        assert_eq!(
            (c.tag, c.suite, c.lifetime),
            (1, Suite::AesCm128HmacSha1_80, Some(1 << 20))
        );
        let c = Crypto::parse(&format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30} KDR=0 WSH=64"
        ))
        .expect("usable");
        assert_eq!((c.tag, c.lifetime), (2, None));
        let gcm = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw";
        assert!(Crypto::parse(&format!("3 AEAD_AES_128_GCM inline:{gcm}")).is_ok());
    }

    #[test]
    fn refusals_name_the_reason() {
        let cases = [
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4"),
                CryptoRefusal::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4"),
                CryptoRefusal::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}"),
                CryptoRefusal::Mki,
            ),
            (
                format!("1 F8_128_HMAC_SHA1_80 inline:{KEY30}"),
                CryptoRefusal::UnsupportedSuite,
            ),
            (
                format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY30}"),
                CryptoRefusal::UnsupportedSuite,
            ),
            (
                format!("1 AEAD_AES_128_GCM inline:{KEY30}"),
                CryptoRefusal::BadKey,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTCP"),
                CryptoRefusal::SessionParam,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} KDR=24"),
                CryptoRefusal::SessionParam,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^49"),
                CryptoRefusal::Lifetime,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|0"),
                CryptoRefusal::Lifetime,
            ),
            (
                format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
                CryptoRefusal::Malformed,
            ),
            (
                format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
                CryptoRefusal::Malformed,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
                CryptoRefusal::Malformed,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30}"),
                CryptoRefusal::Malformed,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Crypto::parse(&line), Err(want), "{line}");
        }
    }

    #[test]
    fn written_lines_parse_back() {
        let mut rng = crate::ids::Rng::from_test_seed(9);
        for suite in Suite::ALL {
            let c = Crypto {
                tag: 7,
                suite,
                key: MasterKey::generate(suite, &mut rng),
                lifetime: None,
            };
            assert_eq!(Crypto::parse(&c.to_value()), Ok(c.clone()));
            assert!(!format!("{c:?}").contains(&c.key.to_inline()));
        }
    }
}
