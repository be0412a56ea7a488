//! `[cdr]`: call detail records — JSON lines in a rotated file, optionally also rows in
//! PostgreSQL (see `docs/cdr.md`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Password;

/// `[cdr]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cdr {
    /// The JSON-lines file records are appended to; `None`: no file (and no records at all
    /// unless `postgres` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Rotate the file once it holds this many MiB (0: never by size).
    pub rotate_mib: u64,
    /// Rotate the file once it is this many seconds old (0: never by age).
    pub rotate_s: u64,
    /// When the file is fsync'ed: `never`, `rotate` (before a rotation and at shutdown) or
    /// `always` (after every batch of records).
    pub fsync: Fsync,
    /// Records waiting for the file writer (and, separately, for PostgreSQL); when full, new
    /// records are dropped and counted, calls never wait.
    pub queue: usize,
    /// `postgresql://user:password@host:port/db` (or a key=value connection string); rows go
    /// to the table `sbc_cdr` (created if missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Password>,
    /// Most rows written to PostgreSQL in one statement.
    pub postgres_batch: usize,
    /// Most records one `GET /api/v1/cdrs` returns.
    pub max_page: usize,
}

/// `[cdr] fsync`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Leave it to the kernel.
    Never,
    /// Before each rotation and at shutdown.
    #[default]
    Rotate,
    /// After every batch written.
    Always,
}

impl Default for Cdr {
    fn default() -> Self {
        Self {
            path: None,
            rotate_mib: 64,
            rotate_s: 86_400,
            fsync: Fsync::Rotate,
            queue: 10_000,
            postgres: None,
            postgres_batch: 200,
            max_page: 1_000,
        }
    }
}

impl Cdr {
    /// `(key path, reason)` for every value out of range.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: &str| out.push((format!("cdr.{k}"), m.to_owned()));
        if self.rotate_mib > 1_048_576 {
            bad("rotate_mib", "must be 0-1048576");
        }
        if self.rotate_s != 0 && !(60..=31_536_000).contains(&self.rotate_s) {
            bad("rotate_s", "must be 0 or 60-31536000");
        }
        if !(1..=1_000_000).contains(&self.queue) {
            bad("queue", "must be 1-1000000");
        }
        if !(1..=10_000).contains(&self.postgres_batch) {
            bad("postgres_batch", "must be 1-10000");
        }
        if !(1..=100_000).contains(&self.max_page) {
            bad("max_page", "must be 1-100000");
        }
        if let Some(p) = &self.path
            && (p.as_os_str().is_empty() || p.file_name().is_none())
        {
            bad("path", "must name a file");
        }
        if let Some(url) = &self.postgres
            && url.0.parse::<tokio_postgres::Config>().is_err()
        {
            bad("postgres", "not a PostgreSQL connection string");
        }
        out
    }
}
