//! SRTP termination per leg (`srtp_policy.rs`): the SBC writes its own `a=crypto` keys on each
//! leg, hands each leg's keys to the relay and never lets a key cross; `mandatory` refuses
//! offers and answers without usable crypto, `off` refuses `RTP/SAVP`.

use super::*;
use crate::srtp::{MasterKey, SrtpMode, SrtpPolicy, Suite};

fn sim_with(pbx: SrtpMode, trunk: SrtpMode) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_srtp = SrtpPolicy::new(pbx);
    cfg.trunks[0].srtp = SrtpPolicy::new(trunk);
    sim.sbc.set_config(cfg);
    sim
}

pub(super) fn crypto_lines(body: &str) -> Vec<crate::sdp::Crypto> {
    body.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| crate::sdp::Crypto::parse(v).expect("the SBC writes usable lines"))
        .collect()
}

/// The carrier's SRTP answer with its own key (tag `tag`, suite `suite`).
pub(super) fn carrier_srtp_sdp(tag: u32, suite: Suite, key: &MasterKey) -> String {
    SDP_CARRIER.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv\n",
        &format!(
            "a=crypto:{tag} {suite} inline:{}\na=sendrecv\n",
            key.to_inline()
        ),
    )
}

#[test]
fn plain_pbx_to_mandatory_carrier_gets_its_own_keys_per_leg() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Mandatory);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(offer.contains(" RTP/SAVP 0 8 101\n"), "{offer}");
    let offered = crypto_lines(&offer);
    let suites: Vec<Suite> = offered.iter().map(|c| c.suite).collect();
    assert_eq!(suites, Suite::ALL.to_vec(), "default order");
    assert_ne!(
        offered[0].key.key(),
        offered[1].key.key(),
        "one key per line"
    );
    // Until the carrier answers, the relay is told the carrier leg will be SRTP (it holds
    // the PBX's plain RTP instead of sending it to the carrier in clear).
    let pending = sim.media.first().expect("a media session");
    assert_eq!(pending.expected[1], vec![true], "carrier leg awaits keys");
    assert_eq!(pending.expected[0], vec![false], "the PBX leg stays plain");

    let carrier_key = MasterKey::generate(Suite::AesCm128HmacSha1_80, &mut Rng::from_test_seed(99));
    let answer = carrier_srtp_sdp(offered[1].tag, Suite::AesCm128HmacSha1_80, &carrier_key);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    let to_pbx = body_of(&ok);
    assert!(
        to_pbx.contains(" RTP/AVP "),
        "the PBX keeps plain RTP: {to_pbx}"
    );
    assert!(!to_pbx.contains("crypto"), "{to_pbx}");
    assert!(!to_pbx.contains(&carrier_key.to_inline()));

    let session = sim.media.first().expect("a media session");
    assert_eq!(session.crypto[0], vec![None], "inside stays RTP");
    let outside = session.crypto[1][0].as_ref().expect("outside keys");
    assert_eq!(
        outside.rx.key, carrier_key,
        "the carrier's key decrypts its packets"
    );
    assert_eq!(
        outside.tx.key, offered[1].key,
        "the accepted offered key encrypts ours"
    );
    assert_eq!(outside.rx.suite, Suite::AesCm128HmacSha1_80);
}

#[test]
fn srtp_to_srtp_answers_each_side_with_a_different_key() {
    let mut sim = sim_with(SrtpMode::Mandatory, SrtpMode::Mandatory);
    let pbx_key = MasterKey::generate(Suite::AeadAes128Gcm, &mut Rng::from_test_seed(5));
    let pbx_sdp = SDP_PBX.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv\n",
        &format!(
            "a=crypto:7 AEAD_AES_128_GCM inline:{}\na=sendrecv\n",
            pbx_key.to_inline()
        ),
    );
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(&pbx_sdp)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(
        !offer.contains(&pbx_key.to_inline()),
        "the PBX's key never crosses"
    );
    let offered = crypto_lines(&offer);
    let carrier_key = MasterKey::generate(Suite::AeadAes128Gcm, &mut Rng::from_test_seed(6));
    let answer = carrier_srtp_sdp(offered[0].tag, Suite::AeadAes128Gcm, &carrier_key);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    let to_pbx = body_of(&ok);
    assert!(
        !to_pbx.contains(&carrier_key.to_inline()),
        "the carrier's key never crosses"
    );
    let answered = crypto_lines(&to_pbx);
    assert_eq!(answered.len(), 1);
    assert_eq!(
        (answered[0].tag, answered[0].suite),
        (7, Suite::AeadAes128Gcm)
    );
    assert!(to_pbx.contains(" RTP/SAVP "));

    let s = sim.media.first().expect("session");
    let inside = s.crypto[0][0].as_ref().expect("inside keys");
    let outside = s.crypto[1][0].as_ref().expect("outside keys");
    assert_eq!(inside.rx.key, pbx_key);
    assert_eq!(inside.tx.key, answered[0].key);
    assert_eq!(outside.rx.key, carrier_key);
    let all = [
        &inside.rx.key,
        &inside.tx.key,
        &outside.rx.key,
        &outside.tx.key,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "four different keys");
        }
    }
}

#[test]
fn mandatory_carrier_answering_without_crypto_ends_the_call() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Mandatory);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let to_pbx = sim.take_pbx();
    assert!(
        to_pbx.iter().all(|m| status(m) != 200),
        "no 2xx without the carrier's crypto"
    );
    assert!(to_pbx.iter().any(|m| status(m) >= 400), "{to_pbx:?}");
}

fn carrier_invite(sdp: &str) -> String {
    with_body(
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
    )
}

#[test]
fn carrier_offering_only_unsupported_suites_gets_488() {
    for mode in [SrtpMode::Optional, SrtpMode::Mandatory] {
        let mut sim = sim_with(SrtpMode::Off, mode);
        let sdp = SDP_CARRIER.replace("RTP/AVP", "RTP/SAVP").replace(
            "a=sendrecv\n",
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 \
             inline:8AbZePWwsKhLGX3GlXA+yHYPQ3cgraer/9DkFJYCOPZZy3o9wC0NIbIFYZfyHw==\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_80 \
             inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\na=sendrecv\n",
        );
        sim.deliver(carrier(), &carrier_invite(&sdp));
        let out = sim.take_carrier();
        assert!(out.iter().any(|m| status(m) == 488), "{mode:?}: {out:?}");
        assert!(sim.take_pbx().is_empty(), "nothing reaches the PBX");
    }
}

#[test]
fn savp_offer_toward_an_srtp_off_side_gets_488() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Off);
    let sdp = SDP_CARRIER.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv\n",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n\
         a=sendrecv\n",
    );
    sim.deliver(carrier(), &carrier_invite(&sdp));
    assert!(sim.take_carrier().iter().any(|m| status(m) == 488));
}

#[test]
fn optional_offers_avp_with_crypto_and_accepts_a_plain_answer() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Optional);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offer = body_of(&invite);
    assert!(offer.contains(" RTP/AVP 0 8 101\n"), "{offer}");
    assert_eq!(crypto_lines(&offer).len(), 3);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    let s = sim.media.first().expect("session");
    assert_eq!(s.crypto, [vec![None], vec![None]], "plain RTP both ways");
}

/// A carrier re-INVITE with a new key re-keys only what the carrier sends (the relay's `rx`
/// context for that leg); the SBC keeps its own key (and so its context and ROC) toward the
/// carrier, and answers the re-offer with it.
#[test]
fn reinvite_with_a_new_key_rekeys_that_direction_only() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Mandatory);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let invite = sim.take_carrier().remove(0);
    let offered = crypto_lines(&body_of(&invite));
    let suite = Suite::AesCm128HmacSha1_80;
    let first = MasterKey::generate(suite, &mut Rng::from_test_seed(21));
    let answer = carrier_srtp_sdp(offered[1].tag, suite, &first);
    sim.deliver(
        carrier(),
        &carrier_response(&invite, 200, "OK", Some("ctag1"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    let ack = format!(
        "ACK sip:15551234567@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack1;rport
Max-Forwards: 70
From: {}
To: {}
Call-ID: pbx-call-1
CSeq: 10 ACK
Content-Length: 0

",
        hdr(&ok, HeaderName::From),
        hdr(&ok, HeaderName::To)
    );
    sim.deliver(pbx(), &ack);
    sim.take_carrier();
    let session = sim.media.first_id().expect("session");
    let before = sim.media.session(session).expect("live").crypto[1][0]
        .clone()
        .expect("outside keys");

    let second = MasterKey::generate(suite, &mut Rng::from_test_seed(22));
    let reoffer = carrier_srtp_sdp(5, suite, &second).replace("777 1", "777 2");
    sim.deliver(
        carrier(),
        &carrier_reinvite(&invite, "z9hG4bKcarre1", 5, &reoffer),
    );
    sim.take_carrier();
    let to_pbx = sim.take_pbx().remove(0);
    let pbx_body = body_of(&to_pbx);
    assert!(
        !pbx_body.contains("crypto") && pbx_body.contains(" RTP/AVP "),
        "{pbx_body}"
    );
    sim.deliver(pbx(), &pbx_response(&to_pbx, 200, "OK", Some(SDP_PBX)));
    let to_carrier = sim.take_carrier();
    let ok = to_carrier
        .iter()
        .find(|m| status(m) == 200)
        .expect("200 to the re-INVITE");
    let answered = crypto_lines(&body_of(ok));
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].tag, 5, "answers the re-offer's tag");
    assert_eq!(answered[0].key, before.tx.key, "the SBC's own key is kept");
    let after = sim.media.session(session).expect("live").crypto[1][0]
        .clone()
        .expect("outside keys");
    assert_eq!(after.rx.key, second, "the carrier's new key is used");
    assert_ne!(after.rx.key, before.rx.key);
    assert_eq!(after.tx, before.tx, "the SBC's direction keeps its context");
}

/// A call the carrier offered (the SBC answered it with a key of its own), then re-offered by
/// the PBX: the SBC's re-offer toward the carrier carries the key it answered with, so the
/// carrier's accepting answer keeps the SBC's context toward it (no needless re-key, the ROC
/// goes on) while the carrier's own line still re-keys what it sends.
#[test]
fn reoffer_after_answering_keeps_the_sbcs_key_toward_the_carrier() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Mandatory);
    let suite = Suite::AesCm128HmacSha1_80;
    let first = MasterKey::generate(suite, &mut Rng::from_test_seed(31));
    sim.deliver(
        carrier(),
        &carrier_invite(&carrier_srtp_sdp(1, suite, &first)),
    );
    sim.take_carrier();
    let to_pbx = sim.take_pbx().remove(0);
    let ok = format!(
        "SIP/2.0 200 OK
Via: {}
From: {}
To: {};tag=pbxtag9
Call-ID: {}
CSeq: {}
Contact: <sip:100@10.0.0.10:5070>
",
        hdr(&to_pbx, HeaderName::Via),
        hdr(&to_pbx, HeaderName::From),
        hdr(&to_pbx, HeaderName::To),
        to_pbx.call_id(),
        hdr(&to_pbx, HeaderName::CSeq)
    );
    sim.deliver(pbx(), &with_body(&ok, SDP_PBX));
    let answered = sim
        .take_carrier()
        .into_iter()
        .find(|m| status(m) == 200)
        .expect("200 to the carrier");
    let ours = crypto_lines(&body_of(&answered)).remove(0);
    let session = sim.media.first_id().expect("session");
    let before = sim.media.session(session).expect("live").crypto[1][0]
        .clone()
        .expect("outside keys");
    assert_eq!(before.tx.key, ours.key);

    // The PBX re-offers (hold) in its dialog with the SBC.
    let reinvite = format!(
        "INVITE {} SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxre1;rport
Max-Forwards: 70
From: {};tag=pbxtag9
To: {}
Call-ID: {}
CSeq: 2 INVITE
Contact: <sip:100@10.0.0.10:5070>
",
        hdr(&to_pbx, HeaderName::Contact)
            .trim_start_matches('<')
            .trim_end_matches('>'),
        hdr(&to_pbx, HeaderName::To),
        hdr(&to_pbx, HeaderName::From),
        to_pbx.call_id(),
    );
    let hold = SDP_PBX
        .replace("a=sendrecv", "a=sendonly")
        .replace("1234 1", "1234 2");
    sim.deliver(pbx(), &with_body(&reinvite, &hold));
    sim.take_pbx();
    let reoffer = sim
        .take_carrier()
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("re-INVITE to the carrier");
    let lines = crypto_lines(&body_of(&reoffer));
    let same_suite = lines
        .iter()
        .find(|c| c.suite == suite)
        .expect("the suite in use is offered again");
    assert_eq!(
        same_suite.key, ours.key,
        "the re-offer keeps the key the SBC answered with"
    );

    let second = MasterKey::generate(suite, &mut Rng::from_test_seed(32));
    sim.deliver(
        carrier(),
        &carrier_response(
            &reoffer,
            200,
            "OK",
            None,
            Some(&carrier_srtp_sdp(same_suite.tag, suite, &second).replace("777 1", "777 2")),
        ),
    );
    let after = sim.media.session(session).expect("live").crypto[1][0]
        .clone()
        .expect("outside keys");
    assert_eq!(after.tx, before.tx, "the SBC's direction keeps its context");
    assert_eq!(after.rx.key, second, "the carrier's new key is used");
}
