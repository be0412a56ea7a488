//! The lab comes up with working links in both address families, and disappears on drop.

use std::process::Command;

use sbc_e2e::lab::Lab;

fn ping(ns: &str, target: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", target])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn lab_links_work_and_namespaces_are_removed_on_drop() {
    if !sbc_e2e::require_root("lab_topology") {
        return;
    }
    let lab = Lab::up("slt").expect("lab up");
    let id = lab.id.clone();
    assert!(ping(&lab.pbx, "198.18.1.1"), "pbx → sbc inside (IPv4)");
    assert!(
        ping(&lab.carrier, "198.18.2.1"),
        "carrier → sbc outside (IPv4)"
    );
    assert!(ping(&lab.pbx, "fd00:5bc:1::1"), "pbx → sbc inside (IPv6)");
    assert!(
        ping(&lab.carrier, "fd00:5bc:2::1"),
        "carrier → sbc outside (IPv6)"
    );
    // The SBC is not a router: the two sides cannot reach each other through it.
    assert!(
        !ping(&lab.pbx, "198.18.2.2"),
        "pbx must not reach the carrier directly"
    );
    assert_eq!(Lab::list(&id).expect("list").len(), 3);
    drop(lab);
    assert!(
        Lab::list(&id).expect("list").is_empty(),
        "namespaces left behind"
    );
}
