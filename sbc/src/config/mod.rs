//! The SBC's configuration: typed sections, defaults, loading with line-accurate errors, and
//! semantic validation. The documented example is `config/sbc.toml`.

mod cdr;
mod cluster;
mod dns;
mod load;
mod media_address;
mod media_policy;
mod proxy;
mod routing;
mod srtp;
mod state;
mod trace;
mod translate;
mod validate;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use cdr::{Cdr, Fsync};
pub use cluster::Cluster;
pub use dns::Dns;
pub use load::{LoadError, Problem, load_file, parse};
pub use media_address::{MAX_MEDIA_ADDRESSES, MediaAddress};
pub use media_policy::{DtmfSetting, T38Setting};
pub use proxy::{ProxyAddr, ProxyAddrError};
pub use routing::{Compiled, compile};
pub use srtp::SrtpSetting;
pub use state::State;
pub use trace::{Hep, HepTransport, Trace};
pub use translate::{acl_config, b2bua_config, drain_config, guard_config, sbc_config};

/// The shipped default configuration (`config/sbc.toml`), used by `sbc run` without `--config`
/// when no `config/sbc.toml` exists in the working directory.
pub const SHIPPED_DEFAULT: &str = include_str!("../../../config/sbc.toml");

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[general]`: instance identity.
    #[serde(default)]
    pub general: General,
    /// `[log]`: logging.
    #[serde(default)]
    pub log: Log,
    /// `[sip]`: protocol timers and message limits.
    #[serde(default)]
    pub sip: Sip,
    /// `[inside]`: the PBX-facing side.
    pub inside: Side,
    /// `[outside]`: the carrier-facing side.
    pub outside: Side,
    /// `[pbx]`: the IP-PBX behind the SBC.
    pub pbx: Pbx,
    /// `[tls]`: certificates and verification for the TLS transport.
    #[serde(default)]
    pub tls: Tls,
    /// `[[trunk]]`: carrier trunks, in order of preference.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    /// `[[route]]`: outbound routes by called number (none: every call tries all trunks in
    /// order).
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// `[[inbound]]`: inbound routes by DID (none, or no match: `[pbx] address`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<InboundRoute>,
    /// `[media]`: the RTP relay.
    #[serde(default)]
    pub media: Media,
    /// `[admin]`: the HTTP admin API.
    #[serde(default)]
    pub admin: Admin,
    /// `[limits]`: call admission control and protection limits.
    #[serde(default)]
    pub limits: Limits,
    /// `[dns]`: how trunk proxies given by name are resolved.
    #[serde(default)]
    pub dns: Dns,
    /// `[hep]`: HEP v3 export of every SIP message to a capture server.
    #[serde(default)]
    pub hep: Hep,
    /// `[trace]`: per-call SIP traces for the admin API.
    #[serde(default)]
    pub trace: Trace,
    /// `[cdr]`: call detail records.
    #[serde(default)]
    pub cdr: Cdr,
    /// `[state]`: calls persisted in Redis for restart recovery; `None`: no persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

impl Config {
    /// Logs what is valid but likely unintended (at start and after every reload), once the
    /// log is set up: `parse` runs before it is.
    pub fn warn_at_load(&self) {
        for w in self.trunks.iter().filter_map(Trunk::auth_warning) {
            tracing::warn!("{w}");
        }
        if let Some(w) = self.limits.peer_budget_warning() {
            tracing::warn!("{w}");
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most concurrent calls through the SBC (default [`Limits::DEFAULT_MAX_CALLS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Most new calls per second through the SBC (default [`Limits::DEFAULT_MAX_CPS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cps: Option<u32>,
    /// Most live SIP transactions (hard cap: new calls beyond 7/8 of it get 503, other new
    /// requests beyond it are dropped).
    pub max_transactions: u32,
    /// Most MiB of SIP messages held for retransmission and matching (hard cap, as above).
    pub max_stored_mib: u32,
    /// `Retry-After` seconds on the 503 of a call refused by a limit.
    pub retry_after_s: u32,
    /// SIP messages per second one source may send (0: no per-source limit and no bans).
    /// The PBX address and the trunk proxies are exempt.
    pub source_rate: u32,
    /// Messages a source may send at once above `source_rate`.
    pub source_burst: u32,
    /// How long a source over its budget is banned, seconds.
    pub ban_s: u64,
    /// Requests whose User-Agent contains one of these (case-insensitive) are dropped.
    pub user_agent_deny: Vec<String>,
    /// Source networks whose messages are always dropped without an answer, on both sides,
    /// before any other check (even for a configured peer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<IpNet>,
    /// SIP messages per second a configured peer (the PBX inside, a trunk proxy outside) may
    /// send (0: unlimited); over it messages are dropped, the peer is never banned.
    pub peer_rate: u32,
    /// Messages a configured peer may send at once above `peer_rate`.
    pub peer_burst: u32,
    /// Most bans held at once (keyed by side and address); the least recently hit is
    /// lifted early beyond it.
    pub max_bans: usize,
    /// Stateless replies (e.g. 400 to a malformed request) per second per side, to admitted
    /// sources only (0: none).
    pub stateless_reply_rate: u32,
    /// Stateless replies at once above `stateless_reply_rate`.
    pub stateless_reply_burst: u32,
    /// Most relayed digest challenges remembered at once while the challenged side's retry is
    /// awaited (each for 64·T1); beyond it the oldest is forgotten.
    pub max_pending_challenges: usize,
    /// Overload control: a new request that waited this many milliseconds or more in its
    /// shard's queue counts as waiting behind a standing queue (0: off).
    pub queue_delay_target_ms: u32,
    /// Waits at or above the target for this many milliseconds without a break: new calls
    /// are refused with 503 (no Retry-After) until a request waits less again
    /// (`sbc_calls_admission_rejected_total{limit="queue_delay"}`).
    pub queue_delay_interval_ms: u32,
}

impl Limits {
    /// Messages a configured peer sends per call at least: a PBX placing a call sends its
    /// INVITE, ACK and BYE (or answers the other side's BYE).
    pub const PEER_MESSAGES_PER_CALL: u32 = 3;

    /// Why `peer_rate` may drop calls that `max_cps` admits, for a warning at load: over its
    /// budget a peer's new INVITEs are dropped (`sbc_sip_dropped_total{reason=
    /// "peer_over_budget"}`), and its retransmissions then make every call slow. Found by the
    /// signaling benchmark, whose steps from 2,000 calls/s up failed on the default budget.
    pub fn peer_budget_warning(&self) -> Option<String> {
        let cps = self.max_cps.unwrap_or(Self::DEFAULT_MAX_CPS);
        let needs = cps.saturating_mul(Self::PEER_MESSAGES_PER_CALL);
        (self.peer_rate > 0 && needs > self.peer_rate).then(|| {
            format!(
                "limits.peer_rate = {} messages/s is below what limits.max_cps = {cps} needs from \
                 one peer (about {} per call, {needs}/s): a PBX or trunk placing calls that fast \
                 has new calls dropped; raise peer_rate (0: no limit)",
                self.peer_rate,
                Self::PEER_MESSAGES_PER_CALL
            )
        })
    }

    /// Concurrent calls of the whole SBC when `max_calls` is not set.
    pub const DEFAULT_MAX_CALLS: u32 = 1000;
    /// New calls per second of the whole SBC when `max_cps` is not set.
    pub const DEFAULT_MAX_CPS: u32 = 100;
    /// Concurrent calls of a trunk when its `max_calls` is not set.
    pub const DEFAULT_TRUNK_MAX_CALLS: u32 = 500;
    /// New calls per second of a trunk when its `max_cps` is not set.
    pub const DEFAULT_TRUNK_MAX_CPS: u32 = 50;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls: Some(Self::DEFAULT_MAX_CALLS),
            max_cps: Some(Self::DEFAULT_MAX_CPS),
            max_transactions: 20_000,
            max_stored_mib: 64,
            retry_after_s: 5,
            source_rate: 50,
            source_burst: 100,
            ban_s: 600,
            user_agent_deny: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "sundayddr",
                "iwar",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            deny: Vec::new(),
            peer_rate: 2_000,
            peer_burst: 4_000,
            max_bans: 10_000,
            stateless_reply_rate: 20,
            stateless_reply_burst: 40,
            max_pending_challenges: 10_000,
            queue_delay_target_ms: 200,
            queue_delay_interval_ms: 500,
        }
    }
}

/// `[general]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Names this instance: its bpffs pin directory and its metrics `instance` label.
    pub instance: String,
    /// Value of the `Server`/`User-Agent` header the SBC sends.
    pub user_agent: String,
    /// Graceful drain (SIGTERM, `POST /api/v1/drain`): how long calls may go on before they
    /// are ended with BYE, seconds.
    pub drain_timeout_s: u32,
    /// `Retry-After` of the 503 to new calls and OPTIONS while draining, seconds.
    pub drain_retry_after_s: u32,
    /// How long the drain waits for the answers to its BYEs, milliseconds.
    pub drain_bye_wait_ms: u32,
    /// Signaling shards, each owning its calls on its own task (0: one per available core;
    /// at most `sbc_proto::shard::MAX_SHARDS`). Read at start only.
    pub signaling_shards: u16,
}

impl Default for General {
    fn default() -> Self {
        Self {
            instance: "sbc".into(),
            user_agent: format!("sbc/{}", env!("CARGO_PKG_VERSION")),
            drain_timeout_s: 30,
            drain_retry_after_s: 30,
            drain_bye_wait_ms: 2000,
            // Not yet one per core: border_flood failed once with two shards (docs/sharding.md).
            signaling_shards: 1,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `tracing` env-filter directive used when `SBC_LOG`/`RUST_LOG` are not set.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sip {
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 (maximum time a message stays in the network), milliseconds.
    pub t4_ms: u64,
    /// Timer C: how long an outgoing INVITE may stay unanswered after a provisional, seconds.
    pub timer_c_s: u64,
    /// Largest SIP message accepted on any transport, bytes.
    pub max_message_size: usize,
    /// Most header fields accepted in one message.
    pub max_headers: usize,
    /// A stream (TCP/TLS) connection with no bytes in either direction for this long is
    /// closed, seconds.
    pub idle_timeout_s: u64,
    /// Once the first byte of a stream message has arrived, the whole message must arrive
    /// within this many seconds, or the connection is closed (slowloris defence).
    pub message_timeout_s: u64,
    /// Outbound TCP connect plus TLS handshake (both directions) must finish within this,
    /// milliseconds.
    pub connect_timeout_ms: u64,
    /// Most open stream connections in total (accepted and outbound).
    pub max_connections: usize,
    /// Most connections accepted on one TCP or TLS listener.
    pub max_connections_per_listener: usize,
    /// Most connections accepted from one source address on one side.
    pub max_connections_per_source: usize,
    /// An accepted stream connection must deliver a valid SIP message within this many
    /// seconds (keep-alives do not count), or it is closed.
    pub first_message_timeout_s: u64,
    /// Messages queued for sending on one stream connection; beyond it a send fails.
    pub send_queue: usize,
    /// Parsed messages queued toward the SIP core; beyond it UDP input is dropped and
    /// stream reading pauses.
    pub inbound_queue: usize,
    /// UDP sockets (and receive tasks) per UDP listen address, sharing it with
    /// SO_REUSEPORT; 1 disables SO_REUSEPORT.
    pub udp_workers: usize,
    /// Kernel receive and send buffer size asked for each UDP socket, bytes.
    pub udp_buffer_bytes: usize,
    /// Session timers (RFC 4028) on each leg.
    pub session_timer: bool,
    /// Session interval the SBC asks for and the longest it grants, seconds.
    pub session_expires: u64,
    /// Shortest session interval accepted (Min-SE), seconds.
    pub min_se: u64,
    /// Most carrier redirects (3xx) one call follows.
    pub max_redirects: u8,
}

impl Default for Sip {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timer_c_s: 180,
            max_message_size: 65_535,
            max_headers: 128,
            idle_timeout_s: 120,
            message_timeout_s: 10,
            connect_timeout_ms: 5_000,
            max_connections: 4_096,
            max_connections_per_listener: 1_024,
            max_connections_per_source: 32,
            first_message_timeout_s: 5,
            send_queue: 256,
            inbound_queue: 4_096,
            udp_workers: 1,
            udp_buffer_bytes: 4 << 20,
            session_timer: true,
            session_expires: 1800,
            min_se: 90,
            max_redirects: 5,
        }
    }
}

/// `[inside]` / `[outside]`: where the SBC listens for SIP and relays media on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    /// UDP listen addresses for SIP.
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses for SIP.
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// TLS listen addresses for SIP (certificate from `[tls]`).
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    /// Address the SBC's media relay ports are bound to on this side (one relay address;
    /// `media_addresses` lists several). Exactly one of the two is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_address: Option<IpAddr>,
    /// The side's relay addresses, each with the whole `[media]` port range (more concurrent
    /// streams than one address's ~30,000 pairs); new streams go to the one with the most
    /// free pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_addresses: Vec<MediaAddress>,
    /// Address written into SIP/SDP on this side when it differs from the bound one (1:1 NAT);
    /// for media it names the first relay address (an entry of `media_addresses` may give its
    /// own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<IpAddr>,
}

impl Side {
    /// The side's relay addresses as (bind, advertised), in configuration order (empty only
    /// in a configuration validation refuses).
    pub fn relay_addresses(&self) -> Vec<(IpAddr, IpAddr)> {
        media_address::resolve(self)
    }
}

impl Config {
    /// Descriptors this configuration can hold open at its limits: one relay socket per port
    /// of the media range on every relay address of both sides (the userspace relay keeps
    /// ended streams' sockets bound for reuse), every stream connection, and a margin for
    /// listeners, the admin API, eventfds and files. The daemon sizes its descriptor table to
    /// this at start (`sys::reserve_descriptors`).
    pub fn descriptors_needed(&self) -> u64 {
        let ports = u64::from(self.media.port_max.saturating_sub(self.media.port_min)) + 1;
        let addresses =
            (self.inside.relay_addresses().len() + self.outside.relay_addresses().len()) as u64;
        ports
            .saturating_mul(addresses)
            .saturating_add(self.sip.max_connections as u64)
            .saturating_add(1_024)
    }
}

/// SIP transport protocol toward a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (RFC 3261 §18).
    #[default]
    Udp,
    /// TCP (RFC 3261 §18).
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2.1, RFC 5246/8446).
    Tls,
}

impl Transport {
    /// The transport's kind in the shared network vocabulary.
    pub const fn kind(self) -> sbc_proto::net::TransportKind {
        match self {
            Self::Udp => sbc_proto::net::TransportKind::Udp,
            Self::Tcp => sbc_proto::net::TransportKind::Tcp,
            Self::Tls => sbc_proto::net::TransportKind::Tls,
        }
    }
}

/// `[tls]`: the certificate the TLS listeners present, and how peers are verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain (leaf first) presented by TLS listeners, and as client
    /// certificate toward carriers that ask for one.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: Option<PathBuf>,
    /// PEM file of CA certificates trusted for carriers' server certificates (and for client
    /// certificates when `require_client_cert` is on).
    pub ca: Option<PathBuf>,
    /// Also trust the operating system's root certificates for carriers.
    pub system_roots: bool,
    /// Verify carriers' server certificates and names. Off is for lab use only.
    pub verify_server: bool,
    /// Require and verify (against `ca`) a client certificate on TLS listeners.
    pub require_client_cert: bool,
    /// Check the files' modification times this often and reload on change, seconds
    /// (0: only on SIGHUP).
    pub reload_check_s: u64,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            ca: None,
            system_roots: true,
            verify_server: true,
            require_client_cert: false,
            reload_check_s: 60,
        }
    }
}

/// `[pbx]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pbx {
    /// Where calls from the carrier are sent.
    pub address: SocketAddr,
    /// Transport toward the PBX.
    #[serde(default)]
    pub transport: Transport,
    /// Source networks accepted as the PBX; requests from anywhere else are dropped silently.
    pub allow: Vec<IpNet>,
    /// Digest user name the PBX authenticates with; with `password`, the PBX's new INVITEs and
    /// MESSAGEs are challenged with 407 (absent: the ACL alone admits the PBX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The PBX's digest password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    /// Realm of the challenges (default: the SBC's inside address as written in Via).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Digest algorithms offered, in order of preference: `SHA-256`, `MD5` (default both,
    /// SHA-256 first as RFC 8760 §2.4 asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_algorithms: Option<Vec<String>>,
    /// Networks the PBX side's media may come from besides the address its SDP names and the
    /// address it signals from (phones, media gateways). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_networks: Vec<IpNet>,
    /// What a REGISTER from the PBX gets: `reject` (405) or `relay` (registered at a trunk on
    /// the PBX's behalf).
    #[serde(default, skip_serializing_if = "is_default")]
    pub register: PbxRegister,
    /// With `register = "relay"`: the trunk registered at (default: the first trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_trunk: Option<String>,
    /// With `register = "relay"`: most AORs registered at once (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_max_bindings: Option<u32>,
    /// Media encryption on this side: `off` (default), `optional` or `mandatory`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub srtp: SrtpSetting,
    /// SRTP suites allowed, in order of preference (default: `AEAD_AES_128_GCM`,
    /// `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_suites: Option<Vec<String>>,
    /// Codecs this side takes, by encoding name, in order of preference (e.g. `["PCMA",
    /// "PCMU", "telephone-event"]`). Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
    /// Codecs this side never gets (instead of `codecs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs_deny: Option<Vec<String>>,
    /// A re-INVITE to T.38 fax: `passthrough` (default) or `reject` (488 by the SBC).
    #[serde(default, skip_serializing_if = "is_default")]
    pub t38: T38Setting,
    /// DTMF method of this side: `rfc4733` (default), `info` or `inband-passthrough`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dtmf: DtmfSetting,
    /// The payload type (96-127) `telephone-event` gets in offers toward this side; absent:
    /// as offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_event_pt: Option<u8>,
}

/// `[pbx] register`: what a REGISTER from the PBX gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PbxRegister {
    /// 405 Method Not Allowed with `Allow`.
    #[default]
    Reject,
    /// Registered at a trunk on the PBX's behalf, Contact rewritten to the SBC.
    Relay,
}

/// `[[trunk]] auth`: who answers the trunk's digest challenges. Absent, it resolves per trunk
/// (see [`Trunk::auth_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkAuthMode {
    /// The SBC, with the trunk's credentials (403 toward the PBX without them).
    Sbc,
    /// The PBX (or the carrier, inbound): challenges and credentials cross; the Request-URI
    /// crosses unchanged.
    Passthrough,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Pbx {
    /// The B2BUA's SRTP policy toward the PBX.
    pub fn srtp_policy(&self) -> sbc_proto::srtp::SrtpPolicy {
        srtp::policy(self.srtp, self.srtp_suites.as_deref())
    }

    /// The B2BUA's codec and T.38 policy on this side.
    pub fn media_policy(&self) -> sbc_proto::b2bua::MediaPolicy {
        media_policy::policy(
            self.codecs.as_deref(),
            self.codecs_deny.as_deref(),
            self.t38,
            self.dtmf,
            self.telephone_event_pt,
        )
    }

    /// The B2BUA's policy for the PBX's REGISTERs (an unknown `register_trunk` is reported by
    /// validation; here it falls back to the first trunk).
    pub fn register_policy(&self, trunks: &[Trunk]) -> sbc_proto::b2bua::RegisterPolicy {
        match self.register {
            PbxRegister::Reject => sbc_proto::b2bua::RegisterPolicy::Reject,
            PbxRegister::Relay => sbc_proto::b2bua::RegisterPolicy::Relay {
                trunk: self
                    .register_trunk
                    .as_ref()
                    .and_then(|n| trunks.iter().position(|t| &t.name == n))
                    .unwrap_or(0),
                max_bindings: self.register_max_bindings.unwrap_or(100) as usize,
            },
        }
    }

    /// The algorithms offered to the PBX (configured or default), skipping unknown names
    /// (validation reports them).
    pub fn algorithms(&self) -> Vec<sbc_proto::auth::Algorithm> {
        use sbc_proto::auth::Algorithm;
        match &self.auth_algorithms {
            None => vec![Algorithm::Sha256, Algorithm::Md5],
            Some(names) => names
                .iter()
                .filter_map(|n| Algorithm::parse(n))
                .filter(|a| matches!(a, Algorithm::Sha256 | Algorithm::Md5))
                .collect(),
        }
    }
}

/// `[[trunk]]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// Unique name, used in routes, metrics and the admin API.
    pub name: String,
    /// The carrier's SIP proxy: `ip:port`, `host:port` (A/AAAA) or `host` (SRV, then A/AAAA).
    pub proxy: ProxyAddr,
    /// Transport toward the proxy.
    #[serde(default)]
    pub transport: Transport,
    /// The SBC's outside listener used toward this trunk (one of `[outside]`'s addresses of
    /// the trunk's transport); default: the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// Name sent as TLS SNI and verified in the proxy's certificate; default: the proxy's
    /// IP address (verified against the certificate's IP SANs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Account user name at the carrier (digest `username` unless `auth_username` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Digest password; with `username`, challenged requests are retried with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    /// Only answer challenges for this realm (default: any realm the proxy names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Digest user name when it differs from `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// Most concurrent calls on this trunk, both directions (absent:
    /// [`Limits::DEFAULT_TRUNK_MAX_CALLS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Most new calls per second on this trunk (absent: [`Limits::DEFAULT_TRUNK_MAX_CPS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cps: Option<u32>,
    /// Who answers the trunk's digest challenges: `sbc` or `passthrough`. Absent: `sbc` with
    /// credentials or called-number rules, `passthrough` otherwise ([`Trunk::auth_mode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<TrunkAuthMode>,
    /// Register with the carrier (outbound REGISTER with `username`, refreshed before expiry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub register: bool,
    /// Registration expiry to ask for, seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_expires_s: Option<u32>,
    /// Domain of the account (REGISTER Request-URI, From/To host); default: the proxy's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_domain: Option<String>,
    /// OPTIONS health check every this many seconds (absent: no health check, always usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_interval_s: Option<u32>,
    /// Consecutive failed pings that mark the trunk down (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_down_after: Option<u32>,
    /// Consecutive answered pings that mark it up again (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_up_after: Option<u32>,
    /// Networks this trunk's media may come from besides the address its SDP names and its
    /// proxy's address (the carrier's media gateways). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_networks: Vec<IpNet>,
    /// Most relay ports this trunk's calls may hold on the outside at once (2 per stream:
    /// RTP and RTCP); beyond it a call gets 503. Absent: half of the relay port range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_media_ports: Option<u32>,
    /// What a 3xx from this carrier does: `recurse` (default) or `relay`.
    #[serde(default)]
    pub redirect: RedirectMode,
    /// A relayed 3xx has its Contacts rewritten to the SBC's inside address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hide_redirect_contacts: bool,
    /// Media encryption on this side: `off` (default), `optional` or `mandatory`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub srtp: SrtpSetting,
    /// SRTP suites allowed, in order of preference (default: `AEAD_AES_128_GCM`,
    /// `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_suites: Option<Vec<String>>,
    /// Codecs this side takes, by encoding name, in order of preference (e.g. `["PCMA",
    /// "PCMU", "telephone-event"]`). Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
    /// Codecs this side never gets (instead of `codecs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs_deny: Option<Vec<String>>,
    /// A re-INVITE to T.38 fax: `passthrough` (default) or `reject` (488 by the SBC).
    #[serde(default, skip_serializing_if = "is_default")]
    pub t38: T38Setting,
    /// DTMF method of this side: `rfc4733` (default), `info` or `inband-passthrough`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dtmf: DtmfSetting,
    /// The payload type (96-127) `telephone-event` gets in offers toward this side; absent:
    /// as offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_event_pt: Option<u8>,
    /// `[[trunk.number]]`: number normalisation rules of this trunk's calls.
    #[serde(default, rename = "number", skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<NumberRule>,
    /// `[[trunk.header]]`: header manipulation of this trunk's calls.
    #[serde(default, rename = "header", skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRule>,
}

impl Trunk {
    /// The B2BUA's SRTP policy toward this trunk.
    pub fn srtp_policy(&self) -> sbc_proto::srtp::SrtpPolicy {
        srtp::policy(self.srtp, self.srtp_suites.as_deref())
    }

    /// The B2BUA's codec and T.38 policy on this side.
    pub fn media_policy(&self) -> sbc_proto::b2bua::MediaPolicy {
        media_policy::policy(
            self.codecs.as_deref(),
            self.codecs_deny.as_deref(),
            self.t38,
            self.dtmf,
            self.telephone_event_pt,
        )
    }
}

/// What a trunk's 3xx responses do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectMode {
    /// The SBC follows the Contacts itself.
    #[default]
    Recurse,
    /// The 3xx goes to the PBX.
    Relay,
}

/// Which way a trunk rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// Calls from the PBX to this trunk.
    #[default]
    Outbound,
    /// Calls from this trunk to the PBX.
    Inbound,
}

/// Which number a rule rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberKind {
    /// The called number: Request-URI and To user.
    Called,
    /// The calling number: From, P-Asserted-Identity and P-Preferred-Identity user.
    Calling,
}

/// `[[trunk.number]]`: one normalisation rule; per direction and number the first matching
/// rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberRule {
    /// `outbound` (to the carrier, default) or `inbound` (to the PBX).
    #[serde(default)]
    pub direction: CallDirection,
    /// `called` or `calling`.
    pub number: NumberKind,
    /// Numbers starting with this (absent, and no `match`: every number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Numbers this regular expression matches.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// With `match`: replacement of the matched part (`$1` for the first group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    /// Leading characters removed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strip: usize,
    /// Prefix added.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub add: String,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// What a header rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderAction {
    /// Add a header.
    Add,
    /// Replace any copied header of that name.
    Set,
    /// Remove any copied header of that name.
    Remove,
}

/// `[[trunk.header]]`: one header rule, applied in order to the INVITE that starts a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// `outbound` (to the carrier, default) or `inbound` (to the PBX).
    #[serde(default)]
    pub direction: CallDirection,
    /// `add`, `set` or `remove`.
    pub action: HeaderAction,
    /// Header name.
    pub name: String,
    /// Value for add/set; `${calling}`, `${called}`, `${trunk}` and `${domain}` are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `[[route]]`: calls from the PBX whose called number matches use these trunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name (logs, admin API).
    pub name: String,
    /// Called numbers starting with this (absent, and no `match`: every number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Called numbers this regular expression matches.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Trunk names, in order of preference.
    pub trunks: Vec<String>,
    /// Relative weights, one per trunk: a weighted random order per call instead of the
    /// configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u32>>,
}

/// `[[inbound]]`: calls from a carrier whose DID matches go to this PBX address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRoute {
    /// Unique name (logs, admin API).
    pub name: String,
    /// DIDs starting with this (absent, and no `match`: every DID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// DIDs this regular expression matches.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Where the call goes (inside `[pbx] allow`).
    pub target: SocketAddr,
    /// Transport toward it (default: `[pbx] transport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

impl Trunk {
    /// The B2BUA's digest mode for this trunk: `auth` when given; otherwise the SBC answers
    /// when it has credentials, and the PBX does when the SBC has none — unless a called-number
    /// rule rewrites the Request-URI the digest covers ([`Trunk::auth_warning`]).
    pub fn auth_mode(&self) -> sbc_proto::b2bua::TrunkAuth {
        let mode = self.auth.unwrap_or(
            if self.credentials().is_some() || self.rewrites_called_number() {
                TrunkAuthMode::Sbc
            } else {
                TrunkAuthMode::Passthrough
            },
        );
        match mode {
            TrunkAuthMode::Sbc => sbc_proto::b2bua::TrunkAuth::Sbc,
            TrunkAuthMode::Passthrough => sbc_proto::b2bua::TrunkAuth::Passthrough,
        }
    }

    /// Whether a `[[trunk.number]]` rule rewrites the called number, which pass-through
    /// digest cannot survive: the PBX signs the Request-URI it sent, the carrier checks the
    /// rewritten one.
    pub fn rewrites_called_number(&self) -> bool {
        self.numbers.iter().any(|r| r.number == NumberKind::Called)
    }

    /// Why this trunk's resolved `auth` may refuse calls, for a warning at load: no `auth`,
    /// no credentials, and called-number rules leave only `sbc`, whose challenges the PBX then
    /// gets as 403.
    pub fn auth_warning(&self) -> Option<String> {
        (self.auth.is_none() && self.credentials().is_none() && self.rewrites_called_number()).then(
            || {
                format!(
                    "trunk {:?} has no credentials and rewrites the called number, so auth \
                     resolves to \"sbc\": pass-through is impossible because the PBX's answers \
                     to the carrier's digest challenges would not verify against the rewritten \
                     Request-URI; a challenged call gets 403 (set username/password, or drop the \
                     called-number rules for auth = \"passthrough\")",
                    self.name
                )
            },
        )
    }

    /// The digest credentials, when the trunk has a user name and a password.
    pub fn credentials(&self) -> Option<sbc_proto::auth::Credentials> {
        let user = self.auth_username.as_ref().or(self.username.as_ref())?;
        let password = self.password.as_ref()?;
        Some(sbc_proto::auth::Credentials {
            username: user.clone(),
            password: sbc_proto::auth::Secret::new(password.0.clone()),
            realm: self.realm.clone(),
        })
    }
}

/// A password in the configuration: serialised as is (the file and the admin API's redaction
/// need it), but never printed by `Debug`, so it cannot reach a log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// XDP attach mode for the media fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode where the driver supports it, generic otherwise; userspace only if
    /// XDP cannot be loaded at all.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// No XDP: the userspace relay forwards everything.
    Off,
}

/// Whether socket-bound streams (SRTP) are relayed through AF_XDP sockets (`media.xsk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XskMode {
    /// Where XDP is attached (with `xdp_latch`) and the sockets bind; otherwise the socket
    /// relay, with the reason logged once. The sockets open with the first socket-bound stream
    /// (their UMEMs are pinned memory), not at start-up.
    #[default]
    Auto,
    /// Never: the relay sockets carry every userspace stream.
    Off,
}

/// Preferred busy polling of the AF_XDP sockets (`media.xsk_busy_poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XskBusyPoll {
    /// The relay runs each socket's NAPI poll itself when it looks at the rings
    /// (`SO_PREFER_BUSY_POLL`); needs the interfaces' `napi_defer_hard_irqs` and
    /// `gro_flush_timeout` set, and `xsk_poll_us` > 0.
    On,
    /// NAPI runs in softirq or its kernel thread, as without AF_XDP.
    #[default]
    Off,
}

/// `[media]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Lowest relay port (even: RTP on even, RTCP on odd ports).
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// XDP fast path mode.
    pub xdp: XdpMode,
    /// Interfaces the XDP program is attached to (the ones carrying media).
    pub interfaces: Vec<String>,
    /// End a call after this many seconds without media in either direction (0 disables).
    pub timeout_s: u64,
    /// The same while the call is on hold (0 disables).
    pub hold_timeout_s: u64,
    /// Drop packets on a latched relay port that do not come from the latched peer (in XDP
    /// and in userspace), outside the re-latch window. Off: packets from other *allowed*
    /// sources are forwarded and may take over the latch after the latched peer has been
    /// silent for 2 s. Sources that are not allowed are dropped either way.
    pub strict_source: bool,
    /// After an answer or re-offer, a different allowed source may take a relay port's latch
    /// for this long (NAT rebinding, a media server switch at answer), milliseconds.
    pub relatch_window_ms: u64,
    /// Most `m=` lines accepted in one offer; more gets 488.
    pub max_streams: usize,
    /// With XDP attached, plain streams bind no socket: the XDP program latches them (by the
    /// same policy) and relays RTP and RTCP (`docs/media.md`, "Socketless streams").
    pub xdp_latch: bool,
    /// With XDP attached, resolve a fast-path peer's next hop (ARP/ND) when its mapping goes
    /// in, so that its first packets are not lost to a cold neighbour entry.
    pub xdp_prime_neighbours: bool,
    /// Most DTMF digits waiting per stream and leg for the relay to generate them as RFC
    /// 4733 events (SIP INFO converted); more are refused and counted.
    pub dtmf_queue: usize,
    /// Threads of the userspace relay, each serving its share of the streams from one epoll
    /// set (0: one per CPU core).
    pub relay_workers: usize,
    /// While media flows, each relay worker takes what arrived every this many microseconds
    /// instead of waking once per packet (interrupt moderation, as `xsk_poll_us` for the
    /// AF_XDP relay; 0: event-driven; at most 5,000; default 1,000). It engages only while a worker's
    /// wake-ups come closer than twice the interval, so a quiet relay still sleeps in epoll.
    pub relay_poll_us: u64,
    /// Most relay sockets (RTP and RTCP count one each) of ended streams kept bound for the
    /// next stream that draws their port, which then skips the socket set-up; beyond it they
    /// are closed. Each is an open file descriptor, so this bounds what the cache may take
    /// from the descriptor limit (it also gives them back when a new socket cannot open).
    /// 0 keeps none.
    pub relay_idle_sockets: usize,
    /// Port pairs per relay address kept bound ahead for new streams relayed in userspace,
    /// so that a new call's relay ports are bound before its SDP is written and no bind runs
    /// on its path (0: bind each stream's ports when its offer arrives). At most a quarter of
    /// the range is held; none while XDP carries streams socketless (`xdp_latch`). Each pair
    /// is two open descriptors.
    pub warm_pairs: usize,
    /// Relay the streams userspace transforms (SRTP) through AF_XDP sockets on the XDP
    /// interfaces instead of the relay sockets (`docs/media.md`, "AF_XDP relay").
    pub xsk: XskMode,
    /// While media flows, the AF_XDP relay wakes every this many microseconds and takes what
    /// arrived, instead of once per ready ring (0: event-driven; at most 5,000; default 1,000).
    pub xsk_poll_us: u64,
    /// Preferred busy polling of the AF_XDP sockets' NAPI contexts (`docs/media.md`, "Busy
    /// polling"); default off.
    pub xsk_busy_poll: XskBusyPoll,
    /// Most frames one busy poll takes from the device (`SO_BUSY_POLL_BUDGET`), 1-1024;
    /// default 64.
    pub xsk_busy_poll_budget: u16,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            port_min: 10_000,
            port_max: 20_000,
            xdp: XdpMode::Auto,
            interfaces: Vec::new(),
            timeout_s: 60,
            hold_timeout_s: 3600,
            strict_source: true,
            relatch_window_ms: 2_000,
            max_streams: 4,
            xdp_latch: true,
            xdp_prime_neighbours: true,
            dtmf_queue: 16,
            relay_workers: 0,
            relay_poll_us: 1_000,
            relay_idle_sockets: 4_096,
            warm_pairs: 8,
            xsk: XskMode::Auto,
            xsk_poll_us: 1_000,
            xsk_busy_poll: XskBusyPoll::Off,
            xsk_busy_poll_budget: 64,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Listen address of the HTTP admin API and `/metrics`.
    pub listen: SocketAddr,
    /// Bearer token with full (read and write) access. `SBC_ADMIN_TOKEN` in the environment
    /// is accepted as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Bearer token with read-only access (GET only; writes get 403). `SBC_ADMIN_READ_TOKEN`
    /// in the environment is accepted as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
    /// PEM certificate chain for HTTPS on the admin listener (with `tls_key`); plain HTTP
    /// without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Names accepted in a request's `Host` besides IP literals and `localhost` (DNS
    /// rebinding guard, `admin::host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            read_token: None,
            tls_cert: None,
            tls_key: None,
            hosts: Vec::new(),
        }
    }
}
