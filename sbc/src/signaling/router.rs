//! Received messages to their signaling shard: one bounded channel per shard, picked per
//! message by `sbc_proto::shard::route` (a pure function of the message: the shard label in
//! our To tag or branch, else a hash of Call-ID and From tag). No lock, no shared queue: the
//! transport's receive tasks hold the senders and send straight to the owning shard.

use std::sync::Arc;

use sbc_proto::shard::{self, ShardId};
use tokio::sync::mpsc::{self, error::SendError, error::TrySendError};

use crate::transport::Inbound;

/// The senders of every shard's inbound channel; cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    shards: Arc<[mpsc::Sender<Inbound>]>,
    /// `shards.len()` as the router counts shards.
    count: u16,
}

impl Router {
    /// A router over `shards` channels of `capacity` messages each, and their receivers (in
    /// shard order). `shards` is at least 1 and at most `MAX_SHARDS`.
    pub fn channels(shards: u16, capacity: usize) -> (Self, Vec<mpsc::Receiver<Inbound>>) {
        let count = shards.clamp(1, shard::MAX_SHARDS);
        let (tx, rx): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel(capacity)).unzip();
        (
            Self {
                shards: tx.into(),
                count,
            },
            rx,
        )
    }

    /// How many shards it routes to.
    pub fn count(&self) -> u16 {
        self.count
    }

    fn pick(&self, m: &Inbound) -> &mpsc::Sender<Inbound> {
        let k = shard::route(&m.message, self.count).index();
        // `route` answers below `count`; shard 0 exists whatever happens.
        self.shards.get(k).unwrap_or(&self.shards[0])
    }

    /// Hands `m` to its shard at once, or drops it and says why (full: that shard is busy).
    pub fn try_send(&self, m: Inbound) -> Result<(), TrySendError<()>> {
        self.pick(&m).try_send(m).map_err(|e| match e {
            TrySendError::Full(_) => TrySendError::Full(()),
            TrySendError::Closed(_) => TrySendError::Closed(()),
        })
    }

    /// Hands `m` to its shard, waiting for room (stream transports: back-pressure); an error
    /// if the shard is over.
    pub async fn send(&self, m: Inbound) -> Result<(), SendError<()>> {
        self.pick(&m).send(m).await.map_err(|_| SendError(()))
    }

    /// The shard `m` goes to.
    pub fn shard_of(&self, m: &Inbound) -> ShardId {
        shard::route(&m.message, self.count)
    }
}

impl From<mpsc::Sender<Inbound>> for Router {
    /// One shard: everything goes to this channel.
    fn from(tx: mpsc::Sender<Inbound>) -> Self {
        Self {
            shards: Arc::from(vec![tx]),
            count: 1,
        }
    }
}

/// The shard count `[general] signaling_shards` asks for: 0 is one per available core. One
/// while `[state]` is configured (its full rewrite is one core's calls; the loader refuses
/// more than one).
pub fn shard_count(config: &crate::config::Config) -> u16 {
    let configured = config.general.signaling_shards;
    if config.state.is_some() {
        return 1;
    }
    if configured > 0 {
        return configured.min(shard::MAX_SHARDS);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u16::try_from(cores)
        .unwrap_or(shard::MAX_SHARDS)
        .clamp(1, shard::MAX_SHARDS)
}
