//! A short run of the demo (`cargo xtask demo`): a handful of calls both ways with RTP, which
//! must all be answered and ended by BYE, with the media carried by XDP after latching.

use std::{sync::atomic::AtomicBool, time::Duration};

#[test]
fn short_demo_calls_both_ways_with_rtp_through_xdp() {
    if !sbc_e2e::require_root("demo") {
        return;
    }
    let opts = sbc_lab::demo::Options {
        sbc_bin: sbc_e2e::sbc_bin(),
        duration: Duration::from_secs(6),
        rate: 1.0,
        call_seconds: 3,
        xdp: true,
        admin_forward: None,
    };
    let stop = AtomicBool::new(false);
    let mut ticks = 0;
    let s = sbc_lab::demo::run(&opts, &stop, |_| ticks += 1).expect("demo runs");
    assert!(ticks > 0, "snapshots were reported");
    assert!(
        s.outbound_started >= 5.0 && s.inbound_started >= 5.0,
        "{s:?}"
    );
    let placed = s.outbound_started + s.inbound_started;
    assert_eq!(s.answered, placed, "every call answered: {s:?}");
    assert_eq!(s.failed(), 0.0, "every call ended by BYE: {s:?}");
    assert_eq!(s.active, 0.0, "no call left: {s:?}");
    assert!(s.xdp_packets > 100.0, "RTP went through XDP: {s:?}");
    assert!(
        s.xdp_packets > 10.0 * s.userspace_packets,
        "XDP carries the streams: {s:?}"
    );
}
