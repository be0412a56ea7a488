//! Per-side SRTP policy (`[pbx]` and `[[trunk]]` `srtp`, `srtp_suites`).

use super::suite::Suite;

/// Whether a side's media is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpMode {
    /// Plain RTP only: offers `RTP/AVP` without `a=crypto`; an `RTP/SAVP` offer gets 488.
    #[default]
    Off,
    /// Best effort (RFC 4568 §6.1 practice): offers `RTP/AVP` with `a=crypto`, accepts an
    /// answer with or without it, and answers an offer's usable `a=crypto` with its own key.
    Optional,
    /// SRTP only: offers `RTP/SAVP`; an offer or answer without usable `a=crypto` is refused
    /// with 488.
    Mandatory,
}

/// A side's SRTP policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpPolicy {
    /// Off, optional or mandatory.
    pub mode: SrtpMode,
    /// Suites allowed, in order of preference (offered in this order; of an offer's lines the
    /// most preferred usable one is answered).
    pub suites: Vec<Suite>,
}

impl Default for SrtpPolicy {
    fn default() -> Self {
        Self {
            mode: SrtpMode::Off,
            suites: Suite::ALL.to_vec(),
        }
    }
}

impl SrtpPolicy {
    /// A policy with `mode` and the default suites.
    pub fn new(mode: SrtpMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }
}
