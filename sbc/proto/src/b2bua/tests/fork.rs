//! Forking on the carrier side (RFC 3261 §13.2.2.4): early dialogs with different To tags
//! reach the PBX as one early dialog whose SDP follows the newest; the first 2xx wins and a
//! later 2xx from another dialog is ACKed and BYEd.

use super::*;

/// SDP of a second forked endpoint (another origin, another address).
const SDP_FORK_B: &str = "v=0
o=switch-b 888 1 IN IP4 198.51.100.30
s=-
c=IN IP4 198.51.100.30
t=0 0
m=audio 32000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

fn fork_response(invite: &Message, code: u16, tag: &str, host: &str, sdp: Option<&str>) -> String {
    let reason = match code {
        180 => "Ringing",
        183 => "Session Progress",
        _ => "OK",
    };
    carrier_response(invite, code, reason, Some(tag), sdp)
        .replace("sip:gw@198.51.100.20:5060", &format!("sip:gw@{host}:5060"))
}

/// The o= version of an SDP body.
fn sdp_version(m: &Message) -> String {
    let body = String::from_utf8_lossy(m.body()).to_string();
    body.lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split(' ').nth(2))
        .unwrap_or_default()
        .to_owned()
}

fn outside_addr(sim: &Sim) -> String {
    sim.media
        .first()
        .and_then(|s| s.outside.first().and_then(|p| p.sdp))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

#[test]
fn two_early_dialogs_one_toward_the_pbx_first_2xx_wins_the_other_is_byed() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);

    sim.deliver(
        carrier(),
        &fork_response(&invite, 183, "forka", "198.51.100.20", Some(SDP_CARRIER)),
    );
    let a = sim.take_pbx().remove(0);
    assert_eq!(status(&a), 183);
    let pbx_tag = a.to().tag().expect("our tag").to_owned();
    assert_eq!(outside_addr(&sim), "198.51.100.20:30000");

    sim.deliver(
        carrier(),
        &fork_response(&invite, 180, "forkb", "198.51.100.30", Some(SDP_FORK_B)),
    );
    let b = sim.take_pbx().remove(0);
    assert_eq!(status(&b), 180);
    assert_eq!(
        b.to().tag(),
        Some(pbx_tag.as_str()),
        "one early dialog toward the PBX"
    );
    assert!(
        !b.body().is_empty(),
        "the new early dialog's SDP is sent on"
    );
    assert_ne!(sdp_version(&b), sdp_version(&a), "as a new SDP version");
    assert_eq!(
        outside_addr(&sim),
        "198.51.100.30:32000",
        "media re-anchored to the newest early dialog"
    );

    // Dialog B answers first and wins.
    sim.deliver(
        carrier(),
        &fork_response(&invite, 200, "forkb", "198.51.100.30", Some(SDP_FORK_B)),
    );
    let ok = sim.take_pbx();
    assert_eq!(ok.iter().map(status).collect::<Vec<_>>(), [200]);
    let ack = sim.take_carrier().remove(0);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.to().tag(), Some("forkb"));
    assert_eq!(ack.request_uri_str(), Some("sip:gw@198.51.100.30:5060"));

    // Dialog A answers too: ACK and BYE it, nothing to the PBX.
    let late = fork_response(&invite, 200, "forka", "198.51.100.20", Some(SDP_CARRIER));
    sim.deliver(carrier(), &late);
    assert!(
        sim.take_pbx().is_empty(),
        "the PBX never sees the second answer"
    );
    let out = sim.take_carrier();
    let methods: Vec<_> = out.iter().filter_map(Message::method).collect();
    assert_eq!(methods, [&Method::Ack, &Method::Bye]);
    for m in &out {
        assert_eq!(m.to().tag(), Some("forka"));
        assert_eq!(m.request_uri_str(), Some("sip:gw@198.51.100.20:5060"));
        assert_eq!(m.call_id(), invite.call_id());
    }
    assert_eq!(out[0].cseq().seq, invite.cseq().seq);
    assert!(out[1].cseq().seq > invite.cseq().seq);
    // Its retransmission: the same ACK, no second BYE.
    sim.deliver(carrier(), &late);
    let again = sim.take_carrier();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].as_bytes(), out[0].as_bytes());
    sim.deliver(carrier(), &carrier_response(&out[1], 200, "OK", None, None));
    assert!(sim.take_pbx().is_empty());

    // The call goes on with dialog B: the PBX's BYE goes there.
    assert_eq!(
        sim.sbc.calls()[0].legs[1].remote_tag.as_deref(),
        Some("forkb")
    );
    sim.deliver(
        pbx(),
        &format!(
            "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={pbx_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
        ),
    );
    let bye = sim.take_carrier().remove(0);
    assert_eq!(bye.to().tag(), Some("forkb"));
    assert_eq!(bye.request_uri_str(), Some("sip:gw@198.51.100.30:5060"));
}

#[test]
fn a_2xx_from_an_older_early_dialog_confirms_that_dialog() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &fork_response(&invite, 180, "forka", "198.51.100.20", None),
    );
    sim.deliver(
        carrier(),
        &fork_response(&invite, 180, "forkb", "198.51.100.30", None),
    );
    assert_eq!(sim.take_pbx().len(), 2);
    sim.deliver(
        carrier(),
        &fork_response(&invite, 200, "forka", "198.51.100.20", Some(SDP_CARRIER)),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    let ack = sim.take_carrier().remove(0);
    assert_eq!(ack.to().tag(), Some("forka"));
    assert_eq!(ack.request_uri_str(), Some("sip:gw@198.51.100.20:5060"));
    assert_eq!(outside_addr(&sim), "198.51.100.20:30000");
}
