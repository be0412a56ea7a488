//! REGISTER from the PBX: 405 by default, or relayed to the trunk with the SBC's Contact, the
//! binding kept for the granted expiry and used for inbound calls to the AOR.

use super::*;

/// The PBX registers from another address than `[pbx] address`: calls must follow the binding.
const PBX_REG: &str = "10.0.0.11:5072";

fn pbx_reg() -> Peer {
    Peer {
        addr: addr(PBX_REG),
        ..pbx()
    }
}

fn relay_sim(auth: TrunkAuth) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.pbx_register = RegisterPolicy::Relay {
        trunk: 0,
        max_bindings: 2,
    };
    cfg.trunks[0].auth = auth;
    cfg.trunks[0].from_domain = Some("sip.carrier.example".into());
    sim.sbc.set_config(cfg);
    sim.pbx_targets.push(addr(PBX_REG));
    sim
}

fn register(user: &str, branch: &str, cseq: u32, expires: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:sip.carrier.example SIP/2.0
Via: SIP/2.0/UDP 10.0.0.11:5072;branch={branch};rport
Max-Forwards: 70
From: <sip:{user}@sip.carrier.example>;tag=preg{user}
To: <sip:{user}@sip.carrier.example>
Call-ID: pbx-reg-{user}
CSeq: {cseq} REGISTER
Contact: <sip:{user}@10.0.0.11:5072>;expires={expires}
User-Agent: PBX-Model-9
{extra}Content-Length: 0

"
    )
}

fn registrar_ok(req: &Message, granted: u32) -> String {
    let contact = hdr(req, HeaderName::Contact);
    carrier_response(req, 200, "OK", Some("reg1"), None).replace(
        "Content-Length: 0",
        &format!("Contact: {contact};expires={granted}\nContent-Length: 0"),
    )
}

fn inbound_invite(user: &str, branch: &str) -> String {
    with_body(
        &format!(
            "INVITE sip:{user}@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch={branch};rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag-{branch}
To: <sip:{user}@sip.carrier.example>
Call-ID: car-{branch}
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
"
        ),
        SDP_CARRIER,
    )
}

#[test]
fn register_is_rejected_with_405_and_allow_by_default() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &register("100", "z9hG4bKr1", 1, 600, ""));
    let answers = sim.take_pbx();
    assert_eq!(answers.iter().map(status).collect::<Vec<_>>(), [405]);
    assert!(hdr(&answers[0], HeaderName::Allow).contains("INVITE"));
    assert!(sim.take_carrier().is_empty());
    assert_eq!(sim.sbc.counters().registers_refused, 1);
}

#[test]
fn relayed_register_binds_the_aor_and_inbound_calls_reach_the_pbx_contact() {
    let mut sim = relay_sim(TrunkAuth::Sbc);
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr1", 1, 600, ""));
    assert!(
        sim.take_pbx().is_empty(),
        "nothing until the registrar answers"
    );
    let out = sim.take_carrier().remove(0);
    assert_eq!(out.method(), Some(&Method::Register));
    assert_eq!(out.request_uri_str(), Some("sip:sip.carrier.example"));
    assert_eq!(out.to().uri_str, "sip:100@sip.carrier.example");
    assert_eq!(
        hdr(&out, HeaderName::Contact),
        "<sip:100@203.0.113.1:5080>",
        "the SBC's Contact, never the PBX's"
    );
    assert_eq!(hdr(&out, HeaderName::Expires), "600");
    assert_ne!(out.call_id(), "pbx-reg-100");

    sim.deliver(carrier(), &registrar_ok(&out, 300));
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(ok.call_id(), "pbx-reg-100");
    assert_eq!(
        hdr(&ok, HeaderName::Contact),
        "<sip:100@10.0.0.11:5072>;expires=300",
        "the PBX sees its own binding with the granted expiry"
    );
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 1);

    // An inbound call to the AOR goes to the registered contact, not to [pbx] address.
    sim.deliver(carrier(), &inbound_invite("100", "z9hG4bKc1"));
    sim.take_carrier();
    let sent = sim.sbc.calls();
    assert_eq!(sent[0].legs[0].peer.addr, addr(PBX_REG));
    let inv = sim.take_pbx().remove(0);
    assert_eq!(inv.request_uri_str(), Some("sip:100@10.0.0.11:5072"));
    sim.with_media(|b, now, m| b.end_call(now, sent[0].id, m));
    sim.collect();
    sim.take_pbx();
    sim.take_carrier();

    // The refresh keeps the outside Call-ID and increments its CSeq.
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr2", 2, 600, ""));
    let refresh = sim.take_carrier().remove(0);
    assert_eq!(refresh.call_id(), out.call_id());
    assert_eq!(refresh.cseq().seq, out.cseq().seq + 1);
    sim.deliver(carrier(), &registrar_ok(&refresh, 300));
    sim.take_pbx();

    // Past the granted expiry the binding is gone: calls go to [pbx] address again.
    sim.advance(Duration::from_secs(301));
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 0);
    sim.deliver(carrier(), &inbound_invite("100", "z9hG4bKc2"));
    let calls = sim.sbc.calls();
    let late = calls.last().expect("a call");
    assert_eq!(late.legs[0].peer.addr, addr(PBX));
}

#[test]
fn expires_zero_removes_the_binding() {
    let mut sim = relay_sim(TrunkAuth::Sbc);
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr1", 1, 600, ""));
    let out = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &registrar_ok(&out, 600));
    sim.take_pbx();
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 1);
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr2", 2, 0, ""));
    let out = sim.take_carrier().remove(0);
    assert_eq!(hdr(&out, HeaderName::Expires), "0");
    sim.deliver(carrier(), &registrar_ok(&out, 0));
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 0);
}

#[test]
fn bindings_are_bounded_with_503() {
    let mut sim = relay_sim(TrunkAuth::Sbc);
    for (user, branch) in [("100", "z9hG4bKa"), ("101", "z9hG4bKb")] {
        sim.deliver(pbx_reg(), &register(user, branch, 1, 600, ""));
        let out = sim.take_carrier().remove(0);
        sim.deliver(carrier(), &registrar_ok(&out, 600));
        sim.take_pbx();
    }
    sim.deliver(pbx_reg(), &register("102", "z9hG4bKc", 1, 600, ""));
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [503]);
    assert!(sim.take_carrier().is_empty());
}

#[test]
fn passthrough_register_challenge_reaches_the_pbx_and_its_retry_continues() {
    let mut sim = relay_sim(TrunkAuth::Passthrough);
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr1", 1, 600, ""));
    let out = sim.take_carrier().remove(0);
    assert_eq!(out.request_uri_str(), Some("sip:sip.carrier.example"));
    let challenge = "Digest realm=\"sip.carrier.example\", nonce=\"rn\", qop=\"auth\"";
    sim.deliver(
        carrier(),
        &carrier_response(&out, 401, "Unauthorized", Some("reg1"), None).replace(
            "Content-Length: 0",
            &format!("WWW-Authenticate: {challenge}\nContent-Length: 0"),
        ),
    );
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(status(&to_pbx), 401);
    assert_eq!(hdr(&to_pbx, HeaderName::WwwAuthenticate), challenge);
    let creds = "Digest username=\"100\", realm=\"sip.carrier.example\", nonce=\"rn\", \
                 uri=\"sip:sip.carrier.example\", response=\"cd\"";
    sim.deliver(
        pbx_reg(),
        &register(
            "100",
            "z9hG4bKr2",
            2,
            600,
            &format!("Authorization: {creds}\n"),
        ),
    );
    let retry = sim.take_carrier().remove(0);
    assert_eq!(retry.call_id(), out.call_id());
    assert_eq!(retry.cseq().seq, out.cseq().seq + 1);
    assert_eq!(hdr(&retry, HeaderName::Authorization), creds);
    sim.deliver(carrier(), &registrar_ok(&retry, 600));
    assert_eq!(status(&sim.take_pbx()[0]), 200);
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 1);
}

#[test]
fn a_binding_is_reported_for_the_other_shards_and_a_mirrored_one_routes_calls_here() {
    // Shard 0 binds the AOR and says so (the driver mirrors it to the other shards).
    let mut owner = relay_sim(TrunkAuth::Sbc);
    owner.deliver(pbx_reg(), &register("100", "z9hG4bKr1", 1, 600, ""));
    let out = owner.take_carrier().remove(0);
    owner.deliver(carrier(), &registrar_ok(&out, 300));
    let bound = std::iter::from_fn(|| owner.sbc.poll_event())
        .find_map(|e| match e {
            Event::PbxBinding { user, target } if user == "100" => Some(target),
            _ => None,
        })
        .expect("the binding reported");
    let (target, until) = bound.expect("bound");
    assert_eq!(target.addr, addr(PBX_REG));
    assert_eq!(until, owner.now + Duration::from_secs(300));

    // Another shard, with no registration of its own, routes the AOR's calls there.
    let mut other = relay_sim(TrunkAuth::Sbc);
    other.sbc.mirror_pbx_binding("100", Some((target, until)));
    other.deliver(carrier(), &inbound_invite("100", "z9hG4bKc1"));
    let calls = other.sbc.calls();
    assert_eq!(calls[0].legs[0].peer.addr, addr(PBX_REG));
    // Removed on shard 0: here too.
    other.sbc.mirror_pbx_binding("100", None);
    other.deliver(carrier(), &inbound_invite("100", "z9hG4bKc2"));
    let calls = other.sbc.calls();
    assert_eq!(calls.last().expect("a call").legs[0].peer.addr, addr(PBX));
    // A mirrored binding expires by itself.
    other
        .sbc
        .mirror_pbx_binding("100", Some((target, other.now + Duration::from_secs(5))));
    other.advance(Duration::from_secs(6));
    other.deliver(carrier(), &inbound_invite("100", "z9hG4bKc3"));
    let calls = other.sbc.calls();
    assert_eq!(calls.last().expect("a call").legs[0].peer.addr, addr(PBX));
}

#[test]
fn a_registrar_reason_phrase_reaches_the_pbx_as_the_standard_one() {
    let mut sim = relay_sim(TrunkAuth::Sbc);
    sim.deliver(pbx_reg(), &register("100", "z9hG4bKr1", 1, 600, ""));
    let out = sim.take_carrier().remove(0);
    // The carrier's own phrase names its systems; the PBX must not learn them through the SBC.
    sim.deliver(
        carrier(),
        &carrier_response(
            &out,
            403,
            "Forbidden by 10.1.2.3 (internal sbc-x)",
            Some("reg1"),
            None,
        ),
    );
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(status(&to_pbx), 403);
    assert_eq!(to_pbx.reason_phrase(), Some("Forbidden"));
    assert_eq!(sim.sbc.pbx_registrations(sim.now), 0);
}
