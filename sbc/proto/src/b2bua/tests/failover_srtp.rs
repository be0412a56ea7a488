//! Failover to a trunk with another SRTP policy (`failover.rs`): the caller's offer is written
//! again with the next trunk's policy — plain RTP for a trunk without SRTP after a mandatory
//! one (no `a=crypto` of the first trunk's keys), SRTP with fresh keys for a mandatory trunk
//! after a plain one — and the call completes on it.

use super::srtp::{carrier_srtp_sdp, crypto_lines};
use super::*;
use crate::srtp::{MasterKey, SrtpMode, SrtpPolicy, Suite};

const SECOND: &str = "198.51.100.8:5090";

fn sim_with(first: SrtpMode, second: SrtpMode) -> Sim {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks[0].srtp = SrtpPolicy::new(first);
    let mut t = TrunkConfig::new(
        "second",
        Target {
            addr: addr(SECOND),
            transport: TransportKind::Udp,
        },
    );
    t.srtp = SrtpPolicy::new(second);
    cfg.trunks.push(t);
    sim.sbc.set_config(cfg);
    sim
}

fn second_trunk() -> Peer {
    Peer {
        addr: addr(SECOND),
        ..carrier()
    }
}

/// The PBX's call: the first trunk's INVITE answered 503, the INVITE to the second trunk.
fn failed_over(sim: &mut Sim) -> (Message, Message) {
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    sim.take_pbx();
    let first = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let out = sim.take_carrier();
    let second = out
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("an INVITE to the second trunk");
    (first, second)
}

#[test]
fn a_plain_trunk_after_a_mandatory_one_gets_plain_rtp() {
    let mut sim = sim_with(SrtpMode::Mandatory, SrtpMode::Off);
    let (first, second) = failed_over(&mut sim);
    assert!(
        body_of(&first).contains(" RTP/SAVP "),
        "{}",
        body_of(&first)
    );
    let offer = body_of(&second);
    assert!(offer.contains(" RTP/AVP 0 8 101\n"), "{offer}");
    assert!(
        !offer.contains("a=crypto"),
        "no keys toward a plain trunk: {offer}"
    );
    let pending = sim.media.first().expect("a media session");
    assert_eq!(
        pending.expected[1],
        vec![false],
        "the carrier leg is plain now"
    );
    sim.deliver(
        second_trunk(),
        &carrier_response(&second, 200, "OK", Some("t2"), Some(SDP_CARRIER)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200, "{}", body_of(&ok));
    let session = sim.media.first().expect("a media session");
    assert!(
        session.crypto[1].iter().all(Option::is_none) && session.expected[1] == vec![false],
        "outside plain RTP, not held for keys"
    );
}

#[test]
fn a_mandatory_trunk_after_a_plain_one_gets_srtp_with_fresh_keys() {
    let mut sim = sim_with(SrtpMode::Off, SrtpMode::Mandatory);
    let (first, second) = failed_over(&mut sim);
    assert!(!body_of(&first).contains("a=crypto"), "{}", body_of(&first));
    let offer = body_of(&second);
    assert!(offer.contains(" RTP/SAVP 0 8 101\n"), "{offer}");
    let offered = crypto_lines(&offer);
    assert!(
        !offered.is_empty(),
        "the SBC's keys for this trunk: {offer}"
    );
    let pending = sim.media.first().expect("a media session");
    assert_eq!(pending.expected[1], vec![true], "carrier leg awaits keys");
    let line = offered
        .iter()
        .find(|c| c.suite == Suite::AesCm128HmacSha1_80)
        .expect("an AES_CM_128_HMAC_SHA1_80 line");
    let key = MasterKey::generate(line.suite, &mut Rng::from_test_seed(7));
    let answer = carrier_srtp_sdp(line.tag, line.suite, &key);
    sim.deliver(
        second_trunk(),
        &carrier_response(&second, 200, "OK", Some("t2"), Some(&answer)),
    );
    let ok = sim.take_pbx().remove(0);
    assert_eq!(status(&ok), 200, "{}", body_of(&ok));
    assert!(!body_of(&ok).contains("a=crypto"), "the PBX stays plain");
    let session = sim.media.first().expect("a media session");
    assert!(session.crypto[1][0].is_some(), "outside keyed");
}
