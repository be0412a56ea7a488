//! The SBC as one sans-I/O state machine: the B2BUA, the trunks' registrations and health
//! checks, the source guard, the ACL and the trunk addresses behind one `handle_*` / `poll_*`
//! surface. The runtime's signaling driver only moves bytes and time in and out.
//!
//! # Inputs
//! - [`Sbc::handle_datagram`]: one SIP message the transport received and parsed. It runs the
//!   receive-path policy in this order: the operator's denylist, the per-source rate limit and
//!   bans, the ACL of the side it arrived on, the User-Agent denylist (requests); answers to
//!   our own OPTIONS pings go to the health checks and answers to our own REGISTERs to the
//!   registrations; while a standing queue of new requests waits, new calls are refused with
//!   a stateless 503 (overload control, [`crate::overload`]); everything else to the B2BUA.
//!   The return value says which ([`Received`]).
//! - [`Sbc::handle_timeout`]: time passed (at least at [`Sbc::poll_timeout`]).
//! - [`Sbc::handle_dns`]: a trunk proxy name resolved.
//! - Admin commands: [`Sbc::reconfigure`], [`Sbc::end_call`], [`Sbc::unban`],
//!   [`Sbc::register_now`], [`Sbc::drain`], [`Sbc::end_now`], [`Sbc::shutdown`]; and getters
//!   for the admin API.
//!
//! # Stopping
//! [`Sbc::drain`] refuses new calls, lets the calls in progress end, BYEs the rest at the
//! timeout and waits for the answers (`drain.rs`); once [`Sbc::drain_state`] is
//! [`DrainState::Drained`], [`Sbc::shutdown`] removes the registrations.
//!
//! # Outputs
//! [`Sbc::poll_transmit`] (messages to send), [`Sbc::poll_event`] (for metrics, logs and the
//! transport's ban and admission mirrors), [`Sbc::poll_timeout`] (the next deadline).
//!
//! # Drive loop
//! Read the clock once per turn, feed one input with that `now`, then drain `poll_transmit`
//! and `poll_event` until both are empty, and sleep until `poll_timeout` or the next input.
//! Time never goes backwards. Nothing here reads a clock, opens a socket or spawns a task.

mod acl;
mod config;
mod drain;
mod event;
mod health_checks;
mod registrations;
pub mod shard_config;
mod trunks;

#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

pub use acl::{Acl, AclConfig};
pub use config::{SbcConfig, TrunkHealth, TrunkProxy, TrunkRegistration, UNRESOLVED};
pub use drain::{DrainConfig, DrainState};
pub use event::{Event, PolicyDrop, Received};
pub use trunks::DnsAnswer;

use crate::{
    b2bua::{B2bua, CallInfo, Rng, Transmit},
    health::Health,
    media::MediaTable,
    net::Peer,
    overload::Overload,
    protect::{BanInfo, GuardConfig, Screening, SourceGuard},
    register::Registration,
    sip::{Message, Method},
};
use health_checks::HealthChecks;
use registrations::Registrations;
use trunks::Trunks;

/// The sans-I/O SBC core. See the [module documentation](self) for the drive loop.
#[derive(Debug)]
pub struct Sbc {
    b2bua: B2bua,
    acl: Acl,
    guard: SourceGuard,
    guard_cfg: GuardConfig,
    trunks: Trunks,
    regs: Registrations,
    checks: HealthChecks,
    /// Generators for new registrations and checks are forked from it.
    rng: Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Bans in force at the last [`Sbc::handle_timeout`].
    active_bans: usize,
    /// After [`Sbc::shutdown`]: only answers to the final REGISTERs are handled.
    stopping: bool,
    /// Graceful drain ([`Sbc::drain`]).
    drain: drain::Drain,
    /// Overload control: refuses new calls while a standing queue waits (`overload.rs`).
    overload: Overload,
    /// Trunk health as the shard running the checks reported it ([`Sbc::apply_health`]).
    remote_health: Vec<(String, Health)>,
}

impl Sbc {
    /// A core with `cfg`, starting its registrations and health checks at `now`. Trunk proxies
    /// given by name stay unusable until [`Sbc::handle_dns`] brings their addresses.
    pub fn new(cfg: SbcConfig, mut rng: Rng, now: Instant) -> Self {
        let b2bua = B2bua::new(cfg.b2bua, rng.fork());
        let regs = Registrations::start(cfg.registrations, &mut rng, now, cfg.registrations_held);
        let checks = HealthChecks::start(cfg.health, &mut rng, now);
        let mut sbc = Self {
            b2bua,
            acl: Acl::new(cfg.acl),
            guard: SourceGuard::new(cfg.guard),
            guard_cfg: cfg.guard,
            trunks: Trunks::new(cfg.trunks),
            regs,
            checks,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            active_bans: 0,
            stopping: false,
            drain: drain::Drain::default(),
            overload: Overload::new(cfg.overload),
            remote_health: Vec::new(),
        };
        sbc.apply_trunks(now);
        sbc.flush();
        sbc
    }

    // ---- getters ----

    /// The call layer (read-only: statistics, counters, configuration).
    pub fn b2bua(&self) -> &B2bua {
        &self.b2bua
    }

    /// The source ACL in force (with the resolved trunk addresses).
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// Every call.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.b2bua.calls()
    }

    /// The name of trunk `index` (as the B2BUA reports it; "none" for no trunk).
    pub fn trunk_name(&self, index: Option<usize>) -> &str {
        self.trunks.name(index)
    }

    /// Every trunk's name, in order of preference.
    pub fn trunk_names(&self) -> impl Iterator<Item = &str> {
        self.trunks.names()
    }

    /// The addresses trunk `index` stands for now (its IP literal, or what its name resolved
    /// to; canonical).
    pub fn trunk_ips(&self, index: usize) -> &[IpAddr] {
        self.trunks.ips(index)
    }

    /// Whether banning is on at all (`[limits] source_rate` > 0).
    pub fn bans_enabled(&self) -> bool {
        self.guard_cfg.rate > 0
    }

    /// Current bans, oldest first (expired ones are removed first).
    pub fn bans(&mut self, now: Instant) -> Vec<BanInfo> {
        self.guard.bans(now)
    }

    /// Bans in force at the last [`Sbc::handle_timeout`].
    pub fn active_bans(&self) -> usize {
        self.active_bans
    }

    /// Whether new calls are being refused for overload (`overload.rs`).
    pub fn shedding(&self) -> bool {
        self.overload.shedding()
    }

    /// The OPTIONS health of every checked trunk.
    pub fn health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.checks
            .entries
            .iter()
            .map(|e| (e.cfg.trunk.as_str(), e.check.state()))
    }

    /// The registration of every registering trunk.
    pub fn registrations(&self) -> impl Iterator<Item = (&str, &Registration)> {
        self.regs
            .entries
            .iter()
            .map(|e| (e.cfg.trunk.as_str(), &e.reg))
    }

    // ---- inputs ----

    /// Handles one received SIP message from `peer` (parsed by the transport): the receive-path
    /// policy, then the health checks, the registrations or the B2BUA.
    /// `waited` is how long it waited between its arrival and now (in the shard's lane):
    /// the overload rule's signal (`overload.rs`).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        waited: Duration,
        media: &mut MediaTable,
    ) -> Received {
        let received = self.receive(now, peer, msg, waited, media);
        self.advance_drain(now);
        self.flush();
        received
    }

    fn receive(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        waited: Duration,
        media: &mut MediaTable,
    ) -> Received {
        if self.stopping {
            if !msg.is_request() && msg.cseq().method == Method::Register {
                self.regs.handle_response(now, &msg);
            }
            return Received::ShuttingDown;
        }
        if let Err(drop) = self.admit(now, &peer, &msg) {
            return Received::Dropped(drop);
        }
        if !msg.is_request() {
            let method = &msg.cseq().method;
            // Answers to our OPTIONS pings belong to the health check.
            if *method == Method::Options && self.checks.matches(&msg) {
                self.checks.handle_response(now, &msg);
                return Received::HealthAnswer;
            }
            // Answers to our REGISTERs belong to the registration, not to a call (those to the
            // PBX's relayed REGISTERs go to the B2BUA).
            if *method == Method::Register && self.regs.matches(&msg) {
                self.regs.handle_response(now, &msg);
                return Received::RegistrationAnswer;
            }
        } else if msg.to_tag().is_none()
            && self.overload.observe(now, waited)
            && self.b2bua.shed_new_call(peer, &msg)
        {
            // Requests without To tag are those of the lane for new work: their wait is
            // the queue's. Only a new call is refused; the rest is cheap or ends something.
            return Received::Shed;
        }
        self.b2bua.handle_message(now, peer, msg, media);
        Received::Call
    }

    /// The source checks, cheapest and most decisive first.
    fn admit(&mut self, now: Instant, peer: &Peer, msg: &Message) -> Result<(), PolicyDrop> {
        let source = peer.addr.ip();
        // The operator's denylist before anything else, peers included.
        if self.acl.denies(source) {
            return Err(PolicyDrop::Denied);
        }
        // Bans next: a banned flood costs one hash lookup per packet. Unknown sources count
        // too (they are dropped below anyway, but a scan shows in the ban list). Keyed by
        // side: a ban on the outside never silences the same address inside.
        let side = peer.side;
        let known = self.acl.is_configured_peer(side, source);
        // A peer's answers and in-dialog requests belong to calls already admitted: its
        // budget sheds its new requests only (protect.rs).
        let verdict = if crate::shard::lane(msg) == crate::shard::Lane::FollowUp {
            self.guard.check_follow_up(now, side, source, known)
        } else {
            self.guard.check(now, side, source, known)
        };
        match verdict {
            Screening::Pass => {}
            Screening::OverBudget => return Err(PolicyDrop::PeerOverBudget),
            Screening::Banned => return Err(PolicyDrop::Banned),
            Screening::NewBan => {
                self.events.push_back(Event::Banned {
                    side,
                    ip: source,
                    duration: self.guard_cfg.ban,
                });
                for (side, ip) in self.guard.drain_evicted() {
                    self.events.push_back(Event::Unbanned {
                        side,
                        ip,
                        evicted: true,
                    });
                }
                return Err(PolicyDrop::Banned);
            }
        }
        if !self.acl.allows(peer) {
            return Err(PolicyDrop::Acl);
        }
        let ua_denied = || {
            msg.headers()
                .user_agent()
                .ok()
                .flatten()
                .is_some_and(|ua| self.acl.denies_user_agent(ua))
        };
        if msg.is_request() && ua_denied() {
            return Err(PolicyDrop::UserAgent);
        }
        Ok(())
    }

    /// Fires everything due at `now`: transaction and call timers, media events,
    /// registration refreshes, health pings; expired bans leave the table.
    pub fn handle_timeout(&mut self, now: Instant, media: &mut MediaTable) {
        if !self.stopping {
            self.b2bua.handle_timeout(now, media);
            self.checks.handle_timeout(now);
            if let DrainState::Waiting { deadline } = self.drain.state
                && deadline <= now
            {
                self.end_remaining(now, media);
            }
            self.advance_drain(now);
        }
        self.regs.handle_timeout(now);
        // The cost is the expired bans only, no copy of the table.
        self.active_bans = self.guard.active_bans(now);
        self.flush();
    }

    /// New addresses for a trunk proxy given by name (from the runtime's resolver).
    pub fn handle_dns(&mut self, now: Instant, answer: DnsAnswer) {
        if self.trunks.insert(answer) {
            self.apply_trunks(now);
            self.flush();
        }
    }

    // ---- admin commands ----

    /// Uses `cfg` for new calls (calls in progress keep theirs). Unchanged registrations and
    /// health checks keep their state; every trunk's health and registration is reported
    /// again (the driver may reset its gauges before).
    pub fn reconfigure(&mut self, now: Instant, mut cfg: SbcConfig) {
        self.trunks
            .replace(cfg.trunks, &mut cfg.registrations, &mut cfg.health);
        // Every trunk is usable again unless its (kept) check says it is down.
        self.checks.reconfigure(cfg.health, &mut self.rng, now);
        for i in 0..cfg.b2bua.trunks.len() {
            self.b2bua.set_trunk_usable(i, true);
        }
        self.regs
            .reconfigure(cfg.registrations, &mut self.rng, now, &mut self.transmits);
        self.guard.set_config(cfg.guard);
        self.guard_cfg = cfg.guard;
        self.overload.set_config(cfg.overload);
        self.b2bua.set_config(cfg.b2bua);
        self.checks.apply(&mut self.b2bua, &mut self.events, true);
        self.acl = Acl::new(cfg.acl);
        self.apply_trunks(now);
        self.flush();
    }

    /// Ends a call (BYE both legs, or CANCEL/487 before the answer); false if unknown.
    pub fn end_call(&mut self, now: Instant, call: u64, media: &mut MediaTable) -> bool {
        let ended = self.b2bua.end_call(now, call, media);
        self.flush();
        ended
    }

    /// Restores an answered call a previous process persisted (`b2bua/restore.rs`).
    pub fn restore_call(
        &mut self,
        now: Instant,
        snap: &crate::b2bua::CallSnapshot,
        media: &mut MediaTable,
    ) -> Result<u64, crate::b2bua::RestoreError> {
        self.b2bua.restore(now, snap, media)
    }

    /// Hangs up (BYE on both legs) a persisted call that could not be restored.
    pub fn hang_up_call(
        &mut self,
        now: Instant,
        snap: &crate::b2bua::CallSnapshot,
        media: &mut MediaTable,
    ) -> bool {
        self.b2bua.hang_up(now, snap, media)
    }

    /// Turns call-state reporting on (a store is configured) or off; see
    /// [`B2bua::report_call_state`](crate::b2bua::B2bua::report_call_state).
    pub fn report_call_state(&mut self, on: bool) {
        self.b2bua.report_call_state(on);
    }

    /// The restorable state of every answered call (a full rewrite of the store).
    pub fn call_snapshots(
        &self,
        now: Instant,
        media: &MediaTable,
    ) -> Vec<crate::b2bua::CallSnapshot> {
        self.b2bua.snapshots(now, media)
    }

    /// Counts calls together with the other signaling shards' cores given the same `shared`
    /// (a trunk's and the SBC's `max_calls` hold for all of them).
    pub fn share_calls(&mut self, shared: crate::b2bua::SharedCalls) {
        self.b2bua.share_calls(shared);
    }

    /// Bans `ip` on `side` because another signaling shard did (see
    /// [`SourceGuard::ban`](crate::protect::SourceGuard::ban)); no event.
    pub fn ban(&mut self, now: Instant, side: crate::net::Side, ip: IpAddr) {
        self.guard.ban(now, side, ip);
    }

    /// Bans `ip` on `side` for `left` because another node banned it (`[state.cluster]
    /// share_bans`); no event. Refused (false) for a configured peer of that side, whatever
    /// the other node decided (a forged or misconfigured entry must not cut a trunk or the PBX
    /// off), and when this node has bans off.
    pub fn ban_from_cluster(
        &mut self,
        now: Instant,
        side: crate::net::Side,
        ip: IpAddr,
        left: std::time::Duration,
    ) -> bool {
        if !self.bans_enabled() || self.acl.is_configured_peer(side, ip) {
            return false;
        }
        self.guard.ban_for(now, side, ip, left);
        true
    }

    /// A PBX registration binding shard 0 holds (its `b2bua::Event::PbxBinding`), mirrored
    /// here so calls for the AOR reach the PBX's registered address on this shard too.
    pub fn mirror_pbx_binding(
        &mut self,
        user: &str,
        target: Option<(crate::b2bua::Target, Instant)>,
    ) {
        self.b2bua.mirror_pbx_binding(user, target);
    }

    /// The OPTIONS health of `trunk` as the shard that runs the checks saw it (a core
    /// configured without health checks of its own): new calls skip the trunk while it is
    /// down, here too.
    pub fn apply_health(&mut self, now: Instant, trunk: &str, state: Health) {
        match self.remote_health.iter_mut().find(|(t, _)| t == trunk) {
            Some(entry) => entry.1 = state,
            None => self.remote_health.push((trunk.to_owned(), state)),
        }
        // Up again: usable (trunks given by name are re-checked for addresses below).
        if let Some(i) = self.trunks.names().position(|n| n == trunk) {
            self.b2bua.set_trunk_usable(i, state.usable());
        }
        self.apply_trunks(now);
        self.flush();
    }

    /// Lifts the bans of `ip` on both sides; false if it was not banned.
    pub fn unban(&mut self, ip: IpAddr) -> bool {
        let sides = self.guard.unban(ip);
        for &side in &sides {
            self.events.push_back(Event::Unbanned {
                side,
                ip,
                evicted: false,
            });
        }
        !sides.is_empty()
    }

    /// Lets this node register (`true`: every REGISTER goes out now) or holds its
    /// registrations (`false`: bindings forgotten without `Expires: 0`, no refresh) — an
    /// active/standby node registers only while it holds the registration lease.
    pub fn set_registering(&mut self, now: Instant, on: bool) {
        self.regs.set_held(!on, &mut self.rng, now);
        self.flush();
    }

    /// Sends a REGISTER for `trunk` now; false if it does not register (or is held).
    pub fn register_now(&mut self, now: Instant, trunk: &str) -> bool {
        let ok = self.regs.register_now(now, trunk);
        self.flush();
        ok
    }

    /// Starts a graceful drain (see `drain.rs`): new calls and OPTIONS are refused with 503
    /// and `cfg.retry_after_s`, the calls in progress may go on for `cfg.timeout`. False if a
    /// drain is already under way (its timeout stays).
    pub fn drain(&mut self, now: Instant, cfg: DrainConfig) -> bool {
        if self.drain.state.is_draining() {
            return false;
        }
        self.b2bua.set_draining(Some(cfg.retry_after_s));
        self.drain.bye_wait = cfg.bye_wait;
        self.drain.state = DrainState::Waiting {
            deadline: now + cfg.timeout,
        };
        self.advance_drain(now);
        self.flush();
        true
    }

    /// Ends the drain's wait now (a second SIGTERM): every call left gets its BYE at once.
    /// False if no drain is waiting for calls.
    pub fn end_now(&mut self, now: Instant, media: &mut MediaTable) -> bool {
        if !matches!(self.drain.state, DrainState::Waiting { .. }) {
            return false;
        }
        self.end_remaining(now, media);
        self.advance_drain(now);
        self.flush();
        true
    }

    /// Where the drain is.
    pub fn drain_state(&self) -> DrainState {
        self.drain.state
    }

    /// Ends every call left with BYE and starts the wait for the answers.
    fn end_remaining(&mut self, now: Instant, media: &mut MediaTable) {
        self.b2bua.end_all(now, media);
        self.drain.state = DrainState::Ending {
            deadline: now + self.drain.bye_wait,
        };
    }

    /// Moves the drain on: to [`DrainState::Drained`] once no call and no request of ours is
    /// left, or when the BYE wait is over.
    ///
    /// Runs after every input, so it asks whether the SBC is idle only while a drain is on:
    /// counting the requests in flight walks every client transaction (tens of thousands
    /// at a few hundred calls/s, as completed ones linger for Timer D/K), which per datagram
    /// cost the signaling thread an eighth of its CPU and grew with the call rate.
    fn advance_drain(&mut self, now: Instant) {
        let timed_out = match self.drain.state {
            DrainState::Running | DrainState::Drained => return,
            DrainState::Waiting { .. } => false,
            DrainState::Ending { deadline } => deadline <= now,
        };
        if timed_out || self.idle() {
            self.drain.state = DrainState::Drained;
        }
    }

    /// No call and no request of ours without its final answer.
    fn idle(&self) -> bool {
        self.b2bua.stats().calls == 0 && self.b2bua.requests_in_flight() == 0
    }

    /// Starts the shutdown: removes every binding (RFC 3261 §10.2.2, `Expires: 0`) and from
    /// now on handles only the registrars' answers. Returns how many bindings wait for one.
    pub fn shutdown(&mut self, now: Instant) -> usize {
        self.stopping = true;
        let pending = self.regs.stop(now);
        self.flush();
        pending
    }

    /// Whether every binding is gone (after [`Sbc::shutdown`]).
    pub fn deregistered(&self) -> bool {
        self.regs.all_unregistered()
    }

    // ---- outputs ----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.b2bua.poll_transmit())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events
            .pop_front()
            .or_else(|| self.b2bua.poll_event().map(Event::Call))
    }

    /// When [`Sbc::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let regs = self.regs.poll_timeout();
        if self.stopping {
            return regs;
        }
        [
            self.b2bua.poll_timeout(),
            regs,
            self.checks.poll_timeout(),
            self.drain.state.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn apply_trunks(&mut self, now: Instant) {
        self.trunks.apply(
            now,
            &mut self.rng,
            &mut self.acl,
            &mut self.regs,
            &mut self.checks,
            &mut self.b2bua,
        );
        // Unresolved trunks stay unusable; a remote verdict can only take a trunk down.
        for (trunk, state) in &self.remote_health {
            if !state.usable()
                && let Some(i) = self.trunks.names().position(|n| n == trunk)
            {
                self.b2bua.set_trunk_usable(i, false);
            }
        }
        self.events.push_back(Event::AclChanged);
    }

    /// Moves what the registrations and checks queued to the outputs, and applies health
    /// changes.
    fn flush(&mut self) {
        self.regs.flush(&mut self.transmits, &mut self.events);
        self.checks.flush(&mut self.transmits);
        self.checks.apply(&mut self.b2bua, &mut self.events, false);
    }
}
