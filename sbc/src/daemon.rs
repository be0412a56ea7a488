//! `sbc run`: starts the SIP transports, loads the XDP fast path, serves the admin API, reloads
//! TLS certificates on SIGHUP, and on SIGTERM or SIGINT drains (new calls refused, calls in
//! progress given `[general] drain_timeout_s`, then BYE) and shuts down cleanly; a second
//! signal ends the drain's wait at once.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use tokio::task::JoinSet;

use crate::{
    admin::{self, AdminState, XdpStatus},
    config::{Config, XdpMode},
    media::{
        MediaManager, MediaSettings,
        xdp::{self, XdpRelay},
    },
    metrics::Metrics,
    transport::{StartError, Transport, TransportConfig},
};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The SIP transports could not start (bind error, unusable TLS files).
    #[error("SIP transport: {0}")]
    Transport(#[from] StartError),
    /// Metrics registration failed (a programming error surfaced as an error, not a panic).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The admin server failed.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
    /// The admin API would be reachable from the network without a token.
    #[error(
        "admin.listen = {0} is not a loopback address and no admin token is configured \
             ([admin] token or SBC_ADMIN_TOKEN)"
    )]
    OpenAdmin(SocketAddr),
    /// The admin API's TLS certificate or key is unusable.
    #[error("{0}")]
    AdminTls(#[from] admin::tls::AdminTlsError),
    /// The OS has no secure randomness for identifiers and keys.
    #[error("{0}")]
    Entropy(#[from] crate::entropy::EntropyError),
    /// Installing a signal handler failed.
    #[error("installing signal handlers: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the SBC until SIGTERM/SIGINT.
///
/// `path` is the file `config` came from: live changes are persisted there and SIGHUP re-reads
/// it (`None`: the built-in default, which cannot be changed while running).
pub async fn run(config: Config, path: Option<std::path::PathBuf>) -> Result<(), RunError> {
    // Before anything can make a tag, branch, Call-ID or key.
    crate::entropy::init()?;
    config.warn_at_load();
    let env_tokens = admin::auth::EnvTokens::from_env();
    if !env_tokens.any(&config) {
        if !config.admin.listen.ip().is_loopback() {
            return Err(RunError::OpenAdmin(config.admin.listen));
        }
        tracing::warn!(listen = %config.admin.listen, "the admin API has no token: anyone who can \
            reach this loopback address may read and change the SBC (set [admin] token or \
            SBC_ADMIN_TOKEN)");
    }
    let metrics = Metrics::new()?;
    let mut shutdown = Shutdown::install()?;
    let (xdp, xdp_status) = start_xdp(&config);
    metrics
        .xdp_attached
        .set(i64::from(matches!(xdp_status, XdpStatus::Attached { .. })));
    // One media table per signaling shard, so that no shard locks another's on its
    // per-message path (`media::tables`).
    let media = MediaManager::with_shards(
        MediaSettings::from_config(&config),
        xdp.clone(),
        metrics.media.clone(),
        crate::signaling::shard_count(&config),
    );
    let adopted = media.adopt();
    if !adopted.is_empty() {
        tracing::info!(
            sessions = adopted.len(),
            "adopted established media from pinned XDP maps"
        );
    }

    let mut tasks = JoinSet::new();
    let (inbound_tx, inbound_rx) = crate::signaling::Router::channels(
        crate::signaling::shard_count(&config),
        config.sip.inbound_queue,
    );
    let transport = Transport::start(TransportConfig::from(&config), &metrics, inbound_tx)?;
    let calls = crate::metrics::CallMetrics::register(&metrics.registry)?;
    let trace_metrics = crate::trace::TraceMetrics::register(&metrics.registry)?;
    let tracer = crate::trace::Tracer::start(&config, media.clone(), trace_metrics);
    if let Some(t) = &tracer {
        transport.set_tracer(t.clone());
    }
    let (stop_signaling, stop_rx) = tokio::sync::watch::channel(false);
    let (signaling, commands) = crate::signaling::SignalingHandle::channel();
    let (cdr, cdr_writer) = crate::cdr::CdrSink::start(&config, &metrics.registry, media.clone())?;
    let (state, state_writer, restore) =
        crate::state::start_from_config(&config, &metrics.registry).await?;
    let pair =
        crate::state::pair::Pair::start(&config, state.as_ref(), &signaling, &metrics.registry)?;
    let cluster = crate::state::cluster::start(&config, &metrics.registry, stop_rx.clone())?;
    let bans = crate::state::bans::start(&config, &metrics.registry, &signaling, stop_rx.clone())?;
    // Trunk proxies given by name: resolved by their own task, applied by the signaling task.
    signaling.set_dns_trunks(crate::dns::DnsTrunks::from_config(&config));
    tokio::spawn(crate::dns::run(
        signaling.dns_trunks(),
        signaling.clone(),
        Some(transport.clone()),
        crate::dns::DnsMetrics::register(&metrics.registry)?,
        stop_rx.clone(),
    ));
    let wiring = crate::signaling::Wiring {
        media: media.clone(),
        transport: transport.clone(),
        inbound: inbound_rx,
        commands,
        metrics: metrics.clone(),
        calls,
        drain: crate::metrics::DrainMetrics::register(&metrics.registry)?,
        shutdown: stop_rx,
        cdr,
        state,
        restore,
        cluster,
        bans,
    };
    // Turns true when the signaling task is over: a drain finished (from a signal or the admin
    // API), or it stopped for another reason; either way the process stops.
    let (signaling_done, signaling_over) = tokio::sync::watch::channel(false);
    let core = crate::config::sbc_config(&config);
    tasks.spawn(async move {
        crate::signaling::run(core, wiring).await;
        let _ = signaling_done.send(true);
    });

    let addr = config.admin.listen;
    let admin_tls = match (&config.admin.tls_cert, &config.admin.tls_key) {
        (Some(cert), Some(key)) => Some(admin::tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            what: "admin API",
            addr,
            source,
        })?;
    let scrape = admin::ScrapeGauges::register(&metrics.registry)?;
    let admin_metrics = admin::host::AdminMetrics::register(&metrics.registry)?;
    let state = Arc::new(AdminState {
        metrics,
        xdp,
        xdp_status,
        media,
        signaling,
        ready: std::sync::atomic::AtomicBool::new(false),
        config: admin::live::LiveConfig::new(config.clone(), path, env_tokens),
        scrape,
        admin_metrics,
        tracer,
        cdr: config.cdr.clone(),
        pair,
    });
    let app = admin::router(state.clone());
    tracing::info!(%addr, tls = admin_tls.is_some(), "admin API listening");
    state.ready.store(true, Ordering::Release);
    tracing::info!(instance = %config.general.instance, "sbc ready");

    let reloader = transport.clone();
    let hup_state = state.clone();
    let on_hup = move || {
        // Errors are logged and counted by reload_tls; the old certificate stays.
        let _ = reloader.reload_tls();
        let s = hup_state.clone();
        tokio::spawn(async move {
            if let Err(e) = s.config.reload(&s.signaling, "sighup").await {
                let problems: Vec<String> = e
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect();
                tracing::warn!(error = %e.error, problems = %problems.join("; "),
                        "SIGHUP: configuration not reloaded; the running one stays");
            }
        });
    };
    let drain_state = state.clone();
    // The admin API keeps serving during the drain (status, metrics, calls); it stops when the
    // signaling task is over.
    let stop = async move {
        let over = |rx: &tokio::sync::watch::Receiver<bool>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|done| *done).await;
            }
        };
        tokio::select! {
            () = shutdown.wait(&on_hup) => {
                let cfg = crate::config::drain_config(&drain_state.config.current());
                tracing::info!(timeout_s = cfg.timeout.as_secs(), "draining before stopping \
                    (a second SIGTERM or SIGINT ends the calls left at once)");
                drain_state.signaling.drain(cfg).await;
            }
            () = over(&signaling_over) => return,
        }
        loop {
            tokio::select! {
                () = shutdown.wait(&on_hup) => {
                    tracing::info!("second stop signal: ending the calls left now");
                    drain_state.signaling.end_now().await;
                }
                () = over(&signaling_over) => return,
            }
        }
    };
    match admin_tls {
        Some(acceptor) => {
            axum::serve(admin::tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    }
    .map_err(RunError::Admin)?;

    tracing::info!("shutting down");
    // Normally the signaling task is over already (drained, registrations removed); this
    // stops it if the admin server ended for another reason.
    let _ = stop_signaling.send(true);
    // Let the signaling task (the only one in `tasks`) finish its de-registrations, bounded to
    // 2 s there, while the transport still runs; then stop everything.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), tasks.join_next()).await;
    transport.shutdown();
    tasks.shutdown().await;
    // The signaling task held the last CDR sink: the writer flushes and syncs, then ends.
    cdr_writer.finish(std::time::Duration::from_secs(2)).await;
    // Likewise the call state writer (the deletes of the calls a drain ended).
    state_writer.finish(std::time::Duration::from_secs(2)).await;
    if let Some(xdp) = &state.xdp {
        let mut xdp = xdp.lock();
        if xdp.is_pinned() {
            // Pinned links and maps stay: established media keeps flowing through XDP until a
            // restarted sbc adopts it, or an operator runs `sbc xdp detach`.
            tracing::info!("leaving the pinned XDP fast path in place");
        } else {
            xdp.detach_all();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads and attaches the XDP program per `[media]`; never fails the start-up: without XDP the
/// userspace relay forwards everything, and the reason is logged once and reported.
fn start_xdp(config: &Config) -> (Option<Arc<parking_lot::Mutex<XdpRelay>>>, XdpStatus) {
    let media = &config.media;
    let pin = xdp::pin_dir(&config.general.instance);
    if (media.xdp == XdpMode::Off || media.interfaces.is_empty()) && pin.exists() {
        // A previous run of this instance left its fast path attached; with XDP now off it
        // would keep forwarding mappings nobody manages.
        match xdp::remove_pins(&pin) {
            Ok(n) => tracing::warn!(dir = %pin.display(), objects = n,
                "XDP is off: removed the pinned fast path of a previous run"),
            Err(e) => tracing::warn!(dir = %pin.display(), error = %e,
                "XDP is off but the pinned fast path of a previous run could not be removed"),
        }
    }
    if media.xdp == XdpMode::Off {
        tracing::info!("XDP fast path off (media.xdp = \"off\"); media relayed in userspace");
        return (
            None,
            XdpStatus::Off {
                reason: "media.xdp = \"off\"".into(),
            },
        );
    }
    if media.interfaces.is_empty() {
        tracing::info!("XDP fast path not attached: media.interfaces is empty");
        return (
            None,
            XdpStatus::Off {
                reason: "media.interfaces is empty".into(),
            },
        );
    }
    let mappings = crate::media::manager::MediaSettings::from_config(config)
        .relay
        .fast_path_mappings();
    let relay = XdpRelay::load(Some(&pin), mappings).or_else(|e| {
        tracing::warn!(error = %e, dir = %pin.display(), "pinned XDP load failed; trying unpinned");
        XdpRelay::load(None, mappings)
    });
    let mut relay = match relay {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "XDP unavailable; media relayed in userspace");
            return (
                None,
                XdpStatus::Unavailable {
                    error: e.to_string(),
                },
            );
        }
    };
    for iface in &media.interfaces {
        match relay.attach(iface, media.xdp) {
            Ok(mode) => tracing::info!(interface = %iface, %mode, "XDP attached"),
            Err(e) => {
                tracing::warn!(error = %e, "XDP unavailable; media relayed in userspace");
                relay.detach_all();
                return (
                    None,
                    XdpStatus::Unavailable {
                        error: e.to_string(),
                    },
                );
            }
        }
    }
    for iface in &media.interfaces {
        // bpf_fib_lookup refuses to resolve a next hop for packets arriving on an interface
        // without forwarding enabled; every packet would then take the userspace path.
        let path = format!("/proc/sys/net/ipv4/conf/{iface}/forwarding");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
            tracing::warn!(interface = %iface, "IPv4 forwarding is off on this media interface: \
                the XDP fast path cannot resolve next hops and will pass media to userspace \
                (see docs/media.md)");
        }
    }
    let status = XdpStatus::Attached {
        attachments: relay.attachments().to_vec(),
    };
    (Some(Arc::new(parking_lot::Mutex::new(relay))), status)
}

/// Stand-in for the SIP core until it is wired onto the channel: receives and discards every
/// inbound message (the transport has already counted it), so the channel never fills.
/// SIGTERM / SIGINT (and SIGHUP for reloads), installed before anything is bound so an early
/// signal is not lost.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self, RunError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(RunError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(RunError::Signal)?,
            hup: signal(SignalKind::hangup()).map_err(RunError::Signal)?,
        })
    }

    /// Waits for SIGTERM or SIGINT, calling `on_hup` for every SIGHUP meanwhile.
    async fn wait(&mut self, on_hup: impl Fn()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return tracing::info!("SIGTERM received"),
                _ = self.int.recv() => return tracing::info!("SIGINT received"),
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading TLS certificates and the configuration");
                    on_hup();
                }
            }
        }
    }
}
