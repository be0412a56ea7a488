//! Time: the media timeout, strict fast paths once re-latch windows close, and the fast
//! path's counters as activity.

use super::*;

impl MediaTable {
    /// Time passed: makes fast paths strict once their re-latch window has closed, asks for the
    /// counters of idle fast-path sessions, fires media timeouts (events for the call layer;
    /// adopted sessions, which no call layer knows, are released here). Returns the number of
    /// sessions that timed out.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        // Warm pairs that could not be bound since the last tick are asked for again.
        self.top_up();
        let mut fired = Vec::new();
        let mut resync = Vec::new();
        for (id, s) in &mut self.sessions {
            if self.settings.strict_source {
                for (index, st) in s.streams.iter().enumerate() {
                    let lax = st
                        .installed
                        .iter()
                        .any(|m| !m.strict && m.mode == PathMode::Relay);
                    let open = st
                        .path
                        .lock()
                        .peers
                        .iter()
                        .any(|p| p.latch[0].window_open(now));
                    if lax && !open {
                        resync.push(StreamKey {
                            session: *id,
                            index,
                        });
                    }
                }
            }
            if !s.committed || s.timed_out {
                continue;
            }
            let mut hold = false;
            for st in &s.streams {
                for p in &st.path.lock().peers {
                    hold |= p.direction.is_hold();
                    if let Some(t) = p.last_seen {
                        s.activity.observe(t);
                    }
                }
            }
            let limit = if hold {
                self.settings.hold_timeout
            } else {
                self.settings.timeout
            };
            if s.activity.expired(now, limit) {
                s.timed_out = true;
                fired.push((*id, s.adopted));
                continue;
            }
            // Counters cost a syscall per mapping: read them only for a session idle for a
            // quarter of its timeout. Their answer counts at the next tick, so a stream that XDP
            // carries times out between 1 and 1.25 timeouts (plus a tick) after its last packet.
            if let Some(l) = limit
                && s.activity.idle(now) >= l / 4
            {
                for (index, st) in s.streams.iter().enumerate() {
                    // RTP first: `fast_path::desired` and `fast_path::kernel` put the RTP
                    // mappings at 0 and 1 (RTCP follows).
                    let slot = |i: usize| st.installed.get(i).as_ref().and_then(FastPath::stats);
                    if slot(0).is_none() && slot(1).is_none() {
                        continue;
                    }
                    self.commands.push_back(MediaCommand::ReadCounters {
                        stream: StreamKey {
                            session: *id,
                            index,
                        },
                        slots: [slot(0), slot(1)],
                    });
                }
            }
        }
        for key in resync {
            self.sync_fast_path(now, key);
        }
        let n = fired.len();
        for (id, adopted) in fired {
            if adopted {
                self.release(id);
                continue;
            }
            push_event(&mut self.events, MediaEvent::Timeout(id));
        }
        self.flush_dtmf(now);
        n
    }

    /// The fast-path counters of `stream` summed to `packets` at `now`: media forwarded by
    /// XDP counts as activity.
    pub fn handle_fast_path_packets(&mut self, now: Instant, stream: StreamKey, packets: u64) {
        let Some(s) = self.sessions.get_mut(&stream.session) else {
            return;
        };
        let Some(st) = s.streams.get_mut(stream.index) else {
            return;
        };
        if packets != st.xdp_packets {
            st.xdp_packets = packets;
            s.activity.observe(now);
        }
    }
}
