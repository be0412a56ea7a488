//! Call detail records: one record per call attempt (answered or not) built from the B2BUA's
//! [`Event::CallRecord`](sbc_proto::b2bua::Event::CallRecord) and the media session's last
//! statistics, written as JSON lines by a dedicated thread (`file.rs`: rotation by size and
//! age, fsync policy) and optionally to PostgreSQL by a task (`postgres.rs`), and read back by
//! `GET /api/v1/cdrs` (`query.rs`). See `docs/cdr.md`.
//!
//! The signaling task only builds the record and offers it to two bounded queues; a full
//! queue drops the record and counts it (`sbc_cdr_dropped_total`), so a slow disk or an
//! unreachable database never delays a call. `[cdr]` changes apply at the next start.

pub mod file;
pub mod postgres;
pub mod query;
pub mod record;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sbc_proto::b2bua::CallRecord;

pub use query::{CdrQuery, Page};
pub use record::Cdr;

use crate::{config::Config, media::MediaManager};

/// CDR metrics (labels: `sink` = `file`|`postgres`, `reason` = `queue_full`|`write_error`).
#[derive(Debug, Clone)]
pub struct CdrMetrics {
    /// Records written, by sink.
    pub written: IntCounterVec,
    /// Records lost, by sink and reason.
    pub dropped: IntCounterVec,
    /// CDR file rotations.
    pub rotations: IntCounter,
    /// 1 while the PostgreSQL sink is connected.
    pub pg_connected: IntGauge,
}

impl CdrMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            written: IntCounterVec::new(
                Opts::new(
                    "sbc_cdr_written_total",
                    "Call detail records written, by sink.",
                ),
                &["sink"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "sbc_cdr_dropped_total",
                    "Call detail records lost, by sink and reason (queue_full, write_error).",
                ),
                &["sink", "reason"],
            )?,
            rotations: IntCounter::new("sbc_cdr_rotations_total", "CDR file rotations.")?,
            pg_connected: IntGauge::new(
                "sbc_cdr_postgres_connected",
                "1 while the CDR PostgreSQL sink is connected.",
            )?,
        };
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.rotations.clone()))?;
        registry.register(Box::new(m.pg_connected.clone()))?;
        for sink in ["file", "postgres"] {
            m.written.with_label_values(&[sink]);
            for reason in ["queue_full", "write_error"] {
                m.dropped.with_label_values(&[sink, reason]);
            }
        }
        Ok(m)
    }
}

/// Where the signaling task hands finished calls; cheap to clone.
#[derive(Debug, Clone)]
pub struct CdrSink {
    instance: String,
    file: Option<crossbeam_channel::Sender<Arc<Cdr>>>,
    postgres: Option<tokio::sync::mpsc::Sender<Arc<Cdr>>>,
    media: Option<MediaManager>,
    metrics: Option<CdrMetrics>,
}

/// What the daemon waits for at shutdown: the file writer's last flush and sync.
#[derive(Debug)]
pub struct CdrWriter(Option<std::thread::JoinHandle<()>>);

impl CdrWriter {
    /// Waits (bounded) for the file writer to finish once every [`CdrSink`] is dropped.
    pub async fn finish(self, within: Duration) {
        let Some(h) = self.0 else { return };
        let join = tokio::task::spawn_blocking(move || h.join());
        if tokio::time::timeout(within, join).await.is_err() {
            tracing::warn!("CDR writer did not finish in time");
        }
    }
}

impl CdrSink {
    /// A sink that records nothing (no `[cdr] path` nor `postgres`).
    pub fn disabled() -> Self {
        Self {
            instance: String::new(),
            file: None,
            postgres: None,
            media: None,
            metrics: None,
        }
    }

    /// Starts the writers `config` asks for (on the current tokio runtime).
    pub fn start(
        config: &Config,
        registry: &Registry,
        media: MediaManager,
    ) -> Result<(Self, CdrWriter), prometheus::Error> {
        let metrics = CdrMetrics::register(registry)?;
        let c = &config.cdr;
        let mut writer = CdrWriter(None);
        let file = match &c.path {
            Some(path) => {
                let (tx, rx) = crossbeam_channel::bounded(c.queue);
                let f = file::CdrFile::new(
                    file::FileSettings {
                        path: path.clone(),
                        rotate_bytes: c.rotate_mib.saturating_mul(1 << 20),
                        rotate_age: Duration::from_secs(c.rotate_s),
                        fsync: c.fsync,
                    },
                    metrics.clone(),
                );
                let spawned = std::thread::Builder::new()
                    .name("sbc-cdr".into())
                    .spawn(move || f.run(&rx));
                match spawned {
                    Ok(h) => {
                        writer.0 = Some(h);
                        Some(tx)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "CDR writer thread not started: no CDR file");
                        None
                    }
                }
            }
            None => None,
        };
        let postgres = c.postgres.as_ref().map(|url| {
            let (tx, rx) = tokio::sync::mpsc::channel(c.queue);
            tokio::spawn(postgres::run(
                url.0.clone(),
                rx,
                c.postgres_batch,
                metrics.clone(),
            ));
            tx
        });
        if file.is_some() || postgres.is_some() {
            // Each record carries its call's last media statistics.
            media.keep_final_views();
        }
        let sink = Self {
            instance: config.general.instance.clone(),
            file,
            postgres,
            media: Some(media),
            metrics: Some(metrics),
        };
        Ok((sink, writer))
    }

    /// Records one finished call attempt; `trunk` is the trunk's name. Never waits.
    pub fn record(&self, r: &CallRecord, trunk: Option<String>) {
        let Some(metrics) = &self.metrics else { return };
        if self.file.is_none() && self.postgres.is_none() {
            return;
        }
        let view = r
            .media
            .and_then(|s| self.media.as_ref().and_then(|m| m.take_final(s)));
        let cdr = Arc::new(Cdr::new(
            &self.instance,
            trunk,
            r,
            view.as_ref(),
            Instant::now(),
            SystemTime::now(),
        ));
        if let Some(tx) = &self.file
            && tx.try_send(cdr.clone()).is_err()
        {
            metrics
                .dropped
                .with_label_values(&["file", "queue_full"])
                .inc();
        }
        if let Some(tx) = &self.postgres
            && tx.try_send(cdr).is_err()
        {
            metrics
                .dropped
                .with_label_values(&["postgres", "queue_full"])
                .inc();
        }
    }
}

/// `GET /api/v1/cdrs` on `config`: from PostgreSQL when configured, else from the file.
pub async fn lookup(config: &crate::config::Cdr, f: query::Filter) -> Result<Page, LookupError> {
    if let Some(url) = &config.postgres {
        return Ok(postgres::query(&url.0, &f).await?);
    }
    let Some(path) = config.path.clone() else {
        return Err(LookupError::Disabled);
    };
    tokio::task::spawn_blocking(move || f.page(query::read(&path), "file"))
        .await
        .map_err(|_| LookupError::Disabled)
}

/// Why records cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Neither `[cdr] path` nor `postgres` is set.
    #[error("CDRs are not enabled ([cdr] path or postgres)")]
    Disabled,
    /// The database is not usable now.
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::record::{DirectionStats, StreamStats};
    use super::*;

    /// Record `i`: started at 2026-12-03T22:10:0i.000Z, outbound, odd ones busy (486).
    pub(crate) fn sample(i: u64) -> Cdr {
        let even = i.is_multiple_of(2);
        let stats = DirectionStats {
            packets: 50 * i,
            bytes: 8_600 * i,
            xdp_packets: 40 * i,
            dropped: 0,
            lost: 0,
            jitter_ms: Some(0.5),
        };
        Cdr {
            instance: "sbc".into(),
            call_handle: Some(i),
            start_time: format!("2026-12-03T22:10:{i:02}.000Z"),
            answer_time: even.then(|| format!("2026-12-03T22:10:{i:02}.500Z")),
            end_time: format!("2026-12-03T22:11:{i:02}.000Z"),
            duration_s: if even { 59.5 } else { 0.0 },
            direction: "outbound".into(),
            trunk: Some("carrier".into()),
            inside_call_id: Some(format!("in-{i}")),
            inside_calling: Some("100".into()),
            inside_called: Some(format!("030100{i:02}")),
            outside_call_id: Some(format!("out-{i}")),
            outside_calling: Some("+4930100".into()),
            outside_called: Some(format!("4930100{i:02}")),
            status: if even { 200 } else { 486 },
            reason: if even { "bye" } else { "rejected" }.into(),
            hangup: if even { "caller" } else { "callee" }.into(),
            media_path: "xdp".into(),
            media: vec![StreamStats {
                inside: stats.clone(),
                outside: stats,
            }],
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let registry = Registry::new();
        let metrics = CdrMetrics::register(&registry).expect("fresh registry");
        let (tx, rx) = crossbeam_channel::bounded(2);
        let sink = CdrSink {
            instance: "sbc".into(),
            file: Some(tx),
            postgres: None,
            media: None,
            metrics: Some(metrics.clone()),
        };
        let r = CallRecord {
            call: Some(1),
            from: sbc_proto::net::Side::Inside,
            trunk: None,
            started: None,
            answered_at: None,
            status: 404,
            reason: sbc_proto::b2bua::EndReason::Rejected(404),
            hangup: sbc_proto::b2bua::Hangup::Sbc,
            media: None,
            legs: [None, None],
        };
        for _ in 0..5 {
            sink.record(&r, None);
        }
        assert_eq!(rx.len(), 2);
        let dropped = metrics
            .dropped
            .with_label_values(&["file", "queue_full"])
            .get();
        assert_eq!(dropped, 3);
    }
}
