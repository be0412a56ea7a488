//! DTMF the relay terminates (`media/dtmf.rs`): the call layer's settings per stream, digits
//! to generate, the generated packets (made by the stream's path), and digits flushed as
//! [`MediaEvent::Dtmf`].

use super::*;
use crate::{
    dtmf::Digit,
    media::dtmf::{GenerateRefusal, StreamDtmf},
};

impl MediaTable {
    /// The legs whose DTMF the relay terminates, per stream (by `m=` index; missing entries
    /// terminate none), set after every answer. Such streams stay off the fast path.
    pub fn set_dtmf(
        &mut self,
        now: Instant,
        id: SessionId,
        dtmf: &[StreamDtmf],
    ) -> Result<(), MediaError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(MediaError::UnknownSession(id))?;
        for (i, st) in s.streams.iter_mut().enumerate() {
            st.path
                .lock()
                .dtmf
                .set(dtmf.get(i).copied().unwrap_or_default());
        }
        for index in 0..s.streams.len() {
            self.sync_fast_path(now, StreamKey { session: id, index });
        }
        Ok(())
    }

    /// Queues `digit` (held `duration_ms`) to be sent as telephone-events with `payload_type`
    /// toward `toward` on `stream`, and asks the runtime to wake the stream's relay
    /// ([`MediaCommand::Wake`]).
    pub fn generate_dtmf(
        &mut self,
        now: Instant,
        stream: StreamKey,
        toward: Side,
        payload_type: u8,
        digit: Digit,
        duration_ms: u32,
    ) -> Result<(), GenerateRefusal> {
        let limit = self.settings.dtmf_queue;
        let st = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
            .ok_or(GenerateRefusal::NotTerminated)?;
        st.path.lock().dtmf.generate(
            now,
            toward.index(),
            payload_type,
            digit,
            duration_ms,
            limit,
        )?;
        self.commands.push_back(MediaCommand::Wake { stream });
        Ok(())
    }

    /// When `stream` has its next generated packet due (None: nothing to send).
    pub fn generated_deadline(&self, stream: StreamKey) -> Option<Instant> {
        self.sessions
            .get(&stream.session)?
            .streams
            .get(stream.index)?
            .path
            .lock()
            .dtmf
            .deadline()
    }

    /// The next generated packet of `stream` due at `now`, written to `buf` (with
    /// [`HEADROOM`](crate::media::crypto::HEADROOM) for an SRTP trailer). Packets toward a
    /// leg with no address yet, or that SRTP cannot protect, are skipped (counted as that
    /// leg's drops). Call until None.
    pub fn poll_generated(
        &mut self,
        now: Instant,
        stream: StreamKey,
        buf: &mut [u8],
    ) -> Option<Generated> {
        let rng = &mut self.rng;
        let st = self
            .sessions
            .get_mut(&stream.session)?
            .streams
            .get_mut(stream.index)?;
        st.path
            .lock()
            .poll_generated(now, &mut || rng.next_u64() as u32, buf)
    }

    /// Digits of events whose end packets never came, once their leg is quiet.
    pub(super) fn flush_dtmf(&mut self, now: Instant) {
        for (id, s) in &mut self.sessions {
            for st in &mut s.streams {
                for (i, d) in st.path.lock().dtmf.flush(now) {
                    push_event(
                        &mut self.events,
                        MediaEvent::Dtmf {
                            session: *id,
                            leg: if i == 0 { Side::Inside } else { Side::Outside },
                            digit: d.digit,
                            duration_ms: d.duration_ms,
                        },
                    );
                }
            }
        }
    }
}
