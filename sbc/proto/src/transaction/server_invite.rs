//! INVITE server transaction: RFC 3261 §17.2.1 (Figure 7) with the Accepted state of RFC 6026
//! §7.1: after a 2xx the transaction absorbs INVITE retransmissions until Timer L, and the TU
//! (the B2BUA) retransmits the 2xx itself until the ACK arrives (§13.3.1.4).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::outbox::Outbox;
use super::{Timer, TimerConfig, TimerTable, Timings, TxEvent};

/// States of the INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE received; provisional responses may be sent.
    Proceeding,
    /// A 300-699 was sent; waiting for the ACK.
    Completed,
    /// The ACK for the 300-699 arrived; absorbing ACK retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// What to do with a retransmitted request or an ACK that matched this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    /// Handled inside the transaction (maybe by resending the last response).
    Yes,
    /// Must go to the TU (an ACK to a 2xx is the TU's business; RFC 6026 §7.1).
    PassToTu,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct InviteServer {
    state: State,
    timers: TimerTable,
    cfg: Timings,
    reliable: bool,
    last_response: Option<Bytes>,
    interval_g: Duration,
    transmits: VecDeque<Bytes>,
    events: Outbox<TxEvent>,
}

impl InviteServer {
    /// Creates the transaction for a received INVITE and sends `trying` (a 100 Trying) at once:
    /// RFC 3261 §17.2.1 requires it within 200 ms unless the TU answers sooner, and a B2BUA
    /// waits on the other leg, so it never can promise that.
    pub fn new(trying: Bytes, reliable: bool, cfg: TimerConfig) -> Self {
        let cfg = Timings::from(cfg);
        Self {
            state: State::Proceeding,
            timers: TimerTable::default(),
            cfg,
            reliable,
            last_response: Some(trying.clone()),
            interval_g: cfg.t1(),
            transmits: VecDeque::from([trying]),
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
        !matches!(self.state, State::Proceeding)
    }

    /// The TU sends a response with `status`; returns false if the state does not allow it
    /// (e.g. a second final response), in which case nothing is sent.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        match (self.state, status) {
            (State::Proceeding, 100..=199) => {
                self.last_response = Some(response.clone());
                self.transmits.push_back(response);
                true
            }
            (State::Proceeding, 200..=299) => {
                self.transmits.push_back(response);
                self.last_response = None;
                self.state = State::Accepted;
                self.timers.set(Timer::L, now + self.cfg.timeout());
                true
            }
            // 2xx retransmissions by the TU (§13.3.1.4) go out through the transaction.
            (State::Accepted, 200..=299) => {
                self.transmits.push_back(response);
                true
            }
            (State::Proceeding, 300..=699) => {
                self.last_response = Some(response.clone());
                self.transmits.push_back(response);
                self.state = State::Completed;
                if !self.reliable {
                    self.interval_g = self.cfg.t1();
                    self.timers.set(Timer::G, now + self.cfg.t1());
                }
                self.timers.set(Timer::H, now + self.cfg.timeout());
                true
            }
            _ => false,
        }
    }

    /// A retransmission of the INVITE arrived.
    pub fn handle_retransmission(&mut self) -> Absorbed {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(r) = &self.last_response
        {
            self.transmits.push_back(r.clone());
        }
        Absorbed::Yes
    }

    /// An ACK matched this transaction (same branch: the ACK to a non-2xx final response).
    pub fn handle_ack(&mut self, now: Instant) -> Absorbed {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4()
                };
                self.timers.set(Timer::I, now + i);
                Absorbed::Yes
            }
            State::Accepted => Absorbed::PassToTu,
            _ => Absorbed::Yes,
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
            match timer {
                Timer::G if self.state == State::Completed => {
                    if let Some(r) = &self.last_response {
                        self.transmits.push_back(r.clone());
                    }
                    self.interval_g = self.interval_g.saturating_mul(2).min(self.cfg.t2());
                    self.timers.set(Timer::G, now + self.interval_g);
                }
                Timer::H => {
                    // No ACK ever came for our final response (§17.2.1).
                    self.events.push_back(TxEvent::TimedOut(Timer::H));
                    self.terminate();
                }
                Timer::I | Timer::L => self.terminate(),
                _ => {}
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
