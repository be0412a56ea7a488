//! The resolver task: looks every trunk proxy given by name up at start, again when its records
//! expire (never more often than `[dns] refresh_s`), and after a failure `refresh_s` later;
//! hands changed address sets to the signaling task. A failure changes nothing there: the
//! last good addresses stay, and a name that never resolved leaves its trunk unusable.

use std::{net::SocketAddr, time::Duration};

use tokio::{sync::watch, time::Instant};

use super::{DnsMetrics, Resolved, resolve::Resolver};
use crate::{
    config::{Config, Dns, ProxyAddr, Transport},
    transport::Transport as SipTransport,
};

/// Where the task hands changed address sets (the signaling driver's handle).
pub trait ResolvedSink: Send + Sync + 'static {
    /// Delivers one update; false when the receiver is gone (the task then ends).
    fn deliver(&self, r: Resolved) -> impl Future<Output = bool> + Send;
}

/// What the resolver task works on: the `[dns]` settings and the trunks whose proxy is a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsTrunks {
    /// `[dns]`.
    pub settings: Dns,
    /// Trunks given by name, in configuration order.
    pub trunks: Vec<DnsTrunk>,
}

/// One trunk whose proxy needs DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTrunk {
    /// The trunk's name.
    pub name: String,
    /// Its proxy (a name, with or without port).
    pub proxy: ProxyAddr,
    /// Its transport: chooses the SRV service and the default port.
    pub transport: Transport,
    /// With TLS: the name verified in the certificate of every resolved address (the
    /// configured `tls_server_name`, else the proxy's name: RFC 5922 §4, not the SRV target).
    pub tls_name: Option<String>,
}

impl DnsTrunks {
    /// From the configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            settings: c.dns.clone(),
            trunks: c
                .trunks
                .iter()
                .filter_map(|t| {
                    let host = t.proxy.host_name()?;
                    Some(DnsTrunk {
                        name: t.name.clone(),
                        proxy: t.proxy.clone(),
                        transport: t.transport,
                        tls_name: (t.transport == Transport::Tls)
                            .then(|| t.tls_server_name.clone().unwrap_or_else(|| host.into())),
                    })
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    trunk: DnsTrunk,
    next_at: Instant,
    last: Option<Vec<SocketAddr>>,
}

/// Runs until `shutdown` turns true or `signaling` is gone. `trunks` is the signaling handle's
/// watch of the trunks to look up; TLS server names go to `transport` when given.
pub async fn run(
    mut trunks: watch::Receiver<DnsTrunks>,
    signaling: impl ResolvedSink,
    transport: Option<SipTransport>,
    metrics: DnsMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut settings: Option<Dns> = None;
    let mut resolver: Option<Resolver> = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut changed = true;
    loop {
        if changed {
            let now = Instant::now();
            let wanted = trunks.borrow_and_update().clone();
            if settings.as_ref() != Some(&wanted.settings) {
                // Other servers or timeouts: a new resolver, and everything asked again.
                settings = Some(wanted.settings.clone());
                resolver = None;
                for e in &mut entries {
                    e.next_at = now;
                }
            }
            let mut old = std::mem::take(&mut entries);
            for t in wanted.trunks {
                match old.iter().position(|e| e.trunk == t) {
                    Some(i) => entries.push(old.swap_remove(i)),
                    None => entries.push(Entry {
                        trunk: t,
                        next_at: now,
                        last: None,
                    }),
                }
            }
        }
        let Some(dns) = settings.clone() else { return };
        let refresh = Duration::from_secs(dns.refresh_s.max(1));
        if resolver.is_none() && entries.iter().any(|e| e.next_at <= Instant::now()) {
            match Resolver::new(&dns, crate::entropy::rng()) {
                Ok(r) => resolver = Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "trunk proxies given by name stay unresolved");
                    for en in &mut entries {
                        metrics.count(&en.trunk.name, "error");
                        en.next_at = Instant::now() + refresh;
                    }
                }
            }
        }
        if let Some(r) = resolver.as_mut() {
            for e in entries.iter_mut().filter(|e| e.next_at <= Instant::now()) {
                // The resolver bounds each query; this bounds a whole SRV + A chain.
                let limit = Duration::from_millis(dns.timeout_ms.saturating_mul(8)) + refresh;
                let result =
                    tokio::time::timeout(limit, r.resolve(&e.trunk.proxy, e.trunk.transport))
                        .await
                        .unwrap_or_else(|_| {
                            Err(super::LookupError::Timeout {
                                name: e.trunk.proxy.to_string(),
                            })
                        });
                let now = Instant::now();
                match result {
                    Ok(res) => {
                        metrics.count(&e.trunk.name, "ok");
                        let expires = Instant::from_std(res.valid_until);
                        e.next_at = expires.max(now + refresh);
                        if e.last.as_ref() == Some(&res.addrs) {
                            continue;
                        }
                        tracing::info!(trunk = %e.trunk.name, proxy = %e.trunk.proxy,
                            addresses = res.addrs.len(), "trunk proxy resolved");
                        tracing::debug!(trunk = %e.trunk.name, addrs = ?res.addrs, "resolved");
                        if let (Some(tr), Some(name)) = (&transport, &e.trunk.tls_name) {
                            for a in &res.addrs {
                                tr.set_tls_server_name(*a, name);
                            }
                        }
                        e.last = Some(res.addrs.clone());
                        let update = Resolved {
                            trunk: e.trunk.name.clone(),
                            proxy: e.trunk.proxy.clone(),
                            addrs: res.addrs,
                        };
                        if !signaling.deliver(update).await {
                            return;
                        }
                    }
                    Err(err) => {
                        metrics.count(&e.trunk.name, err.label());
                        e.next_at = now + refresh;
                        let kept = e.last.as_ref().map_or(0, Vec::len);
                        tracing::warn!(trunk = %e.trunk.name, error = %err, kept_addresses = kept,
                            "trunk proxy lookup failed; keeping the last good addresses");
                    }
                }
            }
        }
        let next = entries.iter().map(|e| e.next_at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        changed = false;
        tokio::select! {
            () = sleep => {}
            r = trunks.changed() => {
                if r.is_err() {
                    return;
                }
                changed = true;
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
