//! The signaling driver: one tokio task that owns the sans-I/O B2BUA, feeds it received
//! messages (after the source ACL) and the time, and sends what it produces through the
//! transports. Calls, transactions and dialogs live in the B2BUA; this file is only I/O glue.
//!
//! One task owns all calls today (no lock on the per-message path; the B2BUA is `!Sync` by
//! design). Sharding by Call-ID across several such tasks is the planned scale-out path.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use sbc_proto::{
    b2bua::{B2bua, B2buaConfig, CallInfo, Event, LocalAddr, Rng, Target},
    net::{Peer, Side, TransportKind},
    transaction::TimerConfig,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    config::Config,
    media::MediaManager,
    metrics::Metrics,
    transport::{Inbound, Transport},
};

/// Call metrics (bounded labels: direction, reason).
#[derive(Debug, Clone)]
pub struct CallMetrics {
    /// Calls started, by direction (`outbound`: PBX → carrier; `inbound`: carrier → PBX).
    pub started: IntCounterVec,
    /// Calls ended, by direction and reason.
    pub ended: IntCounterVec,
    /// Calls in progress, by direction.
    pub active: IntGaugeVec,
    /// Calls answered, by direction.
    pub answered: IntCounterVec,
}

impl CallMetrics {
    /// Creates and registers the call metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let started = IntCounterVec::new(
            Opts::new("sbc_calls_started_total", "Calls started, by direction."),
            &["direction"],
        )?;
        let ended = IntCounterVec::new(
            Opts::new(
                "sbc_calls_ended_total",
                "Calls ended, by direction and reason.",
            ),
            &["direction", "reason"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "sbc_calls_active",
                "Calls in progress (ringing or answered).",
            ),
            &["direction"],
        )?;
        let answered = IntCounterVec::new(
            Opts::new(
                "sbc_calls_answered_total",
                "Calls answered (2xx), by direction.",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(ended.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(answered.clone()))?;
        Ok(Self {
            started,
            ended,
            active,
            answered,
        })
    }
}

const fn direction(from: Side) -> &'static str {
    match from {
        Side::Inside => "outbound",
        Side::Outside => "inbound",
    }
}

/// The B2BUA configuration derived from the SBC configuration.
pub fn b2bua_config(c: &Config) -> B2buaConfig {
    let local = |s: &crate::config::Side| {
        // Prefer UDP for what we write into Via/Contact; the advertised address wins (1:1 NAT).
        let (addr, transport) = s
            .udp
            .first()
            .map(|a| (*a, TransportKind::Udp))
            .or_else(|| s.tcp.first().map(|a| (*a, TransportKind::Tcp)))
            .or_else(|| s.tls.first().map(|a| (*a, TransportKind::Tls)))
            .unwrap_or((SocketAddr::from(([127, 0, 0, 1], 5060)), TransportKind::Udp));
        let ip = s.advertised_address.unwrap_or(addr.ip());
        LocalAddr {
            addr: SocketAddr::new(ip, addr.port()),
            transport,
        }
    };
    let trunk = c.trunks.first().map_or(
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], 5090)),
            transport: TransportKind::Udp,
        },
        |t| Target {
            addr: t.proxy,
            transport: t.transport.kind(),
        },
    );
    B2buaConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(c.sip.t1_ms),
            t2: Duration::from_millis(c.sip.t2_ms),
            t4: Duration::from_millis(c.sip.t4_ms),
            timer_c: Duration::from_secs(c.sip.timer_c_s),
        },
        inside: local(&c.inside),
        outside: local(&c.outside),
        pbx: Target {
            addr: c.pbx.address,
            transport: c.pbx.transport.kind(),
        },
        trunk,
        user_agent: c.general.user_agent.clone(),
        pass_headers: B2buaConfig::default_pass_headers(),
        max_call_duration: None,
    }
}

/// Who may send SIP to the SBC: the PBX networks inside, the trunk proxies outside.
#[derive(Debug, Clone)]
pub struct Acl {
    inside: Vec<IpNet>,
    outside: Vec<IpAddr>,
}

impl Acl {
    /// From the configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            inside: c.pbx.allow.clone(),
            outside: c.trunks.iter().map(|t| t.proxy.ip()).collect(),
        }
    }

    /// Whether `peer` may talk to the SBC. Unknown sources get no answer at all, so scanners
    /// learn nothing.
    pub fn allows(&self, peer: &Peer) -> bool {
        let ip = peer.addr.ip().to_canonical();
        match peer.side {
            Side::Inside => self.inside.iter().any(|n| n.contains(&ip)),
            Side::Outside => self.outside.iter().any(|a| a.to_canonical() == ip),
        }
    }
}

/// A request to the signaling task from the admin API.
#[derive(Debug)]
pub enum Command {
    /// Snapshot of every call.
    ListCalls(oneshot::Sender<Vec<CallInfo>>),
    /// End one call (BYE both legs, or CANCEL/487 before the answer); false if unknown.
    EndCall(u64, oneshot::Sender<bool>),
    /// Use a new configuration for new calls (calls in progress keep theirs).
    Reconfigure {
        /// The B2BUA part.
        b2bua: Box<B2buaConfig>,
        /// The source ACL.
        acl: Acl,
        /// Answered once applied.
        done: oneshot::Sender<()>,
    },
}

/// Cloneable handle to the signaling task.
#[derive(Debug, Clone)]
pub struct SignalingHandle {
    tx: mpsc::Sender<Command>,
}

impl SignalingHandle {
    /// A handle and the receiver to give to [`run`].
    pub fn channel() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(64);
        (Self { tx }, rx)
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

    /// Applies `config` to new calls; false if the signaling task is gone.
    pub async fn reconfigure(&self, config: &Config) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = Command::Reconfigure {
            b2bua: Box::new(b2bua_config(config)),
            acl: Acl::from_config(config),
            done,
        };
        self.tx.send(cmd).await.is_ok() && rx.await.is_ok()
    }
}

/// Runs the B2BUA until `shutdown` turns true or the inbound channel closes.
#[allow(
    clippy::too_many_arguments,
    reason = "the driver's wiring is its whole purpose"
)]
pub async fn run(
    cfg: B2buaConfig,
    acl: Acl,
    mut media: MediaManager,
    transport: Transport,
    mut inbound: mpsc::Receiver<Inbound>,
    mut commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    calls: CallMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut acl = acl;
    let mut engine = B2bua::new(cfg, Rng::new(seed()));
    let mut directions = std::collections::HashMap::new();
    // Media timeouts surface through MediaControl::poll_event; look at least this often.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = inbound.recv() => {
                let Some(m) = received else { break };
                if !acl.allows(&m.peer) {
                    metrics.sip_dropped.with_label_values(&[m.peer.side.as_str(), "acl"]).inc();
                    continue;
                }
                engine.handle_message(std::time::Instant::now(), m.peer, m.message, &mut media);
            }
            () = sleep => engine.handle_timeout(std::time::Instant::now(), &mut media),
            Some(cmd) = commands.recv() => match cmd {
                Command::ListCalls(reply) => {
                    let _ = reply.send(engine.calls());
                }
                Command::EndCall(id, reply) => {
                    let ended = engine.end_call(std::time::Instant::now(), id, &mut media);
                    let _ = reply.send(ended);
                }
                Command::Reconfigure { b2bua, acl: new_acl, done } => {
                    engine.set_config(*b2bua);
                    acl = new_acl;
                    let _ = done.send(());
                }
            },
            _ = tick.tick() => engine.handle_timeout(std::time::Instant::now(), &mut media),
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
        while let Some(t) = engine.poll_transmit() {
            if let Err(e) = transport.send(&t.to, t.data) {
                tracing::debug!(to = %t.to, error = %e, "sending SIP failed");
            }
        }
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::CallStarted { call, from } => {
                    let d = direction(from);
                    directions.insert(call, d);
                    calls.started.with_label_values(&[d]).inc();
                    calls.active.with_label_values(&[d]).inc();
                }
                Event::CallAnswered { call } => {
                    let d = directions.get(&call).copied().unwrap_or("outbound");
                    calls.answered.with_label_values(&[d]).inc();
                }
                Event::CallEnded { call, reason } => {
                    let d = directions.remove(&call).unwrap_or("outbound");
                    calls.ended.with_label_values(&[d, reason.as_str()]).inc();
                    calls.active.with_label_values(&[d]).dec();
                }
                Event::Dropped { reason } => {
                    metrics
                        .sip_dropped
                        .with_label_values(&["any", reason])
                        .inc();
                }
            }
        }
    }
    tracing::info!(calls = engine.stats().calls, "signaling stopped");
}

/// Seed for tags, branches and Call-IDs: unpredictable per process.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    u64::from_le_bytes(bytes) ^ time ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_admits_pbx_networks_inside_and_trunk_proxies_outside() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let acl = Acl::from_config(&cfg);
        let peer = |side, a: &str| Peer {
            side,
            transport: TransportKind::Udp,
            addr: a.parse().expect("literal"),
            conn: None,
        };
        assert!(acl.allows(&peer(Side::Inside, "127.0.0.1:5070")));
        assert!(acl.allows(&peer(Side::Inside, "127.9.9.9:1234")));
        assert!(!acl.allows(&peer(Side::Inside, "192.0.2.1:5060")));
        assert!(acl.allows(&peer(Side::Outside, "127.0.0.1:5090")));
        assert!(!acl.allows(&peer(Side::Outside, "127.0.0.2:5090")));
    }

    #[test]
    fn b2bua_config_uses_the_documented_default_addresses() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let b = b2bua_config(&cfg);
        assert_eq!(b.inside.addr, "127.0.0.1:5060".parse().expect("literal"));
        assert_eq!(b.outside.addr, "127.0.0.1:5080".parse().expect("literal"));
        assert_eq!(b.pbx.addr, "127.0.0.1:5070".parse().expect("literal"));
        assert_eq!(b.trunk.addr, "127.0.0.1:5090".parse().expect("literal"));
    }
}
