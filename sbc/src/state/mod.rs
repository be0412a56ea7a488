//! Call state in Redis (`[state]`, issue 19): answered calls are persisted so a restarted SBC
//! continues them (`sbc_proto::b2bua` snapshot/restore does the call logic; this is the I/O).
//!
//! - The signaling task offers each [`CallSnapshot`] and each end to a bounded queue
//!   ([`StateSink`]); a full queue drops the write, counts it
//!   (`sbc_state_writes_dropped_total`) and asks the signaling task for a full rewrite on its
//!   next tick — signaling never waits for Redis.
//! - One writer task ([`writer`]) keeps the latest record of every live call, writes it to
//!   `sbc:<node>:call:<key>` (a hash: `at` = wall-clock ms of the write, `rec` = the record) with
//!   a TTL, refreshes the TTL of live records every third of it, and after Redis failed it
//!   rewrites everything once Redis answers again.
//! - At start, [`load`] reads the node's records; the signaling task restores them before it
//!   takes its first message, and hangs up (BYE on both legs) what cannot be restored.

pub mod bans;
pub mod cluster;
pub mod fence;
pub mod load;
pub mod pair;
pub mod writer;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sbc_proto::b2bua::{CallSnapshot, StateKey};
use tokio::sync::mpsc;

pub use load::{Loaded, load};

use crate::config::State as StateConfig;

/// The Redis key of a call's record on `node`.
pub fn record_key(node: &str, key: &StateKey) -> String {
    format!("sbc:{node}:call:{key}")
}

/// The pattern of every record of `node`.
pub fn node_pattern(node: &str) -> String {
    format!("sbc:{node}:call:*")
}

/// State persistence metrics.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// Records written (`put`) and deleted (`delete`) in Redis.
    pub writes: IntCounterVec,
    /// Writes dropped because the queue to the writer was full.
    pub dropped: IntCounter,
    /// Redis commands that failed (error or timeout).
    pub failures: IntCounter,
    /// Latency of one record write (the pipelined HSET + EXPIRE), in seconds.
    pub latency: Histogram,
    /// Live records the writer keeps in Redis.
    pub records: IntGauge,
    /// 1 while the last Redis command succeeded.
    pub up: IntGauge,
    /// Records found at start, by outcome (`restored`, `hung_up`, `unreadable`).
    pub restored: IntCounterVec,
    /// Seconds the start-up spent loading and restoring calls.
    pub restore_seconds: prometheus::Gauge,
}

impl StateMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            writes: IntCounterVec::new(
                Opts::new(
                    "sbc_state_writes_total",
                    "Call state records written to Redis, by operation (put, delete).",
                ),
                &["op"],
            )?,
            dropped: IntCounter::new(
                "sbc_state_writes_dropped_total",
                "Call state writes dropped because the queue to the Redis writer was full.",
            )?,
            failures: IntCounter::new(
                "sbc_state_write_failures_total",
                "Redis commands of the call state writer that failed or timed out.",
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "sbc_state_write_seconds",
                    "Latency of one call state record write to Redis.",
                )
                .buckets(vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            records: IntGauge::new(
                "sbc_state_records",
                "Live call state records this node keeps in Redis.",
            )?,
            up: IntGauge::new(
                "sbc_state_redis_up",
                "1 while the call state writer's last Redis command succeeded.",
            )?,
            restored: IntCounterVec::new(
                Opts::new(
                    "sbc_state_restored_total",
                    "Call state records found at start, by outcome (restored, hung_up, unreadable).",
                ),
                &["outcome"],
            )?,
            restore_seconds: prometheus::Gauge::new(
                "sbc_state_restore_seconds",
                "Seconds the last start spent loading and restoring persisted calls.",
            )?,
        };
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.restored.clone()))?;
        registry.register(Box::new(m.restore_seconds.clone()))?;
        for op in ["put", "delete"] {
            m.writes.with_label_values(&[op]);
        }
        for outcome in ["restored", "hung_up", "unreadable"] {
            m.restored.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}

/// One write for the writer task.
#[derive(Debug)]
pub enum Write {
    /// A call's record changed.
    Put(Box<CallSnapshot>),
    /// A call ended: its record goes.
    Delete(StateKey),
    /// Every live call's record (after dropped writes): replaces what the writer keeps.
    Resync(Vec<CallSnapshot>),
}

/// Where the signaling task offers call state; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateSink {
    tx: mpsc::Sender<Write>,
    /// The writer's fence (a pair node), shared with the pair's takeover and lease.
    fence: Option<fence::Fence>,
    /// Set when a write was dropped: the signaling task sends a [`Write::Resync`].
    resync: Arc<AtomicBool>,
    metrics: StateMetrics,
}

impl StateSink {
    /// A sink and the receiving end for [`writer::run`].
    pub fn channel(queue: usize, metrics: StateMetrics) -> (Self, mpsc::Receiver<Write>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let sink = Self {
            tx,
            fence: None,
            resync: Arc::new(AtomicBool::new(false)),
            metrics,
        };
        (sink, rx)
    }

    /// Offers a write without waiting; a full queue drops it, counts it and asks for a resync.
    pub fn offer(&self, w: Write) {
        if self.tx.try_send(w).is_err() {
            self.metrics.dropped.inc();
            self.resync.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a full rewrite is due (and clears the request).
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::Relaxed)
    }

    /// The metrics (for the restore at start).
    pub fn metrics(&self) -> &StateMetrics {
        &self.metrics
    }

    /// The writer's fence (a pair node).
    pub fn fence(&self) -> Option<&fence::Fence> {
        self.fence.as_ref()
    }
}

/// The settings the writer and the loader use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Redis client (no connection yet).
    pub client: redis::Client,
    /// This node's name.
    pub node: String,
    /// Record TTL.
    pub ttl: Duration,
    /// Per-command timeout.
    pub timeout: Duration,
    /// Start-up load limit.
    pub load_timeout: Duration,
    /// Queue length.
    pub queue: usize,
    /// A pair node's epoch: its record writes are fenced by it (`None`: a single node).
    pub fence: Option<fence::Fence>,
}

impl Settings {
    /// From `[state]` (validated by the loader, so the URL parses).
    pub fn from_config(c: &StateConfig) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(c.redis.0.as_str())?,
            node: c.node.clone(),
            ttl: Duration::from_secs(c.ttl_s),
            timeout: Duration::from_millis(c.timeout_ms),
            load_timeout: Duration::from_secs(c.load_timeout_s),
            queue: c.queue,
            fence: c.peer.is_some().then(fence::Fence::default),
        })
    }

    /// A connection with this node's timeouts.
    pub async fn connect(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }
}

/// Starts the writer task; returns the sink for the signaling task and the writer's handle.
pub fn start(settings: Settings, metrics: StateMetrics) -> (StateSink, StateWriter) {
    let (mut sink, rx) = StateSink::channel(settings.queue, metrics.clone());
    sink.fence = settings.fence.clone();
    let task = tokio::spawn(writer::run(settings, rx, metrics));
    (sink, StateWriter(Some(task)))
}

/// The writer task, to wait for at shutdown: once the signaling task (the last sink) is gone
/// it writes what is queued — the deletes of calls a drain ended above all, which a restart
/// would otherwise restore — and ends.
#[derive(Debug, Default)]
pub struct StateWriter(Option<tokio::task::JoinHandle<()>>);

impl StateWriter {
    /// Waits at most `limit` for the queued writes.
    pub async fn finish(self, limit: Duration) {
        if let Some(task) = self.0
            && tokio::time::timeout(limit, task).await.is_err()
        {
            tracing::warn!("call state writes still queued at exit are lost");
        }
    }
}

/// At start: the metrics, and with `[state]` the writer task and this node's records (a load
/// failure is logged and counted; the SBC starts without the old calls).
pub async fn start_from_config(
    config: &crate::config::Config,
    registry: &Registry,
) -> Result<(Option<StateSink>, StateWriter, Loaded), prometheus::Error> {
    let metrics = StateMetrics::register(registry)?;
    let Some(cfg) = &config.state else {
        return Ok((None, StateWriter::default(), Loaded::default()));
    };
    let settings = match Settings::from_config(cfg) {
        Ok(s) => s,
        Err(e) => {
            // The loader validated the URL; this is not reachable with a checked config.
            tracing::error!(error = %e, "[state] redis URL unusable; calls are not persisted");
            return Ok((None, StateWriter::default(), Loaded::default()));
        }
    };
    let started = std::time::Instant::now();
    let loaded = match load(&settings).await {
        Ok(l) => l,
        Err(e) => {
            metrics.failures.inc();
            tracing::error!(error = %e, node = %settings.node,
                "loading persisted calls failed; they are not restored");
            Loaded::default()
        }
    };
    metrics.restore_seconds.set(started.elapsed().as_secs_f64());
    let (sink, writer) = start(settings, metrics);
    Ok((Some(sink), writer, loaded))
}

#[cfg(test)]
mod tests;
