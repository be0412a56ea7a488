//! The writer and the loader against a real `redis-server` (Debian package; each test runs
//! its own on a unix socket in a temporary directory and kills it by PID).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use prometheus::Registry;
use sbc_proto::b2bua::CallSnapshot;

use super::*;

/// A record written by the B2BUA's snapshot (the sans-I/O core's schema fixture).
const RECORD: &str = include_str!("../../proto/src/b2bua/tests/fixtures/call_state_v1.json");

/// A `redis-server` child on a unix socket, killed by PID when dropped.
pub(super) struct RedisServer {
    child: Child,
    socket: PathBuf,
}

impl RedisServer {
    pub(super) fn start(dir: &Path) -> Self {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian redis-server; cargo xtask setup)");
        let server = Self { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub(super) fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

pub(super) fn settings(url: &str, node: &str) -> Settings {
    Settings {
        client: redis::Client::open(url).expect("url"),
        node: node.into(),
        ttl: Duration::from_secs(60),
        timeout: Duration::from_millis(500),
        load_timeout: Duration::from_secs(5),
        queue: 100,
        fence: None,
    }
}

pub(super) fn record(n: u32) -> CallSnapshot {
    let mut s = CallSnapshot::decode(RECORD.as_bytes()).expect("fixture");
    // A distinct call: other tags (the key derives from them) and Call-IDs.
    let suffix = format!("x{n}");
    for leg in &mut s.legs {
        leg.local_tag.push_str(&suffix);
        leg.call_id.push_str(&suffix);
    }
    s.key = serde_json::from_value(serde_json::Value::String(format!(
        "{}.{}",
        s.legs[0].local_tag, s.legs[1].local_tag
    )))
    .expect("key");
    s
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn keys(s: &Settings) -> Vec<String> {
    let mut conn = s.connect().await.expect("connect");
    let mut k: Vec<String> = redis::cmd("KEYS")
        .arg(node_pattern(&s.node))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    k.sort();
    k
}

#[tokio::test]
async fn writer_puts_and_deletes_and_load_ages_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let st = settings(&redis.url(), "wr1");
    let metrics = StateMetrics::register(&Registry::new()).expect("metrics");
    let (sink, _writer) = start(st.clone(), metrics.clone());
    let (a, b) = (record(1), record(2));
    sink.offer(Write::Put(Box::new(a.clone())));
    sink.offer(Write::Put(Box::new(b.clone())));
    sink.offer(Write::Delete(b.key.clone()));
    let w = metrics.writes.clone();
    until("three writes", || {
        w.with_label_values(&["put"]).get() == 2 && w.with_label_values(&["delete"]).get() == 1
    })
    .await;
    assert_eq!(keys(&st).await, [record_key("wr1", &a.key)]);
    let mut conn = st.connect().await.expect("connect");
    let ttl: i64 = redis::cmd("TTL")
        .arg(record_key("wr1", &a.key))
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!((1..=60).contains(&ttl), "records expire: {ttl}");
    let bytes: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(record_key("wr1", &a.key))
        .query_async(&mut conn)
        .await
        .expect("MEMORY USAGE");
    eprintln!(
        "redis memory per call: {bytes} bytes; record {} bytes; write latency mean {:.3} ms over {}",
        a.encode().len(),
        metrics.latency.get_sample_sum() * 1000.0 / metrics.latency.get_sample_count() as f64,
        metrics.latency.get_sample_count()
    );
    assert_eq!(metrics.up.get(), 1);
    // Another node's records and garbage under this node's pattern.
    let other = settings(&redis.url(), "other");
    let (other_sink, _other_writer) = start(
        other.clone(),
        StateMetrics::register(&Registry::new()).expect("m"),
    );
    other_sink.offer(Write::Put(Box::new(record(3))));
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys(&other).await.is_empty() {
        assert!(Instant::now() < deadline, "the other node's write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _: () = redis::cmd("HSET")
        .arg(record_key("wr1", &record(4).key))
        .arg("at")
        .arg(1)
        .arg("rec")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .expect("HSET");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = load(&st).await.expect("load");
    assert_eq!(loaded.calls.len(), 1, "only this node's readable record");
    assert_eq!(loaded.calls[0].key, a.key);
    assert!(
        loaded.calls[0].answered_ms >= a.answered_ms + 200,
        "aged by the time since the write"
    );
    assert_eq!(loaded.unreadable.len(), 1);
    assert_eq!(
        keys(&st).await,
        [record_key("wr1", &a.key)],
        "the unreadable record is deleted"
    );
}

#[test]
fn full_queue_drops_counts_and_asks_for_a_rewrite() {
    let metrics = StateMetrics::register(&Registry::new()).expect("metrics");
    let (sink, _rx) = StateSink::channel(1, metrics.clone());
    sink.offer(Write::Delete(record(1).key));
    assert!(!sink.take_resync());
    sink.offer(Write::Delete(record(2).key));
    assert_eq!(metrics.dropped.get(), 1, "the second write did not fit");
    assert!(sink.take_resync(), "a rewrite is asked for");
    assert!(!sink.take_resync(), "once");
}

#[tokio::test]
async fn redis_down_counts_failures_and_everything_is_rewritten_when_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let url = redis.url();
    let st = settings(&url, "wr2");
    let metrics = StateMetrics::register(&Registry::new()).expect("metrics");
    let (sink, _writer) = start(st.clone(), metrics.clone());
    let (a, b, c) = (record(1), record(2), record(3));
    sink.offer(Write::Put(Box::new(a.clone())));
    let w = metrics.writes.clone();
    until("the first write", || {
        w.with_label_values(&["put"]).get() == 1
    })
    .await;
    drop(redis);
    sink.offer(Write::Put(Box::new(b.clone())));
    sink.offer(Write::Delete(a.key.clone()));
    let (f, up) = (metrics.failures.clone(), metrics.up.clone());
    until("failures while Redis is down", || {
        f.get() >= 2 && up.get() == 0
    })
    .await;
    // Redis comes back empty (a restart without persistence).
    let redis = RedisServer::start(dir.path());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sink.offer(Write::Put(Box::new(c.clone())));
    until("Redis up again", || up.get() == 1).await;
    let mut want = vec![record_key("wr2", &b.key), record_key("wr2", &c.key)];
    want.sort();
    assert_eq!(
        keys(&st).await,
        want,
        "live calls rewritten, the ended one absent"
    );
    drop(redis);
}
