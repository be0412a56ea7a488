//! Ending calls: call timers (2xx and reliable-provisional retransmission, max duration,
//! session timers), teardown with BYE or CANCEL, media release.

use super::*;

impl B2bua {
    pub(super) fn call_timer(&mut self, now: Instant, call: CallId, media: &mut MediaTable) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(at) = c.ends_at
            && at <= now
        {
            c.ends_at = None;
            self.terminate(now, call, EndReason::MaxDuration, media);
            return;
        }
        let Ok(session_next) = self.session_timers(now, call, media) else {
            return; // a session expired: the call is over
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // 2xx ACKs past 64·T1: no retransmission of their 2xx can reach the call any more.
        for kept in &mut c.acks {
            if kept.as_ref().is_some_and(|k| k.until <= now) {
                *kept = None;
            }
        }
        let acks_next = c.acks.iter().flatten().map(|k| k.until).min();
        let mut next = [c.ends_at, session_next, acks_next]
            .into_iter()
            .flatten()
            .min();
        let mut give_up = false;
        let mut unacked_rel = false;
        let caller_peer = c.legs[side_index(c.leg_side_of_caller())].peer;
        if let Some(p) = c.pending_rel.as_mut() {
            if p.deadline <= now {
                unacked_rel = true;
            } else {
                if p.next <= now {
                    let to = caller_peer;
                    if !to.transport.is_reliable() {
                        self.transmits.push_back(Transmit {
                            to,
                            data: p.response.clone(),
                        });
                    }
                    // RFC 3262 §3: T1, doubling, until the PRACK or 64·T1.
                    p.interval = p.interval.saturating_mul(2);
                    p.next = now + p.interval;
                }
                next = Some(next.map_or(p.next, |n| n.min(p.next)));
            }
        }
        if unacked_rel {
            // §3: no PRACK for 64·T1 — reject the INVITE and cancel the callee.
            c.pending_rel = None;
            self.terminate(now, call, EndReason::Timeout, media);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(p) = c.pending_2xx.as_mut() {
            if p.deadline <= now {
                give_up = true;
            } else {
                if p.next <= now {
                    let to = c.legs[side_index(p.leg)].peer;
                    if !to.transport.is_reliable() {
                        self.retransmissions_sent += 1;
                        self.transmits.push_back(Transmit {
                            to,
                            data: p.response.clone(),
                        });
                    }
                    p.interval = (p.interval * 2).min(self.cfg.timers.t2);
                    p.next = now + p.interval;
                }
                next = Some(next.map_or(p.next.min(p.deadline), |n| n.min(p.next).min(p.deadline)));
            }
        }
        if give_up {
            // §13.3.1.4: no ACK within 64·T1 — the session is confirmed and then ended.
            if let Some(c) = self.calls.get_mut(&call) {
                c.pending_2xx = None;
            }
            self.terminate(now, call, EndReason::NoAck, media);
            return;
        }
        if let Some(at) = next {
            self.timers.set_earliest(TimerRef::Call(call), at);
        }
        self.account_call(call);
    }

    /// Ends a call from the SBC's side: BYE on confirmed legs, CANCEL/487 on an early call.
    pub(super) fn terminate(
        &mut self,
        now: Instant,
        call: CallId,
        reason: EndReason,
        media: &mut MediaTable,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == CallState::Early {
            let key = c.initial_server;
            c.canceled = true;
            let provisional = c.provisional_seen;
            // The caller may try elsewhere when the relay failed; anything else ending an
            // unanswered call is a termination of its request.
            let answer = match reason {
                EndReason::MediaFailure => Refusal::ServiceUnavailable,
                _ => Refusal::RequestTerminated,
            };
            if let Some(key) = key {
                self.final_on_server(now, key, answer);
            }
            if provisional {
                self.cancel_client(now, call, media);
            } else if let Some(c) = self.calls.get_mut(&call) {
                c.cancel_pending = true;
                return; // wait for a provisional to cancel, or for the 2xx to BYE
            }
        } else {
            for side in [Side::Inside, Side::Outside] {
                self.send_bye(now, call, side, media);
            }
        }
        self.finish_call(call, reason, media);
    }

    pub(super) fn release_media(&mut self, call: CallId, media: &mut MediaTable) {
        if let Some(c) = self.calls.get_mut(&call)
            && let Some(s) = c.media.take()
        {
            self.sessions.remove(&s);
            media.release(s);
        }
    }

    /// Forgets a call: media released, dialogs unindexed. Transactions finish on their own.
    pub(super) fn finish_call(&mut self, call: CallId, reason: EndReason, media: &mut MediaTable) {
        self.record_call(call, reason);
        self.release_media(call, media);
        if let Some(c) = self.calls.remove(&call) {
            self.state_ended(&c);
            self.uncount_call(c.trunk);
            for side in [Side::Inside, Side::Outside] {
                let leg = c.leg(side);
                self.dialogs
                    .remove(&leg.call_id, leg.local_tag(), call, side);
            }
            self.timers.cancel(&TimerRef::Call(call));
            self.ledger.remove_call(call);
            self.events.push_back(Event::CallEnded {
                call: call.raw(),
                reason,
            });
        }
    }

    pub(super) fn drain_media(&mut self, now: Instant, media: &mut MediaTable) {
        while let Some(ev) = media.poll_event() {
            match ev {
                MediaEvent::Timeout(s) => {
                    if let Some(call) = self.sessions.get(&s).copied() {
                        self.terminate(now, call, EndReason::MediaTimeout, media);
                    }
                }
                MediaEvent::Failed(s) => {
                    if let Some(call) = self.sessions.get(&s).copied() {
                        self.terminate(now, call, EndReason::MediaFailure, media);
                    }
                }
                // The record holds the latches: compared (and written if changed) at the
                // end of this input.
                MediaEvent::Latched(s) => {
                    if let Some(call) = self.sessions.get(&s).copied() {
                        self.touch(call);
                    }
                }
                MediaEvent::Dtmf {
                    session,
                    leg,
                    digit,
                    duration_ms,
                } => {
                    self.dtmf_detected(now, session, leg, digit, duration_ms, media);
                }
            }
        }
    }
}
