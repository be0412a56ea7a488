//! Digest pass-through (`auth = passthrough`, and challenges from the PBX): the 401/407 crosses
//! with its challenge intact and the challenged side's retry continues the same callee dialog
//! (same Call-ID and From tag, CSeq + 1) with its credentials.

use super::*;

/// The carrier's domain: in pass-through the PBX addresses it (the Request-URI crosses as is).
const CARRIER_URI: &str = "sip:15551234567@sip.carrier.example";
const CHALLENGE: &str = "Digest realm=\"sip.carrier.example\", nonce=\"n0nce-1\", opaque=\"op-9\", qop=\"auth\", \
     algorithm=MD5";
const CREDENTIALS: &str = "Digest username=\"4930123\", realm=\"sip.carrier.example\", \
     nonce=\"n0nce-1\", uri=\"sip:15551234567@sip.carrier.example\", \
     response=\"0123456789abcdef0123456789abcdef\", opaque=\"op-9\", qop=auth, nc=00000001, \
     cnonce=\"c1\", algorithm=MD5";

fn passthrough_sim() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].auth = TrunkAuth::Passthrough;
    sim.sbc.set_config(cfg);
    sim
}

/// The PBX's INVITE addressed to the carrier's domain, CSeq `cseq`, with `extra` headers.
fn invite_to_carrier(branch: &str, cseq: u32, extra: &str) -> String {
    pbx_invite(branch, Some(SDP_PBX))
        .replace(
            "INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0",
            &format!("INVITE {CARRIER_URI} SIP/2.0"),
        )
        .replace(
            "To: <sip:15551234567@10.0.0.1>",
            &format!("To: <{CARRIER_URI}>"),
        )
        .replace(
            "CSeq: 10 INVITE\n",
            &format!("CSeq: {cseq} INVITE\n{extra}"),
        )
}

fn challenge_response(req: &Message, code: u16) -> String {
    let (reason, name) = if code == 401 {
        ("Unauthorized", "WWW-Authenticate")
    } else {
        ("Proxy Authentication Required", "Proxy-Authenticate")
    };
    carrier_response(req, code, reason, Some("chal1"), None).replace(
        "Content-Length: 0",
        &format!("{name}: {CHALLENGE}\nContent-Length: 0"),
    )
}

fn values(m: &Message, name: &str) -> Vec<String> {
    m.headers()
        .all_named(name)
        .filter_map(|h| h.value_str().map(str::to_owned))
        .collect()
}

fn outbound_challenge_is_relayed_and_the_retry_continues_the_dialog(code: u16) {
    let (challenge_hdr, cred_hdr) = if code == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    let mut sim = passthrough_sim();
    sim.deliver(pbx(), &invite_to_carrier("z9hG4bKpbx1", 10, ""));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let first = sim.take_carrier().remove(0);
    assert_eq!(
        first.request_uri_str(),
        Some(CARRIER_URI),
        "the Request-URI the PBX signs is the one the carrier sees"
    );

    sim.deliver(carrier(), &challenge_response(&first, code));
    let to_carrier = sim.take_carrier();
    assert_eq!(
        to_carrier.len(),
        1,
        "only the hop-by-hop ACK: {to_carrier:?}"
    );
    assert_eq!(to_carrier[0].method(), Some(&Method::Ack));
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.len(), 1);
    assert_eq!(status(&to_pbx[0]), code, "the challenge reaches the PBX");
    assert_eq!(
        values(&to_pbx[0], challenge_hdr),
        [CHALLENGE],
        "realm, nonce and opaque untouched"
    );
    assert_eq!(to_pbx[0].cseq().seq, 10);
    assert_eq!(sim.sbc.counters().challenges_relayed, 1);
    assert_eq!(sim.sbc.stats().calls, 0, "the challenged call is over");

    // The PBX's retry: same Call-ID and From tag, CSeq + 1, its credentials for the carrier's
    // realm, and its credentials for another realm (the SBC's own), which must stay behind.
    let retry = invite_to_carrier(
        "z9hG4bKpbx2",
        11,
        &format!(
            "{cred_hdr}: {CREDENTIALS}\n\
             Authorization: Digest username=\"pbx\", realm=\"sbc-own\", nonce=\"x\", \
             uri=\"{CARRIER_URI}\", response=\"00\"\n"
        ),
    );
    sim.deliver(pbx(), &retry);
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let second = sim.take_carrier().remove(0);
    assert_eq!(second.method(), Some(&Method::Invite));
    assert_eq!(
        second.call_id(),
        first.call_id(),
        "same Call-ID on the outside"
    );
    assert_eq!(second.from().tag(), first.from().tag(), "same From tag");
    assert_eq!(second.to().tag(), None);
    assert_eq!(second.cseq().seq, first.cseq().seq + 1, "CSeq + 1 there");
    assert_eq!(second.request_uri_str(), Some(CARRIER_URI));
    assert_ne!(second.top_via().branch(), first.top_via().branch());
    assert_eq!(
        values(&second, cred_hdr),
        [CREDENTIALS],
        "only the credentials for the challenged realm, verbatim"
    );
    if code == 407 {
        assert!(values(&second, "Authorization").is_empty());
    }
    assert_eq!(sim.sbc.counters().auth_relayed_retries, 1);

    // The call proceeds on the retried dialog.
    sim.deliver(
        carrier(),
        &carrier_response(&second, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx();
    assert_eq!(status(&ok[0]), 200);
    assert_eq!(ok[0].cseq().seq, 11, "answers the PBX's retry");
    let ack = sim.take_carrier().remove(0);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().seq, second.cseq().seq);
}

#[test]
fn carrier_401_is_relayed_to_the_pbx_and_its_retry_continues_the_dialog() {
    outbound_challenge_is_relayed_and_the_retry_continues_the_dialog(401);
}

#[test]
fn carrier_407_is_relayed_to_the_pbx_and_its_retry_continues_the_dialog() {
    outbound_challenge_is_relayed_and_the_retry_continues_the_dialog(407);
}

#[test]
fn a_retry_after_64_t1_starts_a_new_outside_dialog() {
    let mut sim = passthrough_sim();
    sim.deliver(pbx(), &invite_to_carrier("z9hG4bKpbx1", 10, ""));
    let first = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &challenge_response(&first, 401));
    sim.take_carrier();
    sim.take_pbx();
    sim.advance(Duration::from_secs(33));
    sim.deliver(
        pbx(),
        &invite_to_carrier(
            "z9hG4bKpbx2",
            11,
            &format!("Authorization: {CREDENTIALS}\n"),
        ),
    );
    let second = sim.take_carrier().remove(0);
    assert_ne!(
        second.call_id(),
        first.call_id(),
        "the challenge was forgotten"
    );
    assert_eq!(second.cseq().seq, 1);
    assert!(values(&second, "Authorization").is_empty());
}

#[test]
fn sbc_mode_without_credentials_answers_403_never_a_401_without_its_challenge() {
    // Explicit: a configured trunk without credentials resolves to pass-through unless it says
    // `auth = "sbc"` (or rewrites the called number), and this is what it then gets.
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].auth = TrunkAuth::Sbc;
    cfg.trunks[0].credentials = None;
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    assert_eq!(
        first.request_uri_str(),
        Some("sip:15551234567@198.51.100.7:5090"),
        "auth = sbc rewrites the Request-URI"
    );
    sim.deliver(carrier(), &challenge_response(&first, 401));
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.iter().map(status).collect::<Vec<_>>(), [403]);
    assert!(values(&to_pbx[0], "WWW-Authenticate").is_empty());
    assert_eq!(sim.sbc.counters().auth_failures, 1);
    sim.assert_clean();
}

const PBX_REALM_CHALLENGE: &str = "Digest realm=\"pbx-realm\", nonce=\"pn-1\", qop=\"auth\"";

/// A carrier's INVITE for the PBX, CSeq `cseq`, with `extra` headers.
fn carrier_invite(branch: &str, cseq: u32, extra: &str) -> String {
    with_body(
        &format!(
            "INVITE sip:+15557654321@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch={branch};rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:+15557654321@203.0.113.1>
Call-ID: car-call-9
CSeq: {cseq} INVITE
Contact: <sip:gw@198.51.100.20:5060>
{extra}"
        ),
        SDP_CARRIER,
    )
}

#[test]
fn pbx_challenge_to_a_carrier_call_is_relayed_and_the_carrier_retry_reaches_the_pbx() {
    // Default trunk mode (sbc): the SBC has no credentials for the PBX, so its challenges
    // always cross.
    let mut sim = Sim::new();
    sim.deliver(carrier(), &carrier_invite("z9hG4bKcar1", 1, ""));
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let first = sim.take_pbx().remove(0);
    let challenge = format!(
        "SIP/2.0 407 Proxy Authentication Required
Via: {}
From: {}
To: {};tag=ptag9
Call-ID: {}
CSeq: 1 INVITE
Proxy-Authenticate: {PBX_REALM_CHALLENGE}
Content-Length: 0

",
        hdr(&first, HeaderName::Via),
        hdr(&first, HeaderName::From),
        hdr(&first, HeaderName::To),
        first.call_id()
    );
    sim.deliver(pbx(), &challenge);
    assert_eq!(sim.take_pbx()[0].method(), Some(&Method::Ack));
    let to_carrier = sim.take_carrier();
    assert_eq!(status(&to_carrier[0]), 407);
    assert_eq!(
        values(&to_carrier[0], "Proxy-Authenticate"),
        [PBX_REALM_CHALLENGE]
    );
    let creds = "Digest username=\"carrier\", realm=\"pbx-realm\", nonce=\"pn-1\", \
                 uri=\"sip:+15557654321@203.0.113.1:5080\", response=\"ab\"";
    sim.deliver(
        carrier(),
        &carrier_invite("z9hG4bKcar2", 2, &format!("Proxy-Authorization: {creds}\n")),
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let second = sim.take_pbx().remove(0);
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.from().tag(), first.from().tag());
    assert_eq!(second.cseq().seq, first.cseq().seq + 1);
    assert_eq!(values(&second, "Proxy-Authorization"), [creds]);
}

#[test]
fn passthrough_inbound_keeps_the_carrier_request_uri() {
    let mut sim = passthrough_sim();
    sim.deliver(carrier(), &carrier_invite("z9hG4bKcar1", 1, ""));
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(
        to_pbx.request_uri_str(),
        Some("sip:+15557654321@203.0.113.1:5080"),
        "the Request-URI the carrier would sign"
    );
}

#[test]
fn max_forwards_is_decremented_to_zero_and_the_next_b2bua_answers_483() {
    // SBC 1: a request arriving with Max-Forwards 1 leaves with 0 (not reset, not held at 1).
    let mut sim = Sim::new();
    sim.deliver(
        pbx(),
        &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)).replace("Max-Forwards: 70", "Max-Forwards: 1"),
    );
    let out = sim.take_carrier().remove(0);
    assert_eq!(out.max_forwards(), Some(0));
    // SBC 2 (same software, its outside facing SBC 1) receives it: 483, the loop ends.
    let mut second = Sim::new();
    second.with_media(|b, now, m| b.handle_message(now, carrier(), out, m));
    second.collect();
    let answers = second.take_carrier();
    assert_eq!(answers.iter().map(status).collect::<Vec<_>>(), [483]);
    assert!(second.take_pbx().is_empty());
}

#[test]
fn in_dialog_options_with_max_forwards_zero_gets_483_not_relayed() {
    let mut sim = Sim::new();
    let _ = establish_outbound(&mut sim);
    let our_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
        .unwrap_or_default();
    sim.deliver(
        pbx(),
        &format!(
            "OPTIONS sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxopt;rport
Max-Forwards: 0
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 OPTIONS
Content-Length: 0

"
        ),
    );
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [483]);
    assert!(sim.take_carrier().is_empty(), "not relayed");
}
