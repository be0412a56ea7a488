//! The B2BUA's timer queue: at most one deadline per transaction or call, removed when its
//! owner goes away.
//!
//! A plain ordered set of `(deadline, owner)` grows with every re-arm and keeps entries of
//! transactions and calls that are long gone (a call's max-duration deadline hours ahead, for
//! every call that ended by BYE): memory an INVITE flood can fill. Here each owner has one
//! slot; re-arming moves it, and [`TimerQueue::cancel`] frees it with its owner.

use std::{collections::BTreeSet, time::Instant};

use super::{call::CallId, step_table::IdStepMap, tx_id::TxId};

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TimerRef {
    /// A server transaction.
    Server(TxId),
    /// A client transaction.
    Client(TxId),
    /// A call's own timers (2xx and reliable-provisional retransmission, max duration).
    Call(CallId),
}

/// Deadlines in time order, one per owner.
#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    by_time: BTreeSet<(Instant, TimerRef)>,
    /// Each owner's deadline; it grows in steps (`step_table.rs`): one entry per live
    /// transaction, ~130,000 at 2,000 calls/s.
    by_owner: IdStepMap<TimerRef, Instant>,
}

impl TimerQueue {
    /// Arms `owner` for `at`, replacing its previous deadline (a transaction machine's
    /// `poll_timeout` is the whole truth about when it next needs a kick).
    pub(super) fn set(&mut self, owner: TimerRef, at: Instant) {
        if let Some(old) = self.by_owner.insert(owner, at) {
            self.by_time.remove(&(old, owner));
        }
        self.by_time.insert((at, owner));
    }

    /// Arms `owner` for `at` unless it is already due earlier (a call has several deadlines;
    /// when the earliest fires, the call's handler re-arms the next one).
    pub(super) fn set_earliest(&mut self, owner: TimerRef, at: Instant) {
        match self.by_owner.get(&owner) {
            Some(old) if *old <= at => {}
            _ => self.set(owner, at),
        }
    }

    /// Disarms `owner` (its transaction or call is gone, or it has nothing left to time).
    pub(super) fn cancel(&mut self, owner: &TimerRef) {
        if let Some(at) = self.by_owner.remove(owner) {
            self.by_time.remove(&(at, *owner));
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the earliest owner due at `now`, disarming it.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TimerRef> {
        if self.first()? > now {
            return None;
        }
        let (_, owner) = self.by_time.pop_first()?;
        self.by_owner.remove(&owner);
        Some(owner)
    }

    /// Armed deadlines.
    pub(super) fn len(&self) -> usize {
        self.by_owner.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_slot_per_owner_and_cancel_frees_it() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(i);
        let mut q = TimerQueue::default();
        q.set(TimerRef::Call(CallId::from_raw(2)), s(5));
        q.set(TimerRef::Call(CallId::from_raw(2)), s(9));
        q.set_earliest(TimerRef::Call(CallId::from_raw(1)), s(7));
        q.set_earliest(TimerRef::Call(CallId::from_raw(1)), s(8));
        q.set_earliest(TimerRef::Call(CallId::from_raw(1)), s(3));
        assert_eq!(q.len(), 2);
        assert_eq!(q.first(), Some(s(3)));
        assert_eq!(q.pop_due(s(2)), None);
        assert_eq!(q.pop_due(s(4)), Some(TimerRef::Call(CallId::from_raw(1))));
        assert_eq!(
            q.pop_due(s(8)),
            None,
            "the replaced deadline of 5 s is gone"
        );
        q.cancel(&TimerRef::Call(CallId::from_raw(2)));
        assert_eq!((q.len(), q.first()), (0, None));
    }
}
