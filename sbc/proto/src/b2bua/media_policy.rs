//! What one side takes in its media, as configured per trunk and for the PBX: codecs (allow or
//! deny list, preference order; `codec_policy.rs`), T.38 fax (`t38.rs`) and the DTMF method
//! (`dtmf_interwork.rs`).

use super::B2buaConfig;
use crate::{net::Side, sdp::CodecPolicy};

/// What a re-INVITE switching a call to T.38 fax (`m=image … udptl t38`) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum T38Mode {
    /// Relayed like any other offer; the relay anchors the UDPTL stream as plain UDP.
    #[default]
    Passthrough,
    /// Answered 488 by the SBC itself, never relayed: the sender falls back to G.711 fax.
    Reject,
}

/// The media policy of one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Codecs this side takes, in its order of preference.
    pub codecs: CodecPolicy,
    /// T.38 fax toward or from this side.
    pub t38: T38Mode,
    /// How this side sends and receives DTMF.
    pub dtmf: super::DtmfMode,
    /// The payload type `telephone-event/8000` gets in offers toward this side (a carrier that
    /// insists on its own number); None: as the offerer numbered it. The relay maps it.
    pub event_payload_type: Option<u8>,
}

/// The policy of `side` on a call through `trunk` (index): `[pbx]` inside, the trunk's outside
/// (open for a carrier that is no configured trunk).
pub(super) fn of(cfg: &B2buaConfig, side: Side, trunk: Option<usize>) -> &MediaPolicy {
    static OPEN: MediaPolicy = MediaPolicy {
        codecs: CodecPolicy {
            allow: Vec::new(),
            deny: Vec::new(),
        },
        t38: T38Mode::Passthrough,
        dtmf: super::DtmfMode::Rfc4733,
        event_payload_type: None,
    };
    match side {
        Side::Inside => &cfg.pbx_media,
        Side::Outside => trunk
            .and_then(|t| cfg.trunks.get(t))
            .map_or(&OPEN, |t| &t.media),
    }
}
