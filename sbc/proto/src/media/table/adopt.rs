//! Adoption after a restart: sessions recreated from the fast-path mappings a previous process
//! left installed.

use super::*;

impl MediaTable {
    /// Recreates sessions from fast-path mappings a previous process left installed: each pair
    /// (inside → outside and back) becomes a one-stream, committed, `adopted` session with its
    /// ports and slots reserved and its latches restored. Mappings without a partner, or whose
    /// ports or slots are taken, are removed. Returns the adopted sessions.
    pub fn adopt(&mut self, now: Instant, found: &[FastPath]) -> Vec<SessionId> {
        let mut used: Vec<SocketAddr> = Vec::new();
        let mut adopted = Vec::new();
        for f in found {
            // With one address on both sides, the partner also looks like an inside mapping.
            if used.contains(&f.ingress) || !self.settings.inside.binds(f.ingress.ip()) {
                continue;
            }
            let Some(back) = found
                .iter()
                .find(|b| b.ingress == f.egress && self.settings.outside.binds(b.ingress.ip()))
            else {
                continue;
            };
            if back.expect != f.dst || back.dst != f.expect || f.expect.port() == 0 {
                continue;
            }
            if let Some(id) = self.adopt_pair(now, *f, *back) {
                used.push(f.ingress);
                used.push(back.ingress);
                adopted.push(id);
            }
        }
        for f in found {
            if !used.contains(&f.ingress) {
                self.commands.push_back(MediaCommand::Remove {
                    ingress: f.ingress,
                    policy: false,
                });
            }
        }
        adopted
    }

    fn adopt_pair(&mut self, now: Instant, f: FastPath, back: FastPath) -> Option<SessionId> {
        let (in_port, out_port) = (f.ingress.port(), back.ingress.port());
        let binds = [f.ingress.ip(), back.ingress.ip()];
        if !self.slots.reserve(f.slot) {
            return None;
        }
        if !self.slots.reserve(back.slot) {
            self.slots.give(f.slot);
            return None;
        }
        let Some(first) = self.claim(binds[0], in_port) else {
            self.slots.give(f.slot);
            self.slots.give(back.slot);
            return None;
        };
        if self.claim(binds[1], out_port).is_none() {
            self.unclaim(binds[0], in_port, first);
            self.slots.give(f.slot);
            self.slots.give(back.slot);
            return None;
        }
        let mut peers: [PeerState; 2] = Default::default();
        // The SDP is gone with the old process: what the mappings say is the latched truth.
        for (p, addr) in peers.iter_mut().zip([f.expect, f.dst]) {
            p.set_desc(&StreamDesc::new(addr.ip(), addr.port()));
            p.latch[0].adopt(addr, now);
        }
        let st = Stream {
            relay: StreamRelay {
                inside: self.endpoint(Side::Inside, binds[0], in_port, false),
                outside: self.endpoint(Side::Outside, binds[1], out_port, false),
            },
            binds,
            path: PathHandle::new(StreamPath {
                peers,
                ..StreamPath::default()
            }),
            installed: vec![f, back].into(),
            xdp_packets: 0,
            kernel: false,
            // Latch policies are not pinned: a new process has none.
            policies: false,
        };
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.bind_streams(id, 0, std::slice::from_ref(&st));
        self.sessions.insert(
            id,
            Session {
                streams: vec![st],
                version: 0,
                committed: true,
                activity: Activity::new(now),
                timed_out: false,
                adopted: true,
                peers: MediaPeers::default(),
                quota_ports: 0,
            },
        );
        Some(id)
    }
}
