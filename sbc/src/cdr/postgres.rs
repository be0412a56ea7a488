//! The optional PostgreSQL sink (`[cdr] postgres`): a task that writes records in batches to
//! the table `sbc_cdr` (schema below and in `docs/cdr.md`, created if missing), and the
//! query behind `GET /api/v1/cdrs` when a database is configured.
//!
//! Calls never wait for it: records reach the task through a bounded queue (full: dropped and
//! counted), a batch is kept across reconnects (connection lost) and dropped and counted only
//! when the database refuses it.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls, types::ToSql};

use super::{
    CdrMetrics,
    query::{Filter, Page},
    record::{Cdr, canonical},
};

/// The table, created on connect if missing. Column names are the JSON keys of [`Cdr`].
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sbc_cdr (
    id              bigserial PRIMARY KEY,
    instance        text NOT NULL,
    call_handle     bigint,
    start_time      timestamptz NOT NULL,
    answer_time     timestamptz,
    end_time        timestamptz NOT NULL,
    duration_s      double precision NOT NULL,
    direction       text NOT NULL,
    trunk           text,
    inside_call_id  text,
    inside_calling  text,
    inside_called   text,
    outside_call_id text,
    outside_calling text,
    outside_called  text,
    status          integer NOT NULL,
    reason          text NOT NULL,
    hangup          text NOT NULL,
    media_path      text NOT NULL,
    media           jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS sbc_cdr_start_time ON sbc_cdr (start_time);
";

/// The columns written and read, in order (all but `id`).
const COLUMNS: &str = "instance, call_handle, start_time, answer_time, end_time, duration_s, \
    direction, trunk, inside_call_id, inside_calling, inside_called, outside_call_id, \
    outside_calling, outside_called, status, reason, hangup, media_path, media";

/// Longest wait for a connection (the writer retries; the API answers 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two connection attempts of the writer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Connecting, or a statement, failed.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection in time.
    #[error("postgres: no connection within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// Connects with the session in UTC (so times read back in a fixed form) and the table made.
async fn connect(url: &str) -> Result<Client, PgError> {
    let mut cfg: tokio_postgres::Config = url.parse()?;
    cfg.connect_timeout(CONNECT_TIMEOUT);
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(NoTls))
        .await
        .map_err(|_| PgError::Timeout)??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "CDR database connection ended");
        }
    });
    client
        .batch_execute("SET TIME ZONE 'UTC'; SET client_min_messages TO warning;")
        .await?;
    client.batch_execute(SCHEMA).await?;
    Ok(client)
}

/// Writes what arrives on `rx` until every sender is gone.
pub async fn run(url: String, mut rx: mpsc::Receiver<Arc<Cdr>>, max: usize, m: CdrMetrics) {
    let mut backoff = Duration::from_secs(1);
    let mut batch: Vec<Arc<Cdr>> = Vec::with_capacity(max);
    'connect: loop {
        let client = match connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                m.pg_connected.set(0);
                tracing::warn!(error = %e, retry_s = backoff.as_secs(), "CDR database unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        m.pg_connected.set(1);
        backoff = Duration::from_secs(1);
        loop {
            if batch.is_empty() {
                match rx.recv().await {
                    Some(r) => batch.push(r),
                    None => return,
                }
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            match insert(&client, &batch).await {
                Ok(()) => {
                    m.written
                        .with_label_values(&["postgres"])
                        .inc_by(batch.len() as u64);
                    batch.clear();
                }
                Err(e) if client.is_closed() => {
                    // Kept for the next connection.
                    tracing::warn!(error = %e, "CDR database connection lost");
                    m.pg_connected.set(0);
                    continue 'connect;
                }
                Err(e) => {
                    m.dropped
                        .with_label_values(&["postgres", "write_error"])
                        .inc_by(batch.len() as u64);
                    tracing::warn!(error = %e, records = batch.len(), "CDR database refused records");
                    batch.clear();
                }
            }
        }
    }
}

/// One statement for the whole batch: the records as one JSON array, unpacked by the server.
async fn insert(client: &Client, batch: &[Arc<Cdr>]) -> Result<(), tokio_postgres::Error> {
    let rows: Vec<&Cdr> = batch.iter().map(AsRef::as_ref).collect();
    // Serialising plain data cannot fail; an empty array inserts nothing.
    let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "INSERT INTO sbc_cdr ({COLUMNS}) SELECT {COLUMNS} \
         FROM jsonb_populate_recordset(NULL::sbc_cdr, $1::text::jsonb)"
    );
    client.execute(&sql, &[&json]).await.map(|_| ())
}

/// One page of the records matching `f`, ordered like the file (by end, then insertion).
pub async fn query(url: &str, f: &Filter) -> Result<Page, PgError> {
    let client = connect(url).await?;
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut param = |cond: &str, v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        conds.push(cond.replace('$', &format!("${}", params.len())));
    };
    if let Some(s) = &f.since {
        param("start_time >= $::text::timestamptz", Box::new(s.clone()));
    }
    if let Some(u) = &f.until {
        param("start_time < $::text::timestamptz", Box::new(u.clone()));
    }
    if let Some(n) = &f.number {
        param(
            "$::text IN (inside_calling, inside_called, outside_calling, outside_called)",
            Box::new(n.clone()),
        );
    }
    if let Some(id) = &f.call_id {
        param(
            "$::text IN (inside_call_id, outside_call_id)",
            Box::new(id.clone()),
        );
    }
    if let Some(d) = &f.direction {
        param("direction = $::text", Box::new(d.clone()));
    }
    if let Some(s) = f.status {
        param("status = $::int4", Box::new(i32::from(s)));
    }
    let limit = i64::try_from(f.limit + 1).unwrap_or(i64::MAX);
    let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
    params.push(Box::new(limit));
    params.push(Box::new(offset));
    let n = params.len();
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT row_to_json(c)::text FROM (SELECT {COLUMNS} FROM sbc_cdr {filter} \
         ORDER BY end_time, id LIMIT ${} OFFSET ${n}) c",
        n - 1
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &refs).await?;
    let mut cdrs: Vec<Cdr> = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|t| serde_json::from_str::<Cdr>(&t).ok())
        .map(normalise)
        .collect();
    let more = cdrs.len() > f.limit;
    cdrs.truncate(f.limit);
    Ok(Page {
        source: "postgres",
        cdrs,
        next_offset: more.then_some(f.offset + f.limit),
    })
}

/// Times as the file writes them (the database prints `+00:00` and drops trailing zeros).
fn normalise(mut c: Cdr) -> Cdr {
    let fix = |t: &mut String| {
        if let Some(x) = canonical(t) {
            *t = x;
        }
    };
    fix(&mut c.start_time);
    fix(&mut c.end_time);
    if let Some(a) = &mut c.answer_time {
        fix(a);
    }
    c
}
