//! The registry of open stream connections: by id (responses go back on the connection the
//! request came in on, RFC 3261 §18.2.2) and by peer address (requests reuse an open
//! connection, RFC 3261 §18.1.1), plus the global connection limit.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use parking_lot::Mutex;
use sbc_proto::net::{ConnId, Peer, Side, TransportKind};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

type PeerKey = (Side, TransportKind, SocketAddr);

/// One registered connection.
#[derive(Debug)]
struct Entry {
    peer: Peer,
    queue: mpsc::Sender<Bytes>,
    /// Accepted (the peer connected to us) rather than opened by the SBC.
    accepted: bool,
    /// Tells the connection's task to close (a ban, an ACL change).
    close: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<ConnId, Entry>,
    by_peer: HashMap<PeerKey, ConnId>,
    /// Accepted connections per (side, canonical source IP).
    per_source: HashMap<(Side, IpAddr), usize>,
}

/// Open connections and the total connection budget.
#[derive(Debug)]
pub(crate) struct Connections {
    next: AtomicU64,
    inner: Mutex<Inner>,
    total: Arc<Semaphore>,
}

impl Connections {
    /// A registry allowing `max_total` simultaneous connections.
    pub(crate) fn new(max_total: usize) -> Self {
        Self {
            next: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
            total: Arc::new(Semaphore::new(max_total)),
        }
    }

    /// Takes one slot of the total budget, if any is left. The connection holds the permit
    /// for its lifetime.
    pub(crate) fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.total.clone().try_acquire_owned().ok()
    }

    /// Counts one more accepted connection from `ip` on `side`, unless it already has `cap`.
    /// The slot is given back when the returned guard drops.
    pub(crate) fn try_source_slot(
        self: &Arc<Self>,
        side: Side,
        ip: IpAddr,
        cap: usize,
    ) -> Option<SourceSlot> {
        let key = (side, ip.to_canonical());
        let mut inner = self.inner.lock();
        let n = inner.per_source.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            registry: self.clone(),
            key,
        })
    }

    /// Registers a connection to `peer` (its `conn` is assigned here) and returns the guard
    /// that unregisters it when dropped, whichever way the connection task ends. `accepted`:
    /// the peer connected to us (such connections are closed by bans and ACL changes).
    pub(crate) fn register(
        self: &Arc<Self>,
        mut peer: Peer,
        queue: mpsc::Sender<Bytes>,
        accepted: bool,
    ) -> Registration {
        let id = ConnId(self.next.fetch_add(1, Ordering::Relaxed));
        peer.conn = Some(id);
        let close = Arc::new(Notify::new());
        let mut inner = self.inner.lock();
        // The newest connection to a peer is the one reused: an older one may be closing.
        inner
            .by_peer
            .insert((peer.side, peer.transport, peer.addr), id);
        inner.by_id.insert(
            id,
            Entry {
                peer,
                queue,
                accepted,
                close: close.clone(),
            },
        );
        Registration {
            registry: self.clone(),
            peer,
            close,
            accepted,
        }
    }

    /// Tells every accepted connection whose peer matches `doomed` to close; returns them.
    /// A scan of the registry: runs on a ban or an ACL change, never per message.
    pub(crate) fn close_accepted(&self, doomed: impl Fn(&Peer) -> bool) -> Vec<Peer> {
        let inner = self.inner.lock();
        let mut closed = Vec::new();
        for e in inner.by_id.values() {
            if e.accepted && doomed(&e.peer) {
                // notify_one stores a permit, so a task not yet waiting still sees it.
                e.close.notify_one();
                closed.push(e.peer);
            }
        }
        closed
    }

    /// The write queue of connection `id`, if it is still open.
    pub(crate) fn by_id(&self, id: ConnId) -> Option<(Peer, mpsc::Sender<Bytes>)> {
        let inner = self.inner.lock();
        inner.by_id.get(&id).map(|e| (e.peer, e.queue.clone()))
    }

    /// The write queue of an open connection to `addr` on `side` with `transport`.
    pub(crate) fn by_peer(
        &self,
        side: Side,
        transport: TransportKind,
        addr: SocketAddr,
    ) -> Option<(Peer, mpsc::Sender<Bytes>)> {
        let inner = self.inner.lock();
        let id = inner.by_peer.get(&(side, transport, addr))?;
        inner.by_id.get(id).map(|e| (e.peer, e.queue.clone()))
    }

    /// Number of registered connections.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().by_id.len()
    }

    fn remove(&self, peer: &Peer) {
        let Some(id) = peer.conn else { return };
        let mut inner = self.inner.lock();
        inner.by_id.remove(&id);
        let key = (peer.side, peer.transport, peer.addr);
        if inner.by_peer.get(&key) == Some(&id) {
            inner.by_peer.remove(&key);
        }
    }
}

/// Unregisters its connection on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Connections>,
    peer: Peer,
    close: Arc<Notify>,
    accepted: bool,
}

impl Registration {
    /// Whether the peer connected to us (rather than the SBC to it).
    pub(crate) fn accepted(&self) -> bool {
        self.accepted
    }

    /// The registered peer, with its connection id.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    /// Notified when the connection must close (ban, ACL change).
    pub(crate) fn close_signal(&self) -> Arc<Notify> {
        self.close.clone()
    }
}

/// One accepted connection counted against its source's cap; gives the slot back on drop.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    registry: Arc<Connections>,
    key: (Side, IpAddr),
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock();
        if let Some(n) = inner.per_source.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_source.remove(&self.key);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.peer);
    }
}
