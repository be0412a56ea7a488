//! Call routing and manipulation: which trunks an outbound call may use (by called number),
//! which PBX target an inbound call goes to (by DID), how numbers are normalised per trunk
//! and direction, and the declarative header rules per trunk for carrier quirks.
//!
//! Pure data and functions: the B2BUA applies them when it builds the INVITE of a new call.
//! The configuration layer (`sbc::config`) compiles the operator's TOML into these types and
//! reports bad patterns with their key path before anything runs.

mod header;
mod number;
mod route;

pub use header::{HeaderAction, HeaderRule, RuleError, Template, Vars};
pub use number::{NumberMatch, NumberRule, normalize};
pub use route::{InboundRoute, OutboundRoute, weighted_order};
