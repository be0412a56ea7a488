//! A call's negotiated codecs and DTMF methods as persisted in its [`CallSnapshot`]
//! (`snapshot.rs`, schema version 3): what each leg declared per `m=` line, from which the
//! restored call recomputes the relay's payload-type rewrites and DTMF terminations, and the
//! DTMF method each side's SDP was shaped for (kept by the call, so a restart — or a
//! configuration change — does not switch a running call's interworking).
//!
//! [`CallSnapshot`]: super::CallSnapshot

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::DtmfMode;
use crate::sdp::CodecSpec;

/// One payload type a leg declared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodecRecord {
    /// The payload type number.
    pub pt: u8,
    /// The encoding name.
    pub name: String,
    /// The RTP clock rate.
    pub clock: u32,
    /// Encoding parameters (channels), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

impl CodecRecord {
    /// The record of a declared codec.
    pub fn of(c: &CodecSpec) -> Self {
        Self {
            pt: c.payload_type,
            name: c.name.to_string(),
            clock: c.clock_rate,
            params: c.params.clone(),
        }
    }

    /// The codec again.
    pub fn spec(&self) -> CodecSpec {
        CodecSpec {
            payload_type: self.pt,
            name: Cow::Owned(self.name.clone()),
            clock_rate: self.clock,
            params: self.params.clone(),
        }
    }
}

/// The codec state of a call as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodecsSnapshot {
    /// Per side (`[inside, outside]`), per `m=` line: the codecs its last SDP declared.
    pub declared: [Vec<Vec<CodecRecord>>; 2],
    /// The DTMF method of each side (`[inside, outside]`) the call negotiated with.
    pub dtmf: [DtmfMode; 2],
}
