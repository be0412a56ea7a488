//! INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) with the Accepted state of RFC 6026
//! §7.2, so 2xx retransmissions reach the TU (which ACKs them end-to-end) until Timer M.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::outbox::Outbox;
use super::{Timer, TimerConfig, TimerTable, Timings, TxEvent};

/// States of the INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE sent, nothing received.
    Calling,
    /// A provisional response was received.
    Proceeding,
    /// A 300-699 response was received and ACKed.
    Completed,
    /// A 2xx was received (RFC 6026); the TU ACKs it.
    Accepted,
    /// Done; the transaction can be removed.
    Terminated,
}

/// An INVITE client transaction. Feed it responses and timeouts; drain `poll_transmit` and
/// `poll_event` after every call.
#[derive(Debug)]
pub struct InviteClient {
    state: State,
    timers: TimerTable,
    cfg: Timings,
    reliable: bool,
    /// Retransmitted by Timer A; let go with the final response (nothing resends it then).
    request: Option<Bytes>,
    ack: Option<Bytes>,
    interval_a: Duration,
    transmits: VecDeque<Bytes>,
    events: Outbox<TxEvent>,
}

impl InviteClient {
    /// Starts the transaction: the INVITE is queued for transmission at once. `reliable` is
    /// true for TCP/TLS, where nothing is retransmitted and the wait timers are zero.
    pub fn new(now: Instant, request: Bytes, reliable: bool, cfg: TimerConfig) -> Self {
        let cfg = Timings::from(cfg);
        let mut tx = Self {
            state: State::Calling,
            timers: TimerTable::default(),
            cfg,
            reliable,
            request: Some(request.clone()),
            ack: None,
            interval_a: cfg.t1(),
            transmits: VecDeque::from([request]),
            events: Outbox::default(),
        };
        if !reliable {
            tx.timers.set(Timer::A, now + cfg.t1());
        }
        tx.timers.set(Timer::B, now + cfg.timeout());
        tx.timers.set(Timer::C, now + cfg.timer_c());
        tx
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the final response was received (or the transaction ended without one): the
    /// request is no longer needed whole.
    pub fn answered(&self) -> bool {
        !matches!(self.state, State::Calling | State::Proceeding)
    }

    /// Handles a response matched to this transaction. `ack` builds the hop-by-hop ACK for a
    /// 300-699 response (called at most once). Returns whether the TU must see the response.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
        ack: impl FnOnce() -> Bytes,
    ) -> bool {
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    self.state = State::Proceeding;
                    self.timers.stop(Timer::A);
                    // Timer B guards only Calling; Timer C now bounds the wait (§16.6 item 11).
                    self.timers.stop(Timer::B);
                }
                // Each provisional restarts Timer C (RFC 3261 §16.7 item 2).
                self.timers.set(Timer::C, now + self.cfg.timer_c());
                true
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.request = None;
                self.timers.stop_all();
                self.timers.set(Timer::M, now + self.cfg.timeout());
                true
            }
            (State::Calling | State::Proceeding, 300..=699) => {
                let ack = ack();
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.state = State::Completed;
                self.request = None;
                self.timers.stop_all();
                // Timer D: at least 32 s on unreliable transports, zero on reliable ones
                // (RFC 3261 §17.1.1.2).
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                self.timers.set(Timer::D, now + d);
                true
            }
            (State::Accepted, 200..=299) => true,
            (State::Completed, 300..=699) => {
                // A retransmitted final response: our ACK was lost; send it again.
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
                false
            }
            // Late provisionals, or a non-2xx after a 2xx: nothing for the TU to act on.
            _ => false,
        }
    }

    /// The TU sent a CANCEL for this INVITE: RFC 3261 §9.1 bounds the wait for the final
    /// response to 64·T1 from now, whatever state we are in.
    pub fn cancel_sent(&mut self, now: Instant) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            self.timers.stop(Timer::C);
            self.timers.set(Timer::B, now + self.cfg.timeout());
        }
    }

    /// The transport could not send: the transaction fails at once (RFC 3261 §17.1.4).
    pub fn handle_transport_error(&mut self) {
        if self.state != State::Terminated {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::A if self.state == State::Calling => {
                    if let Some(r) = &self.request {
                        self.transmits.push_back(r.clone());
                    }
                    self.interval_a = self.interval_a.saturating_mul(2);
                    self.timers.set(Timer::A, now + self.interval_a);
                }
                Timer::B => {
                    self.events.push_back(TxEvent::TimedOut(Timer::B));
                    self.terminate();
                }
                Timer::C => {
                    // The TU must CANCEL (if a provisional arrived) or give up with 408; it
                    // calls `cancel_sent`, which bounds the rest of our life.
                    self.events.push_back(TxEvent::TimedOut(Timer::C));
                    self.timers.set(Timer::B, now + self.cfg.timeout());
                }
                Timer::D | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    /// Bytes of SIP messages this machine keeps (to retransmit or to answer
    /// retransmissions with), for the B2BUA's memory cap.
    pub fn held_bytes(&self) -> usize {
        self.request.as_ref().map_or(0, Bytes::len) + self.ack.as_ref().map_or(0, Bytes::len)
    }

    /// The next deadline to call `handle_timeout` at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The next message to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.request = None;
        self.timers.stop_all();
        self.events.push_back(TxEvent::Terminated);
    }
}
