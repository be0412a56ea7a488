//! The keys of one stream on one leg as the call layer hands them to the media relay.

use super::key::MasterKey;
use super::suite::Suite;

/// One direction's key: suite, master key and the packet lifetime the SDP gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The suite.
    pub suite: Suite,
    /// Master key and salt.
    pub key: MasterKey,
    /// Packets the key may process (None: the suite's maximum).
    pub lifetime: Option<u64>,
}

/// The SRTP keys of one stream on one leg: `rx` unprotects what the peer sends (its own
/// `a=crypto` key), `tx` protects what the SBC sends it (the key the SBC wrote in its SDP).
/// The two are independent and never the other leg's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    /// Key of the peer's packets.
    pub rx: KeySpec,
    /// Key of the SBC's packets to the peer.
    pub tx: KeySpec,
}
