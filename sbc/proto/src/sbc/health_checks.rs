//! The trunks' OPTIONS health checks as one collection: their pings queued as transmits,
//! their verdicts applied to the B2BUA (a trunk that is down is skipped by new calls).

use std::{collections::VecDeque, time::Instant};

use crate::{
    b2bua::{B2bua, Rng, Transmit},
    health::HealthCheck,
    sip::Message,
};

use super::{Event, TrunkHealth};

/// One trunk's check.
#[derive(Debug)]
pub(super) struct CheckEntry {
    pub(super) cfg: TrunkHealth,
    pub(super) check: HealthCheck,
}

/// Every configured health check.
#[derive(Debug, Default)]
pub(super) struct HealthChecks {
    pub(super) entries: Vec<CheckEntry>,
}

impl HealthChecks {
    pub(super) fn start(cfgs: Vec<TrunkHealth>, rng: &mut Rng, now: Instant) -> Self {
        Self {
            entries: cfgs.into_iter().map(|c| started(c, rng, now)).collect(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| e.check.poll_timeout())
            .min()
    }

    pub(super) fn matches(&self, resp: &Message) -> bool {
        self.entries.iter().any(|e| e.check.matches(resp))
    }

    pub(super) fn handle_response(&mut self, now: Instant, resp: &Message) {
        for e in &mut self.entries {
            e.check.handle_response(now, resp);
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for e in &mut self.entries {
            e.check.handle_timeout(now);
        }
    }

    /// Replaces the configuration: unchanged checks keep their state, new ones start.
    pub(super) fn reconfigure(&mut self, cfgs: Vec<TrunkHealth>, rng: &mut Rng, now: Instant) {
        let mut old = std::mem::take(&mut self.entries);
        for c in cfgs {
            match old.iter().position(|o| o.cfg == c) {
                Some(i) => self.entries.push(old.swap_remove(i)),
                None => self.entries.push(started(c, rng, now)),
            }
        }
    }

    /// Moves queued pings to `out`.
    pub(super) fn flush(&mut self, out: &mut VecDeque<Transmit>) {
        for e in &mut self.entries {
            while let Some(data) = e.check.poll_transmit() {
                out.push_back(Transmit {
                    to: e.cfg.peer,
                    data,
                });
            }
        }
    }

    /// Applies health changes to the B2BUA (trunks that are down are skipped) and reports
    /// them; `force`: every check, changed or not (after a reconfiguration).
    pub(super) fn apply(&mut self, b2bua: &mut B2bua, events: &mut VecDeque<Event>, force: bool) {
        for e in &mut self.entries {
            let changed = e.check.poll_change().is_some();
            if !changed && !force {
                continue;
            }
            let state = e.check.state();
            b2bua.set_trunk_usable(e.cfg.index, state.usable());
            events.push_back(Event::Health {
                trunk: e.cfg.trunk.clone(),
                state,
                changed,
            });
        }
    }
}

pub(super) fn started(cfg: TrunkHealth, rng: &mut Rng, now: Instant) -> CheckEntry {
    let check = HealthCheck::new(cfg.cfg.clone(), rng.fork(), now);
    CheckEntry { cfg, check }
}
