//! The last statistics of released sessions, kept briefly for the call detail records: the
//! B2BUA releases a call's media before it reports the call's end (a BYE releases it at once,
//! the record comes with the BYE's answer), so the CDR writer asks for them here afterwards.
//! Bounded: the oldest entries go first, and entries nobody takes age out the same way.

use std::collections::{HashMap, VecDeque};

use sbc_proto::media::SessionId;

use super::view::SessionView;

/// How many released sessions are remembered (a BYE's answer comes within seconds, long
/// before this many more calls end).
pub const KEPT: usize = 4_096;

/// Released sessions' last views, oldest first.
#[derive(Debug, Default)]
pub struct Finals {
    /// The last [`KEPT`] sessions put, oldest first, taken ones included: a take leaves its
    /// entry here (removing it would scan the queue on every call's record), and the bound
    /// counts puts, so the views kept are those of the last [`KEPT`] sessions released.
    order: VecDeque<SessionId>,
    views: HashMap<SessionId, SessionView>,
}

impl Finals {
    /// Remembers `view` of the released session `id`, forgetting the oldest beyond [`KEPT`].
    pub fn put(&mut self, id: SessionId, view: SessionView) {
        if self.views.insert(id, view).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > KEPT {
            if let Some(old) = self.order.pop_front() {
                self.views.remove(&old);
            }
        }
    }

    /// Takes the view of `id`, if it is still remembered.
    pub fn take(&mut self, id: SessionId) -> Option<SessionView> {
        self.views.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64) -> SessionView {
        SessionView {
            id,
            committed: true,
            timed_out: false,
            adopted: false,
            idle_ms: 0,
            streams: Vec::new(),
        }
    }

    #[test]
    fn keeps_at_most_kept_and_forgets_the_oldest_first() {
        let mut f = Finals::default();
        for i in 0..(KEPT as u64 + 10) {
            f.put(SessionId(i), view(i));
        }
        assert_eq!(f.views.len(), KEPT);
        assert!(f.take(SessionId(9)).is_none(), "among the oldest");
        assert_eq!(f.take(SessionId(10)).map(|v| v.id), Some(10));
        assert!(f.take(SessionId(10)).is_none(), "taken once");
        assert_eq!(f.views.len(), KEPT - 1);
        // A take leaves the order alone; the next puts still keep the last KEPT sessions.
        for i in 0..10 {
            f.put(SessionId(100_000 + i), view(i));
        }
        assert_eq!(f.order.len(), KEPT);
        // 10 (taken) to 19 went: 9 views, so KEPT again.
        assert_eq!(f.views.len(), KEPT);
        assert!(f.take(SessionId(19)).is_none(), "pushed out");
        assert!(f.take(SessionId(20)).is_some());
    }
}
