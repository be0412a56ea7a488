//! The registry of open stream connections: by id (responses go back on the connection the
//! request came in on, RFC 3261 §18.2.2) and by peer address (requests reuse an open
//! connection, RFC 3261 §18.1.1), plus the global connection limit.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use parking_lot::Mutex;
use sbc_proto::net::{ConnId, Peer, Side, TransportKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

type PeerKey = (Side, TransportKind, SocketAddr);

/// One registered connection.
#[derive(Debug)]
struct Entry {
    peer: Peer,
    queue: mpsc::Sender<Bytes>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<ConnId, Entry>,
    by_peer: HashMap<PeerKey, ConnId>,
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

    /// Registers a connection to `peer` (its `conn` is assigned here) and returns the guard
    /// that unregisters it when dropped, whichever way the connection task ends.
    pub(crate) fn register(
        self: &Arc<Self>,
        mut peer: Peer,
        queue: mpsc::Sender<Bytes>,
    ) -> Registration {
        let id = ConnId(self.next.fetch_add(1, Ordering::Relaxed));
        peer.conn = Some(id);
        let mut inner = self.inner.lock();
        // The newest connection to a peer is the one reused: an older one may be closing.
        inner
            .by_peer
            .insert((peer.side, peer.transport, peer.addr), id);
        inner.by_id.insert(id, Entry { peer, queue });
        Registration {
            registry: self.clone(),
            peer,
        }
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
}

impl Registration {
    /// The registered peer, with its connection id.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.peer);
    }
}
