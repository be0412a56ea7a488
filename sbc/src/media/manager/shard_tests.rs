//! One media table per signaling shard (`media::tables`), with real relay sockets on
//! loopback: each shard relays from its own part of the port range, its table's events wake
//! its own driver only, the kernel's latches reach the table that owns the port, and the
//! metrics add up over the shards.

use std::time::{Duration, Instant};

use sbc_proto::media::{
    MediaEvent, MediaPeers, MediaShare, MediaTable, SharedQuotas, StreamDesc,
    share::{owner_of_port, owner_of_session},
};
use sbc_proto::net::Side;

use super::MediaManager;
use super::tests::{LO, answered_call, settings};
use crate::metrics::Metrics;

fn two_shards(min: u16, max: u16) -> (Metrics, MediaManager, [MediaManager; 2]) {
    let metrics = Metrics::new().expect("metrics");
    let m = MediaManager::with_shards(settings(min, max), None, metrics.media.clone(), 2);
    let shards = [m.for_shard(0), m.for_shard(1)];
    (metrics, m, shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_relays_from_its_own_ports_and_the_gauges_add_up() {
    let (metrics, m, mut shards) = two_shards(42_400, 42_499);
    let whole = settings(42_400, 42_499).relay;
    let total = m.overview().ports_free_inside;
    let mut calls = Vec::new();
    for (k, h) in shards.iter_mut().enumerate() {
        let (pbx, carrier, a) = answered_call(h, Duration::from_secs(2));
        assert_eq!(usize::from(owner_of_session(a.session, 2)), k);
        for e in [a.streams[0].inside, a.streams[0].outside] {
            assert_eq!(
                owner_of_port(&whole, 2, e.rtp_port).map(usize::from),
                Some(k),
                "shard {k} relays on port {} of another's part",
                e.rtp_port
            );
        }
        // The shard's own relay worker carries the stream.
        let relay_in = std::net::SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let rtp = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        pbx.send_to(&rtp, relay_in).expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = carrier.recv_from(&mut buf).expect("relayed to the carrier");
        assert_eq!(&buf[..n], &rtp);
        calls.push((pbx, carrier, a));
    }
    assert_eq!(
        metrics.media.sessions.get(),
        2,
        "one gauge, both shards' sessions"
    );
    assert_eq!(m.session_ids().len(), 2);
    let o = m.overview();
    assert_eq!(o.sessions, 2);
    // Both sides share 127.0.0.1 and so one pool: each call takes two pairs of it.
    assert_eq!(o.ports_free_inside, total - 4);
    let inside = metrics.media.ports_free.with_label_values(&["inside"]);
    assert_eq!(inside.get(), i64::try_from(total - 4).expect("small"));
    // The admin API's handle releases each session in its own shard's table.
    for (_, _, a) in &calls {
        m.release(Instant::now(), a.session);
    }
    assert_eq!(metrics.media.sessions.get(), 0);
    assert_eq!(m.overview().ports_free_inside, total);
    assert_eq!(inside.get(), i64::try_from(total).expect("small"));
}

#[tokio::test]
async fn a_shards_media_events_wake_that_shard_only() {
    let (_metrics, m, shards) = two_shards(42_500, 42_599);
    let a = shards[1]
        .allocate(
            Instant::now(),
            Side::Inside,
            &[StreamDesc::new(LO, 4000)],
            &MediaPeers::default(),
        )
        .expect("offer");
    shards[1]
        .commit(
            Instant::now(),
            a.session,
            Side::Outside,
            &[StreamDesc::new(LO, 6000)],
        )
        .expect("answer");
    m.tick(Instant::now() + Duration::from_secs(61));
    tokio::time::timeout(Duration::from_secs(1), shards[1].event_ready())
        .await
        .expect("shard 1 woken");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), shards[0].event_ready())
            .await
            .is_err(),
        "shard 0 has nothing to do"
    );
    assert_eq!(
        shards[0].drive(Instant::now(), MediaTable::poll_event),
        None
    );
    assert_eq!(
        shards[1].drive(Instant::now(), MediaTable::poll_event),
        Some(MediaEvent::Timeout(a.session)),
        "the timeout of shard 1's call is shard 1's to act on"
    );
}

#[tokio::test]
async fn a_kernel_latch_reaches_the_table_that_owns_the_port() {
    let (metrics, m, shards) = two_shards(42_600, 42_699);
    let mut whole = settings(42_600, 42_699).relay;
    // Socketless streams need the strict latching policy the program enforces.
    whole.strict_source = true;
    // Socketless tables as with XDP attached (no XDP here: the executor skips map writes).
    let quotas = SharedQuotas::default();
    for (k, core) in m.inner.tables.all() {
        let share = MediaShare::new(u16::try_from(k).expect("small"), 2).expect("share");
        let mut table = MediaTable::for_share(
            &whole,
            Default::default(),
            (true, whole.fast_path_mappings()),
            crate::entropy::rng(),
            (share, quotas.clone()),
        );
        table.set_kernel_latch(true);
        core.lock().table = table;
    }
    let pbx = std::net::SocketAddr::new(LO, 4000);
    let a = shards[1]
        .allocate(
            Instant::now(),
            Side::Inside,
            &[StreamDesc::new(pbx.ip(), pbx.port())],
            &MediaPeers::default(),
        )
        .expect("offer");
    let ingress = std::net::SocketAddr::new(LO, a.streams[0].inside.rtp_port);
    m.inner.kernel_latches(&[(ingress, pbx)]);
    assert_eq!(
        metrics.media.xdp_latches.get(),
        1,
        "the latch found its stream in shard 1's table"
    );
    let latched = shards[1].read(|t| {
        t.session(a.session)
            .and_then(|s| s.streams.first())
            .map(|st| st.path.lock().peers[Side::Inside.index()].latch[0].latched())
    });
    assert_eq!(latched, Some(Some(pbx)));
}

#[tokio::test]
async fn the_admin_apis_sessions_go_to_the_tables_in_turn() {
    let (_metrics, m, _shards) = two_shards(42_700, 42_799);
    let offer = |port| {
        m.allocate(
            Instant::now(),
            Side::Inside,
            &[StreamDesc::new(LO, port)],
            &MediaPeers::default(),
        )
        .expect("offer")
        .session
    };
    let owners: Vec<u16> = (0..4)
        .map(|i| owner_of_session(offer(4000 + 2 * i), 2))
        .collect();
    assert_eq!(owners, [0, 1, 0, 1]);
}
