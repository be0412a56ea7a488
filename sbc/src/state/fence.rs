//! Split-brain fencing of an active/standby pair: an epoch in Redis.
//!
//! Every takeover takes a new epoch (`HINCRBY sbc:pair:epoch epoch 1`, the holder's name
//! beside it). A pair node writes its call records and renews the registration lease only
//! with the epoch it took: a Lua script compares it with Redis's in the same atomic step and
//! refuses the write (`FENCED`) when a newer takeover happened. So when a VRRP partition makes
//! both nodes active, the node that took over last is the only one whose records and lease
//! count; the other sees the newer epoch (a refused write, a refused lease renewal, or its
//! heartbeat reading the epoch) and steps down: it stops writing records, holds its
//! registrations and says so (`sbc_state_fenced` = 1, an error in the log).
//!
//! A restarted node that still holds the epoch (it was the active one, nobody took over
//! meanwhile) adopts it at start ([`adopt`]); any other pair node starts without one (0) and
//! can write nothing until it takes over.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use tokio::sync::Notify;

/// The Redis hash of the pair's epoch: `epoch` (a counter) and `node` (who took it).
pub const EPOCH_KEY: &str = "sbc:pair:epoch";

/// Takes the next epoch for ARGV[1]; returns it.
const TAKE: &str = r"
local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'node', ARGV[1])
return e";

/// Writes a call record (KEYS[1]: `at` = ARGV[2], `rec` = ARGV[3], TTL ARGV[4] s) only while
/// the pair's epoch (KEYS[2]) is still ARGV[1]; else the error `FENCED <epoch>`.
pub const FENCED_PUT: &str = r"
local e = redis.call('HGET', KEYS[2], 'epoch') or '0'
if e ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. e)
end
redis.call('HSET', KEYS[1], 'at', ARGV[2], 'rec', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1";

/// The Redis error code of a refused write.
pub const FENCED: &str = "FENCED";

/// This node's epoch and whether it was fenced off; cheap to clone (writer, lease, pair).
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// The epoch this node writes with (0: none taken).
    epoch: AtomicU64,
    /// A newer epoch was seen: this node stepped down.
    fenced: AtomicBool,
    stepped_down: Notify,
}

impl Fence {
    /// The epoch this node writes with (0: none).
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// Whether a newer epoch fenced this node off (until it takes over again).
    pub fn is_fenced(&self) -> bool {
        self.0.fenced.load(Ordering::Acquire)
    }

    /// This node now holds `epoch` (a takeover, or adopted at start).
    pub fn hold(&self, epoch: u64) {
        self.0.epoch.store(epoch, Ordering::Release);
        self.0.fenced.store(false, Ordering::Release);
    }

    /// A newer epoch than this node's was seen: step down (once per epoch).
    pub fn step_down(&self, seen: &str) {
        if !self.0.fenced.swap(true, Ordering::AcqRel) {
            tracing::error!(
                epoch = self.epoch(),
                seen,
                "another node took over (newer epoch): stepping down, no more writes or registrations"
            );
            self.0.stepped_down.notify_waiters();
            self.0.stepped_down.notify_one();
        }
    }

    /// Waits until this node is fenced off.
    pub async fn stepped_down(&self) {
        while !self.is_fenced() {
            self.0.stepped_down.notified().await;
        }
    }

    /// Whether `e` is Redis refusing a write of a stale epoch (alone or in a pipeline).
    pub fn is_fenced_error(e: &redis::RedisError) -> bool {
        e.code() == Some(FENCED)
            || e.clone()
                .into_server_errors()
                .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == FENCED))
    }
}

/// Takes the next epoch for `node` (at takeover).
pub async fn take<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    node: &str,
) -> redis::RedisResult<u64> {
    redis::cmd("EVAL")
        .arg(TAKE)
        .arg(1)
        .arg(EPOCH_KEY)
        .arg(node)
        .query_async(conn)
        .await
}

/// At start: the epoch if `node` still holds it (it was the active node), else 0.
pub async fn adopt<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    node: &str,
) -> redis::RedisResult<u64> {
    let (epoch, holder): (Option<u64>, Option<String>) = redis::cmd("HMGET")
        .arg(EPOCH_KEY)
        .arg("epoch")
        .arg("node")
        .query_async(conn)
        .await?;
    Ok(match (epoch, holder) {
        (Some(e), Some(h)) if h == node => e,
        _ => 0,
    })
}

/// The pair's current epoch in Redis (0: none yet).
pub async fn current<C: redis::aio::ConnectionLike>(conn: &mut C) -> redis::RedisResult<u64> {
    let e: Option<u64> = redis::cmd("HGET")
        .arg(EPOCH_KEY)
        .arg("epoch")
        .query_async(conn)
        .await?;
    Ok(e.unwrap_or(0))
}

#[cfg(test)]
mod tests;
