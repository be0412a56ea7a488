//! SDP (RFC 8866) as a list of lines with typed accessors, and an editor for the offer/answer
//! rewrites an SBC does (RFC 3264): addresses, ports, `a=rtcp`, direction and payload types,
//! the policy of what may cross the border at all (`policy.rs`), codec filtering and
//! payload-type mapping (`codec.rs`), and SDES `a=crypto` lines (`crypto.rs`).
//!
//! Unlike a struct-per-field model that re-prints in a fixed order, every line that no edit
//! touches is written back byte for byte and in its original place.

mod codec;
mod crypto;
mod edit;
mod error;
mod parse;
mod policy;

pub use codec::{Codec, CodecPolicy, CodecRefusal, CodecSpec, PayloadMap, codecs};
pub use crypto::{Crypto, CryptoRefusal};
pub use edit::{SdpEditor, Section};
pub use error::SdpError;
pub use parse::{Connection, Direction, Media, MediaDesc, Origin, Rtcp, RtpMap, Sdp, SdpLine};
pub use policy::{
    AddressRefusal, AddressUse, BANDWIDTH_TYPES, Level, MEDIA_ATTRIBUTES, SESSION_ATTRIBUTES,
    SdpPolicy,
};
