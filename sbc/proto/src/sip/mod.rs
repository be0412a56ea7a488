//! SIP messages (RFC 3261): parsing, typed header views, URIs, editing and stream framing.
//!
//! The parser keeps one buffer per message; header values, URIs and the body are slices of it.
//! Typed views (`Via`, `NameAddr`, `CSeq`, …) are decoded on demand and borrow from it.

mod addr;
mod auth;
mod cseq;
pub mod edit;
mod error;
pub mod framer;
mod headers;
mod headline;
mod limits;
mod message;
mod method;
mod name;
mod params;
mod parse;
mod parties;
pub(crate) mod scan;
mod status;
mod uri;
mod value_error;
mod values;
mod via;

pub use addr::{Contact, NameAddr};
pub use auth::Auth;
pub use cseq::CSeq;
pub use edit::{Editor, MessageWriter, ResponseOptions, edit_param};
pub use error::{ParseError, Problem, Reaction};
pub use framer::{Frame, FrameError, Framer};
pub use headers::{Header, Headers};
pub use headline::Headline;
pub use limits::Limits;
pub use message::Message;
pub use method::Method;
pub use name::HeaderName;
pub use params::{ParamIter, Params};
pub use parties::Parties;
pub use scan::{find_crlf, unquote};
pub use status::{StatusClass, StatusCode};
pub use uri::{Host, OtherUri, SipUri, TelUri, Uri, unescape};
pub use value_error::{HeaderError, UriError};
pub use values::{MediaType, RAck, Reason, RetryAfter, SessionExpires};
pub use via::{MAGIC_COOKIE, Via};
