//! A transaction's queue of events for its TU: first in, first out, the first two held inline.
//!
//! A transaction reports one or two events at a time (a timeout, `Terminated`) and the B2BUA
//! drains them right after each step. A `VecDeque` allocated on every transaction's first event
//! (issue 16, CPU per call); the inline slots make the common case allocation-free, and a burst
//! beyond them still queues in order. Messages to send stay in a `VecDeque`: two inline `Bytes`
//! would grow every transaction past its size budget (`a_call_and_its_transactions_are_small`).

use std::collections::VecDeque;

/// A FIFO holding its first two items inline.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    /// The oldest items, in order: the second is only set when the first is.
    inline: [Option<T>; 2],
    /// Younger items, once both slots are taken (always younger than the inline ones).
    spill: VecDeque<T>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Self {
            inline: [None, None],
            spill: VecDeque::new(),
        }
    }
}

impl<T> Outbox<T> {
    /// Queues `item` last.
    pub(crate) fn push_back(&mut self, item: T) {
        if self.spill.is_empty() {
            for slot in &mut self.inline {
                if slot.is_none() {
                    *slot = Some(item);
                    return;
                }
            }
        }
        self.spill.push_back(item);
    }

    /// Takes the oldest item.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let [first, second] = &mut self.inline;
        let item = first.take()?;
        *first = second.take();
        *second = self.spill.pop_front();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_across_the_inline_slots_and_the_spill() {
        let mut q = Outbox::default();
        q.push_back(0);
        let mut want = VecDeque::from([0]);
        let mut next = 1;
        // Pushes and pops interleaved in every pattern up to 6 deep, against a VecDeque.
        for pattern in 0u32..4096 {
            for bit in 0..12 {
                if pattern & (1 << bit) != 0 {
                    q.push_back(next);
                    want.push_back(next);
                    next += 1;
                } else {
                    assert_eq!(q.pop_front(), want.pop_front());
                }
            }
            while let Some(w) = want.pop_front() {
                assert_eq!(q.pop_front(), Some(w));
            }
            assert_eq!(q.pop_front(), None);
        }
    }
}
