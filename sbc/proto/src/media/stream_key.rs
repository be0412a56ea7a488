//! The name of one stream of one media session, shared by the table, its commands and the
//! packet paths.

use super::SessionId;

/// One stream of one session (the `index`-th `m=` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The session.
    pub session: SessionId,
    /// The stream's `m=` index.
    pub index: usize,
}
