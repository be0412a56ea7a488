//! The sans-I/O core's configuration ([`SbcConfig`]) from the configuration file: the B2BUA's
//! addresses, trunks, routes and limits; the source ACL and guard; the trunks' proxies,
//! registrations and OPTIONS checks.

use std::{net::SocketAddr, time::Duration};

use sbc_proto::{
    b2bua::{
        B2buaConfig, Caps, LocalAddr, PbxAuthConfig, Redirect, SessionTimerConfig, Target,
        TrunkConfig, TrunkLocal,
    },
    health::HealthConfig,
    limit::CallLimits,
    net::{Peer, Side, TransportKind},
    overload::OverloadConfig,
    protect::GuardConfig,
    register::RegConfig,
    sbc::{AclConfig, DrainConfig, SbcConfig, TrunkHealth, TrunkProxy, TrunkRegistration},
    transaction::TimerConfig,
};

use super::{Config, Limits, ProxyAddr};

/// Everything the core gets from `c`.
pub fn sbc_config(c: &Config) -> SbcConfig {
    let b2bua = b2bua_config(c);
    SbcConfig {
        registrations: registrations(c, &b2bua),
        // An active/standby node registers once it holds the lease (`state::lease`).
        registrations_held: c.state.as_ref().is_some_and(|s| s.peer.is_some()),
        health: health_checks(c, &b2bua),
        b2bua,
        acl: acl_config(c),
        guard: guard_config(c),
        overload: OverloadConfig {
            target: Duration::from_millis(u64::from(c.limits.queue_delay_target_ms)),
            interval: Duration::from_millis(u64::from(c.limits.queue_delay_interval_ms)),
        },
        trunks: c
            .trunks
            .iter()
            .map(|t| TrunkProxy {
                name: t.name.clone(),
                proxy: t.proxy.to_string(),
                static_addr: t.proxy.static_addr(),
                transport: t.transport.kind(),
            })
            .collect(),
    }
}

/// How a graceful drain runs (`[general] drain_*`).
pub fn drain_config(c: &Config) -> DrainConfig {
    DrainConfig {
        timeout: Duration::from_secs(u64::from(c.general.drain_timeout_s)),
        retry_after_s: c.general.drain_retry_after_s,
        bye_wait: Duration::from_millis(u64::from(c.general.drain_bye_wait_ms)),
    }
}

/// Who may send SIP to the SBC: the PBX networks inside, the trunk proxies given as IP
/// literals outside (names join when they resolve), the denylists.
pub fn acl_config(c: &Config) -> AclConfig {
    AclConfig {
        inside: c.pbx.allow.clone(),
        outside: c
            .trunks
            .iter()
            .filter_map(|t| Some(t.proxy.static_addr()?.ip()))
            .collect(),
        // The trunk proxies are the outside's peers.
        peers: vec![c.pbx.address.ip().to_canonical()],
        user_agent_deny: c.limits.user_agent_deny.clone(),
        deny: c.limits.deny.clone(),
    }
}

/// The per-source rate limits and bans.
pub fn guard_config(c: &Config) -> GuardConfig {
    GuardConfig {
        rate: c.limits.source_rate,
        burst: c.limits.source_burst,
        ban: Duration::from_secs(c.limits.ban_s),
        max_sources: 65_536,
        peer_rate: c.limits.peer_rate,
        peer_burst: c.limits.peer_burst,
        max_bans: c.limits.max_bans,
    }
}

/// The B2BUA configuration derived from the SBC configuration.
pub fn b2bua_config(c: &Config) -> B2buaConfig {
    let local = |s: &super::Side| {
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
    // Every listener, bound address → what is written into messages for peers reaching it.
    let mut listeners = Vec::new();
    for s in [&c.inside, &c.outside] {
        for (list, transport) in [
            (&s.udp, TransportKind::Udp),
            (&s.tcp, TransportKind::Tcp),
            (&s.tls, TransportKind::Tls),
        ] {
            for a in list {
                let ip = s.advertised_address.unwrap_or(a.ip());
                listeners.push((
                    *a,
                    LocalAddr {
                        addr: SocketAddr::new(ip, a.port()),
                        transport,
                    },
                ));
            }
        }
    }
    let (compiled, _) = super::compile(c);
    let mut rules = compiled.trunks.into_iter();
    let trunks = c
        .trunks
        .iter()
        .map(|t| {
            let (outbound, inbound) = rules.next().unwrap_or_default();
            TrunkConfig {
                name: t.name.clone(),
                sources: Vec::new(),
                alternates: Vec::new(),
                target: Target {
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    transport: t.transport.kind(),
                },
                credentials: t.credentials(),
                limits: CallLimits {
                    max_calls: t.max_calls.or(Some(Limits::DEFAULT_TRUNK_MAX_CALLS)),
                    max_cps: t.max_cps.or(Some(Limits::DEFAULT_TRUNK_MAX_CPS)),
                },
                local: t.local.and_then(|bound| {
                    listeners
                        .iter()
                        .find(|(b, l)| *b == bound && l.transport == t.transport.kind())
                        .map(|(_, l)| TrunkLocal {
                            advertised: *l,
                            bound,
                        })
                }),
                from_domain: t.from_domain.clone(),
                outbound,
                inbound,
                auth: t.auth_mode(),
                redirect: match t.redirect {
                    super::RedirectMode::Recurse => Redirect::Recurse,
                    super::RedirectMode::Relay => Redirect::Relay,
                },
                hide_redirect_contacts: t.hide_redirect_contacts,
                srtp: t.srtp_policy(),
                media: t.media_policy(),
            }
        })
        .collect();
    let inside = local(&c.inside);
    B2buaConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(c.sip.t1_ms),
            t2: Duration::from_millis(c.sip.t2_ms),
            t4: Duration::from_millis(c.sip.t4_ms),
            timer_c: Duration::from_secs(c.sip.timer_c_s),
        },
        inside,
        outside: local(&c.outside),
        pbx: Target {
            addr: c.pbx.address,
            transport: c.pbx.transport.kind(),
        },
        listeners,
        trunks,
        routes: compiled.routes,
        inbound: compiled.inbound,
        limits: CallLimits {
            max_calls: c.limits.max_calls.or(Some(Limits::DEFAULT_MAX_CALLS)),
            max_cps: c.limits.max_cps.or(Some(Limits::DEFAULT_MAX_CPS)),
        },
        retry_after_s: c.limits.retry_after_s,
        user_agent: c.general.user_agent.clone(),
        pass_headers: B2buaConfig::default_pass_headers(),
        max_call_duration: None,
        pbx_auth: pbx_auth_config(c, inside.addr),
        session_timer: SessionTimerConfig {
            enabled: c.sip.session_timer,
            session_expires: Duration::from_secs(c.sip.session_expires),
            min_se: Duration::from_secs(c.sip.min_se),
        },
        max_redirects: c.sip.max_redirects,
        caps: Caps {
            max_transactions: usize::try_from(c.limits.max_transactions).unwrap_or(usize::MAX),
            max_stored_bytes: usize::try_from(c.limits.max_stored_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
        },
        sdp: sdp_policy(c),
        pbx_register: c.pbx.register_policy(&c.trunks),
        max_pending_challenges: c.limits.max_pending_challenges,
        pbx_srtp: c.pbx.srtp_policy(),
        pbx_media: c.pbx.media_policy(),
    }
}

/// The SBC's own addresses (every SIP listener, advertised and media address), which SDP may
/// not name: media sent there would loop through the relay or hit the SBC's own services.
fn sdp_policy(c: &Config) -> sbc_proto::sdp::SdpPolicy {
    let mut own = Vec::new();
    for s in [&c.inside, &c.outside] {
        let listeners = s.udp.iter().chain(&s.tcp).chain(&s.tls).map(SocketAddr::ip);
        let relay = s.relay_addresses().into_iter().flat_map(|(b, a)| [b, a]);
        for ip in listeners.chain(relay).chain(s.advertised_address) {
            // A wildcard bind names no address of its own; 0.0.0.0 in SDP is a hold anyway.
            if !ip.is_unspecified() && !own.contains(&ip) {
                own.push(ip);
            }
        }
    }
    sbc_proto::sdp::SdpPolicy {
        own_addresses: own,
        ..sbc_proto::sdp::SdpPolicy::default()
    }
}

/// What the PBX must authenticate with, when `[pbx]` has a user name and a password. The
/// realm defaults to the SBC's inside address (what the PBX has configured as its proxy).
fn pbx_auth_config(c: &Config, inside: SocketAddr) -> Option<PbxAuthConfig> {
    let username = c.pbx.username.clone()?;
    let password = c.pbx.password.as_ref()?;
    Some(PbxAuthConfig {
        username,
        password: sbc_proto::auth::Secret::new(password.0.clone()),
        realm: c
            .pbx
            .realm
            .clone()
            .unwrap_or_else(|| inside.ip().to_string()),
        algorithms: c.pbx.algorithms(),
    })
}

/// The registrations of every trunk with `register = true`.
fn registrations(c: &Config, b2bua: &B2buaConfig) -> Vec<TrunkRegistration> {
    c.trunks
        .iter()
        .filter(|t| t.register)
        .filter_map(|t| {
            let user = t.username.clone()?;
            Some(TrunkRegistration {
                trunk: t.name.clone(),
                peer: Peer {
                    side: Side::Outside,
                    transport: t.transport.kind(),
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    conn: None,
                    local: None,
                },
                cfg: RegConfig {
                    user,
                    domain: t.from_domain.clone().unwrap_or_else(|| t.proxy.host()),
                    local: b2bua.outside.addr,
                    transport: t.transport.kind(),
                    expires: t.register_expires_s.unwrap_or(3600),
                    credentials: t.credentials(),
                    timers: b2bua.timers,
                    user_agent: c.general.user_agent.clone(),
                    backoff_base: Duration::from_secs(30),
                    backoff_max: Duration::from_secs(1800),
                },
            })
        })
        .collect()
}

/// The health checks of every trunk with `options_interval_s`.
fn health_checks(c: &Config, b2bua: &B2buaConfig) -> Vec<TrunkHealth> {
    c.trunks
        .iter()
        .enumerate()
        .filter_map(|(index, t)| {
            let interval = Duration::from_secs(u64::from(t.options_interval_s?));
            Some(TrunkHealth {
                trunk: t.name.clone(),
                index,
                peer: Peer {
                    side: Side::Outside,
                    transport: t.transport.kind(),
                    addr: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    conn: None,
                    local: None,
                },
                cfg: HealthConfig {
                    target: t.proxy.static_addr().unwrap_or(ProxyAddr::UNRESOLVED),
                    local: b2bua.outside.addr,
                    transport: t.transport.kind(),
                    interval,
                    timeout: interval.min(Duration::from_secs(5)),
                    up_after: t.options_up_after.unwrap_or(2),
                    down_after: t.options_down_after.unwrap_or(3),
                    timers: b2bua.timers,
                    user_agent: c.general.user_agent.clone(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_proto::sbc::Acl;

    #[test]
    fn acl_admits_pbx_networks_inside_and_trunk_proxies_outside() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let acl = Acl::new(acl_config(&cfg));
        let peer = |side, a: &str| Peer {
            side,
            transport: TransportKind::Udp,
            addr: a.parse().expect("literal"),
            conn: None,
            local: None,
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
        assert_eq!(
            b.trunks[0].target.addr,
            "127.0.0.1:5090".parse().expect("literal")
        );
        assert_eq!(b.pbx_auth, None, "the ACL alone by default");
    }

    #[test]
    fn call_limits_and_caps_are_finite_by_default() {
        let cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        let b = b2bua_config(&cfg);
        assert_eq!(b.limits.max_calls, Some(Limits::DEFAULT_MAX_CALLS));
        assert_eq!(b.limits.max_cps, Some(Limits::DEFAULT_MAX_CPS));
        for t in &b.trunks {
            assert_eq!(t.limits.max_calls, Some(Limits::DEFAULT_TRUNK_MAX_CALLS));
            assert_eq!(t.limits.max_cps, Some(Limits::DEFAULT_TRUNK_MAX_CPS));
        }
        assert_eq!(b.caps.max_transactions, 20_000);
        assert_eq!(b.caps.max_stored_bytes, 64 << 20);
        // Without a [limits] section at all: the same.
        let mut bare = cfg.clone();
        bare.limits = crate::config::Limits::default();
        assert_eq!(b2bua_config(&bare).limits, b.limits);
    }

    #[test]
    fn pbx_auth_realm_defaults_to_the_inside_address() {
        let mut cfg = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default config");
        cfg.pbx.username = Some("pbx".into());
        cfg.pbx.password = Some(crate::config::Password("pw".into()));
        let a = b2bua_config(&cfg).pbx_auth.expect("configured");
        assert_eq!(a.realm, "127.0.0.1");
        assert_eq!(
            a.algorithms,
            [
                sbc_proto::auth::Algorithm::Sha256,
                sbc_proto::auth::Algorithm::Md5
            ]
        );
        cfg.pbx.realm = Some("pbx.example".into());
        assert_eq!(
            b2bua_config(&cfg).pbx_auth.map(|a| a.realm),
            Some("pbx.example".into())
        );
    }
}
