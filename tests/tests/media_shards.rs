//! Two signaling shards, two media tables (`sbc/src/media/tables.rs`): the admin API places
//! its sessions on the tables in turn, so one session lands in each. Each is relayed
//! socketless in XDP from its own table's part of the port range, the kernel's latch events
//! reach the table that owns the port (the views show the latched peers: a latch handed to
//! the wrong table finds no stream and is lost), each table reads its fast-path counters
//! through its own map handles, and the metrics add both tables up.

mod media_common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use media_common::{MediaLab, receiver, send_rtp};

const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 20_199;
/// The first port of shard 1's part: 100 pairs, 50 each.
const SHARD_1_FIRST: u16 = 20_100;
/// RTP packets each party sends per session.
const N: u16 = 50;

#[test]
fn each_shards_table_latches_and_relays_its_own_sessions_in_xdp() {
    if !sbc_e2e::require_root("media_shards") {
        return;
    }
    // The test sets the shard count itself; a run of the suites with another count skips it.
    let general = match std::env::var(sbc_e2e::SHARDS_ENV) {
        Ok(v) if v.trim() == "2" => "",
        Ok(v) => {
            eprintln!("media_shards: skipped with {}={v}", sbc_e2e::SHARDS_ENV);
            return;
        }
        Err(_) => "signaling_shards = 2",
    };
    let lab = MediaLab::start_general(
        "msh",
        general,
        &format!(
            "xdp = \"auto\"\nstrict_source = true\nport_min = {PORT_MIN}\nport_max = {PORT_MAX}\n\
             timeout_s = 30"
        ),
        "",
        None,
        false,
        false,
    );
    assert_eq!(lab.media()["xdp"]["state"], "attached", "{}", lab.media());
    let user_before = lab.userspace_packets();

    let stop = Arc::new(AtomicBool::new(false));
    let mut sessions = Vec::new();
    for k in 0..2u16 {
        let pbx_sdp: SocketAddr = format!("198.18.1.2:{}", 4000 + 2 * k)
            .parse()
            .expect("addr");
        let carrier_sdp: SocketAddr = format!("198.18.2.2:{}", 6000 + 2 * k)
            .parse()
            .expect("addr");
        let pbx = lab.socket(true, &pbx_sdp.to_string());
        let carrier = lab.socket(false, &carrier_sdp.to_string());
        let (id, in_relay, out_relay) = lab.call(pbx_sdp, carrier_sdp);
        assert_eq!(id >> 48, u64::from(k), "session {id} is shard {k}'s");
        for relay in [in_relay, out_relay] {
            let in_part = if k == 0 {
                (PORT_MIN..SHARD_1_FIRST).contains(&relay.port())
            } else {
                (SHARD_1_FIRST..=PORT_MAX).contains(&relay.port())
            };
            assert!(
                in_part,
                "shard {k}'s session relays on {relay}, outside its part"
            );
        }
        let view = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
        assert_eq!(view["streams"][0]["socketless"], true, "{view}");
        let limit = Duration::from_secs(30);
        let at_pbx = receiver(pbx.try_clone().expect("clone"), stop.clone(), limit);
        let at_carrier = receiver(carrier.try_clone().expect("clone"), stop.clone(), limit);
        sessions.push((
            id,
            pbx_sdp,
            carrier_sdp,
            pbx,
            carrier,
            in_relay,
            out_relay,
            at_pbx,
            at_carrier,
        ));
    }
    // RTP both ways on both sessions: the first packets latch in the kernel.
    for (_, _, _, pbx, carrier, in_relay, out_relay, _, _) in &sessions {
        send_rtp(pbx, *in_relay, 0, N, 0x1111_1111);
        send_rtp(carrier, *out_relay, 0, N, 0x2222_2222);
    }
    thread::sleep(Duration::from_millis(300));
    for (id, pbx_sdp, carrier_sdp, ..) in &sessions {
        let view = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
        let s = &view["streams"][0];
        assert_eq!(
            s["inside"]["latched"],
            pbx_sdp.to_string(),
            "session {id}: the kernel's latch reached its table: {view}"
        );
        assert_eq!(s["outside"]["latched"], carrier_sdp.to_string(), "{view}");
        assert!(
            s["inside"]["xdp_packets"].as_u64() >= Some(u64::from(N) - 1)
                && s["outside"]["xdp_packets"].as_u64() >= Some(u64::from(N) - 1),
            "session {id}: its table reads its fast-path counters: {view}"
        );
    }
    assert_eq!(
        lab.userspace_packets(),
        user_before,
        "the userspace relay forwarded nothing"
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert_eq!(
        metric(&metrics, "sbc_media_sessions"),
        2,
        "both tables' sessions"
    );
    assert!(metric(&metrics, "sbc_media_xdp_latches_total") >= 4);

    stop.store(true, Ordering::Relaxed);
    for (id, _, _, _, _, in_relay, out_relay, at_pbx, at_carrier) in sessions {
        let got_pbx = at_pbx.join().expect("PBX receiver");
        let got_carrier = at_carrier.join().expect("carrier receiver");
        assert_eq!(
            got_pbx.seqs.len(),
            usize::from(N),
            "session {id}: PBX got every packet"
        );
        assert_eq!(
            got_carrier.seqs.len(),
            usize::from(N),
            "session {id}: carrier too"
        );
        assert!(got_pbx.sources.iter().all(|s| *s == in_relay));
        assert!(got_carrier.sources.iter().all(|s| *s == out_relay));
        lab.json("DELETE", &format!("/api/v1/media/sessions/{id}"), None, 204);
    }
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert_eq!(metric(&metrics, "sbc_media_sessions"), 0);
    assert_eq!(lab.media()["xdp_map_entries"], 0, "{}", lab.media());
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition (0 if absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.starts_with(' ').then(|| rest.trim())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
