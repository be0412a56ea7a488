//! Reading a node's records at start: every `sbc:<node>:call:*` hash, decoded and aged by the
//! wall-clock time since its write. Bounded by `[state] load_timeout_s`; on failure nothing is
//! restored (the calls' peers then find them gone, as without `[state]`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use sbc_proto::b2bua::CallSnapshot;

use super::{Settings, node_pattern, writer::unix_ms};

/// Keys asked for per SCAN step and per HMGET pipeline.
const BATCH: usize = 500;

/// What the start-up found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Decoded records, aged to now.
    pub calls: Vec<CallSnapshot>,
    /// Redis keys whose record could not be read (deleted, counted, logged).
    pub unreadable: Vec<String>,
}

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Redis refused or failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Took longer than `load_timeout_s`.
    #[error("loading call state took longer than {0:?}")]
    Timeout(Duration),
}

/// Loads `settings.node`'s records.
pub async fn load(settings: &Settings) -> Result<Loaded, LoadError> {
    tokio::time::timeout(settings.load_timeout, load_all(settings))
        .await
        .map_err(|_| LoadError::Timeout(settings.load_timeout))?
}

async fn load_all(settings: &Settings) -> Result<Loaded, LoadError> {
    let mut conn = settings.connect().await?;
    let keys = scan(&mut conn, &node_pattern(&settings.node)).await?;
    read_records(&mut conn, &keys).await
}

/// Every key matching `pattern`, sorted, without duplicates (SCAN may repeat one).
pub(super) async fn scan(
    conn: &mut MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<String>, LoadError> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Reads and ages the records at `keys`; unreadable ones are deleted. A key that vanished
/// meanwhile (its TTL ran out) counts as unreadable.
pub(super) async fn read_records(
    conn: &mut MultiplexedConnection,
    keys: &[String],
) -> Result<Loaded, LoadError> {
    let now = unix_ms();
    let mut out = Loaded::default();
    for chunk in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("HMGET").arg(k).arg("at").arg("rec");
        }
        let rows: Vec<(Option<u64>, Option<Vec<u8>>)> = pipe.query_async(conn).await?;
        for (k, (at, rec)) in chunk.iter().zip(rows) {
            let decoded = rec
                .ok_or_else(|| "no record".to_owned())
                .and_then(|r| CallSnapshot::decode(&r).map_err(|e| e.to_string()));
            match decoded {
                Ok(s) => {
                    let age = Duration::from_millis(now.saturating_sub(at.unwrap_or(now)));
                    out.calls.push(s.aged(age));
                }
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "unreadable call state record; deleted");
                    out.unreadable.push(k.clone());
                }
            }
        }
    }
    if !out.unreadable.is_empty() {
        let mut pipe = redis::pipe();
        for k in &out.unreadable {
            pipe.cmd("DEL").arg(k).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    Ok(out)
}
