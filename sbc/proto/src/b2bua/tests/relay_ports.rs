//! Relay ports as the real media table hands them out (only [`SimMedia`] can tell): a
//! re-INVITE keeps a stream's ports and an extra `m=` line gets its own, a port another
//! program holds is replaced before any SDP names it, and every pair is back in its pool
//! once the call is gone.

use std::net::SocketAddr;

use super::*;
use crate::media::{StreamKey, StreamRelay};

/// The carrier's re-offer: its audio again, plus a video stream.
const SDP_CARRIER_VIDEO: &str = "v=0
o=switch 777 2 IN IP4 198.51.100.20
s=-
c=IN IP4 198.51.100.20
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
m=video 30002 RTP/AVP 96
a=rtpmap:96 H264/90000
a=sendrecv
";

/// The PBX's answer to it.
const SDP_PBX_VIDEO: &str = "v=0
o=pbx 1234 2 IN IP4 10.0.0.10
s=pbx.lan call
c=IN IP4 10.0.0.10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
m=video 40002 RTP/AVP 96
a=rtpmap:96 H264/90000
a=sendrecv
";

/// The `m=` ports of an SDP body, in order.
fn media_ports(body: &str) -> Vec<u16> {
    body.lines()
        .filter_map(|l| l.strip_prefix("m="))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// Ends the established call from the API and answers both BYEs.
fn hang_up(sim: &mut Sim) {
    let id = sim.sbc.calls()[0].id;
    assert!(sim.with_media(|b, now, m| b.end_call(now, id, m)));
    sim.collect();
    for bye in sim.take_carrier() {
        sim.deliver(carrier(), &carrier_response(&bye, 200, "OK", None, None));
    }
    assert!(sim.media.is_empty(), "media released with the call");
}

/// Pairs in use on `leg`'s side.
fn pairs_used(sim: &Sim, leg: Side) -> usize {
    let t = sim.media.table();
    t.ports_total(leg) - t.ports_free(leg)
}

/// The carrier re-offers with a video stream added and the PBX accepts: returns the
/// re-INVITE the PBX got and the 200 the carrier got.
fn add_video(sim: &mut Sim, invite: &Message) -> (Message, Message) {
    sim.deliver(
        carrier(),
        &carrier_reinvite(invite, "z9hG4bKcarvid1", 5, SDP_CARRIER_VIDEO),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    sim.deliver(
        pbx(),
        &pbx_response(&to_pbx, 200, "OK", Some(SDP_PBX_VIDEO)),
    );
    let ok = sim
        .take_carrier()
        .into_iter()
        .find(|m| status(m) == 200)
        .expect("200 to the carrier's re-INVITE");
    (to_pbx, ok)
}

#[test]
fn a_reinvite_keeps_the_audio_ports_and_an_added_stream_gets_its_own() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let audio: StreamRelay = sim.media.first().expect("a media session").streams[0];
    assert_eq!(media_ports(&body_of(&invite)), [audio.outside.rtp_port]);
    assert_eq!(
        (
            pairs_used(&sim, Side::Inside),
            pairs_used(&sim, Side::Outside)
        ),
        (1, 1)
    );

    let (to_pbx, ok) = add_video(&mut sim, &invite);
    let session = sim.media.first().expect("a media session");
    assert_eq!(session.streams.len(), 2);
    assert_eq!(session.streams[0], audio, "the audio keeps its relay ports");
    let video = session.streams[1];
    assert_ne!(video.inside.rtp_port, audio.inside.rtp_port);
    assert_ne!(video.outside.rtp_port, audio.outside.rtp_port);
    // Each side hears of the ports that face it.
    assert_eq!(
        media_ports(&body_of(&to_pbx)),
        [audio.inside.rtp_port, video.inside.rtp_port]
    );
    assert_eq!(
        media_ports(&body_of(&ok)),
        [audio.outside.rtp_port, video.outside.rtp_port]
    );
    // Bound where the SDP says, and one more pair per side taken.
    let video_key = StreamKey {
        session: sim.media.first_id().expect("session"),
        index: 1,
    };
    assert_eq!(
        sim.media.bound(video_key),
        [
            Some(SocketAddr::new(video.inside.addr, video.inside.rtp_port)),
            Some(SocketAddr::new(video.outside.addr, video.outside.rtp_port)),
        ]
    );
    assert_eq!(
        (
            pairs_used(&sim, Side::Inside),
            pairs_used(&sim, Side::Outside)
        ),
        (2, 2)
    );
    assert_eq!(session.inside[1].sdp, Some(addr("10.0.0.10:40002")));
    assert_eq!(session.outside[1].sdp, Some(addr("198.51.100.20:30002")));

    hang_up(&mut sim);
    sim.assert_clean();
}

/// The outside relay port the table draws first (the same seed draws the same ports).
fn first_outside_port() -> u16 {
    let mut probe = Sim::new();
    probe.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    probe.media.first().expect("a media session").streams[0]
        .outside
        .rtp_port
}

/// Without a warm pair the call's ports are bound after the offer left with them; a port
/// another program holds cannot be swapped for another then (the carrier was told it), so the
/// call ends: 503 to the PBX, CANCEL to the carrier once it answers provisionally.
#[test]
fn a_relay_port_another_program_holds_ends_the_call_that_named_it() {
    let taken = first_outside_port();
    let mut sim = Sim::new();
    let outside = addr("203.0.113.1:0").ip();
    sim.media.occupy(SocketAddr::new(outside, taken));
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(
        sim.media.busy_binds(),
        1,
        "the drawn pair could not be bound"
    );
    let invite = sim.take_carrier().remove(0);
    assert_eq!(
        media_ports(&body_of(&invite)),
        [taken],
        "the offer named the port before the bind ran"
    );
    let to_pbx = sim.take_pbx();
    let codes: Vec<u16> = to_pbx.iter().map(status).collect();
    assert!(codes.contains(&503), "the PBX may try elsewhere: {codes:?}");
    // The carrier rings: the call it was offered is cancelled.
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
    );
    let cancel = sim.take_carrier();
    assert_eq!(
        cancel.iter().map(Message::method).collect::<Vec<_>>(),
        [Some(&Method::Cancel)]
    );
    sim.deliver(
        carrier(),
        &carrier_response(&cancel[0], 200, "OK", Some("ctag1"), None),
    );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 487, "Request Terminated", Some("ctag1"), None),
    );
    assert!(sim.media.is_empty(), "its ports are back");
    sim.assert_clean();
}

/// With warm pairs (the daemon's `media.warm_pairs`), a held port is found while binding
/// ahead: the call's own binds never fail, and its SDP names pairs bound before it arrived.
#[test]
fn with_warm_pairs_a_held_port_is_found_before_any_call_draws_it() {
    let mut probe = Sim::new();
    let now = probe.now;
    probe.media.set_warm_pairs(now, 1);
    let outside = addr("203.0.113.1:0").ip();
    let first = probe.media.warm();
    let held = *first
        .iter()
        .find(|a| a.ip() == outside)
        .expect("a warm pair outside");
    let mut sim = Sim::new();
    sim.media.occupy(held);
    sim.media.set_warm_pairs(now, 1);
    assert_eq!(sim.media.warm_failures(), 1, "the held pair failed ahead");
    assert!(!sim.media.warm().contains(&held));
    // The tick asks again, for another pair.
    sim.media.tick(now);
    let warm = sim.media.warm();
    assert_eq!(warm.len(), 2, "{warm:?}");
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(sim.media.busy_binds(), 0, "no bind of the call failed");
    let invite = sim.take_carrier().remove(0);
    let relay = sim.media.first().expect("a media session").streams[0];
    assert!(warm.contains(&SocketAddr::new(outside, relay.outside.rtp_port)));
    assert_eq!(media_ports(&body_of(&invite)), [relay.outside.rtp_port]);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 486, "Busy Here", Some("ctag1"), None),
    );
    assert!(sim.media.is_empty());
    sim.assert_clean();
}

/// The inside port the video stream of [`add_video`] draws on a fresh simulation.
fn first_video_inside_port() -> u16 {
    let mut probe = Sim::new();
    let invite = establish_outbound(&mut probe);
    add_video(&mut probe, &invite);
    probe.media.first().expect("a media session").streams[1]
        .inside
        .rtp_port
}

/// A stream added by a re-offer has its ports in the offer to the PBX before they are
/// bound; one that another program holds ends the call (BYE both ways), since the PBX would
/// send the new stream's media to a port nobody reads. (Before the table's endpoints were
/// final, the daemon named the busy port here while relaying on another.)
#[test]
fn an_added_streams_busy_port_ends_the_call() {
    let taken = first_video_inside_port();
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let inside = addr("10.0.0.1:0").ip();
    sim.media.occupy(SocketAddr::new(inside, taken));
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarvid1", 5, SDP_CARRIER_VIDEO),
    );
    assert_eq!(sim.media.busy_binds(), 1);
    let to_pbx = sim.take_pbx();
    let reinvite = to_pbx
        .iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the re-INVITE went to the PBX");
    assert_eq!(media_ports(&body_of(reinvite))[1], taken);
    let to_carrier = sim.take_carrier();
    let byes = |sent: &[Message]| {
        sent.iter()
            .filter(|m| m.method() == Some(&Method::Bye))
            .count()
    };
    assert_eq!((byes(&to_pbx), byes(&to_carrier)), (1, 1), "BYE both ways");
    assert!(sim.media.is_empty());
    assert_eq!(ended(&mut sim), [EndReason::MediaFailure]);
}

#[test]
fn a_cancelled_call_gives_its_pairs_back() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(
        (
            pairs_used(&sim, Side::Inside),
            pairs_used(&sim, Side::Outside)
        ),
        (1, 1)
    );
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 180, "Ringing", Some("ctag1"), None),
    );
    sim.deliver(
        pbx(),
        "CANCEL sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx1;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>
Call-ID: pbx-call-1
CSeq: 10 CANCEL
Content-Length: 0

",
    );
    assert_eq!(
        (
            pairs_used(&sim, Side::Inside),
            pairs_used(&sim, Side::Outside)
        ),
        (0, 0)
    );
    assert!(sim.media.holds_nothing(), "{:?}", sim.media);
    // The carrier confirms: nothing more to give back.
    let cancel = sim
        .take_carrier()
        .into_iter()
        .find(|m| m.method() == Some(&Method::Cancel))
        .expect("CANCEL to the carrier");
    sim.deliver(
        carrier(),
        &carrier_response(&cancel, 200, "OK", Some("ctag1"), None),
    );
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 487, "Request Terminated", Some("ctag1"), None),
    );
    sim.assert_clean();
}
