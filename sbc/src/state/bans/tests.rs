//! The ban sync script against a real `redis-server`: a ban one node publishes reaches the
//! others once, with what is left of it; ended bans and bans beyond the cap are gone; a
//! shorter re-publication never shortens a ban.

use std::time::Duration;

use super::*;
use crate::state::tests::RedisServer;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

async fn connect(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_ban_one_node_publishes_reaches_the_others_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut c = connect(&redis).await;
    let scanner = ip("203.0.113.9");
    // Node A bans the scanner on the outside for 60 s.
    let Synced {
        seq: seq_a,
        bans: _,
        ..
    } = sync(
        &mut c,
        0,
        100,
        &[Change::Ban(Side::Outside, scanner, Duration::from_secs(60))],
    )
    .await
    .expect("publish");
    assert_eq!(seq_a, 1);
    // Node B, reading from the start, gets it with what is left.
    let Synced {
        seq: seq_b, bans, ..
    } = sync(&mut c, 0, 100, &[]).await.expect("read");
    assert_eq!(seq_b, 1);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!((bans[0].side, bans[0].ip), (Side::Outside, scanner));
    assert!(
        bans[0].left > Duration::from_secs(59) && bans[0].left <= Duration::from_secs(60),
        "{:?}",
        bans[0].left
    );
    // Read again from where it stopped: nothing new.
    let Synced { bans: again, .. } = sync(&mut c, seq_b, 100, &[]).await.expect("read");
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn ended_bans_and_bans_past_the_cap_are_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut c = connect(&redis).await;
    sync(
        &mut c,
        0,
        3,
        &[Change::Ban(
            Side::Inside,
            ip("198.51.100.1"),
            Duration::from_millis(50),
        )],
    )
    .await
    .expect("publish");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let Synced { bans, .. } = sync(&mut c, 0, 3, &[]).await.expect("read");
    assert!(bans.is_empty(), "an ended ban is not handed out: {bans:?}");
    let mut conn = c.clone();
    let left: u64 = redis::cmd("ZCARD")
        .arg(LOG_KEY)
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert_eq!(left, 0, "the log is trimmed with the set");

    // Five bans, cap three: the three that end last stay.
    let five: Vec<_> = (1..=5u64)
        .map(|k| {
            Change::Ban(
                Side::Outside,
                ip(&format!("203.0.113.{k}")),
                Duration::from_secs(10 * k),
            )
        })
        .collect();
    sync(&mut c, 0, 3, &five).await.expect("publish");
    let Synced { bans, .. } = sync(&mut c, 0, 3, &[]).await.expect("read");
    let mut kept: Vec<IpAddr> = bans.iter().map(|b| b.ip).collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![ip("203.0.113.3"), ip("203.0.113.4"), ip("203.0.113.5")]
    );
}

#[tokio::test]
async fn a_shorter_ban_does_not_shorten_a_longer_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut c = connect(&redis).await;
    let src = ip("2001:db8::7");
    sync(
        &mut c,
        0,
        10,
        &[Change::Ban(Side::Outside, src, Duration::from_secs(300))],
    )
    .await
    .expect("publish");
    sync(
        &mut c,
        0,
        10,
        &[Change::Ban(Side::Outside, src, Duration::from_secs(5))],
    )
    .await
    .expect("publish again");
    let Synced { seq, bans, .. } = sync(&mut c, 0, 10, &[]).await.expect("read");
    assert_eq!(seq, 2);
    assert_eq!(bans.len(), 1, "one member per source: {bans:?}");
    assert!(
        bans[0].left > Duration::from_secs(290),
        "{:?}",
        bans[0].left
    );
}

#[tokio::test]
async fn an_operators_lift_reaches_the_other_nodes_and_ends_the_ban() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut c = connect(&redis).await;
    let scanner = ip("203.0.113.9");
    let other = ip("203.0.113.10");
    // Node A bans two sources; node B reads both.
    sync(
        &mut c,
        0,
        100,
        &[
            Change::Ban(Side::Outside, scanner, Duration::from_secs(60)),
            Change::Ban(Side::Inside, other, Duration::from_secs(60)),
        ],
    )
    .await
    .expect("publish");
    let b = sync(&mut c, 0, 100, &[]).await.expect("read");
    assert_eq!(b.bans.len(), 2, "{b:?}");
    // An operator lifts the scanner's ban on node A.
    sync(&mut c, 2, 100, &[Change::Lift(scanner)])
        .await
        .expect("lift");
    // Node B, reading on from where it stopped, gets the lift (once per side) and no ban.
    let b2 = sync(&mut c, b.seq, 100, &[]).await.expect("read");
    assert!(b2.bans.is_empty(), "{b2:?}");
    assert_eq!(b2.lifts.len(), 2, "{b2:?}");
    for side in [Side::Inside, Side::Outside] {
        assert!(b2.lifts.contains(&(side, scanner)), "{b2:?}");
    }
    // A node starting now reads the ban that is still on and the lift, not the lifted ban.
    let fresh = sync(&mut c, 0, 100, &[]).await.expect("read");
    let banned: Vec<IpAddr> = fresh.bans.iter().map(|b| b.ip).collect();
    assert_eq!(banned, vec![other], "{fresh:?}");
    assert_eq!(fresh.lifts.len(), 2, "{fresh:?}");
    // Banned again after the lift: the later ban wins for a node reading both.
    sync(
        &mut c,
        0,
        100,
        &[Change::Ban(Side::Outside, scanner, Duration::from_secs(30))],
    )
    .await
    .expect("ban again");
    let again = sync(&mut c, b2.seq, 100, &[]).await.expect("read");
    assert_eq!(again.bans.len(), 1, "{again:?}");
    assert!(again.lifts.is_empty(), "{again:?}");
}

#[tokio::test]
async fn lifts_leave_the_log_past_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let mut c = connect(&redis).await;
    let lifts: Vec<Change> = (1..=4u8)
        .map(|k| Change::Lift(ip(&format!("198.51.100.{k}"))))
        .collect();
    // Cap 3: eight lift entries (two sides each) leave three.
    sync(&mut c, 0, 3, &lifts).await.expect("lift");
    let mut conn = c.clone();
    let (log, kept): (u64, u64) = redis::pipe()
        .cmd("ZCARD")
        .arg(LOG_KEY)
        .cmd("ZCARD")
        .arg(LIFTS_KEY)
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert_eq!((log, kept), (3, 3));
}

#[test]
fn members_round_trip_and_foreign_ones_are_refused() {
    for (side, addr) in [
        (Side::Inside, ip("10.0.0.1")),
        (Side::Outside, ip("2001:db8::1")),
        (Side::Outside, ip("::ffff:192.0.2.1")),
    ] {
        let m = member(side, addr);
        assert_eq!(parse_member(&m), Some((side, addr.to_canonical())), "{m}");
    }
    for bad in [
        "",
        "inside",
        "middle|10.0.0.1",
        "inside|not-an-address",
        "|",
    ] {
        assert_eq!(parse_member(bad), None, "{bad}");
    }
}
