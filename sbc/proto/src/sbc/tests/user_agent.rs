//! A request whose User-Agent is on the denylist is refused without an answer (scanners such
//! as SIPVicious announce themselves); responses are never judged by it.

use super::*;

#[test]
fn a_blocked_user_agent_is_refused_even_from_the_pbx_network() {
    let mut lab = Lab::new(config());
    lab.sent();
    let from = peer(Side::Inside, PBX);
    let r = lab.deliver(from, &options(PBX, Some("Friendly-Scanner 1.8")));
    assert_eq!(r, Received::Dropped(PolicyDrop::UserAgent));
    assert!(lab.sent().is_empty(), "no answer to a scanner");
    let r = lab.deliver(from, &options(PBX, Some("Asterisk PBX 20")));
    assert_eq!(r, Received::Call);
    assert_eq!(lab.sent().len(), 1);
}
