//! The media timeout: a call whose media flows (through XDP, which userspace never sees) for
//! longer than the timeout is kept; once the packets stop, it times out within the bound and
//! the event is reported (session `timed_out`, `sbc_media_timeouts_total`).

mod media_common;

use std::{thread, time::Duration, time::Instant};

use media_common::{MediaLab, send_rtp};

#[test]
fn media_timeout_fires_after_silence_not_during_xdp_media() {
    if !sbc_e2e::require_root("media_timeout") {
        return;
    }
    let lab = MediaLab::start("smt", "xdp = \"auto\"\ntimeout_s = 2");
    let pbx = lab.socket(true, "198.18.1.2:4000");
    let carrier = lab.socket(false, "198.18.2.2:6000");
    let (id, in_relay, out_relay) = lab.call(
        "198.18.1.2:4000".parse().expect("literal"),
        "198.18.2.2:6000".parse().expect("literal"),
    );
    let session = format!("/api/v1/media/sessions/{id}");
    // 4 s of media (200 packets at 20 ms) both ways: twice the timeout.
    let up = {
        let pbx = pbx.try_clone().expect("clone");
        thread::spawn(move || send_rtp(&pbx, in_relay, 0, 200, 1))
    };
    send_rtp(&carrier, out_relay, 0, 200, 2);
    up.join().expect("sender");
    let v = lab.json("GET", &session, None, 200);
    assert_eq!(v["timed_out"], false, "timed out while media flowed: {v}");
    assert!(
        v["streams"][0]["inside"]["xdp_packets"].as_u64() > Some(0),
        "media went through XDP: {v}"
    );

    let stopped = Instant::now();
    let mut fired = None;
    while stopped.elapsed() < Duration::from_secs(6) {
        if lab.json("GET", &session, None, 200)["timed_out"] == true {
            fired = Some(stopped.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let fired = fired.expect("media timeout within 6 s of silence");
    assert!(
        fired >= Duration::from_millis(1400),
        "fired too early: {fired:?}"
    );
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(metrics.contains("sbc_media_timeouts_total 1"), "{metrics}");
}
