//! The trunks' outbound registrations (RFC 3261 §10) as one collection: started with the
//! core, their REGISTERs queued as transmits, their state reported once per change.

use std::{collections::VecDeque, time::Instant};

use crate::{
    b2bua::{Rng, Transmit},
    register::{RegState, Registration},
    sip::Message,
};

use super::{Event, TrunkRegistration};

/// One trunk's registration and the state last reported for it.
#[derive(Debug)]
pub(super) struct RegEntry {
    pub(super) cfg: TrunkRegistration,
    pub(super) reg: Registration,
    reported: Option<RegState>,
}

/// Every configured registration.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    pub(super) entries: Vec<RegEntry>,
    /// Another node registers (active/standby: this one does not hold the registration
    /// lease): no REGISTER goes out, bindings are forgotten without being removed.
    held: bool,
}

impl Registrations {
    /// Starts every registration at `now` (each with its own generator).
    pub(super) fn start(
        cfgs: Vec<TrunkRegistration>,
        rng: &mut Rng,
        now: Instant,
        held: bool,
    ) -> Self {
        Self {
            entries: cfgs
                .into_iter()
                .map(|c| started(c, rng, now, held))
                .collect(),
            held,
        }
    }

    /// Holds (`true`) or releases the registrations. Holding forgets every binding and its
    /// transaction without an `Expires: 0`: the binding's contact is the shared address, and
    /// the node that registers now refreshes it. Releasing sends every REGISTER at once.
    pub(super) fn set_held(&mut self, held: bool, rng: &mut Rng, now: Instant) {
        if self.held == held {
            return;
        }
        self.held = held;
        for e in &mut self.entries {
            if held {
                e.reg = Registration::new(e.cfg.cfg.clone(), rng.fork());
            } else {
                e.reg.start(now);
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| e.reg.poll_timeout())
            .min()
    }

    pub(super) fn matches(&self, resp: &Message) -> bool {
        self.entries.iter().any(|e| e.reg.matches(resp))
    }

    pub(super) fn handle_response(&mut self, now: Instant, resp: &Message) {
        for e in &mut self.entries {
            e.reg.handle_response(now, resp);
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for e in &mut self.entries {
            e.reg.handle_timeout(now);
        }
    }

    /// Sends a REGISTER for `trunk` now; false if it does not register.
    pub(super) fn register_now(&mut self, now: Instant, trunk: &str) -> bool {
        if self.held {
            return false;
        }
        let found = self.entries.iter_mut().find(|e| e.cfg.trunk == trunk);
        let ok = found.is_some();
        if let Some(e) = found {
            e.reg.start(now);
        }
        ok
    }

    /// Replaces the configuration: unchanged registrations keep their binding, changed or new
    /// ones start over, removed ones take their binding away (best effort: their REGISTERs
    /// are queued, their answers ignored). Every state is reported again.
    pub(super) fn reconfigure(
        &mut self,
        cfgs: Vec<TrunkRegistration>,
        rng: &mut Rng,
        now: Instant,
        out: &mut VecDeque<Transmit>,
    ) {
        let mut old = std::mem::take(&mut self.entries);
        for c in cfgs {
            match old.iter().position(|o| o.cfg == c) {
                Some(i) => self.entries.push(old.swap_remove(i)),
                None => self.entries.push(started(c, rng, now, self.held)),
            }
        }
        for mut gone in old {
            if gone.reg.stop(now) {
                flush_one(&mut gone, out);
            }
        }
        for e in &mut self.entries {
            e.reported = None;
        }
    }

    /// Removes every binding (RFC 3261 §10.2.2, `Expires: 0`); the number that wait for an
    /// answer.
    pub(super) fn stop(&mut self, now: Instant) -> usize {
        let mut pending = 0;
        for e in &mut self.entries {
            if e.reg.stop(now) {
                pending += 1;
            }
        }
        pending
    }

    /// Whether every binding is gone.
    pub(super) fn all_unregistered(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.reg.state() == RegState::Unregistered)
    }

    /// Moves queued REGISTERs to `out` and reports changed states to `events`.
    pub(super) fn flush(&mut self, out: &mut VecDeque<Transmit>, events: &mut VecDeque<Event>) {
        for e in &mut self.entries {
            flush_one(e, out);
            let state = e.reg.state();
            if e.reported != Some(state) {
                e.reported = Some(state);
                events.push_back(Event::Registration {
                    trunk: e.cfg.trunk.clone(),
                    state,
                });
            }
        }
    }
}

fn started(cfg: TrunkRegistration, rng: &mut Rng, now: Instant, held: bool) -> RegEntry {
    let mut reg = Registration::new(cfg.cfg.clone(), rng.fork());
    if !held {
        reg.start(now);
    }
    RegEntry {
        cfg,
        reg,
        reported: None,
    }
}

fn flush_one(e: &mut RegEntry, out: &mut VecDeque<Transmit>) {
    while let Some(data) = e.reg.poll_transmit() {
        out.push_back(Transmit {
            to: e.cfg.peer,
            data,
        });
    }
}
