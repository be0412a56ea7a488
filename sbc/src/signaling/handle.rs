//! The signaling task's handle: the admin API's commands and their answers, and the trunks
//! the DNS resolver task looks up.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sbc_proto::{
    b2bua::CallInfo,
    sbc::{DrainConfig, SbcConfig},
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    config::Config,
    dns::{DnsTrunks, Resolved, ResolvedSink},
};

/// A trunk's registration state, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegView {
    /// The trunk's name.
    pub trunk: String,
    /// `unregistered`, `registering`, `registered`, `failed` or `backing_off`.
    pub state: &'static str,
    /// Expiry granted by the registrar, seconds.
    pub expires_s: Option<u32>,
    /// Seconds until the next REGISTER (refresh or retry).
    pub next_register_in_s: Option<u64>,
}

/// A request to the signaling task from the admin API.
#[derive(Debug)]
pub enum Command {
    /// Snapshot of every call.
    ListCalls(oneshot::Sender<Vec<CallInfo>>),
    /// End one call (BYE both legs, or CANCEL/487 before the answer); false if unknown.
    EndCall(u64, oneshot::Sender<bool>),
    /// The banned sources.
    ListBans(oneshot::Sender<BanList>),
    /// Lift the ban of one source; false if it was not banned.
    Unban(IpAddr, oneshot::Sender<bool>),
    /// Ban a source another node banned, for what is left of its ban (`[state.cluster]
    /// share_bans`); every shard applies it, a configured peer is refused.
    ClusterBan(sbc_proto::net::Side, IpAddr, std::time::Duration),
    /// Lift a ban because an operator lifted it on another node (`[state.cluster]
    /// share_bans`); every shard applies it, nothing is published again.
    ClusterUnban(IpAddr),
    /// OPTIONS health of the checked trunks: (name, state).
    Health(oneshot::Sender<Vec<(String, &'static str)>>),
    /// Registration states of the registering trunks.
    Registrations(oneshot::Sender<Vec<RegView>>),
    /// Send a REGISTER for this trunk now; false if it does not register.
    Register(String, oneshot::Sender<bool>),
    /// New addresses of a trunk proxy given by name (from the resolver task).
    DnsResolved(Resolved),
    /// Start a graceful drain; false if one is already under way.
    Drain(DrainConfig, oneshot::Sender<bool>),
    /// End the drain's wait now: BYE to every call left; false if not draining.
    EndNow(oneshot::Sender<bool>),
    /// Restore calls another node persisted (a takeover): (restored, hung up).
    Restore(Box<crate::state::Loaded>, oneshot::Sender<(usize, usize)>),
    /// Register to the trunks (this node holds the registration lease) or hold off.
    SetRegistering(bool, oneshot::Sender<()>),
    /// Whether the SBC drains, and how many calls it has.
    Status(oneshot::Sender<StatusView>),
    /// Use a new configuration for new calls (calls in progress keep theirs).
    Reconfigure {
        /// The core's part: B2BUA, ACL, guard, trunks, registrations (changed ones restart),
        /// health checks (changed ones restart).
        core: Box<SbcConfig>,
        /// Media networks and trunk port quotas (new calls).
        media: Box<crate::media::policy::MediaPolicy>,
        /// Answered once applied.
        done: oneshot::Sender<()>,
    },
}

/// The SBC's state, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusView {
    /// `running`, `draining` (new calls refused, calls in progress go on), `ending_calls`
    /// (the rest got BYE, waiting for the answers) or `drained` (stopping).
    pub state: &'static str,
    /// Whether new calls are refused because the SBC drains.
    pub draining: bool,
    /// Calls in progress.
    pub calls: usize,
    /// Seconds until the drain ends the calls left (or gives up waiting for the answers).
    pub drain_deadline_in_s: Option<u64>,
}

/// One banned source, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BanView {
    /// The side it is banned on (`inside`, `outside`).
    pub side: &'static str,
    /// The source address.
    pub address: IpAddr,
    /// Seconds since the ban started.
    pub age_s: u64,
    /// Seconds until it ends.
    pub remaining_s: u64,
    /// Messages dropped because of it.
    pub dropped: u64,
}

/// The ban list and whether banning is on at all.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BanList {
    /// `[limits] source_rate` > 0.
    pub enabled: bool,
    /// Current bans, oldest first.
    pub bans: Vec<BanView>,
}

/// Cloneable handle to the signaling task.
#[derive(Debug, Clone)]
pub struct SignalingHandle {
    tx: mpsc::Sender<Command>,
    /// The trunks the resolver task looks up, updated on every reconfiguration.
    dns: std::sync::Arc<watch::Sender<DnsTrunks>>,
    /// Set once a drain was asked for (readiness answers 503 from then on).
    draining: Arc<AtomicBool>,
}

impl SignalingHandle {
    /// A handle and the receiver to give to [`run`].
    pub fn channel() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(64);
        let dns = std::sync::Arc::new(watch::channel(DnsTrunks::default()).0);
        let draining = Arc::new(AtomicBool::new(false));
        (Self { tx, dns, draining }, rx)
    }

    /// Sets the trunks the resolver task looks up (from the configuration at start).
    pub fn set_dns_trunks(&self, trunks: DnsTrunks) {
        self.dns.send_replace(trunks);
    }

    /// The trunks to look up, for the resolver task ([`crate::dns::run`]).
    pub fn dns_trunks(&self) -> watch::Receiver<DnsTrunks> {
        self.dns.subscribe()
    }

    /// The banned sources; `None` if the signaling task is gone.
    pub async fn bans(&self) -> Option<BanList> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::ListBans(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Lifts a ban; `None` if the signaling task is gone.
    pub async fn unban(&self, ip: IpAddr) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Unban(ip, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Bans a source another node banned (`sbc/src/state/bans.rs`) on every shard; waits only
    /// for room in the command queue.
    pub async fn cluster_ban(
        &self,
        side: sbc_proto::net::Side,
        ip: IpAddr,
        left: std::time::Duration,
    ) {
        let _ = self.tx.send(Command::ClusterBan(side, ip, left)).await;
    }

    /// Lifts a ban another node's operator lifted (`sbc/src/state/bans.rs`) on every shard;
    /// waits only for room in the command queue.
    pub async fn cluster_unban(&self, ip: IpAddr) {
        let _ = self.tx.send(Command::ClusterUnban(ip)).await;
    }

    /// Trunk health states; `None` if the signaling task is gone.
    pub async fn health(&self) -> Option<Vec<(String, &'static str)>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Health(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Registration states; `None` if the signaling task is gone.
    pub async fn registrations(&self) -> Option<Vec<RegView>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Registrations(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Forces a REGISTER for `trunk`; `Some(false)` if it does not register.
    pub async fn register(&self, trunk: &str) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Register(trunk.to_owned(), tx))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Every call; `None` if the signaling task is gone.
    pub async fn calls(&self) -> Option<Vec<CallInfo>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::ListCalls(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Ends a call; `Some(false)` if there is no such call.
    pub async fn end_call(&self, id: u64) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::EndCall(id, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts a graceful drain with `cfg`; `Some(false)` if one is under way already, `None`
    /// if the signaling task is gone.
    pub async fn drain(&self, cfg: DrainConfig) -> Option<bool> {
        self.draining.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Drain(cfg, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Ends the drain's wait: BYE to every call left now; `Some(false)` if not draining.
    pub async fn end_now(&self) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::EndNow(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Restores calls another node persisted: (restored, hung up); `None` if the signaling
    /// task is gone.
    pub async fn restore(&self, loaded: crate::state::Loaded) -> Option<(usize, usize)> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Restore(Box::new(loaded), tx))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Lets the core register to the trunks or holds it off; `None` if the task is gone.
    pub async fn set_registering(&self, on: bool) -> Option<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::SetRegistering(on, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Whether a drain was asked for (cheap: no round trip to the signaling task).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The SBC's state; `None` if the signaling task is gone.
    pub async fn status(&self) -> Option<StatusView> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Applies `config` to new calls; false if the signaling task is gone.
    pub async fn reconfigure(&self, config: &Config) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = Command::Reconfigure {
            core: Box::new(crate::config::sbc_config(config)),
            media: Box::new(crate::media::policy::from_config(config)),
            done,
        };
        let applied = self.tx.send(cmd).await.is_ok() && rx.await.is_ok();
        if applied {
            // Names added, removed or changed: the resolver task follows.
            self.set_dns_trunks(DnsTrunks::from_config(config));
        }
        applied
    }
}

impl ResolvedSink for SignalingHandle {
    /// Hands new addresses of a trunk proxy to the signaling task; false if it is gone.
    async fn deliver(&self, r: Resolved) -> bool {
        self.tx.send(Command::DnsResolved(r)).await.is_ok()
    }
}
