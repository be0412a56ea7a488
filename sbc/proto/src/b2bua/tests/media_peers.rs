//! What the media layer learns about a call's peers (its latching policy and the trunk's port
//! quota depend on it), and the 503 a media refusal turns into.

use super::*;
use crate::media::MediaPeers;

const SECOND: &str = "198.51.100.8:5090";

#[test]
fn allocate_names_the_pbx_source_the_trunk_proxy_and_the_trunk() {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let (_, s) = sim
        .media
        .sessions()
        .into_iter()
        .next()
        .expect("a media session");
    assert_eq!(
        s.peers,
        MediaPeers {
            inside: Some(addr(PBX).ip()),
            outside: Some(addr(CARRIER).ip()),
            trunk: Some("carrier".into()),
        }
    );
}

#[test]
fn failover_moves_the_media_peers_to_the_next_trunk() {
    let mut sim = Sim::new();
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new(
        "second",
        Target {
            addr: addr(SECOND),
            transport: TransportKind::Udp,
        },
    ));
    sim.sbc.set_config(cfg);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    let first = sim.take_carrier().remove(0);
    sim.deliver(
        carrier(),
        &carrier_response(&first, 503, "Service Unavailable", Some("t1"), None),
    );
    let (_, s) = sim
        .media
        .sessions()
        .into_iter()
        .next()
        .expect("a media session");
    assert_eq!(s.peers.trunk.as_deref(), Some("second"));
    assert_eq!(s.peers.outside, Some(addr(SECOND).ip()));
}

#[test]
fn relay_ports_exhausted_gives_503_with_retry_after() {
    // A port range without a single pair: nothing to relay with.
    let mut relay = relay_settings();
    relay.port_max = relay.port_min;
    let mut sim = Sim::with_relay(relay);
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", Some(SDP_PBX)));
    assert!(sim.take_carrier().is_empty());
    let r = sim.take_pbx();
    let last = r.last().expect("a final response");
    assert_eq!(status(last), 503);
    assert_eq!(hdr(last, HeaderName::RetryAfter), "5");
}
