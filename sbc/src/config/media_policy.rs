//! `codecs`, `codecs_deny` and `t38` of `[pbx]` and `[[trunk]]`: the media policy per side
//! (`sbc_proto::b2bua::MediaPolicy`).

use sbc_proto::{
    b2bua::{DtmfMode, MediaPolicy, T38Mode},
    sdp::CodecPolicy,
};
use serde::{Deserialize, Serialize};

/// `t38 = "passthrough" | "reject"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum T38Setting {
    /// A re-INVITE to T.38 is relayed; UDPTL is anchored by the relay.
    #[default]
    Passthrough,
    /// A re-INVITE to T.38 is answered 488 by the SBC.
    Reject,
}

/// `dtmf = "rfc4733" | "info" | "inband-passthrough"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DtmfSetting {
    /// RFC 4733 telephone-events in RTP.
    #[default]
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay`).
    Info,
    /// In-band tones; nothing converted.
    InbandPassthrough,
}

/// Encodings that carry no media of their own (an allow list of only these refuses every
/// call).
const AUXILIARY: [&str; 5] = ["telephone-event", "cn", "red", "ulpfec", "rtx"];

/// The B2BUA's policy from a side's settings.
pub fn policy(
    codecs: Option<&[String]>,
    deny: Option<&[String]>,
    t38: T38Setting,
    dtmf: DtmfSetting,
    telephone_event_pt: Option<u8>,
) -> MediaPolicy {
    MediaPolicy {
        codecs: CodecPolicy {
            allow: codecs.map(<[String]>::to_vec).unwrap_or_default(),
            deny: deny.map(<[String]>::to_vec).unwrap_or_default(),
        },
        t38: match t38 {
            T38Setting::Passthrough => T38Mode::Passthrough,
            T38Setting::Reject => T38Mode::Reject,
        },
        dtmf: match dtmf {
            DtmfSetting::Rfc4733 => DtmfMode::Rfc4733,
            DtmfSetting::Info => DtmfMode::Info,
            DtmfSetting::InbandPassthrough => DtmfMode::InbandPassthrough,
        },
        event_payload_type: telephone_event_pt,
    }
}

/// Checks `codecs` and `codecs_deny` under `prefix` (e.g. `trunk[0]`): encoding names (RFC
/// 4855 tokens), no repeats, not both lists, and an allow list naming at least one real codec;
/// and `telephone_event_pt`: a dynamic payload type (RFC 3551 §6: 96-127).
pub fn validate(
    prefix: &str,
    codecs: Option<&[String]>,
    deny: Option<&[String]>,
    telephone_event_pt: Option<u8>,
    bad: &mut impl FnMut(&str, String),
) {
    if let Some(pt) = telephone_event_pt
        && !(96..=127).contains(&pt)
    {
        bad(
            &format!("{prefix}.telephone_event_pt"),
            format!("{pt} is not a dynamic payload type (96-127)"),
        );
    }
    for (key, list) in [("codecs", codecs), ("codecs_deny", deny)] {
        let Some(names) = list else { continue };
        let path = format!("{prefix}.{key}");
        let mut seen: Vec<String> = Vec::new();
        for n in names {
            let token = !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'+'));
            if !token {
                bad(&path, format!("{n:?} is not an encoding name"));
            } else if seen.contains(&n.to_ascii_lowercase()) {
                bad(&path, format!("{n} is listed twice"));
            } else {
                seen.push(n.to_ascii_lowercase());
            }
        }
    }
    if codecs.is_some() && deny.is_some() {
        bad(
            &format!("{prefix}.codecs_deny"),
            "use either codecs (allow list) or codecs_deny, not both".into(),
        );
    }
    if let Some(names) = codecs
        && !names
            .iter()
            .any(|n| !AUXILIARY.iter().any(|a| n.eq_ignore_ascii_case(a)))
    {
        bad(
            &format!("{prefix}.codecs"),
            "must name at least one audio/video codec (telephone-event, CN, RED alone refuse every call)"
                .into(),
        );
    }
}
