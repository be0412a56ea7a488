//! The XDP fast path survives the control plane: RTP keeps arriving while `sbc` is dead
//! (`kill -9`), a restarted `sbc` reuses the pinned link and maps and adopts the stream, and
//! ending the adopted call removes its mappings. `sbc xdp detach` then removes the pins. The
//! stream is socketless before the restart; its latched RTP pair is adopted (with sockets, as
//! adoption does), its RTCP mappings that never latched are removed.

mod media_common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use media_common::{MediaLab, receiver, send_rtp};

#[test]
fn media_flows_through_kill9_and_restart_adopts_mappings() {
    if !sbc_e2e::require_root("media_restart") {
        return;
    }
    let mut lab = MediaLab::start("smr", "xdp = \"auto\"\ntimeout_s = 30");
    // No SIP in this test: resolve the peers' neighbour entries as signaling would, so the
    // latching packets do not meet a FIB miss (socketless streams have no socket to pass it
    // to; docs/media.md).
    for peer in ["198.18.1.2", "198.18.2.2"] {
        let ok = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.lab.sbc,
                "ping",
                "-c1",
                "-W1",
                "-q",
                peer,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ping {peer}");
    }
    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    let (id, in_relay, out_relay) = lab.call(
        "198.18.1.2:4000".parse().expect("literal"),
        "198.18.2.2:6000".parse().expect("literal"),
    );
    send_rtp(&pbx, in_relay, 0, 1, 1);
    send_rtp(&carrier, out_relay, 0, 1, 2);
    let session = format!("/api/v1/media/sessions/{id}");
    let mut installed = false;
    for _ in 0..50 {
        // Socketless (the XDP default): RTP and RTCP both ways, latched in the kernel.
        let v = lab.json("GET", &session, None, 200);
        if v["streams"][0]["xdp_mappings"] == 4 && v["streams"][0]["outside"]["latched"].is_string()
        {
            installed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(installed, "mappings installed");

    // 6 s of RTP from the PBX (300 packets, 20 ms apart) while the SBC dies and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let at_carrier = receiver(
        carrier.try_clone().expect("clone"),
        stop.clone(),
        Duration::from_secs(30),
    );
    let t0 = Instant::now();
    let sender = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 1, 300, 1))
    };
    thread::sleep(Duration::from_secs(1));
    lab.kill9();
    let killed = t0.elapsed();
    thread::sleep(Duration::from_millis(2000));
    let restarting = t0.elapsed();
    lab.start_sbc();
    let media = lab.media();
    assert_eq!(media["xdp"]["state"], "attached", "{media}");
    assert_eq!(
        media["xdp"]["attachments"][0]["mode"], "reused",
        "pinned link reused, not a second attachment: {media}"
    );
    assert_eq!(
        media["relay"]["sessions"], 1,
        "one session adopted: {media}"
    );
    assert_eq!(media["xdp_map_entries"], 2, "{media}");
    let ids = lab.json("GET", "/api/v1/media/sessions", None, 200);
    let adopted_id = ids[0].as_u64().expect("adopted session id");
    let adopted = format!("/api/v1/media/sessions/{adopted_id}");
    let v = lab.json("GET", &adopted, None, 200);
    assert_eq!(v["adopted"], true, "{v}");
    assert_eq!(v["streams"][0]["xdp_mappings"], 2, "{v}");
    assert_eq!(
        v["streams"][0]["inside"]["rtp_port"],
        in_relay.port(),
        "{v}"
    );

    sender.join().expect("sender");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got = at_carrier.join().expect("receiver");
    // Packets that arrived while no sbc process existed (with margins for the kill to land).
    let during = got
        .at
        .iter()
        .filter(|t| **t > killed + Duration::from_millis(200) && **t < restarting)
        .count();
    assert!(
        during >= 50,
        "only {during} packets arrived during the downtime"
    );
    // 300 plus the latching packet sent before.
    assert_eq!(
        got.seqs.len(),
        301,
        "no packet lost across kill -9 and restart"
    );
    assert!(got.in_order());
    assert!(got.sources.iter().all(|s| *s == out_relay));

    // Ending the adopted call removes its mappings.
    lab.json("DELETE", &adopted, None, 204);
    assert_eq!(lab.media()["xdp_map_entries"], 0, "{}", lab.media());

    // `sbc xdp detach` removes the instance's pins (after sbc stopped).
    lab.kill9();
    assert!(lab.pin_dir().exists());
    let out = std::process::Command::new(sbc_e2e::sbc_bin())
        .args(["xdp", "detach", "--instance", &lab.instance])
        .output()
        .expect("run sbc xdp detach");
    assert!(out.status.success(), "{out:?}");
    assert!(!lab.pin_dir().exists(), "pin directory removed");
}
