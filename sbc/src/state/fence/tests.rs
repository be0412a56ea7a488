//! Fencing against a real `redis-server`: after another node takes a newer epoch, the old
//! active node's record writes and lease renewals are refused and it steps down.

use std::time::{Duration, Instant};

use prometheus::Registry;

use super::*;
use crate::state::{
    StateMetrics, Write, node_pattern,
    pair::{HOLD_LEASE, LEASE_KEY},
    start,
    tests::{RedisServer, record, settings},
};

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_node_with_a_stale_epoch_writes_nothing_and_steps_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut st = settings(&redis.url(), "fa");
    let fence = Fence::default();
    st.fence = Some(fence.clone());
    let mut conn = st.connect().await.expect("connect");
    // Node fa takes over first (epoch 1) and writes a call.
    let e = take(&mut conn, "fa").await.expect("take");
    assert_eq!(e, 1);
    fence.hold(e);
    assert_eq!(
        adopt(&mut conn, "fa").await.expect("adopt"),
        1,
        "a restart keeps it"
    );
    let metrics = StateMetrics::register(&Registry::new()).expect("metrics");
    let (sink, _writer) = start(st.clone(), metrics.clone());
    sink.offer(Write::Put(Box::new(record(1))));
    let puts = metrics.writes.clone();
    until("the first write", || {
        puts.with_label_values(&["put"]).get() == 1
    })
    .await;

    // A partition: node fb takes over too (epoch 2) while fa still runs.
    assert_eq!(take(&mut conn, "fb").await.expect("take"), 2);
    assert_eq!(
        adopt(&mut conn, "fa").await.expect("adopt"),
        0,
        "fa lost it"
    );
    sink.offer(Write::Put(Box::new(record(2))));
    until("fa stepped down", || fence.is_fenced()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(node_pattern("fa"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(
        keys.len(),
        1,
        "the stale node's second record was refused: {keys:?}"
    );
    assert_eq!(
        metrics.failures.get(),
        0,
        "a fenced write is no Redis failure"
    );
    // Nor may it renew the registration lease.
    let lease: i64 = redis::cmd("EVAL")
        .arg(HOLD_LEASE)
        .arg(2)
        .arg(LEASE_KEY)
        .arg(EPOCH_KEY)
        .arg("fa")
        .arg(15_000)
        .arg(fence.epoch())
        .query_async(&mut conn)
        .await
        .expect("lease");
    assert_eq!(lease, -1, "stale epoch: lease refused");
    let lease: i64 = redis::cmd("EVAL")
        .arg(HOLD_LEASE)
        .arg(2)
        .arg(LEASE_KEY)
        .arg(EPOCH_KEY)
        .arg("fb")
        .arg(15_000)
        .arg(2)
        .query_async(&mut conn)
        .await
        .expect("lease");
    assert_eq!(lease, 1, "the current epoch's holder takes the lease");
    // Taking over again (a later takeover) lifts the fence.
    let e = take(&mut conn, "fa").await.expect("take");
    fence.hold(e);
    assert!(!fence.is_fenced());
    assert_eq!(current(&mut conn).await.expect("current"), 3);
}
