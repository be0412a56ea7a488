//! A source outside the ACL of the side it arrives on is ignored: no answer at all.

use super::*;

#[test]
fn a_source_outside_the_acl_is_ignored_on_either_side() {
    let mut lab = Lab::new(config());
    lab.sent();
    let stranger = "192.0.2.9:5060";
    // Outside: not a trunk proxy.
    let r = lab.deliver(peer(Side::Outside, stranger), &options(stranger, None));
    assert_eq!(r, Received::Dropped(PolicyDrop::Acl));
    // Inside: not in the PBX networks.
    let r = lab.deliver(peer(Side::Inside, stranger), &options(stranger, None));
    assert_eq!(r, Received::Dropped(PolicyDrop::Acl));
    // The PBX's address arriving on the outside is a stranger there.
    let r = lab.deliver(peer(Side::Outside, PBX), &options(PBX, None));
    assert_eq!(r, Received::Dropped(PolicyDrop::Acl));
    assert!(
        lab.sent().is_empty(),
        "sources outside the ACL get no answer"
    );
    // The carrier is in the ACL outside.
    let r = lab.deliver(peer(Side::Outside, CARRIER), &options(CARRIER, None));
    assert_eq!(r, Received::Call);
    assert_eq!(lab.sent().len(), 1);
}

#[test]
fn a_resolved_trunk_name_opens_the_acl_for_every_address() {
    let mut cfg = config();
    cfg.trunks[0].proxy = "carrier.test".into();
    cfg.trunks[0].static_addr = None;
    cfg.acl.outside = Vec::new();
    let mut lab = Lab::new(cfg);
    let second = "198.51.100.2:5060";
    let r = lab.deliver(peer(Side::Outside, second), &options(second, None));
    assert_eq!(
        r,
        Received::Dropped(PolicyDrop::Acl),
        "nothing resolved yet"
    );
    lab.sbc.handle_dns(
        lab.now,
        DnsAnswer {
            trunk: "carrier".into(),
            proxy: "carrier.test".into(),
            addrs: vec![addr(CARRIER), addr(second)],
        },
    );
    assert!(lab.events().contains(&Event::AclChanged));
    assert_eq!(
        lab.sbc.trunk_ips(0),
        [addr(CARRIER).ip(), addr(second).ip()]
    );
    let r = lab.deliver(peer(Side::Outside, second), &options(second, None));
    assert_eq!(r, Received::Call);
    // An answer for a proxy the trunk no longer has changes nothing.
    lab.sbc.handle_dns(
        lab.now,
        DnsAnswer {
            trunk: "carrier".into(),
            proxy: "old.test".into(),
            addrs: vec![addr("198.51.100.3:5060")],
        },
    );
    assert_eq!(lab.sbc.trunk_ips(0), [] as [std::net::IpAddr; 0]);
}
