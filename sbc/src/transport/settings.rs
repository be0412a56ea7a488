//! The transport layer's settings, derived from the `[inside]`, `[outside]`, `[sip]`, `[tls]`
//! and `[[trunk]]` configuration (or built directly by tests).

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use sbc_proto::{net::Side, sip::Limits};

use super::{AdmissionPolicy, ReplyLimits};
use crate::config::{self, Config};

/// Everything the transport layer needs to start.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Listen addresses of the inside (PBX) side.
    pub inside: Listeners,
    /// Listen addresses of the outside (carrier) side.
    pub outside: Listeners,
    /// Parser limits (message size, header count) applied to every message.
    pub limits: Limits,
    /// Stream (TCP/TLS) limits and timeouts.
    pub stream: StreamLimits,
    /// UDP socket settings.
    pub udp: UdpSettings,
    /// TLS certificates and verification; `None` disables TLS (no listener, no outbound).
    pub tls: Option<TlsSettings>,
    /// Names for TLS SNI and certificate verification by peer address (from
    /// `trunk.tls_server_name`); peers not listed are verified by IP address.
    pub tls_names: HashMap<SocketAddr, String>,
    /// Who may connect and get stateless replies, until the signaling side publishes an
    /// update ([`super::Transport::set_admission`]).
    pub admission: AdmissionPolicy,
    /// Budget of stateless replies per side.
    pub replies: ReplyLimits,
    /// Most bans mirrored for admission (`[limits] max_bans`).
    pub max_bans: usize,
}

/// The listen addresses of one side.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// TLS addresses.
    pub tls: Vec<SocketAddr>,
}

/// Bounds on stream connections: every one protects memory or a connection slot from a
/// misbehaving peer.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// No bytes in either direction for this long: close.
    pub idle_timeout: Duration,
    /// A message whose first byte has arrived must be complete within this (slowloris).
    pub message_timeout: Duration,
    /// TCP connect plus TLS handshake; also the handshake of accepted TLS connections.
    pub connect_timeout: Duration,
    /// Most open connections in total.
    pub max_connections: usize,
    /// Most connections accepted per listener.
    pub max_per_listener: usize,
    /// Messages queued per connection for writing.
    pub send_queue: usize,
    /// An accepted connection must deliver a valid SIP message within this, or it is closed
    /// (CRLF keep-alives do not count).
    pub first_message_timeout: Duration,
    /// Most accepted connections from one source address per side.
    pub max_per_source: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            message_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_connections: 4096,
            max_per_listener: 1024,
            send_queue: 256,
            first_message_timeout: Duration::from_secs(5),
            max_per_source: 32,
        }
    }
}

/// UDP socket settings.
#[derive(Debug, Clone, Copy)]
pub struct UdpSettings {
    /// Sockets per address (SO_REUSEPORT when more than one).
    pub workers: usize,
    /// Kernel buffer size asked for, bytes.
    pub buffer_bytes: usize,
}

impl Default for UdpSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            buffer_bytes: 4 << 20,
        }
    }
}

/// TLS files and verification policy (`[tls]`).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM certificate chain for listeners (and client auth toward carriers).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA file trusted for peers.
    pub ca: Option<PathBuf>,
    /// Also trust the system roots for servers.
    pub system_roots: bool,
    /// Verify servers' certificates (off: lab only).
    pub verify_server: bool,
    /// Require client certificates on listeners (verified against `ca`).
    pub require_client_cert: bool,
    /// How often to poll the files' modification times (`None`: never, SIGHUP only).
    pub reload_check: Option<Duration>,
}

impl TransportConfig {
    /// A configuration with no listeners and default limits (tests fill in what they need).
    pub fn new() -> Self {
        Self {
            inside: Listeners::default(),
            outside: Listeners::default(),
            limits: Limits::default(),
            stream: StreamLimits::default(),
            udp: UdpSettings::default(),
            tls: None,
            tls_names: HashMap::new(),
            admission: AdmissionPolicy::allow_all(),
            replies: ReplyLimits::default(),
            max_bans: 10_000,
        }
    }

    /// The listeners of one side.
    pub fn side(&self, side: Side) -> &Listeners {
        match side {
            Side::Inside => &self.inside,
            Side::Outside => &self.outside,
        }
    }

    /// Mutable listeners of one side.
    pub fn side_mut(&mut self, side: Side) -> &mut Listeners {
        match side {
            Side::Inside => &mut self.inside,
            Side::Outside => &mut self.outside,
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&Config> for TransportConfig {
    fn from(c: &Config) -> Self {
        let listeners = |s: &config::Side| Listeners {
            udp: s.udp.clone(),
            tcp: s.tcp.clone(),
            tls: s.tls.clone(),
        };
        let sip = &c.sip;
        let uses_tls = !c.inside.tls.is_empty()
            || !c.outside.tls.is_empty()
            || c.pbx.transport == config::Transport::Tls
            || c.trunks
                .iter()
                .any(|t| t.transport == config::Transport::Tls);
        let t = &c.tls;
        let tls = (uses_tls || t.cert.is_some()).then(|| TlsSettings {
            cert: t.cert.clone(),
            key: t.key.clone(),
            ca: t.ca.clone(),
            system_roots: t.system_roots,
            verify_server: t.verify_server,
            require_client_cert: t.require_client_cert,
            reload_check: (t.reload_check_s > 0).then(|| Duration::from_secs(t.reload_check_s)),
        });
        Self {
            inside: listeners(&c.inside),
            outside: listeners(&c.outside),
            limits: Limits {
                max_message: sip.max_message_size,
                max_headers: sip.max_headers,
                ..Limits::default()
            },
            stream: StreamLimits {
                idle_timeout: Duration::from_secs(sip.idle_timeout_s),
                message_timeout: Duration::from_secs(sip.message_timeout_s),
                connect_timeout: Duration::from_millis(sip.connect_timeout_ms),
                max_connections: sip.max_connections,
                max_per_listener: sip.max_connections_per_listener,
                send_queue: sip.send_queue,
                first_message_timeout: Duration::from_secs(sip.first_message_timeout_s),
                max_per_source: sip.max_connections_per_source,
            },
            udp: UdpSettings {
                workers: sip.udp_workers,
                buffer_bytes: sip.udp_buffer_bytes,
            },
            tls,
            tls_names: c
                .trunks
                .iter()
                .filter_map(|t| Some((t.proxy.static_addr()?, t.tls_server_name.clone()?)))
                .collect(),
            // The core's ACL is the one source of truth; names resolved later are added
            // when the signaling task publishes its view.
            admission: AdmissionPolicy::from(&sbc_proto::sbc::Acl::new(config::acl_config(c))),
            replies: ReplyLimits {
                rate: c.limits.stateless_reply_rate,
                burst: c.limits.stateless_reply_burst,
            },
            max_bans: c.limits.max_bans,
        }
    }
}
