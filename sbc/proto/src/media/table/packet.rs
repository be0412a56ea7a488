//! The packet path seen from the table: a datagram on a relay socket goes to its stream's
//! [`StreamPath`](crate::media::path::StreamPath), and what it changed (a latch, digits)
//! comes back to the control half.

use super::*;
use crate::media::path::PathVerdict;

impl MediaTable {
    /// One datagram `buf[..len]` arrived (see [`Arrival`]) at `now`: its stream's path decides
    /// it ([`StreamPath::handle`](crate::media::path::StreamPath::handle)); a latch it moved
    /// re-syncs the fast path and is reported to the call layer, digits it ended become
    /// [`MediaEvent::Dtmf`].
    pub fn handle_packet(
        &mut self,
        now: Instant,
        arrival: Arrival,
        buf: &mut [u8],
        len: usize,
    ) -> PacketAction {
        let Arrival {
            stream,
            leg,
            port,
            src,
        } = arrival;
        let rules = self.settings.rules();
        let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        else {
            return PacketAction::Drop(PacketDrop::UnknownStream);
        };
        let verdict = st
            .path
            .lock()
            .handle(now, rules, (leg, port, src), buf, len);
        self.learn(now, stream, leg, verdict);
        verdict.action
    }

    /// What a packet of `stream`'s `leg` changed, as its path said ([`PathVerdict`]): a
    /// moved RTP latch (the fast path follows, the call layer persists it) and ended digits
    /// (events). A relay thread that decided the packet on the stream's [`PathHandle`] reports
    /// here; a verdict for a stream released meanwhile is ignored.
    pub fn learn(&mut self, now: Instant, stream: StreamKey, leg: Side, verdict: PathVerdict) {
        if !verdict.has_news() {
            return;
        }
        let known = self
            .sessions
            .get(&stream.session)
            .is_some_and(|s| s.streams.len() > stream.index);
        if !known {
            return;
        }
        for d in verdict.digits.into_iter().flatten() {
            push_event(
                &mut self.events,
                MediaEvent::Dtmf {
                    session: stream.session,
                    leg,
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                },
            );
        }
        if verdict.latched {
            self.sync_fast_path(now, stream);
            self.latched.insert(stream.session);
            if let Some(s) = self.sessions.get_mut(&stream.session) {
                s.version += 1;
            }
        }
    }

    /// The packet path of `stream`, for the relay thread that will decide its packets.
    pub fn path(&self, stream: StreamKey) -> Option<PathHandle> {
        let s = self.sessions.get(&stream.session)?;
        Some(s.streams.get(stream.index)?.path.clone())
    }

    /// A packet from `stream`'s `leg` could not be sent on (counted against that peer).
    pub fn count_drop(&mut self, stream: StreamKey, leg: Side) {
        if let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        {
            st.path.lock().count_drop(leg);
        }
    }
}
