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
//! **Lifts.** An operator's `DELETE /api/v1/bans/{address}` on one node lifts the ban on every
//! node: the node publishes a lift for both sides (a member with length 0), the script removes
//! the ban and logs `lift:<member>` under the next sequence number, and the other nodes unban
//! the address when they read it (`SignalingHandle::cluster_unban`; a lift is never published
//! again). Lifts stay in the log for [`LIFT_KEEP_MS`] (`sbc:bans:lifts` scores them by when they
//! were made) and at most `[limits] max_bans` of them: a node that cannot reach Redis for longer
//! keeps its copy of the ban until it ends by itself.
//!
//! **Redis down or slow**: every node keeps banning on its own; bans made meanwhile are not
//! published later (the channel is drained into the failed call and counted as dropped).

use std::{net::IpAddr, time::Duration};

use prometheus::{IntCounterVec, Opts, Registry};
use sbc_proto::net::Side;
use tokio::sync::{mpsc, watch};

use super::Settings;
use crate::signaling::handle::SignalingHandle;

/// Bans by their end (Redis milliseconds).
pub const BANS_KEY: &str = "sbc:bans";
/// Bans by the sequence number of their last publication.
pub const LOG_KEY: &str = "sbc:bans:log";
/// The last sequence number given out.
pub const SEQ_KEY: &str = "sbc:bans:seq";
/// Lifts by when they were made (Redis milliseconds), to trim them from the log.
pub const LIFTS_KEY: &str = "sbc:bans:lifts";
/// How long a lift stays readable in the log (milliseconds).
pub const LIFT_KEEP_MS: u64 = 60_000;
/// The log prefix of a lifted ban's member.
const LIFT: &str = "lift:";

/// Bans waiting for the next call (a flood of distinct sources past this is dropped, counted).
const QUEUE: usize = 1024;

/// Publishes and reads bans. KEYS: [`BANS_KEY`], [`LOG_KEY`], [`SEQ_KEY`], [`LIFTS_KEY`].
/// ARGV: the last sequence number this node read, the cap, how long lifts are kept, then per
/// change its member and length in ms (0: a lift). Returns the current sequence number, then
/// per change logged since the last read its member (`lift:`-prefixed for a lift) and the
/// milliseconds its ban has left (0 for a lift).
pub const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last, cap, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV - 1, 2 do
  local member, ms = ARGV[i], tonumber(ARGV[i + 1])
  local seq = redis.call('INCR', KEYS[3])
  if ms == 0 then
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZADD', KEYS[2], seq, 'lift:' .. member)
    redis.call('ZADD', KEYS[4], now, 'lift:' .. member)
  else
    redis.call('ZADD', KEYS[1], 'GT', now + ms, member)
    redis.call('ZADD', KEYS[2], seq, member)
  end
end
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, m in ipairs(ended) do redis.call('ZREM', KEYS[2], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local over = redis.call('ZCARD', KEYS[1]) - cap
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], over)
  for j = 1, #popped, 2 do redis.call('ZREM', KEYS[2], popped[j]) end
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - keep)
for _, m in ipairs(stale) do redis.call('ZREM', KEYS[2], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
local lifts_over = redis.call('ZCARD', KEYS[4]) - cap
if lifts_over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[4], lifts_over)
  for j = 1, #popped, 2 do redis.call('ZREM', KEYS[2], popped[j]) end
end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
-- Redis lost its data (restart without persistence): read everything again.
if last > seq then last = 0 end
local out = {seq}
if last < seq then
  local added = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. last, '+inf', 'LIMIT', 0, 2 * cap)
  for _, m in ipairs(added) do
    if string.sub(m, 1, 5) == 'lift:' then
      out[#out + 1] = m
      out[#out + 1] = 0
    else
      local e = redis.call('ZSCORE', KEYS[1], m)
      if e then
        out[#out + 1] = m
        out[#out + 1] = tonumber(e) - now
      end
    end
  end
end
return out
";

/// A change a node asks to share: a ban it decided, or an operator's lift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `ip` banned on `side` for this long.
    Ban(Side, IpAddr, Duration),
    /// The ban of `ip` lifted (both sides).
    Lift(IpAddr),
}

/// What one call read: the sequence number read up to, other nodes' bans and lifts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// The log's sequence number after the call.
    pub seq: u64,
    /// Bans logged since the last read, with what is left of them.
    pub bans: Vec<SharedBan>,
    /// Lifts logged since the last read.
    pub lifts: Vec<(Side, IpAddr)>,
}

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

/// One call: publishes `new` and returns the sequence number read up to and the bans and
/// lifts logged since `last` (at most `cap` bans).
pub async fn sync<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    last: u64,
    cap: usize,
    new: &[Change],
) -> redis::RedisResult<Synced> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SYNC)
        .arg(4)
        .arg(BANS_KEY)
        .arg(LOG_KEY)
        .arg(SEQ_KEY)
        .arg(LIFTS_KEY)
        .arg(last)
        .arg(cap)
        .arg(LIFT_KEEP_MS);
    for change in new {
        match *change {
            Change::Ban(side, ip, length) => {
                cmd.arg(member(side, ip))
                    .arg(u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1));
            }
            Change::Lift(ip) => {
                for side in [Side::Inside, Side::Outside] {
                    cmd.arg(member(side, ip)).arg(0);
                }
            }
        }
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
    let mut synced = Synced {
        seq: redis::from_redis_value(first)?,
        ..Synced::default()
    };
    while let (Some(m), Some(left)) = (values.next(), values.next()) {
        let m: String = redis::from_redis_value(m)?;
        let left: i64 = redis::from_redis_value(left)?;
        if let Some(lifted) = m.strip_prefix(LIFT) {
            synced.lifts.extend(parse_member(lifted));
            continue;
        }
        // A member another version wrote, or a ban ending this very millisecond: skipped.
        if let (Some((side, ip)), Ok(ms @ 1..)) = (parse_member(&m), u64::try_from(left)) {
            synced.bans.push(SharedBan {
                side,
                ip,
                left: Duration::from_millis(ms),
            });
        }
    }
    Ok(synced)
}

/// Shared-ban metrics.
#[derive(Debug, Clone)]
pub struct BanShareMetrics {
    /// Bans by what happened to them: `published` (this node's, written to Redis),
    /// `installed` (another node's, banned here), `refused` (another node's ban of a
    /// configured peer), `dropped` (this node's, not published: queue full or Redis failed),
    /// `lift_published` (an operator's lift here, written to Redis), `lifted` (another node's
    /// lift removed a ban here).
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
                     configured peer; dropped: this node's, not published; lift_published: \
                     an operator's lift here, shared; lifted: another node's lift removed a \
                     ban here).",
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
        for r in [
            "published",
            "installed",
            "refused",
            "dropped",
            "lift_published",
            "lifted",
        ] {
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
    tx: mpsc::Sender<Change>,
    metrics: BanShareMetrics,
}

impl BanPublisher {
    /// Queues a ban this node decided; never waits (a full queue drops it, counted).
    pub fn publish(&self, side: Side, ip: IpAddr, length: Duration) {
        if self.tx.try_send(Change::Ban(side, ip, length)).is_err() {
            self.metrics.bans.with_label_values(&["dropped"]).inc();
        }
    }

    /// Queues an operator's lift of `ip`'s ban for the other nodes; never waits (a full queue
    /// drops it, counted: the other nodes' copies then end by themselves).
    pub fn lift(&self, ip: IpAddr) {
        if self.tx.try_send(Change::Lift(ip)).is_err() {
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
    async fn run(self, mut new: mpsc::Receiver<Change>, mut shutdown: watch::Receiver<bool>) {
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
                Ok(Ok(synced)) => {
                    self.metrics.syncs.with_label_values(&["ok"]).inc();
                    let lifts = batch
                        .iter()
                        .filter(|c| matches!(c, Change::Lift(_)))
                        .count();
                    self.metrics
                        .bans
                        .with_label_values(&["published"])
                        .inc_by((batch.len() - lifts) as u64);
                    self.metrics
                        .bans
                        .with_label_values(&["lift_published"])
                        .inc_by(lifts as u64);
                    last = synced.seq;
                    // This node's own changes come back in the same call: already done here.
                    let own_ban = |b: &SharedBan| {
                        batch.iter().any(|c| {
                            matches!(c, Change::Ban(side, ip, _)
                                if *side == b.side && ip.to_canonical() == b.ip)
                        })
                    };
                    let own_lift = |ip: IpAddr| {
                        batch
                            .iter()
                            .any(|c| matches!(c, Change::Lift(l) if l.to_canonical() == ip))
                    };
                    for b in synced.bans.into_iter().filter(|b| !own_ban(b)) {
                        self.signaling.cluster_ban(b.side, b.ip, b.left).await;
                    }
                    // A lift is logged per side; the unban covers both, once per address.
                    let mut lifted: Vec<IpAddr> = Vec::new();
                    for (_, ip) in synced.lifts {
                        if !own_lift(ip) && !lifted.contains(&ip) {
                            lifted.push(ip);
                            self.signaling.cluster_unban(ip).await;
                        }
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
