//! An offer or answer the codec policy leaves without a real codec is refused with 488 (never
//! an empty `m=` line), counted as `sdp_no_common_codec`, and nothing is left behind.

use super::codec_filter::sim_with;
use super::*;
use crate::sdp::CodecPolicy;

fn allow(list: &[&str]) -> CodecPolicy {
    CodecPolicy {
        allow: list.iter().map(|s| (*s).to_owned()).collect(),
        deny: Vec::new(),
    }
}

fn refusals(sim: &mut Sim) -> Vec<&'static str> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::BorderRefusal { reason } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn offer_without_a_common_codec_gets_488_and_never_reaches_the_carrier() {
    let mut sim = sim_with(CodecPolicy::default(), allow(&["G722", "telephone-event"]));
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.iter().map(status).collect::<Vec<_>>(), [100, 488]);
    assert!(
        sim.take_carrier().is_empty(),
        "no INVITE with an empty m= line"
    );
    assert_eq!(refusals(&mut sim), ["sdp_no_common_codec"]);
    assert!(sim.media.is_empty(), "no relay ports taken");
    sim.assert_clean();
}

#[test]
fn answer_left_without_a_common_codec_ends_the_call_with_488() {
    let mut sim = sim_with(CodecPolicy::default(), allow(&["PCMA", "telephone-event"]));
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    assert!(String::from_utf8_lossy(invite.body()).contains(" RTP/AVP 8 101\r\n"));
    // The carrier answers with PCMU, which it was not offered.
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.iter().map(status).collect::<Vec<_>>(), [488]);
    let to_carrier: Vec<_> = sim
        .take_carrier()
        .iter()
        .filter_map(|m| m.method().cloned())
        .collect();
    assert_eq!(to_carrier, [Method::Ack, Method::Bye]);
    assert!(refusals(&mut sim).contains(&"sdp_no_common_codec"));
}

#[test]
fn reoffer_without_a_common_codec_gets_488_and_the_call_stays() {
    let mut sim = sim_with(CodecPolicy::default(), allow(&["PCMU", "telephone-event"]));
    let invite = establish_outbound(&mut sim);
    let _ = refusals(&mut sim);
    let g729 = SDP_CARRIER
        .replace("RTP/AVP 0 101", "RTP/AVP 18 101")
        .replace("777 1", "777 2");
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarre1", 5, &g729),
    );
    let r = sim.take_carrier();
    assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [100, 488]);
    assert!(sim.take_pbx().is_empty(), "not relayed");
    assert_eq!(refusals(&mut sim), ["sdp_no_common_codec"]);
    assert_eq!(sim.sbc.stats().calls, 1, "the call goes on");
}

#[test]
fn policies_that_each_match_but_share_nothing_refuse_the_offer() {
    // The PBX side takes PCMU only, the trunk PCMA only: each alone matches the offer.
    let mut sim = sim_with(
        allow(&["PCMU", "telephone-event"]),
        allow(&["PCMA", "telephone-event"]),
    );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.iter().map(status).collect::<Vec<_>>(), [100, 488]);
    assert!(sim.take_carrier().is_empty());
    assert_eq!(refusals(&mut sim), ["sdp_no_common_codec"]);
    sim.assert_clean();
}
