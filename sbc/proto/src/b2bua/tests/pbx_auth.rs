//! Digest authentication of the PBX (RFC 3261 §22.3): the SBC challenges the PBX's new INVITE
//! and MESSAGE with 407, verifies the retry, and lets only authenticated requests reach the
//! carrier — without the credentials.

use super::*;
use crate::{
    auth::{Algorithm, Challenge, Credentials, Secret},
    b2bua::{PbxAuthConfig, PbxAuthResult, pbx_auth::MAX_FAILURES},
};

const REALM: &str = "sbc.test";
const RURI: &str = "sip:15551234567@10.0.0.1:5060";

fn sim_with_pbx_auth() -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_auth = Some(PbxAuthConfig {
        username: "pbx".into(),
        password: Secret::new("pbx-secret"),
        realm: REALM.into(),
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
    });
    sim.sbc.set_config(cfg);
    sim
}

fn challenges(m: &Message) -> Vec<String> {
    m.headers()
        .all_named("Proxy-Authenticate")
        .filter_map(|h| h.value_str().map(str::to_owned))
        .collect()
}

/// The PBX's answer to challenge `value` for `method` with `password`.
fn credentials(value: &str, method: &str, password: &str, nc: u32) -> String {
    Challenge::parse(value)
        .expect("our challenge parses")
        .respond(
            &Credentials {
                username: "pbx".into(),
                password: Secret::new(password),
                realm: None,
            },
            method,
            RURI,
            nc,
            "pbxcnonce",
        )
        .expect("answerable")
        .header_value()
}

/// The PBX's INVITE with `branch`, `cseq` and optional Proxy-Authorization `auth`.
fn invite(branch: &str, cseq: u32, auth: Option<&str>) -> String {
    let mut text = pbx_invite(branch, Some(SDP_PBX))
        .replace("CSeq: 10 INVITE", &format!("CSeq: {cseq} INVITE"));
    if let Some(a) = auth {
        text = text.replace(
            "Max-Forwards: 70\n",
            &format!("Max-Forwards: 70\nProxy-Authorization: {a}\n"),
        );
    }
    text
}

fn message(branch: &str, cseq: u32, auth: Option<&str>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\n"));
    format!(
        "MESSAGE {RURI} SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={branch};rport
Max-Forwards: 70
From: <sip:100@pbx.lan>;tag=ptagm
To: <sip:15551234567@10.0.0.1>
Call-ID: pbx-msg-1
CSeq: {cseq} MESSAGE
{auth}Content-Type: text/plain
Content-Length: 5

hello"
    )
}

fn ack_for(resp: &Message, branch: &str, cseq: u32) -> String {
    format!(
        "ACK {RURI} SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch={branch};rport
Max-Forwards: 70
From: \"Alice\" <sip:100@pbx.lan>;tag=ptag1
To: {}
Call-ID: pbx-call-1
CSeq: {cseq} ACK
Content-Length: 0

",
        hdr(resp, HeaderName::To)
    )
}

fn auth_results(sim: &mut Sim) -> Vec<PbxAuthResult> {
    std::iter::from_fn(|| sim.sbc.poll_event())
        .filter_map(|e| match e {
            Event::PbxAuth { result } => Some(result),
            _ => None,
        })
        .collect()
}

/// Sends the unauthenticated INVITE, checks the 407, ACKs it. Returns the challenges.
fn challenged(sim: &mut Sim) -> Vec<String> {
    sim.deliver(pbx(), &invite("z9hG4bKpbx1", 10, None));
    let out = sim.take_pbx();
    assert_eq!(out.len(), 1, "only the 407, no 100: {out:?}");
    assert_eq!(status(&out[0]), 407);
    assert!(sim.take_carrier().is_empty(), "nothing reaches the carrier");
    let ch = challenges(&out[0]);
    sim.deliver(pbx(), &ack_for(&out[0], "z9hG4bKpbx1", 10));
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    ch
}

#[test]
fn invite_is_challenged_with_sha256_then_md5_and_the_ack_is_absorbed() {
    let mut sim = sim_with_pbx_auth();
    sim.deliver(pbx(), &invite("z9hG4bKpbx1", 10, None));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 407);
    let ch = challenges(&out[0]);
    assert_eq!(ch.len(), 2, "{ch:?}");
    let parsed: Vec<Challenge> = ch
        .iter()
        .map(|c| Challenge::parse(c).expect("parses"))
        .collect();
    assert_eq!(
        parsed.iter().map(|c| c.algorithm).collect::<Vec<_>>(),
        [Algorithm::Sha256, Algorithm::Md5],
        "RFC 8760 §2.4: preferred first"
    );
    assert!(
        parsed
            .iter()
            .all(|c| c.qop_auth && !c.stale && c.realm == REALM)
    );
    assert!(sim.take_carrier().is_empty());
    // A retransmission of the INVITE gets the same 407 (server transaction), not a new one.
    sim.deliver(pbx(), &invite("z9hG4bKpbx1", 10, None));
    let again = sim.take_pbx();
    assert_eq!(status(&again[0]), 407);
    assert_eq!(challenges(&again[0]), ch, "same nonce: a retransmission");
    sim.deliver(pbx(), &ack_for(&out[0], "z9hG4bKpbx1", 10));
    assert!(sim.take_pbx().is_empty() && sim.take_carrier().is_empty());
    assert_eq!(auth_results(&mut sim), [PbxAuthResult::Challenged]);
    sim.assert_clean();
}

#[test]
fn authenticated_retry_goes_to_the_trunk_without_credentials_and_bye_needs_none() {
    for pick in [0, 1] {
        let mut sim = sim_with_pbx_auth();
        let ch = challenged(&mut sim);
        let auth = credentials(&ch[pick], "INVITE", "pbx-secret", 1);
        sim.deliver(pbx(), &invite("z9hG4bKpbx2", 11, Some(&auth)));
        assert_eq!(status(&sim.take_pbx()[0]), 100);
        let out = sim.take_carrier();
        assert_eq!(out.len(), 1);
        let inv = &out[0];
        assert_eq!(inv.method(), Some(&Method::Invite));
        assert!(
            inv.headers()
                .all_named("Proxy-Authorization")
                .next()
                .is_none(),
            "the PBX's credentials are not relayed"
        );
        // Answer, ACK, then an in-dialog BYE from the PBX: no challenge.
        sim.deliver(
            carrier(),
            &carrier_response(inv, 200, "OK", Some("ctag1"), Some(SDP_CARRIER)),
        );
        let ok = sim.take_pbx().remove(0);
        assert_eq!(status(&ok), 200);
        sim.take_carrier();
        sim.deliver(pbx(), &ack_for(&ok, "z9hG4bKpbxack", 11));
        let bye = ack_for(&ok, "z9hG4bKpbxbye", 12)
            .replace("ACK ", "BYE ")
            .replace("12 ACK", "12 BYE");
        sim.deliver(pbx(), &bye);
        let out = sim.take_carrier();
        assert_eq!(out[0].method(), Some(&Method::Bye), "{out:?}");
        sim.deliver(carrier(), &carrier_response(&out[0], 200, "OK", None, None));
        assert_eq!(status(&sim.take_pbx()[0]), 200);
        assert_eq!(
            auth_results(&mut sim),
            [PbxAuthResult::Challenged, PbxAuthResult::Accepted]
        );
        sim.assert_clean();
    }
}

#[test]
fn wrong_password_is_challenged_again_and_no_call_starts() {
    let mut sim = sim_with_pbx_auth();
    let ch = challenged(&mut sim);
    let auth = credentials(&ch[0], "INVITE", "guess", 1);
    sim.deliver(pbx(), &invite("z9hG4bKpbx2", 11, Some(&auth)));
    let out = sim.take_pbx();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 407);
    let again = challenges(&out[0]);
    assert_ne!(again, ch, "a fresh nonce");
    assert!(again.iter().all(|c| !c.contains("stale")));
    assert!(sim.take_carrier().is_empty());
    assert_eq!(sim.sbc.stats().calls, 0);
    assert_eq!(
        auth_results(&mut sim),
        [PbxAuthResult::Challenged, PbxAuthResult::Failed]
    );
}

#[test]
fn repeated_failures_get_403_until_the_window_is_over() {
    let mut sim = sim_with_pbx_auth();
    let ch = challenged(&mut sim);
    for i in 0..MAX_FAILURES {
        let auth = credentials(&ch[1], "INVITE", "guess", 1);
        sim.deliver(
            pbx(),
            &invite(&format!("z9hG4bKbad{i}"), 20 + i, Some(&auth)),
        );
        assert_eq!(status(&sim.take_pbx()[0]), 407, "attempt {i}");
    }
    // Even the right password is refused now, without a challenge.
    let good = credentials(&ch[1], "INVITE", "pbx-secret", 1);
    sim.deliver(pbx(), &invite("z9hG4bKlocked", 40, Some(&good)));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 403);
    assert!(challenges(&out[0]).is_empty());
    assert!(sim.take_carrier().is_empty());
    // After the window a fresh challenge and the right password work again.
    sim.advance(Duration::from_secs(301));
    // Retransmissions of the unacknowledged finals are not what this test is about.
    sim.take_pbx();
    sim.deliver(pbx(), &invite("z9hG4bKafter", 41, None));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 407);
    let fresh = challenges(&out[0]);
    let auth = credentials(&fresh[0], "INVITE", "pbx-secret", 1);
    sim.deliver(pbx(), &invite("z9hG4bKafter2", 42, Some(&auth)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    assert_eq!(sim.take_carrier().len(), 1);
}

#[test]
fn expired_nonce_gets_stale_and_replay_is_not_accepted() {
    let mut sim = sim_with_pbx_auth();
    let ch = challenged(&mut sim);
    let auth = credentials(&ch[0], "INVITE", "pbx-secret", 1);
    sim.deliver(pbx(), &invite("z9hG4bKpbx2", 11, Some(&auth)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    let first = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&first, 486, "Busy Here", Some("ctag1"), None),
    );
    sim.take_carrier();
    sim.take_pbx();
    // The same credentials (same nonce and nc) on a new transaction: a replay.
    sim.deliver(pbx(), &invite("z9hG4bKreplay", 12, Some(&auth)));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 407);
    assert!(
        challenges(&out[0])
            .iter()
            .all(|c| c.ends_with("stale=true"))
    );
    assert!(sim.take_carrier().is_empty());
    // A higher nc on the same nonce is fine; after the nonce lifetime it is stale.
    let auth2 = credentials(&ch[0], "INVITE", "pbx-secret", 2);
    sim.advance(Duration::from_secs(301));
    // Retransmissions of the unacknowledged finals are not what this test is about.
    sim.take_pbx();
    sim.deliver(pbx(), &invite("z9hG4bKlate", 13, Some(&auth2)));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 407);
    let fresh = challenges(&out[0]);
    assert!(fresh.iter().all(|c| c.ends_with("stale=true")), "{fresh:?}");
    assert!(sim.take_carrier().is_empty());
    let auth3 = credentials(&fresh[1], "INVITE", "pbx-secret", 1);
    sim.deliver(pbx(), &invite("z9hG4bKlate2", 14, Some(&auth3)));
    assert_eq!(status(&sim.take_pbx()[0]), 100);
    assert_eq!(sim.take_carrier().len(), 1);
    let results = auth_results(&mut sim);
    assert_eq!(
        results,
        [
            PbxAuthResult::Challenged,
            PbxAuthResult::Accepted,
            PbxAuthResult::Stale,
            PbxAuthResult::Stale,
            PbxAuthResult::Accepted
        ]
    );
}

#[test]
fn message_is_challenged_and_relayed_once_authenticated() {
    let mut sim = sim_with_pbx_auth();
    sim.deliver(pbx(), &message("z9hG4bKm1", 1, None));
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 407);
    assert!(sim.take_carrier().is_empty());
    let ch = challenges(&out[0]);
    // Credentials computed for INVITE do not authenticate a MESSAGE (method is in A2).
    let wrong_method = credentials(&ch[0], "INVITE", "pbx-secret", 1);
    sim.deliver(pbx(), &message("z9hG4bKm2", 2, Some(&wrong_method)));
    assert_eq!(status(&sim.take_pbx()[0]), 407);
    let auth = credentials(&ch[0], "MESSAGE", "pbx-secret", 2);
    sim.deliver(pbx(), &message("z9hG4bKm3", 3, Some(&auth)));
    let out = sim.take_carrier();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method(), Some(&Method::Message));
    assert!(
        out[0]
            .headers()
            .all_named("Proxy-Authorization")
            .next()
            .is_none()
    );
    sim.deliver(
        carrier(),
        &carrier_response(&out[0], 202, "Accepted", Some("ctag1"), None),
    );
    assert_eq!(status(&sim.take_pbx()[0]), 202);
    assert_eq!(
        auth_results(&mut sim),
        [
            PbxAuthResult::Challenged,
            PbxAuthResult::Failed,
            PbxAuthResult::Accepted
        ]
    );
    sim.assert_clean();
}

#[test]
fn other_realms_are_ignored_malformed_gets_400_and_the_carrier_is_not_challenged() {
    let mut sim = sim_with_pbx_auth();
    // Credentials for a proxy further on: not ours, so challenged.
    let other = "Digest username=\"x\", realm=\"elsewhere\", nonce=\"n\", uri=\"sip:x\", \
                 response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"";
    sim.deliver(pbx(), &invite("z9hG4bKo1", 10, Some(other)));
    assert_eq!(status(&sim.take_pbx()[0]), 407);
    // Not `scheme params`.
    sim.deliver(
        pbx(),
        &invite("z9hG4bKo2", 11, Some("Digest realm=\"sbc.test")),
    );
    let out = sim.take_pbx();
    assert_eq!(status(&out[0]), 400);
    assert!(sim.take_carrier().is_empty());
    // OPTIONS from the PBX is answered by the SBC without a challenge.
    sim.deliver(
        pbx(),
        "OPTIONS sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKopt1;rport
Max-Forwards: 70
From: <sip:100@pbx.lan>;tag=ptago
To: <sip:sbc@10.0.0.1>
Call-ID: pbx-opt-1
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    assert_eq!(
        auth_results(&mut sim),
        [PbxAuthResult::Challenged, PbxAuthResult::Failed]
    );
    // Calls from the carrier are not the PBX's: no challenge.
    sim.deliver(
        carrier(),
        "INVITE sip:100@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar1;rport
Max-Forwards: 70
From: <sip:+15557654321@198.51.100.7>;tag=ctag9
To: <sip:100@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.7:5090>
Content-Length: 0

",
    );
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    assert_eq!(sim.take_pbx()[0].method(), Some(&Method::Invite));
    assert!(auth_results(&mut sim).is_empty());
}
