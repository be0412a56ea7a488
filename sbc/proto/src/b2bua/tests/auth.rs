//! Challenged requests toward the trunk (RFC 3261 §22.2): the SBC answers a 401/407 with the
//! trunk's credentials on the PBX's behalf, and the PBX never sees the challenge.

use super::*;
use crate::{
    auth::{Challenge, Credentials, Secret},
    sip::Auth,
};

const REALM: &str = "sip.carrier.example";

fn sim_with_credentials() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].credentials = Some(Credentials {
        username: "4930123".into(),
        password: Secret::new("s3cret"),
        realm: None,
    });
    sim.sbc.set_config(cfg);
    sim
}

/// The carrier's challenge to `req`: `code` 401 (WWW-Authenticate) or 407 (Proxy-Authenticate).
fn challenge(req: &Message, code: u16, nonce: &str, extra: &str) -> String {
    let (reason, name) = if code == 401 {
        ("Unauthorized", "WWW-Authenticate")
    } else {
        ("Proxy Authentication Required", "Proxy-Authenticate")
    };
    let tag =
        (req.method() == Some(&Method::Invite) && req.to().tag().is_none()).then_some("chal1");
    carrier_response(req, code, reason, tag, None).replace(
        "Content-Length: 0",
        &format!(
            "{name}: Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", \
             algorithm=MD5{extra}\nContent-Length: 0"
        ),
    )
}

/// Checks `req` carries correct credentials for `nonce` in `header`, recomputing the digest.
fn assert_credentials(req: &Message, header: &str, nonce: &str) {
    let value = req
        .headers()
        .all_named(header)
        .next()
        .and_then(|h| h.value_str())
        .unwrap_or_else(|| panic!("no {header} in the retry"));
    let auth = Auth::parse(value).expect("credentials parse");
    assert_eq!(auth.param("username"), Some("4930123"));
    assert_eq!(auth.param("realm"), Some(REALM));
    assert_eq!(auth.param("nonce"), Some(nonce));
    assert_eq!(auth.param("uri"), req.request_uri_str());
    let cnonce = auth.param("cnonce").expect("cnonce with qop=auth");
    let nc = auth.param("nc").expect("nc with qop=auth");
    let nc = u32::from_str_radix(nc, 16).expect("hex nc");
    let expected = Challenge::parse(&format!(
        "Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\""
    ))
    .expect("challenge")
    .respond(
        &Credentials {
            username: "4930123".into(),
            password: Secret::new("s3cret"),
            realm: None,
        },
        req.method().map_or("", Method::as_str),
        req.request_uri_str().unwrap_or_default(),
        nc,
        cnonce,
    )
    .expect("answerable");
    assert_eq!(auth.param("response"), Some(expected.response.as_str()));
}

#[test]
fn challenged_invite_and_bye_are_retried_with_credentials_unseen_by_the_pbx() {
    let mut sim = sim_with_credentials();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let first = sim.take_carrier().remove(0);
    assert!(
        first
            .headers()
            .all_named("Proxy-Authorization")
            .next()
            .is_none()
    );

    sim.deliver(carrier(), &challenge(&first, 407, "n-1", ""));
    let out = sim.take_carrier();
    assert_eq!(
        out.len(),
        2,
        "ACK for the 407 and the retried INVITE: {out:?}"
    );
    let ack = &out[0];
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(
        ack.top_via().branch(),
        first.top_via().branch(),
        "hop-by-hop ACK"
    );
    let retry = out[1].clone();
    assert_eq!(retry.method(), Some(&Method::Invite));
    assert_ne!(
        retry.top_via().branch(),
        first.top_via().branch(),
        "new branch"
    );
    assert_eq!(retry.cseq().seq, first.cseq().seq + 1, "CSeq + 1");
    assert_eq!(retry.call_id(), first.call_id(), "same Call-ID");
    assert_eq!(retry.from().tag(), first.from().tag(), "same From tag");
    assert_eq!(retry.to().tag(), None);
    assert_eq!(retry.body(), first.body(), "same offer");
    assert_credentials(&retry, "Proxy-Authorization", "n-1");
    assert!(
        sim.take_pbx().is_empty(),
        "the PBX never sees the challenge"
    );

    // The call proceeds on the retried transaction.
    sim.deliver(
        carrier(),
        &carrier_response(&retry, 180, "Ringing", Some("ctag1"), None),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 180);
    sim.deliver(
        carrier(),
        &carrier_response(&retry, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx();
    assert_eq!(status(&ok[0]), 200);
    let acks = sim.take_carrier();
    assert_eq!(acks[0].method(), Some(&Method::Ack));
    assert_eq!(
        acks[0].cseq().seq,
        retry.cseq().seq,
        "2xx ACK has the retry's CSeq"
    );
    let our_tag = ok[0].to().tag().unwrap_or_default().to_owned();
    sim.deliver(
        pbx(),
        &format!(
            "ACK sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxack;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 10 ACK
Content-Length: 0

"
        ),
    );

    // An in-dialog BYE challenged with 401 is answered too (Authorization this time).
    sim.deliver(
        pbx(),
        &format!(
            "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye;rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: <sip:15551234567@10.0.0.1>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 11 BYE
Content-Length: 0

"
        ),
    );
    let bye = sim.take_carrier().remove(0);
    assert_eq!(bye.cseq().seq, retry.cseq().seq + 1);
    sim.deliver(carrier(), &challenge(&bye, 401, "n-2", ""));
    let bye2 = sim.take_carrier().remove(0);
    assert_eq!(bye2.method(), Some(&Method::Bye));
    assert_eq!(bye2.cseq().seq, bye.cseq().seq + 1);
    assert_eq!(bye2.to().tag(), Some("ctag1"));
    assert_credentials(&bye2, "Authorization", "n-2");
    assert!(sim.take_pbx().is_empty(), "no 401 to the PBX");
    sim.deliver(carrier(), &carrier_response(&bye2, 200, "OK", None, None));
    let ok = sim.take_pbx();
    assert_eq!((status(&ok[0]), ok[0].cseq().seq), (200, 11));
    assert_eq!(sim.sbc.counters().auth_retries, 2);
    assert_eq!(sim.sbc.counters().auth_failures, 0);
    sim.assert_clean();
}

#[test]
fn refused_credentials_give_403_and_a_stale_nonce_one_more_try() {
    // Refused: the retry is challenged again without stale → 403 to the PBX, no third INVITE.
    let mut sim = sim_with_credentials();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &challenge(&first, 407, "n-1", ""));
    let retry = sim.take_carrier().remove(1);
    sim.deliver(carrier(), &challenge(&retry, 407, "n-2", ""));
    let out = sim.take_carrier();
    assert_eq!(out.len(), 1, "only the ACK, no third INVITE: {out:?}");
    assert_eq!(out[0].method(), Some(&Method::Ack));
    let to_pbx = sim.take_pbx();
    assert_eq!(to_pbx.len(), 1);
    assert_eq!(status(&to_pbx[0]), 403);
    assert!(
        to_pbx[0]
            .headers()
            .all_named("Proxy-Authenticate")
            .next()
            .is_none()
    );
    assert_eq!(sim.sbc.counters().auth_failures, 1);
    sim.assert_clean();

    // Stale: the second challenge only renews the nonce → one more retry, then success.
    let mut sim = sim_with_credentials();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &challenge(&first, 407, "n-1", ""));
    let retry = sim.take_carrier().remove(1);
    sim.deliver(carrier(), &challenge(&retry, 407, "n-2", ", stale=true"));
    let retry2 = sim.take_carrier().remove(1);
    assert_credentials(&retry2, "Proxy-Authorization", "n-2");
    assert_eq!(retry2.cseq().seq, retry.cseq().seq + 1);
    // ... but never a third time, stale or not.
    sim.deliver(carrier(), &challenge(&retry2, 407, "n-3", ", stale=true"));
    assert_eq!(sim.take_carrier().len(), 1, "ACK only");
    assert_eq!(status(&sim.take_pbx()[0]), 403);
    assert_eq!(sim.sbc.counters().auth_retries, 2);
    sim.assert_clean();
}

#[test]
fn without_credentials_or_with_another_realm_the_challenge_is_not_answered() {
    // No credentials configured (auth = sbc): 403 to the PBX, not a 407 stripped of its
    // challenge (invalid, RFC 3261 §20.28); pass-through is auth_passthrough.rs.
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &challenge(&first, 407, "n-1", ""));
    assert_eq!(sim.take_carrier().len(), 1, "ACK only");
    assert_eq!(status(&sim.take_pbx()[0]), 403);
    sim.assert_clean();

    // Credentials for another realm are not offered to this one.
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].credentials = Some(Credentials {
        username: "u".into(),
        password: Secret::new("p"),
        realm: Some("other.example".into()),
    });
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &challenge(&first, 407, "n-1", ""));
    assert_eq!(sim.take_carrier().len(), 1, "ACK only");
    assert_eq!(status(&sim.take_pbx()[0]), 403);
    sim.assert_clean();
}
