//! `srtp` and `srtp_suites` of `[pbx]` and `[[trunk]]`: media encryption per side.

use sbc_proto::srtp::{SrtpMode, SrtpPolicy, Suite};
use serde::{Deserialize, Serialize};

/// `srtp = "off" | "optional" | "mandatory"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpSetting {
    /// Plain RTP; an `RTP/SAVP` offer from this side gets 488.
    #[default]
    Off,
    /// `RTP/AVP` with `a=crypto` offered; plain or SRTP accepted.
    Optional,
    /// SRTP only; offers and answers without usable `a=crypto` are refused with 488.
    Mandatory,
}

/// The B2BUA's policy from a side's settings (unknown suite names are reported by
/// [`validate`] and skipped here).
pub fn policy(mode: SrtpSetting, suites: Option<&[String]>) -> SrtpPolicy {
    SrtpPolicy {
        mode: match mode {
            SrtpSetting::Off => SrtpMode::Off,
            SrtpSetting::Optional => SrtpMode::Optional,
            SrtpSetting::Mandatory => SrtpMode::Mandatory,
        },
        suites: match suites {
            None => Suite::ALL.to_vec(),
            Some(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
        },
    }
}

/// Checks `srtp_suites` under `prefix` (e.g. `trunk[0]`): known names, no repeats, not empty
/// when SRTP is on.
pub fn validate(
    prefix: &str,
    mode: SrtpSetting,
    suites: Option<&[String]>,
    bad: &mut impl FnMut(&str, String),
) {
    let Some(names) = suites else { return };
    let path = format!("{prefix}.srtp_suites");
    let mut seen = Vec::new();
    for n in names {
        match n.parse::<Suite>() {
            Ok(s) if seen.contains(&s) => bad(&path, format!("{n} is listed twice")),
            Ok(s) => seen.push(s),
            Err(_) => bad(
                &path,
                format!(
                    "unknown suite {n:?} (supported: {})",
                    Suite::ALL.map(Suite::name).join(", ")
                ),
            ),
        }
    }
    if seen.is_empty() && mode != SrtpSetting::Off {
        bad(
            &path,
            "needs at least one suite when srtp is not \"off\"".into(),
        );
    }
}
