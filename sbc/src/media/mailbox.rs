//! Orders to a media thread (a relay worker, the AF_XDP relay): a channel plus an eventfd
//! "bell" in the thread's epoll set, so one wake-up serves every order queued meanwhile.
//! Dropping the mailbox closes the channel and rings once more: the thread sees the channel
//! closed at that wake-up and ends.

use std::{io, sync::Arc};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The sending end, kept by the executor.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    orders: Option<Sender<T>>,
    bell: Arc<EventFd>,
}

/// The thread's end: its orders, and the bell to watch (readable when orders wait).
pub(crate) struct Inbox<T> {
    /// Orders in the order they were sent.
    pub orders: Receiver<T>,
    /// Add to the thread's epoll set; drain it before reading `orders`.
    pub bell: Arc<EventFd>,
}

impl<T> Mailbox<T> {
    /// A mailbox and the inbox its thread reads.
    pub fn new() -> io::Result<(Self, Inbox<T>)> {
        let bell = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((
            Self {
                orders: Some(tx),
                bell: bell.clone(),
            },
            Inbox { orders: rx, bell },
        ))
    }

    /// Queues `order` and wakes the thread. A thread that is gone has let go of everything
    /// the order could concern, so a failed send is not an error.
    pub fn send(&self, order: T) {
        if let Some(tx) = &self.orders {
            let _ = tx.send(order);
            let _ = self.bell.write(1);
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues `order` without waking the thread: it takes the order at its next wake-up,
    /// which the caller must know comes soon (the thread wakes at least every
    /// [`QUIET_WITHIN`](super::worker::QUIET_WITHIN) while it may have quiet orders).
    pub fn send_quiet(&self, order: T) {
        if let Some(tx) = &self.orders {
            let _ = tx.send(order);
        }
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        self.orders = None;
        let _ = self.bell.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::Mailbox;

    #[test]
    fn orders_arrive_in_order_and_dropping_closes_the_inbox() {
        let (mailbox, inbox) = Mailbox::new().expect("eventfd");
        mailbox.send(1);
        mailbox.send(2);
        // Rung once per order: the counter holds both.
        assert_eq!(inbox.bell.read().expect("rung"), 2);
        assert_eq!(inbox.orders.try_iter().collect::<Vec<_>>(), [1, 2]);
        drop(mailbox);
        assert!(
            inbox.orders.recv().is_err(),
            "closed once the mailbox is gone"
        );
        assert_eq!(inbox.bell.read().expect("rung on drop"), 1);
    }
}
