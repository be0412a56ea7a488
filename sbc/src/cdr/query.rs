//! `GET /api/v1/cdrs`: the filters and paging, applied to the JSON-lines files (the current
//! one and its rotations, oldest first) or, when configured, to PostgreSQL (`postgres.rs`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::record::{Cdr, canonical};

/// The query string of `GET /api/v1/cdrs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrQuery {
    /// Records that started at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Records that started before this time (RFC 3339).
    pub until: Option<String>,
    /// A number on either leg, calling or called (exact).
    pub number: Option<String>,
    /// A Call-ID of either leg (exact).
    pub call_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// The final status.
    pub status: Option<u16>,
    /// Records to skip (of those that match).
    pub offset: Option<usize>,
    /// Most records to return (default 100, at most `[cdr] max_page`).
    pub limit: Option<usize>,
}

/// A checked [`CdrQuery`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Canonical RFC 3339 lower bound on `start_time` (inclusive).
    pub since: Option<String>,
    /// Canonical RFC 3339 upper bound on `start_time` (exclusive).
    pub until: Option<String>,
    /// A number on either leg.
    pub number: Option<String>,
    /// A Call-ID of either leg.
    pub call_id: Option<String>,
    /// Direction.
    pub direction: Option<String>,
    /// Final status.
    pub status: Option<u16>,
    /// Matches to skip.
    pub offset: usize,
    /// Most to return.
    pub limit: usize,
}

/// A query parameter the API refuses (400 with the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct BadQuery {
    /// The parameter.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// One page of records.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// Where they came from: `file` or `postgres`.
    pub source: &'static str,
    /// The records, oldest end first.
    pub cdrs: Vec<Cdr>,
    /// The `offset` of the next page, when there may be one.
    pub next_offset: Option<usize>,
}

/// Records returned when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

impl CdrQuery {
    /// Checks the parameters; `max_page` bounds `limit`.
    pub fn check(self, max_page: usize) -> Result<Filter, BadQuery> {
        let time = |key: &'static str, v: Option<String>| {
            v.map(|t| {
                canonical(&t).ok_or_else(|| BadQuery {
                    key,
                    reason: "not an RFC 3339 time (2026-12-03T22:10:00Z)".into(),
                })
            })
            .transpose()
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT.min(max_page));
        if limit == 0 || limit > max_page {
            return Err(BadQuery {
                key: "limit",
                reason: format!("must be 1-{max_page}"),
            });
        }
        if let Some(d) = &self.direction
            && d != "inbound"
            && d != "outbound"
        {
            return Err(BadQuery {
                key: "direction",
                reason: "must be inbound or outbound".into(),
            });
        }
        Ok(Filter {
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            number: self.number,
            call_id: self.call_id,
            direction: self.direction,
            status: self.status,
            offset: self.offset.unwrap_or(0),
            limit,
        })
    }
}

impl Filter {
    /// Whether `c` passes every condition (times compare as canonical text).
    pub fn matches(&self, c: &Cdr) -> bool {
        self.since.as_ref().is_none_or(|s| c.start_time >= *s)
            && self.until.as_ref().is_none_or(|u| c.start_time < *u)
            && self
                .number
                .as_ref()
                .is_none_or(|n| c.numbers().any(|x| x == n))
            && self.call_id.as_ref().is_none_or(|id| {
                c.inside_call_id.as_ref() == Some(id) || c.outside_call_id.as_ref() == Some(id)
            })
            && self.direction.as_ref().is_none_or(|d| c.direction == *d)
            && self.status.is_none_or(|s| c.status == s)
    }

    /// One page of the matches among `records` (in order).
    pub fn page(&self, records: impl Iterator<Item = Cdr>, source: &'static str) -> Page {
        let mut cdrs = Vec::new();
        let mut more = false;
        for c in records.filter(|c| self.matches(c)).skip(self.offset) {
            if cdrs.len() == self.limit {
                more = true;
                break;
            }
            cdrs.push(c);
        }
        Page {
            source,
            cdrs,
            next_offset: more.then_some(self.offset + self.limit),
        }
    }
}

/// The CDR files of `path`: its rotations (`<name>.<suffix>`, not compressed ones), oldest
/// first by modification time, then `path` itself.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && !n.ends_with(".gz")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    rotated.sort();
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_owned());
    }
    out
}

/// Every record in the files of `path`, in order; lines that do not parse (a torn last line,
/// a foreign file) are skipped.
pub fn read(path: &Path) -> impl Iterator<Item = Cdr> {
    files(path)
        .into_iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .flat_map(|f| BufReader::new(f).lines().map_while(Result::ok))
        .filter_map(|l| serde_json::from_str(&l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::tests::sample;

    fn filter(q: CdrQuery) -> Filter {
        q.check(50).expect("valid query")
    }

    #[test]
    fn filters_by_time_number_call_id_direction_and_status() {
        // sample(i) starts at 22:10:0i, calls 100 → 49301000i, Call-IDs in-i/out-i.
        let all: Vec<Cdr> = (0..10).map(sample).collect();
        let ids = |f: &Filter| -> Vec<Option<u64>> {
            f.page(all.clone().into_iter(), "file")
                .cdrs
                .iter()
                .map(|c| c.call_handle)
                .collect()
        };
        let f = filter(CdrQuery {
            since: Some("2026-12-03T23:10:03+01:00".into()),
            until: Some("2026-12-03T22:10:05Z".into()),
            ..CdrQuery::default()
        });
        assert_eq!(ids(&f), [Some(3), Some(4)]);
        let f = filter(CdrQuery {
            number: Some("493010007".into()),
            ..CdrQuery::default()
        });
        assert_eq!(ids(&f), [Some(7)], "an outside (normalised) number");
        let f = filter(CdrQuery {
            number: Some("100".into()),
            ..CdrQuery::default()
        });
        assert_eq!(ids(&f).len(), 10, "an inside number");
        let f = filter(CdrQuery {
            call_id: Some("out-2".into()),
            ..CdrQuery::default()
        });
        assert_eq!(ids(&f), [Some(2)]);
        let f = filter(CdrQuery {
            status: Some(486),
            direction: Some("outbound".into()),
            ..CdrQuery::default()
        });
        assert_eq!(ids(&f), [Some(1), Some(3), Some(5), Some(7), Some(9)]);
    }

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let all: Vec<Cdr> = (0..10).map(sample).collect();
        let mut seen = Vec::new();
        let mut offset = Some(0);
        while let Some(o) = offset {
            let f = filter(CdrQuery {
                offset: Some(o),
                limit: Some(4),
                ..CdrQuery::default()
            });
            let p = f.page(all.clone().into_iter(), "file");
            seen.extend(p.cdrs.iter().map(|c| c.call_handle));
            offset = p.next_offset;
        }
        assert_eq!(seen, (0..10).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn bad_parameters_are_refused_with_their_key() {
        let bad = |q: CdrQuery| q.check(50).err().map(|e| e.key);
        let since = CdrQuery {
            since: Some("yesterday".into()),
            ..CdrQuery::default()
        };
        assert_eq!(bad(since), Some("since"));
        let limit = CdrQuery {
            limit: Some(51),
            ..CdrQuery::default()
        };
        assert_eq!(bad(limit), Some("limit"));
        let dir = CdrQuery {
            direction: Some("sideways".into()),
            ..CdrQuery::default()
        };
        assert_eq!(bad(dir), Some("direction"));
    }

    #[test]
    fn reads_rotated_files_oldest_first_then_the_current_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cdr.jsonl");
        let write = |p: &Path, ids: &[u64]| {
            let text: String = ids
                .iter()
                .map(|i| format!("{}\n", serde_json::to_string(&sample(*i)).expect("json")))
                .collect();
            std::fs::write(p, text).expect("write");
        };
        write(&dir.path().join("cdr.jsonl.20261203T000000000Z"), &[0, 1]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&dir.path().join("cdr.jsonl.20261203T010000000Z"), &[2]);
        std::fs::write(dir.path().join("cdr.jsonl.0.gz"), b"\x1f\x8b").expect("gz");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&path, &[3]);
        // A torn last line (crash mid-write) is skipped, not an error.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"instance\":"))
            .expect("append");
        let got: Vec<Option<u64>> = read(&path).map(|c| c.call_handle).collect();
        assert_eq!(got, [Some(0), Some(1), Some(2), Some(3)]);
    }
}
