//! The signaling driver: one tokio task that owns the sans-I/O core ([`Sbc`]) and moves bytes
//! and time in and out of it. Each loop turn waits for one input (a received message, the
//! core's deadline, an admin command, a media event, the 1 s housekeeping tick, shutdown),
//! reads the clock once, feeds the core, and executes what it returns: transmits go to the
//! transports, events become metrics, logs and the transport's ban and admission mirrors.
//! No policy lives here; the receive path (denylist, bans, ACL, User-Agent, answers to our own
//! OPTIONS and REGISTERs) is in `sbc_proto::sbc` and tested there with simulated time.
//!
//! Stopping: [`Command::Drain`] (SIGTERM, `POST /api/v1/drain`) hands the drain to the core
//! (`sbc_proto::sbc` `drain.rs`: new calls refused, BYE at the timeout, the answers awaited);
//! once the core says drained, the task removes the registrations and returns.
//!
//! # Shards
//! `[general] signaling_shards` such tasks run side by side, each owning its own core and so
//! its calls, dialogs, transactions and timers; nothing is locked on the per-message path (the
//! core is `!Sync` by design). The transports send each message straight to its shard's
//! channel ([`Router`], by the shard label in the identifiers the SBC minted). What must hold
//! for the whole SBC is kept so (docs/sharding.md): call counts are shared atomics
//! (`SharedCalls`), a ban one shard decides is mirrored to the others, shard 0 runs the
//! registrations and OPTIONS checks and its health verdicts are applied by the others, and
//! admin commands fan out (`coordinator.rs`): a drain is over when every shard has drained.

mod coordinator;
pub(crate) mod handle;
mod router;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use sbc_proto::{
    b2bua::{EndReason, SharedCalls},
    health::Health,
    net::Side,
    sbc::{DrainState, Event, Received, Sbc, SbcConfig},
    shard::{self, ShardId},
};
use tokio::sync::{mpsc, watch};

pub use handle::{BanList, BanView, Command, RegView, SignalingHandle, StatusView};
pub use router::{Inbox, Lanes, Router, shard_count};

use crate::{
    media::MediaManager,
    metrics::{CallMetrics, CallTracker, DrainMetrics, Incoming, Metrics},
    transport::{AdmissionPolicy, Inbound, Transport},
};

/// What the signaling task is wired to.
#[derive(Debug)]
pub struct Wiring {
    /// Media relay (the B2BUA's media control).
    pub media: MediaManager,
    /// SIP transports (sending, the ban and admission mirrors).
    pub transport: Transport,
    /// Received messages, parsed by the transports: one inbox (two lanes) per signaling
    /// shard, in shard order ([`Router::channels`]).
    pub inbound: Vec<Inbox>,
    /// Admin commands ([`SignalingHandle`]).
    pub commands: mpsc::Receiver<Command>,
    /// Transport-level metrics (`sbc_sip_dropped_total`).
    pub metrics: Metrics,
    /// Call metrics.
    pub calls: CallMetrics,
    /// Drain metrics.
    pub drain: DrainMetrics,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Where finished call attempts go (call detail records).
    pub cdr: crate::cdr::CdrSink,
    /// Where answered calls' state goes (`[state]`; `None`: not persisted).
    pub state: Option<crate::state::StateSink>,
    /// Calls persisted by the previous process, restored before the first message.
    pub restore: crate::state::Loaded,
    /// `[state.cluster]`: the counts the cluster task caps by its grants from Redis; every
    /// shard shares them, even a single one. `None`: no cluster.
    pub cluster: Option<SharedCalls>,
    /// `[state.cluster] share_bans`: where this node's new bans go to be shared (`None`: they
    /// stay here).
    pub bans: Option<crate::state::bans::BanPublisher>,
}

/// What one shard's task is wired to.
#[derive(Debug)]
struct Lane {
    shard: ShardId,
    /// Shards in all.
    count: u16,
    media: MediaManager,
    transport: Transport,
    /// This shard's received messages (follow-ups served first).
    inbound: Inbox,
    /// From the coordinator.
    commands: mpsc::Receiver<ToShard>,
    /// To the coordinator.
    reports: mpsc::UnboundedSender<Report>,
    metrics: Metrics,
    calls: CallMetrics,
    drain: DrainMetrics,
    shutdown: watch::Receiver<bool>,
    cdr: crate::cdr::CdrSink,
    state: Option<crate::state::StateSink>,
    /// Shared bans (`[state.cluster] share_bans`).
    bans: Option<crate::state::bans::BanPublisher>,
    restore: crate::state::Loaded,
    /// The counts are capped by a cluster: shared even by a single shard.
    cluster: bool,
}

impl Lane {
    /// Shard 0 reports what is the SBC's as a whole (registrations, health, ban gauge).
    fn first(&self) -> bool {
        self.shard.index() == 0
    }
}

/// From the coordinator to one shard.
#[derive(Debug)]
enum ToShard {
    Admin(Command),
    /// Another shard banned this source.
    Ban(Side, IpAddr),
    /// Shard 0's health check of this trunk changed.
    Health(String, Health),
    /// Shard 0's binding of a PBX registration (AOR user, target and expiry; `None`: gone).
    Binding(String, Option<(sbc_proto::b2bua::Target, Instant)>),
    /// Every shard has drained: stop.
    Stop,
}

/// From one shard to the coordinator.
#[derive(Debug)]
enum Report {
    Drained(ShardId),
    Banned(ShardId, Side, IpAddr),
    Health(String, Health),
    Binding(String, Option<(sbc_proto::b2bua::Target, Instant)>),
}

/// One input of a loop turn.
enum Input {
    Message(Inbound),
    Timeout,
    Command(Command),
    Ban(Side, IpAddr),
    Health(String, Health),
    Binding(String, Option<(sbc_proto::b2bua::Target, Instant)>),
}

/// Runs the shards until a drain is over on all of them ([`Command::Drain`]), `shutdown` turns
/// true (at once, no drain) or the inbound channels close; then shard 0 removes the trunks'
/// registrations.
pub async fn run(config: SbcConfig, w: Wiring) {
    let count = u16::try_from(w.inbound.len())
        .unwrap_or(shard::MAX_SHARDS)
        .max(1);
    let cluster = w.cluster.is_some();
    let shared = w.cluster.unwrap_or_default();
    let mut root = crate::entropy::rng();
    let (report_tx, reports) = mpsc::unbounded_channel();
    // Each persisted call is restored on the shard its messages will be routed to.
    let mut restores: Vec<crate::state::Loaded> = (0..count)
        .map(|_| crate::state::Loaded::default())
        .collect();
    for snap in w.restore.calls {
        let k = shard::of_state_key(snap.key.as_str(), count).index();
        if let Some(r) = restores.get_mut(k) {
            r.calls.push(snap);
        }
    }
    if let Some(first) = restores.first_mut() {
        first.unreadable = w.restore.unreadable;
    }
    let mut senders = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for ((k, inbound), restore) in (0..count).zip(w.inbound).zip(restores) {
        let id = ShardId::new(k);
        let (tx, commands) = mpsc::channel(64);
        senders.push(tx);
        // One shard mints unlabelled identifiers, as before there were shards.
        let rng = if count == 1 {
            root.fork()
        } else {
            root.for_shard(id)
        };
        let lane = Lane {
            shard: id,
            count,
            // Its own media table when the manager has one per shard (`media::tables`).
            media: w.media.for_shard(usize::from(k)),
            transport: w.transport.clone(),
            inbound,
            commands,
            reports: report_tx.clone(),
            metrics: w.metrics.clone(),
            calls: w.calls.clone(),
            drain: w.drain.clone(),
            shutdown: w.shutdown.clone(),
            cdr: w.cdr.clone(),
            state: w.state.clone(),
            bans: w.bans.clone(),
            restore,
            cluster,
        };
        let cfg = sbc_proto::sbc::shard_config::config_for(config.clone(), id, count);
        tasks.spawn(run_shard(cfg, rng, shared.clone(), lane));
    }
    drop(report_tx);
    if count > 1 {
        tracing::info!(shards = count, "signaling shards started");
    }
    coordinator::run(w.commands, reports, senders, tasks).await;
}

/// One shard: its core until the coordinator stops it, `shutdown` turns true or its inbound
/// channels close. Gives its inbox back, so messages routed to it while the others finish are
/// dropped as "busy", not refused as closed (which ends a receive task).
async fn run_shard(
    config: SbcConfig,
    rng: sbc_proto::b2bua::Rng,
    shared: SharedCalls,
    mut w: Lane,
) -> Inbox {
    let start = Instant::now();
    let mut sbc = Sbc::new(config, rng, start);
    // One shard keeps its own counts and buckets, exactly as before there were shards (unless
    // a cluster caps them).
    if w.count > 1 || w.cluster {
        sbc.share_calls(shared);
    }
    let mut tracker = CallTracker::default();
    w.calls.seed_trunks(sbc.trunk_names());
    let _ = restore(&mut sbc, &mut w, start);
    flush(&mut sbc, &w, &mut tracker, start);
    observe(&sbc, &w, &mut tracker);
    let media_events = w.media.clone();
    // Media events (timeouts) wake us through `event_ready`; expired bans leave the table on
    // the tick even when nobody asks.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drained = false;
    // Resolved once: this is observed for every message.
    let handling = [Side::Inside, Side::Outside]
        .map(|side| w.metrics.sip_handling.with_label_values(&[side.as_str()]));
    loop {
        let deadline = sbc.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Biased: stop, commands and the core's due deadline first (each fires at most once
        // per due time, so they cannot starve the lanes), then follow-ups (the calls in
        // progress), then new requests, so a flood of new requests waits (and overflows) in
        // its own lane while everything else goes on (router.rs).
        let input = tokio::select! {
            biased;
            // A dropped sender disables the branch (an `Err` would be ready on every turn).
            Ok(()) = w.shutdown.changed() => {
                if *w.shutdown.borrow() {
                    break;
                }
                continue;
            }
            Some(cmd) = w.commands.recv() => match cmd {
                ToShard::Admin(cmd) => Input::Command(cmd),
                ToShard::Ban(side, ip) => Input::Ban(side, ip),
                ToShard::Health(trunk, state) => Input::Health(trunk, state),
                ToShard::Binding(user, target) => Input::Binding(user, target),
                ToShard::Stop => break,
            },
            () = sleep => Input::Timeout,
            received = w.inbound.follow_ups.recv() => match received {
                Some(m) => Input::Message(m),
                None => break,
            },
            received = w.inbound.new.recv() => match received {
                Some(m) => Input::Message(m),
                None => break,
            },
            // After the lanes: the core's own deadline above runs the same `handle_timeout`,
            // so media events and expired bans are handled whenever it fires.
            () = media_events.event_ready() => Input::Timeout,
            _ = tick.tick() => Input::Timeout,
        };
        let now = Instant::now();
        // A message the policy dropped changed nothing in the call layer: its counters and
        // gauges need no update (a flood of drops stays one hash lookup and a counter each).
        let mut calls_touched = true;
        let mut handled = None;
        match input {
            Input::Message(m) => {
                handled = Some((m.peer.side, m.received));
                calls_touched = receive(&mut sbc, &mut w, now, m);
            }
            Input::Timeout => {
                w.media.drive(now, |t| sbc.handle_timeout(now, t));
                if let Some(state) = &w.state
                    && state.take_resync()
                {
                    // Writes were dropped: the writer gets every call's state again.
                    state.offer(crate::state::Write::Resync(
                        w.media.read(|t| sbc.call_snapshots(now, t)),
                    ));
                }
                // Every shard holds every ban (mirrored): one reports the gauge.
                if w.first() {
                    let active = sbc.active_bans();
                    w.calls
                        .bans_active
                        .set(i64::try_from(active).unwrap_or(i64::MAX));
                }
            }
            Input::Command(cmd) => command(&mut sbc, &mut w, now, cmd),
            Input::Ban(side, ip) => {
                sbc.ban(now, side, ip);
                calls_touched = false;
            }
            Input::Health(trunk, state) => sbc.apply_health(now, &trunk, state),
            Input::Binding(user, target) => {
                sbc.mirror_pbx_binding(&user, target);
                calls_touched = false;
            }
        }
        flush(&mut sbc, &w, &mut tracker, now);
        if let Some((side, received)) = handled {
            // The one clock read a turn does besides `now`: after the sends, so the figure is
            // what the SBC added to the message's way, queueing in its lane included.
            handling[side.index()].observe(received.elapsed().as_secs_f64());
        }
        if calls_touched {
            observe(&sbc, &w, &mut tracker);
        }
        if !drained && sbc.drain_state() == DrainState::Drained {
            drained = true;
            if w.count == 1 {
                tracing::info!("drain complete");
                break;
            }
            tracing::info!(shard = w.shard.index(), "drain complete on this shard");
            // The others may still have calls: stop when the coordinator says all are done.
            let _ = w.reports.send(Report::Drained(w.shard));
        }
    }
    if sbc.shedding() {
        w.metrics.sip_overload_shards.dec();
    }
    deregister(&mut sbc, &mut w, &mut tracker).await;
    tracing::info!(
        shard = w.shard.index(),
        calls = sbc.b2bua().stats().calls,
        "signaling stopped"
    );
    w.inbound
}

/// One received message through the core; counted by where it went. False when the
/// receive-path policy dropped it.
fn receive(sbc: &mut Sbc, w: &mut Lane, now: Instant, m: Inbound) -> bool {
    let (side, transport) = (m.peer.side, m.peer.transport);
    let incoming = Incoming::of(&m.message);
    // In the kernel's queue and in the shard's lane: when the SBC falls behind, the backlog
    // may build up in either.
    let waited = now.saturating_duration_since(m.arrived);
    let shedding = sbc.shedding();
    let received = w.media.drive(now, |t| {
        sbc.handle_datagram(now, m.peer, m.message, waited, t)
    });
    if sbc.shedding() != shedding {
        // The gauge moves on a change only: it is shared by the shards.
        if shedding {
            w.metrics.sip_overload_shards.dec();
            tracing::info!(
                shard = w.shard.index(),
                "overload over: new calls admitted again"
            );
        } else {
            w.metrics.sip_overload_shards.inc();
            tracing::warn!(
                shard = w.shard.index(),
                waited_ms = waited.as_millis(),
                "overload: new requests wait behind a standing queue; refusing new calls with 503"
            );
        }
    }
    match received {
        Received::Shed => true,
        Received::Call => {
            if let Some(i) = incoming {
                w.calls.received(side, i);
            }
            true
        }
        Received::Dropped(why) => {
            // Three labels (side, transport, reason): a wrong count would panic in prometheus.
            w.metrics
                .sip_dropped
                .with_label_values(&[side.as_str(), transport.as_str(), why.as_str()])
                .inc();
            false
        }
        Received::HealthAnswer | Received::RegistrationAnswer | Received::ShuttingDown => true,
    }
}

/// One admin command (or DNS answer) through the core.
fn command(sbc: &mut Sbc, w: &mut Lane, now: Instant, cmd: Command) {
    match cmd {
        Command::ListCalls(reply) => {
            let _ = reply.send(sbc.calls());
        }
        Command::EndCall(id, reply) => {
            let _ = reply.send(w.media.drive(now, |t| sbc.end_call(now, id, t)));
        }
        Command::ListBans(reply) => {
            let bans = sbc
                .bans(now)
                .into_iter()
                .map(|b| BanView {
                    side: b.side.as_str(),
                    address: b.ip,
                    age_s: now.saturating_duration_since(b.since).as_secs(),
                    remaining_s: b.until.saturating_duration_since(now).as_secs(),
                    dropped: b.dropped,
                })
                .collect();
            let enabled = sbc.bans_enabled();
            let _ = reply.send(BanList { enabled, bans });
        }
        Command::Unban(ip, reply) => {
            let _ = reply.send(sbc.unban(ip));
            // An operator's lift holds on every node (`state/bans.rs`), published once.
            if w.first()
                && let Some(b) = &w.bans
            {
                b.lift(ip);
            }
        }
        Command::ClusterUnban(ip) => {
            let removed = sbc.unban(ip);
            if removed
                && w.first()
                && let Some(b) = &w.bans
            {
                b.metrics().bans.with_label_values(&["lifted"]).inc();
            }
        }
        Command::ClusterBan(side, ip, left) => {
            let installed = sbc.ban_from_cluster(now, side, ip, left);
            // The transport (accept, open connections) and the counts are shared: once.
            if w.first() {
                if installed {
                    w.transport.ban(side, ip, left);
                }
                if let Some(b) = &w.bans {
                    let result = if installed { "installed" } else { "refused" };
                    b.metrics().bans.with_label_values(&[result]).inc();
                }
            }
        }
        Command::Health(reply) => {
            let states = sbc
                .health()
                .map(|(trunk, h)| (trunk.to_owned(), h.as_str()))
                .collect();
            let _ = reply.send(states);
        }
        Command::Registrations(reply) => {
            let views = sbc
                .registrations()
                .map(|(trunk, r)| RegView {
                    trunk: trunk.to_owned(),
                    state: r.state().as_str(),
                    expires_s: r.granted(),
                    next_register_in_s: r
                        .next_attempt()
                        .map(|at| at.saturating_duration_since(now).as_secs()),
                })
                .collect();
            let _ = reply.send(views);
        }
        Command::Register(name, reply) => {
            let _ = reply.send(sbc.register_now(now, &name));
        }
        Command::DnsResolved(r) => sbc.handle_dns(now, r.into()),
        Command::Drain(cfg, reply) => {
            let started = sbc.drain(now, cfg);
            if started && w.first() {
                w.drain.draining.set(1);
                tracing::info!(
                    calls = sbc.b2bua().stats().calls,
                    timeout_s = cfg.timeout.as_secs(),
                    "draining: new calls refused with 503, calls in progress go on"
                );
            }
            let _ = reply.send(started);
        }
        Command::EndNow(reply) => {
            let calls = sbc.b2bua().stats().calls;
            let ended = w.media.drive(now, |t| sbc.end_now(now, t));
            if ended && w.first() {
                tracing::info!(calls, "drain: ending the calls left now");
            }
            let _ = reply.send(ended);
        }
        Command::Restore(loaded, reply) => {
            w.restore = *loaded;
            let _ = reply.send(restore(sbc, w, now));
        }
        Command::SetRegistering(on, reply) => {
            sbc.set_registering(now, on);
            let _ = reply.send(());
        }
        Command::Status(reply) => {
            let state = sbc.drain_state();
            let _ = reply.send(StatusView {
                state: state.as_str(),
                draining: state.is_draining(),
                calls: sbc.b2bua().stats().calls,
                drain_deadline_in_s: state
                    .deadline()
                    .map(|at| at.saturating_duration_since(now).as_secs()),
            });
        }
        Command::Reconfigure { core, media, done } => {
            w.media.set_policy(*media);
            if w.first() {
                // The core reports every trunk's health and registration again (only shard 0
                // runs them).
                w.calls.health.reset();
                w.calls.registration_state.reset();
            }
            sbc.reconfigure(
                now,
                sbc_proto::sbc::shard_config::config_for(*core, w.shard, w.count),
            );
            w.calls.seed_trunks(sbc.trunk_names());
            let _ = done.send(());
        }
    }
}

/// Executes everything the core produced: sends, metrics, logs, the transport's mirrors.
fn flush(sbc: &mut Sbc, w: &Lane, tracker: &mut CallTracker, now: Instant) {
    while let Some(t) = sbc.poll_transmit() {
        w.calls.sent(t.to.side, &t.data);
        if let Err(e) = w.transport.send(&t.to, t.data) {
            tracing::debug!(to = %t.to, error = %e, "sending SIP failed");
        }
    }
    while let Some(ev) = sbc.poll_event() {
        match ev {
            Event::Call(sbc_proto::b2bua::Event::CallState(s)) => {
                if let Some(state) = &w.state {
                    state.offer(crate::state::Write::Put(s));
                }
            }
            Event::Call(sbc_proto::b2bua::Event::CallStateEnded { key }) => {
                if let Some(state) = &w.state {
                    state.offer(crate::state::Write::Delete(key));
                }
            }
            // The relay sends the digit (converted SIP INFO); counted by the relay.
            Event::Call(sbc_proto::b2bua::Event::GenerateDtmf {
                session,
                stream,
                payload_type,
                toward,
                digit,
                duration_ms,
            }) => {
                w.media
                    .generate_dtmf(session, stream, toward, payload_type, digit, duration_ms);
            }
            Event::Call(sbc_proto::b2bua::Event::PbxBinding { user, target }) => {
                if w.count > 1 {
                    let _ = w.reports.send(Report::Binding(user, target));
                }
            }
            Event::Call(sbc_proto::b2bua::Event::CallRecord(r)) => {
                w.cdr
                    .record(&r, r.trunk.map(|t| sbc.trunk_name(Some(t)).to_owned()));
            }
            Event::Call(ev) => {
                if matches!(
                    ev,
                    sbc_proto::b2bua::Event::CallEnded {
                        reason: EndReason::Drain,
                        ..
                    }
                ) {
                    w.drain.calls_ended.inc();
                }
                crate::trace::observe(&w.transport, sbc.b2bua(), &ev);
                w.calls
                    .on_event(tracker, sbc, ev, now, &w.metrics.sip_dropped);
            }
            Event::Banned { side, ip, duration } => {
                if w.count > 1 {
                    let _ = w.reports.send(Report::Banned(w.shard, side, ip));
                }
                if let Some(b) = &w.bans {
                    b.publish(side, ip, duration);
                }
                w.calls.banned(side, ip);
                // The transport refuses its connections from now on and closes the open ones.
                w.transport.ban(side, ip, duration);
            }
            Event::Unbanned { side, ip, evicted } => {
                if evicted {
                    w.calls.bans_evicted.inc();
                }
                w.transport.unban(side, ip);
            }
            // Live ACL and denylist changes reach accept (and close what they refuse).
            Event::AclChanged => w.transport.set_admission(AdmissionPolicy::from(sbc.acl())),
            Event::Health {
                trunk,
                state,
                changed,
            } => {
                if w.count > 1 {
                    let _ = w.reports.send(Report::Health(trunk.clone(), state));
                }
                w.calls.health(&trunk, state, changed);
            }
            Event::Registration { trunk, state } => w.calls.registration(&trunk, state),
        }
    }
}

/// Restores the calls the previous process (or, on a takeover, the peer) persisted; what
/// cannot be restored is hung up (BYE on both legs) so neither side keeps a call the SBC
/// forgot. Returns (restored, hung up).
fn restore(sbc: &mut Sbc, w: &mut Lane, now: Instant) -> (usize, usize) {
    let loaded = std::mem::take(&mut w.restore);
    let Some(state) = &w.state else {
        return (0, 0);
    };
    sbc.report_call_state(true);
    let metrics = state.metrics().clone();
    let started = Instant::now();
    let count = |outcome: &str, n: usize| {
        metrics
            .restored
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    };
    count("unreadable", loaded.unreadable.len());
    let (mut restored, mut hung_up) = (0, 0);
    for snap in &loaded.calls {
        match w.media.drive(now, |t| sbc.restore_call(now, snap, t)) {
            Ok(_) => restored += 1,
            Err(e) => {
                tracing::warn!(key = %snap.key, error = %e, "call not restorable; hanging up both legs");
                if !w.media.drive(now, |t| sbc.hang_up_call(now, snap, t)) {
                    // Not even its dialogs are usable: only the record can go.
                    state.offer(crate::state::Write::Delete(snap.key.clone()));
                }
                hung_up += 1;
            }
        }
    }
    count("restored", restored);
    count("hung_up", hung_up);
    if !loaded.calls.is_empty() || !loaded.unreadable.is_empty() {
        tracing::info!(
            restored,
            hung_up,
            unreadable = loaded.unreadable.len(),
            took_ms = started.elapsed().as_millis(),
            "persisted calls restored"
        );
    }
    // The restored calls are the writer's to keep from now on.
    state.offer(crate::state::Write::Resync(
        w.media.read(|t| sbc.call_snapshots(now, t)),
    ));
    (restored, hung_up)
}

/// The call layer's counters and live state into the metrics.
fn observe(sbc: &Sbc, w: &Lane, tracker: &mut CallTracker) {
    let b2bua = sbc.b2bua();
    w.calls.observe(tracker, &b2bua.counters(), &b2bua.stats());
}

/// On shutdown: removes every binding and waits for the registrars' answers, at most two
/// seconds, so a restart does not leave stale bindings that attract calls to an address
/// nobody answers.
async fn deregister(sbc: &mut Sbc, w: &mut Lane, tracker: &mut CallTracker) {
    let now = Instant::now();
    let pending = sbc.shutdown(now);
    flush(sbc, w, tracker, now);
    if pending == 0 {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    // Bounded by the deadline; every branch either handles one message or sleeps.
    while !sbc.deregistered() && tokio::time::Instant::now() < deadline {
        let input = tokio::select! {
            biased;
            received = w.inbound.follow_ups.recv() => match received {
                Some(m) => Input::Message(m),
                None => break,
            },
            received = w.inbound.new.recv() => match received {
                Some(m) => Input::Message(m),
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(50)) => Input::Timeout,
        };
        let now = Instant::now();
        match input {
            Input::Message(m) => {
                // Stopping: only answers to our REGISTERs are taken, no new call.
                w.media.drive(now, |t| {
                    sbc.handle_datagram(now, m.peer, m.message, Duration::ZERO, t)
                });
            }
            _ => w.media.drive(now, |t| sbc.handle_timeout(now, t)),
        }
        flush(sbc, w, tracker, now);
    }
    tracing::info!(trunks = pending, "registrations removed");
}
