//! The writer task: the only one talking to Redis while the SBC runs. It keeps the latest
//! record of every live call in memory, so that it can refresh TTLs and rewrite everything
//! after Redis was unreachable, and it never holds up the signaling task (which only offers
//! to its bounded queue).

use std::{
    collections::{HashMap, HashSet},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use redis::aio::MultiplexedConnection;
use sbc_proto::b2bua::StateKey;
use tokio::sync::mpsc;

use super::{Settings, StateMetrics, Write, record_key};

/// Most records written in one pipeline during a rewrite or TTL refresh.
const BATCH: usize = 500;

/// Wall-clock milliseconds since the epoch (the record's `at`: a restore ages the record by
/// the time since).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Writer {
    settings: Settings,
    metrics: StateMetrics,
    conn: Option<MultiplexedConnection>,
    /// The latest record of every live call (what Redis should hold).
    live: HashMap<StateKey, Vec<u8>>,
    /// Records deleted while Redis failed: deleted again once it answers.
    gone: HashSet<StateKey>,
    /// A command failed since the last full rewrite: rewrite everything on the next success.
    stale: bool,
    /// No reconnection attempt before this (one per second at most while Redis is down).
    retry_at: Instant,
}

/// Runs until the sink is dropped (the signaling task ended).
pub async fn run(settings: Settings, mut rx: mpsc::Receiver<Write>, metrics: StateMetrics) {
    let refresh_every = settings.ttl / 3;
    let mut w = Writer {
        settings,
        metrics,
        conn: None,
        live: HashMap::new(),
        gone: HashSet::new(),
        stale: false,
        retry_at: Instant::now(),
    };
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => w.handle(m).await,
                None => break,
            },
            _ = refresh.tick() => w.refresh().await,
        }
    }
}

impl Writer {
    async fn handle(&mut self, m: Write) {
        match m {
            Write::Put(snap) => {
                let bytes = snap.encode();
                self.live.insert(snap.key.clone(), bytes);
                self.gone.remove(&snap.key);
                self.put(&snap.key).await;
            }
            Write::Delete(key) => {
                if self.live.remove(&key).is_some() || self.stale {
                    self.delete(key).await;
                }
            }
            Write::Resync(all) => {
                let keep: HashSet<StateKey> = all.iter().map(|s| s.key.clone()).collect();
                self.gone
                    .extend(self.live.keys().filter(|k| !keep.contains(*k)).cloned());
                self.live = all
                    .into_iter()
                    .map(|s| (s.key.clone(), s.encode()))
                    .collect();
                self.stale = true;
                self.refresh().await;
            }
        }
        self.metrics
            .records
            .set(i64::try_from(self.live.len()).unwrap_or(i64::MAX));
    }

    /// A connection, reconnecting at most once a second while Redis is down.
    async fn conn(&mut self) -> Option<MultiplexedConnection> {
        if let Some(c) = &self.conn {
            return Some(c.clone());
        }
        if Instant::now() < self.retry_at {
            return None;
        }
        self.retry_at = Instant::now() + std::time::Duration::from_secs(1);
        match self.settings.connect().await {
            Ok(c) => {
                self.conn = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis connection failed");
                None
            }
        }
    }

    /// Whether this node was fenced off (a pair node another one took over from): it
    /// writes nothing more, and forgets what it would have written.
    fn fenced(&mut self) -> bool {
        let fenced = self.settings.fence.as_ref().is_some_and(|f| f.is_fenced());
        if fenced {
            self.live.clear();
            self.gone.clear();
            self.stale = false;
        }
        fenced
    }

    fn failed(&mut self, e: Option<&redis::RedisError>) {
        if let (Some(e), Some(f)) = (e, &self.settings.fence)
            && super::fence::Fence::is_fenced_error(e)
        {
            f.step_down(&e.to_string());
            self.fenced();
            return;
        }
        self.metrics.failures.inc();
        self.metrics.up.set(0);
        if !self.stale {
            tracing::warn!(error = ?e.map(ToString::to_string),
                "call state write failed; calls go on, records are rewritten once Redis answers");
        }
        self.stale = true;
        // A broken connection is replaced on the next attempt.
        if e.is_some_and(|e| e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) {
            self.conn = None;
        }
    }

    fn pipe_put(&self, pipe: &mut redis::Pipeline, key: &StateKey, at: u64) {
        let Some(bytes) = self.live.get(key) else {
            return;
        };
        let rkey = record_key(&self.settings.node, key);
        if let Some(fence) = &self.settings.fence {
            // A pair node: only with the epoch it took (`fence.rs`).
            pipe.cmd("EVAL")
                .arg(super::fence::FENCED_PUT)
                .arg(2)
                .arg(&rkey)
                .arg(super::fence::EPOCH_KEY)
                .arg(fence.epoch())
                .arg(at)
                .arg(bytes.as_slice())
                .arg(self.settings.ttl.as_secs())
                .ignore();
            return;
        }
        pipe.cmd("HSET")
            .arg(&rkey)
            .arg("at")
            .arg(at)
            .arg("rec")
            .arg(bytes.as_slice())
            .ignore()
            .cmd("EXPIRE")
            .arg(&rkey)
            .arg(self.settings.ttl.as_secs())
            .ignore();
    }

    async fn put(&mut self, key: &StateKey) {
        if self.fenced() {
            return;
        }
        if self.stale {
            // Everything goes again (this record with it).
            self.refresh().await;
            return;
        }
        let Some(mut conn) = self.conn().await else {
            self.failed(None);
            return;
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.pipe_put(&mut pipe, key, unix_ms());
        let started = Instant::now();
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                self.metrics
                    .latency
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.writes.with_label_values(&["put"]).inc();
                self.metrics.up.set(1);
            }
            Err(e) => self.failed(Some(&e)),
        }
    }

    async fn delete(&mut self, key: StateKey) {
        let Some(mut conn) = self.conn().await else {
            self.gone.insert(key);
            self.failed(None);
            return;
        };
        let rkey = record_key(&self.settings.node, &key);
        match redis::cmd("DEL")
            .arg(&rkey)
            .query_async::<()>(&mut conn)
            .await
        {
            Ok(()) => {
                self.metrics.writes.with_label_values(&["delete"]).inc();
                self.metrics.up.set(1);
            }
            Err(e) => {
                self.gone.insert(key);
                self.failed(Some(&e));
            }
        }
    }

    /// Refreshes every live record's TTL; after a failure, rewrites every record and deletes
    /// the ones that ended meanwhile.
    async fn refresh(&mut self) {
        if self.fenced() {
            return;
        }
        if self.live.is_empty() && self.gone.is_empty() && !self.stale {
            return;
        }
        let Some(mut conn) = self.conn().await else {
            self.failed(None);
            return;
        };
        let rewrite = self.stale;
        let at = unix_ms();
        let keys: Vec<StateKey> = self.live.keys().cloned().collect();
        for chunk in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in chunk {
                if rewrite {
                    self.pipe_put(&mut pipe, key, at);
                } else {
                    pipe.cmd("EXPIRE")
                        .arg(record_key(&self.settings.node, key))
                        .arg(self.settings.ttl.as_secs())
                        .ignore();
                }
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                self.failed(Some(&e));
                return;
            }
        }
        let gone: Vec<StateKey> = self.gone.iter().cloned().collect();
        for chunk in gone.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("DEL")
                    .arg(record_key(&self.settings.node, key))
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                self.failed(Some(&e));
                return;
            }
        }
        if rewrite {
            tracing::info!(
                records = keys.len(),
                deleted = gone.len(),
                "call state rewritten to Redis"
            );
        }
        self.gone.clear();
        self.stale = false;
        self.metrics.up.set(1);
    }
}
