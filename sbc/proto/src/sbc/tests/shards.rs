//! A core running as one of several signaling shards (`crate::shard`): bans another shard
//! decided are enforced here, and shard 0's health verdicts take a trunk out of this shard's
//! routes (it runs no checks of its own).

use super::*;
use crate::{health::Health, sip::Method};

const FLOODER: &str = "10.0.0.7:5060";
const BACKUP: &str = "198.51.100.2:5060";

#[test]
fn a_ban_from_another_shard_drops_the_source_here_and_is_reported_once() {
    let mut lab = Lab::new(config());
    lab.events();
    let from = peer(Side::Inside, FLOODER);
    assert_eq!(lab.deliver(from, &options(FLOODER, None)), Received::Call);
    lab.sbc.ban(lab.now, Side::Inside, addr(FLOODER).ip());
    assert_eq!(
        lab.deliver(from, &options(FLOODER, None)),
        Received::Dropped(PolicyDrop::Banned)
    );
    assert!(
        !lab.events()
            .iter()
            .any(|e| matches!(e, Event::Banned { .. })),
        "the shard that decided the ban reports it"
    );
    // The other side is not affected, and the ban ends by itself.
    assert_eq!(
        lab.deliver(peer(Side::Outside, CARRIER), &options(CARRIER, None)),
        Received::Call
    );
    lab.advance(Duration::from_secs(60));
    assert_eq!(lab.deliver(from, &options(FLOODER, None)), Received::Call);
}

/// Two trunks, `carrier` first; a shard other than 0 (no checks of its own).
fn follower() -> Lab {
    Lab::new(follower_config())
}

fn follower_config() -> SbcConfig {
    let mut cfg = config();
    cfg.guard = GuardConfig::default();
    let backup = Target {
        addr: addr(BACKUP),
        transport: TransportKind::Udp,
    };
    cfg.b2bua.trunks.push(TrunkConfig::new("backup", backup));
    cfg.acl.outside.push(addr(BACKUP).ip());
    cfg.trunks.push(TrunkProxy {
        name: "backup".into(),
        proxy: BACKUP.into(),
        static_addr: Some(addr(BACKUP)),
        transport: TransportKind::Udp,
    });
    crate::sbc::shard_config::config_for(
        with_registration_and_health(cfg),
        crate::shard::ShardId::new(1),
        2,
    )
}

fn invite(n: u32) -> String {
    format!(
        "INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bKinv{n}\n\
         Max-Forwards: 70\n\
         From: <sip:100@10.0.0.2>;tag=f{n}\n\
         To: <sip:15551234567@10.0.0.1>\n\
         Call-ID: call-{n}@10.0.0.2\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:100@{PBX}>\n\
         Content-Length: 0\n\n"
    )
}

/// Where the INVITE of a new call from the PBX goes.
fn routed_to(lab: &mut Lab, n: u32) -> SocketAddr {
    assert_eq!(
        lab.deliver(peer(Side::Inside, PBX), &invite(n)),
        Received::Call
    );
    let sent = lab.sent();
    let (to, _) = sent
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Invite))
        .unwrap_or_else(|| panic!("no INVITE sent: {sent:?}"));
    to.addr
}

#[test]
fn a_follower_shard_runs_no_checks_and_follows_shard_0s_health() {
    let mut lab = follower();
    assert!(
        lab.sent().is_empty(),
        "no REGISTER, no OPTIONS: shard 0 runs them"
    );
    assert_eq!(lab.sbc.registrations().count(), 0);
    assert_eq!(lab.sbc.health().count(), 0);
    assert_eq!(routed_to(&mut lab, 1), addr(CARRIER));
    lab.sbc.apply_health(lab.now, "carrier", Health::Down);
    assert_eq!(
        routed_to(&mut lab, 2),
        addr(BACKUP),
        "down on shard 0: skipped"
    );
    lab.sbc.reconfigure(lab.now, follower_config());
    assert_eq!(
        routed_to(&mut lab, 5),
        addr(BACKUP),
        "a reload keeps shard 0's verdict"
    );
    lab.sbc.apply_health(lab.now, "backup", Health::Up);
    assert_eq!(routed_to(&mut lab, 3), addr(BACKUP));
    lab.sbc.apply_health(lab.now, "carrier", Health::Up);
    assert_eq!(routed_to(&mut lab, 4), addr(CARRIER), "up again");
}

#[test]
fn each_of_two_shards_gets_half_the_state_caps() {
    let whole = config().b2bua.caps;
    let mine = follower_config().b2bua.caps;
    assert_eq!(mine.max_transactions, whole.max_transactions / 2);
    assert_eq!(mine.max_stored_bytes, whole.max_stored_bytes / 2);
}
