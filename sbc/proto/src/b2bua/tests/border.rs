//! Holding the border: SDP lines and bodies that would reveal the other side never cross,
//! SDP naming addresses the relay must not send to is refused with 488, media that cannot be
//! anchored is refused instead of passed on, relayed reason phrases are the standard ones and
//! redirect Contacts name only the SBC. The harness's leak check (`Sim::collect`) fails any
//! test in which an inside value reaches the carrier or an outside value the PBX.

use super::*;

/// The PBX's SDP with every topology probe of issue 13: session `i=`/`u=`/`e=`/`p=`, media-level
/// `i=` and `k=`, `a=candidate` with an inside address, `a=tool`, a vendor attribute, a second
/// `c=` and `a=rtcp`, plus lines that must survive.
const SDP_PROBES: &str = "v=0
o=pbx 1234 1 IN IP4 10.0.0.10
s=pbx.lan call
i=PBX-Model-9 trunk group 4
u=http://pbx.lan/cdr
e=ops@pbx.lan
p=+1 555 0100 ext 10.0.0.77
c=IN IP4 10.0.0.10
b=AS:80
b=X-PBX:10
t=0 0
a=tool:PBX-Model-9 v4.2
a=X-pbx-node:pbx.lan
m=audio 40000 RTP/AVP 0 8 101
i=trunk to 10.0.0.99
c=IN IP4 10.0.0.10
c=IN IP4 10.0.0.66
k=clear:pbx.lan-secret
b=TIAS:64000
a=candidate:1 1 UDP 2130706431 10.0.0.10 40000 typ host
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=rtcp:40001 IN IP4 10.0.0.10
a=rtcp:40003 IN IP4 10.0.0.68
a=X-vendor-trace:pbx.lan
a=ssrc:99 cname:alice@pbx.lan
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PBXKEY
a=sendrecv
m=image 40010 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxUdpEC:t38UDPRedundancy
a=T38VendorInfo:0 0 PBX-Model-9
";

fn refusals(sim: &mut Sim) -> Vec<&'static str> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::BorderRefusal { reason } => Some(reason),
            _ => None,
        })
        .collect()
}

/// The INVITE from the PBX with `body` of `content_type` (None: no Content-Type header).
fn pbx_invite_with(content_type: Option<&str>, body: &str) -> String {
    let head = pbx_invite("z9hG4bKpbx1", None);
    let head = head.trim_end_matches("Content-Length: 0\n\n");
    let ct = content_type.map_or(String::new(), |c| format!("Content-Type: {c}\n"));
    let body = body.replace("\r\n", "\n").replace('\n', "\r\n");
    format!("{head}{ct}Content-Length: {}\n\n{body}", body.len()).replace("\r\n", "\n")
}

/// An inbound call from the carrier; returns the INVITE the PBX got.
fn inbound(sim: &mut Sim, sdp: &str) -> Message {
    sim.deliver(
        carrier(),
        &with_body(
            "INVITE sip:+15557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar1;rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
",
            sdp,
        ),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    sim.take_pbx().remove(0)
}

/// A response from the PBX to `req` (the SBC's request on the inside leg).
fn pbx_response(req: &Message, code_reason: &str, extra: &str, sdp: Option<&str>) -> String {
    let to = hdr(req, HeaderName::To);
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag=ptag1")
    };
    let head = format!(
        "SIP/2.0 {code_reason}
Via: {}
From: {}
To: {to}
Call-ID: {}
CSeq: {}
{extra}",
        hdr(req, HeaderName::Via),
        hdr(req, HeaderName::From),
        req.call_id(),
        hdr(req, HeaderName::CSeq)
    );
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

/// An in-dialog request from the carrier on an established outbound call.
fn carrier_in_dialog(invite: &Message, method: &str, cseq: u32, extra: &str, body: &str) -> String {
    let tag = invite.from().tag().unwrap_or("");
    let body = body.replace('\n', "\r\n");
    format!(
        "{method} sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcarx{cseq};rport
Max-Forwards: 70
From: <sip:15551234567@198.51.100.7:5090>;tag=ctag1
To: <sip:100@203.0.113.1>;tag={tag}
Call-ID: {}
CSeq: {cseq} {method}
Contact: <sip:gw@198.51.100.20:5060>
{extra}Content-Length: {}

{body}",
        invite.call_id(),
        body.len()
    )
    .replace("\r\n", "\n")
}

#[test]
fn sdp_topology_probes_never_reach_the_carrier() {
    let mut sim = Sim::new();
    // The leak check in `collect` fails here if any probe crosses.
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PROBES)));
    let inv = sim.take_carrier().remove(0);
    assert_eq!(hdr(&inv, HeaderName::ContentType), "application/sdp");
    let body = body_of(&inv);
    for gone in [
        "i=",
        "u=",
        "e=",
        "p=",
        "k=",
        "b=X",
        "a=tool",
        "a=X-",
        "a=candidate",
        "a=ssrc",
        "a=crypto",
        "T38VendorInfo",
        "PBX",
    ] {
        assert!(!body.contains(gone), "{gone} crossed:\n{body}");
    }
    for kept in [
        "s=-\n",
        "b=AS:80\n",
        "b=TIAS:64000\n",
        "a=rtpmap:0 PCMU/8000\n",
        "a=fmtp:101 0-16\n",
        "a=ptime:20\n",
        "a=sendrecv\n",
        "a=T38FaxVersion:0\n",
        "a=T38FaxUdpEC:t38UDPRedundancy\n",
    ] {
        assert!(body.contains(kept), "{kept:?} lost:\n{body}");
    }
    assert_eq!(body.matches("c=").count(), 2, "one c= per section:\n{body}");
    assert_eq!(body.matches("a=rtcp:").count(), 1, "{body}");
    // The relay's outside RTCP port, the one above the RTP port the table drew.
    let relay = sim.media.first().expect("a media session").streams[0].outside;
    assert_eq!(relay.rtcp_port, relay.rtp_port + 1);
    assert!(
        body.contains(&format!("a=rtcp:{} IN IP4 203.0.113.1\n", relay.rtcp_port)),
        "{body}"
    );
}

#[test]
fn sdp_topology_probes_never_reach_the_pbx() {
    let mut sim = Sim::new();
    let carrier_probes = SDP_PROBES
        .replace("10.0.0.", "198.51.100.")
        .replace("pbx.lan", "Carrier-Switch-3");
    let to_pbx = inbound(&mut sim, &carrier_probes);
    let body = body_of(&to_pbx);
    assert!(
        !body.contains("a=candidate") && !body.contains("a=tool"),
        "{body}"
    );
    assert!(body.contains("c=IN IP4 10.0.0.1\n"), "{body}");
}

#[test]
fn multipart_invite_sends_its_sdp_part_alone() {
    let mut sim = Sim::new();
    let sdp = SDP_PBX.replace('\n', "\r\n");
    let body = format!(
        "--sep\r\nContent-Type: application/vnd.pbx-routing+xml\r\n\r\n\
<route host=\"pbx.lan\" ip=\"10.0.0.10\"/>\r\n--sep\r\nContent-Type: application/sdp\r\n\
Content-Disposition: session\r\n\r\n{sdp}\r\n--sep--\r\n"
    );
    sim.deliver(
        pbx(),
        &pbx_invite_with(Some("multipart/mixed;boundary=sep"), &body),
    );
    let inv = sim.take_carrier().remove(0);
    assert_eq!(hdr(&inv, HeaderName::ContentType), "application/sdp");
    let text = body_of(&inv);
    assert!(
        text.starts_with("v=0\n") && text.contains("c=IN IP4 203.0.113.1\n"),
        "{text}"
    );
    assert!(!text.contains("--sep") && !text.contains("route"), "{text}");
    assert_eq!(sim.media.len(), 1, "the SDP part was anchored");
}

#[test]
fn bodies_without_an_allowed_type_get_415() {
    for (ct, body, reason) in [
        (None, SDP_PBX, "body_no_content_type"),
        (Some("application/vnd.pbx+xml"), "<x/>", "body_type"),
        (
            Some("multipart/mixed;boundary=b"),
            "--b\r\nContent-Type: text/plain\r\n\r\npbx.lan\r\n--b--\r\n",
            "body_multipart_without_sdp",
        ),
    ] {
        let mut sim = Sim::new();
        sim.deliver(pbx(), &pbx_invite_with(ct, body));
        assert!(sim.take_carrier().is_empty(), "{reason}: nothing relayed");
        let r = sim.take_pbx();
        let refused = r.iter().find(|m| status(m) == 415).expect("415");
        assert_eq!(
            hdr(refused, HeaderName::Accept),
            "application/sdp, multipart/mixed"
        );
        assert_eq!(refusals(&mut sim), [reason]);
        sim.assert_clean();
    }
}

#[test]
fn in_dialog_bodies_follow_the_method_allowlist() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    // DTMF in INFO crosses.
    sim.deliver(
        carrier(),
        &carrier_in_dialog(
            &invite,
            "INFO",
            7,
            "Content-Type: application/dtmf-relay\n",
            "Signal=5\nDuration=160\n",
        ),
    );
    let info = sim.take_pbx().remove(0);
    assert_eq!(
        hdr(&info, HeaderName::ContentType),
        "application/dtmf-relay"
    );
    assert_eq!(body_of(&info), "Signal=5\nDuration=160\n");
    // SDP in INFO (no offer/answer there) and unknown types do not.
    for (cseq, ct, body) in [
        (8, "application/sdp", SDP_CARRIER),
        (
            9,
            "application/x-switch-debug",
            "Carrier-Switch-3 node 198.51.100.9",
        ),
    ] {
        sim.deliver(
            carrier(),
            &carrier_in_dialog(
                &invite,
                "INFO",
                cseq,
                &format!("Content-Type: {ct}\n"),
                body,
            ),
        );
        assert!(sim.take_pbx().is_empty(), "{ct} relayed");
        let r = sim.take_carrier();
        assert_eq!(r.iter().map(status).collect::<Vec<_>>(), [415], "{ct}");
        assert_eq!(
            hdr(&r[0], HeaderName::Accept),
            "application/dtmf-relay, application/dtmf"
        );
    }
    // A sipfrag is cut to its status line.
    sim.deliver(
        carrier(),
        &carrier_in_dialog(
            &invite,
            "NOTIFY",
            10,
            "Event: refer\nSubscription-State: active\nContent-Type: message/sipfrag\n",
            "SIP/2.0 180 Ringing at Carrier-Switch-3\nVia: SIP/2.0/UDP 198.51.100.9\n",
        ),
    );
    let notify = sim.take_pbx().remove(0);
    assert_eq!(body_of(&notify), "SIP/2.0 180 Ringing\n");
    assert_eq!(
        refusals(&mut sim),
        ["body_type", "body_type"],
        "each refusal counted"
    );
    assert_eq!(
        sim.sbc.stats().calls,
        1,
        "refused bodies do not end the call"
    );
}

#[test]
fn sdp_naming_addresses_the_relay_must_not_send_to_gets_488() {
    for (address, reason) in [
        ("203.0.113.1", "sdp_own_address"),
        ("10.0.0.1", "sdp_own_address"),
        ("127.0.0.1", "sdp_loopback"),
        ("224.0.0.1", "sdp_multicast"),
        ("255.255.255.255", "sdp_broadcast"),
        ("169.254.7.7", "sdp_link_local"),
    ] {
        let mut sim = Sim::new();
        let sdp = SDP_PBX.replace("c=IN IP4 10.0.0.10", &format!("c=IN IP4 {address}"));
        sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(&sdp)));
        assert!(sim.take_carrier().is_empty(), "{address}: no INVITE out");
        assert_eq!(
            sim.take_pbx().iter().map(status).collect::<Vec<_>>(),
            [100, 488],
            "{address}"
        );
        assert!(sim.media.is_empty(), "{address}: no relay ports");
        assert_eq!(refusals(&mut sim), [reason]);
        sim.assert_clean();
    }
    // The same check applies to the carrier's offers, IPv6 included.
    let mut sim = Sim::new();
    let sdp = SDP_CARRIER.replace("c=IN IP4 198.51.100.20", "c=IN IP6 fe80::1");
    sim.deliver(
        carrier(),
        &with_body(
            "INVITE sip:+15557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar1;rport
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
",
            &sdp,
        ),
    );
    assert!(sim.take_pbx().is_empty());
    assert_eq!(
        sim.take_carrier().iter().map(status).collect::<Vec<_>>(),
        [100, 488]
    );
    assert_eq!(refusals(&mut sim), ["sdp_link_local"]);
}

#[test]
fn unspecified_address_is_a_hold_not_a_target() {
    let mut sim = Sim::new();
    let sdp = SDP_PBX.replace("c=IN IP4 10.0.0.10", "c=IN IP4 0.0.0.0");
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(&sdp)));
    let inv = sim.take_carrier().remove(0);
    let body = body_of(&inv);
    assert!(body.contains("c=IN IP4 203.0.113.1\n"), "{body}");
    assert!(
        body.contains("a=sendonly\n") && !body.contains("a=sendrecv"),
        "forwarded as hold: {body}"
    );
    let session = sim.media.first().expect("anchored");
    let desc = session.inside[0];
    assert_eq!(desc.sdp, None, "0.0.0.0 is no destination");
    assert_eq!(desc.direction, crate::media::Direction::SendOnly);
    assert!(refusals(&mut sim).is_empty());
}

#[test]
fn answer_that_cannot_be_anchored_gets_488_not_a_bare_2xx() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let loop_sdp = SDP_CARRIER.replace("c=IN IP4 198.51.100.20", "c=IN IP4 127.0.0.1");
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&loop_sdp)),
    );
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.iter().map(status).collect::<Vec<_>>(), [488]);
    let to_carrier = sim.take_carrier();
    assert_eq!(
        to_carrier
            .iter()
            .map(|m| m.method().cloned())
            .collect::<Vec<_>>(),
        [Some(Method::Ack), Some(Method::Bye)],
        "the carrier's 2xx is ACKed and its dialog ended"
    );
    assert_eq!(refusals(&mut sim), ["sdp_loopback"]);
    sim.deliver(
        carrier(),
        &carrier_response(&to_carrier[1], 200, "OK", None, None),
    );
    sim.assert_clean();
}

#[test]
fn reoffer_to_a_refused_address_gets_488_and_the_call_stays() {
    let mut sim = Sim::new();
    let invite = establish_outbound(&mut sim);
    let sdp = SDP_CARRIER
        .replace("c=IN IP4 198.51.100.20", "c=IN IP4 224.0.0.1")
        .replace("777 1", "777 2");
    sim.deliver(
        carrier(),
        &carrier_in_dialog(
            &invite,
            "INVITE",
            5,
            "Content-Type: application/sdp\n",
            &sdp,
        ),
    );
    assert!(sim.take_pbx().is_empty());
    assert_eq!(
        sim.take_carrier().iter().map(status).collect::<Vec<_>>(),
        [100, 488]
    );
    assert_eq!(refusals(&mut sim), ["sdp_multicast"]);
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn relayed_reason_phrases_are_the_standard_ones() {
    for (sent, relayed) in [
        ("486 Busy at pbx-b.lan", "Busy Here"),
        ("499 PBX cluster 10.0.0.77 says no", "Client Error"),
        ("607 Unwanted by extension 201", "Unwanted"),
    ] {
        let mut sim = Sim::new();
        let to_pbx = inbound(&mut sim, SDP_CARRIER);
        sim.deliver(pbx(), &pbx_response(&to_pbx, sent, "", None));
        let r = sim
            .take_carrier()
            .into_iter()
            .find(|m| status(m) >= 400)
            .expect("final relayed");
        assert_eq!(r.reason_phrase(), Some(relayed), "{sent}");
    }
}

#[test]
fn redirect_from_the_pbx_names_only_the_sbc() {
    let mut sim = Sim::new();
    let to_pbx = inbound(&mut sim, SDP_CARRIER);
    sim.deliver(
        pbx(),
        &pbx_response(
            &to_pbx,
            "302 Moved to pbx-b.lan",
            "Contact: <sip:+1-555-0100@10.0.0.10:5070;transport=tcp>;q=0.5\n\
Contact: \"Alice\" <sip:alice@pbx.lan>, <tel:+15550101;phone-context=pbx.lan>\n",
            None,
        ),
    );
    let r = sim.take_carrier().remove(0);
    assert_eq!(status(&r), 302);
    assert_eq!(r.reason_phrase(), Some("Moved Temporarily"));
    let contacts: Vec<&str> = r
        .headers()
        .all(HeaderName::Contact)
        .filter_map(|h| h.value_str())
        .collect();
    assert_eq!(
        contacts,
        ["<sip:+15550100@203.0.113.1:5080>;q=0.5", "<tel:+15550101>"]
    );
}

#[test]
fn late_offer_answer_that_cannot_be_anchored_ends_the_call() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", None));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx().remove(0);
    let tag = ok.to().tag().unwrap_or("").to_owned();
    sim.deliver(
        pbx(),
        &with_body(
            &format!(
                "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={tag}
Call-ID: pbx-call-1
CSeq: 10 ACK
"
            ),
            &SDP_PBX.replace("c=IN IP4 10.0.0.10", "c=IN IP4 10.0.0.1"),
        ),
    );
    let out = sim.take_carrier();
    assert_eq!(
        out.iter().map(|m| m.method().cloned()).collect::<Vec<_>>(),
        [Some(Method::Ack), Some(Method::Bye)]
    );
    assert!(out[0].body().is_empty(), "nothing unanchored in the ACK");
    assert_eq!(
        sim.take_pbx()
            .iter()
            .map(|m| m.method().cloned())
            .collect::<Vec<_>>(),
        [Some(Method::Bye)]
    );
    assert_eq!(refusals(&mut sim), ["sdp_own_address"]);
}
