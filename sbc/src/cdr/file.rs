//! The JSON-lines file: a dedicated thread appends the records it is handed, rotates the file
//! by size and age (renamed to `<path>.<UTC time>`, a new file opened), fsyncs per policy, and
//! reopens the path when someone else moved it away (logrotate). Write errors drop records
//! (counted); the calls never wait for the disk.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{CdrMetrics, record::Cdr};
use crate::config::Fsync;

/// How the file is rotated and synced.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The file records are appended to.
    pub path: PathBuf,
    /// Rotate at this size in bytes (0: never by size).
    pub rotate_bytes: u64,
    /// Rotate when the open file is this old (zero: never by age).
    pub rotate_age: Duration,
    /// When to fsync.
    pub fsync: Fsync,
}

/// Most records written between two checks of rotation and of the path.
const BATCH: usize = 512;
/// How often an idle writer wakes to rotate by age and notice a moved file.
const TICK: Duration = Duration::from_secs(1);

/// The open file and what rotation needs to know about it.
#[derive(Debug)]
pub struct CdrFile {
    settings: FileSettings,
    out: Option<Open>,
    metrics: CdrMetrics,
}

#[derive(Debug)]
struct Open {
    file: BufWriter<File>,
    size: u64,
    opened: Instant,
    inode: u64,
}

impl CdrFile {
    /// A writer for `settings.path` (opened at the first write).
    pub fn new(settings: FileSettings, metrics: CdrMetrics) -> Self {
        Self {
            settings,
            out: None,
            metrics,
        }
    }

    /// Runs until every sender of `rx` is gone, then syncs (unless `fsync = "never"`).
    pub fn run(mut self, rx: &Receiver<Arc<Cdr>>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match rx.recv_timeout(TICK) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.write(&batch, Instant::now());
            batch.clear();
        }
        if self.settings.fsync != Fsync::Never
            && let Some(o) = &mut self.out
        {
            let _ = o.file.flush();
            let _ = o.file.get_ref().sync_data();
        }
    }

    /// Appends `records`, then rotates if due at `now`.
    pub fn write(&mut self, records: &[Arc<Cdr>], now: Instant) {
        self.follow_path();
        if !records.is_empty() {
            if let Err(e) = self.append(records) {
                self.metrics
                    .dropped
                    .with_label_values(&["file", "write_error"])
                    .inc_by(records.len() as u64);
                tracing::warn!(path = %self.settings.path.display(), error = %e,
                    "CDR file: records lost");
                // Open again on the next batch (the disk may come back).
                self.out = None;
            } else {
                self.metrics
                    .written
                    .with_label_values(&["file"])
                    .inc_by(records.len() as u64);
            }
        }
        if self.due(now)
            && let Err(e) = self.rotate(SystemTime::now())
        {
            tracing::warn!(path = %self.settings.path.display(), error = %e,
                "CDR file: rotation failed");
            self.out = None;
        }
    }

    fn append(&mut self, records: &[Arc<Cdr>]) -> io::Result<()> {
        let o = match &mut self.out {
            Some(o) => o,
            None => self.out.insert(open(&self.settings.path)?),
        };
        for r in records {
            let mut line = serde_json::to_vec(r.as_ref()).map_err(io::Error::other)?;
            line.push(b'\n');
            o.file.write_all(&line)?;
            o.size += line.len() as u64;
        }
        o.file.flush()?;
        if self.settings.fsync == Fsync::Always {
            o.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn due(&self, now: Instant) -> bool {
        let Some(o) = &self.out else {
            return false;
        };
        let s = &self.settings;
        o.size > 0
            && ((s.rotate_bytes > 0 && o.size >= s.rotate_bytes)
                || (!s.rotate_age.is_zero() && now.duration_since(o.opened) >= s.rotate_age))
    }

    /// Renames the full file to `<path>.<UTC time>` (`-N` added if taken) and starts anew.
    fn rotate(&mut self, wall: SystemTime) -> io::Result<()> {
        if let Some(mut o) = self.out.take() {
            o.file.flush()?;
            if self.settings.fsync != Fsync::Never {
                o.file.get_ref().sync_data()?;
            }
        }
        let stamp = super::record::rfc3339(wall)
            .replace(['-', ':'], "")
            .replace('.', "");
        let base = self.settings.path.as_os_str().to_owned();
        let mut to = PathBuf::from(format!("{}.{stamp}", base.to_string_lossy()));
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{}.{stamp}-{n}", base.to_string_lossy()));
            n += 1;
        }
        std::fs::rename(&self.settings.path, &to)?;
        self.metrics.rotations.inc();
        tracing::info!(to = %to.display(), "CDR file rotated");
        self.out = Some(open(&self.settings.path)?);
        Ok(())
    }

    /// Drops the open file when the path now names another file or none (moved away by
    /// logrotate or an operator): the next write creates it again.
    fn follow_path(&mut self) {
        if let Some(o) = &self.out {
            let same = std::fs::metadata(&self.settings.path).is_ok_and(|m| m.ino() == o.inode);
            if !same {
                self.out = None;
            }
        }
    }
}

fn open(path: &Path) -> io::Result<Open> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    Ok(Open {
        size: meta.len(),
        inode: meta.ino(),
        file: BufWriter::new(file),
        opened: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::tests::sample;

    fn writer(dir: &Path, rotate_bytes: u64, rotate_age: Duration) -> (CdrFile, PathBuf) {
        let path = dir.join("cdr.jsonl");
        let m = CdrMetrics::register(&prometheus::Registry::new()).expect("fresh registry");
        let f = CdrFile::new(
            FileSettings {
                path: path.clone(),
                rotate_bytes,
                rotate_age,
                fsync: Fsync::Always,
            },
            m,
        );
        (f, path)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn lines(p: &Path) -> usize {
        std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn rotates_by_size_without_losing_or_splitting_a_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = serde_json::to_vec(&sample(0)).expect("json").len() as u64 + 1;
        // Three records fill the file: the third write rotates it.
        let (mut f, path) = writer(dir.path(), 3 * line, Duration::ZERO);
        let now = Instant::now();
        for i in 0..7 {
            f.write(&[Arc::new(sample(i))], now);
        }
        let names = files(dir.path());
        assert_eq!(
            names.len(),
            3,
            "two rotated files and the current one: {names:?}"
        );
        assert_eq!(lines(&path), 1);
        let total: usize = names.iter().map(|n| lines(&dir.path().join(n))).sum();
        assert_eq!(total, 7, "every record once");
        for n in &names {
            for l in std::fs::read_to_string(dir.path().join(n))
                .expect("read")
                .lines()
            {
                serde_json::from_str::<Cdr>(l).expect("whole records only");
            }
        }
        assert_eq!(f.metrics.rotations.get(), 2);
    }

    #[test]
    fn rotates_by_age_only_when_the_file_has_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, path) = writer(dir.path(), 0, Duration::from_secs(60));
        let t0 = Instant::now();
        f.write(&[], t0 + Duration::from_secs(120));
        assert!(files(dir.path()).is_empty(), "nothing to rotate");
        f.write(&[Arc::new(sample(1))], t0);
        f.write(&[], t0 + Duration::from_secs(30));
        assert_eq!(files(dir.path()).len(), 1, "not yet 60 s old");
        f.write(&[], t0 + Duration::from_secs(61));
        assert_eq!(files(dir.path()).len(), 2, "rotated at 60 s");
        assert_eq!(lines(&path), 0, "a fresh file");
    }

    #[test]
    fn a_file_moved_away_is_reopened_at_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, path) = writer(dir.path(), 0, Duration::ZERO);
        let now = Instant::now();
        f.write(&[Arc::new(sample(1))], now);
        std::fs::rename(&path, dir.path().join("cdr.jsonl.1")).expect("rename");
        f.write(&[Arc::new(sample(2))], now);
        assert_eq!(
            lines(&path),
            1,
            "the second record went to a new file at the path"
        );
        assert_eq!(lines(&dir.path().join("cdr.jsonl.1")), 1);
    }

    #[test]
    fn write_errors_drop_and_count_and_the_writer_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, path) = writer(&dir.path().join("missing"), 0, Duration::ZERO);
        f.write(&[Arc::new(sample(1)), Arc::new(sample(2))], Instant::now());
        let dropped = f
            .metrics
            .dropped
            .with_label_values(&["file", "write_error"])
            .get();
        assert_eq!(dropped, 2);
        std::fs::create_dir(dir.path().join("missing")).expect("mkdir");
        f.write(&[Arc::new(sample(3))], Instant::now());
        assert_eq!(lines(&path), 1);
    }
}
