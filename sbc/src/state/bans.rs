//! Bans shared by several active nodes (`[state.cluster] share_bans`, docs/scaling.md): a
//! source one node bans for exceeding its rate budget is banned on every node for the rest of
//! its ban, so a scanner cannot move on to the next node of the same service.
//!
//! **Redis keys.** `sbc:bans` is a sorted set of `"<side>|<address>"` scored by the ban's end
//! in Redis's own milliseconds (`TIME`, so node clocks do not matter); `sbc:bans:log` scores
//! the same members by a sequence number (`sbc:bans:seq`), so a node reads only the bans
//! added since its last read. Both are trimmed of ended bans on every call and capped at
//! `[limits] max_bans` (the earliest ends go first).
//!
//! **One Lua call per `sync_ms`** ([`SYNC`]) publishes this node's new bans and returns the
//! others' (this node's own come back in the same call and are skipped). Nothing on
//! the receive path waits for Redis: the signaling shard hands its new bans to this task
//! through a bounded channel (full: dropped and counted) and installs the others' when the
//! task passes them on (`SignalingHandle::cluster_ban`), where a configured peer is refused
//! whatever Redis says (`Sbc::ban_from_cluster`).
//!
//! **Redis down or slow**: every node keeps banning on its own; bans made meanwhile are not
//! published later (the channel is drained into the failed call and counted as dropped).

use std::{net::IpAddr, time::Duration};

use prometheus::{IntCounterVec, Opts, Registry};
use sbc_proto::net::Side;
use tokio::sync::{mpsc, watch};

use super::Settings;
use crate::signaling::SignalingHandle;

/// Bans by their end (Redis milliseconds).
pub const BANS_KEY: &str = "sbc:bans";
/// Bans by the sequence number of their last publication.
pub const LOG_KEY: &str = "sbc:bans:log";
/// The last sequence number given out.
pub const SEQ_KEY: &str = "sbc:bans:seq";

/// Bans waiting for the next call (a flood of distinct sources past this is dropped, counted).
const QUEUE: usize = 1024;

/// Publishes and reads bans. KEYS: [`BANS_KEY`], [`LOG_KEY`], [`SEQ_KEY`]. ARGV: the last
/// sequence number this node read, the cap, then per new ban its member and length in ms.
/// Returns the current sequence number, then per ban added since the last read its member
/// and the milliseconds it has left.
pub const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV - 1, 2 do
  local member, ms = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[1], 'GT', now + ms, member)
  local seq = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], seq, member)
end
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, m in ipairs(ended) do redis.call('ZREM', KEYS[2], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local over = redis.call('ZCARD', KEYS[1]) - cap
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], over)
  for j = 1, #popped, 2 do redis.call('ZREM', KEYS[2], popped[j]) end
end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
-- Redis lost its data (restart without persistence): read everything again.
if last > seq then last = 0 end
local out = {seq}
if last < seq then
  local added = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. last, '+inf', 'LIMIT', 0, cap)
  for _, m in ipairs(added) do
    local e = redis.call('ZSCORE', KEYS[1], m)
    if e then
      out[#out + 1] = m
      out[#out + 1] = tonumber(e) - now
    end
  end
end
return out
";

/// A ban as Redis holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBan {
    /// The side the source is banned on.
    pub side: Side,
    /// The banned address.
    pub ip: IpAddr,
    /// What is left of the ban (Redis's clock).
    pub left: Duration,
}

/// The sorted-set member of a ban.
pub fn member(side: Side, ip: IpAddr) -> String {
    format!("{}|{}", side.as_str(), ip.to_canonical())
}

/// A member read back; `None` for anything this version did not write.
pub fn parse_member(m: &str) -> Option<(Side, IpAddr)> {
    let (side, ip) = m.split_once('|')?;
    let side = match side {
        "inside" => Side::Inside,
        "outside" => Side::Outside,
        _ => return None,
    };
    Some((side, ip.parse().ok()?))
}

/// One call: publishes `new` and returns the sequence number read up to and the bans added
/// since `last` (at most `cap`).
pub async fn sync<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    last: u64,
    cap: usize,
    new: &[(Side, IpAddr, Duration)],
) -> redis::RedisResult<(u64, Vec<SharedBan>)> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SYNC)
        .arg(3)
        .arg(BANS_KEY)
        .arg(LOG_KEY)
        .arg(SEQ_KEY)
        .arg(last)
        .arg(cap);
    for (side, ip, length) in new {
        cmd.arg(member(*side, *ip))
            .arg(u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    let out: Vec<redis::Value> = cmd.query_async(conn).await?;
    let wrong = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "ban sync script answered an unexpected shape",
        ))
    };
    if out.len() % 2 != 1 {
        return Err(wrong());
    }
    let mut values = out.into_iter();
    let Some(first) = values.next() else {
        return Err(wrong());
    };
    let seq: u64 = redis::from_redis_value(first)?;
    let mut bans = Vec::with_capacity(values.len() / 2);
    while let (Some(m), Some(left)) = (values.next(), values.next()) {
        let m: String = redis::from_redis_value(m)?;
        let left: i64 = redis::from_redis_value(left)?;
        // A member another version wrote, or a ban ending this very millisecond: skipped.
        if let (Some((side, ip)), Ok(ms @ 1..)) = (parse_member(&m), u64::try_from(left)) {
            bans.push(SharedBan {
                side,
                ip,
                left: Duration::from_millis(ms),
            });
        }
    }
    Ok((seq, bans))
}

/// Shared-ban metrics.
#[derive(Debug, Clone)]
pub struct BanShareMetrics {
    /// Bans by what happened to them: `published` (this node's, written to Redis),
    /// `installed` (another node's, banned here), `refused` (another node's ban of a
    /// configured peer), `dropped` (this node's, not published: queue full or Redis failed).
    pub bans: IntCounterVec,
    /// Calls to Redis by outcome (`ok`, `failed`).
    pub syncs: IntCounterVec,
}

impl BanShareMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            bans: IntCounterVec::new(
                Opts::new(
                    "sbc_cluster_bans_total",
                    "Bans shared through Redis, by what happened (published: this node's; \
                     installed: another node's, banned here; refused: another node's ban of a \
                     configured peer; dropped: this node's, not published).",
                ),
                &["result"],
            )?,
            syncs: IntCounterVec::new(
                Opts::new(
                    "sbc_cluster_ban_syncs_total",
                    "Calls publishing and reading shared bans in Redis, by outcome (ok, failed).",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(m.bans.clone()))?;
        registry.register(Box::new(m.syncs.clone()))?;
        for r in ["published", "installed", "refused", "dropped"] {
            m.bans.with_label_values(&[r]);
        }
        for o in ["ok", "failed"] {
            m.syncs.with_label_values(&[o]);
        }
        Ok(m)
    }
}

/// Where the signaling shards hand this node's new bans (cheap to clone).
#[derive(Debug, Clone)]
pub struct BanPublisher {
    tx: mpsc::Sender<(Side, IpAddr, Duration)>,
    metrics: BanShareMetrics,
}

impl BanPublisher {
    /// Queues a ban this node decided; never waits (a full queue drops it, counted).
    pub fn publish(&self, side: Side, ip: IpAddr, length: Duration) {
        if self.tx.try_send((side, ip, length)).is_err() {
            self.metrics.bans.with_label_values(&["dropped"]).inc();
        }
    }

    /// The metrics (the shards count refused installs).
    pub fn metrics(&self) -> &BanShareMetrics {
        &self.metrics
    }
}

/// At start: the metrics, and with `[state.cluster] share_bans` the sync task and the
/// publisher for the signaling shards (`None`: bans stay on this node).
pub fn start(
    config: &crate::config::Config,
    registry: &Registry,
    signaling: &SignalingHandle,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<BanPublisher>, prometheus::Error> {
    let metrics = BanShareMetrics::register(registry)?;
    let Some(state) = &config.state else {
        return Ok(None);
    };
    let Some(cluster) = state.cluster.as_ref().filter(|c| c.share_bans) else {
        return Ok(None);
    };
    let Ok(settings) = Settings::from_config(state) else {
        // Validated by the loader; `state::start_from_config` logs the same refusal.
        return Ok(None);
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let syncer = Syncer {
        settings,
        every: Duration::from_millis(cluster.sync_ms),
        timeout: Duration::from_millis(cluster.timeout_ms),
        cap: config.limits.max_bans,
        signaling: signaling.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(syncer.run(rx, shutdown));
    Ok(Some(BanPublisher { tx, metrics }))
}

/// The sync task's settings.
struct Syncer {
    settings: Settings,
    /// `[state.cluster] sync_ms`.
    every: Duration,
    /// `[state.cluster] timeout_ms`.
    timeout: Duration,
    /// `[limits] max_bans`: most bans in Redis and per call.
    cap: usize,
    signaling: SignalingHandle,
    metrics: BanShareMetrics,
}

impl Syncer {
    /// Publishes and reads bans every `every` until `shutdown`.
    async fn run(
        self,
        mut new: mpsc::Receiver<(Side, IpAddr, Duration)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        let mut last = 0u64;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => if *shutdown.borrow() { break },
            }
            batch.clear();
            while batch.len() < self.cap {
                match new.try_recv() {
                    Ok(b) => batch.push(b),
                    Err(_) => break,
                }
            }
            let result = tokio::time::timeout(self.timeout, async {
                let mut c = match conn.clone() {
                    Some(c) => c,
                    None => self.settings.connect().await?,
                };
                let r = sync(&mut c, last, self.cap, &batch).await;
                conn = Some(c);
                r
            })
            .await;
            match result {
                Ok(Ok((seq, bans))) => {
                    self.metrics.syncs.with_label_values(&["ok"]).inc();
                    self.metrics
                        .bans
                        .with_label_values(&["published"])
                        .inc_by(batch.len() as u64);
                    last = seq;
                    // This node's own bans come back in the same call: already banned here.
                    let own = |b: &SharedBan| {
                        batch
                            .iter()
                            .any(|(side, ip, _)| *side == b.side && ip.to_canonical() == b.ip)
                    };
                    for b in bans.into_iter().filter(|b| !own(b)) {
                        self.signaling.cluster_ban(b.side, b.ip, b.left).await;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "shared ban sync failed");
                    fail(&self.metrics, &mut conn, batch.len());
                }
                Err(_) => {
                    tracing::debug!("shared ban sync timed out");
                    fail(&self.metrics, &mut conn, batch.len());
                }
            }
        }
    }
}

fn fail(
    metrics: &BanShareMetrics,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    lost: usize,
) {
    metrics.syncs.with_label_values(&["failed"]).inc();
    metrics
        .bans
        .with_label_values(&["dropped"])
        .inc_by(lost as u64);
    *conn = None;
}

#[cfg(test)]
mod tests;
