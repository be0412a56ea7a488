//! Several active nodes on one Redis (`[state.cluster]`, docs/scaling.md): each trunk's
//! `max_calls` holds for all of them together.
//!
//! **Grants.** Every `sync_ms` this task sends one Lua call ([`GRANT`]) with each limited
//! trunk's calls in progress on this node. Per trunk, Redis keeps a hash
//! `sbc:cluster:calls:<trunk>` of `node → "reserved calls expiry_ms"`; the script drops the
//! entries of nodes that stopped renewing (a dead node's places come back after
//! `grant_ttl_ms`), and grants this node `calls + min(headroom, fair share of the free
//! places)` but never more than `max_calls` minus what the other live nodes reserved. The sum
//! of the grants therefore never exceeds `max_calls`, and admission compares with the grant
//! locally ([`SharedCalls::set_trunk_cap`], one atomic load): no message ever waits for Redis.
//!
//! **Redis down or slow.** A renewal that fails or takes longer than `timeout_ms` is
//! counted; once the last grant is older than half of `grant_ttl_ms` (before the other nodes
//! drop it) the node admits `fallback_percent` of each trunk's `max_calls` on its own and
//! `sbc_cluster_fallback` is 1 (alert `SbcClusterLimitsLocal`).

use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sbc_proto::b2bua::{SharedCalls, TrunkShare};
use tokio::sync::watch;

use super::Settings;
use crate::config::Cluster;

/// The Redis hash of trunk `name`'s grants.
pub fn trunk_key(name: &str) -> String {
    format!("sbc:cluster:calls:{name}")
}

/// Renews this node's grants. KEYS: one hash per trunk. ARGV: node, grant TTL (ms),
/// headroom, then per trunk its calls here and its `max_calls`. Returns the grants in KEYS
/// order. Time is Redis's own (`TIME`), so the nodes' clocks do not matter.
pub const GRANT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, ttl, headroom = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local calls, max = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local reserved, used, nodes = 0, calls, 1
  local h = redis.call('HGETALL', key)
  for j = 1, #h, 2 do
    if h[j] ~= node then
      local r, c, e = string.match(h[j + 1], '^(%d+) (%d+) (%d+)$')
      if r and tonumber(e) > now then
        reserved = reserved + tonumber(r)
        used = used + tonumber(c)
        nodes = nodes + 1
      else
        redis.call('HDEL', key, h[j])
      end
    end
  end
  local free = max - used
  local share = 0
  if free > 0 then share = math.max(1, math.floor(free / nodes)) end
  local grant = math.min(calls + math.min(headroom, share), max - reserved)
  if grant < 0 then grant = 0 end
  redis.call('HSET', key, node, math.max(grant, calls) .. ' ' .. calls .. ' ' .. (now + ttl))
  redis.call('PEXPIRE', key, ttl)
  out[i] = grant
end
return out";

/// Cluster limit metrics.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// Renewals by outcome (`ok`, `failed`).
    pub syncs: IntCounterVec,
    /// Latency of one renewal (all trunks, one Lua call).
    pub sync_seconds: Histogram,
    /// 1 while this node admits by its local share (no valid grant from Redis).
    pub fallback: IntGauge,
    /// This node's current cap per trunk (its grant, or its local share).
    pub grant: IntGaugeVec,
}

impl ClusterMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            syncs: IntCounterVec::new(
                Opts::new(
                    "sbc_cluster_syncs_total",
                    "Renewals of this node's trunk call grants in Redis, by outcome (ok, failed).",
                ),
                &["outcome"],
            )?,
            sync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "sbc_cluster_sync_seconds",
                    "Latency of one renewal of this node's trunk call grants in Redis.",
                )
                .buckets(vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                ]),
            )?,
            fallback: IntGauge::new(
                "sbc_cluster_fallback",
                "1 while this node admits trunk calls by its local share (fallback_percent) \
                 because Redis gave no valid grant.",
            )?,
            grant: IntGaugeVec::new(
                Opts::new(
                    "sbc_cluster_trunk_grant",
                    "Calls this node may have on a trunk: its grant from Redis, or its local share.",
                ),
                &["trunk"],
            )?,
        };
        registry.register(Box::new(m.syncs.clone()))?;
        registry.register(Box::new(m.sync_seconds.clone()))?;
        registry.register(Box::new(m.fallback.clone()))?;
        registry.register(Box::new(m.grant.clone()))?;
        for o in ["ok", "failed"] {
            m.syncs.with_label_values(&[o]);
        }
        Ok(m)
    }
}

/// A node's local share of `max` calls (at least one).
pub fn local_share(max: u32, percent: u32) -> u32 {
    let share = (u64::from(max) * u64::from(percent)).div_ceil(100);
    u32::try_from(share).unwrap_or(max).max(1)
}

/// One renewal: the grants of `shares` (limited trunks only), in order.
pub async fn renew<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    node: &str,
    cfg: &Cluster,
    shares: &[TrunkShare],
) -> redis::RedisResult<Vec<u32>> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(GRANT).arg(shares.len());
    for s in shares {
        cmd.arg(trunk_key(&s.name));
    }
    cmd.arg(node).arg(cfg.grant_ttl_ms).arg(cfg.headroom);
    for s in shares {
        cmd.arg(s.calls).arg(s.max_calls.unwrap_or(u32::MAX));
    }
    cmd.query_async(conn).await
}

/// At start: the metrics, and with `[state.cluster]` the renewal task and the counts the
/// signaling shards must share (`None`: no cluster, the shards count as before).
pub fn start(
    config: &crate::config::Config,
    registry: &Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<SharedCalls>, prometheus::Error> {
    let metrics = ClusterMetrics::register(registry)?;
    let Some(state) = &config.state else {
        return Ok(None);
    };
    let Some(cfg) = state.cluster.clone() else {
        return Ok(None);
    };
    let Ok(settings) = Settings::from_config(state) else {
        // Validated by the loader; `state::start_from_config` logs the same refusal.
        return Ok(None);
    };
    let shared = SharedCalls::default();
    tokio::spawn(run(settings, cfg, shared.clone(), metrics, shutdown));
    Ok(Some(shared))
}

/// Renews this node's grants until `shutdown`; then gives its places back.
pub async fn run(
    settings: Settings,
    cfg: Cluster,
    shared: SharedCalls,
    metrics: ClusterMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let trust = Duration::from_millis(cfg.grant_ttl_ms / 2);
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.sync_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    // Until when the last grants are ours for sure (sent + half the TTL); None: fallback.
    let mut valid_until: Option<Instant> = None;
    let mut fallback_logged = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
        let shares: Vec<TrunkShare> = shared
            .trunk_shares()
            .into_iter()
            .filter(|s| s.max_calls.is_some())
            .collect();
        if shares.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            if conn.is_none() {
                conn = Some(settings.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => renew(c, &settings.node, &cfg, &shares).await,
                None => unreachable!("connected just above"),
            }
        })
        .await;
        metrics.sync_seconds.observe(sent.elapsed().as_secs_f64());
        match result {
            Ok(Ok(grants)) if grants.len() == shares.len() => {
                metrics.syncs.with_label_values(&["ok"]).inc();
                for (s, g) in shares.iter().zip(grants) {
                    shared.set_trunk_cap(&s.name, Some(g));
                    metrics
                        .grant
                        .with_label_values(&[&s.name])
                        .set(i64::from(g));
                }
                valid_until = Some(sent + trust);
                if fallback_logged {
                    tracing::info!(node = %settings.node, "trunk limits shared again");
                    fallback_logged = false;
                }
                metrics.fallback.set(0);
                continue;
            }
            Ok(Ok(_)) => tracing::warn!("cluster grant script answered the wrong count"),
            Ok(Err(e)) => tracing::debug!(error = %e, "cluster grant renewal failed"),
            Err(_) => tracing::debug!("cluster grant renewal timed out"),
        }
        metrics.syncs.with_label_values(&["failed"]).inc();
        conn = None;
        if valid_until.is_some_and(|u| Instant::now() < u) {
            continue;
        }
        // No valid grant (Redis down or slow, or never answered since start).
        valid_until = None;
        for s in &shares {
            let share = local_share(s.max_calls.unwrap_or(u32::MAX), cfg.fallback_percent);
            shared.set_trunk_cap(&s.name, Some(share));
            metrics
                .grant
                .with_label_values(&[&s.name])
                .set(i64::from(share));
        }
        metrics.fallback.set(1);
        if !fallback_logged {
            tracing::warn!(node = %settings.node, percent = cfg.fallback_percent,
                "no trunk grant from Redis: admitting the local share of each trunk's max_calls");
            fallback_logged = true;
        }
    }
    give_back(&settings, &shared, conn).await;
}

/// At shutdown: this node's entries go, so its places are free at once (not after the TTL).
async fn give_back(
    settings: &Settings,
    shared: &SharedCalls,
    conn: Option<redis::aio::MultiplexedConnection>,
) {
    let Some(mut conn) = conn else { return };
    let mut pipe = redis::pipe();
    for s in shared.trunk_shares() {
        pipe.hdel(trunk_key(&s.name), &settings.node).ignore();
    }
    let r = tokio::time::timeout(settings.timeout, pipe.query_async::<()>(&mut conn)).await;
    if !matches!(r, Ok(Ok(()))) {
        tracing::debug!("cluster grants not given back; they expire");
    }
}

#[cfg(test)]
mod tests;
