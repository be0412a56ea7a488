//! Latches made by the XDP program for socketless streams: the table learns them so that its
//! view of the stream (latched addresses, activity, mappings) stays the kernel's.

use super::*;

impl MediaTable {
    /// The program latched the mapping of relay endpoint `ingress` to `peer` at `now` (a latch
    /// event from the kernel). Records the latch like one made by the userspace relay (a
    /// latch before the peer's SDP is provisional and is checked when the SDP arrives), counts
    /// it as media activity, and records what the kernel already changed (the mapping is
    /// strict, the reverse mapping sends to `peer`) so that no command rewrites it. A latch
    /// the table no longer wants (the stream left the kernel, or its policy changed since)
    /// is corrected by the commands that follow. An RTP latch is reported as
    /// [`MediaEvent::Latched`] like one made in userspace. Returns whether a stream knew
    /// `ingress`.
    pub fn handle_kernel_latch(
        &mut self,
        now: Instant,
        ingress: SocketAddr,
        peer: SocketAddr,
    ) -> bool {
        let Some(key) = self.kernel_ports.get(&LegKey::of(ingress)).copied() else {
            return false;
        };
        let Some(s) = self.sessions.get_mut(&key.session) else {
            return false;
        };
        let Some(st) = s.streams.get_mut(key.index) else {
            return false;
        };
        // The key is the leg's: the port itself must have a kernel mapping (an event can
        // trail the removal of the RTCP one, when a peer turned to rtcp-mux).
        if !st
            .installed
            .iter()
            .any(|m| m.ingress == ingress && matches!(m.mode, PathMode::Kernel(_)))
        {
            return false;
        }
        let bound = st.bound();
        let Some(leg) = [Side::Inside, Side::Outside].into_iter().find(|l| {
            let relay = bound[(*l).index()];
            relay.ip() == ingress.ip() && (ingress.port() & !1) == relay.port()
        }) else {
            return false;
        };
        let kind = usize::from(ingress.port() != bound[leg.index()].port());
        {
            let mut path = st.path.lock();
            let p = &mut path.peers[leg.index()];
            p.latch[kind].learn(peer, now);
            p.last_seen = Some(now);
        }
        if kind == 0 {
            // Where the relay sends is part of the call's persisted state.
            self.latched.insert(key.session);
        }
        s.activity.observe(now);
        st.installed.update(|m| {
            let PathMode::Kernel(k) = &mut m.mode else {
                return;
            };
            if m.ingress == ingress {
                k.awaiting = false;
                m.expect = peer;
                m.strict = true;
            } else if k.reverse == ingress {
                m.dst = peer;
            }
        });
        self.sync_fast_path(now, key);
        true
    }
}
