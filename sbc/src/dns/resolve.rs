//! One RFC 3263 §4.2 lookup of a trunk proxy: SRV by transport for a bare name, A/AAAA on the
//! SRV targets (or on the name itself, with the given or the default port).
//!
//! NAPTR (RFC 3263 §4.1) is skipped: the transport of a trunk is configured, never discovered,
//! and §4.1 says a client that knows its transport goes straight to the SRV lookup for it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::RData,
};
use sbc_proto::b2bua::Rng;

use super::{
    error::{LookupError, SetupError},
    srv::{self, SrvRecord},
};
use crate::config::{Dns, ProxyAddr, Transport};

/// What a name stands for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every address, in the order to try them: the first is where new calls go.
    pub addrs: Vec<SocketAddr>,
    /// When the shortest-lived record used expires (then it is looked up again).
    pub valid_until: Instant,
}

/// The stub resolver with the SBC's settings.
#[derive(Debug)]
pub struct Resolver {
    inner: TokioResolver,
    rng: Rng,
}

impl Resolver {
    /// A resolver asking `dns.servers`, or the system's name servers when there are none.
    pub fn new(dns: &Dns, rng: Rng) -> Result<Self, SetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if dns.servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| SetupError(e.to_string()))?
        } else {
            let servers = dns
                .servers
                .iter()
                .map(|s| {
                    let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                    for c in &mut ns.connections {
                        c.port = s.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_millis(dns.timeout_ms);
        opts.attempts = 2;
        // Our own task schedules re-resolution by TTL; a cache would only hide changes.
        opts.cache_size = 0;
        // IPv4 first: carrier trunks are mostly IPv4, and both families are asked at once.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let inner = builder.build().map_err(|e| SetupError(e.to_string()))?;
        Ok(Self { inner, rng })
    }

    /// Resolves `proxy` for `transport` (RFC 3263 §4.2). IP literals need no lookup.
    pub async fn resolve(
        &mut self,
        proxy: &ProxyAddr,
        transport: Transport,
    ) -> Result<Resolution, LookupError> {
        match proxy {
            ProxyAddr::Addr(a) => Ok(Resolution {
                addrs: vec![*a],
                valid_until: far_future(),
            }),
            ProxyAddr::HostPort { host, port } => self.addresses(host, *port).await,
            ProxyAddr::Host(host) => {
                let name = format!("{}.{host}", srv_prefix(transport));
                match self.inner.srv_lookup(absolute(&name)).await {
                    Ok(lookup) => {
                        let records: Vec<SrvRecord> = lookup
                            .answers()
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::SRV(s) => Some(SrvRecord {
                                    priority: s.priority,
                                    weight: s.weight,
                                    port: s.port,
                                    target: s.target.to_ascii().trim_end_matches('.').to_owned(),
                                }),
                                _ => None,
                            })
                            .collect();
                        self.srv_targets(&name, records, lookup.valid_until()).await
                    }
                    // No SRV record: the name itself on the transport's default port.
                    Err(e) if e.is_no_records_found() => {
                        self.addresses(host, default_port(transport)).await
                    }
                    Err(e) => Err(classify(&name, &e)),
                }
            }
        }
    }

    /// A/AAAA of every SRV target in RFC 2782 order; targets that do not resolve are left
    /// out (the others still serve), and the whole fails only if none resolves.
    async fn srv_targets(
        &mut self,
        name: &str,
        records: Vec<SrvRecord>,
        srv_valid_until: Instant,
    ) -> Result<Resolution, LookupError> {
        if records.is_empty() {
            return Err(LookupError::NoRecords { name: name.into() });
        }
        if records.len() == 1 && records[0].target.is_empty() {
            return Err(LookupError::NotAvailable { name: name.into() });
        }
        let mut addrs = Vec::new();
        let mut valid_until = srv_valid_until;
        let mut last_error = None;
        for r in srv::order(records, &mut self.rng) {
            match self.addresses(&r.target, r.port).await {
                Ok(res) => {
                    for a in res.addrs {
                        if !addrs.contains(&a) {
                            addrs.push(a);
                        }
                    }
                    valid_until = valid_until.min(res.valid_until);
                }
                Err(e) => {
                    tracing::debug!(target = %r.target, error = %e, "SRV target did not resolve");
                    last_error = Some(e);
                }
            }
        }
        if addrs.is_empty() {
            return Err(last_error.unwrap_or(LookupError::NoRecords { name: name.into() }));
        }
        Ok(Resolution { addrs, valid_until })
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Resolution, LookupError> {
        let lookup = self
            .inner
            .lookup_ip(absolute(host))
            .await
            .map_err(|e| classify(host, &e))?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(LookupError::NoRecords { name: host.into() });
        }
        Ok(Resolution {
            addrs,
            valid_until: lookup.valid_until(),
        })
    }
}

/// `_sip._udp`, `_sip._tcp` or `_sips._tcp` (RFC 3263 §4.2, RFC 5630 for SIPS over TLS).
pub const fn srv_prefix(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    }
}

/// 5060, or 5061 for TLS (RFC 3261 §19.1.2).
pub const fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp | Transport::Tcp => 5060,
        Transport::Tls => 5061,
    }
}

/// Configured names are fully qualified: no search-list expansion (which would send queries
/// for `name.<local domain>` first and could pick up a wrong record).
fn absolute(name: &str) -> String {
    format!("{name}.")
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

fn classify(name: &str, e: &NetError) -> LookupError {
    if e.is_no_records_found() {
        LookupError::NoRecords { name: name.into() }
    } else if matches!(e, NetError::Timeout) {
        LookupError::Timeout { name: name.into() }
    } else {
        LookupError::Failed {
            name: name.into(),
            reason: e.to_string(),
        }
    }
}
