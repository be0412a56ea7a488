//! Payload types per leg: an answer numbering `telephone-event` 96 where the offer said 101
//! reaches the offerer renumbered to 101 (each leg sees its own numbering), and the relay's
//! rewrites are recorded per direction.

use super::*;
use crate::sdp::PayloadMap;

#[test]
fn telephone_event_101_inside_96_outside_is_mapped_both_ways() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let answer = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 0 96")
        .replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15",
        );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    let to_pbx = String::from_utf8_lossy(ok.body()).replace("\r\n", "\n");
    assert!(to_pbx.contains(" RTP/AVP 0 101\n"), "{to_pbx}");
    assert!(
        to_pbx.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{to_pbx}"
    );
    assert!(to_pbx.contains("a=fmtp:101 0-15\n"), "{to_pbx}");
    assert!(!to_pbx.contains(" 96"), "{to_pbx}");

    let session = *sim.media.sessions.keys().next().expect("a media session");
    let maps = sim.sbc.payload_maps(session).expect("the call's maps");
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].inside_to_outside.entries(), &[(101, 96)]);
    assert_eq!(maps[0].outside_to_inside.entries(), &[(96, 101)]);
    assert_eq!(
        maps[0].inside_to_outside.map(0),
        0,
        "PCMU is the same on both legs"
    );
}

#[test]
fn same_numbers_on_both_legs_need_no_rewrite() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let session = *sim.media.sessions.keys().next().expect("a media session");
    let maps = sim.sbc.payload_maps(session).expect("the call's maps");
    assert_eq!(maps.len(), 1);
    assert!(maps[0].is_identity(), "{maps:?}");
    assert_eq!(maps[0].inside_to_outside, PayloadMap::default());
}
