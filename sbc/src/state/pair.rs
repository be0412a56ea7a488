//! Active/standby pair (`[state] peer`): two SBCs share a virtual address for SIP and media,
//! moved by keepalived (VRRP); both write their calls to one Redis.
//!
//! - **Takeover** ([`Pair::takeover`], `POST /api/v1/state/takeover`, called by keepalived's
//!   `notify_master` when this node gets the address): every record of the peer is renamed
//!   into this node's keyspace (atomically per record, so a record is never in both or in
//!   neither) and its calls are restored here exactly as after a restart. The standby does not
//!   keep a copy of the peer's calls while it waits: the records are read at takeover, which
//!   costs milliseconds (docs/scaling.md, measured) against the VRRP detection time, and a
//!   copy kept current by keyspace notifications would still need this read to be sure
//!   (notifications are lost while a subscriber reconnects).
//! - **Registration lease**: only the node holding `sbc:lease:register` registers to the
//!   trunks. A node tries for it once it took over, renews it every third of `lease_s`, and
//!   holds its registrations again when it cannot renew (another node has it, or Redis did
//!   not answer for `lease_s`). After a crash the lease runs out after at most `lease_s`; the
//!   carrier's binding (contact = the shared address) stays valid meanwhile.

use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;

use super::{
    Loaded, Settings, StateMetrics,
    load::{LoadError, read_records, scan},
    node_pattern,
};
use crate::signaling::SignalingHandle;

/// The Redis key of the registration lease (one per Redis database: one registering node).
pub const LEASE_KEY: &str = "sbc:lease:register";

/// The Redis key of `node`'s heartbeat (present while the node runs).
pub fn alive_key(node: &str) -> String {
    format!("sbc:alive:{node}")
}

/// Takes or renews the lease for ARGV[1] with a TTL of ARGV[2] ms; 1 if this node holds it,
/// -1 if the pair's epoch (KEYS[2]) is no longer ARGV[3] (another node took over since).
pub(super) const HOLD_LEASE: &str = r"
if (redis.call('HGET', KEYS[2], 'epoch') or '0') ~= ARGV[3] then
  return -1
end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Moves KEYS[1] to KEYS[2] if it still exists (its TTL may have run out); 1 if moved.
const MOVE_RECORD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
return 0";

/// Pair metrics.
#[derive(Debug, Clone)]
pub struct PairMetrics {
    /// Takeovers by outcome (`ok`, `failed`).
    pub takeovers: IntCounterVec,
    /// Seconds the last takeover took (claiming the records and restoring the calls).
    pub takeover_seconds: prometheus::Gauge,
    /// 1 while this node holds the registration lease.
    pub lease: IntGauge,
    /// 1 while this node is fenced off (another node took over with a newer epoch).
    pub fenced: IntGauge,
}

impl PairMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            takeovers: IntCounterVec::new(
                Opts::new(
                    "sbc_state_takeovers_total",
                    "Takeovers of the peer's calls (active/standby), by outcome (ok, failed, \
                     refused: the peer is alive, unauthorized: no takeover token).",
                ),
                &["outcome"],
            )?,
            takeover_seconds: prometheus::Gauge::new(
                "sbc_state_takeover_seconds",
                "Seconds the last takeover took (records claimed in Redis, calls restored).",
            )?,
            lease: IntGauge::new(
                "sbc_state_registration_lease",
                "1 while this node holds the registration lease and registers to the trunks.",
            )?,
            fenced: IntGauge::new(
                "sbc_state_fenced",
                "1 while this pair node is fenced off: another node took over with a newer epoch.",
            )?,
        };
        registry.register(Box::new(m.takeovers.clone()))?;
        registry.register(Box::new(m.takeover_seconds.clone()))?;
        registry.register(Box::new(m.lease.clone()))?;
        registry.register(Box::new(m.fenced.clone()))?;
        for o in ["ok", "failed", "refused", "unauthorized"] {
            m.takeovers.with_label_values(&[o]);
        }
        Ok(m)
    }
}

/// What a takeover did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Takeover {
    /// Records of the peer moved to this node.
    pub records: usize,
    /// Calls restored.
    pub restored: usize,
    /// Calls that could not be restored and were hung up (BYE on both legs).
    pub hung_up: usize,
    /// Milliseconds from the request to the restored calls.
    pub took_ms: u64,
}

/// Why a takeover failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// Reading or moving the records failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The peer still runs with calls (its heartbeat did not stop): taking them would make
    /// two nodes serve them. `?force=true` overrides.
    #[error("peer {0} is alive and has {1} calls; not taken over (force=true overrides)")]
    PeerAlive(String, usize),
    /// The signaling task is gone (stopping).
    #[error("the signaling task is not running")]
    SignalingGone,
}

/// This node's side of the pair.
#[derive(Debug)]
pub struct Pair {
    settings: Settings,
    peer: String,
    signaling: SignalingHandle,
    /// True once this node took over (it is the active one): it tries for the lease.
    active: watch::Sender<bool>,
    /// How long a heartbeat lives (the most a takeover waits for a dying peer's to go).
    alive: Duration,
    metrics: PairMetrics,
    state_metrics: StateMetrics,
}

impl Pair {
    /// With `[state] peer`: the pair and its lease task; `None` for a single node.
    pub fn start(
        config: &crate::config::Config,
        state: Option<&super::StateSink>,
        signaling: &SignalingHandle,
        registry: &Registry,
    ) -> Result<Option<Self>, prometheus::Error> {
        let metrics = PairMetrics::register(registry)?;
        let (Some(cfg), Some(sink)) = (&config.state, state) else {
            return Ok(None);
        };
        let Some(peer) = cfg.peer.clone() else {
            return Ok(None);
        };
        let Ok(mut settings) = Settings::from_config(cfg) else {
            // Validated by the loader; `state::start_from_config` logs the same refusal.
            return Ok(None);
        };
        // The writer's fence: the epoch the takeover takes is the one the writer writes with.
        let fence = sink.fence().cloned().unwrap_or_default();
        settings.fence = Some(fence.clone());
        let (active, active_rx) = watch::channel(false);
        let alive = Duration::from_millis(cfg.peer_alive_ms);
        tokio::spawn(heartbeat(settings.clone(), alive, fence.clone()));
        tokio::spawn(hold_lease(
            settings.clone(),
            Duration::from_secs(cfg.lease_s),
            active_rx,
            signaling.clone(),
            metrics.clone(),
            fence,
        ));
        Ok(Some(Self {
            settings,
            peer,
            signaling: signaling.clone(),
            active,
            alive,
            metrics,
            state_metrics: sink.metrics().clone(),
        }))
    }

    /// Whether a newer epoch fenced this node off (`fence.rs`): `/healthz` then fails, so
    /// keepalived's check gives the virtual address up (a restart rejoins as the standby).
    pub fn is_fenced(&self) -> bool {
        self.settings
            .fence
            .as_ref()
            .is_some_and(super::fence::Fence::is_fenced)
    }

    /// Moves the peer's records to this node and restores its calls here; this node is the
    /// active one from now on (it tries for the registration lease). Unless `force`, a peer
    /// that still has calls must have gone silent first: its heartbeat is given at most
    /// `peer_alive_ms` to run out (a peer killed a moment ago), else the takeover is refused.
    pub async fn takeover(&self, force: bool) -> Result<Takeover, TakeoverError> {
        let started = Instant::now();
        if !force && let Err(e) = self.peer_silent().await {
            self.metrics.takeovers.with_label_values(&["refused"]).inc();
            return Err(e);
        }
        // A new epoch first: from now on the peer's writes and lease renewals are refused.
        if let Err(e) = self.take_epoch().await {
            self.metrics.takeovers.with_label_values(&["failed"]).inc();
            return Err(e);
        }
        self.active.send_replace(true);
        let result = self.claim_and_restore(started).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics.takeovers.with_label_values(&[outcome]).inc();
        self.metrics
            .takeover_seconds
            .set(started.elapsed().as_secs_f64());
        result
    }

    async fn claim_and_restore(&self, started: Instant) -> Result<Takeover, TakeoverError> {
        let loaded = tokio::time::timeout(self.settings.load_timeout, self.claim())
            .await
            .map_err(|_| LoadError::Timeout(self.settings.load_timeout))??;
        self.state_metrics
            .restored
            .with_label_values(&["unreadable"])
            .inc_by(u64::try_from(loaded.unreadable.len()).unwrap_or(u64::MAX));
        let records = loaded.calls.len() + loaded.unreadable.len();
        let (restored, hung_up) = self
            .signaling
            .restore(loaded)
            .await
            .ok_or(TakeoverError::SignalingGone)?;
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(peer = %self.peer, records, restored, hung_up, took_ms,
            "took over the peer's calls");
        Ok(Takeover {
            records,
            restored,
            hung_up,
            took_ms,
        })
    }

    async fn take_epoch(&self) -> Result<(), TakeoverError> {
        let mut conn = self.settings.connect().await.map_err(LoadError::from)?;
        let epoch = super::fence::take(&mut conn, &self.settings.node)
            .await
            .map_err(LoadError::from)?;
        if let Some(f) = &self.settings.fence {
            f.hold(epoch);
        }
        self.metrics.fenced.set(0);
        tracing::info!(node = %self.settings.node, epoch, "took the pair's epoch");
        Ok(())
    }

    /// Counts a takeover request refused for want of the takeover token.
    pub fn count_unauthorized(&self) {
        self.metrics
            .takeovers
            .with_label_values(&["unauthorized"])
            .inc();
    }

    /// Ok once the peer has no calls or its heartbeat ran out (waiting at most one
    /// heartbeat lifetime for that).
    async fn peer_silent(&self) -> Result<(), TakeoverError> {
        let mut conn = self.settings.connect().await.map_err(LoadError::from)?;
        let key = alive_key(&self.peer);
        let deadline = Instant::now() + self.alive;
        loop {
            let alive: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(LoadError::from)?;
            if !alive {
                return Ok(());
            }
            let calls = scan(&mut conn, &node_pattern(&self.peer)).await?.len();
            if calls == 0 {
                // A standby (or an active node with no calls): nothing to serve twice.
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(peer = %self.peer, calls, "takeover refused: the peer is alive");
                return Err(TakeoverError::PeerAlive(self.peer.clone(), calls));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Renames every record of the peer into this node's keyspace and reads them.
    async fn claim(&self) -> Result<Loaded, LoadError> {
        let mut conn = self.settings.connect().await?;
        let pattern = node_pattern(&self.peer);
        // `sbc:<peer>:call:` — the pattern without its `*`.
        let prefix = &pattern[..pattern.len() - 1];
        let keys = scan(&mut conn, &pattern).await?;
        let mut moved = Vec::with_capacity(keys.len());
        for k in &keys {
            let Some(call) = k.strip_prefix(prefix) else {
                continue;
            };
            let to = format!("sbc:{}:call:{call}", self.settings.node);
            // EVAL, not EVALSHA: the script is a few lines and runs once per record.
            let done: i64 = redis::cmd("EVAL")
                .arg(MOVE_RECORD)
                .arg(2)
                .arg(k)
                .arg(&to)
                .query_async(&mut conn)
                .await?;
            if done == 1 {
                moved.push(to);
            }
        }
        read_records(&mut conn, &moved).await
    }
}

/// Keeps this node's heartbeat (`sbc:alive:<node>`, TTL `alive`) alive, renewing it every
/// quarter of it, so the peer's takeover can tell a live node from a dead one.
/// It also reads the pair's epoch: a node that holds an older one than Redis's steps down
/// (`fence.rs`) even when it has nothing to write.
async fn heartbeat(settings: Settings, alive: Duration, fence: super::fence::Fence) {
    let ms = u64::try_from(alive.as_millis()).unwrap_or(u64::MAX);
    let key = alive_key(&settings.node);
    let mut tick = tokio::time::interval(alive / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    let mut adopted = false;
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn = settings.connect().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        if !adopted {
            // A restarted active node (nobody took over meanwhile) keeps writing its records.
            match super::fence::adopt(c, &settings.node).await {
                Ok(e) => {
                    if e > 0 && fence.epoch() == 0 {
                        fence.hold(e);
                        tracing::info!(epoch = e, "still the pair's active node: epoch kept");
                    }
                    adopted = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "epoch not read");
                    conn = None;
                    continue;
                }
            }
        }
        let r: redis::RedisResult<((), Option<u64>)> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(ms)
            .cmd("HGET")
            .arg(super::fence::EPOCH_KEY)
            .arg("epoch")
            .query_async(c)
            .await;
        match r {
            Ok(((), current)) => {
                let mine = fence.epoch();
                if let Some(e) = current.filter(|&e| mine > 0 && e > mine) {
                    fence.step_down(&format!("epoch {e}"));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not renewed");
                conn = None;
            }
        }
    }
}

/// Keeps the registration lease while this node is active; tells the signaling task when it
/// may register and when it must stop.
async fn hold_lease(
    settings: Settings,
    lease: Duration,
    mut active: watch::Receiver<bool>,
    signaling: SignalingHandle,
    metrics: PairMetrics,
    fence: super::fence::Fence,
) {
    let gauge = metrics.lease.clone();
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    // Until when the lease is ours for sure (the last renewal + its TTL).
    let mut held_until: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = active.changed() => if changed.is_err() { return },
            () = fence.stepped_down(), if !fence.is_fenced() => {}
        }
        // A fenced node holds its registrations (the node with the newer epoch registers).
        metrics.fenced.set(i64::from(fence.is_fenced()));
        let want = *active.borrow() && !fence.is_fenced();
        let renewed = if want {
            if conn.is_none() {
                conn = settings.connect().await.ok();
            }
            match conn.as_mut() {
                Some(c) => {
                    let at = Instant::now();
                    let r: redis::RedisResult<i64> = redis::cmd("EVAL")
                        .arg(HOLD_LEASE)
                        .arg(2)
                        .arg(LEASE_KEY)
                        .arg(super::fence::EPOCH_KEY)
                        .arg(&settings.node)
                        .arg(lease_ms)
                        .arg(fence.epoch())
                        .query_async(c)
                        .await;
                    match r {
                        Ok(1) => Some(at),
                        Ok(-1) => {
                            fence.step_down("lease");
                            None
                        }
                        Ok(_) => None,
                        Err(e) => {
                            tracing::debug!(error = %e, "registration lease not renewed");
                            conn = None;
                            // Ours until it runs out in Redis.
                            held_until.and_then(|u| u.checked_sub(lease))
                        }
                    }
                }
                None => held_until.and_then(|u| u.checked_sub(lease)),
            }
        } else {
            None
        };
        let until = renewed.map(|at| at + lease);
        let holds = until.is_some_and(|u| u > Instant::now());
        if holds != held_until.is_some() {
            tracing::info!(node = %settings.node, holds, "registration lease");
            if signaling.set_registering(holds).await.is_none() {
                return;
            }
            gauge.set(i64::from(holds));
        }
        held_until = if holds { until } else { None };
    }
}
