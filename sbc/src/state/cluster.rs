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
//! **Calls per second.** A trunk's `max_cps` is counted in Redis per second of Redis's clock
//! (`sbc:cluster:cps:<trunk>`): at each renewal a node asks for enough new calls to last
//! until its next renewals ([`rate_want`]) and gets at most what the second has left; the
//! allowance is taken call by call locally and dropped when the second changes.
//!
//! **Redis down or slow.** A renewal that fails or takes longer than `timeout_ms` is
//! counted; once the last grant is older than half of `grant_ttl_ms` (before the other nodes
//! drop it) the node admits `fallback_percent` of each trunk's `max_calls` and `max_cps` on
//! its own and `sbc_cluster_fallback` is 1 (alert `SbcClusterLimitsLocal`).

use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sbc_proto::b2bua::{SharedCalls, TrunkShare};
use tokio::sync::watch;

use super::Settings;
use crate::config::Cluster;

/// The Redis hash of trunk `name`'s call grants.
pub fn trunk_key(name: &str) -> String {
    format!("sbc:cluster:calls:{name}")
}

/// The Redis hash of trunk `name`'s calls per second (the current second and its count).
pub fn rate_key(name: &str) -> String {
    format!("sbc:cluster:cps:{name}")
}

/// Renews this node's grants. KEYS: per trunk its call hash and its rate hash. ARGV: node,
/// grant TTL (ms), headroom, then per trunk: its calls here, its `max_calls` (0: none), its
/// `max_cps` (0: none), how many new calls this node wants until its next renewals, and what
/// it still holds of its last rate grant with the second that grant was for (-1: none). What
/// it holds counts against what it wants only in that second: in a new second it is void
/// (the node drops it on the answer), so the node is granted its whole want again.
/// Returns per trunk the call grant (-1: none) and the calls granted this second, then the
/// second (Redis's own clock: `TIME`, so the nodes' clocks do not matter).
pub const GRANT: &str = r"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, ttl, headroom = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS / 2 do
  local key, rkey = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 6 * i - 2
  local calls, max = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local cps, want = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local held_sec, held = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local grant = -1
  if max > 0 then
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
    grant = math.min(calls + math.min(headroom, share), max - reserved)
    if grant < 0 then grant = 0 end
    redis.call('HSET', key, node, math.max(grant, calls) .. ' ' .. calls .. ' ' .. (now + ttl))
    redis.call('PEXPIRE', key, ttl)
  end
  local rate = 0
  local ask = want
  if held_sec == sec then ask = math.max(0, want - held) end
  if cps > 0 and ask > 0 then
    local taken = 0
    if tonumber(redis.call('HGET', rkey, 'sec') or '-1') == sec then
      taken = tonumber(redis.call('HGET', rkey, 'taken') or '0')
    else
      redis.call('HSET', rkey, 'sec', sec, 'taken', 0)
    end
    rate = math.max(0, math.min(ask, cps - taken))
    redis.call('HINCRBY', rkey, 'taken', rate)
    redis.call('PEXPIRE', rkey, 2000)
  end
  out[2 * i - 1] = grant
  out[2 * i] = rate
end
out[#out + 1] = sec
return out";

/// What one trunk got from one renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Calls this node may have on the trunk (`None`: the trunk has no `max_calls`).
    pub calls: Option<u32>,
    /// New calls this node may admit in `second` (0 without `max_cps`).
    pub rate: u32,
    /// The cluster's current second (Redis time, Unix seconds).
    pub second: i64,
}

/// What a node asks of one trunk's calls per second at a renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateAsk {
    /// New calls wanted until the next renewals ([`rate_want`]; 0: the trunk has no
    /// `max_cps`).
    pub want: u32,
    /// What the node still holds of its last rate grant, and the second (Redis's) that grant
    /// was for.
    pub held: Option<(i64, u32)>,
}

/// How many new calls per second a node asks for at each renewal: enough for twice the
/// time to the next renewal at the full rate, at least one, at most the rate.
pub fn rate_want(max_cps: u32, sync_ms: u64) -> u32 {
    let want = (u64::from(max_cps) * sync_ms * 2).div_ceil(1000);
    u32::try_from(want)
        .unwrap_or(max_cps)
        .clamp(1, max_cps.max(1))
}

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

/// One renewal: the grants of `shares` in order; `asks[i]` is what this node asks of trunk
/// `i`'s calls per second.
pub async fn renew<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    node: &str,
    cfg: &Cluster,
    shares: &[TrunkShare],
    asks: &[RateAsk],
) -> redis::RedisResult<Vec<Grant>> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(GRANT).arg(shares.len() * 2);
    for s in shares {
        cmd.arg(trunk_key(&s.name)).arg(rate_key(&s.name));
    }
    cmd.arg(node).arg(cfg.grant_ttl_ms).arg(cfg.headroom);
    for (s, ask) in shares.iter().zip(asks) {
        cmd.arg(s.calls)
            .arg(s.max_calls.unwrap_or(0))
            .arg(s.max_cps.unwrap_or(0))
            .arg(ask.want);
        match ask.held {
            Some((second, left)) => cmd.arg(second).arg(left),
            None => cmd.arg(-1).arg(0),
        };
    }
    let out: Vec<i64> = cmd.query_async(conn).await?;
    let (Some((&second, pairs)), true) = (out.split_last(), out.len() == shares.len() * 2 + 1)
    else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "cluster grant script answered the wrong count",
        )));
    };
    Ok(pairs
        .chunks_exact(2)
        .map(|g| Grant {
            calls: u32::try_from(g[0]).ok(),
            rate: u32::try_from(g[1]).unwrap_or(0),
            second,
        })
        .collect())
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
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    // Until when the last grants are ours for sure (sent + half the TTL); None: fallback.
    let mut valid_until: Option<Instant> = None;
    // The cluster second the node's rate allowance is for (None: none held).
    let mut second: Option<i64> = None;
    // In fallback: when the local second of the local rate share started.
    let mut local_second: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
        let shares: Vec<TrunkShare> = shared
            .trunk_shares()
            .into_iter()
            .filter(|s| s.max_calls.is_some() || s.max_cps.is_some())
            .collect();
        if shares.is_empty() {
            continue;
        }
        // Top the allowance up to what lasts until the next renewals.
        let asks: Vec<RateAsk> = shares
            .iter()
            .map(|s| RateAsk {
                want: s.max_cps.map_or(0, |rate| rate_want(rate, cfg.sync_ms)),
                held: second.zip(s.cps_left),
            })
            .collect();
        let sent = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let mut c = match conn.clone() {
                Some(c) => c,
                None => settings.connect().await?,
            };
            let r = renew(&mut c, &settings.node, &cfg, &shares, &asks).await;
            conn = Some(c);
            r
        })
        .await;
        metrics.sync_seconds.observe(sent.elapsed().as_secs_f64());
        match result {
            Ok(Ok(grants)) => {
                metrics.syncs.with_label_values(&["ok"]).inc();
                for (s, g) in shares.iter().zip(&grants) {
                    if let Some(calls) = g.calls {
                        shared.set_trunk_cap(&s.name, Some(calls));
                        metrics
                            .grant
                            .with_label_values(&[&s.name])
                            .set(i64::from(calls));
                    }
                    if s.max_cps.is_some() {
                        // A new second: what was left of the last one is gone (Redis
                        // counted it there).
                        if second == Some(g.second) {
                            shared.add_trunk_cps_left(&s.name, g.rate);
                        } else {
                            shared.set_trunk_cps_left(&s.name, Some(g.rate));
                        }
                    }
                }
                second = grants.first().map(|g| g.second);
                valid_until = Some(sent + trust);
                local_second = None;
                if metrics.fallback.get() == 1 {
                    tracing::info!(node = %settings.node, "trunk limits shared again");
                }
                metrics.fallback.set(0);
                continue;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cluster grant renewal failed"),
            Err(_) => tracing::debug!("cluster grant renewal timed out"),
        }
        metrics.syncs.with_label_values(&["failed"]).inc();
        conn = None;
        if valid_until.is_some_and(|u| Instant::now() < u) {
            continue;
        }
        // No valid grant (Redis down or slow, or never answered since start): the local
        // share of each limit, the rate one in local seconds.
        valid_until = None;
        second = None;
        let new_second = local_second.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if new_second {
            local_second = Some(Instant::now());
        }
        for s in &shares {
            if let Some(max) = s.max_calls {
                let share = local_share(max, cfg.fallback_percent);
                shared.set_trunk_cap(&s.name, Some(share));
                metrics
                    .grant
                    .with_label_values(&[&s.name])
                    .set(i64::from(share));
            }
            if let (Some(rate), true) = (s.max_cps, new_second) {
                let share = local_share(rate, cfg.fallback_percent);
                shared.set_trunk_cps_left(&s.name, Some(share));
            }
        }
        if metrics.fallback.get() == 0 {
            tracing::warn!(node = %settings.node, percent = cfg.fallback_percent,
                "no trunk grant from Redis: admitting the local share of each trunk's limits");
        }
        metrics.fallback.set(1);
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
