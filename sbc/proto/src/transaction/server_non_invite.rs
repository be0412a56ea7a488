//! Non-INVITE server transaction: RFC 3261 §17.2.2 (Figure 8).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::outbox::Outbox;
use super::{Timer, TimerConfig, TimerTable, Timings, TxEvent};

/// States of the non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Request received, no response yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent; answering retransmissions with it.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct NonInviteServer {
    state: State,
    timers: TimerTable,
    cfg: Timings,
    reliable: bool,
    last_response: Option<Bytes>,
    transmits: VecDeque<Bytes>,
    events: Outbox<TxEvent>,
}

impl NonInviteServer {
    /// Creates the transaction for a received request.
    pub fn new(reliable: bool, cfg: TimerConfig) -> Self {
        let cfg = Timings::from(cfg);
        Self {
            state: State::Trying,
            timers: TimerTable::default(),
            cfg,
            reliable,
            last_response: None,
            transmits: VecDeque::new(),
            events: Outbox::default(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the final response was sent (or the transaction ended without one): the
    /// request is no longer needed whole.
    pub fn answered(&self) -> bool {
        !matches!(self.state, State::Trying | State::Proceeding)
    }

    /// The TU sends a response; false if the state does not allow it (nothing is sent).
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                let j = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.timeout()
                };
                self.timers.set(Timer::J, now + j);
            }
            _ => return false,
        }
        self.last_response = Some(response.clone());
        self.transmits.push_back(response);
        true
    }

    /// A retransmission of the request arrived: resend the last response, if any.
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(r) = &self.last_response
        {
            self.transmits.push_back(r.clone());
        }
    }

    /// The transport failed to deliver a response.
    pub fn handle_transport_error(&mut self) {
        if self.state != State::Terminated {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            if timer == Timer::J {
                self.terminate();
            }
        }
    }

    /// Bytes of SIP messages this machine keeps (to retransmit or to answer
    /// retransmissions with), for the B2BUA's memory cap.
    pub fn held_bytes(&self) -> usize {
        self.last_response.as_ref().map_or(0, Bytes::len)
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
        self.timers.stop_all();
        self.events.push_back(TxEvent::Terminated);
    }
}
