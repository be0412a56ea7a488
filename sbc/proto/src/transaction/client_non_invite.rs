//! Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::outbox::Outbox;
use super::{Timer, TimerConfig, TimerTable, Timings, TxEvent};

/// States of the non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Request sent, nothing received.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received; absorbing its retransmissions.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction (BYE, CANCEL, OPTIONS, REGISTER, PRACK, UPDATE, ...).
#[derive(Debug)]
pub struct NonInviteClient {
    state: State,
    timers: TimerTable,
    cfg: Timings,
    reliable: bool,
    /// Retransmitted by Timer E; let go with the final response (nothing resends it then).
    request: Option<Bytes>,
    interval_e: Duration,
    transmits: VecDeque<Bytes>,
    events: Outbox<TxEvent>,
}

impl NonInviteClient {
    /// Starts the transaction; the request is queued for transmission at once.
    pub fn new(now: Instant, request: Bytes, reliable: bool, cfg: TimerConfig) -> Self {
        let cfg = Timings::from(cfg);
        let mut tx = Self {
            state: State::Trying,
            timers: TimerTable::default(),
            cfg,
            reliable,
            request: Some(request.clone()),
            interval_e: cfg.t1(),
            transmits: VecDeque::from([request]),
            events: Outbox::default(),
        };
        if !reliable {
            tx.timers.set(Timer::E, now + cfg.t1());
        }
        tx.timers.set(Timer::F, now + cfg.timeout());
        tx
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the final response was received (or the transaction ended without one): the
    /// request is no longer needed whole.
    pub fn answered(&self) -> bool {
        !matches!(self.state, State::Trying | State::Proceeding)
    }

    /// Handles a response; returns whether the TU must see it.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> bool {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                true
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.request = None;
                self.timers.stop_all();
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4()
                };
                self.timers.set(Timer::K, now + k);
                true
            }
            _ => false,
        }
    }

    /// The transport could not send: the transaction fails at once.
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
                Timer::E if matches!(self.state, State::Trying | State::Proceeding) => {
                    if let Some(r) = &self.request {
                        self.transmits.push_back(r.clone());
                    }
                    // Trying doubles up to T2; Proceeding retransmits every T2 (§17.1.2.2).
                    self.interval_e = if self.state == State::Trying {
                        self.interval_e.saturating_mul(2).min(self.cfg.t2())
                    } else {
                        self.cfg.t2()
                    };
                    self.timers.set(Timer::E, now + self.interval_e);
                }
                Timer::F => {
                    self.events.push_back(TxEvent::TimedOut(Timer::F));
                    self.terminate();
                }
                Timer::K => self.terminate(),
                _ => {}
            }
        }
    }

    /// Bytes of SIP messages this machine keeps (to retransmit or to answer
    /// retransmissions with), for the B2BUA's memory cap.
    pub fn held_bytes(&self) -> usize {
        self.request.as_ref().map_or(0, Bytes::len)
    }

    /// The next deadline to call `handle_timeout` at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The next message to send.
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
