//! The lab: the namespace topology every end-to-end test, the demo and the benchmarks use.
//!
//! ```text
//!  ns <id>-pbx                ns <id>-sbc                        ns <id>-car
//!  pbx0 198.18.1.2/24 ─veth─ in0 198.18.1.1/24   out0 198.18.2.1/24 ─veth─ car0 198.18.2.2/24
//!       fd00:5bc:1::2/64         fd00:5bc:1::1/64     fd00:5bc:2::1/64          fd00:5bc:2::2/64
//! ```
//!
//! The SBC runs in its own namespace rather than the root one: its fixed ports (5060, 8080, the
//! media range) cannot collide with anything on the host or another test, its XDP program attaches
//! natively to both veth ends, and deleting three namespaces removes every trace. 198.18.0.0/15 is
//! the benchmarking range (RFC 2544); its addresses exist only inside these namespaces. The pbx
//! and carrier ends also get an XDP program (the relay, with no mappings it passes everything)
//! because native-mode redirect into a veth needs one attached on the receiving end.

use crate::netns::{NetnsError, ip};

/// Addresses of the lab (identical in every lab instance; the namespaces isolate them).
pub mod addr {
    use std::net::{IpAddr, Ipv4Addr};

    /// The PBX host.
    pub const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
    /// The SBC's inside interface.
    pub const SBC_INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    /// The SBC's outside interface.
    pub const SBC_OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1));
    /// The carrier host.
    pub const CARRIER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
}

/// Interface names inside the lab's namespaces.
pub mod iface {
    /// PBX end of the inside link.
    pub const PBX: &str = "pbx0";
    /// SBC end of the inside link.
    pub const SBC_INSIDE: &str = "in0";
    /// SBC end of the outside link.
    pub const SBC_OUTSIDE: &str = "out0";
    /// Carrier end of the outside link.
    pub const CARRIER: &str = "car0";
}

/// One lab instance. Dropping it deletes the namespaces (and with them the veths), unless
/// [`Lab::keep`] was called (for `cargo xtask lab up`).
#[derive(Debug)]
pub struct Lab {
    /// Prefix of the namespace names.
    pub id: String,
    /// PBX namespace.
    pub pbx: String,
    /// SBC namespace.
    pub sbc: String,
    /// Carrier namespace.
    pub carrier: String,
    keep: bool,
}

impl Lab {
    /// Brings up a lab with a unique id (process id + counter) derived from `prefix`.
    pub fn up(prefix: &str) -> Result<Self, NetnsError> {
        Self::up_named(&crate::netns::unique(prefix))
    }

    /// Brings up a lab whose namespaces are `<id>-pbx`, `<id>-sbc`, `<id>-car`. If any step
    /// fails, what was created is removed again.
    pub fn up_named(id: &str) -> Result<Self, NetnsError> {
        let lab = Self {
            id: id.to_owned(),
            pbx: format!("{id}-pbx"),
            sbc: format!("{id}-sbc"),
            carrier: format!("{id}-car"),
            keep: false,
        };
        // `lab` drops (and cleans up) if any `?` below returns early.
        for ns in [&lab.pbx, &lab.sbc, &lab.carrier] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        lab.link(
            End {
                ns: &lab.pbx,
                ifname: iface::PBX,
                v4: "198.18.1.2/24",
                v6: "fd00:5bc:1::2/64",
            },
            End {
                ns: &lab.sbc,
                ifname: iface::SBC_INSIDE,
                v4: "198.18.1.1/24",
                v6: "fd00:5bc:1::1/64",
            },
        )?;
        lab.link(
            End {
                ns: &lab.carrier,
                ifname: iface::CARRIER,
                v4: "198.18.2.2/24",
                v6: "fd00:5bc:2::2/64",
            },
            End {
                ns: &lab.sbc,
                ifname: iface::SBC_OUTSIDE,
                v4: "198.18.2.1/24",
                v6: "fd00:5bc:2::1/64",
            },
        )?;
        ip(&[
            "-n",
            &lab.pbx,
            "route",
            "add",
            "default",
            "via",
            "198.18.1.1",
        ])?;
        ip(&[
            "-n",
            &lab.carrier,
            "route",
            "add",
            "default",
            "via",
            "198.18.2.1",
        ])?;
        ip(&[
            "-n",
            &lab.pbx,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5bc:1::1",
        ])?;
        ip(&[
            "-n",
            &lab.carrier,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5bc:2::1",
        ])?;
        Ok(lab)
    }

    /// One veth pair from `peer` to the SBC namespace, both ends addressed in both families.
    fn link(&self, peer: End<'_>, sbc: End<'_>) -> Result<(), NetnsError> {
        ip(&[
            "link",
            "add",
            peer.ifname,
            "netns",
            peer.ns,
            "type",
            "veth",
            "peer",
            "name",
            sbc.ifname,
            "netns",
            sbc.ns,
        ])?;
        for end in [peer, sbc] {
            ip(&["-n", end.ns, "addr", "add", end.v4, "dev", end.ifname])?;
            // nodad: the address is usable at once instead of after duplicate detection.
            ip(&[
                "-n", end.ns, "addr", "add", end.v6, "dev", end.ifname, "nodad",
            ])?;
            ip(&["-n", end.ns, "link", "set", end.ifname, "up"])?;
        }
        Ok(())
    }

    /// Keeps the namespaces after this value is dropped (`cargo xtask lab up`).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Every lab namespace on this host whose name starts with `prefix`.
    pub fn list(prefix: &str) -> Result<Vec<String>, NetnsError> {
        let out = ip(&["netns", "list"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Deletes the lab namespaces of `id` (for `cargo xtask lab down`).
    pub fn down(id: &str) -> Result<usize, NetnsError> {
        let mut n = 0;
        for suffix in ["pbx", "sbc", "car"] {
            let name = format!("{id}-{suffix}");
            if Self::list(&name)?.contains(&name) {
                ip(&["netns", "del", &name])?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// One end of a veth link: its namespace, interface name and addresses (with prefix length).
#[derive(Clone, Copy)]
struct End<'a> {
    ns: &'a str,
    ifname: &'a str,
    v4: &'a str,
    v6: &'a str,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for ns in [&self.pbx, &self.sbc, &self.carrier] {
            // A namespace that was never created fails here harmlessly.
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
