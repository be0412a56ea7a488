//! Payload types per leg: an answer numbering `telephone-event` 96 where the offer said 101
//! reaches the offerer renumbered to 101 (each leg sees its own numbering), and the relay's
//! rewrites are recorded per direction. A trunk's `telephone_event_pt` renumbers the offer
//! toward it (its answerer then echoes that number) with the same mapping as the result.

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
    let to_pbx = body_of(&ok);
    assert!(to_pbx.contains(" RTP/AVP 0 101\n"), "{to_pbx}");
    assert!(
        to_pbx.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{to_pbx}"
    );
    assert!(to_pbx.contains("a=fmtp:101 0-15\n"), "{to_pbx}");
    assert!(!to_pbx.contains(" 96"), "{to_pbx}");

    let session = sim.media.first_id().expect("a media session");
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
    let session = sim.media.first_id().expect("a media session");
    let maps = sim.sbc.payload_maps(session).expect("the call's maps");
    assert_eq!(maps.len(), 1);
    assert!(maps[0].is_identity(), "{maps:?}");
    assert_eq!(maps[0].inside_to_outside, PayloadMap::default());
}

/// The carrier expects telephone-event at 96 (`telephone_event_pt`): the PBX's 101 leaves as
/// 96 in the offer (fmtp with it), the carrier's answer echoing 96 reaches the PBX as 101, and
/// the relay maps 101 ⇄ 96. Without the setting the carrier gets 101 and nothing is mapped.
#[test]
fn a_trunks_telephone_event_number_renumbers_the_offer_toward_it() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].media.event_payload_type = Some(96);
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(offer.contains(" RTP/AVP 0 8 96\n"), "{offer}");
    assert!(
        offer.contains("a=rtpmap:96 telephone-event/8000\n"),
        "{offer}"
    );
    assert!(!offer.contains("rtpmap:101"), "{offer}");
    // The carrier answers in the offer's numbers, as RFC 3264 §6.1 recommends.
    let answer = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 0 96")
        .replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 telephone-event/8000",
        );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    let to_pbx = body_of(&ok);
    assert!(to_pbx.contains(" RTP/AVP 0 101\n"), "{to_pbx}");
    assert!(
        to_pbx.contains("a=rtpmap:101 telephone-event/8000\n"),
        "{to_pbx}"
    );
    let session = sim.media.first_id().expect("a media session");
    let maps = sim.sbc.payload_maps(session).expect("the call's maps");
    assert_eq!(maps[0].inside_to_outside.entries(), &[(101, 96)]);
    assert_eq!(maps[0].outside_to_inside.entries(), &[(96, 101)]);
}

/// A wanted number another codec of the offer already uses is not taken: the offer keeps its
/// own numbering (the relay maps whatever the answer says).
#[test]
fn a_telephone_event_number_in_use_keeps_the_offers_numbering() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].media.event_payload_type = Some(97);
    sim.sbc.set_config(cfg);
    let sdp = SDP_PBX
        .replace("RTP/AVP 0 8 101", "RTP/AVP 0 8 97 101")
        .replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:97 iLBC/8000\na=rtpmap:101 telephone-event/8000",
        );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(&sdp)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(offer.contains(" RTP/AVP 0 8 97 101\n"), "{offer}");
    assert!(offer.contains("a=rtpmap:97 iLBC/8000\n"), "{offer}");
}

/// RFC 4733 §2.5.1.3 redundancy: the PBX offers `red` 100 carrying `telephone-event` 101, the
/// carrier answers `red` 110 carrying 96. The PBX's answer names its own numbers in the `red`
/// block list too, and the relay's maps know which type holds blocks to renumber.
#[test]
fn redundant_events_are_renumbered_inside_the_red_format() {
    let mut sim = Sim::new();
    let offer = SDP_PBX
        .replace("RTP/AVP 0 8 101", "RTP/AVP 0 8 100 101")
        .replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:100 red/8000\na=fmtp:100 101/101\na=rtpmap:101 telephone-event/8000",
        );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbxred", Some(&offer)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let to_carrier = body_of(&invite);
    assert!(to_carrier.contains("a=fmtp:100 101/101\n"), "{to_carrier}");
    let answer = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 0 110 96")
        .replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:110 red/8000\na=fmtp:110 96/96\na=rtpmap:96 telephone-event/8000",
        );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctagred"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    let to_pbx = body_of(&ok);
    assert!(to_pbx.contains(" RTP/AVP 0 100 101\n"), "{to_pbx}");
    assert!(to_pbx.contains("a=rtpmap:100 red/8000\n"), "{to_pbx}");
    assert!(
        to_pbx.contains("a=fmtp:100 101/101\n"),
        "the block list in the PBX's numbers: {to_pbx}"
    );

    let session = sim.media.first_id().expect("a media session");
    let maps = sim.sbc.payload_maps(session).expect("the call's maps");
    assert_eq!(maps[0].inside_to_outside.red(), Some(100));
    assert_eq!(maps[0].inside_to_outside.map(100), 110);
    assert_eq!(maps[0].inside_to_outside.map(101), 96);
    assert_eq!(maps[0].outside_to_inside.red(), Some(110));
    assert_eq!(maps[0].outside_to_inside.map(96), 101);
}
