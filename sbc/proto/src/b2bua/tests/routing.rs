//! Routing and manipulation: outbound routes by called number (prefix, regex, weights), per
//! trunk admission with overflow to the next trunk, inbound DID routes, number normalisation
//! on Request-URI/To/From/P-Asserted-Identity, and header rules with variables.

use super::*;
use crate::{
    limit::CallLimits,
    routing::{HeaderAction, HeaderRule, InboundRoute, NumberMatch, NumberRule, OutboundRoute},
};

const B: &str = "198.51.100.8:5090";
const C: &str = "198.51.100.9:5090";

fn target(a: &str) -> Target {
    Target {
        addr: addr(a),
        transport: TransportKind::Udp,
    }
}

fn prefix_rule(p: &str, strip: usize, add: &str) -> NumberRule {
    NumberRule {
        matcher: NumberMatch::Prefix(p.into()),
        replace: None,
        strip,
        add: add.into(),
    }
}

fn route(name: &str, m: NumberMatch, trunks: &[usize]) -> OutboundRoute {
    OutboundRoute {
        name: name.into(),
        matcher: m,
        trunks: trunks.to_vec(),
        weights: None,
    }
}

/// Three trunks: "carrier" (CARRIER), "b" (B), "c" (C).
fn three_trunks() -> B2buaConfig {
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new("b", target(B)));
    cfg.trunks.push(TrunkConfig::new("c", target(C)));
    cfg
}

fn sim(cfg: B2buaConfig) -> Sim {
    let mut sim = Sim::new();
    sim.sbc.set_config(cfg);
    sim
}

/// A PBX INVITE to `number`, as call `i`.
fn invite_to(number: &str, i: u32) -> String {
    pbx_invite(&format!("z9hG4bKpbx{i}"), Some(SDP_PBX))
        .replace("15551234567", number)
        .replace("pbx-call-1", &format!("pbx-call-1-{i}"))
        .replace("tag=ptag1", &format!("tag=ptag1-{i}"))
}

/// The value of the first header line named `name` (for headers without a typed name).
fn raw_header(m: &Message, name: &str) -> String {
    let text = String::from_utf8_lossy(m.as_bytes()).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_default()
        .to_owned()
}

fn events(sim: &mut Sim) -> Vec<Event> {
    std::iter::from_fn(|| sim.sbc.poll_event()).collect()
}

#[test]
fn outbound_routes_pick_trunks_by_prefix_and_regex_and_refuse_the_rest() {
    let mut cfg = three_trunks();
    cfg.routes = vec![
        route(
            "emergency",
            NumberMatch::Regex(regex::Regex::new("^11[02]$").expect("valid in the test")),
            &[2],
        ),
        route("international", NumberMatch::Prefix("00".into()), &[1, 0]),
        route("national", NumberMatch::Prefix("0".into()), &[0]),
    ];
    let mut sim = sim(cfg);
    for (i, (number, to)) in [("112", C), ("0044207", B), ("030123", CARRIER)]
        .into_iter()
        .enumerate()
    {
        sim.deliver(pbx(), &invite_to(number, i as u32));
        assert_eq!(status(&sim.take_pbx()[0]), 100);
        let inv = sim.take_carrier().remove(0);
        assert_eq!(
            inv.request_uri_str().map(str::to_owned),
            Some(format!("sip:{number}@{to}")),
            "{number}"
        );
    }
    assert_eq!(sim.sbc.trunk_calls(), &[1, 1, 1]);
    let started: Vec<Option<usize>> = events(&mut sim)
        .into_iter()
        .filter_map(|e| match e {
            Event::CallStarted { trunk, .. } => Some(trunk),
            _ => None,
        })
        .collect();
    assert_eq!(started, [Some(2), Some(1), Some(0)]);
    // "555" is taken by no route: 404, nothing sent to any carrier, counted.
    sim.deliver(pbx(), &invite_to("555", 9));
    let r = sim.take_pbx();
    assert_eq!(r.len(), 1);
    assert_eq!(status(&r[0]), 404);
    assert!(sim.take_carrier().is_empty());
    assert!(events(&mut sim).contains(&Event::NoRoute));
}

#[test]
fn weighted_routes_spread_calls_by_weight() {
    let mut cfg = three_trunks();
    cfg.routes = vec![OutboundRoute {
        name: "spread".into(),
        matcher: NumberMatch::Any,
        trunks: vec![0, 1],
        weights: Some(vec![3, 1]),
    }];
    let mut sim = sim(cfg);
    let mut counts = [0u32; 2];
    for i in 0..400 {
        sim.deliver(pbx(), &invite_to("4930", i));
        sim.take_pbx();
        let inv = sim.take_carrier().remove(0);
        let uri = inv.request_uri_str().unwrap_or_default().to_owned();
        if uri.ends_with(CARRIER) {
            counts[0] += 1;
        } else {
            assert!(uri.ends_with(B), "{uri}");
            counts[1] += 1;
        }
    }
    // 3:1 of 400 = 300/100; σ ≈ 8.7.
    assert!((260..340).contains(&counts[0]), "{counts:?}");
}

#[test]
fn a_full_trunk_overflows_to_the_next_and_all_full_gives_503() {
    let mut cfg = three_trunks();
    cfg.trunks[0].limits = CallLimits {
        max_calls: Some(1),
        max_cps: None,
    };
    cfg.trunks[1].limits = CallLimits {
        max_calls: Some(1),
        max_cps: None,
    };
    cfg.routes = vec![route("all", NumberMatch::Any, &[0, 1])];
    let mut sim = sim(cfg);
    let mut uris = Vec::new();
    for i in 0..2 {
        sim.deliver(pbx(), &invite_to("4930", i));
        assert_eq!(status(&sim.take_pbx()[0]), 100);
        uris.push(
            sim.take_carrier()[0]
                .request_uri_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(
        uris,
        [format!("sip:4930@{CARRIER}"), format!("sip:4930@{B}")]
    );
    sim.deliver(pbx(), &invite_to("4930", 3));
    let r = sim.take_pbx().remove(0);
    assert_eq!(status(&r), 503);
    assert_eq!(hdr(&r, HeaderName::RetryAfter), "5");
    assert!(events(&mut sim).contains(&Event::AdmissionRejected {
        from: Side::Inside,
        limit: "trunk_max_calls",
    }));
}

#[test]
fn numbers_are_normalised_per_trunk_and_header_rules_apply() {
    let mut cfg = config();
    let t = &mut cfg.trunks[0];
    t.from_domain = Some("sip.carrier.example".into());
    // National → E.164 toward the carrier (German-style: 00 international, 0 national).
    t.outbound.called = vec![prefix_rule("00", 2, "+"), prefix_rule("0", 1, "+49")];
    t.outbound.calling = vec![prefix_rule("", 0, "+4930555")];
    t.outbound.headers = vec![
        HeaderRule::new(HeaderAction::Add, "X-Account", Some("acct-${calling}"))
            .expect("valid in the test"),
        HeaderRule::new(
            HeaderAction::Set,
            "P-Asserted-Identity",
            Some("<sip:${calling}@${domain}>"),
        )
        .expect("valid in the test"),
        HeaderRule::new(HeaderAction::Remove, "Supported", None).expect("valid in the test"),
        HeaderRule::new(HeaderAction::Add, "X-Route", Some("${trunk}:${called}"))
            .expect("valid in the test"),
    ];
    let mut sim = sim(cfg);
    sim.deliver(pbx(), &invite_to("0301234567", 1));
    sim.take_pbx();
    let inv = sim.take_carrier().remove(0);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:+49301234567@198.51.100.7:5090")
    );
    assert_eq!(
        hdr(&inv, HeaderName::To),
        "<sip:+49301234567@198.51.100.7:5090>"
    );
    assert_eq!(inv.from().uri_str, "sip:+4930555100@sip.carrier.example");
    let text = String::from_utf8_lossy(inv.as_bytes()).to_string();
    assert!(text.contains("X-Account: acct-+4930555100\r\n"), "{text}");
    assert!(
        text.contains("P-Asserted-Identity: <sip:+4930555100@sip.carrier.example>\r\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("P-Asserted-Identity").count(),
        1,
        "set replaces the copied one: {text}"
    );
    assert!(!text.contains("Supported:"), "removed: {text}");
    assert!(text.contains("X-Route: carrier:+49301234567\r\n"), "{text}");
}

#[test]
fn identity_headers_get_the_calling_number_rules() {
    let mut cfg = config();
    cfg.trunks[0].outbound.calling = vec![prefix_rule("+1", 2, "001")];
    let mut sim = sim(cfg);
    sim.deliver(pbx(), &invite_to("15551234567", 1));
    sim.take_pbx();
    let inv = sim.take_carrier().remove(0);
    // The PBX's PAI is <sip:+15550001000@pbx.lan>: re-hosted and normalised.
    assert_eq!(
        raw_header(&inv, "P-Asserted-Identity"),
        "\"Alice\" <sip:0015550001000@203.0.113.1>"
    );
}

fn carrier_invite(from: &str, did: &str) -> String {
    with_body(
        &format!(
            "INVITE sip:{did}@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bKcar1;rport
Max-Forwards: 68
From: <sip:+15550009999@198.51.100.7>;tag=ctag1
To: <sip:{did}@203.0.113.1>
Call-ID: car-call-9
CSeq: 1 INVITE
Contact: <sip:gw@198.51.100.20:5060>
User-Agent: Carrier-Switch-3
P-Asserted-Identity: <sip:+15550009999@198.51.100.7>
"
        ),
        SDP_CARRIER,
    )
}

#[test]
fn inbound_dids_go_to_their_targets_with_inbound_normalisation() {
    const SALES: &str = "10.0.0.11:5070";
    let mut cfg = three_trunks();
    // Toward the PBX: E.164 → national for the US-style numbers of this test.
    cfg.trunks[1].inbound.called = vec![prefix_rule("+1", 2, "")];
    cfg.trunks[1].inbound.calling = vec![prefix_rule("+1", 2, "9")];
    cfg.inbound = vec![InboundRoute {
        name: "sales".into(),
        matcher: NumberMatch::Prefix("555765".into()),
        target: target(SALES),
    }];
    let mut sim = sim(cfg);
    sim.pbx_targets.push(addr(SALES));
    let from_b = Peer {
        addr: addr(B),
        ..carrier()
    };
    sim.deliver(from_b, &carrier_invite(B, "+15557654321"));
    assert_eq!(status(&sim.take_carrier()[0]), 100);
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(
        to_pbx.request_uri_str(),
        Some("sip:5557654321@10.0.0.11:5070")
    );
    assert_eq!(to_pbx.from().uri_str, "sip:95550009999@10.0.0.1");
    assert_eq!(
        raw_header(&to_pbx, "P-Asserted-Identity"),
        "<sip:95550009999@10.0.0.1>"
    );
    assert_eq!(sim.sbc.trunk_calls(), &[0, 1, 0]);
    // The same DID from the first trunk (no inbound rules): "+1555…" is not a sales DID.
    sim.deliver(
        carrier(),
        &carrier_invite(CARRIER, "+15557654321")
            .replace("car-call-9", "car-call-10")
            .replace("z9hG4bKcar1", "z9hG4bKcar2"),
    );
    sim.take_carrier();
    let to_pbx = sim.take_pbx().remove(0);
    assert_eq!(
        to_pbx.request_uri_str(),
        Some("sip:+15557654321@10.0.0.10:5070")
    );
    assert_eq!(sim.sbc.trunk_calls(), &[1, 1, 0]);
}

#[test]
fn inbound_calls_count_against_their_trunks_limit() {
    let mut cfg = config();
    cfg.trunks[0].limits = CallLimits {
        max_calls: Some(1),
        max_cps: None,
    };
    let mut sim = sim(cfg);
    sim.deliver(carrier(), &carrier_invite(CARRIER, "+15557654321"));
    sim.take_carrier();
    assert_eq!(sim.take_pbx().len(), 1);
    sim.deliver(
        carrier(),
        &carrier_invite(CARRIER, "+15557654321")
            .replace("car-call-9", "car-call-10")
            .replace("z9hG4bKcar1", "z9hG4bKcar2"),
    );
    let r = sim.take_carrier();
    assert_eq!(status(&r[0]), 503);
    assert!(sim.take_pbx().is_empty());
}

#[test]
fn failover_applies_the_next_trunks_rules() {
    let mut cfg = three_trunks();
    cfg.trunks[1].outbound.called = vec![prefix_rule("1", 1, "001")];
    cfg.trunks[1].from_domain = Some("b.example".into());
    cfg.trunks[1].outbound.headers = vec![
        HeaderRule::new(HeaderAction::Add, "X-B", Some("${trunk}")).expect("valid in the test"),
    ];
    cfg.routes = vec![route("r", NumberMatch::Any, &[0, 1])];
    let mut sim = sim(cfg);
    sim.deliver(pbx(), &invite_to("15551234567", 1));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    assert!(!String::from_utf8_lossy(first.as_bytes()).contains("X-B"));
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let out = sim.take_carrier();
    let second = out.last().expect("valid in the test");
    assert_eq!(
        second.request_uri_str().map(str::to_owned),
        Some(format!("sip:0015551234567@{B}"))
    );
    assert_eq!(second.from().uri_str, "sip:100@b.example");
    assert!(String::from_utf8_lossy(second.as_bytes()).contains("X-B: b\r\n"));
    assert!(!second.body().is_empty(), "the same offer");
    assert_eq!(sim.sbc.trunk_calls(), &[0, 1, 0]);
    assert!(events(&mut sim).iter().any(|e| matches!(
        e,
        Event::Failover {
            from: 0,
            to: 1,
            status: 503,
            ..
        }
    )));
}

#[test]
fn reconfiguration_keeps_trunk_attribution_by_name() {
    let mut sim = sim(three_trunks());
    sim.deliver(pbx(), &invite_to("1", 1));
    sim.take_pbx();
    sim.take_carrier();
    assert_eq!(sim.sbc.trunk_calls(), &[1, 0, 0]);
    // The trunk moves to the end of the list; its call moves with it.
    let mut cfg = config();
    cfg.trunks.insert(0, TrunkConfig::new("c", target(C)));
    cfg.trunks.insert(0, TrunkConfig::new("b", target(B)));
    sim.sbc.set_config(cfg);
    assert_eq!(sim.sbc.trunk_calls(), &[0, 0, 1]);
    assert_eq!(sim.sbc.calls()[0].trunk, Some(2));
}

#[test]
fn a_trunk_with_its_own_local_address_uses_it_in_via_contact_and_as_source() {
    const BOUND: &str = "192.168.0.2:5080";
    let second = LocalAddr {
        addr: addr("203.0.113.2:5080"),
        transport: TransportKind::Udp,
    };
    let mut cfg = three_trunks();
    cfg.listeners = vec![(addr(BOUND), second)];
    cfg.trunks[1].local = Some(crate::b2bua::TrunkLocal {
        advertised: second,
        bound: addr(BOUND),
    });
    cfg.routes = vec![route("b", NumberMatch::Any, &[1])];
    let mut sim = sim(cfg);
    let msg = Message::parse(
        Bytes::from(invite_to("4930", 1).replace('\n', "\r\n")),
        &Limits::default(),
    )
    .expect("parses");
    sim.with_media(|b, now, m| b.handle_message(now, pbx(), msg, m));
    let out: Vec<Transmit> = std::iter::from_fn(|| sim.sbc.poll_transmit()).collect();
    let invite = out
        .iter()
        .find(|t| t.to.side == Side::Outside)
        .expect("INVITE to the trunk");
    assert_eq!(
        invite.to.local,
        Some(addr(BOUND)),
        "sent from the trunk's socket"
    );
    let text = String::from_utf8_lossy(&invite.data);
    assert!(
        text.contains("Via: SIP/2.0/UDP 203.0.113.2:5080;"),
        "{text}"
    );
    assert!(
        text.contains("Contact: <sip:sbc@203.0.113.2:5080>"),
        "{text}"
    );
    assert!(
        text.contains("Call-ID: ") && text.contains("@203.0.113.2\r\n"),
        "{text}"
    );

    // A call from a carrier reaching the SBC at that listener is answered from it, and the
    // SBC's Contact toward the carrier names it.
    let from_b = Peer {
        addr: addr(B),
        local: Some(addr(BOUND)),
        ..carrier()
    };
    let msg = Message::parse(
        Bytes::from(carrier_invite(B, "+15557654321").replace('\n', "\r\n")),
        &Limits::default(),
    )
    .expect("parses");
    sim.with_media(|b, now, m| b.handle_message(now, from_b, msg, m));
    let out: Vec<Transmit> = std::iter::from_fn(|| sim.sbc.poll_transmit()).collect();
    let trying = out
        .iter()
        .find(|t| t.to.side == Side::Outside)
        .expect("100 Trying");
    assert_eq!(trying.to.local, Some(addr(BOUND)));
    let to_pbx = out
        .iter()
        .find(|t| t.to.side == Side::Inside)
        .expect("INVITE to the PBX");
    let inv = Message::parse(to_pbx.data.clone(), &Limits::default()).expect("parses");
    let answer = Message::parse(
        Bytes::from(
            carrier_response(&inv, 200, "OK", Some("p1"), Some(SDP_PBX)).replace('\n', "\r\n"),
        ),
        &Limits::default(),
    )
    .expect("parses");
    sim.with_media(|b, now, m| b.handle_message(now, pbx(), answer, m));
    let ok = std::iter::from_fn(|| sim.sbc.poll_transmit())
        .find(|t| t.to.side == Side::Outside)
        .expect("200 to the carrier");
    assert_eq!(ok.to.local, Some(addr(BOUND)));
    let text = String::from_utf8_lossy(&ok.data);
    assert!(
        text.contains("Contact: <sip:sbc@203.0.113.2:5080>"),
        "{text}"
    );
}
